//! # agent — the agent node
//!
//! Job: the node binary that runs a chain validator, a KVS storage node and the gateways devices
//! and wallets talk to.
//!
//! So far: the chain validator. [`config`] reads the TOML node configuration and genesis files
//! and the validator key; [`admin`] is the loopback admin endpoint (`agent status`, transaction
//! submission); [`devnet`] writes a local multi-validator network; [`bench`] measures validators over QUIC;
//! the `agent` binary runs them.
//!
//! May depend on: every library crate; nothing depends on it.

pub mod admin;
pub mod bench;
pub mod config;
pub mod devnet;
