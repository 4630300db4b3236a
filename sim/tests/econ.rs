//! Validation of the economic simulator: golden file, determinism across thread counts,
//! step-size invariance of the automatic pool, shipped scenarios, and the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sim::econ::model::{run_world, Row};
use sim::econ::output::{self, RunId};
use sim::econ::scenario::{combinations, parse_sweep, Scenario};
use tokenomics::Amount;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn golden_scenario(overrides: &[(&str, &str)]) -> Scenario {
    let o: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Scenario::load(&dir().join("tests/golden/small.toml"), &o).unwrap()
}

fn csv_of(rows: &[Row]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    output::write_header(&mut w, &[]).unwrap();
    output::write_rows(
        &mut w,
        &RunId {
            run: 0,
            seed: 7,
            params: vec![],
        },
        rows,
    )
    .unwrap();
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// The small scenario reproduces its committed CSV exactly. Regenerate deliberately with
/// `SIM_BLESS=1 cargo test -p sim --test econ golden`.
#[test]
fn golden_small_scenario_matches_committed_csv() {
    let rows = run_world(&golden_scenario(&[]), 0, |_| {}).unwrap();
    let got = csv_of(&rows);
    let path = dir().join("tests/golden/small.csv");
    if std::env::var_os("SIM_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("golden file; bless with SIM_BLESS=1");
    assert_eq!(
        got, want,
        "simulation output changed; if intended, re-bless"
    );
    // The scenario is chosen to pass through every phase.
    let last = rows.last().unwrap();
    assert_eq!(last.phase, tokenomics::Phase::Circulation);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let sc = golden_scenario(&[
        ("cars.initial", "40000"),
        ("cars.target", "40000"),
        ("days", "12"),
    ]);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_world(&sc, 0, |_| {}).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert!(one.iter().any(|r| !r.fees_paid.is_zero()));
}

/// Daily and weekly steps mint the same from the automatic pool at every week boundary, as the
/// mirror rule promises, when fees are exact and storage is waived (storage is billed on the
/// stock at the start of a step, so it is *not* step-size invariant).
#[test]
fn automatic_pool_is_step_size_invariant() {
    let base = [
        ("days", "28"),
        ("cars.initial", "500"),
        ("cars.target", "500"),
        ("agents.shared_fraction", "1.0"),
        ("providers.budget_eur_per_day", "0.0"),
        ("genesis.cap", "\"6000\""),
        ("genesis.fees.put_per_byte", "10000000000"),
        ("genesis.phase1.initial_credits", "\"5\""),
    ];
    let mut daily = base.to_vec();
    daily.push(("step_days", "1"));
    let mut weekly = base.to_vec();
    weekly.push(("step_days", "7"));
    let d = run_world(&golden_scenario(&daily), 0, |_| {}).unwrap();
    let w = run_world(&golden_scenario(&weekly), 0, |_| {}).unwrap();
    assert_eq!(w.len(), 4);
    let cap = golden_scenario(&daily).genesis.pool_caps().unwrap().0;
    for wr in &w {
        let dr = d.iter().find(|r| r.day == wr.day).unwrap();
        assert_eq!(dr.auto_minted, wr.auto_minted, "day {}", wr.day);
        assert_eq!(dr.blocked_puts + wr.blocked_puts, 0);
    }
    // The window covers the exhaustion: below the cap at first, at the cap by the end.
    assert!(
        w[0].auto_minted
            .checked_add(w[0].credits_outstanding)
            .unwrap()
            < cap
    );
    let last = w.last().unwrap();
    assert_eq!(
        last.auto_minted.checked_add(last.credits_outstanding),
        Some(cap)
    );
    assert!(d.iter().all(|r| r.blocked_puts == 0));
}

#[test]
fn shipped_scenarios_parse_and_run_briefly() {
    let mut n = 0;
    for e in std::fs::read_dir(dir().join("scenarios")).unwrap() {
        let p = e.unwrap().path();
        let o = vec![
            ("days".to_owned(), "20".to_owned()),
            ("cars.initial".to_owned(), "500".to_owned()),
            ("cars.target".to_owned(), "1000".to_owned()),
        ];
        let sc = Scenario::load(&p, &o).unwrap();
        let rows = run_world(&sc, 0, |_| {}).unwrap();
        assert_eq!(rows.len(), 20);
        assert!(
            rows.last().unwrap().supply > Amount::ZERO,
            "{}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 3);
}

#[test]
fn sweeps_make_a_grid_and_bad_parameters_are_refused() {
    let a = parse_sweep("cars.median_km_per_day=20,40").unwrap();
    let b = parse_sweep("agents.count=3,4,5").unwrap();
    let grid = combinations(&[a, b]);
    assert_eq!(grid.len(), 6);
    assert_eq!(grid[5][1], ("agents.count".to_owned(), "5".to_owned()));
    assert!(parse_sweep("nothing").is_err());
    let p = dir().join("tests/golden/small.toml");
    assert!(Scenario::load(&p, &[("cars.nope".into(), "1".into())]).is_err());
    assert!(Scenario::load(&p, &[("genesis.pools.prefetch_bps".into(), "3001".into())]).is_err());
    let s = Scenario::load(&p, &[("cars.median_km_per_day".into(), "12.5".into())]).unwrap();
    assert!((s.cars.median_km_per_day - 12.5).abs() < 1e-12);
}

#[test]
fn cli_writes_csv_summary_and_plots_and_benchmarks() {
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sim");
    let scen = dir().join("tests/golden/small.toml");
    let st = Command::new(bin)
        .args(["econ", "--scenario"])
        .arg(&scen)
        .args([
            "--runs",
            "2",
            "--sweep",
            "agents.count=3,4",
            "--set",
            "days=15",
            "--json",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let stdout = String::from_utf8(st.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 4);
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["params"]["agents.count"].is_string());
    }
    let csv = std::fs::read_to_string(out.path().join("golden-small.csv")).unwrap();
    assert!(csv.starts_with("run,seed,agents.count,day,phase,"));
    assert_eq!(csv.lines().count(), 1 + 4 * 15);
    for f in [
        "golden-small-summary.csv",
        "golden-small.png",
        "golden-small.svg",
    ] {
        assert!(
            std::fs::metadata(out.path().join(f)).unwrap().len() > 100,
            "{f}"
        );
    }
    let b = Command::new(bin)
        .args([
            "econ",
            "--bench",
            "--devices",
            "3000",
            "--days",
            "10",
            "--scenario",
        ])
        .arg(&scen)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(b.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["bench"], "sim::econ/devices=3000,days=10");
    assert_eq!(first["unit"], "s");
    assert!(first["value"].as_f64().unwrap() > 0.0);
}
