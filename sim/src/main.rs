//! `sim`: CarChain's simulators. `sim econ` runs the token-economy model, `sim consensus` the
//! consensus sweeps; see `sim --help`.

use clap::{Parser, Subcommand};

/// CarChain simulators: seeded, reproducible runs that write tidy CSV and plots.
#[derive(Parser)]
#[command(name = "sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Token economy: cars, agent nodes and service providers under the three issuance phases.
    Econ(sim::econ::cli::EconArgs),
    /// Consensus: seeded sweeps of validators under latency, loss, partitions, crashes and
    /// Byzantine peers; prints the first failing seed, which `--replay SEED` reproduces.
    Consensus(sim::consensus::ConsensusArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Econ(args) => sim::econ::cli::run(args),
        Command::Consensus(args) => sim::consensus::run(args),
    }
}
