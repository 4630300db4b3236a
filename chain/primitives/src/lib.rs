//! # primitives — the foundation every CarChain crate shares
//!
//! Job: the one canonical binary encoding for everything hashed or signed ([`codec`]),
//! domain-separated hashing ([`hash`]), the record model with its order-preserving key encoding
//! ([`record`]), and the sealed record envelope: per-column AES-256-GCM under a per-record key
//! wrapped with RSA-OAEP for each reader ([`envelope`]).
//!
//! May depend on: `zk` (for the Poseidon `dHash`). Everything above it (chain, kvs, wallet,
//! market, agent) uses these types rather than defining its own.
#![forbid(unsafe_code)]

pub mod bytes;
pub mod codec;
pub mod envelope;
pub mod hash;
pub mod record;

pub use codec::{from_slice, to_vec, CodecError};
pub use envelope::{seal, EnvelopeError, ReaderId, SealedRecord};
pub use hash::{hash, Domain, Hash32};
pub use record::{KeyPart, Record, RecordError, RecordKey, INF_MAX};
