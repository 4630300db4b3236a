//! `sim consensus` end to end: the sweep runs the real consensus simulation and reports in JSON;
//! a replay reproduces one seed; bad arguments are refused.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("sim runs")
}

#[test]
fn sweep_reports_every_seed_and_replay_is_deterministic() {
    let out = sim(&["consensus", "--seeds", "3", "--start", "11", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["seeds"], 3);
    assert!(v["decisions"].as_u64().unwrap() > 0);

    let a = sim(&["consensus", "--replay", "12", "--json"]);
    let b = sim(&["consensus", "--replay", "12", "--json"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "the same seed must give the same run");
}

#[test]
fn bad_arguments_are_refused() {
    let out = sim(&["consensus", "--seeds", "many"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    let out = sim(&["consensus", "--replay", "1", "--seeds", "2"]);
    assert!(!out.status.success());
}
