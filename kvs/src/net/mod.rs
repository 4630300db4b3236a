//! The storage network's wire layer: the storage-node request/response protocol ([`proto`]) and
//! the quinn server/client ([`transport`]), over the framing ([`frame`]) and self-signed TLS with
//! certificate pinning ([`tls`]) shared with the chain in the `net` crate.
pub use net::{frame, tls};
pub mod proto;
pub mod transport;

/// ALPN protocol id of the storage protocol.
pub const ALPN: &[u8] = b"carchain-kvs/1";
