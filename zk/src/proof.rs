//! Proof encoding (192 bytes, compressed), deterministic test setup, and parameter/key files
//! with an integrity header.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::ZkError;
use bellman::groth16::{self, Parameters, PreparedVerifyingKey, Proof, VerifyingKey};
use bellman::Circuit;
use bls12_381::{Bls12, Scalar};
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use std::io::Read;

/// Length of an encoded proof: compressed A (G1, 48) ‖ B (G2, 96) ‖ C (G1, 48).
pub const PROOF_LEN: usize = 192;

/// A Groth16 proof over BLS12-381.
pub type GrothProof = Proof<Bls12>;

/// Encodes a proof as 192 bytes.
pub fn encode_proof(proof: &GrothProof) -> [u8; PROOF_LEN] {
    let mut out = [0u8; PROOF_LEN];
    let a = proof.a.to_compressed();
    let b = proof.b.to_compressed();
    let c = proof.c.to_compressed();
    for (dst, src) in out.iter_mut().zip(a.iter().chain(b.iter()).chain(c.iter())) {
        *dst = *src;
    }
    out
}

/// Decodes a 192-byte proof, rejecting bad lengths, points off the curve or outside the
/// prime-order subgroup, and points at infinity.
pub fn decode_proof(bytes: &[u8]) -> Result<GrothProof, ZkError> {
    if bytes.len() != PROOF_LEN {
        return Err(ZkError::Malformed {
            what: "proof",
            reason: format!("{} bytes, expected {PROOF_LEN}", bytes.len()),
        });
    }
    Proof::read(bytes).map_err(|e| ZkError::Malformed {
        what: "proof",
        reason: e.to_string(),
    })
}

/// A circuit's proving parameters with the prepared verifying key.
pub struct Keys {
    /// Proving parameters (contain the verifying key).
    pub params: Parameters<Bls12>,
    /// The verifying key, prepared for pairing checks.
    pub pvk: PreparedVerifyingKey<Bls12>,
}

impl Keys {
    /// Wraps parameters, preparing their verifying key.
    pub fn new(params: Parameters<Bls12>) -> Self {
        let pvk = groth16::prepare_verifying_key(&params.vk);
        Keys { params, pvk }
    }
}

/// **Insecure, tests and benchmarks only**: parameters from a seeded RNG, so anyone who knows
/// the seed knows the trapdoor and can forge proofs. Real parameters come from `zk-ceremony`.
pub fn insecure_test_setup<C: Circuit<Scalar>>(circuit: C, seed: u64) -> Result<Keys, ZkError> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let params = groth16::generate_random_parameters::<Bls12, _, _>(circuit, &mut rng)?;
    Ok(Keys::new(params))
}

/// Verifies an encoded proof against a prepared key and public inputs.
pub(crate) fn verify_encoded(
    pvk: &PreparedVerifyingKey<Bls12>,
    proof: &[u8],
    inputs: &[Scalar],
) -> Result<(), ZkError> {
    let proof = decode_proof(proof)?;
    groth16::verify_proof(pvk, &proof, inputs).map_err(|e| match e {
        bellman::VerificationError::InvalidVerifyingKey => ZkError::Malformed {
            what: "verifying key",
            reason: "public input count does not match the key".to_string(),
        },
        bellman::VerificationError::InvalidProof => ZkError::Rejected,
    })
}

/// Creates a proof and encodes it.
pub(crate) fn prove_encoded<C: Circuit<Scalar>>(
    params: &Parameters<Bls12>,
    circuit: C,
) -> Result<[u8; PROOF_LEN], ZkError> {
    let proof = groth16::create_random_proof(circuit, params, &mut rand::rngs::OsRng)?;
    Ok(encode_proof(&proof))
}

const MAGIC: &[u8; 4] = b"CCZK";
const VERSION: u8 = 1;

/// What a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// Full proving parameters.
    Params = 1,
    /// A verifying key only.
    VerifyingKey = 2,
}

/// Wraps `body` in the integrity header: `"CCZK" ‖ version ‖ kind ‖ u16 id length ‖ id ‖
/// u64 body length ‖ SHA-256(header so far ‖ body) ‖ body`. The id names the circuit and shape.
pub fn seal_file(kind: FileKind, id: &str, body: &[u8]) -> Result<Vec<u8>, ZkError> {
    let id_len = u16::try_from(id.len()).map_err(|_| ZkError::Integrity("id too long".into()))?;
    let mut out = Vec::with_capacity(body.len().saturating_add(128));
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    let digest = Sha256::new()
        .chain_update(&out)
        .chain_update(body)
        .finalize();
    out.extend_from_slice(&digest);
    out.extend_from_slice(body);
    Ok(out)
}

