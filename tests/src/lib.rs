//! # carchain-tests — end-to-end tests
//!
//! Job: the tests in `tests/` that start real processes and talk over loopback QUIC, and the
//! support they share: locating the workspace's binaries, a devnet of real `agent` processes
//! that is torn down whatever happens, polling with a deadline.
//!
//! The binaries (`agent`, `wallet`, `device`) are the ones `cargo test --workspace` builds next
//! to the test executables; running this package alone needs them built first
//! (`cargo build -p agent -p wallet --bins`).
//!
//! May depend on: every crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A workspace binary built beside the running test executable.
///
/// # Panics
/// If it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p agent -p wallet --bins)",
        path.display()
    );
    path
}

/// Polls `cond` every 100 ms until it holds.
///
/// # Panics
/// After `limit`, naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One agent of a devnet.
#[derive(Debug, Clone)]
pub struct AgentProc {
    /// Process id.
    pub pid: u32,
    /// Admin endpoint.
    pub admin: SocketAddr,
    /// Its configuration file (to restart it).
    pub config: PathBuf,
}

/// A devnet of `agent` processes started by `agent devnet`; every process is killed on drop.
#[derive(Debug)]
pub struct Devnet {
    /// The devnet directory.
    pub dir: tempfile::TempDir,
    /// The agents.
    pub agents: Vec<AgentProc>,
    devnet: Child,
    extra: Vec<Child>,
}

impl Devnet {
    /// Starts `n` agents and waits until every one has finalized a block.
    ///
    /// # Panics
    /// If the devnet does not come up within a minute.
    pub fn start(n: usize) -> Devnet {
        let dir = tempfile::tempdir().unwrap();
        let mut devnet = Command::new(bin("agent"))
            .args(["devnet", "--json", "--block-interval-ms", "100"])
            .args(["--validators", &n.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = devnet.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut agents = Vec::new();
        for _ in 0..n {
            let line = lines.next().unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            agents.push(AgentProc {
                pid: u32::try_from(v["pid"].as_u64().unwrap()).unwrap(),
                admin: v["admin"].as_str().unwrap().parse().unwrap(),
                config: PathBuf::from(v["config"].as_str().unwrap()),
            });
        }
        let net = Devnet {
            dir,
            agents,
            devnet,
            extra: Vec::new(),
        };
        for a in &net.agents {
            wait_until(
                "every agent to finalize a block",
                Duration::from_secs(60),
                || height(a.admin).is_some_and(|h| h >= 1),
            );
        }
        net
    }

    /// The network file wallets and devices use.
    pub fn network_file(&self) -> PathBuf {
        self.dir.path().join("network.json")
    }

    /// `kill -9` of agent `i`.
    pub fn kill(&self, i: usize) {
        let pid = self.agents[i].pid;
        let ok = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let admin = self.agents[i].admin;
        wait_until(
            "the killed agent to stop answering",
            Duration::from_secs(10),
            || height(admin).is_none(),
        );
    }

    /// Restarts agent `i` from its configuration (its data directory is kept).
    pub fn restart(&mut self, i: usize) {
        let child = Command::new(bin("agent"))
            .arg("run")
            .arg("--config")
            .arg(&self.agents[i].config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.agents[i].pid = child.id();
        self.extra.push(child);
    }

    /// Runs `agent faucet` to fund `address` with `tokens`.
    ///
    /// # Panics
    /// If the faucet fails.
    pub fn fund(&self, address: &str, tokens: u64) {
        let out = Command::new(bin("agent"))
            .arg("faucet")
            .arg("--devnet")
            .arg(self.dir.path())
            .args(["--to", address, "--tokens", &tokens.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "faucet: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for a in &self.agents {
            let _ = Command::new("kill")
                .args(["-9", &a.pid.to_string()])
                .status();
        }
        for c in self
            .extra
            .iter_mut()
            .chain(std::iter::once(&mut self.devnet))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last committed height reported by an agent's admin endpoint, or `None` if it does not
/// answer within two seconds.
pub fn height(admin: SocketAddr) -> Option<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c =
            tokio::time::timeout(Duration::from_secs(2), agent::admin::Client::connect(admin))
                .await
                .ok()?
                .ok()?;
        tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()?
            .ok()
            .map(|s| s.height)
    })
}

/// Runs a workspace binary with `args` and the wallet password set; returns its output.
pub fn run(bin_name: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin(bin_name))
        .current_dir(dir)
        .env("CARCHAIN_WALLET_PASSWORD", "e2e test password")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The brief's example records (`tests/data/seed-records.json`).
pub fn seed_records() -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/seed-records.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The JSON text of the object that follows the `n`-th occurrence of `"field":` in the seed
/// file, exactly as written. Record keys must keep their written order (it is their sort
/// order), which a parsed `serde_json::Value` does not.
pub fn seed_object_text(field: &str, n: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/seed-records.json");
    let text = std::fs::read_to_string(path).unwrap();
    let tag = format!("\"{field}\":");
    let at = text.match_indices(&tag).nth(n).expect("the field occurs").0 + tag.len();
    let rest = text[at..].trim_start();
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return rest[..=i].to_string();
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced seed file")
}

/// Seed record `index` (0: the trip, 1: the violation, 2: the VIN) as record JSON text
/// `{"format","key","value"}`, the key in its written order.
pub fn seed_record_json(index: usize) -> String {
    let v = &seed_records()[index];
    format!(
        "{{\"format\":{},\"key\":{},\"value\":{}}}",
        v["format"],
        seed_object_text("key", index),
        v["value"]
    )
}
