//! The node's side of the consensus [`Application`] and [`ConsensusStore`]: building and
//! checking blocks with the [`Ledger`] over the committed state, caching each block's
//! execution by hash so the commit writes exactly what was validated, and the durable
//! consensus state in the [`ChainStore`].
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use primitives::hash::Hash32;

use super::store::{ChainStore, CommitWrites, Head, TreeDelta};
use crate::block::{txs_root, validator_set_hash, Block, BlockHash, ChainContext, Header};
use crate::consensus::secp::ValidatorAddress;
use crate::consensus::{
    Application, ConsensusError, ConsensusStore, Context, Decision, Input, InstanceId, Round,
    SignStep, SigningGuard, ValidatorSet,
};
use crate::ledger::{BlockContext, Ledger, Rejection};
use crate::mempool::{Mempool, Source};
use crate::state::{smt, WriteSet};

/// The result of executing a block's transactions on the committed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// State changes.
    pub writes: WriteSet,
    /// State-tree node changes (new and stale nodes).
    pub tree: TreeDelta,
    /// State root after the block.
    pub state_root: Hash32,
    /// The validator set of the next height.
    pub next_validators: ValidatorSet<ChainContext>,
}

/// Executes `txs` of the block `header` with `ledger` on the committed state in `store` (at
/// `head`) and updates the state tree. Signatures of transactions for which
/// `already_verified(hash)` holds (this node's mempool admitted them) are not checked again.
///
/// # Errors
/// Why the block is invalid, or a store failure.
pub fn execute(
    ledger: &Ledger,
    store: &ChainStore,
    head: &Head,
    header: &Header,
    txs: &[Vec<u8>],
    already_verified: &dyn Fn(&Hash32) -> bool,
) -> Result<Executed, String> {
    let ctx = BlockContext {
        chain_id: header.chain_id.clone(),
        height: header.height,
        time_ms: header.time_ms,
        proposer: header.proposer,
    };
    let outcome = ledger
        .execute_block_with_verified(store, &ctx, txs, already_verified)
        .map_err(|e| e.to_string())?;
    let update = smt::apply(store, head.state_root, &outcome.writes).map_err(|e| e.to_string())?;
    let next_validators = match outcome.next_validators {
        Some(vs) => ValidatorSet::new(vs).map_err(|e| format!("next validator set: {e}"))?,
        None => head.next_validators.clone(),
    };
    Ok(Executed {
        writes: outcome.writes,
        tree: TreeDelta::new(update.new_nodes, update.stale_nodes),
        state_root: update.root,
        next_validators,
    })
}

/// Limits on the blocks this node proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions per block.
    pub max_txs: usize,
    /// Most transaction bytes per block.
    pub max_bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_txs: 10_000,
            max_bytes: 4 << 20,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the node's [`Application`] and [`ConsensusStore`] halves.
pub struct Shared {
    /// The database.
    pub store: Arc<ChainStore>,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Pending transactions.
    pub mempool: Mutex<Mempool>,
    outcomes: Mutex<HashMap<BlockHash, Executed>>,
    fatal: Mutex<Option<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shares `store`, `ledger` and a mempool.
    pub fn new(store: Arc<ChainStore>, ledger: Arc<Ledger>, mempool: Mempool) -> Self {
        Shared {
            store,
            ledger,
            mempool: Mutex::new(mempool),
            outcomes: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
        }
    }

    /// A failure after which the node must stop (it could not commit a decided block).
    pub fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    fn set_fatal(&self, why: String) {
        tracing::error!(reason = %why, "node cannot continue");
        lock(&self.fatal).get_or_insert(why);
    }

    /// Admits a transaction to the mempool (checked against the committed state); returns its
    /// hash and the newly admitted transactions to gossip.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn submit(&self, tx: Vec<u8>, local: bool) -> Result<(Hash32, Vec<Vec<u8>>), Rejection> {
        let source = if local { Source::Local } else { Source::Peer };
        let mut pool = lock(&self.mempool);
        let info = pool.insert(&self.ledger, self.store.as_ref(), tx, source)?;
        Ok((info.hash, pool.take_gossip()))
    }

    /// Pending transactions.
    pub fn mempool_len(&self) -> usize {
        lock(&self.mempool).len()
    }

    fn execute(&self, head: &Head, block: &Block) -> Result<Executed, String> {
        let pool = lock(&self.mempool);
        execute(
            &self.ledger,
            &self.store,
            head,
            &block.header,
            &block.txs,
            &|h| pool.contains(h),
        )
    }
}

