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
