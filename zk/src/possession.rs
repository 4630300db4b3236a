//! Circuit `possession`: "I know a record whose dHash is D", bound to a verifier's challenge and
//! to the prover's address.
//!
//! Public inputs, in order: `[dHash, challenge, prover]`. Replay protection comes from these
//! public inputs (a fresh challenge per dispute, the prover's address), never from proof bytes:
//! Groth16 proofs are re-randomisable, so a copied or re-randomised proof still only verifies
//! for the same (challenge, prover).

use crate::gadget::Elem;
use crate::poseidon::hash_bytes;
use crate::proof::{prove_encoded, verify_encoded, Keys, PROOF_LEN};
use crate::record::{Record, RecordShape, RecordVar};
use crate::ZkError;
use bellman::gadgets::boolean::{AllocatedBit, Boolean};
use bellman::gadgets::{multipack, sha256::sha256};
use bellman::groth16::PreparedVerifyingKey;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use sha2::{Digest, Sha256, Sha512};

/// Domain tag for mapping an address to a field element.
pub const DOMAIN_ADDRESS: u64 = 16;

/// Maps a prover's address string (e.g. bech32) to the field element used as public input.
pub fn address_to_scalar(address: &str) -> Scalar {
    hash_bytes(DOMAIN_ADDRESS, address.as_bytes())
}

/// Maps arbitrary challenge bytes (e.g. 32 random bytes chosen by the validator) to a field
/// element, uniformly (SHA-512 reduced mod p).
pub fn challenge_to_scalar(challenge: &[u8]) -> Scalar {
    let wide: [u8; 64] = Sha512::digest(challenge).into();
    Scalar::from_bytes_wide(&wide)
}

/// The public statement of a possession proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PossessionPublic {
    /// The record's dHash as a field element.
    pub dhash: Scalar,
    /// The validator's challenge.
    pub challenge: Scalar,
    /// The prover's address as a field element ([`address_to_scalar`]).
    pub prover: Scalar,
}

impl PossessionPublic {
    /// Public inputs in circuit order.
    pub fn inputs(&self) -> [Scalar; 3] {
        [self.dhash, self.challenge, self.prover]
    }
}

/// The possession circuit for one record shape.
#[derive(Clone, Debug)]
pub struct PossessionCircuit<'a> {
    /// The record shape (fixes the circuit).
    pub shape: RecordShape,
    /// The record (the witness); `None` during setup.
    pub record: Option<&'a Record>,
    /// The statement; `None` during setup.
    pub public: Option<PossessionPublic>,
}

impl<'a> PossessionCircuit<'a> {
    /// The circuit without witness, for parameter generation.
    pub fn blank(shape: RecordShape) -> Self {
        PossessionCircuit {
            shape,
            record: None,
            public: None,
        }
    }
}

/// Identifier of the circuit and shape, used in key file headers.
pub fn circuit_id(shape: &RecordShape) -> String {
    format!("possession/{}", shape.id())
}

impl Circuit<Scalar> for PossessionCircuit<'_> {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let d = Elem::input(cs.namespace(|| "dhash"), self.public.map(|p| p.dhash))?;
        let challenge = Elem::input(
            cs.namespace(|| "challenge"),
            self.public.map(|p| p.challenge),
        )?;
        let prover = Elem::input(cs.namespace(|| "prover"), self.public.map(|p| p.prover))?;
        let record = RecordVar::alloc(cs.namespace(|| "record"), self.record, &self.shape)?;
        let computed = record.dhash(cs.namespace(|| "dhash of record"))?;
        computed.enforce_equal(cs.namespace(|| "dhash matches"), &d);
        // Both binding inputs also enter a multiplication constraint, so neither is a free
        // variable of the QAP (Groth16 already binds every declared input; this is belt and braces).
        challenge.mul(cs.namespace(|| "bind challenge to prover"), &prover)?;
        Ok(())
    }
}

/// Proves possession of `record` for (challenge, prover). Fails with a shape error if the
/// record does not fit, and with a synthesis error if the record does not hash to `public.dhash`.
pub fn prove_possession(
    keys: &Keys,
    shape: &RecordShape,
    record: &Record,
    public: &PossessionPublic,
) -> Result<[u8; PROOF_LEN], ZkError> {
    shape.check(record)?;
    if record.dhash_scalar() != public.dhash {
        return Err(ZkError::Shape(
            "record does not hash to the claimed dHash".into(),
        ));
    }
    prove_encoded(
        &keys.params,
        PossessionCircuit {
            shape: *shape,
            record: Some(record),
            public: Some(*public),
        },
    )
}

/// Verifies a possession proof; `Ok(())` only if it is valid for exactly this statement.
pub fn verify_possession(
    pvk: &PreparedVerifyingKey<Bls12>,
    public: &PossessionPublic,
    proof: &[u8],
) -> Result<(), ZkError> {
    verify_encoded(pvk, proof, &public.inputs())
}

/// Benchmark baseline: the same statement with SHA-256 instead of Poseidon. Public inputs are
/// the 256 digest bits packed into field elements (2), then challenge and prover; the private
/// witness is the record's canonical bytes (a fixed length per instance).
#[derive(Clone, Debug)]
pub struct Sha256PossessionCircuit {
    /// Length of the hashed byte string (fixed per instance).
    pub len: usize,
    /// The bytes; `None` during setup.
    pub bytes: Option<Vec<u8>>,
    /// Challenge and prover; `None` during setup.
    pub binding: Option<(Scalar, Scalar)>,
}

