//! State-tree figures (`cargo bench -p chain --bench state`): applying a block of 1,000 writes
//! to distinct keys (about 500 overwrites, 400 inserts and 100 deletes) to a tree of 100,000
//! keys, proving a key and verifying its proof, over the in-memory node store (so the figures are
//! hashing, encoding and tree walking, not disk). Criterion prints its report; after it, one JSON
//! line per benchmark with the median time per iteration over criterion's samples (warm-up
//! included).
//!
//! First, pruning in the node's RocksDB store (`chain::state/prune_*`, run alone with
//! `-- prune`): the same 1,000 blocks of 200 random overwrites over 20,000 keys are committed to
//! a store keeping 100 versions and to an archive store (the baseline); the lines give the tree
//! nodes and stale marks stored, the tree and mark column families' table bytes after a full
//! compaction, and the mean time of a block commit (sweep included), each with the archive's
//! figure and the ratio. (An archive store marks stale nodes too, so it can switch to pruning.)
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chain::block::{txs_root, Block, BlockHash, Header};
use chain::consensus::secp::ValidatorAddress;
use chain::consensus::{CommitCertificate, Decision, InstanceId, Round, Validator, ValidatorSet};
use chain::node::store::{ChainStore, CommitWrites, StoreOptions, TreeDelta};
use chain::state::{apply, prove, MemNodes, WriteSet, EMPTY_ROOT};
use criterion::{criterion_group, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use secp256k1::{SecretKey, SECP256K1};

const KEYS: u32 = 100_000;
const BLOCK: u32 = 1_000;

static SAMPLES: Mutex<Vec<(String, Vec<f64>, &'static str)>> = Mutex::new(Vec::new());

fn state_key(i: u32) -> Vec<u8> {
    let mut k = b"bank/balance/".to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn record(name: &str, unit: &'static str, micros: f64) {
    let mut s = SAMPLES.lock().unwrap();
    match s.iter_mut().find(|(n, _, _)| n == name) {
        Some((_, v, _)) => v.push(micros),
        None => s.push((name.to_owned(), vec![micros], unit)),
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut nodes = MemNodes::new();
    let base: WriteSet = (0..KEYS)
        .map(|i| (state_key(i), Some(rng.gen::<[u8; 16]>().to_vec())))
        .collect();
    let t = Instant::now();
    let u = apply(&nodes, EMPTY_ROOT, &base).unwrap();
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    nodes.commit(&u);
    let root = u.root;
    println!(
        "{{\"bench\":\"chain::state/build/keys={KEYS}\",\"value\":{build_ms:.3},\"unit\":\"ms\"}}"
    );
    println!(
        "{{\"bench\":\"chain::state/nodes/keys={KEYS}\",\"value\":{},\"unit\":\"nodes\"}}",
        nodes.len()
    );

    let mut block = WriteSet::new();
    for _ in 0..500 {
        block.insert(
            state_key(rng.gen_range(0..KEYS)),
            Some(rng.gen::<[u8; 16]>().to_vec()),
        );
    }
    for i in 0..400 {
        block.insert(state_key(KEYS + i), Some(rng.gen::<[u8; 16]>().to_vec()));
    }
    while block.len() < BLOCK as usize {
        block.insert(state_key(rng.gen_range(0..KEYS)), None);
    }
    let sample = apply(&nodes, root, &block).unwrap();
    println!(
        "{{\"bench\":\"chain::state/apply_new_nodes/keys={KEYS},writes={BLOCK}\",\"value\":{},\"unit\":\"nodes\"}}",
        sample.new_nodes.len()
    );

    let mut g = c.benchmark_group("chain::state");
    g.sample_size(20);
    let name = format!("apply/keys={KEYS},writes={BLOCK}");
    g.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(apply(&nodes, root, &block).unwrap());
            }
            let d = t.elapsed();
            record(&name, "ms", d.as_secs_f64() * 1e3 / iters as f64);
            d
        })
    });

    let probe: Vec<Vec<u8>> = (0..256)
        .map(|_| state_key(rng.gen_range(0..KEYS)))
        .collect();
    let name = format!("prove/keys={KEYS}");
    g.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for i in 0..iters {
                let k = &probe[(i % 256) as usize];
                std::hint::black_box(prove(&nodes, root, k).unwrap());
            }
            let d = t.elapsed();
            record(&name, "us", d.as_secs_f64() * 1e6 / iters as f64);
            d
        })
    });

    let proofs: Vec<_> = probe
        .iter()
        .map(|k| {
            (
                k.clone(),
                base[k].clone().unwrap(),
                prove(&nodes, root, k).unwrap(),
            )
        })
        .collect();
    let mean_siblings = proofs
        .iter()
        .map(|(_, _, p)| p.siblings.len())
        .sum::<usize>() as f64
        / proofs.len() as f64;
    let mean_bytes = proofs
        .iter()
        .map(|(_, _, p)| p.to_bytes().unwrap().len())
        .sum::<usize>() as f64
        / proofs.len() as f64;
    println!("{{\"bench\":\"chain::state/proof_siblings/keys={KEYS}\",\"value\":{mean_siblings:.3},\"unit\":\"siblings\"}}");
    println!("{{\"bench\":\"chain::state/proof_bytes/keys={KEYS}\",\"value\":{mean_bytes:.3},\"unit\":\"bytes\"}}");
    let name = format!("verify/keys={KEYS}");
    g.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for i in 0..iters {
                let (k, v, p) = &proofs[(i % 256) as usize];
                p.verify(&root, k, Some(v)).unwrap();
            }
            let d = t.elapsed();
            record(&name, "us", d.as_secs_f64() * 1e6 / iters as f64);
            d
        })
    });
    g.finish();
}

