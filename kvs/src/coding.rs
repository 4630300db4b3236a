//! Reed–Solomon striping: a payload becomes `k` data shards and `m` parity shards, each
//! committed by a Merkle root so that a corrupt shard is detected and treated as an erasure.
//!
//! A shard's hash binds its index, its length and the Merkle root of its 4 KiB chunks; the
//! stripe root is the Merkle root of the `k+m` shard hashes and names the stripe. A stored shard
//! carries its own Merkle path to the stripe root, so a node verifies it with nothing but the
//! stored bytes and the key it is stored under.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

use crate::error::{KvsError, Result};
use crate::merkle::{self, Hash};
use crate::wire::{Reader, Writer};

/// Erasure-coding parameters: `k` data shards, `m` parity shards; any `k` rebuild the stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodingParams {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
}

impl Default for CodingParams {
    fn default() -> Self {
        Self { k: 4, m: 2 }
    }
}

impl CodingParams {
    /// Validated parameters: `k >= 1`, `m >= 1`, `k + m <= 255`.
    pub fn new(k: u8, m: u8) -> Result<Self> {
        if k == 0 || m == 0 || u16::from(k).saturating_add(u16::from(m)) > 255 {
            return Err(KvsError::InvalidParams {
                k: k.into(),
                m: m.into(),
            });
        }
        Ok(Self { k, m })
    }
    /// Total shards `k + m`.
    pub fn n(&self) -> usize {
        usize::from(self.k).saturating_add(usize::from(self.m))
    }
    /// Length of every shard for a payload of `payload_len` bytes (at least 1).
    pub fn shard_len(&self, payload_len: u64) -> u64 {
        payload_len.div_ceil(u64::from(self.k.max(1))).max(1)
    }
    fn codec(&self) -> Result<ReedSolomon> {
        ReedSolomon::new(self.k.into(), self.m.into())
            .map_err(|e| KvsError::Coding(format!("{e:?}").to_lowercase()))
    }
}

/// A freshly encoded stripe.
#[derive(Debug, Clone)]
pub struct Stripe {
    /// Coding parameters.
    pub params: CodingParams,
    /// Length of the original payload.
    pub payload_len: u64,
    /// Merkle root over the shard hashes; the stripe's name.
    pub root: Hash,
    /// Shard hashes, by index.
    pub shard_hashes: Vec<Hash>,
    /// Shard contents, by index (data shards first).
    pub shards: Vec<Vec<u8>>,
    /// Digest of the stripe's directory (addresses, keys, cell sizes), committed as the last
    /// Merkle leaf so equal payloads under different directories get different roots.
    pub bind: Hash,
}

/// The Merkle leaves of a stripe: its shard hashes, then the directory binding.
pub fn stripe_leaves(shard_hashes: &[Hash], bind: &Hash) -> Vec<Hash> {
    let mut leaves = shard_hashes.to_vec();
    leaves.push(merkle::hash_parts(merkle::DOMAIN_BIND, &[bind]));
    leaves
}

/// The stripe root over shard hashes and the directory binding.
pub fn stripe_root(shard_hashes: &[Hash], bind: &Hash) -> Hash {
    merkle::root(&stripe_leaves(shard_hashes, bind))
}

impl Stripe {
    /// The stored form of shard `index` (header with Merkle path, then the bytes).
    pub fn stored_shard(&self, index: u8) -> Result<StoredShard> {
        let data = self
            .shards
            .get(usize::from(index))
            .ok_or(KvsError::malformed("stripe", "shard index out of range"))?;
        let path = merkle::path(&stripe_leaves(&self.shard_hashes, &self.bind), index.into())
            .ok_or(KvsError::malformed("stripe", "shard index out of range"))?;
        Ok(StoredShard {
            params: self.params,
            index,
            payload_len: self.payload_len,
            path,
            data: data.clone(),
        })
    }
}

/// [`encode_bound`] with an all-zero directory binding (tests and benchmarks).
pub fn encode(params: CodingParams, payload: &[u8]) -> Result<Stripe> {
    encode_bound(params, payload, &[0u8; 32])
}

