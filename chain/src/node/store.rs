//! The node's RocksDB store: blocks, certificates, the flat state, state-tree nodes, stale-node
//! marks, the chain head and the consensus write-ahead log, one column family each.
//!
//! Committing a block is one atomic, synced [`rocksdb::WriteBatch`] (block, certificate, state
//! writes, tree nodes and stale marks, the new head and the truncation of the decided height's
//! log), so a crash at any point leaves either the previous height or the new one, never a mix.
//! The signing guard is written with a synced write before a signature is released.
//!
//! # Pruning the state tree
//!
//! Tree nodes are content-addressed, and one node can leave the tree and come back in a later
//! version (a value written back to what it was), so a node cannot simply be deleted when an
//! update makes it stale. The store marks and sweeps by version instead, in [`CF_STALE`]:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `m ‖ height (u64 BE) ‖ node key` | empty | the node left the tree at `height` (a *mark*) |
//! | `s ‖ node key` | `height (u64 BE)` | the height of the node's current mark |
//!
//! The commit batch of height `h` marks each stale node of the update at `h` (both entries) and,
//! for each node it writes, deletes `s ‖ node key`: a node written again is live, and every
//! older mark of it is void without being looked up. After the commit, marks of heights up to
//! `h − kept` ([`StoreOptions::state_versions_kept`]) are swept, oldest first, in a second
//! (unsynced) batch: a mark whose height is still the node's current one deletes the node;
//! a void mark is just dropped. A node marked at `m` is reachable from no root of a height
//! `≥ m` (had a later update re-created it, its mark would be void), so after committing `h`
//! the roots of heights `h − kept ..= h` stay whole and older roots read as
//! [`StateError::MissingNode`]. A crash between the two batches leaves marks that the next
//! commit sweeps; a mark whose node is already gone is harmless. Commits and sweeps are
//! serialized, so no sweep decides on a mark while a commit re-creates its node.
//!
//! Sweeping is bounded per commit ([`StoreOptions::prune_per_commit`], raised to twice the
//! block's own stale nodes so a backlog always shrinks), so a node that lowers its horizon
//! catches up over many blocks instead of stalling one. An archive node
//! (`state_versions_kept = 0`, the default for now) writes no marks, so it pays nothing; nodes
//! that went stale while a store ran as an archive are never marked and stay if it later
//! prunes. Pruning is opt-in because the marks roughly triple a commit's tree writes (see
//! [`DEFAULT_STATE_VERSIONS_KEPT`]); keeping the creation height inside each node's value
//! instead of the `s ‖ node` entries would halve that.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use primitives::codec;
use primitives::hash::Hash32;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHash, ChainContext};
use crate::consensus::{CommitCertificate, Decision, Input, SigningGuard, ValidatorSet};
use crate::state::{StateError, StateView, WriteSet};

/// Column family of blocks by height.
pub const CF_BLOCKS: &str = "blocks";
/// Column family of commit certificates by height.
pub const CF_CERTS: &str = "certificates";
/// Column family of the flat state (key → value).
pub const CF_STATE: &str = "state";
/// Column family of state-tree nodes (node key → node bytes).
pub const CF_TREE: &str = "tree";
/// Column family of the chain head and the signing guard.
pub const CF_META: &str = "meta";
/// Column family of the consensus write-ahead log (height ‖ sequence → input).
pub const CF_WAL: &str = "wal";
/// Column family of stale-node marks (layout in the module doc).
pub const CF_STALE: &str = "stale";

const ALL_CFS: [&str; 7] = [
    CF_BLOCKS, CF_CERTS, CF_STATE, CF_TREE, CF_META, CF_WAL, CF_STALE,
];
/// Prefix of a mark in [`CF_STALE`]: `m ‖ height ‖ node key`.
const MARK: u8 = b'm';
/// Prefix of a node's current mark height in [`CF_STALE`]: `s ‖ node key`.
const SINCE: u8 = b's';

/// State versions a store keeps behind its head unless told otherwise: every version (an
/// archive node). Pruning is opt-in for now because marking costs on the commit path: measured
/// in `agent bench` (docs/BENCHMARKS.md), 18–41 % of the transaction rate.
pub const DEFAULT_STATE_VERSIONS_KEPT: u64 = 0;
/// Stale marks a commit sweeps at least, unless told otherwise.
pub const DEFAULT_PRUNE_PER_COMMIT: usize = 4096;

/// How a store is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// State versions kept behind the head: after committing height `h`, the roots of heights
    /// `h − state_versions_kept ..= h` stay fully readable and provable, and the nodes only
    /// older roots reach are deleted. `0` keeps every version (an archive node).
    pub state_versions_kept: u64,
    /// The fewest stale marks one commit sweeps (it sweeps up to twice as many as the block
    /// marked if that is more): bounds the work a block commit does on a backlog.
    pub prune_per_commit: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            state_versions_kept: DEFAULT_STATE_VERSIONS_KEPT,
            prune_per_commit: DEFAULT_PRUNE_PER_COMMIT,
        }
    }
}
const HEAD_KEY: &[u8] = b"head";
const GUARD_KEY: &[u8] = b"guard";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored entry does not decode.
    #[error("stored {what} is malformed: {reason}")]
    Malformed {
        /// Which entry.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A column family is missing (the directory is not a chain store).
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// A commit does not follow the stored head.
    #[error("commit of height {got} does not follow the head at {head}")]
    OutOfOrder {
        /// The stored head height.
        head: u64,
        /// The height offered.
        got: u64,
    },
    /// The store has no genesis yet.
    #[error("the store is not initialised with a genesis")]
    NoGenesis,
}