const PRUNE_KEYS: u32 = 20_000;
const PRUNE_BLOCKS: u64 = 1_000;
const PRUNE_WRITES: usize = 200;
const PRUNE_KEPT: u64 = 100;

fn line(bench: &str, value: f64, unit: &str, baseline: f64) {
    println!(
        "{{\"bench\":\"{bench}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"ratio\":{:.4}}}",
        value / baseline
    );
}

/// A store fed blocks as the node feeds it: apply the writes to the head's tree, commit.
struct Fed {
    store: ChainStore,
    _dir: tempfile::TempDir,
    commit_time: Duration,
}

impl Fed {
    fn new(
        kept: u64,
        genesis: &WriteSet,
        validators: &ValidatorSet<chain::block::ChainContext>,
    ) -> Fed {
        let dir = tempfile::tempdir().unwrap();
        let store = ChainStore::open_with(
            dir.path(),
            StoreOptions {
                state_versions_kept: kept,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let u = apply(&store, EMPTY_ROOT, genesis).unwrap();
        let tree = TreeDelta::new(u.new_nodes, u.stale_nodes);
        store
            .init_genesis(genesis, &tree, u.root, 0, validators)
            .unwrap();
        Fed {
            store,
            _dir: dir,
            commit_time: Duration::ZERO,
        }
    }

    fn commit(&mut self, writes: &WriteSet, validators: &ValidatorSet<chain::block::ChainContext>) {
        let head = self.store.require_head().unwrap();
        let u = apply(&self.store, head.state_root, writes).unwrap();
        let header = Header {
            chain_id: "bench".into(),
            instance: InstanceId(0),
            height: head.height + 1,
            time_ms: head.height + 1,
            prev_hash: head.block_hash,
            txs_root: txs_root(&[]),
            state_root: u.root,
            validators_hash: [0; 32],
            next_validators_hash: [0; 32],
            proposer: ValidatorAddress([1; 20]),
        };
        let hash: BlockHash = header.hash().unwrap();
        let decision = Decision {
            value: Block {
                header,
                txs: Vec::new(),
            },
            certificate: CommitCertificate {
                instance: InstanceId(0),
                height: head.height + 1,
                round: Round(0),
                value_id: hash,
                signatures: Vec::new(),
            },
        };
        let tree = TreeDelta::new(u.new_nodes, u.stale_nodes);
        let t = Instant::now();
        self.store
            .commit_block(
                &decision,
                hash,
                CommitWrites {
                    writes,
                    tree: &tree,
                    state_root: u.root,
                    next_validators: validators,
                },
            )
            .unwrap();
        self.commit_time += t.elapsed();
    }
}

fn pruning() {
    let sk = SecretKey::from_slice(&[7; 32]).unwrap();
    let pk = sk.public_key(SECP256K1);
    let validators = ValidatorSet::new(vec![Validator {
        address: ValidatorAddress::from_public_key(&pk),
        public_key: pk,
        voting_power: 1,
    }])
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let genesis: WriteSet = (0..PRUNE_KEYS)
        .map(|i| (state_key(i), Some(rng.gen::<[u8; 16]>().to_vec())))
        .collect();
    let mut pruned = Fed::new(PRUNE_KEPT, &genesis, &validators);
    let mut archive = Fed::new(0, &genesis, &validators);
    for _ in 0..PRUNE_BLOCKS {
        let mut block = WriteSet::new();
        while block.len() < PRUNE_WRITES {
            block.insert(
                state_key(rng.gen_range(0..PRUNE_KEYS)),
                Some(rng.gen::<[u8; 16]>().to_vec()),
            );
        }
        // Alternate which store goes first, so neither always meets the other's flushes.
        if rng.gen::<bool>() {
            pruned.commit(&block, &validators);
            archive.commit(&block, &validators);
        } else {
            archive.commit(&block, &validators);
            pruned.commit(&block, &validators);
        }
    }
    let (p, a) = (
        pruned.store.require_head().unwrap(),
        archive.store.require_head().unwrap(),
    );
    assert_eq!(p.state_root, a.state_root);
    pruned.store.compact_tree().unwrap();
    archive.store.compact_tree().unwrap();
    let (pu, au) = (
        pruned.store.tree_usage().unwrap(),
        archive.store.tree_usage().unwrap(),
    );
    let param =
        format!("blocks={PRUNE_BLOCKS},writes={PRUNE_WRITES},keys={PRUNE_KEYS},kept={PRUNE_KEPT}");
    line(
        &format!("chain::state/prune_tree_nodes/{param}"),
        pu.nodes as f64,
        "nodes",
        au.nodes as f64,
    );
    line(
        &format!("chain::state/prune_tree_sst/{param}"),
        pu.tree_sst_bytes as f64 / 1e6,
        "MB",
        au.tree_sst_bytes as f64 / 1e6,
    );
    // What the tree costs on disk in all: the pruned store also holds the marks of the versions
    // it keeps (an archive store writes none).
    line(
        &format!("chain::state/prune_tree_and_marks_sst/{param}"),
        (pu.tree_sst_bytes + pu.marks_sst_bytes) as f64 / 1e6,
        "MB",
        (au.tree_sst_bytes + au.marks_sst_bytes) as f64 / 1e6,
    );
    let per_block = |f: &Fed| f.commit_time.as_secs_f64() * 1e3 / PRUNE_BLOCKS as f64;
    line(
        &format!("chain::state/prune_commit/{param}"),
        per_block(&pruned),
        "ms",
        per_block(&archive),
    );
}

/// Whether the command line's filter (criterion's positional argument) selects `name`.
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

criterion_group!(benches, bench);

fn main() {
    if selected("chain::state/prune") {
        pruning();
    }
    let criterion_names = [
        "chain::state/apply",
        "chain::state/prove",
        "chain::state/verify",
    ];
    if criterion_names.iter().any(|n| selected(n)) {
        benches();
    }
    Criterion::default().configure_from_args().final_summary();
    let s = SAMPLES.lock().unwrap();
    for (name, v, unit) in s.iter() {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        println!("{{\"bench\":\"chain::state/{name}\",\"value\":{median:.3},\"unit\":\"{unit}\"}}");
    }
}
