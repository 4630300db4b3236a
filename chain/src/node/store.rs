//! The node's RocksDB store: blocks, certificates, the flat state, state-tree nodes, the chain
//! head and the consensus write-ahead log, one column family each.
//!
//! Committing a block is one atomic, synced [`rocksdb::WriteBatch`] (block, certificate, state
//! writes, tree nodes, the new head and the truncation of the decided height's log), so a crash
//! at any point leaves either the previous height or the new one, never a mix. The signing guard
//! is written with a synced write before a signature is released.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use primitives::codec;
use primitives::hash::Hash32;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};
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

const ALL_CFS: [&str; 6] = [CF_BLOCKS, CF_CERTS, CF_STATE, CF_TREE, CF_META, CF_WAL];
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

/// Nodes one state-tree update adds. Stale nodes are kept (a content-addressed node can come
/// back in a later version, so pruning needs reference counts or version horizons; not yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDelta {
    /// New nodes: key (node hash) → encoded node.
    pub new_nodes: Vec<(Vec<u8>, Vec<u8>)>,
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

fn wal_key(height: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    let (a, b) = k.split_at_mut(8);
    a.copy_from_slice(&height.to_be_bytes());
    b.copy_from_slice(&seq.to_be_bytes());
    k
}

impl ChainStore {
    /// Opens (creating if needed) the store in `path`.
    ///
    /// # Errors
    /// RocksDB cannot open the directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
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
        self.put_state(&mut batch, state, tree)?;
        batch.put_cf(self.cf(CF_META)?, HEAD_KEY, encode("head", &head)?);
        self.db.write_opt(batch, &synced())?;
        Ok(true)
    }

    fn put_state(
        &self,
        batch: &mut rocksdb::WriteBatch,
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
        for (k, v) in &tree.new_nodes {
            batch.put_cf(nodes, k, v);
        }
        Ok(())
    }

    /// Commits a decided block: block, certificate, state and tree changes, the new head and the
    /// truncation of the write-ahead log up to its height, in one synced batch.
    ///
    /// # Errors
    /// [`StoreError::OutOfOrder`] unless the block is at head + 1; RocksDB failure (then
    /// nothing was written).
    pub fn commit_block(
        &self,
        decision: &Decision<ChainContext>,
        hash: BlockHash,
        c: CommitWrites<'_>,
    ) -> Result<Head, StoreError> {
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
        self.put_state(&mut batch, c.writes, c.tree)?;
        batch.put_cf(self.cf(CF_META)?, HEAD_KEY, encode("head", &head)?);
        let end = height.checked_add(1).map_or([0xff; 16], |h| wal_key(h, 0));
        batch.delete_range_cf(self.cf(CF_WAL)?, wal_key(0, 0), end);
        self.db.write_opt(batch, &synced())?;
        Ok(head)
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

    /// Appends an accepted consensus input to the write-ahead log (written to RocksDB's own log,
    /// not fsynced: it survives a process crash; the signing guard, not this log, is what keeps
    /// a validator from double-signing).
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::block::{txs_root, Header};
    use crate::consensus::secp::ValidatorAddress;
    use crate::consensus::{
        ConsensusError, InstanceId, Round, SignStep, Timeout, TimeoutKind, Validator,
    };
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
