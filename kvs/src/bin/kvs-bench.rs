//! `kvs-bench`: put/get throughput and latency of a 6-node RS(4,2) cluster on loopback QUIC
//! against raw RocksDB, and the time to repair a lost node; one JSON object per line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kvs::cluster::Cluster;
use kvs::net::tls::Identity;
use kvs::net::transport::{ClientEndpoint, RemoteNode, Server};
use kvs::repair::{NodeState, RepairConfig};
use kvs::store::{MemStore, Store};
use kvs::{ClusterConfig, LocalNode, ReadStats, Record, StorageMode};

/// Where the storage nodes keep their shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// RocksDB under `--data-dir` (the production backend; needs the `rocksdb` feature).
    Rocksdb,
    /// In-memory maps (no baseline).
    Memory,
}

/// Measures a 6-node RS(4,2) cluster over loopback QUIC: put and get ops/s, MB/s, p50/p99
/// latency per value size, with raw RocksDB put/get of the same records (same durability, same
/// client threads) measured in the same run as the baseline; or, with `--repair-mib`, the time
/// to repair a lost node. Values are pseudo-random (incompressible, like ciphertext).
#[derive(Debug, Parser)]
#[command(name = "kvs-bench", version)]
struct Args {
    /// Records per value size.
    #[arg(long, default_value_t = 2000)]
    records: usize,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024usize, 65536])]
    sizes: Vec<usize>,
    /// Client threads issuing requests concurrently (also the repair's worker threads).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Storage backend of the nodes.
    #[arg(long, value_enum, default_value_t = Backend::Rocksdb)]
    backend: Backend,
    /// Acknowledge RocksDB writes after the WAL write without fsync (survives kill -9, not
    /// power loss); the default fsyncs every acknowledged write, nodes and baseline alike.
    #[arg(long)]
    no_fsync: bool,
    /// Directory for RocksDB data (a fresh directory under the system temp dir if absent;
    /// removed at the end unless given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output JSON lines (the only format; accepted for CLI uniformity).
    #[arg(long)]
    json: bool,
    /// Instead of put/get: fill a `--repair-nodes` cluster until one node holds this many MiB
    /// of shards, kill that node, and time the repair that rebuilds its shards on the others.
    #[arg(long)]
    repair_mib: Option<usize>,
    /// Nodes of the repair benchmark's cluster. When the survivors are fewer than k+m, a fresh
    /// replacement node joins and receives the rebuilt shards.
    #[arg(long, default_value_t = 6)]
    repair_nodes: usize,
    /// Value size of the repair benchmark's records.
    #[arg(long, default_value_t = 1 << 20)]
    repair_value: usize,
}

fn open_store(args: &Args, dir: &Path, name: &str) -> anyhow::Result<Arc<dyn Store>> {
    match args.backend {
        Backend::Memory => Ok(Arc::new(MemStore::new())),
        Backend::Rocksdb => rocks(args, dir, name),
    }
}

#[cfg(feature = "rocksdb")]
fn rocks(args: &Args, dir: &Path, name: &str) -> anyhow::Result<Arc<dyn Store>> {
    use kvs::store::{RocksStore, SyncMode};
    let sync = if args.no_fsync {
        SyncMode::WalOnly
    } else {
        SyncMode::Fsync
    };
    Ok(Arc::new(RocksStore::open_with(dir.join(name), sync)?))
}

#[cfg(not(feature = "rocksdb"))]
fn rocks(_: &Args, _: &Path, _: &str) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("built without the rocksdb feature: pass --backend memory")
}

/// Pseudo-random bytes (splitmix64): stand-in for ciphertext, which does not compress.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn pct(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

fn line(bench: &str, value: f64, unit: &str, baseline: Option<f64>) {
    let mut v = serde_json::json!({ "bench": bench, "value": value, "unit": unit });
    if let Some(b) = baseline {
        v["baseline"] = b.into();
        v["ratio"] = (if b > 0.0 { value / b } else { 0.0 }).into();
    }
    println!("{v}");
}

