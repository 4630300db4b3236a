//! The ledger state: a flat ordered key-value map (what modules read and write) committed by a
//! Merkle root in every header (what light clients check).
//!
//! Modules see the state through [`StateView`] (read) and produce a [`WriteSet`] per block; the
//! host applies the write set to its store and to the Merkle commitment ([`smt::apply`]) in one
//! atomic step. Queries are answered with a [`StateProof`] against a header's `state_root`.

pub mod smt;
pub mod view;

pub use smt::{
    apply, get_value_hash, prove, MemNodes, NodeReader, ProofError, StateProof, TreeUpdate,
    EMPTY_ROOT,
};
pub use view::{MemState, Overlay, StateError, StateView, WriteSet};
