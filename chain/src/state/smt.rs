//! The state commitment: a compact sparse Merkle tree over 256-bit key paths.
//!
//! Every state entry `(key, value)` is a leaf at the position given by the bits of its path
//! [`key_path`]`(key)`, most significant bit first (0 = left). The tree is *compact*: a subtree
//! holding exactly one leaf is that leaf, wherever it sits, so a tree of `n` entries is about
//! `log2 n` levels deep and a write costs that many hashes, not 256. A subtree holding no leaf is
//! the empty hash. The shape therefore depends only on the set of entries, never on the order of
//! writes or on history, and so does the root.
//!
//! Hashes, all under [`Domain::StateMerkle`] with a one-byte tag so no two kinds can collide:
//!
//! | what | preimage |
//! |---|---|
//! | key path | `0x00 ‖ key` |
//! | value hash | `0x01 ‖ value` |
//! | leaf | `0x02 ‖ key path ‖ value hash` (independent of depth, so a leaf can move up or down) |
//! | inner node | `0x03 ‖ left ‖ right` |
//! | empty subtree | `0x04` ([`EMPTY_ROOT`]) |
//!
//! Nodes are content-addressed: the store maps a node's hash to its encoding ([`Node::encode`]),
//! so every old root stays readable as long as its nodes are kept. Reading goes through the
//! [`NodeReader`] trait and [`apply`] returns the nodes to write instead of writing them: the
//! host (RocksDB in the node, [`MemNodes`] in tests and the simulation) stores them in the same
//! atomic batch as the block and the flat state.
//!
//! Proofs ([`StateProof`]) list the siblings from the root down to the position where the
//! search for a key ends: its own leaf (membership), an empty subtree or another key's leaf
//! (non-membership).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;

use primitives::codec::{self, CodecError, Limits, FORMAT_VERSION};
use primitives::hash::{Domain, Hash32, Hasher};
use serde::{Deserialize, Serialize};

use super::view::{StateError, WriteSet};

/// Number of bits in a key path: the most levels a proof can have.
pub const TREE_DEPTH: usize = 256;

/// Root of the tree with no entries: the hash of the empty-subtree tag.
pub const EMPTY_ROOT: Hash32 = [
    0x56, 0xbe, 0x2a, 0x1b, 0x97, 0x18, 0x21, 0x36, 0xa7, 0xd8, 0xaf, 0x1d, 0x6f, 0x43, 0xe7, 0xb7,
    0xfd, 0x90, 0xc3, 0xf3, 0xc5, 0x2e, 0x85, 0xd0, 0xbe, 0x98, 0x84, 0x6c, 0xfb, 0xd0, 0x49, 0x8b,
];

const KEY_TAG: u8 = 0;
const VALUE_TAG: u8 = 1;
const LEAF_TAG: u8 = 2;
const INNER_TAG: u8 = 3;
const EMPTY_TAG: u8 = 4;

/// Largest encoded node: version byte, variant index and two hashes.
pub const MAX_NODE_BYTES: usize = 1 + 4 + 64;

/// Largest encoded proof: version byte, sibling count, [`TREE_DEPTH`] siblings, the terminal.
pub const MAX_PROOF_BYTES: usize = 1 + 4 + TREE_DEPTH * 32 + 4 + 64;

const NODE_LIMITS: Limits = Limits {
    max_input: MAX_NODE_BYTES,
    max_items: 0,
    max_depth: 4,
};

const PROOF_LIMITS: Limits = Limits {
    max_input: MAX_PROOF_BYTES,
    max_items: TREE_DEPTH as u32,
    max_depth: 6,
};

fn tagged(tag: u8) -> Hasher {
    let mut h = Hasher::new(Domain::StateMerkle);
    h.update(&[tag]);
    h
}

/// The 256-bit path of `key` in the tree.
pub fn key_path(key: &[u8]) -> Hash32 {
    let mut h = tagged(KEY_TAG);
    h.update(key);
    h.finish()
}