/// The node changes of one state-tree update, as the store writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDelta {
    /// New nodes: key (node hash) → encoded node. Written, and un-marked if they were stale.
    pub new_nodes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys of the nodes the update made unreachable: marked stale at the commit's height and
    /// deleted once no kept version needs them (see the module doc).
    pub stale_nodes: Vec<Vec<u8>>,
}

impl TreeDelta {
    /// The delta of a [`crate::state::TreeUpdate`]'s node lists.
    pub fn new(new_nodes: Vec<(Hash32, Vec<u8>)>, stale_nodes: Vec<Hash32>) -> Self {
        TreeDelta {
            new_nodes: new_nodes
                .into_iter()
                .map(|(h, b)| (h.to_vec(), b))
                .collect(),
            stale_nodes: stale_nodes.into_iter().map(|h| h.to_vec()).collect(),
        }
    }
}

/// How much of the state tree is on disk ([`ChainStore::tree_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Stored tree nodes (counted).
    pub nodes: u64,
    /// Stale marks waiting for their sweep (counted).
    pub marks: u64,
    /// Bytes of the tree column family's table files (RocksDB's `total-sst-files-size`;
    /// memtables not included).
    pub tree_sst_bytes: u64,
    /// The same for the mark column family.
    pub marks_sst_bytes: u64,
}

/// The committed tip of the chain: what a restarting node resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Last committed height (0 = genesis).
    pub height: u64,
    /// Hash of the last committed block (zeros at genesis).
    pub block_hash: BlockHash,
    /// Its header time (the genesis time at height 0).
    pub time_ms: u64,
    /// State root after it.
    pub state_root: Hash32,
    /// The validator set that signs `height + 1`.
    pub next_validators: ValidatorSet<ChainContext>,
}

/// Everything one block commit writes besides the block and certificate.
#[derive(Debug, Clone)]
pub struct CommitWrites<'a> {
    /// The state changes.
    pub writes: &'a WriteSet,
    /// The tree's node changes.
    pub tree: &'a TreeDelta,
    /// State root after the block.
    pub state_root: Hash32,
    /// The validator set of the next height.
    pub next_validators: &'a ValidatorSet<ChainContext>,
}

/// The chain's RocksDB database.
pub struct ChainStore {
    db: DB,
    wal_seq: AtomicU64,
    options: StoreOptions,
    /// Held by a commit and its sweep; the height the next sweep starts from (marks below it
    /// are swept already, so the sweep does not walk their tombstones again).
    commit: Mutex<u64>,
}

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

fn malformed(what: &'static str) -> impl FnOnce(codec::CodecError) -> StoreError {
    move |e| StoreError::Malformed {
        what,
        reason: e.to_string(),
    }
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    codec::to_vec(v).map_err(|e| StoreError::Encode {
        what,
        reason: e.to_string(),
    })
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn mark_key(height: u64, node: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(node.len().saturating_add(9));
    k.push(MARK);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(node);
    k
}

fn since_key(node: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(node.len().saturating_add(1));
    k.push(SINCE);
    k.extend_from_slice(node);
    k
}

fn height_of(bytes: &[u8], what: &'static str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Malformed {
            what,
            reason: format!("{} bytes where a height is 8", bytes.len()),
        })
}

fn wal_key(height: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    let (a, b) = k.split_at_mut(8);
    a.copy_from_slice(&height.to_be_bytes());
    b.copy_from_slice(&seq.to_be_bytes());
    k
}

