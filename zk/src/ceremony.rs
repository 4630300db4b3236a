//! Multi-party phase-2 parameter ceremony for Groth16 (in the style of Bowe–Gabizon–Miers).
//!
//! Every participant multiplies δ by a secret `x` (δ in G1 and G2 scaled by `x`, the `H` and `L`
//! query elements scaled by `x⁻¹`) and publishes a [`Contribution`] with a proof of knowledge
//! of `x`: a random `s ∈ G1`, `s·x`, and `r·x` where `r ∈ G2` is hashed (try-and-increment,
//! unknown discrete log) from the transcript so far and `s, s·x`. Anyone can check the whole
//! transcript from the initial and final parameter files ([`verify_transcript`]). As long as
//! one participant destroyed its `x`, nobody knows the final δ, and so nobody can forge proofs
//! or (for a buyer who generated the initial file) undermine zero knowledge through δ.
//!
//! Scope: the phase-1 part (τ, α, β) comes from bellman's generator run once by the `new`
//! step, and is not multi-party here; whoever runs `new` must be trusted to discard it. A
//! powers-of-tau phase 1 would remove that trust.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::mileage::{MileageCircuit, MileageShape};
use crate::possession::PossessionCircuit;
use crate::record::RecordShape;
use crate::{fair_exchange, possession, ZkError};
use bellman::groth16::{self, Parameters};
use bls12_381::{pairing, Bls12, G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use ff::Field;
use group::Curve;
use rand_core::RngCore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The circuits a ceremony can be run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CeremonyCircuit {
    /// `possession` for a record shape.
    Possession(RecordShape),
    /// `fair_exchange` for a record shape.
    FairExchange(RecordShape),
    /// `mileage` for a trip shape.
    Mileage(MileageShape),
}

impl CeremonyCircuit {
    /// The circuit identifier written into file headers.
    pub fn id(&self) -> String {
        match self {
            CeremonyCircuit::Possession(s) => possession::circuit_id(s),
            CeremonyCircuit::FairExchange(s) => fair_exchange::circuit_id(s),
            CeremonyCircuit::Mileage(s) => s.circuit_id(),
        }
    }

    /// Fresh initial parameters (phase 1 from bellman's generator, see the module doc).
    pub fn initial_params<R: RngCore>(&self, rng: &mut R) -> Result<Parameters<Bls12>, ZkError> {
        Ok(match self {
            CeremonyCircuit::Possession(s) => {
                groth16::generate_random_parameters(PossessionCircuit::blank(*s), rng)?
            }
            CeremonyCircuit::FairExchange(s) => groth16::generate_random_parameters(
                fair_exchange::FairExchangeCircuit::blank(*s),
                rng,
            )?,
            CeremonyCircuit::Mileage(s) => {
                groth16::generate_random_parameters(MileageCircuit::blank(*s), rng)?
            }
        })
    }
}

/// One participant's published contribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    /// δ·x in G1 after this contribution.
    pub delta_g1: G1Affine,
    /// δ·x in G2 after this contribution.
    pub delta_g2: G2Affine,
    /// Random `s ∈ G1`.
    pub s: G1Affine,
    /// `s·x`.
    pub s_x: G1Affine,
    /// `r·x` with `r` = hash-to-G2 of the transcript, `s` and `s·x`.
    pub r_x: G2Affine,
}

/// The public record of a ceremony: which circuit, which initial parameters, and every
/// contribution in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// Circuit identifier.
    pub circuit_id: String,
    /// SHA-256 of the initial parameters' serialisation.
    pub initial_digest: [u8; 32],
    /// Contributions, oldest first.
    pub contributions: Vec<Contribution>,
}

#[derive(Serialize, Deserialize)]
struct ContributionJson {
    delta_g1: String,
    delta_g2: String,
    s: String,
    s_x: String,
    r_x: String,
}

#[derive(Serialize, Deserialize)]
struct TranscriptJson {
    circuit_id: String,
    initial_digest: String,
    contributions: Vec<ContributionJson>,
}

fn malformed(reason: impl Into<String>) -> ZkError {
    ZkError::Malformed {
        what: "ceremony transcript",
        reason: reason.into(),
    }
}

fn g1_from_hex(s: &str) -> Result<G1Affine, ZkError> {
    let b: [u8; 48] = hex::decode(s)
        .map_err(|e| malformed(e.to_string()))?
        .try_into()
        .map_err(|_| malformed("G1 point is not 48 bytes"))?;
    Option::from(G1Affine::from_compressed(&b)).ok_or_else(|| malformed("invalid G1 point"))
}

