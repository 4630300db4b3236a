//! # chain — the proof-of-stake chain
//!
//! Job: Tendermint-style BFT consensus over QUIC, the ledger state machine (bank, registry and
//! other modules behind a module trait), the name-node index, provable state and RocksDB storage.
//!
//! May depend on: `primitives`, `zk`, `tokenomics`. Never on `kvs`, `market`, `wallet` or `agent`.
//!
//! So far: [`consensus`], the sans-IO consensus core, and [`sim`], the deterministic
//! simulation harness that runs many validators of that core in one process under network
//! faults, crashes and Byzantine peers (always compiled, so the `sim` crate and tests can call
//! [`sim::run_seeds`] without a feature flag; it has no I/O either).

pub mod block;
pub mod consensus;
pub mod ledger;
pub mod light;
pub mod mempool;
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
