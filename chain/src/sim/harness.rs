//! The event loop, simulated network, node hosts and invariant checks.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use core::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use secp256k1::{PublicKey, SecretKey, SECP256K1};
use sha2::{Digest, Sha256};

use super::context::{SimContext, SimValue, ValueId};
use super::enroll::{Pool, TxId, TxKind, Workload, WorkloadReport};
use super::wire::{decode, encode, Message, MAX_VALUE_BYTES};
use crate::consensus::secp::{self, ValidatorAddress};
use crate::consensus::{
    Application, ConsensusError, ConsensusMessage, ConsensusStore, Context, Decision, Driver,
    Effect, Evidence, Input, InstanceId, MemoryStore, Params, Round, SignStep, SignedProposal,
    SignedVote, Signer, Step, Timeout, TimeoutConfig, Validator, ValidatorSet, Vote, VoteType,
};
use primitives::hash::{hash, Domain};

/// How a simulated validator behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// Follows the protocol; subject to all invariant checks.
    Honest,
    /// Signs two conflicting votes (and proposals) and sends them to different peers.
    Equivocate,
    /// Never sends its votes (it still proposes).
    Withhold,
    /// Honest, but also sprays random and mutated bytes at its peers.
    Garbage,
    /// Honest, but proposes values that fail validation.
    BadProposals,
}

/// Link model. Loss and partitions apply only before the stabilisation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// One-way base latency.
    pub latency_ms: u64,
    /// Uniform extra delay in `[0, jitter_ms]`.
    pub jitter_ms: u64,
    /// Loss probability in parts per million (before stabilisation).
    pub loss_ppm: u32,
    /// Each node's uplink bandwidth; sends are serialised through it.
    pub bandwidth_bytes_per_s: u64,
}

/// A network partition between `at_ms` and `heal_ms`: nodes talk only within their group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEvent {
    /// Start.
    pub at_ms: u64,
    /// Heal.
    pub heal_ms: u64,
    /// Group number of each node.
    pub groups: Vec<u8>,
}

/// A crash at `at_ms` and a restart from durable state at `restart_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashEvent {
    /// Node index.
    pub node: usize,
    /// Crash time.
    pub at_ms: u64,
    /// Restart time.
    pub restart_ms: u64,
}

/// One simulated scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Voting power of each validator.
    pub stakes: Vec<u64>,
    /// Behaviour of each validator.
    pub behaviours: Vec<Behaviour>,
    /// Link model.
    pub net: NetConfig,
    /// Partitions (all before `gst_ms`).
    pub partitions: Vec<PartitionEvent>,
    /// Crashes with restarts (all before `gst_ms`).
    pub crashes: Vec<CrashEvent>,
    /// Whether restarted nodes replay their write-ahead log (false models amnesia: only the
    /// signing guard survives, which must still prevent double-signing).
    pub replay_wal: bool,
    /// Whether honest nodes sign through their durable [`crate::consensus::SigningGuard`] (turning it off shows
    /// that the double-sign check catches what the guard prevents).
    pub signing_guard: bool,
    /// Global stabilisation time: partitions heal, loss stops.
    pub gst_ms: u64,
    /// After `gst_ms`, every honest node must decide `liveness_heights` more heights within this.
    pub liveness_bound_ms: u64,
    /// Heights required after stabilisation.
    pub liveness_heights: u64,
    /// Consensus timeouts.
    pub timeouts: TimeoutConfig,
    /// Re-gossip period.
    pub gossip_ms: u64,
    /// Pause between a decision and the next height.
    pub block_interval_ms: u64,
    /// A transaction workload (car enrollments) instead of opaque values; the run then ends
    /// when every transaction is final at every honest node, within `gst_ms +
    /// liveness_bound_ms`.
    pub workload: Option<Workload>,
}

impl SimConfig {
    /// A fault-free network of `n` equal validators.
    pub fn fault_free(n: usize) -> Self {
        SimConfig {
            stakes: vec![10; n],
            behaviours: vec![Behaviour::Honest; n],
            net: NetConfig {
                latency_ms: 20,
                jitter_ms: 5,
                loss_ppm: 0,
                bandwidth_bytes_per_s: 12_500_000,
            },
            partitions: Vec::new(),
            crashes: Vec::new(),
            replay_wal: true,
            signing_guard: true,
            gst_ms: 0,
            liveness_bound_ms: 20_000,
            liveness_heights: 5,
            timeouts: sim_timeouts(),
            gossip_ms: 250,
            block_interval_ms: 300,
            workload: None,
        }
    }

    /// The scenario a seed stands for: 4–10 validators, random stakes, Byzantine validators
    /// holding less than a third of the power, random latency/jitter/loss/bandwidth, up to two
    /// partitions and two crash-restarts before a stabilisation time of 1–8 s.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = rng.gen_range(4..=10usize);
        let stakes: Vec<u64> = if rng.gen_bool(0.5) {
            vec![10; n]
        } else {
            (0..n).map(|_| rng.gen_range(1..=20)).collect()
        };
        let total: u64 = stakes.iter().sum();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut behaviours = vec![Behaviour::Honest; n];
        let max_byz = rng.gen_range(0..=3usize);
        let mut byz_power = 0u64;
        let mut byz = 0;
        for &i in &order {
            if byz >= max_byz {
                break;
            }
            let p = stakes.get(i).copied().unwrap_or(0);
            if 3 * (byz_power + p) < total {
                byz_power += p;
                byz += 1;
                if let Some(b) = behaviours.get_mut(i) {
                    *b = match rng.gen_range(0..4) {
                        0 => Behaviour::Equivocate,
                        1 => Behaviour::Withhold,
                        2 => Behaviour::Garbage,
                        _ => Behaviour::BadProposals,
                    };
                }
            }
        }
        let gst_ms = rng.gen_range(1_000..=8_000u64);
        let net = NetConfig {
            latency_ms: rng.gen_range(1..=80),
            jitter_ms: rng.gen_range(0..=40),
            loss_ppm: if rng.gen_bool(0.3) {
                0
            } else {
                rng.gen_range(0..=200_000)
            },
            bandwidth_bytes_per_s: rng.gen_range(125_000..=12_500_000),
        };
        let mut partitions = Vec::new();
        for _ in 0..rng.gen_range(0..=2) {
            let at_ms = rng.gen_range(0..gst_ms);
            let heal_ms = rng.gen_range(at_ms..=gst_ms);
            let groups = (0..n).map(|_| rng.gen_range(0..2u8)).collect();
            partitions.push(PartitionEvent {
                at_ms,
                heal_ms,
                groups,
            });
        }
        let honest: Vec<usize> = (0..n)
            .filter(|i| behaviours.get(*i) == Some(&Behaviour::Honest))
            .collect();
        let mut crashes = Vec::new();
        for _ in 0..rng.gen_range(0..=2) {
            if let Some(&node) = honest.choose(&mut rng) {
                let at_ms = rng.gen_range(0..gst_ms.saturating_sub(1));
                let restart_ms = rng.gen_range(at_ms + 1..gst_ms);
                crashes.push(CrashEvent {
                    node,
                    at_ms,
                    restart_ms,
                });
            }
        }
        SimConfig {
            stakes,
            behaviours,
            net,
            partitions,
            crashes,
            replay_wal: true,
            signing_guard: true,
            gst_ms,
            liveness_bound_ms: 30_000,
            liveness_heights: 2,
            timeouts: sim_timeouts(),
            gossip_ms: 250,
            block_interval_ms: 500,
            workload: None,
        }
    }

    fn check(&self) -> Result<(), SimFailure> {
        let n = self.stakes.len();
        if n == 0 || self.behaviours.len() != n {
            return Err(SimFailure::Config(
                "stakes and behaviours must be non-empty and equal",
            ));
        }
        let total: u64 = self.stakes.iter().sum();
        let byz: u64 = self
            .stakes
            .iter()
            .zip(&self.behaviours)
            .filter(|(_, b)| **b != Behaviour::Honest)
            .map(|(s, _)| *s)
            .sum();
        if 3 * byz >= total {
            return Err(SimFailure::Config(
                "byzantine power must be below one third",
            ));
        }
        if self
            .crashes
            .iter()
            .any(|c| c.node >= n || c.restart_ms <= c.at_ms || c.restart_ms >= self.gst_ms.max(1))
        {
            return Err(SimFailure::Config(
                "crashes must restart before stabilisation",
            ));
        }
        if self.partitions.iter().any(|p| p.groups.len() != n) {
            return Err(SimFailure::Config("partition groups must name every node"));
        }
        if self.gossip_ms == 0 || self.net.bandwidth_bytes_per_s == 0 {
            return Err(SimFailure::Config(
                "gossip period and bandwidth must be positive",
            ));
        }
        if let Some(w) = &self.workload {
            let biggest = u64::from(w.setup_bytes.max(w.attest_bytes)).saturating_add(24);
            if w.enrollments == 0 || w.max_block_txs == 0 {
                return Err(SimFailure::Config(
                    "a workload needs enrollments and room for transactions",
                ));
            }
            if w.setup_bytes < 5 || w.attest_bytes < 5 || w.max_block_bytes < biggest {
                return Err(SimFailure::Config(
                    "transactions must be at least 5 bytes and fit in a block",
                ));
            }
            if w.max_block_bytes > MAX_VALUE_BYTES as u64 {
                return Err(SimFailure::Config(
                    "blocks may not exceed the wire's value limit",
                ));
            }
        }
        Ok(())
    }
}