/// Splits `payload` into `k` data shards, computes `m` parity shards and the commitments,
/// binding the directory digest `bind` into the root.
pub fn encode_bound(params: CodingParams, payload: &[u8], bind: &Hash) -> Result<Stripe> {
    let payload_len =
        u64::try_from(payload.len()).map_err(|_| KvsError::Overflow("payload length"))?;
    let shard_len = usize::try_from(params.shard_len(payload_len))
        .map_err(|_| KvsError::Overflow("shard length"))?;
    let mut shards: Vec<Vec<u8>> = Vec::with_capacity(params.n());
    for i in 0..usize::from(params.k) {
        let start = i
            .checked_mul(shard_len)
            .ok_or(KvsError::Overflow("shard offset"))?
            .min(payload.len());
        let end = start.saturating_add(shard_len).min(payload.len());
        let mut s = payload
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        s.resize(shard_len, 0);
        shards.push(s);
    }
    for _ in 0..params.m {
        shards.push(vec![0u8; shard_len]);
    }
    params
        .codec()?
        .encode(&mut shards)
        .map_err(|e| KvsError::Coding(format!("{e:?}").to_lowercase()))?;
    let shard_hashes: Vec<Hash> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| merkle::shard_hash(u8::try_from(i).unwrap_or(u8::MAX), s))
        .collect();
    Ok(Stripe {
        params,
        payload_len,
        root: stripe_root(&shard_hashes, bind),
        shard_hashes,
        shards,
        bind: *bind,
    })
}

/// Rebuilds every missing shard in place from at least `k` present ones (all of equal length).
pub fn reconstruct(params: CodingParams, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
    if shards.len() != params.n() {
        return Err(KvsError::malformed("stripe", "wrong shard count"));
    }
    params
        .codec()?
        .reconstruct(shards)
        .map_err(|e| KvsError::Coding(format!("{e:?}").to_lowercase()))
}

/// Rebuilds the payload from at least `k` verified shards (`None` marks an erasure).
pub fn decode(
    params: CodingParams,
    payload_len: u64,
    mut shards: Vec<Option<Vec<u8>>>,
) -> Result<Vec<u8>> {
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < usize::from(params.k) {
        return Err(KvsError::NotEnoughShards {
            stripe: String::new(),
            have,
            need: params.k.into(),
        });
    }
    if shards.iter().take(params.k.into()).any(Option::is_none) {
        if shards.len() != params.n() {
            return Err(KvsError::malformed("stripe", "wrong shard count"));
        }
        params
            .codec()?
            .reconstruct_data(&mut shards)
            .map_err(|e| KvsError::Coding(format!("{e:?}").to_lowercase()))?;
    }
    let want = usize::try_from(payload_len).map_err(|_| KvsError::Overflow("payload length"))?;
    let mut out = Vec::with_capacity(want);
    for s in shards.into_iter().take(params.k.into()).flatten() {
        out.extend_from_slice(&s);
    }
    if out.len() < want {
        return Err(KvsError::malformed(
            "stripe",
            "payload shorter than recorded",
        ));
    }
    out.truncate(want);
    Ok(out)
}

const SHARD_VERSION: u8 = 1;

/// A shard as a node stores and serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShard {
    /// Coding parameters of the stripe.
    pub params: CodingParams,
    /// This shard's index (`0..k` data, `k..k+m` parity).
    pub index: u8,
    /// Length of the stripe's payload.
    pub payload_len: u64,
    /// Merkle path from this shard's hash to the stripe root.
    pub path: Vec<Hash>,
    /// The shard bytes.
    pub data: Vec<u8>,
}

impl StoredShard {
    /// Serialized header length (what a shard costs beyond its data).
    pub fn header_len(&self) -> usize {
        self.path.len().saturating_mul(32).saturating_add(13)
    }