/// Checks the header written by [`seal_file`] and returns the body.
pub fn open_file<'a>(bytes: &'a [u8], kind: FileKind, id: &str) -> Result<&'a [u8], ZkError> {
    let err = |m: String| ZkError::Integrity(m);
    let take = |b: &'a [u8], n: usize| -> Result<(&'a [u8], &'a [u8]), ZkError> {
        if b.len() < n {
            Err(ZkError::Integrity("file truncated".into()))
        } else {
            Ok(b.split_at(n))
        }
    };
    let (magic, rest) = take(bytes, 4)?;
    if magic != MAGIC {
        return Err(err("not a CarChain zk file (bad magic)".into()));
    }
    let (vk, rest) = take(rest, 2)?;
    if vk.first() != Some(&VERSION) {
        return Err(err(format!("unsupported version {:?}", vk.first())));
    }
    if vk.get(1) != Some(&(kind as u8)) {
        return Err(err(format!(
            "wrong file kind {:?}, expected {kind:?}",
            vk.get(1)
        )));
    }
    let (len_bytes, rest) = take(rest, 2)?;
    let id_len = u16::from_be_bytes([
        len_bytes.first().copied().unwrap_or(0),
        len_bytes.get(1).copied().unwrap_or(0),
    ]);
    let (file_id, rest) = take(rest, id_len.into())?;
    if file_id != id.as_bytes() {
        return Err(err(format!(
            "file is for circuit {:?}, expected {id:?}",
            String::from_utf8_lossy(file_id)
        )));
    }
    let (blen, rest) = take(rest, 8)?;
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(blen);
    let body_len =
        usize::try_from(u64::from_be_bytes(b8)).map_err(|_| err("body length overflows".into()))?;
    let header_len = bytes.len().saturating_sub(rest.len());
    let (digest, body) = take(rest, 32)?;
    if body.len() != body_len {
        return Err(err(format!(
            "body is {} bytes, header says {body_len}",
            body.len()
        )));
    }
    let header = bytes.get(..header_len).unwrap_or(&[]);
    let want = Sha256::new()
        .chain_update(header)
        .chain_update(body)
        .finalize();
    if want.as_slice() != digest {
        return Err(err("checksum mismatch (corrupted or tampered file)".into()));
    }
    Ok(body)
}

/// Serialises proving parameters into a sealed file.
pub fn params_to_file(params: &Parameters<Bls12>, id: &str) -> Result<Vec<u8>, ZkError> {
    let mut body = Vec::new();
    params.write(&mut body)?;
    seal_file(FileKind::Params, id, &body)
}

/// Loads sealed proving parameters (points are checked to be on the curve and in the subgroup).
pub fn params_from_file(bytes: &[u8], id: &str) -> Result<Parameters<Bls12>, ZkError> {
    let mut body = open_file(bytes, FileKind::Params, id)?;
    let params = Parameters::read(&mut body, true).map_err(|e| ZkError::Malformed {
        what: "parameters",
        reason: e.to_string(),
    })?;
    if body.read(&mut [0u8; 1])? != 0 {
        return Err(ZkError::Integrity("trailing bytes after parameters".into()));
    }
    Ok(params)
}

/// Loads a sealed verifying key and prepares it for `verify_*` (what a chain node needs; it
/// never needs the proving parameters).
pub fn load_verifier(bytes: &[u8], id: &str) -> Result<PreparedVerifyingKey<Bls12>, ZkError> {
    Ok(groth16::prepare_verifying_key(&vk_from_file(bytes, id)?))
}

/// Serialises a verifying key into a sealed file.
pub fn vk_to_file(vk: &VerifyingKey<Bls12>, id: &str) -> Result<Vec<u8>, ZkError> {
    let mut body = Vec::new();
    vk.write(&mut body)?;
    seal_file(FileKind::VerifyingKey, id, &body)
}

/// Loads a sealed verifying key.
pub fn vk_from_file(bytes: &[u8], id: &str) -> Result<VerifyingKey<Bls12>, ZkError> {
    let mut body = open_file(bytes, FileKind::VerifyingKey, id)?;
    let vk = VerifyingKey::read(&mut body).map_err(|e| ZkError::Malformed {
        what: "verifying key",
        reason: e.to_string(),
    })?;
    if body.read(&mut [0u8; 1])? != 0 {
        return Err(ZkError::Integrity(
            "trailing bytes after verifying key".into(),
        ));
    }
    Ok(vk)
}

/// Size of a circuit: R1CS constraints, public inputs (without the constant one) and private
/// variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConstraintCount {
    /// Number of constraints.
    pub constraints: usize,
    /// Number of public inputs.
    pub inputs: usize,
    /// Number of private variables.
    pub aux: usize,
}