/// The 1-minute load average, printed at the start and end of every run (shared machine).
fn loadavg(when: &str) {
    let la = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
    if let Some(la) = la {
        line(&format!("kvs::loadavg_1m/at={when}"), la, "load", None);
    }
}

/// Throughput and latency of one operation over a record set.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ops: f64,
    mbps: f64,
    p50: f64,
    p99: f64,
}

impl Measured {
    fn from_run(n: usize, bytes: usize, wall: Duration, lat: &[Duration]) -> Self {
        let secs = wall.as_secs_f64().max(1e-9);
        Self {
            ops: n as f64 / secs,
            mbps: bytes as f64 / 1e6 / secs,
            p50: pct(lat, 50),
            p99: pct(lat, 99),
        }
    }

    fn print(&self, name: &str, tag: &str, base: Option<Measured>) {
        line(
            &format!("{name}_ops/{tag}"),
            self.ops,
            "ops/s",
            base.map(|b| b.ops),
        );
        line(
            &format!("{name}_mbps/{tag}"),
            self.mbps,
            "MB/s",
            base.map(|b| b.mbps),
        );
        line(
            &format!("{name}_p50/{tag}"),
            self.p50,
            "us",
            base.map(|b| b.p50),
        );
        line(
            &format!("{name}_p99/{tag}"),
            self.p99,
            "us",
            base.map(|b| b.p99),
        );
    }
}

