//! # zk — zero-knowledge proofs for CarChain
//!
//! Job: the SNARK-friendly hash that fingerprints every record (`dHash`, Poseidon over the
//! BLS12-381 scalar field, natively and as a bellman gadget), and the Groth16 circuits that settle
//! data-sale disputes and audit mileage without revealing trips.
//!
//! May depend on: nothing of CarChain's own. Every other crate may depend on it.
//!
//! Parameters, constant provenance, sponge framing and byte packing are documented in
//! `zk/POSEIDON.md`; circuits, public inputs, padding, the ceremony and figures in
//! `zk/README.md`.
//!
//! Map:
//! * [`poseidon`], [`dhash`]: the native hash and the record fingerprint (re-exported here).
//! * [`gadget`]: their bellman twins (243 constraints per permutation).
//! * [`possession`], [`fair_exchange`], [`mileage`]: the circuits, each with typed public
//!   inputs and `prove_*` / `verify_*`.
//! * [`proof`]: 192-byte proof encoding, `insecure_test_setup`, sealed parameter/key files.
//! * [`ceremony`]: the multi-party phase-2 ceremony behind the `zk-ceremony` binary.

pub mod ceremony;
pub mod dhash;
mod error;
pub mod fair_exchange;
pub mod gadget;
pub mod mileage;
pub mod poseidon;
pub mod possession;
pub mod proof;
pub mod record;

/// The BLS12-381 scalar field element type all hashes and public inputs use.
pub use bls12_381::Scalar;
pub use dhash::{
    dhash, dhash_from_bytes, dhash_scalar, DOMAIN_COLUMN_NAME, DOMAIN_COLUMN_VALUE, DOMAIN_FORMAT,
    DOMAIN_KEY, DOMAIN_RECORD,
};
pub use error::ZkError;
pub use fair_exchange::{prove_fair_exchange, verify_fair_exchange, FairExchangePublic};
pub use mileage::{prove_mileage, verify_mileage, MileagePublic, MileageShape, Trip};
pub use poseidon::{hash_bytes, hash_elements};
pub use possession::{prove_possession, verify_possession, PossessionPublic};
pub use proof::{insecure_test_setup, Keys, PROOF_LEN};
pub use record::{Record, RecordShape};
