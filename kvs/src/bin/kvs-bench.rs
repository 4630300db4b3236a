//! `kvs-bench`: put/get throughput and latency of a 6-node RS(4,2) cluster on loopback QUIC,
//! printing one JSON object per line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kvs::cluster::Cluster;
use kvs::net::tls::Identity;
use kvs::net::transport::{ClientEndpoint, RemoteNode, Server};
use kvs::store::{MemStore, Store};
use kvs::{ClusterConfig, LocalNode, ReadStats, Record, StorageMode};

/// Measures a 6-node RS(4,2) cluster over loopback QUIC: put and get ops/s, MB/s, p50/p99
/// latency per value size. With `--rocksdb` (build feature `rocksdb`) nodes store in RocksDB
/// under `--data-dir` and raw RocksDB put/get of the same records is measured as the baseline.
#[derive(Debug, Parser)]
#[command(name = "kvs-bench", version)]
struct Args {
    /// Records per value size.
    #[arg(long, default_value_t = 2000)]
    records: usize,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024usize, 65536])]
    sizes: Vec<usize>,
    /// Client threads issuing requests concurrently.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Store shards in RocksDB (fsync per write) instead of memory.
    #[arg(long)]
    rocksdb: bool,
    /// Directory for RocksDB data (a temporary directory if absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output JSON lines (the only format; accepted for CLI uniformity).
    #[arg(long)]
    json: bool,
    /// Instead of put/get: fill an in-process 7-node cluster until one node holds this many
    /// MiB, remove that node, and time the repair that rebuilds its shards elsewhere.
    #[arg(long)]
    repair_mib: Option<usize>,
}

