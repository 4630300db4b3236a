//! # agent — the agent node
//!
//! Job: the node binary that runs a chain validator, a KVS storage node and the gateways devices
//! and wallets talk to.
//!
//! May depend on: every library crate; nothing depends on it.
