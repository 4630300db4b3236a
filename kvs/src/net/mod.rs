//! The storage network's wire layer, kept free of KVS policy so it can move to a lower crate
//! and be shared with the chain: length-prefixed, versioned frames with size limits
//! ([`frame`]), the storage-node request/response protocol ([`proto`]), self-signed TLS with
//! certificate pinning ([`tls`]) and the quinn server/client ([`transport`]).
pub mod frame;
pub mod proto;
pub mod tls;
pub mod transport;