    /// Serialized form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SHARD_VERSION)
            .u8(self.params.k)
            .u8(self.params.m)
            .u8(self.index)
            .u64(self.payload_len);
        w.u8(u8::try_from(self.path.len()).unwrap_or(u8::MAX));
        for h in &self.path {
            w.raw(h);
        }
        w.raw(&self.data);
        w.finish()
    }

    /// Parses a stored shard (no verification; see [`StoredShard::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "stored shard");
        if r.u8()? != SHARD_VERSION {
            return Err(KvsError::malformed("stored shard", "unknown version"));
        }
        let params = CodingParams::new(r.u8()?, r.u8()?)?;
        let index = r.u8()?;
        let payload_len = r.u64()?;
        let npath = r.u8()?;
        let mut path = Vec::with_capacity(npath.into());
        for _ in 0..npath {
            path.push(r.array::<32>()?);
        }
        let data = r.rest().to_vec();
        if usize::from(index) >= params.n() {
            return Err(KvsError::malformed("stored shard", "index out of range"));
        }
        if u64::try_from(data.len()).ok() != Some(params.shard_len(payload_len)) {
            return Err(KvsError::malformed(
                "stored shard",
                "length does not match payload",
            ));
        }
        Ok(Self {
            params,
            index,
            payload_len,
            path,
            data,
        })
    }

    /// This shard's hash.
    pub fn hash(&self) -> Hash {
        merkle::shard_hash(self.index, &self.data)
    }

    /// Checks the shard against the stripe root it is stored under.
    pub fn verify(&self, root: &Hash) -> Result<()> {
        if merkle::verify(
            &self.hash(),
            self.index.into(),
            self.params.n().saturating_add(1),
            &self.path,
            root,
        ) {
            Ok(())
        } else {
            Err(KvsError::CorruptShard {
                stripe: hex::encode(root),
                index: self.index,
            })
        }
    }

    /// Decodes and verifies in one step.
    pub fn open(bytes: &[u8], root: &Hash, index: u8) -> Result<Self> {
        let s = Self::decode(bytes).map_err(|_| KvsError::CorruptShard {
            stripe: hex::encode(root),
            index,
        })?;
        if s.index != index {
            return Err(KvsError::CorruptShard {
                stripe: hex::encode(root),
                index,
            });
        }
        s.verify(root)?;
        Ok(s)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_k_shards_decode(payload in proptest::collection::vec(any::<u8>(), 0..3000),
                               k in 1u8..6, m in 1u8..4, drop_seed in any::<u64>()) {
            let p = CodingParams::new(k, m).unwrap();
            let s = encode(p, &payload).unwrap();
            let mut shards: Vec<Option<Vec<u8>>> = s.shards.iter().cloned().map(Some).collect();
            // erase m shards chosen from the seed
            let mut seed = drop_seed;
            for _ in 0..m {
                let i = (seed % u64::from(k + m)) as usize;
                shards[i] = None;
                seed = seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
            }
            prop_assert_eq!(decode(p, s.payload_len, shards).unwrap(), payload);
        }

        #[test]
        fn stored_shards_round_trip_and_verify(payload in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let p = CodingParams::default();
            let s = encode(p, &payload).unwrap();
            for i in 0..6u8 {
                let st = s.stored_shard(i).unwrap();
                let bytes = st.encode();
                prop_assert_eq!(bytes.len(), st.header_len() + st.data.len());
                let back = StoredShard::open(&bytes, &s.root, i).unwrap();
                prop_assert_eq!(back, st);
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StoredShard::decode(&bytes);
        }
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let p = CodingParams::default();
        let s = encode(p, &vec![7u8; 10_000]).unwrap();
        for i in 0..6u8 {
            let mut bytes = s.stored_shard(i).unwrap().encode();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
            assert!(matches!(
                StoredShard::open(&bytes, &s.root, i),
                Err(KvsError::CorruptShard { .. })
            ));
            // a correct shard presented under the wrong index is rejected too
            let good = s.stored_shard(i).unwrap().encode();
            assert!(StoredShard::open(&good, &s.root, (i + 1) % 6).is_err());
        }
    }

    #[test]
    fn too_few_shards_is_an_error() {
        let p = CodingParams::default();
        let s = encode(p, b"hello world").unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = s.shards.iter().cloned().map(Some).collect();
        shards[0] = None;
        shards[2] = None;
        shards[5] = None;
        assert!(matches!(
            decode(p, s.payload_len, shards),
            Err(KvsError::NotEnoughShards { .. })
        ));
        assert!(CodingParams::new(0, 2).is_err());
        assert!(CodingParams::new(4, 0).is_err());
        assert!(CodingParams::new(200, 60).is_err());
    }
}