impl bellman::ConstraintSystem<Scalar> for ConstraintCount {
    type Root = Self;

    fn alloc<F, A, AR>(&mut self, _: A, _: F) -> Result<bellman::Variable, bellman::SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, bellman::SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        let v = bellman::Variable::new_unchecked(bellman::Index::Aux(self.aux));
        self.aux = self.aux.saturating_add(1);
        Ok(v)
    }

    fn alloc_input<F, A, AR>(
        &mut self,
        _: A,
        _: F,
    ) -> Result<bellman::Variable, bellman::SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, bellman::SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.inputs = self.inputs.saturating_add(1);
        Ok(bellman::Variable::new_unchecked(bellman::Index::Input(
            self.inputs,
        )))
    }

    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, _: LA, _: LB, _: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(bellman::LinearCombination<Scalar>) -> bellman::LinearCombination<Scalar>,
        LB: FnOnce(bellman::LinearCombination<Scalar>) -> bellman::LinearCombination<Scalar>,
        LC: FnOnce(bellman::LinearCombination<Scalar>) -> bellman::LinearCombination<Scalar>,
    {
        self.constraints = self.constraints.saturating_add(1);
    }

    fn push_namespace<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn pop_namespace(&mut self) {}

    fn get_root(&mut self) -> &mut Self::Root {
        self
    }
}

/// Counts a circuit's constraints and variables without a witness.
pub fn count_constraints<C: Circuit<Scalar>>(circuit: C) -> Result<ConstraintCount, ZkError> {
    let mut cs = ConstraintCount::default();
    circuit.synthesize(&mut cs)?;
    Ok(cs)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::possession::PossessionCircuit;
    use crate::record::RecordShape;

    const TINY: RecordShape = RecordShape {
        format_cap: 4,
        key_cap: 4,
        columns: 1,
        name_cap: 4,
        value_cap: 4,
    };

    #[test]
    fn sealed_files_detect_tampering_and_mixups() {
        let sealed = seal_file(FileKind::Params, "possession/x", b"body bytes").unwrap();
        assert_eq!(
            open_file(&sealed, FileKind::Params, "possession/x").unwrap(),
            b"body bytes"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open_file(&flipped, FileKind::Params, "possession/x"),
            Err(ZkError::Integrity(m)) if m.contains("checksum")
        ));
        assert!(open_file(&sealed, FileKind::VerifyingKey, "possession/x").is_err());
        assert!(open_file(&sealed, FileKind::Params, "mileage/x").is_err());
        for cut in [0, 3, 10, sealed.len() - 1] {
            assert!(open_file(&sealed[..cut], FileKind::Params, "possession/x").is_err());
        }
        let mut long = sealed.clone();
        long.push(0);
        assert!(open_file(&long, FileKind::Params, "possession/x").is_err());
        assert!(open_file(b"garbage!", FileKind::Params, "possession/x").is_err());
    }

    #[test]
    fn params_and_vk_files_round_trip() {
        let keys = insecure_test_setup(PossessionCircuit::blank(TINY), 5).unwrap();
        let id = crate::possession::circuit_id(&TINY);
        let file = params_to_file(&keys.params, &id).unwrap();
        assert!(params_from_file(&file, &id).unwrap() == keys.params);
        let vk = vk_to_file(&keys.params.vk, &id).unwrap();
        assert!(vk_from_file(&vk, &id).unwrap() == keys.params.vk);
        assert!(load_verifier(&vk, &id).is_ok());
        assert!(vk_from_file(&vk, "possession/other").is_err());
        assert!(vk_from_file(&file, &id).is_err());
        // a body that passes the checksum but is not a valid key is still an error
        let junk = seal_file(FileKind::VerifyingKey, &id, &[7u8; 100]).unwrap();
        assert!(matches!(
            vk_from_file(&junk, &id),
            Err(ZkError::Malformed { .. })
        ));
    }

    #[test]
    fn insecure_setup_is_deterministic_and_counts_match() {
        let a = insecure_test_setup(PossessionCircuit::blank(TINY), 6).unwrap();
        let b = insecure_test_setup(PossessionCircuit::blank(TINY), 6).unwrap();
        assert!(a.params == b.params);
        let c = count_constraints(PossessionCircuit::blank(TINY)).unwrap();
        assert_eq!(c.inputs, 3);
        // every field costs whole permutations plus a little selection overhead
        assert!(c.constraints > 6 * crate::gadget::CONSTRAINTS_PER_PERMUTATION);
        assert_eq!(a.params.vk.ic.len(), 4);
    }
}
