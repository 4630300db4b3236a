//! The chain node: hosts one consensus [`Driver`] per instance on tokio, with real timers, the
//! QUIC peer network ([`net`]), the RocksDB store ([`store`]), the block-building application
//! and mempool ([`app`]) and block sync ([`sync`]).
//!
//! The node task mirrors the simulation harness (`crate::sim`): external inputs (peer
//! messages, timer expiries, synced commits) go through [`Driver::handle`], and the returned
//! [`Effect`]s are carried out against the network, tokio timers and the store. Everything is
//! keyed by [`InstanceId`]: each instance has its own store directory and ignores other
//! instances' messages; [`start`] runs one instance.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod app;
pub mod evidence;
pub mod net;
pub mod query;
pub mod store;
pub mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use primitives::hash::Hash32;
use secp256k1::ecdsa::Signature;
use secp256k1::{SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::app::{BlockLimits, NodeApp, NodeConsensusStore, Shared};
use self::net::{NetConfig, Network, PeerId, WireMsg};
use self::store::{ChainStore, StoreError, TreeDelta};
use crate::block::{BlockHash, ChainContext};
use crate::consensus::secp::{self, ValidatorAddress};
use crate::consensus::{
    ConsensusError, ConsensusMessage, Decision, Driver, Effect, Evidence, Input, InstanceId,
    Params, Signer, Timeout, TimeoutConfig, ValidatorSet,
};
use crate::ledger::{Genesis, Ledger, RejectCode, Rejection};
use crate::mempool::{Mempool, MempoolConfig};
use crate::state::smt;
use crate::state::WriteSet;
use crate::tx::AccountAddress;

/// Why the node stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The consensus core refused the configuration.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// The genesis does not match the store, or the node cannot go on.
    #[error("{0}")]
    Fatal(String),
}

/// Signs consensus messages with a validator's secp256k1 key.
#[derive(Clone)]
pub struct KeySigner {
    secret: SecretKey,
    address: ValidatorAddress,
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySigner")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl KeySigner {
    /// A signer for `secret`.
    pub fn new(secret: SecretKey) -> Self {
        KeySigner {
            address: ValidatorAddress::from_public_key(&secret.public_key(SECP256K1)),
            secret,
        }
    }
}

impl Signer<ChainContext> for KeySigner {
    fn address(&self) -> ValidatorAddress {
        self.address
    }

    fn sign(&self, sign_bytes: &[u8]) -> Signature {
        secp::sign(&self.secret, sign_bytes)
    }
}

/// The state at height 0, as the ledger and the state tree derive it from a [`Genesis`].
#[derive(Debug, Clone)]
pub struct GenesisState {
    /// Genesis time (ms since the Unix epoch); the first block must be later.
    pub time_ms: u64,
    /// The validators of height 1.
    pub validators: ValidatorSet<ChainContext>,
    /// The initial state entries.
    pub writes: WriteSet,
    /// Their state-tree nodes.
    pub tree: TreeDelta,
    /// The initial state root.
    pub state_root: Hash32,
}

impl GenesisState {
    /// Derives the genesis state of `genesis` with `ledger`.
    ///
    /// # Errors
    /// An invalid genesis.
    pub fn derive(ledger: &Ledger, genesis: &Genesis) -> Result<Self, NodeError> {
        let (writes, validators) = ledger
            .init_genesis(genesis)
            .map_err(|e| NodeError::Fatal(format!("genesis: {e}")))?;
        let update = smt::apply(&smt::MemNodes::new(), smt::empty_hash(), &writes)
            .map_err(|e| NodeError::Fatal(format!("genesis state tree: {e}")))?;
        Ok(GenesisState {
            time_ms: genesis.genesis_time_ms,
            validators: ValidatorSet::new(validators)?,
            writes,
            tree: TreeDelta::new(update.new_nodes, update.stale_nodes),
            state_root: update.root,
        })
    }
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The network's chain id.
    pub chain_id: String,
    /// The consensus instance.
    pub instance: InstanceId,
    /// Where the store lives (one subdirectory per instance).
    pub data_dir: PathBuf,
    /// UDP address for peers.
    pub listen: SocketAddr,
    /// Peers to dial.
    pub peers: Vec<SocketAddr>,
    /// Largest accepted frame.
    pub max_frame: usize,
    /// Consensus timeouts.
    pub timeouts: TimeoutConfig,
    /// Pause between a decision and the next height.
    pub block_interval: Duration,
    /// Period of status and consensus re-gossip.
    pub gossip_interval: Duration,
    /// Limits of proposed blocks.
    pub limits: BlockLimits,
    /// Most pending transactions.
    pub mempool_txs: usize,
    /// Most pending transaction bytes.
    pub mempool_bytes: usize,
    /// State versions kept behind the head: the state roots of the last this-many heights
    /// before the head (and the head's) stay readable and provable; the tree nodes only older
    /// roots need are pruned. `0` keeps every version (an archive node). See
    /// [`store::StoreOptions::state_versions_kept`].
    pub state_versions_kept: u64,
}