fn sim_timeouts() -> TimeoutConfig {
    TimeoutConfig {
        propose: Duration::from_millis(300),
        propose_delta: Duration::from_millis(100),
        prevote: Duration::from_millis(150),
        prevote_delta: Duration::from_millis(50),
        precommit: Duration::from_millis(150),
        precommit_delta: Duration::from_millis(50),
    }
}

/// A broken invariant (or a bad configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimFailure {
    /// The configuration is unusable.
    #[error("bad configuration: {0}")]
    Config(&'static str),
    /// Two honest nodes decided different values at one height.
    #[error("agreement violated at height {height}")]
    Agreement {
        /// The height.
        height: u64,
    },
    /// An honest node decided an invalid or never-proposed value.
    #[error("validity violated at height {height} by node {node}")]
    Validity {
        /// The height.
        height: u64,
        /// The node.
        node: usize,
    },
    /// A decision's certificate did not verify.
    #[error("invalid certificate at height {height} from node {node}: {reason}")]
    Certificate {
        /// The height.
        height: u64,
        /// The node.
        node: usize,
        /// Why.
        reason: String,
    },
    /// An honest node signed two different messages at one height/round/step.
    #[error("honest node {node} double-signed at height {height}")]
    DoubleSign {
        /// The node.
        node: usize,
        /// The height.
        height: u64,
    },
    /// Evidence accused an honest validator or did not verify.
    #[error("false evidence against node {offender:?}: {reason}")]
    FalseEvidence {
        /// The accused node, if it is one.
        offender: Option<usize>,
        /// Why it is false.
        reason: String,
    },
    /// Garbage bytes decoded into an authentic-looking message.
    #[error("garbage from node {from} was accepted as authentic")]
    Forgery {
        /// The garbage sender.
        from: usize,
    },
    /// An honest node's message was refused.
    #[error("message from honest node {from} refused by node {to}: {reason}")]
    HonestRejected {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// Why.
        reason: String,
    },
    /// Honest nodes did not decide the required heights in time after stabilisation.
    #[error("liveness: lowest honest height {lowest} < target {target} at {at_ms} ms [{nodes}]")]
    Liveness {
        /// Per node: behaviour, decided height, current round and step.
        nodes: String,
        /// Lowest decided height among honest nodes.
        lowest: u64,
        /// Required height.
        target: u64,
        /// Simulated time of the check.
        at_ms: u64,
    },
    /// A node's chain does not extend by one height per decision.
    #[error("node {node} decided height {height} out of order")]
    OutOfOrder {
        /// The node.
        node: usize,
        /// The height.
        height: u64,
    },
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Number of validators.
    pub validators: usize,
    /// Number of Byzantine validators.
    pub byzantine: usize,
    /// Lowest decided height among honest nodes at the end.
    pub honest_height: u64,
    /// Decisions made (all nodes).
    pub decisions: u64,
    /// Messages sent (including re-gossip, status, sync and garbage).
    pub messages: u64,
    /// First transmissions of signed proposals and votes (the protocol's own traffic).
    pub consensus_messages: u64,
    /// Decided-value sync messages sent to lagging peers.
    pub sync_messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Messages lost to loss or partitions.
    pub dropped: u64,
    /// Garbage messages sent.
    pub garbage_sent: u64,
    /// Garbage messages refused by decoding or by the core.
    pub garbage_rejected: u64,
    /// Verified evidence outputs.
    pub evidence: u64,
    /// Restarts from durable state.
    pub restarts: u64,
    /// Signatures the signing guard refused.
    pub guard_refusals: u64,
    /// Simulated milliseconds until honest nodes reached the liveness target.
    pub sim_time_ms: u64,
    /// Simulated milliseconds from stabilisation until the liveness target was reached.
    pub liveness_ms: u64,
    /// Digest of every decision (time, node, height, value): equal for equal seeds.
    pub trace: [u8; 32],
    /// What the transaction workload measured, when there was one.
    pub workload: Option<WorkloadReport>,
}

/// A seed whose run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed} failed: {failure}")]
pub struct SeedFailure {
    /// The seed to replay with [`run_seed`].
    pub seed: u64,
    /// What broke.
    pub failure: SimFailure,
}

/// Totals over a sweep of seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    /// Runs completed.
    pub runs: u64,
    /// Decisions over all runs.
    pub decisions: u64,
    /// Messages over all runs.
    pub messages: u64,
    /// Evidence produced over all runs.
    pub evidence: u64,
    /// Garbage refused over all runs.
    pub garbage_rejected: u64,
    /// Restarts over all runs.
    pub restarts: u64,
    /// Longest simulated run (ms).
    pub max_sim_time_ms: u64,
    /// Longest time from stabilisation to the liveness target (ms).
    pub max_liveness_ms: u64,
}

