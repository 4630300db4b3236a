//! # chain — the proof-of-stake chain
//!
//! Job: Tendermint-style BFT consensus over QUIC, the ledger state machine (bank, registry and
//! other modules behind a module trait), the name-node index, provable state and RocksDB storage.
//!
//! May depend on: `primitives`, `zk`, `tokenomics`. Never on `kvs`, `market`, `wallet` or `agent`.
