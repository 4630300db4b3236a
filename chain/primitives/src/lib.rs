//! # primitives — the foundation every CarChain crate shares
//!
//! Job: the one canonical binary encoding for everything hashed or signed ([`codec`]),
//! domain-separated hashing ([`hash`]), the record model with its order-preserving key encoding
//! ([`record`]), and the sealed record envelope: per-column AES-256-GCM under a per-record key
//! wrapped with RSA-OAEP for each reader ([`envelope`]).
//!
//! May depend on: `zk` (for the Poseidon `dHash`). Everything above it (chain, kvs, wallet,
//! market, agent) uses these types rather than defining its own.
