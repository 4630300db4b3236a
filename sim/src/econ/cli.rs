//! The `sim econ` command line.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::model::{run_world, Row};
use super::output::{self, RunId};
use super::plot::{self, Series};
use super::scenario::{self, Scenario};

/// Options of `sim econ`.
#[derive(Debug, Args)]
#[command(
    about = "Simulate the token economy of a scenario file",
    long_about = "Simulate the token economy: cars put data and pay fees (phase-1 mirror mint), \
agent nodes earn fees and per-epoch prefetch allocations (phase 2), service providers buy tokens \
(phase-3 sale, then the market) and data. Every payment goes through the `tokenomics` rules and \
the supply invariants are checked every step.\n\nWrites OUT/<name>.csv (tidy: run, seed, swept \
parameters, day, variables), OUT/<name>-summary.csv (pool exhaustion days and final values) and \
OUT/<name>.png/.svg (dashboard).\n\nExample: sim econ --scenario sim/scenarios/baseline.toml \
--runs 4 --sweep cars.median_km_per_day=20,40 --out out/econ"
)]
pub struct EconArgs {
    /// Scenario file (TOML); see sim/scenarios/ for documented examples.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Monte Carlo runs per parameter combination (overrides the scenario's `runs`).
    #[arg(long, value_name = "N")]
    pub runs: Option<u32>,
    /// Base seed (overrides the scenario's `seed`); run r uses seed + r.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Sweep a parameter by its dotted path over values, e.g. `cars.median_km_per_day=20,40`
    /// or `genesis.phase1.initial_credits=0,100000000`; repeat for a grid.
    #[arg(long, value_name = "PARAM=A,B,C")]
    pub sweep: Vec<String>,
    /// Set one parameter by dotted path, e.g. `days=365`.
    #[arg(long = "set", value_name = "PARAM=V")]
    pub set: Vec<String>,
    /// Output directory (created if missing).
    #[arg(
        long,
        visible_alias = "data-dir",
        value_name = "DIR",
        default_value = "out/econ"
    )]
    pub out: PathBuf,
    /// Skip the PNG/SVG dashboard.
    #[arg(long)]
    pub no_plots: bool,
    /// Worker threads (results are identical for any number).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print machine-readable JSON lines (one per run, or per benchmark figure) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Benchmark: one run with `--devices` cars registered from day 0 for `--days` days; prints
    /// JSON lines with the wall time and peak RSS; writes nothing.
    #[arg(long)]
    pub bench: bool,
    /// Cars in the benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub devices: u32,
    /// Days in the benchmark.
    #[arg(long, default_value_t = 1095)]
    pub days: u32,
}