impl ChainStore {
    /// Opens (creating if needed) the store in `path` with the default [`StoreOptions`].
    ///
    /// # Errors
    /// RocksDB cannot open the directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `path`.
    ///
    /// # Errors
    /// RocksDB cannot open the directory.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store = ChainStore {
            db,
            wal_seq: AtomicU64::new(0),
            options,
            commit: Mutex::new(0),
        };
        let last = store
            .db
            .iterator_cf(store.cf(CF_WAL)?, IteratorMode::End)
            .next()
            .transpose()?
            .and_then(|(k, _)| k.get(8..16).and_then(|s| <[u8; 8]>::try_from(s).ok()))
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        store
            .wal_seq
            .store(last.saturating_add(1), Ordering::SeqCst);
        Ok(store)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    /// The committed head, or `None` before genesis.
    ///
    /// # Errors
    /// RocksDB failure or a malformed head.
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        match self.db.get_cf(self.cf(CF_META)?, HEAD_KEY)? {
            Some(bytes) => Ok(Some(codec::from_slice(&bytes).map_err(malformed("head"))?)),
            None => Ok(None),
        }
    }

    /// The committed head.
    ///
    /// # Errors
    /// [`StoreError::NoGenesis`] before genesis, or as [`ChainStore::head`].
    pub fn require_head(&self) -> Result<Head, StoreError> {
        self.head()?.ok_or(StoreError::NoGenesis)
    }

    /// Writes the genesis state and head (height 0) if the store is empty; a no-op otherwise.
    /// Returns whether it wrote.
    ///
    /// # Errors
    /// RocksDB failure.
    pub fn init_genesis(
        &self,
        state: &WriteSet,
        tree: &TreeDelta,
        state_root: Hash32,
        time_ms: u64,
        validators: &ValidatorSet<ChainContext>,
    ) -> Result<bool, StoreError> {
        if self.head()?.is_some() {
            return Ok(false);
        }
        let head = Head {
            height: 0,
            block_hash: BlockHash([0; 32]),
            time_ms,
            state_root,
            next_validators: validators.clone(),
        };
        let mut batch = rocksdb::WriteBatch::default();
        self.put_state(&mut batch, 0, state, tree)?;
        batch.put_cf(self.cf(CF_META)?, HEAD_KEY, encode("head", &head)?);
        self.db.write_opt(batch, &synced())?;
        Ok(true)
    }

    /// Adds the state writes, the tree's new nodes and the stale marks of `height` to `batch`.
    fn put_state(
        &self,
        batch: &mut rocksdb::WriteBatch,
        height: u64,
        writes: &WriteSet,
        tree: &TreeDelta,
    ) -> Result<(), StoreError> {
        let state = self.cf(CF_STATE)?;
        for (k, v) in writes {
            match v {
                Some(v) => batch.put_cf(state, k, v),
                None => batch.delete_cf(state, k),
            }
        }
        let nodes = self.cf(CF_TREE)?;
        if self.options.state_versions_kept == 0 {
            // An archive node keeps every node and pays nothing for marks.
            for (k, v) in &tree.new_nodes {
                batch.put_cf(nodes, k, v);
            }
            return Ok(());
        }
        let stale = self.cf(CF_STALE)?;
        let since = height.to_be_bytes();
        for k in &tree.stale_nodes {
            batch.put_cf(stale, mark_key(height, k), []);
            batch.put_cf(stale, since_key(k), since);
        }
        // After the marks: were a node both stale and new, it would end up live.
        for (k, v) in &tree.new_nodes {
            batch.put_cf(nodes, k, v);
            batch.delete_cf(stale, since_key(k));
        }
        Ok(())
    }

    /// Commits a decided block: block, certificate, state and tree changes, the new head and the
    /// truncation of the write-ahead log up to its height, in one synced batch.
    ///
    /// # Errors
    /// [`StoreError::OutOfOrder`] unless the block is at head + 1; RocksDB failure (then
    /// nothing was written).
    ///
    /// Then, with [`StoreOptions::state_versions_kept`] `> 0`, it sweeps stale marks old enough
    /// (see the module doc); a sweep that fails is logged and retried by the next commit, as
    /// the block itself is committed.
    pub fn commit_block(
        &self,
        decision: &Decision<ChainContext>,
        hash: BlockHash,
        c: CommitWrites<'_>,
    ) -> Result<Head, StoreError> {
        let mut sweep_from = self.commit.lock().unwrap_or_else(PoisonError::into_inner);
        let prev = self.require_head()?;
        let height = decision.certificate.height;
        if prev.height.checked_add(1) != Some(height) {
            return Err(StoreError::OutOfOrder {
                head: prev.height,
                got: height,
            });
        }
        let head = Head {
            height,
            block_hash: hash,
            time_ms: decision.value.header.time_ms,
            state_root: c.state_root,
            next_validators: c.next_validators.clone(),
        };
        let key = height.to_be_bytes();
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOCKS)?, key, encode("block", &decision.value)?);
        batch.put_cf(
            self.cf(CF_CERTS)?,
            key,
            encode("certificate", &decision.certificate)?,
        );
        self.put_state(&mut batch, height, c.writes, c.tree)?;
        batch.put_cf(self.cf(CF_META)?, HEAD_KEY, encode("head", &head)?);
        let end = height.checked_add(1).map_or([0xff; 16], |h| wal_key(h, 0));
        batch.delete_range_cf(self.cf(CF_WAL)?, wal_key(0, 0), end);
        self.db.write_opt(batch, &synced())?;
        let kept = self.options.state_versions_kept;
        if let Some(upto) = height.checked_sub(kept).filter(|_| kept > 0) {
            let limit = self
                .options
                .prune_per_commit
                .max(c.tree.stale_nodes.len().saturating_mul(2));
            match self.sweep(&mut sweep_from, upto, limit) {
                Ok(s) => tracing::debug!(
                    height,
                    upto,
                    marks = s.marks,
                    nodes = s.nodes,
                    "state tree pruned"
                ),
                Err(e) => tracing::warn!(height, error = %e, "state tree pruning failed"),
            }
        }
        Ok(head)
    }

    /// Sweeps at most `limit` stale marks of heights `≤ upto`, oldest first, in one batch,
    /// deleting the nodes whose mark is still current. `sweep_from` (held under the commit lock)
    /// is where the marks start; it moves past the heights swept completely.
    fn sweep(&self, sweep_from: &mut u64, upto: u64, limit: usize) -> Result<Swept, StoreError> {
        let stale = self.cf(CF_STALE)?;
        let tree = self.cf(CF_TREE)?;
        let mut read = ReadOptions::default();
        // The bound keeps the iterator off the tombstones of later heights.
        read.set_iterate_upper_bound(match upto.checked_add(1) {
            Some(next) => mark_key(next, &[]),
            None => vec![MARK.saturating_add(1)],
        });
        let start = mark_key(*sweep_from, &[]);
        // (mark key, its height); the node key is the mark key after the prefix and height.
        let mut marks: Vec<(Box<[u8]>, u64)> = Vec::new();
        let mut complete = true;
        for item in
            self.db
                .iterator_cf_opt(stale, read, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, _) = item?;
            let height = match key.split_first() {
                Some((&MARK, rest)) => height_of(rest.get(..8).unwrap_or(rest), "stale mark")?,
                _ => break,
            };
            if height > upto {
                break;
            }
            if marks.len() >= limit {
                complete = false;
                break;
            }
            marks.push((key, height));
        }
        // The nodes' current mark heights, looked up together (sorted, as RocksDB likes them).
        let mut lookups: Vec<(Vec<u8>, u64)> = marks
            .iter()
            .map(|(key, height)| (since_key(key.get(9..).unwrap_or_default()), *height))
            .collect();
        lookups.sort_unstable();
        let current = self
            .db
            .batched_multi_get_cf(stale, lookups.iter().map(|(k, _)| k), true);
        let mut batch = rocksdb::WriteBatch::default();
        let mut swept = Swept::default();
        for ((since, height), got) in lookups.iter().zip(current) {
            if let Some(v) = got? {
                if height_of(&v, "stale mark height")? == *height {
                    batch.delete_cf(tree, since.get(1..).unwrap_or_default());
                    batch.delete_cf(stale, since);
                    swept.nodes = swept.nodes.saturating_add(1);
                }
            }
        }
        // The marks swept are exactly those from `start` up to the last one: one range.
        if let Some((last, _)) = marks.last() {
            let mut end = last.to_vec();
            end.push(0);
            batch.delete_range_cf(stale, &start, &end);
        }
        swept.marks = marks.len();
        if !marks.is_empty() {
            // Unsynced: a sweep lost in a crash is done again from the marks it left.
            self.db.write(batch)?;
        }
        *sweep_from = if complete {
            upto.saturating_add(1).max(*sweep_from)
        } else {
            marks.last().map_or(*sweep_from, |(_, h)| *h)
        };
        Ok(swept)
    }

    /// The block committed at `height`.
    ///
    /// # Errors
    /// RocksDB failure or a malformed block.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        self.db
            .get_cf(self.cf(CF_BLOCKS)?, height.to_be_bytes())?
            .map(|b| codec::from_slice(&b).map_err(malformed("block")))
            .transpose()
    }

    /// The commit certificate of `height`.
    ///
    /// # Errors
    /// RocksDB failure or a malformed certificate.
    pub fn certificate(
        &self,
        height: u64,
    ) -> Result<Option<CommitCertificate<ChainContext>>, StoreError> {
        self.db
            .get_cf(self.cf(CF_CERTS)?, height.to_be_bytes())?
            .map(|b| codec::from_slice(&b).map_err(malformed("certificate")))
            .transpose()
    }

    /// Block and certificate of `height`, if committed.
    ///
    /// # Errors
    /// As [`ChainStore::block`].
    pub fn decision(&self, height: u64) -> Result<Option<Decision<ChainContext>>, StoreError> {
        match (self.block(height)?, self.certificate(height)?) {
            (Some(value), Some(certificate)) => Ok(Some(Decision { value, certificate })),
            _ => Ok(None),
        }
    }

    /// The persisted signing guard (empty if nothing was ever signed).
    ///
    /// # Errors
    /// RocksDB failure or a malformed guard.
    pub fn load_guard(&self) -> Result<SigningGuard<u64>, StoreError> {
        match self.db.get_cf(self.cf(CF_META)?, GUARD_KEY)? {
            Some(b) => codec::from_slice(&b).map_err(malformed("signing guard")),
            None => Ok(SigningGuard::new()),
        }
    }

    /// Persists the signing guard with a synced write.
    ///
    /// # Errors
    /// RocksDB failure: the guard is not durable and nothing may be signed.
    pub fn save_guard(&self, guard: &SigningGuard<u64>) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_META)?,
            GUARD_KEY,
            encode("signing guard", guard)?,
            &synced(),
        )?;
        Ok(())
    }

    /// Appends an accepted consensus input to the write-ahead log.
    ///
    /// The append is not fsynced on its own, yet it is durable before anything that depends on
    /// it leaves the node: every signature is preceded by [`ChainStore::save_guard`], a synced
    /// write to this same database, and RocksDB's synced write syncs every log file still alive
    /// (all column families share one log), so all earlier appends reach the disk with it. An
    /// input that no signature followed may be lost in a power cut; the replay then simply
    /// lacks a message that a peer's gossip sends again.
    ///
    /// # Errors
    /// RocksDB failure.
    pub fn append_wal(&self, input: &Input<ChainContext>) -> Result<(), StoreError> {
        let height = input.height().unwrap_or(0);
        let seq = self.wal_seq.fetch_add(1, Ordering::SeqCst);
        self.db.put_cf(
            self.cf(CF_WAL)?,
            wal_key(height, seq),
            encode("wal input", input)?,
        )?;
        Ok(())
    }

    /// The logged inputs of heights at or above `height`, in arrival order within each height.
    ///
    /// # Errors
    /// RocksDB failure or a malformed entry.
    pub fn wal_from(&self, height: u64) -> Result<Vec<Input<ChainContext>>, StoreError> {
        let start = wal_key(height, 0);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_WAL)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (_, v) = item?;
            out.push(codec::from_slice(&v).map_err(malformed("wal input"))?);
        }
        Ok(out)
    }

    /// A state-tree node by key.
    ///
    /// # Errors
    /// RocksDB failure.
    pub fn tree_node(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_TREE)?, key)?)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// How much of the state tree is on disk. Counting walks the tree and mark column families:
    /// for tests, benchmarks and offline checks, not for every block.
    ///
    /// # Errors
    /// RocksDB failure.
    pub fn tree_usage(&self) -> Result<TreeUsage, StoreError> {
        let mut usage = TreeUsage::default();
        for item in self.db.iterator_cf(self.cf(CF_TREE)?, IteratorMode::Start) {
            item?;
            usage.nodes = usage.nodes.saturating_add(1);
        }
        let start = [MARK];
        for item in self.db.iterator_cf(
            self.cf(CF_STALE)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, _) = item?;
            if k.first() != Some(&MARK) {
                break;
            }
            usage.marks = usage.marks.saturating_add(1);
        }
        let sst = |name| -> Result<u64, StoreError> {
            Ok(self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.total-sst-files-size")?
                .unwrap_or(0))
        };
        usage.tree_sst_bytes = sst(CF_TREE)?;
        usage.marks_sst_bytes = sst(CF_STALE)?;
        Ok(usage)
    }

    /// Flushes and fully compacts the tree and mark column families, so that pruned nodes
    /// leave the disk now rather than at RocksDB's next compactions (e.g. after switching an
    /// archive node to pruning, or before measuring).
    ///
    /// # Errors
    /// RocksDB failure.
    pub fn compact_tree(&self) -> Result<(), StoreError> {
        for name in [CF_TREE, CF_STALE] {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default)]
