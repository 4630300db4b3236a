//! # net — shared QUIC/TLS setup and framing
//!
//! Job: the wire layer the chain's peer network and the storage cluster both use, free of
//! either's policy: length-prefixed, versioned frames with size limits ([`frame`]) and
//! self-signed TLS for quinn with optional certificate pinning ([`tls`]). Protocols choose
//! their own ALPN id; identities above TLS (validator keys, storage membership) are the
//! callers' business.
//!
//! May depend on: third-party crates only.

pub mod frame;
pub mod tls;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    /// TLS or QUIC configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A pinned certificate fingerprint is malformed.
    #[error("certificate fingerprint: {0}")]
    Fingerprint(&'static str),
    /// Reading or writing identity files failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
