//! `sim econ`: the agent-based token-economy simulator.
//!
//! A [`scenario::Scenario`] (TOML) fixes the genesis parameters — the very
//! [`tokenomics::GenesisParams`] the chain uses — and the behaviour of cars, agent nodes and
//! service providers. [`model::World`] steps it day by day, settling every fee, mint, allocation
//! and sale through [`tokenomics::Issuance`], checking the supply invariants every step, and
//! emitting one tidy [`model::Row`] per step. [`cli`] adds sweeps, Monte Carlo runs, CSV, plots
//! and the benchmark.

pub mod cli;
pub mod model;
pub mod output;
pub mod plot;
pub mod scenario;
