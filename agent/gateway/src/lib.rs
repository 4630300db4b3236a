//! # gateway — how devices and wallets talk to an agent
//!
//! Job: the agent gateway's versioned request/response protocol over QUIC ([`proto`]), its
//! client with fail-over between agents ([`client`]), the mapping of a sealed record onto KVS
//! cells ([`cells`]), transaction building with the chain's own fee rules ([`txs`]), and the checks that make an agent's answers trustworthy without trusting
//! the agent ([`verify`]: headers against the validator set, state against the header).
//!
//! The server side lives in the `agent` crate; this crate holds only what both sides share,
//! so that the wallet and devices depend on it without pulling in a node.
//!
//! May depend on: `primitives`, `chain` (types, light client), `net`, `tokenomics`.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod cells;
pub mod client;
pub mod network;
pub mod proto;
pub mod txs;
pub mod verify;

pub use client::{GatewayClient, GatewayError};
pub use network::NetworkFile;
pub use proto::{ErrorCode, Request, Response};
pub use txs::TxBuilder;
pub use verify::Verifier;
