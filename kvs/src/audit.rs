//! Storage audits: a challenger derives unpredictable chunk indices from a seed (a block hash
//! later); the node answers with the chunks and their Merkle paths; anyone holding the index
//! entry verifies the answer; outcomes are recorded per node.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{KvsError, Result};
use crate::merkle::{self, hash_parts, Hash};
use crate::model::IndexEntry;
use crate::placement::NodeId;
use crate::store::Store;

/// Domain of audit index derivation.
pub const DOMAIN_AUDIT: &str = "carchain/kvs/audit/v1";

/// An audit challenge for one shard of one stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Stripe root.
    pub root: Hash,
    /// Shard index challenged.
    pub index: u8,
    /// Unpredictable seed.
    pub seed: Hash,
    /// How many chunks to sample.
    pub samples: u8,
}

/// The chunk indices a challenge asks for, for a shard of `chunk_count` chunks.
pub fn chunk_indices(ch: &Challenge, chunk_count: usize) -> Vec<usize> {
    let count = chunk_count.max(1) as u64;
    (0..ch.samples)
        .map(|j| {
            let h = hash_parts(DOMAIN_AUDIT, &[&ch.seed, &ch.root, &[ch.index, j]]);
            let mut w = [0u8; 8];
            w.copy_from_slice(h.get(..8).unwrap_or(&[0u8; 8]));
            usize::try_from(u64::from_be_bytes(w).checked_rem(count).unwrap_or(0)).unwrap_or(0)
        })
        .collect()
}

/// One sampled chunk with its path to the shard's chunk root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProof {
    /// Chunk index.
    pub chunk: usize,
    /// Chunk bytes.
    pub data: Vec<u8>,
    /// Path to the chunk root.
    pub path: Vec<Hash>,
}

/// A node's answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProof {
    /// Root over the shard's chunks.
    pub chunk_root: Hash,
    /// Path from the shard hash to the stripe root.
    pub shard_path: Vec<Hash>,
    /// The sampled chunks.
    pub chunks: Vec<ChunkProof>,
}

/// Builds the answer from the shard bytes and its stored path to the stripe root.
pub fn prove(ch: &Challenge, shard: &[u8], shard_path: &[Hash]) -> Result<AuditProof> {
    let leaves = merkle::chunk_leaves(shard);
    let mut chunks = Vec::new();
    for i in chunk_indices(ch, leaves.len()) {
        let start = i.saturating_mul(merkle::CHUNK_SIZE).min(shard.len());
        let end = start.saturating_add(merkle::CHUNK_SIZE).min(shard.len());
        let data = shard
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let path = merkle::path(&leaves, i)
            .ok_or(KvsError::malformed("audit", "chunk index out of range"))?;
        chunks.push(ChunkProof {
            chunk: i,
            data,
            path,
        });
    }
    Ok(AuditProof {
        chunk_root: merkle::root(&leaves),
        shard_path: shard_path.to_vec(),
        chunks,
    })
}

/// Whether `proof` answers `ch` for the stripe described by `entry`.
pub fn verify(ch: &Challenge, entry: &IndexEntry, proof: &AuditProof) -> bool {
    if ch.root != entry.root || usize::from(ch.index) >= entry.params.n() {
        return false;
    }
    let shard_len = entry.params.shard_len(entry.payload_len);
    let shard_hash = merkle::shard_hash_from_chunk_root(ch.index, shard_len, &proof.chunk_root);
    if !merkle::verify(
        &shard_hash,
        ch.index.into(),
        entry.params.n().saturating_add(1),
        &proof.shard_path,
        &entry.root,
    ) {
        return false;
    }
    let Ok(len) = usize::try_from(shard_len) else {
        return false;
    };
    let count = merkle::chunk_count(len);
    let wanted = chunk_indices(ch, count);
    if wanted.len() != proof.chunks.len() {
        return false;
    }
    wanted.iter().zip(&proof.chunks).all(|(&want, c)| {
        let expected_len = len
            .saturating_sub(want.saturating_mul(merkle::CHUNK_SIZE))
            .min(merkle::CHUNK_SIZE);
        c.chunk == want
            && c.data.len() == expected_len
            && merkle::verify(
                &hash_parts(merkle::DOMAIN_CHUNK, &[&c.data]),
                want,
                count,
                &c.path,
                &proof.chunk_root,
            )
    })
}

/// What happened to one audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// A valid answer.
    Passed,
    /// A wrong answer (or the node admitted it lost the shard).
    Failed,
    /// No answer in time.
    Missed,
}

/// Per-node audit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTally {
    /// Passed audits.
    pub passed: u64,
    /// Failed audits.
    pub failed: u64,
    /// Missed audits.
    pub missed: u64,
}

/// Durable record of audit outcomes (they will drive rewards and slashing).
pub struct AuditLedger {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for AuditLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLedger").finish_non_exhaustive()
    }
}