/// Runs the scenario of `seed` ([`SimConfig::from_seed`]).
///
/// # Errors
/// The broken invariant.
pub fn run_seed(seed: u64) -> Result<SimReport, SimFailure> {
    run(&SimConfig::from_seed(seed), seed)
}

/// Runs every seed in order and stops at the first failure, returning it.
///
/// # Errors
/// The first failing seed and what broke.
pub fn run_seeds(seeds: impl IntoIterator<Item = u64>) -> Result<SweepSummary, SeedFailure> {
    run_seeds_with(seeds, |_| {})
}

/// [`run_seeds`], calling `on_run` after each successful seed (for progress display).
///
/// # Errors
/// The first failing seed and what broke.
pub fn run_seeds_with(
    seeds: impl IntoIterator<Item = u64>,
    mut on_run: impl FnMut(&SimReport),
) -> Result<SweepSummary, SeedFailure> {
    let mut s = SweepSummary::default();
    for seed in seeds {
        let r = run_seed(seed).map_err(|failure| SeedFailure { seed, failure })?;
        s.runs += 1;
        s.decisions += r.decisions;
        s.messages += r.messages;
        s.evidence += r.evidence;
        s.garbage_rejected += r.garbage_rejected;
        s.restarts += r.restarts;
        s.max_sim_time_ms = s.max_sim_time_ms.max(r.sim_time_ms);
        s.max_liveness_ms = s.max_liveness_ms.max(r.liveness_ms);
        on_run(&r);
    }
    Ok(s)
}

/// Runs `config` with network randomness from `seed`.
///
/// # Errors
/// The broken invariant.
pub fn run(config: &SimConfig, seed: u64) -> Result<SimReport, SimFailure> {
    config.check()?;
    let mut sim = Sim::new(config, seed)?;
    sim.run()
}

const INSTANCE: InstanceId = InstanceId(0);

#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
        garbage: bool,
    },
    Timer {
        node: usize,
        incarnation: u64,
        timeout: Timeout<SimContext>,
    },
    Gossip {
        node: usize,
        incarnation: u64,
    },
    NextHeight {
        node: usize,
        incarnation: u64,
    },
    /// A client submits a transaction to its validator.
    Submit {
        node: usize,
        tx: TxId,
    },
    Crash(usize),
    Restart(usize),
    Partition(usize),
    Heal(usize),
    Gst,
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on (time, insertion order).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulated node's key.
#[derive(Clone, Copy)]
struct SimSigner {
    secret: SecretKey,
    address: ValidatorAddress,
}

impl Signer<SimContext> for SimSigner {
    fn address(&self) -> ValidatorAddress {
        self.address
    }

    fn sign(&self, sign_bytes: &[u8]) -> secp256k1::ecdsa::Signature {
        secp::sign(&self.secret, sign_bytes)
    }
}

/// Values are a deterministic function of (seed, proposer, height, round, variant), so a
/// restarted proposer replaying its log rebuilds the very same proposal, and the checker can
/// tell whether a decided value was really proposed.
fn sim_value(seed: u64, proposer: u32, height: u64, round: u32, variant: u8) -> SimValue {
    let mut seed_bytes = Vec::new();
    seed_bytes.extend_from_slice(&seed.to_be_bytes());
    seed_bytes.extend_from_slice(&u64::from(proposer).to_be_bytes());
    seed_bytes.extend_from_slice(&height.to_be_bytes());
    seed_bytes.extend_from_slice(&round.to_be_bytes());
    seed_bytes.push(variant);
    let payload = hash(Domain::Custom("sim-payload"), &seed_bytes);
    let len = usize::from(payload[0] % 32);
    SimValue::new(height, proposer, round, payload.get(..len).unwrap_or(&[]))
}

/// The simulated application: proposes [`sim_value`]s (or invalid ones) and validates with
/// [`SimValue::is_valid_for`]; with a workload, proposes blocks from its mempool and validates
/// them against its final transactions ([`Workload::check_block`]).
struct SimApp {
    seed: u64,
    index: u32,
    bad: bool,
    work: Option<Workload>,
    pool: Pool,
}

impl Application<SimContext> for SimApp {
    fn propose(&mut self, height: u64, round: Round) -> SimValue {
        if self.bad {
            SimValue::new(height.wrapping_add(1_000), self.index, round.0, b"invalid")
        } else if let Some(w) = &self.work {
            self.pool.build_block(w, height, self.index, round.0)
        } else {
            sim_value(self.seed, self.index, height, round.0, 0)
        }
    }

    fn validate(&mut self, height: u64, value: &SimValue) -> bool {
        match &self.work {
            Some(w) => w.check_block(height, value, &self.pool.committed).is_ok(),
            None => value.is_valid_for(height),
        }
    }
}

/// What survives a crash: decided chain, signing guard and write-ahead log.
struct SimDisk {
    store: MemoryStore<SimContext>,
    guard_enabled: bool,
}

impl ConsensusStore<SimContext> for SimDisk {
    fn authorize_signing(
        &mut self,
        height: u64,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<(), ConsensusError> {
        if self.guard_enabled {
            self.store
                .authorize_signing(height, round, step, sign_bytes)
        } else {
            Ok(())
        }
    }

    fn append_input(&mut self, input: &Input<SimContext>) {
        self.store.append_input(input);
    }

    fn commit(&mut self, decision: &Decision<SimContext>) {
        self.store.commit(decision);
    }
}

struct Node {
    signer: SimSigner,
    behaviour: Behaviour,
    alive: bool,
    incarnation: u64,
    driver: Driver<SimContext, SimSigner>,
    app: SimApp,
    disk: SimDisk,
    sync_sent: BTreeMap<usize, (u64, u64)>,
    recent: VecDeque<Vec<u8>>,
    /// (height, round) of the proposals this node holds.
    held: std::collections::BTreeSet<(u64, u32)>,
    /// What each peer last said in its status, and until when a proposal just sent to it may
    /// still be in flight.
    peers: Vec<PeerView>,
}

/// A node's knowledge of one peer.
#[derive(Debug, Clone, Copy, Default)]
struct PeerView {
    /// The peer's last [`Message::Status`]: height, round, holds a proposal, has decided.
    status: Option<(u64, u32, bool, bool)>,
    /// The proposal last sent to the peer (height, round) and when a re-send may follow.
    proposal_sent: Option<(u64, u32, u64)>,
}

impl Node {
    fn height(&self) -> u64 {
        self.driver.core().height()
    }

