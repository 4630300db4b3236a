//! `sim consensus enroll`: the car-enrollment experiment on the consensus simulation.
//!
//! For every (nodes, enrollments) point, that many cars enroll at once — a device-setup
//! transaction, then, once it is final, a put attestation — on a network of honest validators
//! with a fixed one-way delay and per-node uplink bandwidth; the simulated time until every
//! enrollment is final is printed as one JSON line per point, with the blocks it took and the
//! host time the point cost. Agreement, validity and exactly-once finality are checked as the
//! simulation runs.

use std::time::Instant;

use anyhow::{bail, Context as _};
use chain::sim::enroll::{scenario, tx_sizes, Workload};
use chain::sim::run;
use clap::Args;
use serde_json::json;

/// Arguments of `sim consensus enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Validator counts to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "5")]
    pub nodes: Vec<usize>,
    /// One-way link delay in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
    /// Uplink bandwidth of every validator in megabits per second.
    #[arg(long, default_value_t = 100)]
    pub bandwidth_mbps: u64,
    /// Pause between a decision and the next height (the commit timeout), in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub block_interval_ms: u64,
    /// Concurrent enrollments to sweep (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,500,1000,2000,5000,10000"
    )]
    pub enrollments: Vec<u32>,
    /// Largest block in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_block_bytes: u64,
    /// Most transactions per block.
    #[arg(long, default_value_t = 20_000)]
    pub max_block_txs: u32,
    /// One-way delay between a car's client and its validator, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub client_delay_ms: u64,
    /// Simulated seconds after which a point counts as failed (liveness).
    #[arg(long, default_value_t = 3_600)]
    pub bound_s: u64,
    /// Seed of the run (key generation and gossip phases).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON lines (the default prints the same figures as text).
    #[arg(long)]
    pub json: bool,
}

/// Runs every point of the sweep.
///
/// # Errors
/// Bad parameters, or a broken invariant (agreement, validity, exactly-once, liveness).
pub fn run_enroll(args: &EnrollArgs) -> anyhow::Result<()> {
    if args.bandwidth_mbps == 0 || args.nodes.contains(&0) {
        bail!("--nodes and --bandwidth-mbps must be positive");
    }
    let (setup_bytes, attest_bytes) = tx_sizes();
    let bandwidth = args.bandwidth_mbps.saturating_mul(1_000_000) / 8;
    for &nodes in &args.nodes {
        for &enrollments in &args.enrollments {
            let mut w = Workload::new(enrollments);
            w.max_block_bytes = args.max_block_bytes;
            w.max_block_txs = args.max_block_txs;
            w.client_delay_ms = args.client_delay_ms;
            let config = scenario(
                nodes,
                args.delay_ms,
                bandwidth,
                args.block_interval_ms,
                w,
                args.bound_s.saturating_mul(1000),
            );
            let started = Instant::now();
            let report = run(&config, args.seed).map_err(|f| {
                anyhow::anyhow!(
                    "nodes={nodes} enrollments={enrollments} seed={}: {f}",
                    args.seed
                )
            })?;
            let host_s = started.elapsed().as_secs_f64();
            let wr = report
                .workload
                .context("the simulation returned no workload report")?;
            // Empty blocks are 24 bytes; the mean is over blocks carrying transactions.
            let mean_block = wr
                .block_bytes
                .saturating_sub(wr.blocks.saturating_sub(wr.tx_blocks) * 24)
                .checked_div(wr.tx_blocks)
                .unwrap_or(0);
            let secs = |ms: u64| ms as f64 / 1000.0;
            let bench = format!("chain::sim::enroll/nodes={nodes}/enrollments={enrollments}");
            if args.json {
                println!(
                    "{}",
                    json!({
                        "bench": bench, "value": secs(wr.all_final_ms), "unit": "s",
                        "setups_final_s": secs(wr.setups_final_ms),
                        "everywhere_final_s": secs(wr.everywhere_final_ms),
                        "blocks": wr.blocks, "tx_blocks": wr.tx_blocks,
                        "extra_rounds": wr.extra_rounds, "max_round": wr.max_round,
                        "mean_block_bytes": mean_block, "max_block_bytes": wr.max_block_bytes,
                        "txs_final": wr.txs_final,
                        "bytes_sent": report.bytes, "proposal_bytes": wr.proposal_bytes,
                        "tx_gossip_bytes": wr.tx_gossip_bytes, "sync_bytes": wr.sync_bytes,
                        "messages": report.messages,
                        "nodes": nodes, "enrollments": enrollments, "delay_ms": args.delay_ms,
                        "bandwidth_mbps": args.bandwidth_mbps,
                        "block_interval_ms": args.block_interval_ms,
                        "block_limit_bytes": args.max_block_bytes,
                        "block_limit_txs": args.max_block_txs,
                        "setup_tx_bytes": setup_bytes, "attest_tx_bytes": attest_bytes,
                        "seed": args.seed, "host_s": host_s,
                    })
                );
            } else {
                println!(
                    "{bench}: all final after {:.1} s simulated (setups {:.1} s, every node \
                     {:.1} s); {} blocks, {} with transactions, mean {} B, largest {} B; \
                     {:.1} s on this host",
                    secs(wr.all_final_ms),
                    secs(wr.setups_final_ms),
                    secs(wr.everywhere_final_ms),
                    wr.blocks,
                    wr.tx_blocks,
                    mean_block,
                    wr.max_block_bytes,
                    host_s
                );
            }
        }
    }
    Ok(())
}