/// The [`Application`]: proposes blocks from the mempool and validates proposed ones.
#[derive(Debug)]
pub struct NodeApp {
    shared: Arc<Shared>,
    ctx: ChainContext,
    instance: InstanceId,
    proposer: ValidatorAddress,
    limits: BlockLimits,
    clock: fn() -> u64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How far ahead of our clock a proposed block's time may be.
pub const MAX_CLOCK_DRIFT_MS: u64 = 10_000;

impl NodeApp {
    /// An application for `instance` proposing as `proposer`.
    pub fn new(
        shared: Arc<Shared>,
        ctx: ChainContext,
        instance: InstanceId,
        proposer: ValidatorAddress,
        limits: BlockLimits,
    ) -> Self {
        NodeApp {
            shared,
            ctx,
            instance,
            proposer,
            limits,
            clock: now_ms,
        }
    }

    fn build(&self, head: &Head, height: u64, txs: Vec<Vec<u8>>) -> Result<Block, String> {
        let time_ms = (self.clock)().max(head.time_ms.saturating_add(1));
        let mut header = Header {
            chain_id: self.ctx.chain_id.clone(),
            instance: self.instance,
            height,
            time_ms,
            prev_hash: head.block_hash,
            txs_root: txs_root(&txs),
            state_root: head.state_root,
            validators_hash: validator_set_hash(&head.next_validators),
            next_validators_hash: validator_set_hash(&head.next_validators),
            proposer: self.proposer,
        };
        let block = Block {
            header: header.clone(),
            txs,
        };
        let executed = self.shared.execute(head, &block)?;
        header.state_root = executed.state_root;
        header.next_validators_hash = validator_set_hash(&executed.next_validators);
        let block = Block {
            header,
            txs: block.txs,
        };
        lock(&self.shared.outcomes).insert(self.ctx.value_id(&block), executed);
        Ok(block)
    }

    fn check(&self, head: &Head, height: u64, block: &Block) -> Result<Executed, String> {
        let h = &block.header;
        if h.chain_id != self.ctx.chain_id || h.instance != self.instance {
            return Err("wrong chain or instance".into());
        }
        if h.height != height || head.height.checked_add(1) != Some(height) {
            return Err(format!(
                "height {} does not follow {}",
                h.height, head.height
            ));
        }
        if h.prev_hash != head.block_hash {
            return Err("wrong previous block".into());
        }
        if h.time_ms <= head.time_ms
            || h.time_ms > (self.clock)().saturating_add(MAX_CLOCK_DRIFT_MS)
        {
            return Err("block time out of range".into());
        }
        if !block.body_matches() {
            return Err("transactions do not match the header".into());
        }
        if h.validators_hash != validator_set_hash(&head.next_validators) {
            return Err("wrong validator set".into());
        }
        if head.next_validators.get(&h.proposer).is_none() {
            return Err("proposer is not a validator".into());
        }
        let total: usize = block
            .txs
            .iter()
            .map(Vec::len)
            .fold(0, usize::saturating_add);
        if block.txs.len() > self.limits.max_txs || total > self.limits.max_bytes {
            return Err("block too large".into());
        }
        let executed = self.shared.execute(head, block)?;
        if executed.state_root != h.state_root {
            return Err("state root mismatch".into());
        }
        if validator_set_hash(&executed.next_validators) != h.next_validators_hash {
            return Err("next validator set mismatch".into());
        }
        Ok(executed)
    }
}

impl Application<ChainContext> for NodeApp {
    fn propose(&mut self, height: u64, _round: Round) -> Block {
        let head = match self.shared.store.require_head() {
            Ok(h) => h,
            Err(e) => {
                self.shared.set_fatal(format!("reading the head: {e}"));
                return empty_block(&self.ctx, self.instance, height, self.proposer);
            }
        };
        let started = std::time::Instant::now();
        let txs = lock(&self.shared.mempool).reap(self.limits.max_bytes, self.limits.max_txs);
        let count = txs.len();
        match self.build(&head, height, txs) {
            Ok(b) => {
                tracing::debug!(
                    height,
                    txs = count,
                    ms = started.elapsed().as_millis(),
                    "proposal built"
                );
                b
            }
            Err(e) => {
                tracing::warn!(height, reason = %e, "proposal with mempool transactions failed; proposing an empty block");
                self.build(&head, height, Vec::new()).unwrap_or_else(|e| {
                    self.shared
                        .set_fatal(format!("executing an empty block: {e}"));
                    empty_block(&self.ctx, self.instance, height, self.proposer)
                })
            }
        }
    }