struct Swept {
    /// Marks removed.
    marks: usize,
    /// Nodes deleted.
    nodes: usize,
}

fn state_err(e: impl std::fmt::Display) -> StateError {
    StateError::Store(e.to_string())
}

impl crate::state::smt::NodeReader for ChainStore {
    fn node(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StateError> {
        self.tree_node(hash).map_err(state_err)
    }
}

impl StateView for ChainStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf(CF_STATE).map_err(state_err)?;
        self.db.get_cf(cf, key).map_err(state_err)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let cf = self.cf(CF_STATE).map_err(state_err)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(state_err)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    use crate::block::{txs_root, Header};
    use crate::consensus::secp::ValidatorAddress;
    use crate::consensus::{
        ConsensusError, InstanceId, Round, SignStep, Timeout, TimeoutKind, Validator,
    };
    use crate::state::smt;
    use crate::state::EMPTY_ROOT;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use secp256k1::{SecretKey, SECP256K1};

    fn set() -> ValidatorSet<ChainContext> {
        let sk = SecretKey::from_slice(&[7; 32]).unwrap();
        let pk = sk.public_key(SECP256K1);
        ValidatorSet::new(vec![Validator {
            address: ValidatorAddress::from_public_key(&pk),
            public_key: pk,
            voting_power: 1,
        }])
        .unwrap()
    }

