//! The ledger state: a flat ordered key-value map (what modules read and write) committed by a
//! Merkle root in every header (what light clients check).
//!
//! Modules see the state through [`StateView`] (read) and produce a [`WriteSet`] per block; the
//! host applies the write set to its store and to the Merkle commitment in one atomic step.

pub mod view;

pub use view::{MemState, Overlay, StateError, StateView, WriteSet};