fn store_for(args: &Args, dir: &std::path::Path, name: &str) -> anyhow::Result<Arc<dyn Store>> {
    if args.rocksdb {
        #[cfg(feature = "rocksdb")]
        {
            return Ok(Arc::new(kvs::store::RocksStore::open(dir.join(name))?));
        }
        #[cfg(not(feature = "rocksdb"))]
        {
            let _ = (dir, name);
            anyhow::bail!("built without the rocksdb feature");
        }
    }
    Ok(Arc::new(MemStore::new()))
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

/// Runs `op` over `items` on `threads` threads; returns wall time and per-op latencies.
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

/// Time to rebuild everything a removed node held, in-process (memory stores).
fn repair_bench(args: &Args, held_mib: usize) -> anyhow::Result<()> {
    use kvs::repair::{NodeState, RepairConfig};
    let nodes: Vec<Arc<LocalNode>> = (0..7)
        .map(|i| {
            Arc::new(LocalNode::new(
                format!("node-{i}"),
                Arc::new(MemStore::new()),
                StorageMode::Shared,
            ))
        })
        .collect();
    let stores: Vec<Arc<dyn Store>> = nodes.iter().map(|n| n.store().clone()).collect();
    let cluster = kvs::LocalCluster::new(nodes.clone(), 1, ClusterConfig::default())?;
    let held = |i: usize| -> anyhow::Result<usize> {
        Ok(stores[i]
            .scan_prefix(b"s", usize::MAX)?
            .iter()
            .map(|(_, v)| v.len())
            .sum())
    };
    let value = 1 << 20;
    let mut i = 0usize;
    while held(0)? < held_mib << 20 {
        let body: Vec<u8> = (0..value)
            .map(|j| ((i.wrapping_mul(131).wrapping_add(j)) % 251) as u8)
            .collect();
        cluster.put(
            &format!("bc1qrepair{i:06}"),
            Record::new(format!("{i:08}").into_bytes(), [("v".to_string(), body)]),
        )?;
        i += 1;
    }
    let lost = held(0)?;
    nodes[0].set_online(false);
    let states: std::collections::BTreeMap<String, NodeState> = (0..7)
        .map(|n| {
            (
                format!("node-{n}"),
                if n == 0 {
                    NodeState::Removed
                } else {
                    NodeState::Up
                },
            )
        })
        .collect();
    cluster.set_members(2, (1..7).map(|n| format!("node-{n}")).collect());
    let start = Instant::now();
    let report = cluster.repair(&states, 0, &RepairConfig::default())?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.failed == 0 && report.unrecoverable.is_empty(),
        "repair incomplete: {report:?}"
    );
    let tag = format!(
        "held_mib={},records={i},threads={}",
        lost >> 20,
        args.threads
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
    if let Some(mib) = args.repair_mib {
        return repair_bench(&args, mib);
    }
    let tmp = tempfile_dir(&args)?;
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
            store_for(&args, &tmp, &id)?,
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
    let backend = if args.rocksdb { "rocksdb" } else { "memory" };
    for &size in &args.sizes {
        let records: Vec<(String, Record)> = (0..args.records)
            .map(|i| {
                let body: Vec<u8> = (0..size)
                    .map(|j| ((i.wrapping_mul(131).wrapping_add(j)) % 251) as u8)
                    .collect();
                (
                    format!("bc1qbench{:05}", i % 997),
                    Record::new(
                        format!("size{size}/{i:08}").into_bytes(),
                        [("v".to_string(), body)],
                    ),
                )
            })
            .collect();
        let mb = (size * args.records) as f64 / 1e6;

        let raw = raw_baseline(&args, &tmp, size, &records)?;

        let (wall, lat) = run(&records, args.threads, |(a, r)| {
            cluster.put(a, r.clone())?;
            Ok(())
        })?;
        let tag = format!("size={size},backend={backend}");
        line(
            &format!("kvs::cluster_put_ops/{tag}"),
            args.records as f64 / wall.as_secs_f64(),
            "ops/s",
            raw.map(|r| r.0),
        );
        line(
            &format!("kvs::cluster_put_mbps/{tag}"),
            mb / wall.as_secs_f64(),
            "MB/s",
            None,
        );
        line(
            &format!("kvs::cluster_put_p50/{tag}"),
            pct(&lat, 50),
            "us",
            None,
        );
        line(
            &format!("kvs::cluster_put_p99/{tag}"),
            pct(&lat, 99),
            "us",
            None,
        );

        let (wall, lat) = run(&records, args.threads, |(a, r)| {
            let got = cluster.get(a, &r.key, None, &mut ReadStats::default())?;
            match &got {
                Some(c) if c == &r.columns => {}
                Some(c) => anyhow::bail!(
                    "read back differs for {a}: {:?} vs {:?}",
                    c.get("v").map(Vec::len),
                    r.columns.get("v").map(Vec::len)
                ),
                None => anyhow::bail!("record of {a} not found"),
            }
            Ok(())
        })?;
        line(
            &format!("kvs::cluster_get_ops/{tag}"),
            args.records as f64 / wall.as_secs_f64(),
            "ops/s",
            raw.map(|r| r.1),
        );
        line(
            &format!("kvs::cluster_get_mbps/{tag}"),
            mb / wall.as_secs_f64(),
            "MB/s",
            None,
        );
        line(
            &format!("kvs::cluster_get_p50/{tag}"),
            pct(&lat, 50),
            "us",
            None,
        );
        line(
            &format!("kvs::cluster_get_p99/{tag}"),
            pct(&lat, 99),
            "us",
            None,
        );
    }
    for s in &servers {
        s.stop();
    }
    Ok(())
}

fn tempfile_dir(args: &Args) -> anyhow::Result<PathBuf> {
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kvs-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Raw RocksDB put/get ops/s of the same records (same thread count), when built with it.
fn raw_baseline(
    args: &Args,
    dir: &std::path::Path,
    size: usize,
    records: &[(String, Record)],
) -> anyhow::Result<Option<(f64, f64)>> {
    if !args.rocksdb {
        return Ok(None);
    }
    let store = store_for(args, dir, &format!("raw-{size}"))?;
    let (wall_put, lat) = run(records, args.threads, |(a, r)| {
        let mut k = a.as_bytes().to_vec();
        k.extend_from_slice(&r.key);
        store.put(&k, &r.columns["v"])?;
        Ok(())
    })?;
    let tag = format!("size={size}");
    line(
        &format!("kvs::raw_rocksdb_put_p50/{tag}"),
        pct(&lat, 50),
        "us",
        None,
    );
    let (wall_get, lat) = run(records, args.threads, |(a, r)| {
        let mut k = a.as_bytes().to_vec();
        k.extend_from_slice(&r.key);
        anyhow::ensure!(store.get(&k)?.is_some(), "missing");
        Ok(())
    })?;
    line(
        &format!("kvs::raw_rocksdb_get_p50/{tag}"),
        pct(&lat, 50),
        "us",
        None,
    );
    let n = records.len() as f64;
    Ok(Some((
        n / wall_put.as_secs_f64(),
        n / wall_get.as_secs_f64(),
    )))
}
