//! `sim consensus`: seeded sweeps of the chain's consensus simulation.
//!
//! Each seed draws a network (4–10 validators, stakes, up to a third Byzantine, latency, loss,
//! partitions, crashes) and runs the real consensus core over it; agreement, validity and
//! liveness after the network heals are checked on every run. A failure prints the seed, which
//! `--replay SEED` reproduces exactly. `sim consensus enroll` runs the car-enrollment
//! experiment ([`enroll`]).

use anyhow::bail;
use chain::sim::{run_seed, run_seeds_with};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

pub mod enroll;

/// Arguments of `sim consensus`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConsensusArgs {
    /// An experiment instead of the seed sweep.
    #[command(subcommand)]
    pub command: Option<ConsensusCommand>,
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

/// Experiments on the consensus simulation.
#[derive(Debug, Subcommand)]
pub enum ConsensusCommand {
    /// Concurrent car enrollments (device setup, then first report) → simulated time until
    /// all are final; one JSON line per (nodes, enrollments) point.
    Enroll(enroll::EnrollArgs),
}

/// Runs the sweep (or the replay, or an experiment); an error names the failing seed.
///
/// # Errors
/// A broken invariant at some seed.
pub fn run(args: ConsensusArgs) -> anyhow::Result<()> {
    if let Some(ConsensusCommand::Enroll(e)) = &args.command {
        return enroll::run_enroll(e);
    }
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
