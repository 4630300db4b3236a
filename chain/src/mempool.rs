//! The mempool (placeholder until its slice lands).