impl AuditLedger {
    /// A ledger kept in `store` under the `A` prefix.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    fn key(node: &str, ch: &Challenge) -> Vec<u8> {
        let mut k = vec![b'A'];
        crate::keys::push_component(&mut k, node.as_bytes());
        k.extend_from_slice(&ch.root);
        k.push(ch.index);
        k.extend_from_slice(&ch.seed);
        k
    }

    /// Records an outcome (idempotent per node and challenge).
    pub fn record(&self, node: &str, ch: &Challenge, outcome: AuditOutcome) -> Result<()> {
        let v = match outcome {
            AuditOutcome::Passed => 0u8,
            AuditOutcome::Failed => 1,
            AuditOutcome::Missed => 2,
        };
        self.store.put(&Self::key(node, ch), &[v])
    }

    /// Counts per node.
    pub fn tallies(&self) -> Result<BTreeMap<NodeId, AuditTally>> {
        let mut out: BTreeMap<NodeId, AuditTally> = BTreeMap::new();
        for (k, v) in self.store.scan_prefix(b"A", usize::MAX)? {
            let rest = k
                .get(1..)
                .ok_or(KvsError::malformed("audit key", "empty"))?;
            let (node, _) = crate::keys::pop_component(rest)?;
            let node = String::from_utf8(node)
                .map_err(|_| KvsError::malformed("audit key", "node not utf-8"))?;
            let t = out.entry(node).or_default();
            match v.as_slice() {
                [0] => t.passed = t.passed.saturating_add(1),
                [1] => t.failed = t.failed.saturating_add(1),
                [2] => t.missed = t.missed.saturating_add(1),
                _ => return Err(KvsError::malformed("audit outcome", "unknown value")),
            }
        }
        Ok(out)
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
    use crate::coding::{encode, CodingParams};
    use crate::store::MemStore;

    fn entry_for(payload: &[u8]) -> (crate::coding::Stripe, IndexEntry) {
        let p = CodingParams::default();
        let s = encode(p, payload).unwrap();
        let e = IndexEntry {
            dhash: [0; 32],
            size: payload.len() as u64,
            root: s.root,
            epoch: 1,
            params: p,
            payload_len: s.payload_len,
        };
        (s, e)
    }

    #[test]
    fn honest_answers_verify_and_tampered_ones_fail() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (s, e) = entry_for(&payload);
        for index in 0..6u8 {
            let ch = Challenge {
                root: s.root,
                index,
                seed: [index; 32],
                samples: 4,
            };
            let st = s.stored_shard(index).unwrap();
            let proof = prove(&ch, &st.data, &st.path).unwrap();
            assert!(verify(&ch, &e, &proof));
            let mut bad = proof.clone();
            bad.chunks[0].data[0] ^= 1;
            assert!(!verify(&ch, &e, &bad));
            // answering with another seed's chunks fails
            let other = Challenge {
                seed: [0xEE; 32],
                ..ch
            };
            let wrong = prove(&other, &st.data, &st.path).unwrap();
            assert!(chunk_indices(&ch, 7) == chunk_indices(&other, 7) || !verify(&ch, &e, &wrong));
            // a node holding a corrupted shard cannot pass
            let mut data = st.data.clone();
            for b in data.iter_mut() {
                *b ^= 0x55;
            }
            assert!(!verify(&ch, &e, &prove(&ch, &data, &st.path).unwrap()));
        }
    }

    #[test]
    fn indices_depend_on_the_seed() {
        let ch = Challenge {
            root: [1; 32],
            index: 0,
            seed: [2; 32],
            samples: 16,
        };
        let a = chunk_indices(&ch, 1000);
        let b = chunk_indices(
            &Challenge {
                seed: [3; 32],
                ..ch
            },
            1000,
        );
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.iter().all(|&i| i < 1000));
    }

    #[test]
    fn ledger_counts_outcomes_per_node() {
        let l = AuditLedger::new(Arc::new(MemStore::new()));
        let ch = Challenge {
            root: [1; 32],
            index: 0,
            seed: [2; 32],
            samples: 1,
        };
        l.record("n1", &ch, AuditOutcome::Passed).unwrap();
        l.record(
            "n1",
            &Challenge {
                seed: [3; 32],
                ..ch
            },
            AuditOutcome::Failed,
        )
        .unwrap();
        l.record("n2", &ch, AuditOutcome::Missed).unwrap();
        l.record("n2", &ch, AuditOutcome::Missed).unwrap();
        let t = l.tallies().unwrap();
        assert_eq!(
            t["n1"],
            AuditTally {
                passed: 1,
                failed: 1,
                missed: 0
            }
        );
        assert_eq!(
            t["n2"],
            AuditTally {
                passed: 0,
                failed: 0,
                missed: 1
            }
        );
    }
}
