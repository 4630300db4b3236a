//! Circuit `fair_exchange` (zero-knowledge contingent payment): "this ciphertext is the record
//! with dHash D encrypted under the key whose hash is H(k)".
//!
//! Public inputs, in order: `[dHash, H(k), H(ciphertext)]`. The seller sends the ciphertext and
//! the proof off-chain; the buyer checks `H(ciphertext)` and the proof, then locks payment in a
//! contract that releases it to whoever publishes `k` with `hash_elements(DOMAIN_KEY_COMMIT,
//! [k]) = H(k)`. The seller is paid exactly when it reveals `k`, and revealing `k` is exactly
//! what lets the buyer decrypt.
//!
//! Why a hash-lock and not an adaptor signature: on an account-based chain the payment is a
//! contract call visible in the mempool before it is final. With a hash-lock the contract pays
//! the seller's address fixed at lock time, so a front-runner who copies `k` from the pending
//! transaction gains nothing. Adaptor signatures assume a UTXO spend that only the signer can
//! complete; on an account chain the completed signature (which reveals the secret) can be
//! observed and raced, and the escrow logic has to live in a contract anyway.
//!
//! Cipher: Poseidon in counter mode over the field. For block `j`, the permutation of
//! `[DOMAIN_KEYSTREAM·2^64 + j, k, 0]` yields two keystream elements (rate outputs); the
//! ciphertext is `c_i = m_i + ks_i` over the record's padded element vector
//! ([`crate::record::record_message`]). A key must be used for one sale only.

use crate::gadget::{self, Elem};
use crate::poseidon::{self, hash_elements, initial_capacity};
use crate::proof::{prove_encoded, verify_encoded, Keys, PROOF_LEN};
use crate::record::{record_from_message, record_message, Record, RecordShape, RecordVar};
use crate::ZkError;
use bellman::groth16::PreparedVerifyingKey;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use ff::Field;

/// Domain tag of the key commitment `H(k)`.
pub const DOMAIN_KEY_COMMIT: u64 = 32;
/// Domain tag of the keystream blocks.
pub const DOMAIN_KEYSTREAM: u64 = 33;
/// Domain tag of the ciphertext hash.
pub const DOMAIN_CIPHERTEXT: u64 = 34;

/// `H(k)`, the value the payment is locked on.
pub fn key_commitment(k: &Scalar) -> Scalar {
    hash_elements(DOMAIN_KEY_COMMIT, &[*k])
}

/// `H(ciphertext)`.
pub fn ciphertext_hash(ciphertext: &[Scalar]) -> Scalar {
    hash_elements(DOMAIN_CIPHERTEXT, ciphertext)
}

fn keystream(k: &Scalar, len: usize) -> Vec<Scalar> {
    let mut out = Vec::with_capacity(len.saturating_add(1));
    let mut j = 0u64;
    while out.len() < len {
        let mut s = [initial_capacity(DOMAIN_KEYSTREAM, j), *k, Scalar::ZERO];
        poseidon::permute(&mut s);
        out.extend_from_slice(&s[1..]);
        j = j.saturating_add(1);
    }
    out.truncate(len);
    out
}

/// Encrypts a record under `k` (a fresh random field element per sale).
pub fn encrypt_record(
    record: &Record,
    shape: &RecordShape,
    k: &Scalar,
) -> Result<Vec<Scalar>, ZkError> {
    let m = record_message(record, shape)?;
    let ks = keystream(k, m.len());
    Ok(m.iter().zip(ks).map(|(m, s)| *m + s).collect())
}

/// Decrypts a ciphertext with the revealed `k` and rebuilds the record.
pub fn decrypt_record(
    ciphertext: &[Scalar],
    shape: &RecordShape,
    k: &Scalar,
) -> Result<Record, ZkError> {
    let ks = keystream(k, ciphertext.len());
    let m: Vec<Scalar> = ciphertext.iter().zip(ks).map(|(c, s)| *c - s).collect();
    record_from_message(&m, shape)
}