impl NodeConfig {
    /// Defaults for `chain_id`, storing under `data_dir`, listening on `listen`.
    pub fn new(chain_id: impl Into<String>, data_dir: PathBuf, listen: SocketAddr) -> Self {
        NodeConfig {
            chain_id: chain_id.into(),
            instance: InstanceId(0),
            data_dir,
            listen,
            peers: Vec::new(),
            max_frame: net::DEFAULT_MAX_FRAME,
            timeouts: TimeoutConfig::default(),
            block_interval: Duration::from_millis(500),
            gossip_interval: Duration::from_millis(500),
            limits: BlockLimits::default(),
            mempool_txs: 100_000,
            mempool_bytes: 64 << 20,
            state_versions_kept: store::DEFAULT_STATE_VERSIONS_KEPT,
        }
    }
}

/// What the node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Chain id.
    pub chain_id: String,
    /// Our validator address (hex).
    pub address: String,
    /// Last committed height.
    pub height: u64,
    /// Hash of the last committed block (hex).
    pub block_hash: String,
    /// State root after it (hex).
    pub state_root: String,
    /// The height consensus works on.
    pub consensus_height: u64,
    /// Its round.
    pub round: u32,
    /// Connected peers.
    pub peers: usize,
    /// Pending transactions.
    pub mempool: usize,
    /// Consensus messages refused because the sender is not a validator.
    pub refused_non_validator: u64,
}

/// A committed block, as announced to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: BlockHash,
    /// Hashes of its transactions.
    pub txs: Vec<Hash32>,
}

enum Command {
    Status(oneshot::Sender<NodeStatus>),
    Submit(Vec<u8>, oneshot::Sender<Result<Hash32, Rejection>>),
}

enum Internal {
    Timeout(Timeout<ChainContext>),
    NextHeight(u64),
}

/// A running node: ask for its status, submit transactions, watch commits.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    commits: broadcast::Sender<Committed>,
    /// The bound peer address.
    pub listen: SocketAddr,
    /// Our validator address.
    pub address: ValidatorAddress,
    /// The store and mempool, for read-only queries (state with proofs, headers, nonces).
    pub shared: Arc<Shared>,
}

impl NodeHandle {
    /// The node's status, or `None` if it stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Submits a transaction; on success it is pending and gossiped.
    ///
    /// # Errors
    /// The mempool's [`Rejection`] ([`RejectCode::State`] if the node stopped).
    pub async fn submit(&self, tx: Vec<u8>) -> Result<Hash32, Rejection> {
        let stopped = || Rejection::new(RejectCode::State, "node stopped");
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Submit(tx, reply))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Commits from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.commits.subscribe()
    }
}