/// Runs `op` over `items` on `threads` threads; returns wall time and sorted per-op latencies.
fn run<T: Sync>(
    items: &[T],
    threads: usize,
    op: impl Fn(&T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let start = Instant::now();
    let chunks: Vec<&[T]> = items
        .chunks(items.len().div_ceil(threads.max(1)).max(1))
        .collect();
    let results: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|s| {
        let hs: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let op = &op;
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(chunk.len());
                    for it in chunk.iter() {
                        let t = Instant::now();
                        op(it)?;
                        lat.push(t.elapsed());
                    }
                    anyhow::Ok(lat)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort();
    Ok((wall, all))
}

fn raw_key(address: &str, key: &[u8]) -> Vec<u8> {
    let mut k = address.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// Raw RocksDB put and get of the same records (one database, same durability and threads).
fn raw_baseline(
    args: &Args,
    dir: &Path,
    size: usize,
    records: &[(String, Record)],
) -> anyhow::Result<Option<(Measured, Measured)>> {
    if args.backend != Backend::Rocksdb {
        return Ok(None);
    }
    let store = open_store(args, dir, &format!("raw-{size}"))?;
    let bytes = size * records.len();
    let (wall, lat) = run(records, args.threads, |(a, r)| {
        let v = r
            .columns
            .get("v")
            .ok_or_else(|| anyhow::anyhow!("no value"))?;
        store.put(&raw_key(a, &r.key), v)?;
        Ok(())
    })?;
    let put = Measured::from_run(records.len(), bytes, wall, &lat);
    let (wall, lat) = run(records, args.threads, |(a, r)| {
        let got = store.get(&raw_key(a, &r.key))?;
        anyhow::ensure!(got.as_ref() == r.columns.get("v"), "raw read differs");
        Ok(())
    })?;
    let get = Measured::from_run(records.len(), bytes, wall, &lat);
    Ok(Some((put, get)))
}

fn put_get_bench(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ep = ClientEndpoint::new(rt.handle().clone())?;
    let mut servers = Vec::new();
    let mut remotes = Vec::new();
    for i in 0..6 {
        let id = format!("node-{i}");
        let node = Arc::new(LocalNode::new(
            id.clone(),
            open_store(args, dir, &id)?,
            StorageMode::Shared,
        ));
        let ident = Identity::generate()?;
        let server = {
            let _g = rt.enter();
            Server::start(
                node,
                &ident,
                "127.0.0.1:0".parse()?,
                kvs::net::frame::DEFAULT_MAX_FRAME,
            )?
        };
        remotes.push(Arc::new(ep.node(
            &id,
            server.local_addr()?,
            Some(&ident.fingerprint_hex()),
            Duration::from_secs(10),
        )?));
        servers.push(server);
    }
    let cluster: Cluster<RemoteNode> = Cluster::new(remotes, 1, ClusterConfig::default())?;
    let backend = match args.backend {
        Backend::Rocksdb if args.no_fsync => "rocksdb-walonly",
        Backend::Rocksdb => "rocksdb-fsync",
        Backend::Memory => "memory",
    };
    for &size in &args.sizes {
        let records: Vec<(String, Record)> = (0..args.records)
            .map(|i| {
                (
                    format!("bc1qbench{:05}", i % 997),
                    Record::new(
                        format!("size{size}/{i:08}").into_bytes(),
                        [("v".to_string(), noise((size * 1_000_003 + i) as u64, size))],
                    ),
                )
            })
            .collect();
        let bytes = size * args.records;
        let raw = raw_baseline(args, dir, size, &records)?;
        let tag = format!("size={size},backend={backend},threads={}", args.threads);
        if let Some((put, get)) = raw {
            put.print("kvs::raw_rocksdb_put", &tag, None);
            get.print("kvs::raw_rocksdb_get", &tag, None);
        }

        let (wall, lat) = run(&records, args.threads, |(a, r)| {
            let receipt = cluster.put(a, r.clone())?;
            anyhow::ensure!(
                receipt.missing.is_empty(),
                "shards missing: {:?}",
                receipt.missing
            );
            Ok(())
        })?;
        Measured::from_run(args.records, bytes, wall, &lat).print(
            "kvs::cluster_put",
            &tag,
            raw.map(|r| r.0),
        );

        let (wall, lat) = run(&records, args.threads, |(a, r)| {
            let got = cluster.get(a, &r.key, None, &mut ReadStats::default())?;
            match &got {
                Some(c) if c == &r.columns => {}
                Some(_) => anyhow::bail!("read back differs for {a}"),
                None => anyhow::bail!("record of {a} not found"),
            }
            Ok(())
        })?;
        Measured::from_run(args.records, bytes, wall, &lat).print(
            "kvs::cluster_get",
            &tag,
            raw.map(|r| r.1),
        );
    }
    for s in &servers {
        s.stop();
    }
    Ok(())
}

/// Fills an in-process cluster until one node holds `held_mib` MiB of shards, kills it, and
/// times the repair rounds that bring every stripe back to k+m shards on the survivors (plus a
/// replacement node when the survivors are fewer than k+m).
fn repair_bench(args: &Args, dir: &Path, held_mib: usize) -> anyhow::Result<()> {
    let n_nodes = args.repair_nodes;
    let params = kvs::CodingParams::default();
    anyhow::ensure!(n_nodes >= params.n(), "need at least {} nodes", params.n());
    let mut nodes: Vec<Arc<LocalNode>> = Vec::new();
    for i in 0..n_nodes {
        let id = format!("node-{i}");
        nodes.push(Arc::new(LocalNode::new(
            id.clone(),
            open_store(args, dir, &id)?,
            StorageMode::Shared,
        )));
    }
    let cfg = ClusterConfig {
        repair_threads: args.threads.max(1),
        ..ClusterConfig::default()
    };
    let cluster = kvs::LocalCluster::new(nodes.clone(), 1, cfg)?;
    let victim = "node-0";
    let target = (held_mib as u64) << 20;
    let held: BTreeMap<String, AtomicU64> = nodes
        .iter()
        .map(|n| (n.id().to_string(), AtomicU64::new(0)))
        .collect();
    let next = AtomicUsize::new(0);
    let value = args.repair_value;
    let shard_bytes = params.shard_len(value as u64);
    let fill_start = Instant::now();
    let filled: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..args.threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    while held[victim].load(Ordering::SeqCst) < target {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let receipt = cluster.put(
                            &format!("bc1qrepair{i:07}"),
                            Record::new(
                                format!("{i:08}").into_bytes(),
                                [("v".to_string(), noise(i as u64, value))],
                            ),
                        )?;
                        for (_, id) in &receipt.durable {
                            if let Some(c) = held.get(id) {
                                c.fetch_add(shard_bytes, Ordering::SeqCst);
                            }
                        }
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("writer panicked")))
            })
            .collect()
    });
    for f in filled {
        f?;
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let records = next.load(Ordering::SeqCst);
    let lost = held[victim].load(Ordering::SeqCst);
    let cfg = RepairConfig { grace_secs: 60 };
    let mut states: BTreeMap<String, NodeState> = nodes
        .iter()
        .map(|n| (n.id().to_string(), NodeState::Up))
        .collect();
    // one round while healthy records every node's holdings (as the repair loop would have)
    let healthy = cluster.repair(&states, 0, &cfg)?;
    anyhow::ensure!(
        healthy == kvs::RepairReport::default(),
        "healthy round: {healthy:?}"
    );
    // the node dies; past the grace period its shards count as lost
    nodes[0].set_online(false);
    states.insert(victim.to_string(), NodeState::Down { since: 0 });
    let mut members: Vec<String> = nodes.iter().skip(1).map(|n| n.id().to_string()).collect();
    let replacement = members.len() < params.n();
    if replacement {
        let id = "node-new".to_string();
        cluster.attach(Arc::new(LocalNode::new(
            id.clone(),
            open_store(args, dir, &id)?,
            StorageMode::Shared,
        )));
        states.insert(id.clone(), NodeState::Up);
        members.push(id);
    }
    cluster.set_members(2, members);
    let now = cfg.grace_secs + 1;
    let start = Instant::now();
    let report = cluster.repair(&states, now, &cfg)?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.failed == 0 && report.unrecoverable.is_empty(),
        "repair incomplete: {report:?}"
    );
    let again = cluster.repair(&states, now, &cfg)?;
    anyhow::ensure!(
        again == kvs::RepairReport::default(),
        "a second round still had work: {again:?}"
    );
    // spot-check: records read back whole without reconstruction
    let mut stats = ReadStats::default();
    for i in (0..records).step_by((records / 64).max(1)) {
        let got = cluster
            .get(
                &format!("bc1qrepair{i:07}"),
                format!("{i:08}").as_bytes(),
                None,
                &mut stats,
            )?
            .ok_or_else(|| anyhow::anyhow!("record {i} lost"))?;
        anyhow::ensure!(
            got.get("v") == Some(&noise(i as u64, value)),
            "record {i} differs"
        );
    }
    anyhow::ensure!(stats.degraded == 0, "reads still degraded after repair");
    let backend = match args.backend {
        Backend::Rocksdb if args.no_fsync => "rocksdb-walonly",
        Backend::Rocksdb => "rocksdb-fsync",
        Backend::Memory => "memory",
    };
    let tag = format!(
        "held_mib={},nodes={n_nodes},replacement={},value={value},records={records},backend={backend},threads={}",
        lost >> 20,
        u8::from(replacement),
        args.threads
    );
    line(
        &format!("kvs::repair_fill_secs/{tag}"),
        fill_secs,
        "s",
        None,
    );
    line(&format!("kvs::repair_node_secs/{tag}"), secs, "s", None);
    line(
        &format!("kvs::repair_node_mbps/{tag}"),
        lost as f64 / 1e6 / secs,
        "MB/s",
        None,
    );
    line(
        &format!("kvs::repair_node_rebuilt/{tag}"),
        report.rebuilt as f64,
        "shards",
        None,
    );
    line(
        &format!("kvs::repair_node_moved/{tag}"),
        report.moved as f64,
        "shards",
        None,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (dir, owned) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kvs-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    loadavg("start");
    let res = match args.repair_mib {
        Some(mib) => repair_bench(&args, &dir, mib),
        None => put_get_bench(&args, &dir),
    };
    loadavg("end");
    if owned {
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}