/// The commitment to a value stored in a leaf.
pub fn value_hash(value: &[u8]) -> Hash32 {
    let mut h = tagged(VALUE_TAG);
    h.update(value);
    h.finish()
}

/// The hash of the leaf holding `(key path, value hash)`.
pub fn leaf_hash(key_path: &Hash32, value_hash: &Hash32) -> Hash32 {
    let mut h = tagged(LEAF_TAG);
    h.update(key_path).update(value_hash);
    h.finish()
}

/// The hash of an inner node with these children.
pub fn inner_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = tagged(INNER_TAG);
    h.update(left).update(right);
    h.finish()
}

/// The hash of the empty subtree, computed (equal to [`EMPTY_ROOT`]).
pub fn empty_hash() -> Hash32 {
    tagged(EMPTY_TAG).finish()
}

/// Bit `depth` of `path`, most significant first; `None` past the end.
fn bit(path: &Hash32, depth: usize) -> Option<bool> {
    let byte = path.get(depth / 8)?;
    Some(byte & (0x80 >> (depth % 8)) != 0)
}

/// Whether `a` and `b` agree on their first `bits` bits.
fn shares_prefix(a: &Hash32, b: &Hash32, bits: usize) -> bool {
    (0..bits).all(|d| bit(a, d) == bit(b, d))
}

/// A stored tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// One entry: its key path and value hash.
    Leaf {
        /// [`key_path`] of the entry's key.
        key_path: Hash32,
        /// [`value_hash`] of the entry's value.
        value_hash: Hash32,
    },
    /// A subtree of at least two entries.
    Inner {
        /// Hash of the subtree whose next path bit is 0.
        left: Hash32,
        /// Hash of the subtree whose next path bit is 1.
        right: Hash32,
    },
}

impl Node {
    /// The node's hash (its address in the store).
    pub fn hash(&self) -> Hash32 {
        match self {
            Node::Leaf {
                key_path,
                value_hash,
            } => leaf_hash(key_path, value_hash),
            Node::Inner { left, right } => inner_hash(left, right),
        }
    }

    /// The node's stored bytes: versioned canonical encoding.
    ///
    /// # Errors
    /// [`CodecError`] only if the codec itself is broken (a node always encodes).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_versioned(self)
    }

    /// Decodes stored bytes, refusing anything but a canonical, versioned node.
    ///
    /// # Errors
    /// [`CodecError`] for an unknown version, truncated, oversized or non-canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Node, CodecError> {
        decode_limited(bytes, NODE_LIMITS)
    }
}

