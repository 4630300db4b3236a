//! Storage nodes over QUIC: in-process servers and real `kvs-node` processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use std::sync::Arc;
use std::time::Duration;

use kvs::cluster::Cluster;
use kvs::model::IndexEntry;
use kvs::net::frame::Frame;
use kvs::net::proto::Response;
use kvs::net::tls::Identity;
use kvs::net::transport::{ClientEndpoint, RemoteNode, Server};
use kvs::node::NodeApi;
use kvs::store::{MemStore, Store};
use kvs::{ClusterConfig, LocalNode, ReadStats, Record, StorageMode};

fn record(i: usize, size: usize) -> Record {
    let body: Vec<u8> = (0..size).map(|j| ((i * 131 + j * 7) % 251) as u8).collect();
    Record::new(
        format!("{{\"SESSION_ID\":{i:06}}}").into_bytes(),
        [
            ("GPS".to_string(), body),
            ("SPEED".to_string(), format!("0,{i}").into_bytes()),
        ],
    )
}

fn read_all(c: &Cluster<RemoteNode>, data: &[(String, Record, IndexEntry)]) {
    for (a, r, e) in data {
        let got = c
            .get_checked(a, &r.key, None, e, &mut ReadStats::default())
            .unwrap()
            .unwrap();
        assert_eq!(got, r.columns);
    }
}

#[test]
fn quic_cluster_reads_with_two_nodes_stopped_and_rejects_bad_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ep = ClientEndpoint::new(rt.handle().clone()).unwrap();
    let mut servers = Vec::new();
    let mut remotes = Vec::new();
    for i in 0..6 {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let node = Arc::new(LocalNode::new(
            format!("node-{i}"),
            store,
            StorageMode::Shared,
        ));
        let id = Identity::generate().unwrap();
        let server = {
            let _g = rt.enter();
            Server::start(node, &id, "127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap()
        };
        let addr = server.local_addr().unwrap();
        remotes.push(Arc::new(
            ep.node(
                &format!("node-{i}"),
                addr,
                Some(&id.fingerprint_hex()),
                Duration::from_secs(5),
            )
            .unwrap(),
        ));
        servers.push(server);
    }
    let c = Cluster::new(remotes.clone(), 1, ClusterConfig::default()).unwrap();
    let mut data = Vec::new();
    for i in 0..12 {
        let a = format!("bc1qnet{}", i % 3);
        let r = record(i, [50, 5000, 200_000][i % 3]);
        let receipt = c.put(&a, r.clone()).unwrap();
        assert!(receipt.missing.is_empty());
        data.push((a, r, receipt.entries[0].1));
    }
    read_all(&c, &data);
    let mut stats = ReadStats::default();
    let proj = c
        .get(&data[2].0, &data[2].1.key, Some(&["SPEED"]), &mut stats)
        .unwrap()
        .unwrap();
    assert_eq!(proj["SPEED"], data[2].1.columns["SPEED"]);
    assert_eq!(stats.bytes_fetched, data[2].1.columns["SPEED"].len() as u64);

    // malformed, unknown and oversized requests get clear errors; the node keeps serving
    let r0 = &remotes[0];
    let garbage = Frame {
        kind: 200,
        body: vec![1, 2, 3],
    }
    .encode(1 << 20)
    .unwrap();
    assert!(matches!(
        r0.call_raw(garbage).unwrap(),
        Response::Error { code: 5, .. }
    ));
    let truncated = Frame {
        kind: 2,
        body: vec![1, 2, 3],
    }
    .encode(1 << 20)
    .unwrap();
    assert!(matches!(
        r0.call_raw(truncated).unwrap(),
        Response::Error { code: 5, .. }
    ));
    let oversized = vec![0u8; (1 << 20) + 100];
    assert!(matches!(
        r0.call_raw(oversized).unwrap(),
        Response::Error { code: 4, .. }
    ));
    assert!(r0
        .manifests_of("bc1qunknown", b"", None, false)
        .unwrap()
        .is_empty());
    read_all(&c, &data);

    servers[1].stop();
    servers[4].stop();
    read_all(&c, &data);
    let keys = c.list_keys("bc1qnet1", &mut ReadStats::default()).unwrap();
    assert_eq!(keys.len(), 4);
}

#[cfg(feature = "rocksdb")]
mod processes {
    use super::*;
    use kvs::KvsError;
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    struct Proc {
        child: Child,
        addr: SocketAddr,
        fp: String,
    }

    fn spawn(id: &str, dir: &Path, listen: &str) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvs-node"))
            .args(["--id", id, "--listen", listen, "--json", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Proc {
            child,
            addr: v["addr"].as_str().unwrap().parse().unwrap(),
            fp: v["cert_sha256"].as_str().unwrap().to_string(),
        }
    }

    #[test]
    fn kill_dash_nine_during_writes_loses_no_acknowledged_record() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ep = ClientEndpoint::new(rt.handle().clone()).unwrap();
        let dirs: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut procs: Vec<Proc> = (0..6)
            .map(|i| spawn(&format!("node-{i}"), dirs[i].path(), "127.0.0.1:0"))
            .collect();
        let remotes: Vec<Arc<RemoteNode>> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Arc::new(
                    ep.node(
                        &format!("node-{i}"),
                        p.addr,
                        Some(&p.fp),
                        Duration::from_secs(2),
                    )
                    .unwrap(),
                )
            })
            .collect();
        let c = Arc::new(Cluster::new(remotes, 1, ClusterConfig::default()).unwrap());

        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let writer = {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..30 {
                    let a = format!("bc1qproc{}", i % 4);
                    let r = record(i, 3000);
                    if let Ok(receipt) = c.put(&a, r.clone()) {
                        acked.push((a, r, receipt.entries[0].1));
                    }
                    tx.send(acked.len()).unwrap();
                }
                acked
            })
        };
        // kill -9 two nodes once some writes are acknowledged, while the writer keeps going
        while rx.recv().unwrap() < 10 {}
        for i in [2usize, 5] {
            procs[i].child.kill().unwrap();
            procs[i].child.wait().unwrap();
        }
        while rx.recv().is_ok() {}
        let acked = writer.join().unwrap();
        assert!(acked.len() >= 10);
        read_all(&c, &acked);

        // restart the killed nodes, then kill -9 and restart everything: nothing acknowledged is lost
        for i in [2usize, 5] {
            let addr = procs[i].addr.to_string();
            procs[i] = spawn(&format!("node-{i}"), dirs[i].path(), &addr);
        }
        for p in procs.iter_mut() {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
        for (i, p) in procs.iter_mut().enumerate() {
            let addr = p.addr.to_string();
            *p = spawn(&format!("node-{i}"), dirs[i].path(), &addr);
        }
        read_all(&c, &acked);
        let unknown = c
            .get("bc1qnobody", b"k", None, &mut ReadStats::default())
            .unwrap();
        assert!(unknown.is_none());
        for p in procs.iter_mut() {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
        let err = c
            .get(
                &acked[0].0,
                &acked[0].1.key,
                None,
                &mut ReadStats::default(),
            )
            .unwrap_err();
        assert!(matches!(err, KvsError::NotEnoughShards { .. }), "{err}");
    }
}
