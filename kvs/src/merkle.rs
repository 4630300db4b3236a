//! Domain-separated SHA-256 hashing and binary Merkle trees (root, path, verification).
//!
//! Leaves and inner nodes use different domains; an odd node at the end of a level is promoted
//! unchanged, so a path depends on the leaf index and the leaf count.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// Domain for inner Merkle nodes.
pub const DOMAIN_NODE: &str = "carchain/kvs/merkle-node/v1";
/// Domain for chunk leaves inside a shard.
pub const DOMAIN_CHUNK: &str = "carchain/kvs/chunk/v1";
/// Domain for the directory-binding leaf of a stripe.
pub const DOMAIN_BIND: &str = "carchain/kvs/stripe-bind/v1";
/// Domain for a shard's hash (its index, length and chunk root).
pub const DOMAIN_SHARD: &str = "carchain/kvs/shard/v1";

/// `SHA-256(len(domain) || domain || parts...)`.
pub fn hash_parts(domain: &str, parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_be_bytes());
    h.update(domain.as_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    hash_parts(DOMAIN_NODE, &[left, right])
}

/// Root of the tree over `leaves` (all-zero for no leaves).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = leaves.to_vec();
    if level.is_empty() {
        return [0u8; 32];
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [one] => *one,
                _ => [0u8; 32],
            })
            .collect();
    }
    level.first().copied().unwrap_or([0u8; 32])
}

/// Sibling hashes from leaf `index` up to the root; `None` if `index` is out of range.
pub fn path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    let mut idx = index;
    let mut out = Vec::new();
    while level.len() > 1 {
        let sibling = idx ^ 1;
        if let Some(s) = level.get(sibling) {
            out.push(*s);
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [one] => *one,
                _ => [0u8; 32],
            })
            .collect();
        idx /= 2;
    }
    Some(out)
}

/// Whether `leaf` at `index` of a `count`-leaf tree with siblings `path` hashes to `expected`.
pub fn verify(leaf: &Hash, index: usize, count: usize, path: &[Hash], expected: &Hash) -> bool {
    if index >= count {
        return false;
    }
    let mut acc = *leaf;
    let mut idx = index;
    let mut width = count;
    let mut siblings = path.iter();
    while width > 1 {
        let sibling = idx ^ 1;
        if sibling < width {
            let Some(s) = siblings.next() else {
                return false;
            };
            acc = if idx % 2 == 0 {
                node(&acc, s)
            } else {
                node(s, &acc)
            };
        }
        idx /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && acc == *expected
}

/// Size of the audit chunks a shard is split into.
pub const CHUNK_SIZE: usize = 4096;

/// Leaf hashes of a shard's fixed-size chunks (at least one, even for an empty shard).
pub fn chunk_leaves(data: &[u8]) -> Vec<Hash> {
    if data.is_empty() {
        return vec![hash_parts(DOMAIN_CHUNK, &[])];
    }
    data.chunks(CHUNK_SIZE)
        .map(|c| hash_parts(DOMAIN_CHUNK, &[c]))
        .collect()
}

/// Number of audit chunks in a shard of `len` bytes.
pub fn chunk_count(len: usize) -> usize {
    len.div_ceil(CHUNK_SIZE).max(1)
}

/// The hash committing a shard: its index, length and the root over its chunks.
pub fn shard_hash(index: u8, data: &[u8]) -> Hash {
    shard_hash_from_chunk_root(index, data.len() as u64, &root(&chunk_leaves(data)))
}

/// [`shard_hash`] from an already computed chunk root.
pub fn shard_hash_from_chunk_root(index: u8, len: u64, chunk_root: &Hash) -> Hash {
    hash_parts(DOMAIN_SHARD, &[&[index], &len.to_be_bytes(), chunk_root])
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

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| hash_parts("t", &[&i.to_be_bytes()]))
            .collect()
    }

    proptest! {
        #[test]
        fn every_path_verifies(n in 1usize..40, pick in 0usize..40) {
            let ls = leaves(n);
            let i = pick % n;
            let r = root(&ls);
            let p = path(&ls, i).unwrap();
            prop_assert!(verify(&ls[i], i, n, &p, &r));
            // a different leaf or index fails
            let other = hash_parts("other", &[]);
            prop_assert!(!verify(&other, i, n, &p, &r));
            if n > 1 {
                prop_assert!(!verify(&ls[i], (i + 1) % n, n, &p, &r));
            }
        }
    }

    #[test]
    fn shard_hash_binds_index_and_content() {
        let a = shard_hash(0, b"hello");
        assert_ne!(a, shard_hash(1, b"hello"));
        assert_ne!(a, shard_hash(0, b"hellp"));
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
    }
}
