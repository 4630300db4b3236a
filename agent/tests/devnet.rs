//! End to end: a 4-validator devnet of real `agent` processes over QUIC on loopback finalizes;
//! `kill -9` of one validator leaves the others finalizing; its restart rejoins and catches up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::admin::Client;
use chain::node::NodeStatus;

const AGENT: &str = env!("CARGO_BIN_EXE_agent");

/// Kills every process it holds when dropped (also when a test fails): our children, and the
/// validators the devnet process started (killing it with SIGKILL would orphan them).
struct Procs(Vec<Child>, Vec<u32>);

impl Drop for Procs {
    fn drop(&mut self) {
        for pid in &self.1 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    pid: u32,
    admin: SocketAddr,
    config: PathBuf,
}

fn status(addr: SocketAddr) -> Option<NodeStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = tokio::time::timeout(Duration::from_secs(2), Client::connect(addr))
            .await
            .ok()?
            .ok()?;
        tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()?
            .ok()
    })
}

fn height(addr: SocketAddr) -> Option<u64> {
    status(addr).map(|s| s.height)
}

/// Polls until `cond` holds, failing after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn devnet_finalizes_survives_a_kill_and_the_restarted_validator_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Command::new(AGENT)
        .args([
            "devnet",
            "--validators",
            "4",
            "--json",
            "--block-interval-ms",
            "100",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = devnet.stdout.take().unwrap();
    let mut procs = Procs(vec![devnet], Vec::new());
    let mut nodes = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..4 {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        procs.1.push(v["pid"].as_u64().unwrap() as u32);
        nodes.push(Node {
            pid: v["pid"].as_u64().unwrap() as u32,
            admin: v["admin"].as_str().unwrap().parse().unwrap(),
            config: PathBuf::from(v["config"].as_str().unwrap()),
        });
    }

    // All four finalize.
    wait_until(
        "every validator at height 3",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| height(n.admin).is_some_and(|h| h >= 3))
        },
    );
    let s = status(nodes[0].admin).unwrap();
    assert_eq!(s.peers, 3, "{s:?}");
    assert_eq!(s.refused_non_validator, 0);

    // kill -9 one validator: the other three (3 of 4 equal stakes > 2/3) keep finalizing.
    let victim = nodes[3].clone();
    let killed = Command::new("kill")
        .args(["-9", &victim.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until(
        "the victim to stop answering",
        Duration::from_secs(10),
        || status(victim.admin).is_none(),
    );
    let at_kill = height(nodes[0].admin).unwrap();
    wait_until(
        "progress without the victim",
        Duration::from_secs(60),
        || {
            nodes[..3]
                .iter()
                .all(|n| height(n.admin).is_some_and(|h| h >= at_kill + 5))
        },
    );

    // Restart it from its data directory: it resumes from its store, syncs and rejoins.
    let restarted = Command::new(AGENT)
        .arg("run")
        .arg("--config")
        .arg(&victim.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(restarted);
    let target = height(nodes[0].admin).unwrap();
    wait_until(
        "the restarted validator to catch up",
        Duration::from_secs(60),
        || height(victim.admin).is_some_and(|h| h >= target),
    );
    // And it keeps up with the others afterwards (it is part of consensus again).
    let later = height(nodes[0].admin).unwrap() + 3;
    wait_until(
        "the restarted validator to keep finalizing",
        Duration::from_secs(60),
        || height(victim.admin).is_some_and(|h| h >= later),
    );
    drop(procs);
}