/// Opens the store (writing the genesis on first start), starts the network and the node task.
/// Returns the handle and the task, which ends with the reason the node stopped.
///
/// # Errors
/// The store or the network cannot start, or the store holds another chain.
pub fn start(
    cfg: NodeConfig,
    secret: SecretKey,
    genesis: GenesisState,
    ledger: Arc<Ledger>,
) -> Result<(NodeHandle, tokio::task::JoinHandle<Result<(), NodeError>>), NodeError> {
    let dir = cfg.data_dir.join(format!("chain-{}", cfg.instance.0));
    std::fs::create_dir_all(&dir)
        .map_err(|e| NodeError::Fatal(format!("{}: {e}", dir.display())))?;
    let store = Arc::new(ChainStore::open_with(
        &dir,
        store::StoreOptions {
            state_versions_kept: cfg.state_versions_kept,
            ..store::StoreOptions::default()
        },
    )?);
    store.init_genesis(
        &genesis.writes,
        &genesis.tree,
        genesis.state_root,
        genesis.time_ms,
        &genesis.validators,
    )?;
    let head = store.require_head()?;
    if head.height == 0 && head.state_root != genesis.state_root {
        return Err(NodeError::Fatal("the store holds another genesis".into()));
    }
    let ctx = ChainContext::new(cfg.chain_id.clone());
    let shared = Arc::new(Shared::new(
        store.clone(),
        ledger,
        Mempool::new(MempoolConfig {
            max_txs: cfg.mempool_txs,
            max_bytes: cfg.mempool_bytes,
            ..MempoolConfig::default()
        }),
    ));
    let signer = KeySigner::new(secret);
    let address = signer.address;
    let app = NodeApp::new(
        shared.clone(),
        ctx.clone(),
        cfg.instance,
        address,
        cfg.limits,
    );
    let cstore = NodeConsensusStore::open(shared.clone(), ctx.clone())?;
    let mut params = Params::new(cfg.instance);
    params.timeouts = cfg.timeouts;
    let height = head
        .height
        .checked_add(1)
        .ok_or(ConsensusError::HeightOverflow)?;
    let driver = Driver::new(
        ctx.clone(),
        params,
        signer,
        height,
        head.next_validators.clone(),
    );

    let (net_tx, net_rx) = mpsc::channel(16_384);
    let network = Network::start(
        &NetConfig {
            chain_id: cfg.chain_id.clone(),
            listen: cfg.listen,
            peers: cfg.peers.clone(),
            max_frame: cfg.max_frame,
        },
        secret,
        net_tx,
    )?;
    let listen = network.local_addr()?;
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let (commits, _) = broadcast::channel(1024);
    let node = Node {
        ctx,
        instance: cfg.instance,
        cfg,
        shared: shared.clone(),
        driver,
        app,
        cstore,
        net: network,
        internal: internal_tx,
        commits: commits.clone(),
        sync: sync::SyncState::default(),
        refused: 0,
        regossip: ProposalRegossip::default(),
        secret,
        tx_out: Vec::new(),
        tx_out_bytes: 0,
    };
    let task = tokio::spawn(node.run(net_rx, cmd_rx, internal_rx));
    Ok((
        NodeHandle {
            commands: cmd_tx,
            commits,
            listen,
            address,
            shared,
        },
        task,
    ))
}

struct Node {
    ctx: ChainContext,
    instance: InstanceId,
    cfg: NodeConfig,
    shared: Arc<Shared>,
    driver: Driver<ChainContext, KeySigner>,
    app: NodeApp,
    cstore: NodeConsensusStore,
    net: Network,
    internal: mpsc::UnboundedSender<Internal>,
    commits: broadcast::Sender<Committed>,
    sync: sync::SyncState,
    refused: u64,
    regossip: ProposalRegossip,
    secret: SecretKey,
    /// Admitted transactions waiting for the next gossip batch, and their bytes.
    tx_out: Vec<Vec<u8>>,
    tx_out_bytes: usize,
}

/// Most relayed transactions waiting for the node task; more are dropped (gossip is best
/// effort: the sender's node keeps them and they reach the proposer's block anyway).
const TX_BACKLOG: usize = 4096;

/// Newly admitted transactions are gossiped in batches of at most this many bytes…
const GOSSIP_BATCH_BYTES: usize = 256 << 10;
/// …and at least this often (sooner when no submission is waiting).
///
/// One message (and one QUIC stream) per transaction did not survive load: beyond the network's
/// budget of [`net::TX_GOSSIP_STREAMS`] streams in flight, transactions were not gossiped at
/// all, so at saturation a transaction waited for the node that admitted it to propose (every
/// n-th block with n validators). Batches carry every transaction within the same budget.
const GOSSIP_FLUSH: Duration = Duration::from_millis(10);

/// Messages from peers, as the network hands them over.
type PeerRx = mpsc::Receiver<(PeerId, WireMsg)>;