    fn decided(&self) -> u64 {
        self.disk.store.decisions.len() as u64
    }
}

#[derive(Default)]
struct Stats {
    decisions: u64,
    consensus_messages: u64,
    sync_messages: u64,
    messages: u64,
    bytes: u64,
    dropped: u64,
    garbage_sent: u64,
    garbage_rejected: u64,
    evidence: u64,
    restarts: u64,
    guard_refusals: u64,
    tx_gossip_bytes: u64,
    proposal_bytes: u64,
    sync_bytes: u64,
}

/// The checker's view of the workload: the transactions final in the agreed chain, and per
/// enrollment progress as seen by the client's validator.
#[derive(Default)]
struct Ledger {
    final_txs: std::collections::BTreeSet<TxId>,
    proposed: std::collections::BTreeSet<ValueId>,
    setups_home: u64,
    attests_home: u64,
    report: WorkloadReport,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    seed: u64,
    ctx: SimContext,
    params: Params,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    nodes: Vec<Node>,
    sets: Vec<ValidatorSet<SimContext>>,
    by_address: BTreeMap<ValidatorAddress, usize>,
    keys: Vec<PublicKey>,
    partition: Option<(usize, Vec<u8>)>,
    after_gst: bool,
    uplink_free: Vec<u64>,
    decided: BTreeMap<u64, ValueId>,
    signed: BTreeMap<(usize, u64, u32, SignStep), Vec<u8>>,
    failure: Option<SimFailure>,
    target: Option<u64>,
    done: bool,
    stats: Stats,
    trace: Sha256,
    ledger: Ledger,
}

fn micros(ms: u64) -> u64 {
    ms.saturating_mul(1000)
}

fn step_of(t: VoteType) -> SignStep {
    match t {
        VoteType::Prevote => SignStep::Prevote,
        VoteType::Precommit => SignStep::Precommit,
    }
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a SimConfig, seed: u64) -> Result<Self, SimFailure> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_c4a1_c4a1);
        let mut secrets = Vec::new();
        while secrets.len() < cfg.stakes.len() {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            if let Ok(sk) = SecretKey::from_slice(&b) {
                secrets.push(sk);
            }
        }
        let keys: Vec<PublicKey> = secrets
            .iter()
            .map(|s| PublicKey::from_secret_key(SECP256K1, s))
            .collect();
        let validators = keys
            .iter()
            .zip(&cfg.stakes)
            .map(|(k, s)| Validator {
                address: ValidatorAddress::from_public_key(k),
                public_key: *k,
                voting_power: *s,
            })
            .collect();
        let genesis = ValidatorSet::new(validators)
            .map_err(|_| SimFailure::Config("invalid validator set"))?;
        let mut params = Params::new(INSTANCE);
        params.timeouts = cfg.timeouts;
        let mut by_address = BTreeMap::new();
        let mut nodes = Vec::new();
        for (i, (secret, key)) in secrets.iter().zip(&keys).enumerate() {
            let address = ValidatorAddress::from_public_key(key);
            by_address.insert(address, i);
            let behaviour = cfg.behaviours.get(i).copied().unwrap_or(Behaviour::Honest);
            let signer = SimSigner {
                secret: *secret,
                address,
            };
            nodes.push(Node {
                signer,
                behaviour,
                alive: true,
                incarnation: 0,
                driver: Driver::new(SimContext, params.clone(), signer, 1, genesis.clone()),
                app: SimApp {
                    seed,
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    bad: behaviour == Behaviour::BadProposals,
                    work: cfg.workload.clone(),
                    pool: Pool::default(),
                },
                disk: SimDisk {
                    store: MemoryStore::default(),
                    guard_enabled: cfg.signing_guard,
                },
                sync_sent: BTreeMap::new(),
                recent: VecDeque::new(),
                held: Default::default(),
                peers: vec![PeerView::default(); cfg.stakes.len()],
            });
        }
        let n = nodes.len();
        Ok(Sim {
            cfg,
            seed,
            ctx: SimContext,
            params,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            sets: vec![genesis],
            by_address,
            keys,
            partition: None,
            after_gst: false,
            uplink_free: vec![0; n],
            decided: BTreeMap::new(),
            signed: BTreeMap::new(),
            failure: None,
            target: None,
            done: false,
            stats: Stats::default(),
            trace: Sha256::new(),
            ledger: Ledger::default(),
        })
    }

    /// The validator set of `height` (the genesis set, priorities advanced once per height).
    fn set(&mut self, height: u64) -> ValidatorSet<SimContext> {
        let idx = usize::try_from(height.saturating_sub(1)).unwrap_or(usize::MAX);
        while self.sets.len() <= idx && self.sets.len() < 1_000_000 {
            let mut next = self
                .sets
                .last()
                .cloned()
                .unwrap_or_else(|| self.sets[0].clone());
            next.advance();
            self.sets.push(next);
        }
        self.sets
            .get(idx)
            .or(self.sets.last())
            .cloned()
            .unwrap_or_else(|| self.sets[0].clone())
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn fail(&mut self, f: SimFailure) {
        if self.failure.is_none() {
            self.failure = Some(f);
        }
    }

    fn honest(&self, i: usize) -> bool {
        self.nodes
            .get(i)
            .is_some_and(|n| n.behaviour == Behaviour::Honest)
    }

    fn run(&mut self) -> Result<SimReport, SimFailure> {
        let n = self.nodes.len();
        for i in 0..n {
            let node = &mut self.nodes[i];
            let effects = node.driver.start(&mut node.app, &mut node.disk);
            self.apply(i, effects);
            let offset = self.rng.gen_range(0..micros(self.cfg.gossip_ms));
            self.schedule(
                offset,
                Event::Gossip {
                    node: i,
                    incarnation: 0,
                },
            );
        }
        for (k, p) in self.cfg.partitions.iter().enumerate() {
            self.schedule(micros(p.at_ms), Event::Partition(k));
            self.schedule(micros(p.heal_ms), Event::Heal(k));
        }
        for c in &self.cfg.crashes {
            self.schedule(micros(c.at_ms), Event::Crash(c.node));
            self.schedule(micros(c.restart_ms), Event::Restart(c.node));
        }
        self.schedule(micros(self.cfg.gst_ms), Event::Gst);
        if let Some(w) = &self.cfg.workload {
            // Every client submits its device setup at once (after reaching its validator).
            let at = micros(w.client_delay_ms);
            for enrollment in 0..w.enrollments {
                let tx = TxId {
                    enrollment,
                    kind: TxKind::DeviceSetup,
                };
                let node = self.home(enrollment);
                self.schedule(at, Event::Submit { node, tx });
            }
        }
        let deadline = micros(self.cfg.gst_ms.saturating_add(self.cfg.liveness_bound_ms));
        while let Some(s) = self.queue.pop() {
            if s.at > deadline {
                break;
            }
            self.now = s.at;
            self.handle(s.event);
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            if self.done {
                break;
            }
        }
        let lowest = self.lowest_honest_height();
        if !self.done {
            let nodes = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    format!(
                        "n{i} {:?} h{} r{} {:?}",
                        n.behaviour,
                        n.decided(),
                        n.driver.core().round().0,
                        n.driver.core().step()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SimFailure::Liveness {
                nodes,
                lowest,
                target: self.target.unwrap_or(0),
                at_ms: self.now / 1000,
            });
        }
        Ok(SimReport {
            seed: self.seed,
            validators: n,
            byzantine: (0..n).filter(|i| !self.honest(*i)).count(),
            honest_height: lowest,
            decisions: self.stats.decisions,
            messages: self.stats.messages,
            consensus_messages: self.stats.consensus_messages,
            sync_messages: self.stats.sync_messages,
            bytes: self.stats.bytes,
            dropped: self.stats.dropped,
            garbage_sent: self.stats.garbage_sent,
            garbage_rejected: self.stats.garbage_rejected,
            evidence: self.stats.evidence,
            restarts: self.stats.restarts,
            guard_refusals: self.stats.guard_refusals,
            sim_time_ms: self.now / 1000,
            liveness_ms: self.now.saturating_sub(micros(self.cfg.gst_ms)) / 1000,
            trace: self.trace.clone().finalize().into(),
            workload: self.cfg.workload.as_ref().map(|_| {
                let mut w = self.ledger.report.clone();
                w.everywhere_final_ms = self.now / 1000;
                w.tx_gossip_bytes = self.stats.tx_gossip_bytes;
                w.proposal_bytes = self.stats.proposal_bytes;
                w.sync_bytes = self.stats.sync_bytes;
                w
            }),
        })
    }

    /// The validator an enrollment's client talks to.
    fn home(&self, enrollment: u32) -> usize {
        usize::try_from(enrollment).unwrap_or(0) % self.nodes.len().max(1)
    }

    fn lowest_honest_height(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.behaviour == Behaviour::Honest)
            .map(Node::decided)
            .min()
            .unwrap_or(0)
    }

    fn check_done(&mut self) {
        if let Some(w) = &self.cfg.workload {
            let total = w.total_txs();
            self.done = self
                .nodes
                .iter()
                .filter(|n| n.behaviour == Behaviour::Honest)
                .all(|n| n.app.pool.committed.len() as u64 >= total);
            return;
        }
        if let Some(target) = self.target {
            if self.lowest_honest_height() >= target {
                self.done = true;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                to,
                bytes,
                garbage,
            } => self.deliver(from, to, &bytes, garbage),
            Event::Timer {
                node,
                incarnation,
                timeout,
            } => {
                if self.nodes[node].alive && self.nodes[node].incarnation == incarnation {
                    let _ = self.feed(node, Input::TimeoutExpired(timeout));
                }
            }
            Event::Gossip { node, incarnation } => {
                if self.nodes[node].alive && self.nodes[node].incarnation == incarnation {
                    self.gossip(node);
                    let next = self.now + micros(self.cfg.gossip_ms);
                    self.schedule(next, Event::Gossip { node, incarnation });
                }
            }
            Event::NextHeight { node, incarnation } => {
                if self.nodes[node].alive && self.nodes[node].incarnation == incarnation {
                    let h = self.nodes[node].decided() + 1;
                    if self.nodes[node].height() < h {
                        let set = self.set(h);
                        let n = &mut self.nodes[node];
                        let effects = n.driver.start_height(h, set, &mut n.app, &mut n.disk);
                        self.apply(node, effects);
                    }
                }
            }
            Event::Crash(i) => {
                let node = &mut self.nodes[i];
                node.alive = false;
                node.incarnation += 1;
            }
            Event::Restart(i) => self.restart(i),
            Event::Submit { node, tx } => self.submit(node, tx),
            Event::Partition(k) => {
                self.partition = self.cfg.partitions.get(k).map(|p| (k, p.groups.clone()));
            }
            Event::Heal(k) => {
                if self
                    .partition
                    .as_ref()
                    .is_some_and(|(active, _)| *active == k)
                {
                    self.partition = None;
                }
            }
            Event::Gst => {
                self.after_gst = true;
                self.partition = None;
                let top = self
                    .nodes
                    .iter()
                    .filter(|n| n.behaviour == Behaviour::Honest)
                    .map(Node::decided)
                    .max()
                    .unwrap_or(0);
                self.target = Some(top + self.cfg.liveness_heights);
                self.check_done();
            }
        }
    }

    /// A client's transaction reaches validator `i`: into its mempool, then to every peer.
    fn submit(&mut self, i: usize, tx: TxId) {
        let Some(w) = &self.cfg.workload else {
            return;
        };
        if !self.nodes[i].alive || !self.nodes[i].app.pool.admit(tx) {
            return;
        }
        let msg = Message::Tx(w.tx_bytes(tx));
        self.broadcast(i, &msg);
    }

    fn restart(&mut self, i: usize) {
        self.stats.restarts += 1;
        let h = self.nodes[i].decided() + 1;
        let set = self.set(h);
        let node = &mut self.nodes[i];
        node.alive = true;
        node.incarnation += 1;
        node.sync_sent.clear();
        node.driver = Driver::new(self.ctx, self.params.clone(), node.signer, h, set);
        let wal = core::mem::take(&mut node.disk.store.wal);
        let incarnation = node.incarnation;
        let effects = node.driver.start(&mut node.app, &mut node.disk);
        self.apply(i, effects);
        if self.cfg.replay_wal {
            for input in wal {
                let _ = self.feed(i, input);
            }
        }
        let next = self.now + micros(self.cfg.gossip_ms);
        self.schedule(
            next,
            Event::Gossip {
                node: i,
                incarnation,
            },
        );
    }

    /// Feeds an external input through the node's driver and applies the effects.
    fn feed(&mut self, i: usize, input: Input<SimContext>) -> Result<(), ConsensusError> {
        let node = &mut self.nodes[i];
        let effects = node.driver.handle(input, &mut node.app, &mut node.disk)?;
        self.apply(i, effects);
        Ok(())
    }

    fn apply(&mut self, i: usize, effects: Vec<Effect<SimContext>>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(msg) => {
                    let before = self.stats.messages;
                    self.send_signed(i, msg);
                    self.stats.consensus_messages += self.stats.messages - before;
                }
                Effect::ScheduleTimeout { timeout, after } => {
                    let at = self
                        .now
                        .saturating_add(u64::try_from(after.as_micros()).unwrap_or(u64::MAX));
                    let incarnation = self.nodes[i].incarnation;
                    self.schedule(
                        at,
                        Event::Timer {
                            node: i,
                            incarnation,
                            timeout,
                        },
                    );
                }
                Effect::Decided(d) => self.on_decide(i, d),
                Effect::Evidence(e) => self.on_evidence(e),
                Effect::SigningRefused { .. } => self.stats.guard_refusals += 1,
            }
        }
    }

    fn record_signature(
        &mut self,
        i: usize,
        height: u64,
        round: u32,
        step: SignStep,
        bytes: &[u8],
    ) {
        if !self.honest(i) {
            return;
        }
        match self.signed.get(&(i, height, round, step)) {
            Some(prev) if prev.as_slice() != bytes => {
                self.fail(SimFailure::DoubleSign { node: i, height })
            }
            Some(_) => {}
            None => {
                self.signed.insert((i, height, round, step), bytes.to_vec());
            }
        }
    }

    /// Sends a freshly signed message the way the node's behaviour dictates.
    fn send_signed(&mut self, i: usize, msg: ConsensusMessage<SimContext>) {
        let behaviour = self.nodes[i].behaviour;
        match msg {
            ConsensusMessage::Vote(signed) => {
                let vote = &signed.vote;
                tracing::trace!(
                    at_us = self.now,
                    node = i,
                    height = vote.height,
                    round = vote.round.0,
                    kind = ?vote.vote_type,
                    nil = vote.value.is_none(),
                    "sign vote"
                );
                let bytes = self.ctx.vote_sign_bytes(vote).unwrap_or_default();
                self.record_signature(
                    i,
                    vote.height,
                    vote.round.0,
                    step_of(vote.vote_type),
                    &bytes,
                );
                match behaviour {
                    Behaviour::Withhold => {}
                    Behaviour::Equivocate => {
                        let mut other = signed.vote.clone();
                        other.value = match other.value {
                            Some(_) => None,
                            None => {
                                let mut id = [0u8; 32];
                                self.rng.fill_bytes(&mut id);
                                Some(ValueId(id))
                            }
                        };
                        let other_bytes = self.ctx.vote_sign_bytes(&other).unwrap_or_default();
                        let twin = SignedVote {
                            signature: self.nodes[i].signer.sign(&other_bytes),
                            vote: other,
                        };
                        let a = encode(&Message::Vote(signed));
                        let b = encode(&Message::Vote(twin));
                        self.split_send(i, &a, &b);
                    }
                    _ => self.broadcast(i, &Message::Vote(signed)),
                }
            }
            ConsensusMessage::Proposal(signed) => {
                let p = &signed.proposal;
                tracing::trace!(
                    at_us = self.now,
                    node = i,
                    height = p.height,
                    round = p.round.0,
                    pol_round = ?p.pol_round,
                    "sign proposal"
                );
                let bytes = self.ctx.proposal_sign_bytes(p).unwrap_or_default();
                self.record_signature(i, p.height, p.round.0, SignStep::Propose, &bytes);
                self.nodes[i].held.insert((p.height, p.round.0));
                if self.cfg.workload.is_some() {
                    let id = self.ctx.value_id(&p.value);
                    self.ledger.proposed.insert(id);
                }
                if behaviour == Behaviour::Equivocate {
                    let mut other = signed.proposal.clone();
                    other.value = sim_value(
                        self.seed,
                        self.nodes[i].app.index,
                        other.height,
                        other.round.0,
                        1,
                    );
                    other.pol_round = None;
                    let other_bytes = self.ctx.proposal_sign_bytes(&other).unwrap_or_default();
                    let twin = SignedProposal {
                        signature: self.nodes[i].signer.sign(&other_bytes),
                        proposal: other,
                    };
                    let a = encode(&Message::Proposal(signed));
                    let b = encode(&Message::Proposal(twin));
                    self.split_send(i, &a, &b);
                } else {
                    self.broadcast(i, &Message::Proposal(signed));
                }
            }
        }
    }

    /// Equivocation: each peer gets one version, the other, or both (so evidence can form).
    fn split_send(&mut self, i: usize, a: &[u8], b: &[u8]) {
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            match self.rng.gen_range(0..3) {
                0 => {
                    self.send(i, j, a.to_vec(), false);
                }
                1 => {
                    self.send(i, j, b.to_vec(), false);
                }
                _ => {
                    self.send(i, j, b.to_vec(), false);
                    self.send(i, j, a.to_vec(), false);
                }
            }
        }
    }

    fn broadcast(&mut self, i: usize, msg: &Message) {
        let bytes = encode(msg);
        if self.nodes[i].behaviour == Behaviour::Garbage {
            let recent = &mut self.nodes[i].recent;
            recent.push_back(bytes.clone());
            if recent.len() > 8 {
                recent.pop_front();
            }
        }
        let proposal = match msg {
            Message::Proposal(p) => Some((p.proposal.height, p.proposal.round.0)),
            _ => None,
        };
        let slack = micros(
            self.cfg
                .net
                .latency_ms
                .saturating_add(self.cfg.net.jitter_ms)
                .saturating_add(self.cfg.gossip_ms),
        );
        for j in 0..self.nodes.len() {
            if j != i {
                let arrival = self.send(i, j, bytes.clone(), false);
                // Remember the proposal in flight so re-gossip does not repeat it meanwhile.
                if let (Some((h, r)), Some(at)) = (proposal, arrival) {
                    if let Some(v) = self.nodes[i].peers.get_mut(j) {
                        v.proposal_sent = Some((h, r, at.saturating_add(slack)));
                    }
                }
            }
        }
    }

    /// Queues `bytes` on `from`'s uplink to `to`; returns the arrival time unless it was lost.
    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>, garbage: bool) -> Option<u64> {
        self.stats.messages += 1;
        self.stats.bytes += bytes.len() as u64;
        if !garbage {
            let counter = match bytes.get(1) {
                Some(1) => Some(&mut self.stats.proposal_bytes),
                Some(4) => Some(&mut self.stats.sync_bytes),
                Some(5) => Some(&mut self.stats.tx_gossip_bytes),
                _ => None,
            };
            if let Some(c) = counter {
                *c += bytes.len() as u64;
            }
        }
        if !self.after_gst {
            let cut = self
                .partition
                .as_ref()
                .is_some_and(|(_, g)| g.get(from) != g.get(to));
            let lost = self.rng.gen_range(0..1_000_000u32) < self.cfg.net.loss_ppm;
            if cut || lost {
                self.stats.dropped += 1;
                return None;
            }
        }
        let tx =
            (bytes.len() as u64).saturating_mul(1_000_000) / self.cfg.net.bandwidth_bytes_per_s;
        let start = self.now.max(self.uplink_free[from]);
        self.uplink_free[from] = start + tx;
        let jitter = if self.cfg.net.jitter_ms > 0 {
            self.rng.gen_range(0..=micros(self.cfg.net.jitter_ms))
        } else {
            0
        };
        let at = start + tx + micros(self.cfg.net.latency_ms) + jitter;
        self.schedule(
            at,
            Event::Deliver {
                from,
                to,
                bytes,
                garbage,
            },
        );
        Some(at)
    }

    fn gossip(&mut self, i: usize) {
        let height = self.nodes[i].height();
        let round = self.nodes[i].driver.core().round().0;
        self.nodes[i].held.retain(|(h, _)| *h >= height);
        let status = encode(&Message::Status {
            height,
            round,
            proposal: self.nodes[i].held.contains(&(height, round)),
            decided: self.nodes[i].driver.core().step() == Step::Commit,
        });
        for j in 0..self.nodes.len() {
            if j != i {
                self.send(i, j, status.clone(), false);
            }
        }
        let behaviour = self.nodes[i].behaviour;
        for m in self.nodes[i].driver.gossip() {
            match m {
                ConsensusMessage::Proposal(p) if behaviour != Behaviour::Equivocate => {
                    if self.after_gst {
                        self.regossip_proposal(i, p);
                    } else {
                        self.broadcast(i, &Message::Proposal(p));
                    }
                }
                ConsensusMessage::Vote(v)
                    if behaviour != Behaviour::Withhold && behaviour != Behaviour::Equivocate =>
                {
                    self.broadcast(i, &Message::Vote(v));
                }
                _ => {}
            }
        }
        if behaviour == Behaviour::Garbage {
            for j in 0..self.nodes.len() {
                if j != i {
                    let g = self.garbage(i);
                    self.stats.garbage_sent += 1;
                    self.send(i, j, g, true);
                }
            }
            // Authentic but useless: signed votes for far rounds and the next heights, which
            // the bounds on rounds and on the next-height buffer must absorb.
            let round = match self.rng.gen_range(0..3) {
                0 => self.rng.gen_range(0..1_000),
                1 => self.rng.gen(),
                _ => round.saturating_add(1),
            };
            let vote = Vote {
                instance: INSTANCE,
                height: height.saturating_add(self.rng.gen_range(0..3)),
                round: Round(round),
                vote_type: if self.rng.gen() {
                    VoteType::Prevote
                } else {
                    VoteType::Precommit
                },
                value: None,
                validator: self.nodes[i].signer.address,
            };
            let signed = SignedVote {
                signature: self.nodes[i]
                    .signer
                    .sign(&self.ctx.vote_sign_bytes(&vote).unwrap_or_default()),
                vote,
            };
            self.broadcast(i, &Message::Vote(signed));
        }
    }

    /// After stabilisation nothing is lost, so a proposal (the one big message) is sent again
    /// only to peers whose status says they are in its round without it, and not before the
    /// last copy could have arrived and been reported on.
    fn regossip_proposal(&mut self, i: usize, p: SignedProposal<SimContext>) {
        let (h, r) = (p.proposal.height, p.proposal.round.0);
        let slack = micros(
            self.cfg
                .net
                .latency_ms
                .saturating_add(self.cfg.net.jitter_ms)
                .saturating_add(self.cfg.gossip_ms),
        );
        let mut bytes = None;
        for j in 0..self.nodes.len() {
            let view = self.nodes[i].peers.get(j).copied().unwrap_or_default();
            let lacks = view.status == Some((h, r, false, false));
            let in_flight = view
                .proposal_sent
                .is_some_and(|(sh, sr, until)| (sh, sr) == (h, r) && self.now < until);
            if j == i || !lacks || in_flight {
                continue;
            }
            let b = bytes
                .get_or_insert_with(|| encode(&Message::Proposal(p.clone())))
                .clone();
            if let Some(at) = self.send(i, j, b, false) {
                if let Some(v) = self.nodes[i].peers.get_mut(j) {
                    v.proposal_sent = Some((h, r, at.saturating_add(slack)));
                }
            }
        }
    }

    fn garbage(&mut self, i: usize) -> Vec<u8> {
        let recent: Vec<Vec<u8>> = self.nodes[i].recent.iter().cloned().collect();
        let base = recent.choose(&mut self.rng).cloned();
        match (self.rng.gen_range(0..4), base) {
            (1, Some(mut b)) if !b.is_empty() => {
                let pos = self.rng.gen_range(0..b.len());
                let bit = self.rng.gen_range(0..8);
                if let Some(x) = b.get_mut(pos) {
                    *x ^= 1 << bit;
                }
                b
            }
            (2, Some(mut b)) => {
                let cut = self.rng.gen_range(0..b.len().max(1));
                b.truncate(cut);
                b
            }
            (3, Some(mut b)) => {
                b.push(self.rng.gen());
                b
            }
            _ => {
                let len = self.rng.gen_range(0..200);
                let mut b = vec![0u8; len];
                self.rng.fill_bytes(&mut b);
                if let Some(first) = b.first_mut() {
                    *first = 1;
                }
                b
            }
        }
    }

    /// Whether a decoded message carries a valid signature (or certificate) — garbage must not.
    fn authentic(&mut self, msg: &Message) -> bool {
        match msg {
            Message::Status { .. } | Message::Tx(_) => false,
            Message::Vote(sv) => self
                .by_address
                .get(&sv.vote.validator)
                .and_then(|i| self.keys.get(*i))
                .is_some_and(|k| {
                    self.ctx
                        .vote_sign_bytes(&sv.vote)
                        .is_ok_and(|bytes| self.ctx.verify(k, &bytes, &sv.signature))
                }),
            Message::Proposal(sp) => self
                .by_address
                .get(&sp.proposal.proposer)
                .and_then(|i| self.keys.get(*i))
                .is_some_and(|k| {
                    self.ctx
                        .proposal_sign_bytes(&sp.proposal)
                        .is_ok_and(|bytes| self.ctx.verify(k, &bytes, &sp.signature))
                }),
            Message::Decided { value, certificate } => {
                let set = self.set(certificate.height.min(1_000_000));
                self.ctx.value_id(value) == certificate.value_id
                    && certificate.verify(&self.ctx, INSTANCE, &set).is_ok()
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8], garbage: bool) {
        if !self.nodes[to].alive {
            return;
        }
        let msg = match decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                if garbage {
                    self.stats.garbage_rejected += 1;
                } else {
                    self.fail(SimFailure::HonestRejected {
                        from,
                        to,
                        reason: e.to_string(),
                    });
                }
                return;
            }
        };
        if garbage && self.authentic(&msg) {
            self.fail(SimFailure::Forgery { from });
            return;
        }
        let (height, result) = match msg {
            Message::Status {
                height,
                round,
                proposal,
                decided,
            } => {
                if let Some(v) = self.nodes[to].peers.get_mut(from) {
                    v.status = Some((height, round, proposal, decided));
                }
                self.maybe_sync(to, from, height);
                self.maybe_catch_up(to, from, height, round);
                return;
            }
            Message::Tx(bytes) => {
                let parsed = self.cfg.workload.as_ref().map(|w| w.parse_tx(&bytes));
                match parsed {
                    Some(Some(tx)) => {
                        self.nodes[to].app.pool.admit(tx);
                    }
                    _ if garbage => self.stats.garbage_rejected += 1,
                    _ => self.fail(SimFailure::HonestRejected {
                        from,
                        to,
                        reason: "malformed transaction".into(),
                    }),
                }
                return;
            }
            Message::Proposal(sp) => {
                let key = (sp.proposal.height, sp.proposal.round.0);
                let result = self.feed(to, Input::Proposal(sp));
                if result.is_ok() && !garbage {
                    self.nodes[to].held.insert(key);
                }
                (key.0, result)
            }
            Message::Vote(sv) => (sv.vote.height, self.feed(to, Input::Vote(sv))),
            Message::Decided { value, certificate } => {
                let core = self.nodes[to].driver.core();
                if certificate.height != core.height() || core.step() == Step::Commit {
                    return;
                }
                (
                    certificate.height,
                    self.feed(to, Input::Commit { value, certificate }),
                )
            }
        };
        if let Err(e) = result {
            if garbage {
                self.stats.garbage_rejected += 1;
                return;
            }
            if e == ConsensusError::WrongHeight && height < self.nodes[to].height() {
                self.maybe_sync(to, from, height);
                return;
            }
            let benign = matches!(
                e,
                ConsensusError::WrongHeight
                    | ConsensusError::AlreadyDecided
                    | ConsensusError::RoundTooFar
            );
            if self.honest(from) && !benign {
                self.fail(SimFailure::HonestRejected {
                    from,
                    to,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Sends our own messages of `round` to a peer at our height but behind us in rounds (its
    /// votes of that round may have been lost, and we no longer re-gossip them).
    fn maybe_catch_up(&mut self, me: usize, peer: usize, height: u64, round: u32) {
        let node = &self.nodes[me];
        let core = node.driver.core();
        if core.height() != height || core.round().0 <= round || core.step() == Step::Commit {
            return;
        }
        let behaviour = node.behaviour;
        for m in node.driver.catch_up(Round(round)) {
            let msg = match m {
                ConsensusMessage::Proposal(p) if behaviour != Behaviour::Equivocate => {
                    Message::Proposal(p)
                }
                ConsensusMessage::Vote(v)
                    if behaviour != Behaviour::Withhold && behaviour != Behaviour::Equivocate =>
                {
                    Message::Vote(v)
                }
                _ => continue,
            };
            self.send(me, peer, encode(&msg), false);
        }
    }

    /// Sends our decision at `height` to a peer still working on it (rate-limited).
    fn maybe_sync(&mut self, me: usize, peer: usize, height: u64) {
        let Some(idx) = usize::try_from(height).ok().and_then(|h| h.checked_sub(1)) else {
            return;
        };
        let Some(d) = self.nodes[me].disk.store.decisions.get(idx) else {
            return;
        };
        // A peer that has decided does not need the block again; nor does one holding the
        // decided round's proposal while we still re-gossip our precommit of that round.
        let round = d.certificate.round.0;
        let core = self.nodes[me].driver.core();
        let regossiping = core.height() == height && core.round().0 == round;
        let status = self.nodes[me].peers.get(peer).and_then(|v| v.status);
        if let Some((h, r, proposal, decided)) = status {
            if h == height && (decided || (proposal && r == round && regossiping)) {
                return;
            }
        }
        let d = d.clone();
        if let Some((h, until)) = self.nodes[me].sync_sent.get(&peer) {
            if *h == height && self.now < *until {
                return;
            }
        }
        self.stats.sync_messages += 1;
        let bytes = encode(&Message::Decided {
            value: d.value,
            certificate: d.certificate,
        });
        // Not again before this copy could have arrived and been answered.
        let period = micros(self.cfg.gossip_ms);
        let slack = micros(
            self.cfg
                .net
                .latency_ms
                .saturating_add(self.cfg.net.jitter_ms),
        );
        let until = self
            .send(me, peer, bytes, false)
            .map_or(self.now, |at| at.saturating_add(slack))
            .max(self.now)
            .saturating_add(period);
        self.nodes[me].sync_sent.insert(peer, (height, until));
    }

    fn on_decide(&mut self, i: usize, d: Decision<SimContext>) {
        let height = d.certificate.height;
        let set = self.set(height);
        if let Err(e) = d.certificate.verify(&self.ctx, INSTANCE, &set) {
            self.fail(SimFailure::Certificate {
                height,
                node: i,
                reason: e.to_string(),
            });
            return;
        }
        let id = self.ctx.value_id(&d.value);
        if id != d.certificate.value_id {
            self.fail(SimFailure::Certificate {
                height,
                node: i,
                reason: "value does not match certificate".into(),
            });
            return;
        }
        // The driver has already committed the decision to the node's store.
        if self.nodes[i].decided() != height {
            self.fail(SimFailure::OutOfOrder { node: i, height });
            return;
        }
        if self.honest(i) {
            let first = match self.decided.get(&height) {
                Some(prev) if *prev != id => {
                    self.fail(SimFailure::Agreement { height });
                    return;
                }
                Some(_) => false,
                None => {
                    self.decided.insert(height, id);
                    true
                }
            };
            if self.cfg.workload.is_some() {
                self.decide_workload(i, &d, id, first);
                if self.failure.is_some() {
                    return;
                }
            }
        }
        if self.honest(i) && self.cfg.workload.is_none() {
            let proposed = match (d.value.proposer(), d.value.round()) {
                (Some(p), Some(r)) => {
                    (0..2).any(|v| sim_value(self.seed, p, height, r, v) == d.value)
                }
                _ => false,
            };
            if !d.value.is_valid_for(height) || !proposed {
                self.fail(SimFailure::Validity { height, node: i });
                return;
            }
        }
        self.trace.update(self.now.to_be_bytes());
        self.trace.update((i as u64).to_be_bytes());
        self.trace.update(height.to_be_bytes());
        self.trace.update(id.0);
        self.stats.decisions += 1;
        let incarnation = self.nodes[i].incarnation;
        let at = self.now + micros(self.cfg.block_interval_ms);
        self.schedule(
            at,
            Event::NextHeight {
                node: i,
                incarnation,
            },
        );
        self.check_done();
    }

    /// The workload's side of a decision by honest node `i`: the first decision of a height is
    /// checked against the transactions final before it (validity; none lost or repeated),
    /// then the node's mempool drops the block's transactions and clients of this node learn
    /// that theirs are final (and submit their attestation).
    fn decide_workload(&mut self, i: usize, d: &Decision<SimContext>, id: ValueId, first: bool) {
        let (height, round, value) = (d.certificate.height, d.certificate.round.0, &d.value);
        let Some(w) = &self.cfg.workload else {
            return;
        };
        let checked = if first {
            w.check_block(height, value, &self.ledger.final_txs)
        } else {
            w.parse_block(value)
        };
        let txs = match checked {
            Ok(txs) if self.ledger.proposed.contains(&id) => txs,
            _ => {
                self.fail(SimFailure::Validity { height, node: i });
                return;
            }
        };
        let client_delay = micros(w.client_delay_ms);
        if first {
            let r = &mut self.ledger.report;
            let size = value.0.len() as u64;
            r.blocks += 1;
            r.extra_rounds += u64::from(round);
            r.max_round = r.max_round.max(round);
            r.block_bytes += size;
            r.max_block_bytes = r.max_block_bytes.max(size);
            if !txs.is_empty() {
                r.tx_blocks += 1;
            }
            r.txs_final += txs.len() as u64;
            self.ledger.final_txs.extend(txs.iter().copied());
        }
        self.nodes[i].app.pool.commit(&txs);
        let enrollments = u64::from(w.enrollments);
        for tx in txs {
            if self.home(tx.enrollment) != i {
                continue;
            }
            // The client hears of finality one client delay later.
            let heard = (self.now + client_delay) / 1000;
            match tx.kind {
                TxKind::DeviceSetup => {
                    self.ledger.setups_home += 1;
                    if self.ledger.setups_home == enrollments {
                        self.ledger.report.setups_final_ms = heard;
                    }
                    let attestation = TxId {
                        enrollment: tx.enrollment,
                        kind: TxKind::PutAttestation,
                    };
                    let at = self.now + 2 * client_delay;
                    self.schedule(
                        at,
                        Event::Submit {
                            node: i,
                            tx: attestation,
                        },
                    );
                }
                TxKind::PutAttestation => {
                    self.ledger.attests_home += 1;
                    if self.ledger.attests_home == enrollments {
                        self.ledger.report.all_final_ms = heard;
                    }
                }
            }
        }
    }

    fn on_evidence(&mut self, e: Evidence<SimContext>) {
        let offender = self.by_address.get(e.offender()).copied();
        let set = self.set(e.first.vote.height);
        if let Err(err) = e.verify(&self.ctx, &set) {
            self.fail(SimFailure::FalseEvidence {
                offender,
                reason: err.to_string(),
            });
            return;
        }
        match offender {
            Some(o) if !self.honest(o) => self.stats.evidence += 1,
            _ => self.fail(SimFailure::FalseEvidence {
                offender,
                reason: "accuses an honest validator".into(),
            }),
        }
    }
}