fn split_kv(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("expected PARAM=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Peak resident set size of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User plus system CPU seconds used by this process so far (Linux), if known.
pub fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `sim econ`.
pub fn run(args: EconArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("configuring threads")?;
    }
    let mut sets: Vec<(String, String)> = args
        .set
        .iter()
        .map(|s| split_kv(s))
        .collect::<anyhow::Result<_>>()?;
    if let Some(r) = args.runs {
        sets.push(("runs".into(), r.to_string()));
    }
    if let Some(s) = args.seed {
        sets.push(("seed".into(), s.to_string()));
    }
    if args.bench {
        return bench(&args, sets);
    }
    let sweeps: Vec<(String, Vec<String>)> = args
        .sweep
        .iter()
        .map(|s| scenario::parse_sweep(s))
        .collect::<anyhow::Result<_>>()?;
    let combos = scenario::combinations(&sweeps);
    let scenarios: Vec<(Vec<(String, String)>, Scenario)> = combos
        .into_iter()
        .map(|c| {
            let mut all = sets.clone();
            all.extend(c.iter().cloned());
            Scenario::load(&args.scenario, &all).map(|s| (c, s))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some((_, first)) = scenarios.first() else {
        anyhow::bail!("no parameter combination to run");
    };
    let name = first.name.clone();
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let steps: u64 = scenarios
        .iter()
        .map(|(_, s)| u64::from(s.runs) * u64::from(s.days.div_ceil(s.step_days)))
        .sum();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps {msg}",
        )
        .context("progress template")?,
    );
    let csv_path = args.out.join(format!("{name}.csv"));
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let param_names: Vec<String> = sweeps.iter().map(|(k, _)| k.clone()).collect();
    output::write_header(&mut csv, &param_names)?;
    let sum_path = args.out.join(format!("{name}-summary.csv"));
    let mut sum = csv::Writer::from_path(&sum_path)?;
    let mut head = vec!["run".to_owned(), "seed".to_owned()];
    head.extend(param_names.iter().cloned());
    head.extend(
        [
            "automatic_exhausted_day",
            "prefetch_exhausted_day",
            "circulation_exhausted_day",
            "final_supply",
            "final_price_eur",
            "final_gini",
            "community_fund_eur",
        ]
        .map(String::from),
    );
    sum.write_record(&head)?;

    let mut kept: Vec<(String, Vec<Row>, output::Exhaustion)> = Vec::new();
    let mut run_index = 0u32;
    for (combo, sc) in &scenarios {
        for r in 0..sc.runs {
            let seed = sc.seed.wrapping_add(u64::from(r));
            bar.set_message(format!("run {run_index}"));
            let rows = run_world(sc, r, |_| bar.inc(1))?;
            let caps = sc.genesis.pool_caps()?;
            let ex = output::exhaustion(&rows, caps);
            let id = RunId {
                run: run_index,
                seed,
                params: combo.clone(),
            };
            output::write_rows(&mut csv, &id, &rows)?;
            let last = rows.last().context("empty run")?;
            let opt = |d: Option<u32>| d.map_or(String::new(), |d| d.to_string());
            let mut rec = vec![run_index.to_string(), seed.to_string()];
            rec.extend(combo.iter().map(|(_, v)| v.clone()));
            rec.extend([
                opt(ex.automatic),
                opt(ex.prefetch),
                opt(ex.circulation),
                last.supply.to_string(),
                format!("{:.6}", last.price_eur),
                format!("{:.6}", last.gini),
                format!("{:.2}", last.community_fund_eur),
            ]);
            sum.write_record(&rec)?;
            if args.json {
                let j = serde_json::json!({
                    "scenario": name, "run": run_index, "seed": seed,
                    "params": combo.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                    "exhaustion_day": ex,
                    "final_supply": last.supply.to_string(),
                    "final_price_eur": last.price_eur,
                    "final_gini": last.gini,
                    "community_fund_eur": last.community_fund_eur,
                });
                println!("{j}");
            }
            let label = if combo.is_empty() {
                format!("seed {seed}")
            } else {
                let p: Vec<String> = combo
                    .iter()
                    .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
                    .collect();
                format!("{} seed {seed}", p.join(" "))
            };
            kept.push((label, rows, ex));
            run_index += 1;
        }
    }
    csv.flush()?;
    sum.flush()?;
    bar.finish_and_clear();
    if !args.no_plots {
        let series: Vec<Series<'_>> = kept
            .iter()
            .map(|(label, rows, ex)| Series {
                label: label.clone(),
                rows,
                exhaustion: ex.clone(),
            })
            .collect();
        let title = format!("{name}: {}", first.description);
        plot::dashboard(&args.out.join(&name), &title, &series)?;
    }
    if !args.json {
        eprintln!(
            "wrote {}, {} and the {name}.png/.svg dashboard in {}",
            csv_path.display(),
            sum_path.display(),
            args.out.display()
        );
    }
    Ok(())
}

fn bench(args: &EconArgs, mut sets: Vec<(String, String)>) -> anyhow::Result<()> {
    sets.extend([
        ("cars.initial".into(), args.devices.to_string()),
        ("cars.target".into(), args.devices.to_string()),
        ("days".into(), args.days.to_string()),
        ("runs".into(), "1".into()),
    ]);
    let sc = Scenario::load(&args.scenario, &sets)?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let rows = run_world(&sc, 0, |_| {})?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
    let name = format!("sim::econ/devices={},days={}", args.devices, args.days);
    println!(
        "{}",
        serde_json::json!({"bench": name, "value": secs, "unit": "s",
            "cpu_s": cpu, "threads": rayon::current_num_threads(), "steps": rows.len()})
    );
    if let Some(mib) = peak_rss_mib() {
        println!(
            "{}",
            serde_json::json!({"bench": format!("{name}/peak_rss"), "value": mib, "unit": "MiB"})
        );
    }
    Ok(())
}