/// Splits peer traffic into consensus and sync messages (never dropped) and relayed
/// transactions (dropped beyond [`TX_BACKLOG`]), so the node task can serve them by priority.
fn split_traffic(mut net_rx: PeerRx) -> (PeerRx, PeerRx) {
    let (consensus_tx, consensus_rx) = mpsc::channel(4096);
    let (tx_tx, tx_rx) = mpsc::channel(TX_BACKLOG);
    tokio::spawn(async move {
        while let Some((peer, msg)) = net_rx.recv().await {
            if msg.is_tx() {
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx_tx.try_send((peer, msg)) {
                    return;
                }
            } else if consensus_tx.send((peer, msg)).await.is_err() {
                return;
            }
        }
    });
    (consensus_rx, tx_rx)
}

/// When the gossip tick re-sends our own proposal of the current round.
///
/// A proposal carries the whole block, so encoding it, and decoding it at every peer, costs in
/// proportion to the block. It is broadcast once when made and QUIC delivers it reliably; peers
/// that report a lower round get it through the catch-up on their status. Re-sending it on every
/// tick as well made a loaded network spend most of its CPU re-encoding and re-decoding the same
/// large proposals (and decoding stale ones after the height was decided), so rounds outgrew
/// their timeouts and nothing was committed. The tick now re-sends it with exponential backoff
/// (on the 1st, 2nd, 4th, 8th, … tick of a round), which still repairs a proposal lost to a
/// reconnect.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ProposalRegossip {
    height: u64,
    round: u32,
    ticks: u32,
}

impl ProposalRegossip {
    /// Counts a gossip tick at (`height`, `round`); whether it re-sends the proposal.
    fn tick(&mut self, height: u64, round: u32) -> bool {
        if (self.height, self.round) != (height, round) {
            *self = ProposalRegossip {
                height,
                round,
                ticks: 0,
            };
        }
        self.ticks = self.ticks.saturating_add(1);
        self.ticks.is_power_of_two()
    }
}

