//! # sim — simulations
//!
//! Job: agent-based economic simulation of the token rules and seeded network simulations that
//! drive the deterministic cores, writing tidy CSV and plots.
//!
//! May depend on: `tokenomics`, and the sans-IO cores of `chain`, `kvs` and `market`.
//!
//! Subcommands live in their own modules: [`econ`] is `sim econ`, [`consensus`] is
//! `sim consensus`.

pub mod consensus;
pub mod econ;
