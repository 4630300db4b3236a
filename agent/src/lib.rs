//! # agent — the agent node
//!
//! Job: the node binary that runs a chain validator, a KVS storage node and the gateways devices
//! and wallets talk to.
//!
//! [`config`] reads the TOML node configuration and genesis files and the validator key;
//! [`admin`] is the loopback admin endpoint (`agent status`, transaction submission);
//! [`storage`] runs the agent's storage node and its client of the storage cluster;
//! [`gateway`] serves the device/wallet protocol over QUIC and [`http`] the loopback HTTP API
//! (`/health`, `/metrics`, proven state, ciphertext fetch); [`devnet`] writes a local network of
//! agents; [`bench`] measures validators over QUIC and [`bench_data`] the data path end to end;
//! the `agent` binary runs them.
//!
//! May depend on: every library crate; nothing depends on it.

pub mod admin;
pub mod bench;
pub mod bench_data;
pub mod config;
pub mod devnet;
pub mod gateway;
pub mod http;
pub mod storage;

/// The bitcoin network whose addresses `genesis` names.
///
/// # Errors
/// An unknown network name.
pub fn gateway_network(genesis: &chain::ledger::Genesis) -> anyhow::Result<bitcoin::Network> {
    ::gateway::network::bitcoin_network(&genesis.network)
        .ok_or_else(|| anyhow::anyhow!("unknown address network {:?}", genesis.network))
}