impl Node {
    async fn run(
        mut self,
        net_rx: mpsc::Receiver<(PeerId, WireMsg)>,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut internal_rx: mpsc::UnboundedReceiver<Internal>,
    ) -> Result<(), NodeError> {
        let effects = self.driver.start(&mut self.app, &mut self.cstore);
        self.apply(effects);
        let height = self.driver.core().height();
        for input in self.shared.store.wal_from(height)? {
            if let Ok(effects) = self.driver.handle(input, &mut self.app, &mut self.cstore) {
                self.apply(effects);
            }
        }
        let mut gossip = tokio::time::interval(self.cfg.gossip_interval);
        let mut flush = tokio::time::interval(GOSSIP_FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut consensus_rx, mut tx_rx) = split_traffic(net_rx);
        loop {
            if let Some(why) = self.shared.fatal() {
                return Err(NodeError::Fatal(why));
            }
            // Biased: timers and consensus traffic first, so a flood of transactions (from
            // peers or local submitters) cannot delay proposals and votes past their timeouts.
            tokio::select! {
                biased;
                Some(ev) = internal_rx.recv() => match ev {
                    Internal::Timeout(t) => {
                        tracing::debug!(height = t.height, round = t.round.0, kind = ?t.kind, "timeout expired");
                        self.feed(Input::TimeoutExpired(t))
                    }
                    Internal::NextHeight(h) => self.start_height(h),
                },
                Some((peer, msg)) = consensus_rx.recv() => {
                    if let WireMsg::Consensus { message: ConsensusMessage::Proposal(p), .. } = &msg {
                        tracing::debug!(height = p.proposal.height, round = p.proposal.round.0, queued = consensus_rx.len(), "proposal received");
                    }
                    self.on_message(peer, msg)
                }
                _ = gossip.tick() => self.gossip(),
                _ = flush.tick(), if !self.tx_out.is_empty() => self.flush_tx_gossip(),
                cmd = cmd_rx.recv() => match cmd {
                    None => return Ok(()),
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Command::Submit(tx, reply)) => {
                        let _ = reply.send(self.submit(tx));
                    }
                },
                Some((peer, msg)) = tx_rx.recv() => self.on_message(peer, msg),
            }
            // Nothing more submitted right now: send what is queued instead of waiting for the
            // flush tick, so a lone transaction is not delayed; under load the queue keeps
            // filling between iterations and goes out in batches.
            if !self.tx_out.is_empty() && cmd_rx.is_empty() {
                self.flush_tx_gossip();
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let head = self.shared.store.require_head().ok();
        let core = self.driver.core();
        NodeStatus {
            chain_id: self.ctx.chain_id.clone(),
            address: self.net.me().address.to_string(),
            height: head.as_ref().map_or(0, |h| h.height),
            block_hash: head
                .as_ref()
                .map_or_else(String::new, |h| h.block_hash.to_string()),
            state_root: head
                .as_ref()
                .map_or_else(String::new, |h| hex::encode(h.state_root)),
            consensus_height: core.height(),
            round: core.round().0,
            peers: self.net.peers().len(),
            mempool: self.shared.mempool_len(),
            refused_non_validator: self.refused,
        }
    }

    fn submit(&mut self, tx: Vec<u8>) -> Result<Hash32, Rejection> {
        let (h, gossip) = self.shared.submit(tx, true)?;
        self.queue_tx_gossip(gossip);
        Ok(h)
    }

    /// Queues admitted transactions for the next gossip batch; sends full batches at once.
    fn queue_tx_gossip(&mut self, txs: Vec<Vec<u8>>) {
        for tx in txs {
            self.tx_out_bytes = self.tx_out_bytes.saturating_add(tx.len());
            self.tx_out.push(tx);
        }
        if self.tx_out_bytes >= GOSSIP_BATCH_BYTES {
            self.flush_tx_gossip();
        }
    }

    /// Broadcasts the queued transactions in batches of at most [`GOSSIP_BATCH_BYTES`].
    fn flush_tx_gossip(&mut self) {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for tx in std::mem::take(&mut self.tx_out) {
            if bytes.saturating_add(tx.len()) > GOSSIP_BATCH_BYTES && !batch.is_empty() {
                self.net
                    .broadcast(&WireMsg::TxBatch(std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes = bytes.saturating_add(tx.len());
            batch.push(tx);
        }
        if !batch.is_empty() {
            self.net.broadcast(&WireMsg::TxBatch(batch));
        }
        self.tx_out_bytes = 0;
    }

    fn feed(&mut self, input: Input<ChainContext>) {
        match self.driver.handle(input, &mut self.app, &mut self.cstore) {
            Ok(effects) => self.apply(effects),
            Err(e) => tracing::trace!(error = %e, "input refused"),
        }
    }

    fn is_validator(&self, peer: &PeerId) -> bool {
        self.driver.core().validators().get(&peer.address).is_some()
    }

    fn on_message(&mut self, peer: PeerId, msg: WireMsg) {
        match msg {
            // Relayed transactions are admitted but not relayed again: validators dial every
            // peer, so the admitting node's own batch already reached each of them, and a
            // second relay only made every node decode and hash each transaction once per
            // peer (measured: lower throughput at saturation). A transaction that misses a
            // node still reaches it in a proposal.
            WireMsg::Tx(tx) => {
                let _ = self.shared.submit(tx, false);
            }
            WireMsg::TxBatch(txs) => {
                for tx in txs {
                    let _ = self.shared.submit(tx, false);
                }
            }
            WireMsg::Consensus { instance, message } if instance == self.instance => {
                if !self.is_validator(&peer) {
                    self.refused = self.refused.saturating_add(1);
                    tracing::debug!(peer = %peer.address, "consensus message from a non-validator refused");
                    return;
                }
                let (height, input) = match message {
                    ConsensusMessage::Proposal(p) => (p.proposal.height, Input::Proposal(p)),
                    ConsensusMessage::Vote(v) => (v.vote.height, Input::Vote(v)),
                };
                match self.driver.handle(input, &mut self.app, &mut self.cstore) {
                    Ok(effects) => self.apply(effects),
                    Err(ConsensusError::WrongHeight) => {
                        if height > self.driver.core().height().saturating_add(1) {
                            self.request_sync(&peer, height);
                        }
                    }
                    Err(e) => tracing::trace!(peer = %peer.address, error = %e, "message refused"),
                }
            }
            WireMsg::Status {
                instance,
                height,
                round,
            } if instance == self.instance => self.on_status(&peer, height, round),
            WireMsg::SyncRequest {
                instance,
                from,
                max,
            } if instance == self.instance => {
                self.serve_sync(&peer, from, max);
            }
            WireMsg::SyncBlocks {
                instance,
                decisions,
            } if instance == self.instance => self.on_sync_blocks(&peer, decisions),
            _ => {}
        }
    }

    fn apply(&mut self, effects: Vec<Effect<ChainContext>>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(message) => self.net.broadcast(&WireMsg::Consensus {
                    instance: self.instance,
                    message,
                }),
                Effect::ScheduleTimeout { timeout, after } => {
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Internal::Timeout(timeout));
                    });
                }
                Effect::Decided(d) => self.on_decided(&d),
                Effect::Evidence(e) => {
                    tracing::warn!(offender = %e.offender(), "double-sign evidence: reporting it");
                    self.report_evidence(&e);
                }
                Effect::SigningRefused {
                    height,
                    round,
                    step,
                } => {
                    tracing::warn!(
                        height,
                        round = round.0,
                        ?step,
                        "signing guard refused to sign"
                    );
                }
            }
        }
    }

    /// Submits `e` as a staking transaction signed by this node's key and gossips it.
    fn report_evidence(&mut self, e: &Evidence<ChainContext>) {
        let account = AccountAddress::from_public_key(&self.secret.public_key(SECP256K1));
        let pending = self
            .shared
            .mempool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending_next_nonce(&account);
        let submitted =
            evidence::evidence_transaction(self.shared.store.as_ref(), &self.secret, e, pending)
                .and_then(|tx| self.shared.submit(tx, true));
        match submitted {
            Ok((hash, gossip)) => {
                tracing::info!(tx = %hex::encode(hash), "evidence submitted");
                self.queue_tx_gossip(gossip);
            }
            Err(r) => tracing::warn!(reason = %r, "evidence could not be submitted"),
        }
    }

    fn on_decided(&mut self, d: &Decision<ChainContext>) {
        if self.shared.fatal().is_some() {
            return;
        }
        let height = d.certificate.height;
        tracing::info!(height, block = %d.certificate.value_id, txs = d.value.txs.len(), "committed");
        let _ = self.commits.send(Committed {
            height,
            hash: d.certificate.value_id,
            txs: d
                .value
                .txs
                .iter()
                .map(|t| crate::block::tx_hash(t))
                .collect(),
        });
        let Some(next) = height.checked_add(1) else {
            return;
        };
        if self.sync.behind(height) {
            self.start_height(next);
        } else {
            let tx = self.internal.clone();
            let after = self.cfg.block_interval;
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(Internal::NextHeight(next));
            });
        }
    }

    /// Starts `height` if consensus is still on the one before and the store has committed it.
    fn start_height(&mut self, height: u64) {
        if self.driver.core().height() >= height {
            return;
        }
        let head = match self.shared.store.require_head() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "reading the head");
                return;
            }
        };
        if head.height.checked_add(1) != Some(height) {
            return;
        }
        let effects = self.driver.start_height(
            height,
            head.next_validators,
            &mut self.app,
            &mut self.cstore,
        );
        self.apply(effects);
    }

    fn gossip(&mut self) {
        let core = self.driver.core();
        self.net.broadcast(&WireMsg::Status {
            instance: self.instance,
            height: core.height(),
            round: core.round(),
        });
        let with_proposal = self.regossip.tick(core.height(), core.round().0);
        for message in self.driver.gossip() {
            if matches!(message, ConsensusMessage::Proposal(_)) && !with_proposal {
                continue;
            }
            self.net.broadcast(&WireMsg::Consensus {
                instance: self.instance,
                message,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProposalRegossip;

    #[test]
    fn the_proposal_is_regossiped_with_backoff_and_again_in_a_new_round() {
        let mut r = ProposalRegossip::default();
        let sent: Vec<u32> = (1..=100).filter(|_| r.tick(7, 0)).collect();
        assert_eq!(
            sent.len(),
            7,
            "100 ticks of one round re-send it 7 times: {sent:?}"
        );
        // A new round (or height) starts over: its first tick re-sends.
        assert!(r.tick(7, 1));
        assert!(r.tick(7, 1));
        assert!(!r.tick(7, 1));
        assert!(r.tick(8, 0));
    }
}