    fn decision(height: u64) -> Decision<ChainContext> {
        let header = Header {
            chain_id: "t".into(),
            instance: InstanceId(0),
            height,
            time_ms: height,
            prev_hash: BlockHash([0; 32]),
            txs_root: txs_root(&[]),
            state_root: [height as u8; 32],
            validators_hash: [0; 32],
            next_validators_hash: [0; 32],
            proposer: ValidatorAddress([1; 20]),
        };
        let hash = header.hash().unwrap();
        Decision {
            value: Block {
                header,
                txs: Vec::new(),
            },
            certificate: CommitCertificate {
                instance: InstanceId(0),
                height,
                round: Round(0),
                value_id: hash,
                signatures: Vec::new(),
            },
        }
    }

    fn writes(pairs: &[(&str, Option<&str>)]) -> WriteSet {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn timeout_input(height: u64) -> Input<ChainContext> {
        Input::TimeoutExpired(Timeout {
            height,
            round: Round(0),
            kind: TimeoutKind::Propose,
        })
    }

    fn commit(store: &ChainStore, height: u64, w: &WriteSet) -> Head {
        let d = decision(height);
        let hash = d.certificate.value_id;
        let tree = TreeDelta {
            new_nodes: vec![(vec![height as u8], vec![1])],
            ..TreeDelta::default()
        };
        store
            .commit_block(
                &d,
                hash,
                CommitWrites {
                    writes: w,
                    tree: &tree,
                    state_root: [height as u8; 32],
                    next_validators: &set(),
                },
            )
            .unwrap()
    }

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    fn open_keeping(dir: &Path, kept: u64, prune_per_commit: usize) -> ChainStore {
        ChainStore::open_with(
            dir,
            StoreOptions {
                state_versions_kept: kept,
                prune_per_commit,
            },
        )
        .unwrap()
    }

    /// Writes `w` as the genesis state with its real tree; returns the root.
    fn genesis_tree(s: &ChainStore, w: &WriteSet) -> Hash32 {
        let u = smt::apply(s, EMPTY_ROOT, w).unwrap();
        s.init_genesis(
            w,
            &TreeDelta::new(u.new_nodes, u.stale_nodes),
            u.root,
            0,
            &set(),
        )
        .unwrap();
        u.root
    }

    /// Commits `w` at head + 1 with its real tree update, as the node does; returns the root.
    fn commit_tree(s: &ChainStore, w: &WriteSet) -> Hash32 {
        let head = s.require_head().unwrap();
        let u = smt::apply(s, head.state_root, w).unwrap();
        let d = decision(head.height + 1);
        s.commit_block(
            &d,
            d.certificate.value_id,
            CommitWrites {
                writes: w,
                tree: &TreeDelta::new(u.new_nodes, u.stale_nodes),
                state_root: u.root,
                next_validators: &set(),
            },
        )
        .unwrap();
        u.root
    }

    fn apply_model(model: &mut Model, w: &WriteSet) {
        for (k, v) in w {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
    }

    /// Every key of `keys` proves its value in `model` (or its absence) against `root`.
    fn assert_proves(s: &ChainStore, root: Hash32, model: &Model, keys: &[Vec<u8>]) {
        for k in keys {
            let proof = smt::prove(s, root, k)
                .unwrap_or_else(|e| panic!("root {} key {k:?}: {e}", hex::encode(root)));
            proof
                .verify(&root, k, model.get(k).map(Vec::as_slice))
                .unwrap_or_else(|e| panic!("root {} key {k:?}: {e}", hex::encode(root)));
        }
    }

    /// The nodes reachable from `root`, walked through the store.
    fn reachable(s: &ChainStore, root: Hash32, out: &mut BTreeSet<Vec<u8>>) {
        let mut todo = vec![root];
        while let Some(h) = todo.pop() {
            if h == EMPTY_ROOT || !out.insert(h.to_vec()) {
                continue;
            }
            let bytes = s.tree_node(&h).unwrap().expect("reachable node is stored");
            if let smt::Node::Inner { left, right } = smt::Node::decode(&bytes).unwrap() {
                todo.push(left);
                todo.push(right);
            }
        }
    }

    fn stored_nodes(s: &ChainStore) -> BTreeSet<Vec<u8>> {
        s.db.iterator_cf(s.cf(CF_TREE).unwrap(), IteratorMode::Start)
            .map(|i| i.unwrap().0.into_vec())
            .collect()
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key/{i}").into_bytes()
    }

    /// A block of `n` writes over `keys` keys: mostly new values (tagged with the height, so
    /// every block changes the root for good), some deletions.
    fn random_block(rng: &mut ChaCha8Rng, height: u64, keys: u32, n: usize) -> WriteSet {
        let mut w = WriteSet::new();
        while w.len() < n {
            let v = if rng.gen_ratio(1, 8) {
                None
            } else {
                Some(format!("{height}/{}", rng.gen::<u16>()).into_bytes())
            };
            w.insert(key(rng.gen_range(0..keys)), v);
        }
        w
    }

    #[test]
    fn pruning_keeps_the_last_versions_whole_and_drops_the_rest() {
        const KEPT: u64 = 4;
        const KEYS: u32 = 64;
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        let (dir, archive_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let s = open_keeping(dir.path(), KEPT, DEFAULT_PRUNE_PER_COMMIT);
        let archive = open_keeping(archive_dir.path(), 0, DEFAULT_PRUNE_PER_COMMIT);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut model = Model::new();
        let g = random_block(&mut rng, 0, KEYS, 40);
        apply_model(&mut model, &g);
        let mut history = vec![(genesis_tree(&s, &g), model.clone())];
        assert_eq!(genesis_tree(&archive, &g), history[0].0);
        for height in 1..=40u64 {
            let w = random_block(&mut rng, height, KEYS, 8);
            let root = commit_tree(&s, &w);
            assert_eq!(commit_tree(&archive, &w), root);
            apply_model(&mut model, &w);
            history.push((root, model.clone()));
            // The head and the KEPT versions before it prove every key.
            let oldest = height.saturating_sub(KEPT) as usize;
            let mut live = BTreeSet::new();
            for (root, m) in &history[oldest..] {
                assert_proves(&s, *root, m, &keys);
                reachable(&s, *root, &mut live);
            }
            // Nothing else is left: exactly the nodes of the kept versions are stored.
            assert_eq!(stored_nodes(&s), live, "height {height}");
            // The version just before them is gone, and says so.
            if let Some(gone) = oldest.checked_sub(1) {
                let err = smt::prove(&s, history[gone].0, &keys[0]).unwrap_err();
                assert!(matches!(err, StateError::MissingNode(_)), "{err}");
            }
        }
        // The gateways' query path answers from the pruned store.
        let answer = crate::node::query::prove_latest(&s, &keys).unwrap();
        let (root, m) = history.last().unwrap();
        for a in &answer.answers {
            assert_eq!(a.value.as_ref(), m.get(&a.key));
            a.proof.verify(root, &a.key, a.value.as_deref()).unwrap();
        }
        // The archive still proves every version.
        for (root, m) in &history {
            assert_proves(&archive, *root, m, &keys);
        }
        let (pruned, full) = (s.tree_usage().unwrap(), archive.tree_usage().unwrap());
        assert!(
            pruned.nodes * 2 < full.nodes,
            "pruned {pruned:?} archive {full:?}"
        );
        // The archive writes no marks; the pruned store holds only the kept versions' marks.
        assert_eq!(full.marks, 0, "archive {full:?}");
        assert!(pruned.marks > 0, "pruned {pruned:?}");
    }

    #[test]
    fn a_node_written_back_after_going_stale_is_not_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_keeping(dir.path(), 1, DEFAULT_PRUNE_PER_COMMIT);
        let keys: Vec<Vec<u8>> = [b"a", b"b", b"c", b"d"].map(|k| k.to_vec()).to_vec();
        let set_a = |v: &str| writes(&[("a", Some(v))]);
        let mut model = Model::new();
        let g = writes(&[("b", Some("1")), ("c", Some("2")), ("d", Some("3"))]);
        apply_model(&mut model, &g);
        genesis_tree(&s, &g);
        let r1 = commit_tree(&s, &set_a("v1"));
        let r2 = commit_tree(&s, &set_a("v2")); // v1's leaf and path: marked stale at 2
        let r3 = commit_tree(&s, &set_a("v1")); // ...written again; v2's marked at 3
        assert_eq!(r3, r1);
        // Committing 3 swept the marks of height 2 (kept = 1): v1's nodes must survive.
        model.insert(b"a".to_vec(), b"v1".to_vec());
        assert_proves(&s, r3, &model, &keys);
        // Sweep far past every mark: still whole, and exactly the latest tree is left.
        for _ in 0..3 {
            assert_eq!(commit_tree(&s, &WriteSet::new()), r1);
        }
        assert_proves(&s, r1, &model, &keys);
        let mut live = BTreeSet::new();
        reachable(&s, r1, &mut live);
        assert_eq!(stored_nodes(&s), live);
        assert!(matches!(
            smt::prove(&s, r2, b"a"),
            Err(StateError::MissingNode(_))
        ));
        // A node written back after it was pruned is stored again.
        commit_tree(&s, &set_a("v2"));
        commit_tree(&s, &WriteSet::new());
        commit_tree(&s, &WriteSet::new()); // v1's nodes pruned
        assert!(s.tree_node(&r1).unwrap().is_none());
        assert_eq!(commit_tree(&s, &set_a("v1")), r1);
        commit_tree(&s, &WriteSet::new());
        commit_tree(&s, &WriteSet::new());
        assert_proves(&s, r1, &model, &keys);
    }

    #[test]
    fn a_store_lowering_its_horizon_catches_up_in_bounded_steps() {
        const KEYS: u32 = 32;
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut model = Model::new();
        let mut history = Vec::new();
        {
            // A horizon beyond the chain: nothing is swept, so its marks are exactly what a
            // crash between every commit and its sweep would leave behind.
            let s = open_keeping(dir.path(), 1000, DEFAULT_PRUNE_PER_COMMIT);
            let g = random_block(&mut rng, 0, KEYS, 20);
            apply_model(&mut model, &g);
            history.push((genesis_tree(&s, &g), model.clone()));
            for height in 1..=30 {
                let w = random_block(&mut rng, height, KEYS, 6);
                apply_model(&mut model, &w);
                history.push((commit_tree(&s, &w), model.clone()));
            }
        }
        const PER_COMMIT: usize = 5;
        let s = open_keeping(dir.path(), 2, PER_COMMIT);
        let mut marks = s.tree_usage().unwrap().marks;
        assert!(marks > 100, "{marks}");
        let mut commits = 0;
        loop {
            // No writes: each commit may sweep PER_COMMIT marks, not more.
            let root = commit_tree(&s, &WriteSet::new());
            history.push((root, model.clone()));
            commits += 1;
            let now = s.tree_usage().unwrap().marks;
            assert!(
                now < marks && now + PER_COMMIT as u64 >= marks,
                "{marks} -> {now}"
            );
            marks = now;
            let height = history.len() - 1;
            for (root, m) in &history[height - 2..] {
                assert_proves(&s, *root, m, &keys);
            }
            if marks == 0 {
                break;
            }
        }
        assert!(commits > 10);
        let mut live = BTreeSet::new();
        reachable(&s, history.last().unwrap().0, &mut live);
        assert_eq!(stored_nodes(&s), live);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(24))]

        /// Random blocks over a few keys and values (so nodes often come back), random reopens,
        /// against a model: after every commit the versions kept prove every key, and nothing
        /// they need is missing.
        #[test]
        fn pruned_store_matches_the_model(
            kept in 1u64..4,
            per_commit in proptest::sample::select(vec![1usize, 3, 4096]),
            blocks in proptest::collection::vec(
                (
                    proptest::collection::btree_map(
                        0u8..10,
                        proptest::option::weighted(0.8, 0u8..3),
                        0..5,
                    ),
                    proptest::bool::weighted(0.15),
                ),
                1..30,
            ),
        ) {
            let keys: Vec<Vec<u8>> = (0u8..10).map(|k| vec![b'k', k]).collect();
            let dir = tempfile::tempdir().unwrap();
            let mut s = open_keeping(dir.path(), kept, per_commit);
            let mut model = Model::new();
            let mut history = vec![(genesis_tree(&s, &WriteSet::new()), model.clone())];
            for (block, reopen) in &blocks {
                if *reopen {
                    drop(s);
                    s = open_keeping(dir.path(), kept, per_commit);
                }
                let w: WriteSet = block
                    .iter()
                    .map(|(k, v)| (vec![b'k', *k], v.map(|v| vec![v])))
                    .collect();
                apply_model(&mut model, &w);
                history.push((commit_tree(&s, &w), model.clone()));
                let oldest = history.len().saturating_sub(kept as usize + 1);
                for (root, m) in &history[oldest..] {
                    assert_proves(&s, *root, m, &keys);
                }
            }
            // The last commit's sweep may have been cut short by `per_commit`; with room for
            // everything, exactly the kept versions' nodes remain.
            let oldest = history.len().saturating_sub(kept as usize + 1);
            let mut live = BTreeSet::new();
            for (root, _) in &history[oldest..] {
                reachable(&s, *root, &mut live);
            }
            let stored = stored_nodes(&s);
            proptest::prop_assert!(stored.is_superset(&live));
            if per_commit == 4096 {
                proptest::prop_assert_eq!(stored, live);
            }
        }
    }