fn decode_limited<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    limits: Limits,
) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::UnexpectedEnd { needed: 1 }),
        Some((&FORMAT_VERSION, rest)) => codec::from_slice_with_limits(rest, limits),
        Some((&found, _)) => Err(CodecError::UnsupportedVersion {
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// Read access to stored tree nodes, by hash.
pub trait NodeReader {
    /// The encoded node stored under `hash`, if any.
    ///
    /// # Errors
    /// [`StateError::Store`] when the backing store fails.
    fn node(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StateError>;
}

impl<R: NodeReader + ?Sized> NodeReader for &R {
    fn node(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StateError> {
        (**self).node(hash)
    }
}

/// Tree nodes in memory: for tests and the simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemNodes {
    nodes: HashMap<Hash32, Vec<u8>>,
}

impl MemNodes {
    /// An empty store (holding the empty tree, which needs no nodes).
    pub fn new() -> Self {
        MemNodes::default()
    }

    /// Stores an update's new nodes (keeping the stale ones, so older roots stay readable).
    pub fn commit(&mut self, update: &TreeUpdate) {
        for (h, bytes) in &update.new_nodes {
            self.nodes.insert(*h, bytes.clone());
        }
    }

    /// Deletes nodes, e.g. an update's `stale_nodes` once no reader needs the old root.
    pub fn prune(&mut self, hashes: &[Hash32]) {
        for h in hashes {
            self.nodes.remove(h);
        }
    }

    /// Stores raw bytes under a hash (tests use it to plant corrupt nodes).
    pub fn insert_raw(&mut self, hash: Hash32, bytes: Vec<u8>) {
        self.nodes.insert(hash, bytes);
    }

    /// Number of stored nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeReader for MemNodes {
    fn node(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.nodes.get(hash).cloned())
    }
}

/// What applying a write set to a root produced.
///
/// A node hash can come back in a later version (a value written back to what it was), so a
/// host that deletes `stale_nodes` must not delete a node that a newer update re-created:
/// reference-count nodes, or prune only versions no reader needs and re-put newer nodes. A node
/// coming back is always in `new_nodes` (it was not reachable from the old root), which is what
/// lets a host forget a stale mark when the node is written again; the node's RocksDB store
/// (`node::store`) prunes that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUpdate {
    /// The new root.
    pub root: Hash32,
    /// Nodes reachable from the new root that were not reachable from the old one, with their
    /// encodings: store them (`hash → bytes`) atomically with the block.
    pub new_nodes: Vec<(Hash32, Vec<u8>)>,
    /// Nodes reachable from the old root that are not reachable from the new one.
    pub stale_nodes: Vec<Hash32>,
}

fn hex_of(hash: &Hash32) -> String {
    hex::encode(hash)
}

fn load<R: NodeReader + ?Sized>(reader: &R, hash: &Hash32) -> Result<Node, StateError> {
    let bytes = reader
        .node(hash)?
        .ok_or_else(|| StateError::MissingNode(hex_of(hash)))?;
    let node = Node::decode(&bytes).map_err(|e| StateError::Malformed {
        key: hex_of(hash),
        reason: e.to_string(),
    })?;
    if node.hash() != *hash {
        return Err(StateError::Malformed {
            key: hex_of(hash),
            reason: "tree node does not hash to its address".into(),
        });
    }
    Ok(node)
}

fn too_deep(hash: &Hash32) -> StateError {
    StateError::Malformed {
        key: hex_of(hash),
        reason: "tree deeper than 256 levels".into(),
    }
}

/// A subtree whose kind is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Empty,
    Leaf(Hash32),
    Inner(Hash32),
}

impl Sub {
    fn hash(self) -> Hash32 {
        match self {
            Sub::Empty => EMPTY_ROOT,
            Sub::Leaf(h) | Sub::Inner(h) => h,
        }
    }
}

/// A child after an update: untouched (kind not yet looked up) or rebuilt.
#[derive(Debug, Clone, Copy)]
enum Child {
    Same(Hash32),
    Known(Sub),
}

impl Child {
    fn hash(self) -> Hash32 {
        match self {
            Child::Same(h) => h,
            Child::Known(s) => s.hash(),
        }
    }
}

/// One pending change: key path and new value hash (`None` deletes).
type Change = (Hash32, Option<Hash32>);

struct Apply<'r, R: ?Sized> {
    reader: &'r R,
    new_nodes: Vec<(Hash32, Vec<u8>)>,
    stale: Vec<Hash32>,
}

