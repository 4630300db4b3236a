//! State-tree figures (`cargo bench -p chain --bench state`): applying a block of 1,000 writes
//! to distinct keys (about 500 overwrites, 400 inserts and 100 deletes) to a tree of 100,000
//! keys, proving a key and verifying its proof, over the in-memory node store (so the figures are
//! hashing, encoding and tree walking, not disk). Criterion prints its report; after it, one JSON
//! line per benchmark with the median time per iteration over criterion's samples (warm-up
//! included).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::Instant;

use chain::state::{apply, prove, MemNodes, WriteSet, EMPTY_ROOT};
use criterion::{criterion_group, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let s = SAMPLES.lock().unwrap();
    for (name, v, unit) in s.iter() {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        println!("{{\"bench\":\"chain::state/{name}\",\"value\":{median:.3},\"unit\":\"{unit}\"}}");
    }
}
