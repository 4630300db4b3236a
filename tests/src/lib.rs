//! # carchain-tests — end-to-end tests
//!
//! Job: the tests in `tests/` that start real processes and talk over loopback QUIC.
//!
//! May depend on: every crate.