impl<R: NodeReader + ?Sized> Apply<'_, R> {
    fn emit(&mut self, node: Node) -> Result<Hash32, StateError> {
        let h = node.hash();
        let bytes = node.encode().map_err(|e| StateError::Malformed {
            key: hex_of(&h),
            reason: e.to_string(),
        })?;
        self.new_nodes.push((h, bytes));
        Ok(h)
    }

    fn resolve(&self, child: Child) -> Result<Sub, StateError> {
        match child {
            Child::Known(s) => Ok(s),
            Child::Same(h) if h == EMPTY_ROOT => Ok(Sub::Empty),
            Child::Same(h) => Ok(match load(self.reader, &h)? {
                Node::Leaf { .. } => Sub::Leaf(h),
                Node::Inner { .. } => Sub::Inner(h),
            }),
        }
    }

    /// The canonical node over two children: a lone leaf moves up, two empties vanish.
    fn join(&mut self, left: Child, right: Child) -> Result<Sub, StateError> {
        let (l, r) = (left.hash(), right.hash());
        if l == EMPTY_ROOT && r == EMPTY_ROOT {
            return Ok(Sub::Empty);
        }
        if l == EMPTY_ROOT {
            if let Sub::Leaf(h) = self.resolve(right)? {
                return Ok(Sub::Leaf(h));
            }
        } else if r == EMPTY_ROOT {
            if let Sub::Leaf(h) = self.resolve(left)? {
                return Ok(Sub::Leaf(h));
            }
        }
        Ok(Sub::Inner(self.emit(Node::Inner { left: l, right: r })?))
    }

    /// Builds the subtree at `depth` holding exactly `entries` (sorted by path, distinct);
    /// `existing` is a leaf already stored, not to be emitted again.
    fn build(
        &mut self,
        depth: usize,
        entries: &[(Hash32, Hash32)],
        existing: Option<Hash32>,
    ) -> Result<Sub, StateError> {
        match entries {
            [] => Ok(Sub::Empty),
            [(path, value)] => {
                let node = Node::Leaf {
                    key_path: *path,
                    value_hash: *value,
                };
                let h = node.hash();
                if existing == Some(h) {
                    Ok(Sub::Leaf(h))
                } else {
                    Ok(Sub::Leaf(self.emit(node)?))
                }
            }
            [(first, _), ..] => {
                if depth >= TREE_DEPTH {
                    return Err(too_deep(first));
                }
                let split = entries.partition_point(|(p, _)| bit(p, depth) == Some(false));
                let (l, r) = entries
                    .split_at_checked(split)
                    .ok_or_else(|| too_deep(first))?;
                let next = depth.saturating_add(1);
                let ls = self.build(next, l, existing)?;
                let rs = self.build(next, r, existing)?;
                self.join(Child::Known(ls), Child::Known(rs))
            }
        }
    }

    /// Applies `changes` (sorted by path, distinct, all under this subtree's prefix) to the
    /// subtree `hash` at `depth`.
    fn update(
        &mut self,
        hash: Hash32,
        depth: usize,
        changes: &[Change],
    ) -> Result<Sub, StateError> {
        if hash == EMPTY_ROOT {
            let inserts: Vec<(Hash32, Hash32)> = changes
                .iter()
                .filter_map(|(p, v)| v.map(|v| (*p, v)))
                .collect();
            return self.build(depth, &inserts, None);
        }
        match load(self.reader, &hash)? {
            Node::Leaf {
                key_path,
                value_hash,
            } => {
                let mut entries: Vec<(Hash32, Hash32)> = Vec::with_capacity(changes.len());
                let mut touched = false;
                let mut kept = true;
                for (p, v) in changes {
                    if *p == key_path {
                        touched = true;
                        kept = *v == Some(value_hash);
                    }
                    if let Some(v) = v {
                        entries.push((*p, *v));
                    }
                }
                if !touched {
                    let at = entries.partition_point(|(p, _)| *p < key_path);
                    entries.insert(at, (key_path, value_hash));
                }
                if kept && entries.len() == 1 {
                    return Ok(Sub::Leaf(hash));
                }
                if !kept {
                    self.stale.push(hash);
                }
                self.build(depth, &entries, kept.then_some(hash))
            }
            Node::Inner { left, right } => {
                if depth >= TREE_DEPTH {
                    return Err(too_deep(&hash));
                }
                let split = changes.partition_point(|(p, _)| bit(p, depth) == Some(false));
                let (lc, rc) = changes
                    .split_at_checked(split)
                    .ok_or_else(|| too_deep(&hash))?;
                let next = depth.saturating_add(1);
                let l = if lc.is_empty() {
                    Child::Same(left)
                } else {
                    Child::Known(self.update(left, next, lc)?)
                };
                let r = if rc.is_empty() {
                    Child::Same(right)
                } else {
                    Child::Known(self.update(right, next, rc)?)
                };
                if l.hash() == left && r.hash() == right {
                    return Ok(Sub::Inner(hash));
                }
                self.stale.push(hash);
                self.join(l, r)
            }
        }
    }
}

