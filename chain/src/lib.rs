//! # chain — the proof-of-stake chain
//!
//! Job: Tendermint-style BFT consensus over QUIC, the ledger state machine (bank, registry and
//! other modules behind a module trait), the name-node index, provable state and RocksDB storage.
//!
//! May depend on: `primitives`, `net` (the shared QUIC/TLS layer), `zk`, `tokenomics`. Never on
//! `kvs`, `market`, `wallet` or `agent`.
//!
//! Sans-IO (always built):
//! - [`consensus`]: the Tendermint core (vote keeper, round state machine, driver, certificates,
//!   the durable signing guard), generic over a [`consensus::Context`];
//! - [`block`]: blocks, headers and [`block::ChainContext`], the production context;
//! - [`tx`], [`ledger`] and [`mempool`]: signed transactions, the module trait with the `bank`,
//!   `staking` and `registry` modules, the genesis file, and admission/ordering of pending
//!   transactions;
//! - [`state`]: the flat state view and the compact sparse Merkle tree committing it;
//! - [`light`]: the light-client verifier (headers against commit certificates, state proofs);
//! - [`sim`]: the deterministic simulation harness (many validators in one process under network
//!   faults, crashes and Byzantine peers, plus the enrollment workload).
//!
//! With the default feature `node`: [`node`], the host — RocksDB storage, QUIC peers whose
//! identity is their validator key, block sync, and the tokio task driving it all. Build with
//! `default-features = false` for the sans-IO crate alone (the fuzz target does).

pub mod block;
pub mod consensus;
pub mod ledger;
pub mod light;
pub mod mempool;
#[cfg(feature = "node")]
pub mod node;
pub mod sim;
pub mod state;
pub mod tx;

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The consensus core refused an input.
    #[error(transparent)]
    Consensus(#[from] consensus::ConsensusError),
    /// Bytes from the network did not decode.
    #[error(transparent)]
    Decode(#[from] sim::wire::DecodeError),
}