fn g2_from_hex(s: &str) -> Result<G2Affine, ZkError> {
    let b: [u8; 96] = hex::decode(s)
        .map_err(|e| malformed(e.to_string()))?
        .try_into()
        .map_err(|_| malformed("G2 point is not 96 bytes"))?;
    Option::from(G2Affine::from_compressed(&b)).ok_or_else(|| malformed("invalid G2 point"))
}

impl Transcript {
    /// A transcript with no contributions yet.
    pub fn new(circuit_id: String, initial: &Parameters<Bls12>) -> Result<Self, ZkError> {
        Ok(Transcript {
            circuit_id,
            initial_digest: params_digest(initial)?,
            contributions: Vec::new(),
        })
    }

    /// As pretty JSON (points hex-encoded, compressed).
    pub fn to_json(&self) -> Result<String, ZkError> {
        let t = TranscriptJson {
            circuit_id: self.circuit_id.clone(),
            initial_digest: hex::encode(self.initial_digest),
            contributions: self
                .contributions
                .iter()
                .map(|c| ContributionJson {
                    delta_g1: hex::encode(c.delta_g1.to_compressed()),
                    delta_g2: hex::encode(c.delta_g2.to_compressed()),
                    s: hex::encode(c.s.to_compressed()),
                    s_x: hex::encode(c.s_x.to_compressed()),
                    r_x: hex::encode(c.r_x.to_compressed()),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&t).map_err(|e| malformed(e.to_string()))
    }

    /// Parses [`Transcript::to_json`] output, checking every point.
    pub fn from_json(s: &str) -> Result<Self, ZkError> {
        let t: TranscriptJson = serde_json::from_str(s).map_err(|e| malformed(e.to_string()))?;
        let initial_digest: [u8; 32] = hex::decode(&t.initial_digest)
            .map_err(|e| malformed(e.to_string()))?
            .try_into()
            .map_err(|_| malformed("digest is not 32 bytes"))?;
        let contributions = t
            .contributions
            .iter()
            .map(|c| {
                Ok(Contribution {
                    delta_g1: g1_from_hex(&c.delta_g1)?,
                    delta_g2: g2_from_hex(&c.delta_g2)?,
                    s: g1_from_hex(&c.s)?,
                    s_x: g1_from_hex(&c.s_x)?,
                    r_x: g2_from_hex(&c.r_x)?,
                })
            })
            .collect::<Result<Vec<_>, ZkError>>()?;
        Ok(Transcript {
            circuit_id: t.circuit_id,
            initial_digest,
            contributions,
        })
    }

    /// Digest binding everything before contribution `i` (circuit, initial parameters, earlier
    /// contributions).
    fn prefix_digest(&self, i: usize) -> [u8; 32] {
        let mut h = Sha256::new()
            .chain_update(b"carchain-zk-ceremony-v1")
            .chain_update((self.circuit_id.len() as u64).to_be_bytes())
            .chain_update(self.circuit_id.as_bytes())
            .chain_update(self.initial_digest);
        for c in self.contributions.iter().take(i) {
            h.update(contribution_bytes(c));
        }
        h.finalize().into()
    }
}

fn contribution_bytes(c: &Contribution) -> Vec<u8> {
    let mut v = Vec::with_capacity(48 * 3 + 96 * 2);
    v.extend_from_slice(&c.delta_g1.to_compressed());
    v.extend_from_slice(&c.delta_g2.to_compressed());
    v.extend_from_slice(&c.s.to_compressed());
    v.extend_from_slice(&c.s_x.to_compressed());
    v.extend_from_slice(&c.r_x.to_compressed());
    v
}

/// SHA-256 of a contribution's encoding (what a participant publishes to attest it).
pub fn contribution_hash(c: &Contribution) -> [u8; 32] {
    Sha256::digest(contribution_bytes(c)).into()
}

/// SHA-256 of the parameters' bellman serialisation.
pub fn params_digest(params: &Parameters<Bls12>) -> Result<[u8; 32], ZkError> {
    let mut buf = Vec::new();
    params.write(&mut buf)?;
    Ok(Sha256::digest(&buf).into())
}

/// Hash to G2 by try-and-increment: SHA-256 output read as a compressed point's x-coordinate
/// (with the sign bit taken from the hash) until it decompresses, then the cofactor is cleared.
/// Nobody learns the discrete log of the result.
pub fn hash_to_g2(seed: &[u8]) -> G2Affine {
    let mut ctr: u64 = 0;
    loop {
        let block = |i: u8| -> [u8; 32] {
            Sha256::new()
                .chain_update(b"carchain-zk-hash-to-g2")
                .chain_update(seed)
                .chain_update(ctr.to_be_bytes())
                .chain_update([i])
                .finalize()
                .into()
        };
        let mut bytes = [0u8; 96];
        for (chunk, i) in bytes.chunks_mut(32).zip(0u8..) {
            chunk.copy_from_slice(&block(i));
        }
        let sign = bytes.first().map_or(0, |b| b & 0x20);
        if let Some(b0) = bytes.first_mut() {
            *b0 = (*b0 & 0x1f) | 0x80 | sign;
        }
        let candidate: Option<G2Affine> = G2Affine::from_compressed_unchecked(&bytes).into();
        if let Some(p) = candidate {
            let q = G2Projective::from(p).clear_cofactor();
            if !bool::from(q.is_identity()) {
                return q.to_affine();
            }
        }
        ctr = ctr.wrapping_add(1);
    }
}

fn scale_g1(points: &[G1Affine], k: &Scalar) -> Vec<G1Affine> {
    let proj: Vec<G1Projective> = points
        .par_iter()
        .map(|p| G1Projective::from(p) * k)
        .collect();
    let mut out = vec![G1Affine::identity(); proj.len()];
    G1Projective::batch_normalize(&proj, &mut out);
    out
}

/// Adds a contribution with secret randomness from `rng`: updates `params` in place and appends
/// the contribution to `transcript`. The secret is dropped when this returns.
pub fn contribute<R: RngCore>(
    params: &mut Parameters<Bls12>,
    transcript: &mut Transcript,
    rng: &mut R,
) -> Result<Contribution, ZkError> {
    let x = loop {
        let x = Scalar::random(&mut *rng);
        if !bool::from(x.is_zero()) {
            break x;
        }
    };
    let x_inv: Scalar =
        Option::from(x.invert()).ok_or_else(|| ZkError::Ceremony("zero secret".into()))?;
    let s = (G1Projective::generator() * Scalar::random(&mut *rng)).to_affine();
    let s_x = (G1Projective::from(s) * x).to_affine();
    let r = hash_to_g2(&pok_seed(
        &transcript.prefix_digest(transcript.contributions.len()),
        &s,
        &s_x,
    ));
    let r_x = (G2Projective::from(r) * x).to_affine();
    params.vk.delta_g1 = (G1Projective::from(params.vk.delta_g1) * x).to_affine();
    params.vk.delta_g2 = (G2Projective::from(params.vk.delta_g2) * x).to_affine();
    params.h = Arc::new(scale_g1(&params.h, &x_inv));
    params.l = Arc::new(scale_g1(&params.l, &x_inv));
    let c = Contribution {
        delta_g1: params.vk.delta_g1,
        delta_g2: params.vk.delta_g2,
        s,
        s_x,
        r_x,
    };
    transcript.contributions.push(c.clone());
    Ok(c)
}

fn pok_seed(prefix: &[u8; 32], s: &G1Affine, s_x: &G1Affine) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(&s.to_compressed());
    v.extend_from_slice(&s_x.to_compressed());
    v
}

fn same_ratio(a: (&G1Affine, &G1Affine), b: (&G2Affine, &G2Affine)) -> bool {
    pairing(a.0, b.1) == pairing(a.1, b.0)
}

fn random_combination(points: &[G1Affine], coeffs: &[Scalar]) -> G1Projective {
    points
        .par_iter()
        .zip(coeffs.par_iter())
        .map(|(p, c)| G1Projective::from(p) * c)
        .reduce(G1Projective::identity, |a, b| a + b)
}

/// Checks a ceremony end to end: the final parameters differ from the initial ones only in δ,
/// `H` and `L`; every contribution's proof of knowledge verifies and chains from the previous
/// δ; the final δ is the last contribution's; and `H`, `L` were divided by exactly the factor
/// δ was multiplied by (checked with a random linear combination). Returns the number of
/// contributions.
pub fn verify_transcript(
    initial: &Parameters<Bls12>,
    current: &Parameters<Bls12>,
    transcript: &Transcript,
) -> Result<usize, ZkError> {
    let fail = |m: &str| Err(ZkError::Ceremony(m.to_string()));
    if params_digest(initial)? != transcript.initial_digest {
        return fail("initial parameters do not match the transcript");
    }
    let (a, b) = (&initial.vk, &current.vk);
    if a.alpha_g1 != b.alpha_g1
        || a.beta_g1 != b.beta_g1
        || a.beta_g2 != b.beta_g2
        || a.gamma_g2 != b.gamma_g2
        || a.ic != b.ic
        || initial.a != current.a
        || initial.b_g1 != current.b_g1
        || initial.b_g2 != current.b_g2
        || initial.h.len() != current.h.len()
        || initial.l.len() != current.l.len()
    {
        return fail("parameters changed outside delta, H and L");
    }
    let mut prev = initial.vk.delta_g1;
    for (i, c) in transcript.contributions.iter().enumerate() {
        if bool::from(c.s.is_identity()) || bool::from(c.s_x.is_identity()) {
            return Err(ZkError::Ceremony(format!(
                "contribution {i}: degenerate proof"
            )));
        }
        let r = hash_to_g2(&pok_seed(&transcript.prefix_digest(i), &c.s, &c.s_x));
        if !same_ratio((&c.s, &c.s_x), (&r, &c.r_x)) {
            return Err(ZkError::Ceremony(format!(
                "contribution {i}: proof of knowledge fails"
            )));
        }
        if !same_ratio((&prev, &c.delta_g1), (&r, &c.r_x)) {
            return Err(ZkError::Ceremony(format!(
                "contribution {i}: delta not updated by the proven secret"
            )));
        }
        if !same_ratio(
            (&initial.vk.delta_g1, &c.delta_g1),
            (&initial.vk.delta_g2, &c.delta_g2),
        ) {
            return Err(ZkError::Ceremony(format!(
                "contribution {i}: delta in G1 and G2 disagree"
            )));
        }
        prev = c.delta_g1;
    }
    if prev != current.vk.delta_g1 {
        return fail("final delta is not the last contribution's");
    }
    if !same_ratio(
        (&initial.vk.delta_g1, &current.vk.delta_g1),
        (&initial.vk.delta_g2, &current.vk.delta_g2),
    ) {
        return fail("final delta in G1 and G2 disagree");
    }
    let mut rng = rand::rngs::OsRng;
    for (name, old, new) in [("H", &initial.h, &current.h), ("L", &initial.l, &current.l)] {
        let coeffs: Vec<Scalar> = (0..old.len()).map(|_| Scalar::random(&mut rng)).collect();
        let old_c = random_combination(old, &coeffs).to_affine();
        let new_c = random_combination(new, &coeffs).to_affine();
        if pairing(&old_c, &initial.vk.delta_g2) != pairing(&new_c, &current.vk.delta_g2) {
            return Err(ZkError::Ceremony(format!(
                "{name} query not consistent with delta"
            )));
        }
    }
    Ok(transcript.contributions.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::record::Record;

    const TINY: RecordShape = RecordShape {
        format_cap: 6,
        key_cap: 4,
        columns: 1,
        name_cap: 5,
        value_cap: 9,
    };
    use crate::possession::{prove_possession, verify_possession, PossessionPublic};
    use crate::proof::Keys;
    use rand_core::SeedableRng;

    #[test]
    fn ceremony_contributions_verify_and_proofs_work() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let circuit = CeremonyCircuit::Possession(TINY);
        let initial = circuit.initial_params(&mut rng).unwrap();
        let mut t = Transcript::new(circuit.id(), &initial).unwrap();
        let mut params = initial.clone();
        contribute(&mut params, &mut t, &mut rng).unwrap();
        contribute(&mut params, &mut t, &mut rng).unwrap();
        let t = Transcript::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(verify_transcript(&initial, &params, &t).unwrap(), 2);

        // the resulting parameters prove and verify
        let keys = Keys::new(params.clone());
        let r = Record {
            format: b"carvio".to_vec(),
            key: b"k1".to_vec(),
            columns: vec![(b"price".to_vec(), vec![3, 0, 0, 0, 0, 0, 0, 0, 200])],
        };
        let public = PossessionPublic {
            dhash: r.dhash_scalar(),
            challenge: Scalar::from(3u64),
            prover: Scalar::from(4u64),
        };
        let proof = prove_possession(&keys, &TINY, &r, &public).unwrap();
        verify_possession(&keys.pvk, &public, &proof).unwrap();

        // tampering: a contribution whose delta is not backed by its proof
        let mut bad = t.clone();
        bad.contributions[1].delta_g1 = G1Affine::generator();
        assert!(verify_transcript(&initial, &params, &bad).is_err());
        // tampering: someone scales H without updating delta
        let mut forged = params.clone();
        forged.h = Arc::new(scale_g1(&forged.h, &Scalar::from(2u64)));
        assert!(matches!(
            verify_transcript(&initial, &forged, &t),
            Err(ZkError::Ceremony(_))
        ));
        // a contribution that is dropped from the transcript
        let mut dropped = t.clone();
        dropped.contributions.remove(0);
        assert!(verify_transcript(&initial, &params, &dropped).is_err());
        // a contribution replayed into another transcript position fails its proof
        let mut reordered = t.clone();
        reordered.contributions.swap(0, 1);
        assert!(verify_transcript(&initial, &params, &reordered).is_err());
    }

    #[test]
    fn hash_to_g2_is_deterministic_and_in_subgroup() {
        let a = hash_to_g2(b"x");
        assert_eq!(a, hash_to_g2(b"x"));
        assert_ne!(a, hash_to_g2(b"y"));
        assert!(bool::from(a.is_torsion_free()));
        assert!(bool::from(a.is_on_curve()));
    }
}