/// Applies a block's writes to the tree with root `root`, reading its nodes from `reader`.
/// Deleting an absent key and writing a value a key already has are no-ops. Nothing is
/// written: the caller stores `new_nodes`.
///
/// # Errors
/// [`StateError::MissingNode`] / [`StateError::Malformed`] if a node the update passes is not
/// in the store or is corrupt; [`StateError::Store`] from the reader, or if two keys' paths
/// collide (a SHA-256 collision).
pub fn apply<R: NodeReader + ?Sized>(
    reader: &R,
    root: Hash32,
    writes: &WriteSet,
) -> Result<TreeUpdate, StateError> {
    let mut changes: Vec<Change> = writes
        .iter()
        .map(|(k, v)| (key_path(k), v.as_deref().map(value_hash)))
        .collect();
    changes.sort_unstable_by_key(|c| c.0);
    if changes
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.0 == b.0))
    {
        return Err(StateError::Store("two state keys share a tree path".into()));
    }
    let mut cx = Apply {
        reader,
        new_nodes: Vec::new(),
        stale: Vec::new(),
    };
    let sub = cx.update(root, 0, &changes)?;
    Ok(TreeUpdate {
        root: sub.hash(),
        new_nodes: cx.new_nodes,
        stale_nodes: cx.stale,
    })
}

/// The value hash stored under `key` in the tree `root`, or `None` if the key is absent.
///
/// # Errors
/// As [`apply`], for the nodes on the key's path.
pub fn get_value_hash<R: NodeReader + ?Sized>(
    reader: &R,
    root: Hash32,
    key: &[u8],
) -> Result<Option<Hash32>, StateError> {
    let proof = prove(reader, root, key)?;
    let path = key_path(key);
    Ok(match proof.terminal {
        ProofTerminal::Leaf {
            key_path,
            value_hash,
        } if key_path == path => Some(value_hash),
        _ => None,
    })
}

/// A proof that `key` has a given value, or no value, in the tree `root`.
///
/// # Errors
/// As [`apply`], for the nodes on the key's path.
pub fn prove<R: NodeReader + ?Sized>(
    reader: &R,
    root: Hash32,
    key: &[u8],
) -> Result<StateProof, StateError> {
    let path = key_path(key);
    let mut siblings = Vec::new();
    let mut at = root;
    loop {
        if at == EMPTY_ROOT {
            return Ok(StateProof {
                siblings,
                terminal: ProofTerminal::Empty,
            });
        }
        match load(reader, &at)? {
            Node::Leaf {
                key_path,
                value_hash,
            } => {
                return Ok(StateProof {
                    siblings,
                    terminal: ProofTerminal::Leaf {
                        key_path,
                        value_hash,
                    },
                })
            }
            Node::Inner { left, right } => match bit(&path, siblings.len()) {
                None => return Err(too_deep(&at)),
                Some(false) => {
                    siblings.push(right);
                    at = left;
                }
                Some(true) => {
                    siblings.push(left);
                    at = right;
                }
            },
        }
    }
}

/// Where a proof's search path ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofTerminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A leaf: the key's own (membership) or another key's sharing the path so far
    /// (non-membership).
    Leaf {
        /// The leaf's key path.
        key_path: Hash32,
        /// The leaf's value hash.
        value_hash: Hash32,
    },
}