    #[test]
    fn reopen_after_commit_resumes_at_the_head() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ChainStore::open(dir.path()).unwrap();
            assert!(s.head().unwrap().is_none());
            assert!(s
                .init_genesis(
                    &writes(&[("a", Some("1"))]),
                    &TreeDelta::default(),
                    [0; 32],
                    5,
                    &set()
                )
                .unwrap());
            s.append_wal(&timeout_input(1)).unwrap();
            s.append_wal(&timeout_input(2)).unwrap();
            commit(&s, 1, &writes(&[("a", None), ("b", Some("2"))]));
        }
        let s = ChainStore::open(dir.path()).unwrap();
        let head = s.require_head().unwrap();
        assert_eq!(head.height, 1);
        assert_eq!(head.state_root, [1; 32]);
        assert_eq!(head.block_hash, decision(1).certificate.value_id);
        assert_eq!(s.get(b"a").unwrap(), None);
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.decision(1).unwrap().unwrap(), decision(1));
        assert_eq!(s.tree_node(&[1]).unwrap(), Some(vec![1]));
        // The decided height's log is gone; the next height's early input stays.
        assert_eq!(s.wal_from(0).unwrap(), vec![timeout_input(2)]);
        // Genesis is never rewritten.
        assert!(!s
            .init_genesis(&WriteSet::new(), &TreeDelta::default(), [9; 32], 0, &set())
            .unwrap());
        // New log entries sort after the surviving ones.
        s.append_wal(&timeout_input(2)).unwrap();
        assert_eq!(s.wal_from(2).unwrap().len(), 2);
    }

    #[test]
    fn a_crash_before_commit_leaves_the_previous_height_intact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ChainStore::open(dir.path()).unwrap();
            s.init_genesis(&WriteSet::new(), &TreeDelta::default(), [0; 32], 0, &set())
                .unwrap();
            commit(&s, 1, &writes(&[("k", Some("v1"))]));
            // Height 2 is being worked on: its inputs are logged, then the process dies
            // before the commit batch is written.
            s.append_wal(&timeout_input(2)).unwrap();
        }
        let s = ChainStore::open(dir.path()).unwrap();
        let head = s.require_head().unwrap();
        assert_eq!(head.height, 1);
        assert_eq!(s.get(b"k").unwrap(), Some(b"v1".to_vec()));
        assert!(s.block(2).unwrap().is_none());
        assert_eq!(s.wal_from(2).unwrap(), vec![timeout_input(2)]);
        // Out-of-order commits are refused and change nothing.
        let d = decision(3);
        let err = s
            .commit_block(
                &d,
                d.certificate.value_id,
                CommitWrites {
                    writes: &writes(&[("k", Some("v3"))]),
                    tree: &TreeDelta::default(),
                    state_root: [3; 32],
                    next_validators: &set(),
                },
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::OutOfOrder { head: 1, got: 3 }));
        assert_eq!(s.get(b"k").unwrap(), Some(b"v1".to_vec()));
        commit(&s, 2, &writes(&[("k", Some("v2"))]));
        assert_eq!(s.require_head().unwrap().height, 2);
    }

    #[test]
    fn scan_prefix_reads_in_order_within_prefix_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChainStore::open(dir.path()).unwrap();
        s.init_genesis(
            &writes(&[
                ("a1", Some("x")),
                ("a2", Some("y")),
                ("a3", Some("z")),
                ("b", Some("w")),
            ]),
            &TreeDelta::default(),
            [0; 32],
            0,
            &set(),
        )
        .unwrap();
        let got = s.scan_prefix(b"a", 2).unwrap();
        assert_eq!(
            got,
            vec![
                (b"a1".to_vec(), b"x".to_vec()),
                (b"a2".to_vec(), b"y".to_vec())
            ]
        );
        assert_eq!(s.scan_prefix(b"b", 10).unwrap().len(), 1);
        assert!(s.scan_prefix(b"c", 10).unwrap().is_empty());
    }

    #[test]
    fn the_signing_guard_survives_a_restart_and_refuses_a_double_sign() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ChainStore::open(dir.path()).unwrap();
            let mut g = s.load_guard().unwrap();
            g.authorize(4, Round(1), SignStep::Prevote, b"vote-a")
                .unwrap();
            s.save_guard(&g).unwrap();
        }
        let s = ChainStore::open(dir.path()).unwrap();
        let mut g = s.load_guard().unwrap();
        assert_eq!(
            g.authorize(4, Round(1), SignStep::Prevote, b"vote-b"),
            Err(ConsensusError::DoubleSign)
        );
        assert_eq!(
            g.authorize(4, Round(0), SignStep::Precommit, b"older"),
            Err(ConsensusError::DoubleSign)
        );
        g.authorize(4, Round(1), SignStep::Prevote, b"vote-a")
            .unwrap();
        g.authorize(4, Round(1), SignStep::Precommit, b"next")
            .unwrap();
    }
}