    fn validate(&mut self, height: u64, value: &Block) -> bool {
        // The id hashes the header only; the header's txs_root binds the body once it matches.
        if !value.body_matches() || value.header.height != height {
            return false;
        }
        let id = self.ctx.value_id(value);
        if lock(&self.shared.outcomes).contains_key(&id) {
            return true;
        }
        let head = match self.shared.store.require_head() {
            Ok(h) => h,
            Err(e) => {
                self.shared.set_fatal(format!("reading the head: {e}"));
                return false;
            }
        };
        let started = std::time::Instant::now();
        let checked = self.check(&head, height, value);
        tracing::debug!(
            height,
            txs = value.txs.len(),
            ms = started.elapsed().as_millis(),
            ok = checked.is_ok(),
            "proposal validated"
        );
        match checked {
            Ok(executed) => {
                lock(&self.shared.outcomes).insert(id, executed);
                true
            }
            Err(reason) => {
                tracing::info!(height, block = %id, %reason, "invalid proposal");
                false
            }
        }
    }
}

fn empty_block(
    ctx: &ChainContext,
    instance: InstanceId,
    height: u64,
    proposer: ValidatorAddress,
) -> Block {
    Block {
        header: Header {
            chain_id: ctx.chain_id.clone(),
            instance,
            height,
            time_ms: 0,
            prev_hash: BlockHash([0; 32]),
            txs_root: txs_root(&[]),
            state_root: [0; 32],
            validators_hash: [0; 32],
            next_validators_hash: [0; 32],
            proposer,
        },
        txs: Vec::new(),
    }
}

/// The durable consensus state of one instance in the [`ChainStore`]: signing guard, write-ahead
/// log and block commits.
#[derive(Debug)]
pub struct NodeConsensusStore {
    shared: Arc<Shared>,
    guard: SigningGuard<u64>,
    ctx: ChainContext,
}

impl NodeConsensusStore {
    /// Loads the signing guard from the store.
    ///
    /// # Errors
    /// The stored guard cannot be read.
    pub fn open(shared: Arc<Shared>, ctx: ChainContext) -> Result<Self, super::store::StoreError> {
        let guard = shared.store.load_guard()?;
        Ok(NodeConsensusStore { shared, guard, ctx })
    }

