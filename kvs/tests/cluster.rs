//! In-process cluster tests: 6 (or more) storage nodes at RS(4,2) over real stores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use kvs::audit::{AuditLedger, AuditOutcome, Challenge};
use kvs::model::IndexEntry;
use kvs::node::NodeApi;
use kvs::repair::{NodeState, RepairConfig};
use kvs::store::{MemStore, Store};
#[cfg(feature = "rocksdb")]
use kvs::store::{RocksStore, SyncMode};
use kvs::{ClusterConfig, KvsError, LocalCluster, LocalNode, ReadStats, Record, StorageMode};

fn mem_cluster(n: usize) -> (LocalCluster, Vec<Arc<MemStore>>) {
    let stores: Vec<Arc<MemStore>> = (0..n).map(|_| Arc::new(MemStore::new())).collect();
    let nodes = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Arc::new(LocalNode::new(
                format!("node-{i}"),
                s.clone() as Arc<dyn Store>,
                StorageMode::Shared,
            ))
        })
        .collect();
    (
        LocalCluster::new(nodes, 1, ClusterConfig::default()).unwrap(),
        stores,
    )
}

fn record(i: usize, size: usize) -> Record {
    let key = format!("{{\"SESSION_ID\":{i:06}}}").into_bytes();
    let body: Vec<u8> = (0..size).map(|j| ((i * 131 + j * 7) % 251) as u8).collect();
    Record::new(
        key,
        [
            ("GPS".to_string(), body),
            ("SPEED".to_string(), format!("0,23,52,{i}").into_bytes()),
            ("format".to_string(), b"trip-gps".to_vec()),
        ],
    )
}

fn addr(a: usize) -> String {
    format!("bc1qaddress{a:04}")
}

/// Writes 5 addresses × 6 records (singles and a packed batch) and returns them.
fn populate(c: &LocalCluster) -> Vec<(String, Record, IndexEntry)> {
    let mut out = Vec::new();
    for a in 0..5 {
        let address = addr(a);
        for i in 0..3 {
            let r = record(a * 100 + i, [10, 3000, 70_000][i]);
            let receipt = c.put(&address, r.clone()).unwrap();
            assert!(receipt.missing.is_empty());
            assert_eq!(receipt.durable.len(), 6);
            out.push((address.clone(), r, receipt.entries[0].1));
        }
        let batch: Vec<Record> = (3..6).map(|i| record(a * 100 + i, 100)).collect();
        let receipt = c.put_batch(&address, &batch).unwrap();
        assert_eq!(receipt.entries.len(), 3);
        for r in batch {
            let e = receipt.entries.iter().find(|(k, _)| *k == r.key).unwrap().1;
            out.push((address.clone(), r, e));
        }
    }
    out
}

fn check_all(c: &LocalCluster, data: &[(String, Record, IndexEntry)]) {
    for (address, r, entry) in data {
        let mut stats = ReadStats::default();
        let got = c
            .get_checked(address, &r.key, None, entry, &mut stats)
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            r.columns,
            "record {:?}",
            String::from_utf8_lossy(&r.key)
        );
        let speed = c
            .get(address, &r.key, Some(&["SPEED"]), &mut stats)
            .unwrap()
            .unwrap();
        assert_eq!(speed.len(), 1);
        assert_eq!(speed["SPEED"], r.columns["SPEED"]);
    }
}

#[test]
fn kill_any_two_of_six_every_record_still_readable() {
    let (c, _) = mem_cluster(6);
    let data = populate(&c);
    check_all(&c, &data);
    for a in 0..6 {
        for b in (a + 1)..6 {
            let (na, nb) = (
                c.node(&format!("node-{a}")).unwrap(),
                c.node(&format!("node-{b}")).unwrap(),
            );
            na.set_online(false);
            nb.set_online(false);
            check_all(&c, &data);
            na.set_online(true);
            nb.set_online(true);
        }
    }
    // three down is beyond RS(4,2): a clear error, not wrong data
    for i in 0..3 {
        c.node(&format!("node-{i}")).unwrap().set_online(false);
    }
    let (address, r, _) = &data[1];
    let err = c
        .get(address, &r.key, None, &mut ReadStats::default())
        .unwrap_err();
    assert!(matches!(err, KvsError::NotEnoughShards { .. }), "{err}");
}