/// The public statement of a fair-exchange proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FairExchangePublic {
    /// dHash of the record being sold.
    pub dhash: Scalar,
    /// `H(k)`.
    pub key_commitment: Scalar,
    /// `H(ciphertext)`.
    pub ciphertext_hash: Scalar,
}

impl FairExchangePublic {
    /// Public inputs in circuit order.
    pub fn inputs(&self) -> [Scalar; 3] {
        [self.dhash, self.key_commitment, self.ciphertext_hash]
    }
}

/// The fair-exchange circuit for one record shape.
#[derive(Clone, Debug)]
pub struct FairExchangeCircuit<'a> {
    /// The record shape.
    pub shape: RecordShape,
    /// The record and key (witness); `None` during setup.
    pub witness: Option<(&'a Record, Scalar)>,
    /// The statement; `None` during setup.
    pub public: Option<FairExchangePublic>,
}

impl FairExchangeCircuit<'_> {
    /// The circuit without witness, for parameter generation.
    pub fn blank(shape: RecordShape) -> Self {
        FairExchangeCircuit {
            shape,
            witness: None,
            public: None,
        }
    }
}

/// Identifier of the circuit and shape, used in key file headers.
pub fn circuit_id(shape: &RecordShape) -> String {
    format!("fair_exchange/{}", shape.id())
}

impl Circuit<Scalar> for FairExchangeCircuit<'_> {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let d = Elem::input(cs.namespace(|| "dhash"), self.public.map(|p| p.dhash))?;
        let hk = Elem::input(
            cs.namespace(|| "H(k)"),
            self.public.map(|p| p.key_commitment),
        )?;
        let hc = Elem::input(
            cs.namespace(|| "H(c)"),
            self.public.map(|p| p.ciphertext_hash),
        )?;
        let record = RecordVar::alloc(
            cs.namespace(|| "record"),
            self.witness.map(|w| w.0),
            &self.shape,
        )?;
        let k = Elem::alloc(cs.namespace(|| "k"), self.witness.map(|w| w.1))?;
        record
            .dhash(cs.namespace(|| "dhash of record"))?
            .enforce_equal(cs.namespace(|| "dhash matches"), &d);
        gadget::hash_elements(
            cs.namespace(|| "commit k"),
            DOMAIN_KEY_COMMIT,
            std::slice::from_ref(&k),
        )?
        .enforce_equal(cs.namespace(|| "H(k) matches"), &hk);
        let message = record.message();
        let mut ciphertext = Vec::with_capacity(message.len());
        for (j, block) in message.chunks(2).enumerate() {
            let zero = Elem::constant(Scalar::ZERO);
            let state = [
                Elem::constant(initial_capacity(DOMAIN_KEYSTREAM, j as u64)),
                k.clone(),
                zero,
            ];
            let out = gadget::permute(cs.namespace(|| format!("keystream {j}")), state)?;
            for (m, s) in block.iter().zip(out.iter().skip(1)) {
                ciphertext.push(m.add(s));
            }
        }
        gadget::hash_elements(cs.namespace(|| "hash c"), DOMAIN_CIPHERTEXT, &ciphertext)?
            .enforce_equal(cs.namespace(|| "H(c) matches"), &hc);
        Ok(())
    }
}

/// Encrypts `record` under `k` and proves it: returns (ciphertext, statement, proof).
pub fn prove_fair_exchange(
    keys: &Keys,
    shape: &RecordShape,
    record: &Record,
    k: &Scalar,
) -> Result<(Vec<Scalar>, FairExchangePublic, [u8; PROOF_LEN]), ZkError> {
    let ciphertext = encrypt_record(record, shape, k)?;
    let public = FairExchangePublic {
        dhash: record.dhash_scalar(),
        key_commitment: key_commitment(k),
        ciphertext_hash: ciphertext_hash(&ciphertext),
    };
    let proof = prove_encoded(
        &keys.params,
        FairExchangeCircuit {
            shape: *shape,
            witness: Some((record, *k)),
            public: Some(public),
        },
    )?;
    Ok((ciphertext, public, proof))
}