/// A Merkle proof of one key's value (or absence) in the state tree. It comes from an
/// untrusted agent: decode it with [`StateProof::from_bytes`] and check it with
/// [`StateProof::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    /// Siblings of the nodes on the path, from the root's children downwards.
    pub siblings: Vec<Hash32>,
    /// What the path ends in.
    pub terminal: ProofTerminal,
}

/// Why a state proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The bytes are not a proof.
    #[error("state proof does not decode: {0}")]
    Decode(#[from] CodecError),
    /// More siblings than the tree has levels.
    #[error("state proof has {0} siblings, more than the tree's 256 levels")]
    TooDeep(usize),
    /// The proof shows the key has no value but a value was claimed.
    #[error("state proof shows the key is absent")]
    Absent,
    /// The proof shows the key has a value but absence was claimed.
    #[error("state proof shows the key is present")]
    Present,
    /// The proof's leaf holds another value.
    #[error("state proof is for a different value")]
    WrongValue,
    /// The proof's leaf does not lie on the key's path.
    #[error("state proof is for a different key")]
    WrongKey,
    /// The proof does not hash up to the root.
    #[error("state proof does not match the state root")]
    RootMismatch,
}

impl StateProof {
    /// Checks that under `root`, `key` has `value` (`Some`) or no value (`None`).
    ///
    /// # Errors
    /// The [`ProofError`] saying what does not hold.
    pub fn verify(
        &self,
        root: &Hash32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ProofError> {
        let depth = self.siblings.len();
        if depth > TREE_DEPTH {
            return Err(ProofError::TooDeep(depth));
        }
        let path = key_path(key);
        let mut acc = match (&self.terminal, value) {
            (ProofTerminal::Empty, Some(_)) => return Err(ProofError::Absent),
            (ProofTerminal::Empty, None) => EMPTY_ROOT,
            (
                ProofTerminal::Leaf {
                    key_path,
                    value_hash: vh,
                },
                Some(v),
            ) => {
                if *key_path != path {
                    return Err(ProofError::Absent);
                }
                if *vh != value_hash(v) {
                    return Err(ProofError::WrongValue);
                }
                leaf_hash(key_path, vh)
            }
            (
                ProofTerminal::Leaf {
                    key_path,
                    value_hash: vh,
                },
                None,
            ) => {
                if *key_path == path {
                    return Err(ProofError::Present);
                }
                if !shares_prefix(key_path, &path, depth) {
                    return Err(ProofError::WrongKey);
                }
                leaf_hash(key_path, vh)
            }
        };
        for (d, sibling) in self.siblings.iter().enumerate().rev() {
            acc = match bit(&path, d) {
                Some(false) => inner_hash(&acc, sibling),
                Some(true) => inner_hash(sibling, &acc),
                None => return Err(ProofError::TooDeep(depth)),
            };
        }
        if acc == *root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        }
    }