impl Sha256PossessionCircuit {
    /// Public inputs for `bytes` under (challenge, prover).
    pub fn public_inputs(bytes: &[u8], challenge: Scalar, prover: Scalar) -> Vec<Scalar> {
        let digest = Sha256::digest(bytes);
        let bits = multipack::bytes_to_bits(&digest);
        let mut inputs = multipack::compute_multipacking::<Scalar>(&bits);
        inputs.push(challenge);
        inputs.push(prover);
        inputs
    }
}

impl Circuit<Scalar> for Sha256PossessionCircuit {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let bits: Vec<Option<bool>> = match &self.bytes {
            Some(b) => multipack::bytes_to_bits(b).into_iter().map(Some).collect(),
            None => vec![None; self.len.saturating_mul(8)],
        };
        let mut input = Vec::with_capacity(bits.len());
        for (i, b) in bits.into_iter().enumerate() {
            input.push(Boolean::from(AllocatedBit::alloc(
                cs.namespace(|| format!("bit {i}")),
                b,
            )?));
        }
        let digest = sha256(cs.namespace(|| "sha256"), &input)?;
        multipack::pack_into_inputs(cs.namespace(|| "digest"), &digest)?;
        let challenge = Elem::input(cs.namespace(|| "challenge"), self.binding.map(|b| b.0))?;
        let prover = Elem::input(cs.namespace(|| "prover"), self.binding.map(|b| b.1))?;
        challenge.mul(cs.namespace(|| "bind"), &prover)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proof::insecure_test_setup;
    use bellman::gadgets::test::TestConstraintSystem;

    pub(crate) const SMALL: RecordShape = RecordShape {
        format_cap: 8,
        key_cap: 16,
        columns: 2,
        name_cap: 8,
        value_cap: 40,
    };

    pub(crate) fn sample() -> Record {
        Record {
            format: b"carvio".to_vec(),
            key: b"{\"CARVIO_ID\":1}".to_vec(),
            columns: vec![
                (b"price".to_vec(), vec![3, 0, 0, 0, 0, 0, 0, 0, 200]),
                (b"viotype".to_vec(), b"vioparking".to_vec()),
            ],
        }
    }

    #[test]
    fn possession_proof_verifies_and_binds_challenge_and_prover() {
        let keys = insecure_test_setup(PossessionCircuit::blank(SMALL), 1).unwrap();
        let record = sample();
        let public = PossessionPublic {
            dhash: record.dhash_scalar(),
            challenge: challenge_to_scalar(b"challenge-1"),
            prover: address_to_scalar("bc1qalice"),
        };
        let proof = prove_possession(&keys, &SMALL, &record, &public).unwrap();
        assert_eq!(proof.len(), 192);
        verify_possession(&keys.pvk, &public, &proof).unwrap();

        let wrong_challenge = PossessionPublic {
            challenge: challenge_to_scalar(b"challenge-2"),
            ..public
        };
        assert!(matches!(
            verify_possession(&keys.pvk, &wrong_challenge, &proof),
            Err(ZkError::Rejected)
        ));
        let replayed_for_bob = PossessionPublic {
            prover: address_to_scalar("bc1qbob"),
            ..public
        };
        assert!(matches!(
            verify_possession(&keys.pvk, &replayed_for_bob, &proof),
            Err(ZkError::Rejected)
        ));
        let other_record = PossessionPublic {
            dhash: Scalar::from(5u64),
            ..public
        };
        assert!(matches!(
            verify_possession(&keys.pvk, &other_record, &proof),
            Err(ZkError::Rejected)
        ));

        // malformed proofs are errors, not panics
        assert!(matches!(
            verify_possession(&keys.pvk, &public, &proof[..191]),
            Err(ZkError::Malformed { .. })
        ));
        let mut flipped = proof;
        flipped[5] ^= 0x40;
        assert!(verify_possession(&keys.pvk, &public, &flipped).is_err());
        assert!(verify_possession(&keys.pvk, &public, &[0u8; 192]).is_err());
        assert!(verify_possession(&keys.pvk, &public, &[0xffu8; 192]).is_err());

        // a key for another shape is rejected
        let other = insecure_test_setup(
            PossessionCircuit::blank(RecordShape {
                format_cap: 1,
                key_cap: 1,
                columns: 1,
                name_cap: 1,
                value_cap: 1,
            }),
            2,
        )
        .unwrap();
        assert!(verify_possession(&other.pvk, &public, &proof).is_err());
    }

    #[test]
    fn wrong_record_is_unsatisfiable() {
        let record = sample();
        let mut forged = record.clone();
        forged.columns[0].1[8] = 201;
        let public = PossessionPublic {
            dhash: record.dhash_scalar(),
            challenge: Scalar::from(1u64),
            prover: Scalar::from(2u64),
        };
        let mut cs = TestConstraintSystem::<Scalar>::new();
        PossessionCircuit {
            shape: SMALL,
            record: Some(&forged),
            public: Some(public),
        }
        .synthesize(&mut cs)
        .unwrap();
        assert!(!cs.is_satisfied());
        let mut cs = TestConstraintSystem::<Scalar>::new();
        PossessionCircuit {
            shape: SMALL,
            record: Some(&record),
            public: Some(public),
        }
        .synthesize(&mut cs)
        .unwrap();
        assert!(cs.is_satisfied());
        // the API refuses before proving
        let keys_needed = RecordShape {
            columns: 3,
            ..SMALL
        };
        assert!(matches!(keys_needed.check(&record), Err(ZkError::Shape(_))));
    }
}