    fn commit_inner(&mut self, decision: &Decision<ChainContext>) -> Result<(), String> {
        let id = self.ctx.value_id(&decision.value);
        if id != decision.certificate.value_id {
            return Err("decided block does not match its certificate".into());
        }
        let head = self
            .shared
            .store
            .require_head()
            .map_err(|e| e.to_string())?;
        if decision.certificate.height <= head.height {
            return Ok(());
        }
        let cached = lock(&self.shared.outcomes).remove(&id);
        let executed = match cached {
            Some(e) => e,
            None => self.shared.execute(&head, &decision.value)?,
        };
        if executed.state_root != decision.value.header.state_root {
            return Err(format!(
                "executing decided block {id} gives another state root than its header"
            ));
        }
        // Proposer priorities carry over while the members stay the same, and advance once per
        // height (the weighted round-robin); a changed set starts from fresh priorities.
        let mut next = if validator_set_hash(&executed.next_validators)
            == validator_set_hash(&head.next_validators)
        {
            head.next_validators.clone()
        } else {
            executed.next_validators.clone()
        };
        next.advance();
        self.shared
            .store
            .commit_block(
                decision,
                id,
                CommitWrites {
                    writes: &executed.writes,
                    tree: &executed.tree,
                    state_root: executed.state_root,
                    next_validators: &next,
                },
            )
            .map_err(|e| e.to_string())?;
        lock(&self.shared.outcomes).clear();
        let dropped = lock(&self.shared.mempool).update(
            &self.shared.ledger,
            self.shared.store.as_ref(),
            &decision.value.txs,
        );
        if !dropped.is_empty() {
            tracing::debug!(dropped = dropped.len(), "mempool re-check after commit");
        }
        Ok(())
    }
}

impl ConsensusStore<ChainContext> for NodeConsensusStore {
    fn authorize_signing(
        &mut self,
        height: u64,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<(), ConsensusError> {
        // A node that hit a fatal error (a failed log append: an input we acted on may not
        // survive a crash) signs nothing more; it stops, and a restart replays the log.
        if let Some(why) = self.shared.fatal() {
            return Err(ConsensusError::Encoding(format!(
                "refusing to sign after a fatal error: {why}"
            )));
        }
        let before = self.guard.clone();
        self.guard.authorize(height, round, step, sign_bytes)?;
        if let Err(e) = self.shared.store.save_guard(&self.guard) {
            self.guard = before;
            tracing::error!(error = %e, "signing guard not persisted; refusing to sign");
            return Err(ConsensusError::Encoding(format!(
                "signing guard not persisted: {e}"
            )));
        }
        Ok(())
    }

    fn append_input(&mut self, input: &Input<ChainContext>) {
        // Durability: the append itself is not fsynced, but every signature is preceded by the
        // synced write of the signing guard to the same RocksDB, and a synced write syncs the
        // whole log up to it. So every input a vote depended on is on disk before the vote
        // leaves. An append that fails breaks that chain: stop signing and stop the node.
        if let Err(e) = self.shared.store.append_wal(input) {
            self.shared
                .set_fatal(format!("write-ahead log append failed: {e}"));
        }
    }

    fn commit(&mut self, decision: &Decision<ChainContext>) {
        if let Err(e) = self.commit_inner(decision) {
            self.shared.set_fatal(format!(
                "committing height {}: {e}",
                decision.certificate.height
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::consensus::CommitCertificate;
    use crate::ledger::Genesis;
    use crate::mempool::MempoolConfig;
    use secp256k1::SECP256K1;

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let ledger = Arc::new(Ledger::new());
        let g = crate::node::GenesisState::derive(&ledger, &Genesis::example(1, 7)).unwrap();
        let store = Arc::new(ChainStore::open(dir).unwrap());
        store
            .init_genesis(&g.writes, &g.tree, g.state_root, g.time_ms, &g.validators)
            .unwrap();
        Arc::new(Shared::new(
            store,
            ledger,
            Mempool::new(MempoolConfig::default()),
        ))
    }

    #[test]
    fn the_consensus_store_refuses_a_double_sign_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ChainContext::new("t");
        {
            let mut s = NodeConsensusStore::open(shared(dir.path()), ctx.clone()).unwrap();
            s.authorize_signing(1, Round(0), SignStep::Prevote, b"a")
                .unwrap();
        }
        let mut s = NodeConsensusStore::open(shared(dir.path()), ctx).unwrap();
        assert_eq!(
            s.authorize_signing(1, Round(0), SignStep::Prevote, b"b"),
            Err(ConsensusError::DoubleSign)
        );
        s.authorize_signing(1, Round(0), SignStep::Prevote, b"a")
            .unwrap();
        s.authorize_signing(1, Round(0), SignStep::Precommit, b"c")
            .unwrap();
    }

    #[test]
    fn proposals_validate_and_commit_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ChainContext::new(Genesis::example(1, 7).chain_id);
        let sh = shared(dir.path());
        let me =
            ValidatorAddress::from_public_key(&Genesis::example_key(7, 0).public_key(SECP256K1));
        let mut app = NodeApp::new(
            sh.clone(),
            ctx.clone(),
            InstanceId(0),
            me,
            BlockLimits::default(),
        );
        let genesis_root = sh.store.require_head().unwrap().state_root;
        let block = app.propose(1, Round(0));
        assert!(block.header.time_ms > Genesis::example(1, 7).genesis_time_ms);
        assert_eq!(block.header.height, 1);
        assert_ne!(block.header.state_root, [0; 32]);
        assert_eq!(sh.store.require_head().unwrap().state_root, genesis_root);
        // A second node (no cached outcome) validates it by executing.
        let dir2 = tempfile::tempdir().unwrap();
        let sh2 = shared(dir2.path());
        let mut other = NodeApp::new(
            sh2.clone(),
            ctx.clone(),
            InstanceId(0),
            me,
            BlockLimits::default(),
        );
        assert!(other.validate(1, &block));
        for bad in [
            Block {
                header: Header {
                    state_root: [9; 32],
                    ..block.header.clone()
                },
                txs: Vec::new(),
            },
            Block {
                header: Header {
                    prev_hash: BlockHash([1; 32]),
                    ..block.header.clone()
                },
                txs: Vec::new(),
            },
            Block {
                header: Header {
                    time_ms: 1,
                    ..block.header.clone()
                },
                txs: Vec::new(),
            },
            Block {
                header: block.header.clone(),
                txs: vec![vec![1]],
            },
            Block {
                header: Header {
                    chain_id: "u".into(),
                    ..block.header.clone()
                },
                txs: Vec::new(),
            },
        ] {
            assert!(!other.validate(1, &bad), "{bad:?}");
        }
        assert!(!other.validate(2, &block));
        // Committing (here without a cached outcome) advances the head by one.
        let mut cs = NodeConsensusStore::open(sh2.clone(), ctx.clone()).unwrap();
        let id = ctx.value_id(&block);
        cs.commit(&Decision {
            value: block,
            certificate: CommitCertificate {
                instance: InstanceId(0),
                height: 1,
                round: Round(0),
                value_id: id,
                signatures: Vec::new(),
            },
        });
        assert_eq!(sh2.fatal(), None);
        let head = sh2.store.require_head().unwrap();
        assert_eq!((head.height, head.block_hash), (1, id));
    }
}
