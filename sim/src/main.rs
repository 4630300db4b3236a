//! `sim`: CarChain's simulators. `sim econ` runs the token-economy model; see `sim --help`.

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Econ(args) => sim::econ::cli::run(args),
    }
}
