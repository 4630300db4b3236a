//! # zk — zero-knowledge proofs for CarChain
//!
//! Job: the SNARK-friendly hash that fingerprints every record (`dHash`, Poseidon over the
//! BLS12-381 scalar field, natively and as a bellman gadget), and the Groth16 circuits that settle
//! data-sale disputes and audit mileage without revealing trips.
//!
//! May depend on: nothing of CarChain's own. Every other crate may depend on it.
