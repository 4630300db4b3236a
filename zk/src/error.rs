//! The crate's error type.

/// Everything that can go wrong in `zk`: malformed encodings, wrong shapes, failed setup or
/// proving, and rejected proofs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZkError {
    /// Bytes that should encode a field element or group point do not.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// An input does not fit the circuit's fixed shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The constraint system could not be synthesized or proven.
    #[error("synthesis failed: {0}")]
    Synthesis(#[from] bellman::SynthesisError),
    /// The proof does not verify against these public inputs and key.
    #[error("proof rejected")]
    Rejected,
    /// A parameter or key file failed its integrity check or has the wrong kind.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A ceremony transcript or contribution does not verify.
    #[error("ceremony check failed: {0}")]
    Ceremony(String),
    /// Underlying I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