#[test]
fn projection_fetches_only_the_named_columns() {
    let (c, _) = mem_cluster(6);
    let r = record(1, 50_000);
    c.put("bc1qproj", r.clone()).unwrap();
    let mut stats = ReadStats::default();
    let got = c
        .get("bc1qproj", &r.key, Some(&["format"]), &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(got["format"], b"trip-gps");
    assert_eq!(stats.bytes_fetched, 8);
    assert_eq!(stats.degraded, 0);
    assert_eq!(stats.addresses_traversed, 1);
    let err = c
        .get("bc1qproj", &r.key, Some(&["nope"]), &mut stats)
        .unwrap_err();
    assert!(matches!(err, KvsError::NoSuchColumn(_)));
    assert!(c
        .get("bc1qproj", b"absent", None, &mut stats)
        .unwrap()
        .is_none());
    assert!(c
        .get("bc1qunknown", &r.key, None, &mut stats)
        .unwrap()
        .is_none());
}

#[test]
fn scans_and_listings_stay_in_one_address_and_count_traversals() {
    let (c, _) = mem_cluster(6);
    let data = populate(&c);
    let address = addr(2);
    let mut stats = ReadStats::default();
    let keys = c.list_keys(&address, &mut stats).unwrap();
    let mut expected: Vec<Vec<u8>> = data
        .iter()
        .filter(|(a, _, _)| *a == address)
        .map(|(_, r, _)| r.key.clone())
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    let rows = c
        .scan(
            &address,
            &expected[1],
            Some(&expected[4]),
            Some(&["SPEED"]),
            100,
            &mut stats,
        )
        .unwrap();
    assert_eq!(
        rows.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        expected[1..4].to_vec()
    );
    let limited = c.scan(&address, &[], None, None, 2, &mut stats).unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(stats.addresses_traversed, 3);
    // a reader that does not know the address must traverse all of them
    let mut all = ReadStats::default();
    let total: usize = (0..5)
        .map(|a| c.list_keys(&addr(a), &mut all).unwrap().len())
        .sum();
    assert_eq!(total, data.len());
    assert_eq!(all.addresses_traversed, 5);
}

#[test]
fn duplicates_are_refused_and_the_index_wins() {
    let (c, _) = mem_cluster(6);
    let r = record(7, 100);
    let receipt = c.put("bc1qdup", r.clone()).unwrap();
    let mut other = r.clone();
    other.columns.insert("GPS".into(), b"forged".to_vec());
    assert!(matches!(
        c.put("bc1qdup", other.clone()),
        Err(KvsError::Duplicate)
    ));
    // the same bytes again are idempotent
    c.put("bc1qdup", r.clone()).unwrap();
    // a chain entry naming another stripe or hash is not satisfied by what is stored
    let mut entry = receipt.entries[0].1;
    entry.root[0] ^= 1;
    let err = c
        .get_checked("bc1qdup", &r.key, None, &entry, &mut ReadStats::default())
        .unwrap_err();
    assert!(matches!(err, KvsError::IndexMismatch(_)));
    let mut entry = receipt.entries[0].1;
    entry.dhash = other.dhash();
    let err = c
        .get_checked("bc1qdup", &r.key, None, &entry, &mut ReadStats::default())
        .unwrap_err();
    assert!(matches!(err, KvsError::IndexMismatch(_)));
}

#[test]
fn writes_report_missing_shards_and_need_k_plus_one() {
    let (c, _) = mem_cluster(6);
    let (_, placement) = c.placement("bc1qquorum").unwrap();
    c.node(&placement[5]).unwrap().set_online(false);
    let receipt = c.put("bc1qquorum", record(1, 1000)).unwrap();
    assert_eq!(receipt.durable.len(), 5);
    assert_eq!(receipt.missing.len(), 1);
    assert_eq!(receipt.missing[0].0, 5);
    assert_eq!(receipt.missing[0].1, placement[5]);
    c.node(&placement[0]).unwrap().set_online(false);
    let err = c.put("bc1qquorum", record(2, 1000)).unwrap_err();
    assert!(
        matches!(
            err,
            KvsError::QuorumNotMet {
                durable: 4,
                need: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_on_disk_is_detected_the_read_is_correct_and_repair_rewrites_it() {
    let (c, stores) = mem_cluster(6);
    let r = record(3, 20_000);
    let receipt = c.put("bc1qflip", r.clone()).unwrap();
    let root = receipt.entries[0].1.root;
    let (_, placement) = c.placement("bc1qflip").unwrap();
    // corrupt data shard 0, which holds the start of the payload
    let victim: usize = placement[0].trim_start_matches("node-").parse().unwrap();
    let mut key = vec![b's'];
    key.extend_from_slice(&root);
    key.push(0);
    let original = stores[victim].get(&key).unwrap().unwrap();
    assert!(stores[victim].mutate(&key, |v| {
        let mid = v.len() / 2;
        v[mid] ^= 0xFF;
    }));
    let mut stats = ReadStats::default();
    let got = c
        .get("bc1qflip", &r.key, None, &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(got, r.columns);
    assert_eq!(stats.degraded, 1);
    let states: BTreeMap<String, NodeState> = (0..6)
        .map(|i| (format!("node-{i}"), NodeState::Up))
        .collect();
    let report = c.repair(&states, 0, &RepairConfig::default()).unwrap();
    assert_eq!(report.corrupt_discarded, 1);
    assert_eq!(report.rebuilt, 1);
    assert_eq!(report.failed, 0);
    assert_eq!(stores[victim].get(&key).unwrap().unwrap(), original);
    let again = c.repair(&states, 0, &RepairConfig::default()).unwrap();
    assert_eq!(again, kvs::RepairReport::default());
    let mut stats = ReadStats::default();
    c.get("bc1qflip", &r.key, None, &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(stats.degraded, 0);
}

#[test]
fn a_node_down_past_grace_is_rebuilt_elsewhere_and_repair_is_idempotent() {
    let (c, _) = mem_cluster(8);
    let data = populate(&c);
    let cfg = RepairConfig { grace_secs: 60 };
    let mut states: BTreeMap<String, NodeState> = (0..8)
        .map(|i| (format!("node-{i}"), NodeState::Up))
        .collect();
    // first round records every node's holdings
    assert_eq!(
        c.repair(&states, 0, &cfg).unwrap(),
        kvs::RepairReport::default()
    );
    c.node("node-3").unwrap().set_online(false);
    states.insert("node-3".into(), NodeState::Down { since: 100 });
    let early = c.repair(&states, 130, &cfg).unwrap();
    assert_eq!(early.rebuilt + early.moved, 0, "{early:?}");
    let late = c.repair(&states, 161, &cfg).unwrap();
    assert!(late.rebuilt > 0, "{late:?}");
    assert_eq!(late.failed, 0);
    assert!(late.unrecoverable.is_empty());
    // the membership drops the dead node; everything is readable with two more nodes down
    c.set_members(
        2,
        (0..8)
            .filter(|i| *i != 3)
            .map(|i| format!("node-{i}"))
            .collect(),
    );
    states.insert("node-3".into(), NodeState::Removed);
    check_all(&c, &data);
    c.node("node-0").unwrap().set_online(false);
    c.node("node-5").unwrap().set_online(false);
    check_all(&c, &data);
    c.node("node-0").unwrap().set_online(true);
    c.node("node-5").unwrap().set_online(true);
    let after = c.repair(&states, 200, &cfg).unwrap();
    assert_eq!(after, kvs::RepairReport::default());
}

#[test]
fn joining_nodes_receive_their_shards_and_leavers_are_drained() {
    let (c, _) = mem_cluster(6);
    let data = populate(&c);
    for i in 6..8 {
        c.attach(Arc::new(LocalNode::new(
            format!("node-{i}"),
            Arc::new(MemStore::new()),
            StorageMode::Shared,
        )));
    }
    c.set_members(2, (0..8).map(|i| format!("node-{i}")).collect());
    let states: BTreeMap<String, NodeState> = (0..8)
        .map(|i| (format!("node-{i}"), NodeState::Up))
        .collect();
    let report = c.repair(&states, 0, &RepairConfig::default()).unwrap();
    assert!(report.moved > 0, "{report:?}");
    assert_eq!(report.rebuilt, 0);
    assert!(!c.node("node-6").unwrap().inventory().unwrap().is_empty());
    check_all(&c, &data);
    let mut stats = ReadStats::default();
    for (a, r, _) in &data {
        c.get(a, &r.key, Some(&["SPEED"]), &mut stats).unwrap();
    }
    assert_eq!(
        stats.degraded, 0,
        "after rebalancing every shard is at its placement"
    );
    assert_eq!(
        c.repair(&states, 0, &RepairConfig::default()).unwrap(),
        kvs::RepairReport::default()
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn restart_on_rocksdb_loses_nothing() {
    let dirs: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let open = |dirs: &[tempfile::TempDir]| {
        let nodes = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let s: Arc<dyn Store> =
                    Arc::new(RocksStore::open_with(d.path(), SyncMode::Fsync).unwrap());
                Arc::new(LocalNode::new(format!("node-{i}"), s, StorageMode::Shared))
            })
            .collect();
        LocalCluster::new(nodes, 1, ClusterConfig::default()).unwrap()
    };
    let data = {
        let c = open(&dirs);
        populate(&c)
    };
    let c = open(&dirs);
    check_all(&c, &data);
    for n in ["node-1", "node-4"] {
        c.node(n).unwrap().set_online(false);
    }
    check_all(&c, &data);
}

#[test]
fn audits_pass_for_honest_nodes_and_fail_or_miss_otherwise() {
    let (c, stores) = mem_cluster(6);
    let r = record(9, 30_000);
    let entry = c.put("bc1qaudit", r).unwrap().entries[0].1;
    let (_, placement) = c.placement("bc1qaudit").unwrap();
    let ledger = AuditLedger::new(Arc::new(MemStore::new()));
    for (i, node) in placement.iter().enumerate() {
        let ch = Challenge {
            root: entry.root,
            index: i as u8,
            seed: [i as u8 + 1; 32],
            samples: 3,
        };
        assert_eq!(
            c.audit(node, &ch, &entry, &ledger).unwrap(),
            AuditOutcome::Passed
        );
    }
    // corrupt shard 1 on its node: audits of it fail
    let victim: usize = placement[1].trim_start_matches("node-").parse().unwrap();
    let mut key = vec![b's'];
    key.extend_from_slice(&entry.root);
    key.push(1);
    stores[victim].mutate(&key, |v| {
        let l = v.len() - 1;
        v[l] ^= 1;
    });
    let ch = Challenge {
        root: entry.root,
        index: 1,
        seed: [0xAB; 32],
        samples: 3,
    };
    assert_eq!(
        c.audit(&placement[1], &ch, &entry, &ledger).unwrap(),
        AuditOutcome::Failed
    );
    // a node that holds nothing fails; an offline node misses
    let ch0 = Challenge {
        root: entry.root,
        index: 0,
        seed: [0xCD; 32],
        samples: 3,
    };
    assert_eq!(
        c.audit(&placement[2], &ch0, &entry, &ledger).unwrap(),
        AuditOutcome::Failed
    );
    c.node(&placement[3]).unwrap().set_online(false);
    let ch3 = Challenge {
        root: entry.root,
        index: 3,
        seed: [0xEF; 32],
        samples: 3,
    };
    assert_eq!(
        c.audit(&placement[3], &ch3, &entry, &ledger).unwrap(),
        AuditOutcome::Missed
    );
    let t = ledger.tallies().unwrap();
    assert_eq!(t[&placement[1]].failed, 1);
    assert_eq!(t[&placement[3]].missed, 1);
    assert_eq!(t[&placement[0]].passed, 1);
}

#[test]
fn private_mode_refuses_foreign_addresses() {
    let nodes: Vec<Arc<LocalNode>> = (0..6)
        .map(|i| {
            Arc::new(LocalNode::new(
                format!("node-{i}"),
                Arc::new(MemStore::new()),
                StorageMode::Private {
                    addresses: ["bc1qmine".to_string()].into(),
                },
            ))
        })
        .collect();
    let c = LocalCluster::new(nodes, 1, ClusterConfig::default()).unwrap();
    c.put("bc1qmine", record(1, 100)).unwrap();
    assert!(matches!(
        c.put("bc1qtheirs", record(1, 100)),
        Err(KvsError::NotAdmitted(_))
    ));
}

/// Storage overhead = bytes held by all nodes (keys, shards, headers, manifests, directory)
/// divided by the cells' bytes, one record per stripe and packed automatically by the
/// `PackingWriter` (64 KiB stripes). Printed as JSON lines; see docs/BENCHMARKS.md.
#[test]
fn storage_overhead_report() {
    let mut results = BTreeMap::new();
    for size in [100usize, 1024, 65_536, 1 << 20] {
        for packed in [false, true] {
            let (c, stores) = mem_cluster(6);
            let records = if size >= 65_536 { 8 } else { 1024 };
            let address = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh";
            let mut writer = kvs::packer::PackingWriter::new(&c, Default::default());
            let mut stripes = 0usize;
            for j in 0..records {
                let r = Record::new(
                    format!("{{\"SESSION_ID\":{j:08}}}").into_bytes(),
                    [("v".to_string(), vec![(j % 251) as u8; size])],
                );
                if packed {
                    stripes += usize::from(writer.put(address, r, 0).unwrap().is_some());
                } else {
                    c.put(address, r).unwrap();
                    stripes += 1;
                }
            }
            stripes += writer.flush().unwrap().len();
            let logical = records * size;
            let stored: usize = stores.iter().map(|s| s.stored_bytes()).sum();
            let ratio = stored as f64 / logical as f64;
            let per_stripe = records as f64 / stripes as f64;
            println!(
                "{{\"bench\":\"kvs::storage_overhead/value={size},packing={},records_per_stripe={per_stripe:.1}\",\"value\":{ratio:.4},\"unit\":\"stored/logical\",\"baseline\":1.5,\"ratio\":{:.4}}}",
                if packed { "auto-64KiB" } else { "none" },
                ratio / 1.5
            );
            results.insert((size, packed), ratio);
            // everything written is readable
            let keys = c.list_keys(address, &mut ReadStats::default()).unwrap();
            assert_eq!(keys.len(), records);
        }
    }
    // RS(4,2) costs 1.5x; large values must come close, packed small ones must stay sane
    assert!(results[&(1 << 20, false)] < 1.51);
    assert!(results[&(65_536, false)] < 1.55);
    assert!(results[&(1024, true)] < 2.0);
    assert!(results[&(100, true)] < 4.0);
    assert!(results[&(100, true)] < results[&(100, false)] / 5.0);
}

/// A node whose range reads wait for a gate (a stuck disk or a slow link).
struct Gated {
    inner: LocalNode,
    stuck: std::sync::atomic::AtomicBool,
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl NodeApi for Gated {
    fn id(&self) -> &str {
        NodeApi::id(&self.inner)
    }
    fn put_shard(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
        shard: &[u8],
        manifest: &kvs::model::Manifest,
    ) -> kvs::Result<()> {
        self.inner.put_shard(root, index, shard, manifest)
    }
    fn get_shard(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
    ) -> kvs::Result<Option<kvs::coding::StoredShard>> {
        self.inner.get_shard(root, index)
    }
    fn get_shard_range(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
        offset: u64,
        len: u64,
    ) -> kvs::Result<Option<Vec<u8>>> {
        if self.stuck.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.gate.lock().unwrap().recv();
        }
        self.inner.get_shard_range(root, index, offset, len)
    }
    fn manifests_of(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> kvs::Result<Vec<kvs::model::Manifest>> {
        self.inner.manifests_of(address, lo, hi, hi_inclusive)
    }
    fn manifest(&self, root: &kvs::merkle::Hash) -> kvs::Result<Option<kvs::model::Manifest>> {
        self.inner.manifest(root)
    }
    fn inventory(&self) -> kvs::Result<Vec<(kvs::merkle::Hash, u8)>> {
        self.inner.inventory()
    }
    fn scrub(&self) -> kvs::Result<Vec<(kvs::merkle::Hash, u8)>> {
        self.inner.scrub()
    }
    fn delete_shard(&self, root: &kvs::merkle::Hash, index: u8) -> kvs::Result<()> {
        self.inner.delete_shard(root, index)
    }
    fn answer_audit(&self, ch: &Challenge) -> kvs::Result<kvs::audit::AuditProof> {
        self.inner.answer_audit(ch)
    }
}

#[test]
fn hedged_reads_do_not_wait_for_a_stuck_node() {
    let mut gates = Vec::new();
    let nodes: Vec<Arc<Gated>> = (0..6)
        .map(|i| {
            let (tx, rx) = std::sync::mpsc::channel();
            gates.push(tx);
            Arc::new(Gated {
                inner: LocalNode::new(
                    format!("node-{i}"),
                    Arc::new(MemStore::new()),
                    StorageMode::Shared,
                ),
                stuck: std::sync::atomic::AtomicBool::new(false),
                gate: std::sync::Mutex::new(rx),
            })
        })
        .collect();
    let cfg = ClusterConfig {
        hedge_after: Some(std::time::Duration::from_millis(20)),
        ..Default::default()
    };
    let c = kvs::cluster::Cluster::new(nodes.clone(), 1, cfg).unwrap();
    let r = record(4, 10_000);
    c.put("bc1qhedge", r.clone()).unwrap();
    let mut stats = ReadStats::default();
    assert_eq!(
        c.get("bc1qhedge", &r.key, None, &mut stats)
            .unwrap()
            .unwrap(),
        r.columns
    );
    assert_eq!(stats.degraded, 0);
    // the node holding data shard 0 stops answering range reads until released
    let (_, placement) = c.placement("bc1qhedge").unwrap();
    let stuck: usize = placement[0].trim_start_matches("node-").parse().unwrap();
    nodes[stuck]
        .stuck
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut stats = ReadStats::default();
    let got = c
        .get("bc1qhedge", &r.key, Some(&["GPS"]), &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(got["GPS"], r.columns["GPS"]);
    assert_eq!(
        stats.degraded, 1,
        "the reconstructing read answered while the direct one was stuck"
    );
    nodes[stuck]
        .stuck
        .store(false, std::sync::atomic::Ordering::SeqCst);
    gates[stuck].send(()).unwrap();
}

#[test]
fn equal_payloads_under_different_keys_or_addresses_stay_distinct() {
    let (c, _) = mem_cluster(6);
    let body = vec![42u8; 1024];
    let a = Record::new(b"key-a".to_vec(), [("v".to_string(), body.clone())]);
    let b = Record::new(b"key-b".to_vec(), [("v".to_string(), body)]);
    let ra = c.put("bc1qsame", a.clone()).unwrap().entries[0].1;
    let rb = c.put("bc1qsame", b.clone()).unwrap().entries[0].1;
    let rc = c.put("bc1qother", a.clone()).unwrap().entries[0].1;
    assert_ne!(ra.root, rb.root);
    assert_ne!(ra.root, rc.root);
    let mut stats = ReadStats::default();
    for (addr, r, e) in [
        ("bc1qsame", &a, ra),
        ("bc1qsame", &b, rb),
        ("bc1qother", &a, rc),
    ] {
        assert_eq!(
            c.get_checked(addr, &r.key, None, &e, &mut stats)
                .unwrap()
                .unwrap(),
            r.columns
        );
    }
    assert_eq!(c.list_keys("bc1qsame", &mut stats).unwrap().len(), 2);
}

#[test]
fn removing_a_node_from_a_small_cluster_rebuilds_without_failed_actions() {
    let (c, _) = mem_cluster(7);
    let data = populate(&c);
    c.node("node-0").unwrap().set_online(false);
    let states: BTreeMap<String, NodeState> = (0..7)
        .map(|i| {
            (
                format!("node-{i}"),
                if i == 0 {
                    NodeState::Removed
                } else {
                    NodeState::Up
                },
            )
        })
        .collect();
    c.set_members(2, (1..7).map(|i| format!("node-{i}")).collect());
    let report = c.repair(&states, 0, &RepairConfig::default()).unwrap();
    assert!(report.rebuilt > 0);
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.unrecoverable.is_empty());
    check_all(&c, &data);
    let mut stats = ReadStats::default();
    for (a, r, _) in &data {
        c.get(a, &r.key, Some(&["SPEED"]), &mut stats).unwrap();
    }
    assert_eq!(stats.degraded, 0);
    assert_eq!(
        c.repair(&states, 0, &RepairConfig::default()).unwrap(),
        kvs::RepairReport::default()
    );
}

fn next_report(h: &kvs::RepairLoopHandle) -> kvs::RepairReport {
    h.next_report(std::time::Duration::from_secs(120))
        .expect("the repair loop reports every round")
        .unwrap()
}

#[test]
fn the_repair_loop_rebuilds_a_dead_node_drains_a_leaver_and_converges() {
    let (c, _) = mem_cluster(8);
    let c = Arc::new(c);
    let data = populate(&c);
    let h = kvs::RepairLoop::new(c.clone(), RepairConfig { grace_secs: 0 })
        .spawn(std::time::Duration::from_millis(5));
    assert_eq!(next_report(&h), kvs::RepairReport::default());
    // a node dies: past the (zero) grace period the loop rebuilds its shards elsewhere
    c.node("node-3").unwrap().set_online(false);
    let mut rebuilt = 0;
    loop {
        let r = next_report(&h);
        assert_eq!(r.failed, 0, "{r:?}");
        assert!(r.unrecoverable.is_empty());
        rebuilt += r.rebuilt;
        if rebuilt > 0 && r == kvs::RepairReport::default() {
            break;
        }
    }
    // a node leaves the membership while still up: its shards are moved off, not rebuilt
    let before = c.node("node-6").unwrap().inventory().unwrap().len();
    assert!(before > 0);
    c.set_members(
        2,
        (0..8)
            .filter(|i| ![3, 6].contains(i))
            .map(|i| format!("node-{i}"))
            .collect(),
    );
    let mut moved = 0;
    loop {
        let r = next_report(&h);
        assert_eq!((r.failed, r.rebuilt), (0, 0), "{r:?}");
        moved += r.moved;
        if moved > 0 && r == kvs::RepairReport::default() {
            break;
        }
    }
    h.stop();
    assert!(moved >= before, "moved {moved} of {before}");
    assert!(c.node("node-6").unwrap().inventory().unwrap().is_empty());
    // every shard is at its placement over the remaining members; any two more may fail
    let mut stats = ReadStats::default();
    for (a, r, _) in &data {
        c.get(a, &r.key, Some(&["SPEED"]), &mut stats).unwrap();
    }
    assert_eq!(stats.degraded, 0);
    c.node("node-6").unwrap().set_online(false);
    c.node("node-0").unwrap().set_online(false);
    c.node("node-5").unwrap().set_online(false);
    check_all(&c, &data);
}

/// A node whose writes and deletes fail once a shared budget is spent: the repairer crashing
/// part-way through a round (nothing after the crash point takes effect).
struct Crashing {
    inner: LocalNode,
    budget: Arc<std::sync::atomic::AtomicI64>,
}

impl Crashing {
    fn spend(&self) -> kvs::Result<()> {
        if self
            .budget
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            Ok(())
        } else {
            Err(KvsError::Unavailable("repairer crashed".into()))
        }
    }
}

impl NodeApi for Crashing {
    fn id(&self) -> &str {
        NodeApi::id(&self.inner)
    }
    fn put_shard(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
        shard: &[u8],
        manifest: &kvs::model::Manifest,
    ) -> kvs::Result<()> {
        self.spend()?;
        self.inner.put_shard(root, index, shard, manifest)
    }
    fn get_shard(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
    ) -> kvs::Result<Option<kvs::coding::StoredShard>> {
        self.inner.get_shard(root, index)
    }
    fn get_shard_range(
        &self,
        root: &kvs::merkle::Hash,
        index: u8,
        offset: u64,
        len: u64,
    ) -> kvs::Result<Option<Vec<u8>>> {
        self.inner.get_shard_range(root, index, offset, len)
    }
    fn manifests_of(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> kvs::Result<Vec<kvs::model::Manifest>> {
        self.inner.manifests_of(address, lo, hi, hi_inclusive)
    }
    fn manifest(&self, root: &kvs::merkle::Hash) -> kvs::Result<Option<kvs::model::Manifest>> {
        self.inner.manifest(root)
    }
    fn inventory(&self) -> kvs::Result<Vec<(kvs::merkle::Hash, u8)>> {
        self.inner.inventory()
    }
    fn scrub(&self) -> kvs::Result<Vec<(kvs::merkle::Hash, u8)>> {
        self.inner.scrub()
    }
    fn delete_shard(&self, root: &kvs::merkle::Hash, index: u8) -> kvs::Result<()> {
        self.spend()?;
        self.inner.delete_shard(root, index)
    }
    fn answer_audit(&self, ch: &Challenge) -> kvs::Result<kvs::audit::AuditProof> {
        self.inner.answer_audit(ch)
    }
}

#[test]
fn an_interrupted_repair_converges_when_run_again() {
    let cfg = RepairConfig { grace_secs: 60 };
    let mut interrupted = 0;
    for crash_after in [0i64, 1, 2, 3, 5, 8, 13, 21, 34] {
        let budget = Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX));
        let nodes: Vec<Arc<Crashing>> = (0..9)
            .map(|i| {
                Arc::new(Crashing {
                    inner: LocalNode::new(
                        format!("node-{i}"),
                        Arc::new(MemStore::new()),
                        StorageMode::Shared,
                    ),
                    budget: budget.clone(),
                })
            })
            .collect();
        let c =
            kvs::cluster::Cluster::new(nodes[..8].to_vec(), 1, ClusterConfig::default()).unwrap();
        let mut data = Vec::new();
        for a in 0..5 {
            for i in 0..3 {
                let r = record(a * 100 + i, [10, 3000, 70_000][i]);
                let e = c.put(&addr(a), r.clone()).unwrap().entries[0].1;
                data.push((addr(a), r, e));
            }
        }
        let mut states: BTreeMap<String, NodeState> = (0..8)
            .map(|i| (format!("node-{i}"), NodeState::Up))
            .collect();
        assert_eq!(
            c.repair(&states, 0, &cfg).unwrap(),
            kvs::RepairReport::default()
        );
        // node-3 dies, node-6 leaves, node-8 joins: rebuilds, moves and drops in one round
        nodes[3].inner.set_online(false);
        c.attach(nodes[8].clone());
        c.set_members(
            2,
            [0, 1, 2, 4, 5, 7, 8]
                .iter()
                .map(|i| format!("node-{i}"))
                .collect(),
        );
        states.insert("node-3".into(), NodeState::Down { since: 0 });
        states.insert("node-6".into(), NodeState::Leaving);
        states.insert("node-8".into(), NodeState::Up);
        budget.store(crash_after, std::sync::atomic::Ordering::SeqCst);
        let first = c.repair(&states, 100, &cfg).unwrap();
        if first.failed > 0 {
            interrupted += 1;
        }
        budget.store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
        let second = c.repair(&states, 100, &cfg).unwrap();
        assert_eq!(second.failed, 0, "crash after {crash_after}: {second:?}");
        assert!(second.unrecoverable.is_empty());
        assert_eq!(
            c.repair(&states, 100, &cfg).unwrap(),
            kvs::RepairReport::default(),
            "crash after {crash_after}: not converged"
        );
        assert!(nodes[6].inner.inventory().unwrap().is_empty());
        let mut stats = ReadStats::default();
        for (a, r, e) in &data {
            let got = c
                .get_checked(a, &r.key, None, e, &mut stats)
                .unwrap()
                .unwrap();
            assert_eq!(got, r.columns);
        }
        assert_eq!(stats.degraded, 0, "crash after {crash_after}");
    }
    assert!(
        interrupted >= 5,
        "only {interrupted} rounds were interrupted"
    );
}

#[test]
fn where_a_node_and_the_index_disagree_the_index_wins_and_repair_rewrites() {
    let (c, _) = mem_cluster(6);
    let address = "bc1qindexwins";
    let r = record(11, 5000);
    let entry = c.put(address, r.clone()).unwrap().entries[0].1;
    let (_, placement) = c.placement(address).unwrap();
    let liar = c.node(&placement[0]).unwrap();
    let original = liar.get_shard(&entry.root, 0).unwrap().unwrap();
    // the node drops its shard and takes a different, well-formed stripe for the same key
    liar.delete_shard(&entry.root, 0).unwrap();
    let mut forged = r.clone();
    forged
        .columns
        .insert("GPS".into(), b"somewhere else".to_vec());
    let other = kvs::model::pack(std::slice::from_ref(&forged)).unwrap();
    let mut manifest = kvs::model::Manifest {
        address: address.into(),
        root: [0; 32],
        params: entry.params,
        payload_len: other.payload.len() as u64,
        epoch: entry.epoch,
        rows: other.rows.clone(),
    };
    let stripe =
        kvs::coding::encode_bound(entry.params, &other.payload, &manifest.digest().unwrap())
            .unwrap();
    manifest.root = stripe.root;
    liar.put_shard(
        &stripe.root,
        0,
        &stripe.stored_shard(0).unwrap().encode(),
        &manifest,
    )
    .unwrap();
    assert_ne!(liar.row(address, &r.key).unwrap().unwrap().root, entry.root);
    // a checked read follows the index, not the node, and notes the disagreement
    let mut stats = ReadStats::default();
    let got = c
        .get_checked(address, &r.key, None, &entry, &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(got, r.columns);
    assert_eq!(stats.index_disagreements, 1);
    // repair against the index drops the contradicting stripe and rewrites the indexed shard
    let states: BTreeMap<String, NodeState> = (0..6)
        .map(|i| (format!("node-{i}"), NodeState::Up))
        .collect();
    let attested: std::collections::BTreeSet<kvs::merkle::Hash> = [entry.root].into();
    let report = c
        .repair_with_index(&states, 0, &RepairConfig::default(), Some(&attested))
        .unwrap();
    assert_eq!(report.displaced, 1, "{report:?}");
    assert_eq!(report.rebuilt, 1, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(
        liar.get_shard(&entry.root, 0).unwrap().unwrap(),
        original,
        "the indexed shard is back"
    );
    assert!(liar.manifest(&stripe.root).unwrap().is_none());
    assert_eq!(liar.row(address, &r.key).unwrap().unwrap().root, entry.root);
    assert_eq!(
        c.repair_with_index(&states, 0, &RepairConfig::default(), Some(&attested))
            .unwrap(),
        kvs::RepairReport::default()
    );
    let mut stats = ReadStats::default();
    assert_eq!(
        c.get_checked(address, &r.key, None, &entry, &mut stats)
            .unwrap()
            .unwrap(),
        r.columns
    );
    assert_eq!((stats.index_disagreements, stats.degraded), (0, 0));
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_flipped_byte_in_a_rocksdb_shard_is_detected_read_correctly_and_rewritten() {
    let dirs: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<Arc<RocksStore>> = dirs
        .iter()
        .map(|d| Arc::new(RocksStore::open_with(d.path(), SyncMode::Fsync).unwrap()))
        .collect();
    let nodes = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Arc::new(LocalNode::new(
                format!("node-{i}"),
                s.clone() as Arc<dyn Store>,
                StorageMode::Shared,
            ))
        })
        .collect();
    let c = LocalCluster::new(nodes, 1, ClusterConfig::default()).unwrap();
    let data = populate(&c);
    let (address, r, entry) = &data[2];
    let (_, placement) = c.placement(address).unwrap();
    let victim: usize = placement[1].trim_start_matches("node-").parse().unwrap();
    let mut key = vec![b's'];
    key.extend_from_slice(&entry.root);
    key.push(1);
    let original = stores[victim].get(&key).unwrap().unwrap();
    let mut flipped = original.clone();
    let at = flipped.len() - 17;
    flipped[at] ^= 0x04;
    stores[victim].put(&key, &flipped).unwrap();
    let mut stats = ReadStats::default();
    let got = c
        .get_checked(address, &r.key, None, entry, &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(&got, &r.columns);
    assert_eq!(stats.degraded, 1);
    let states: BTreeMap<String, NodeState> = (0..6)
        .map(|i| (format!("node-{i}"), NodeState::Up))
        .collect();
    let report = c.repair(&states, 0, &RepairConfig::default()).unwrap();
    assert_eq!(
        (report.corrupt_discarded, report.rebuilt, report.failed),
        (1, 1, 0)
    );
    assert_eq!(stores[victim].get(&key).unwrap().unwrap(), original);
    check_all(&c, &data);
}
