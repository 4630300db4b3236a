//! The chain commands of the `wallet` binary without a live chain: their help, and every
//! failure that must be a one-line error (exit 1), never a panic or a hang.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chain::ledger::Genesis;
use gateway::network::{AgentEntry, NetworkFile};

const PW: &str = "correct horse battery staple";

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_wallet"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("CARCHAIN_WALLET_PASSWORD", PW)
        .env_remove("CARCHAIN_WALLET_BIP39_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .expect("spawn wallet");
    let r = Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    r
}

fn fails_with(r: &Run, needle: &str) {
    assert!(!r.ok, "expected failure, got: {}", r.stdout);
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert_eq!(
        r.stderr.trim().lines().count(),
        1,
        "not one line: {}",
        r.stderr
    );
    assert!(
        r.stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr {:?} lacks {needle:?}",
        r.stderr
    );
}

/// A network file whose one agent listens nowhere.
fn dead_network(dir: &Path) -> PathBuf {
    let genesis = Genesis::example(1, 7);
    let account = chain::tx::AccountAddress([9; 20]).to_bech32(bitcoin::Network::Regtest);
    let file = NetworkFile {
        genesis,
        agents: vec![AgentEntry {
            name: "agent-0".into(),
            account,
            gateway: "127.0.0.1:9".parse().unwrap(),
            cert_sha256: "00".repeat(32),
            http: None,
        }],
    };
    let path = dir.join("network.json");
    file.save(&path).unwrap();
    path
}

#[test]
fn help_explains_the_chain_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(tmp.path(), &["--help"]);
    for word in ["trips", "get", "range", "put", "balance"] {
        assert!(r.stdout.contains(word), "--help lacks {word}");
    }
    for (cmd, words) in [
        (
            vec!["device", "setup", "--help"],
            vec!["--agent", "--pool-size", "--out", "SetDup", "HKDF"],
        ),
        (
            vec!["device", "reset", "--help"],
            vec!["--agent", "generation"],
        ),
        (
            vec!["trips", "--help"],
            vec!["--date", "--columns", "withholding"],
        ),
        (
            vec!["get", "--help"],
            vec!["--key", "--columns", "START_TIME"],
        ),
        (vec!["range", "--help"], vec!["--start", "--end", "INF_MAX"]),
        (
            vec!["put", "--help"],
            vec!["--format", "--key", "--value", "AttestOwn"],
        ),
        (vec!["balance", "--help"], vec!["m/84'/coin'/0'/0/0"]),
    ] {
        let r = run(tmp.path(), &cmd);
        assert!(r.ok, "{cmd:?}: {}", r.stderr);
        for w in words {
            assert!(r.stdout.contains(w), "{cmd:?} help lacks {w}: {}", r.stdout);
        }
    }
    // Missing mandatory flags are usage errors.
    assert_eq!(run(tmp.path(), &["put", "--key", "{}"]).code, Some(2));
    assert_eq!(run(tmp.path(), &["device", "setup", "V"]).code, Some(2));
}

#[test]
fn chain_commands_fail_cleanly_without_a_usable_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w");
    let net = dead_network(tmp.path());
    let net = net.to_str().unwrap();
    // `init --network FILE` takes the network from the genesis (regtest).
    let r = run(&w, &["--network", net, "init", "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["network"], "regtest");

    // No network file.
    fails_with(&run(&w, &["balance"]), "--network file");
    fails_with(
        &run(&w, &["--network", "regtest", "balance"]),
        "--network file",
    );
    // A missing or malformed file.
    fails_with(
        &run(&w, &["--network", "/nonexistent/net.json", "balance"]),
        "nonexistent",
    );
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"genesis\": 1}").unwrap();
    fails_with(
        &run(&w, &["--network", bad.to_str().unwrap(), "balance"]),
        "not a valid network file",
    );
    // Bad input is refused before anything goes on the wire.
    fails_with(
        &run(
            &w,
            &["--network", net, "trips", "NOPE", "--date", "20160511"],
        ),
        "unknown vid",
    );
    fails_with(
        &run(
            &w,
            &["--network", net, "trips", "NOPE", "--date", "20161311"],
        ),
        "invalid date",
    );
    fails_with(
        &run(
            &w,
            &["--network", net, "get", "V1", "--key", "{\"SESSION_ID\":1}"],
        ),
        "no date",
    );
    fails_with(
        &run(&w, &["--network", net, "get", "V1", "--key", "not json"]),
        "malformed record key",
    );
    fails_with(
        &run(
            &w,
            &[
                "--network",
                net,
                "put",
                "--format",
                "VIN_CODE",
                "--key",
                "[1]",
                "--value",
                "{}",
            ],
        ),
        "json object",
    );
    fails_with(
        &run(
            &w,
            &[
                "--network",
                net,
                "device",
                "setup",
                "V1",
                "--agent",
                "bc1qnotanaddress",
            ],
        ),
        "invalid address",
    );
    fails_with(
        &run(
            &w,
            &[
                "--network",
                net,
                "device",
                "setup",
                "bad vid",
                "--agent",
                "x",
            ],
        ),
        "invalid vid",
    );
    // The device was added to the list by the refused setup; its pool size is now fixed.
    fails_with(
        &run(
            &w,
            &[
                "--network",
                net,
                "device",
                "setup",
                "V1",
                "--agent",
                "x",
                "--pool-size",
                "3",
            ],
        ),
        "already in the device list",
    );
    // An unreachable agent is an error after the call deadline, not a hang or a panic.
    fails_with(
        &run(&w, &["--network", net, "balance"]),
        "no agent reachable",
    );

    // A wallet of another network refuses the chain.
    let t = tmp.path().join("t");
    assert!(run(&t, &["--network", "testnet", "init"]).ok);
    fails_with(&run(&t, &["--network", net, "balance"]), "regtest");
}
