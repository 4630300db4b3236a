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

#[test]
fn enroll_prints_one_line_per_point_and_replays_exactly() {
    let args = [
        "consensus",
        "enroll",
        "--nodes",
        "4,5",
        "--delay-ms",
        "10",
        "--enrollments",
        "20,40",
        "--block-interval-ms",
        "200",
        "--json",
    ];
    let out = sim(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let names: Vec<&str> = lines.iter().map(|v| v["bench"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "chain::sim::enroll/nodes=4/enrollments=20",
            "chain::sim::enroll/nodes=4/enrollments=40",
            "chain::sim::enroll/nodes=5/enrollments=20",
            "chain::sim::enroll/nodes=5/enrollments=40",
        ]
    );
    for v in &lines {
        assert_eq!(v["unit"], "s");
        assert!(v["value"].as_f64().unwrap() > 0.0);
        assert_eq!(v["txs_final"], 2 * v["enrollments"].as_u64().unwrap());
        assert!(v["blocks"].as_u64().unwrap() >= v["tx_blocks"].as_u64().unwrap());
        assert!(v["host_s"].as_f64().unwrap() >= 0.0);
    }
    // Everything but the host time is a function of the seed.
    let again = sim(&args);
    let strip = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("host_s");
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&out), strip(&again));
}

#[test]
fn enroll_refuses_bad_parameters() {
    let out = sim(&["consensus", "enroll", "--nodes", "0", "--enrollments", "10"]);
    assert!(!out.status.success());
    let out = sim(&["consensus", "enroll", "--enrollments", "ten"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    let out = sim(&[
        "consensus",
        "enroll",
        "--max-block-bytes",
        "10",
        "--enrollments",
        "10",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad configuration"));
}
