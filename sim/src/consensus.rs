//! `sim consensus`: seeded sweeps of the chain's consensus simulation.
//!
//! Each seed draws a network (4–10 validators, stakes, up to a third Byzantine, latency, loss,
//! partitions, crashes) and runs the real consensus core over it; agreement, validity and
//! liveness after the network heals are checked on every run. A failure prints the seed, which
//! `--replay SEED` reproduces exactly.

use anyhow::bail;
use chain::sim::{run_seed, run_seeds_with};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Arguments of `sim consensus`.
#[derive(Debug, Args)]
pub struct ConsensusArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Run only this seed and print its report (to reproduce a failure).
    #[arg(long, value_name = "SEED", conflicts_with_all = ["seeds", "start"])]
    pub replay: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the sweep (or the replay); an error names the failing seed.
///
/// # Errors
/// A broken invariant at some seed.
pub fn run(args: ConsensusArgs) -> anyhow::Result<()> {
    if let Some(seed) = args.replay {
        return match run_seed(seed) {
            Ok(r) if args.json => {
                println!(
                    "{}",
                    json!({"seed": seed, "ok": true, "validators": r.validators,
                           "byzantine": r.byzantine, "honest_height": r.honest_height,
                           "messages": r.messages, "liveness_ms": r.liveness_ms})
                );
                Ok(())
            }
            Ok(r) => {
                println!("seed {seed}: ok — {r:?}");
                Ok(())
            }
            Err(failure) => bail!("seed {seed} fails: {failure}"),
        };
    }
    let end = args.start.saturating_add(args.seeds);
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.seeds)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = run_seeds_with(args.start..end, |_| bar.inc(1));
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "seeds": s.runs, "start": args.start,
                           "decisions": s.decisions, "messages": s.messages,
                           "evidence": s.evidence, "garbage_rejected": s.garbage_rejected,
                           "restarts": s.restarts, "max_liveness_ms": s.max_liveness_ms})
                );
            } else {
                println!(
                    "{} seeds from {}: all passed (agreement, validity, liveness after heal); \
                     {} decisions, {} evidence, {} garbage messages refused, {} restarts, \
                     slowest recovery after heal {} ms of simulated time",
                    s.runs,
                    args.start,
                    s.decisions,
                    s.evidence,
                    s.garbage_rejected,
                    s.restarts,
                    s.max_liveness_ms
                );
            }
            Ok(())
        }
        Err(f) => bail!(
            "seed {} fails: {} (replay with `sim consensus --replay {}`)",
            f.seed,
            f.failure,
            f.seed
        ),
    }
}