    /// The proof's canonical, versioned encoding.
    ///
    /// # Errors
    /// [`ProofError::TooDeep`] for a proof with more than [`TREE_DEPTH`] siblings (it would
    /// not decode), [`ProofError::Decode`] if the codec fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ProofError> {
        if self.siblings.len() > TREE_DEPTH {
            return Err(ProofError::TooDeep(self.siblings.len()));
        }
        Ok(codec::encode_versioned(self)?)
    }

    /// Decodes a proof from untrusted bytes, at most [`MAX_PROOF_BYTES`] long.
    ///
    /// # Errors
    /// [`ProofError::Decode`] for anything but a canonical encoding within the limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<StateProof, ProofError> {
        Ok(decode_limited(bytes, PROOF_LIMITS)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn writes(pairs: &[(&[u8], Option<&[u8]>)]) -> WriteSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn empty_root_constant_is_the_empty_hash() {
        assert_eq!(EMPTY_ROOT, empty_hash());
        let tags = [
            key_path(b""),
            value_hash(b""),
            leaf_hash(&[0; 32], &[0; 32]),
            inner_hash(&[0; 32], &[0; 32]),
            EMPTY_ROOT,
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in tags.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn one_entry_is_a_leaf_at_the_root() {
        let nodes = MemNodes::new();
        let u = apply(&nodes, EMPTY_ROOT, &writes(&[(b"k", Some(b"v"))])).unwrap();
        assert_eq!(u.root, leaf_hash(&key_path(b"k"), &value_hash(b"v")));
        assert_eq!(u.new_nodes.len(), 1);
        assert!(u.stale_nodes.is_empty());
    }

    #[test]
    fn deleting_everything_returns_to_the_empty_root() {
        let mut nodes = MemNodes::new();
        let u = apply(
            &nodes,
            EMPTY_ROOT,
            &writes(&[(b"a", Some(b"1")), (b"b", Some(b"2")), (b"c", Some(b"3"))]),
        )
        .unwrap();
        nodes.commit(&u);
        let d = apply(
            &nodes,
            u.root,
            &writes(&[(b"a", None), (b"b", None), (b"c", None)]),
        )
        .unwrap();
        assert_eq!(d.root, EMPTY_ROOT);
        assert!(d.new_nodes.is_empty());
        let mut stale = d.stale_nodes.clone();
        stale.sort_unstable();
        let mut created: Vec<_> = u.new_nodes.iter().map(|(h, _)| *h).collect();
        created.sort_unstable();
        assert_eq!(stale, created);
    }

    #[test]
    fn no_op_writes_change_nothing() {
        let mut nodes = MemNodes::new();
        let u = apply(
            &nodes,
            EMPTY_ROOT,
            &writes(&[(b"a", Some(b"1")), (b"b", Some(b"2"))]),
        )
        .unwrap();
        nodes.commit(&u);
        let n = apply(
            &nodes,
            u.root,
            &writes(&[(b"a", Some(b"1")), (b"zz", None)]),
        )
        .unwrap();
        assert_eq!(n.root, u.root);
        assert!(n.new_nodes.is_empty());
        assert!(n.stale_nodes.is_empty());
    }

    #[test]
    fn a_missing_or_corrupt_node_is_an_error_not_a_panic() {
        let mut nodes = MemNodes::new();
        let u = apply(
            &nodes,
            EMPTY_ROOT,
            &writes(&[(b"a", Some(b"1")), (b"b", Some(b"2"))]),
        )
        .unwrap();
        assert!(matches!(
            prove(&nodes, u.root, b"a"),
            Err(StateError::MissingNode(_))
        ));
        nodes.commit(&u);
        // A node stored under the wrong address is caught.
        let other = Node::Leaf {
            key_path: [7; 32],
            value_hash: [8; 32],
        };
        nodes.insert_raw(u.root, other.encode().unwrap());
        assert!(matches!(
            get_value_hash(&nodes, u.root, b"a"),
            Err(StateError::Malformed { .. })
        ));
        nodes.insert_raw(u.root, vec![1, 2, 3]);
        assert!(matches!(
            apply(&nodes, u.root, &writes(&[(b"c", Some(b"3"))])),
            Err(StateError::Malformed { .. })
        ));
    }

    #[test]
    fn node_encoding_round_trips_and_refuses_garbage() {
        for n in [
            Node::Leaf {
                key_path: [1; 32],
                value_hash: [2; 32],
            },
            Node::Inner {
                left: [3; 32],
                right: [4; 32],
            },
        ] {
            let bytes = n.encode().unwrap();
            assert!(bytes.len() <= MAX_NODE_BYTES);
            assert_eq!(Node::decode(&bytes).unwrap(), n);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Node::decode(&longer).is_err());
            assert!(Node::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut version = bytes.clone();
            version[0] = 9;
            assert!(Node::decode(&version).is_err());
        }
        assert!(Node::decode(&[]).is_err());
    }
}