/// Buyer's check: the ciphertext it received hashes to the statement's `H(ciphertext)` and the
/// proof verifies for (dHash it wants, H(k) it will lock on).
pub fn verify_fair_exchange(
    pvk: &PreparedVerifyingKey<Bls12>,
    public: &FairExchangePublic,
    ciphertext: &[Scalar],
    proof: &[u8],
) -> Result<(), ZkError> {
    if ciphertext_hash(ciphertext) != public.ciphertext_hash {
        return Err(ZkError::Rejected);
    }
    verify_encoded(pvk, proof, &public.inputs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::possession::tests::{sample, SMALL};
    use crate::proof::insecure_test_setup;
    use bellman::gadgets::test::TestConstraintSystem;

    #[test]
    fn encryption_round_trips() {
        let r = sample();
        let k = Scalar::from(0xfeed_u64);
        let c = encrypt_record(&r, &SMALL, &k).unwrap();
        assert_eq!(c.len(), SMALL.message_len());
        assert_eq!(decrypt_record(&c, &SMALL, &k).unwrap(), r);
        // the wrong key yields garbage that does not parse back to the record
        assert_ne!(
            decrypt_record(&c, &SMALL, &Scalar::from(1u64)).ok(),
            Some(r)
        );
    }

    #[test]
    fn fair_exchange_proof_and_rejections() {
        let keys = insecure_test_setup(FairExchangeCircuit::blank(SMALL), 3).unwrap();
        let r = sample();
        let k = Scalar::from(123_456_789u64);
        let (c, public, proof) = prove_fair_exchange(&keys, &SMALL, &r, &k).unwrap();
        verify_fair_exchange(&keys.pvk, &public, &c, &proof).unwrap();
        assert_eq!(key_commitment(&k), public.key_commitment);
        assert_eq!(decrypt_record(&c, &SMALL, &k).unwrap(), r);

        // tampered ciphertext: its hash no longer matches
        let mut tampered = c.clone();
        tampered[3] += Scalar::ONE;
        assert!(matches!(
            verify_fair_exchange(&keys.pvk, &public, &tampered, &proof),
            Err(ZkError::Rejected)
        ));
        // tampered ciphertext with a matching statement: the proof fails
        let lying = FairExchangePublic {
            ciphertext_hash: ciphertext_hash(&tampered),
            ..public
        };
        assert!(matches!(
            verify_fair_exchange(&keys.pvk, &lying, &tampered, &proof),
            Err(ZkError::Rejected)
        ));
        // a different key commitment (wrong key)
        let wrong_key = FairExchangePublic {
            key_commitment: key_commitment(&Scalar::from(7u64)),
            ..public
        };
        assert!(matches!(
            verify_fair_exchange(&keys.pvk, &wrong_key, &c, &proof),
            Err(ZkError::Rejected)
        ));
    }

    #[test]
    fn wrong_key_or_ciphertext_is_unsatisfiable() {
        let r = sample();
        let k = Scalar::from(99u64);
        let c = encrypt_record(&r, &SMALL, &k).unwrap();
        let public = FairExchangePublic {
            dhash: r.dhash_scalar(),
            key_commitment: key_commitment(&k),
            ciphertext_hash: ciphertext_hash(&c),
        };
        let check = |k: Scalar, public: FairExchangePublic| {
            let mut cs = TestConstraintSystem::<Scalar>::new();
            FairExchangeCircuit {
                shape: SMALL,
                witness: Some((&r, k)),
                public: Some(public),
            }
            .synthesize(&mut cs)
            .unwrap();
            cs.is_satisfied()
        };
        assert!(check(k, public));
        // a seller who encrypted under another key cannot prove against H(k)
        assert!(!check(Scalar::from(100u64), public));
        let mut c2 = c.clone();
        c2[0] += Scalar::ONE;
        assert!(!check(
            k,
            FairExchangePublic {
                ciphertext_hash: ciphertext_hash(&c2),
                ..public
            }
        ));
    }
}
