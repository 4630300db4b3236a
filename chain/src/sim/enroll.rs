//! The enrollment workload: car enrollments as transactions that the simulated validators gossip,
//! pack into blocks and finalize.
//!
//! An enrollment is a device-setup transaction followed by the car's first report, a put
//! attestation; the client submits the attestation only once its setup is final. Transactions
//! carry their real encoded size ([`tx_sizes`]): each one is materialised as that many bytes,
//! gossiped to every validator (costing uplink bandwidth), and blocks carry the full bytes, so a
//! proposal costs its size on every link it crosses while votes stay small.
//!
//! Blocks are [`SimValue`]s whose payload is `u32 count`, then per transaction `u32 length` and
//! the bytes. A transaction is `kind` (1 setup, 2 attestation), the enrollment number as `u32`,
//! and zero filler up to its size. A block is valid at a height when it is well formed, within
//! the byte and count limits, has no repeated transaction, repeats none already final, and every
//! attestation's setup is final in an earlier block.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};

use primitives::codec;
use primitives::record::{KeyPart, RecordKey};
use secp256k1::{PublicKey, SecretKey, SECP256K1};
use tokenomics::Amount;

use crate::ledger::registry::RegistryCall;
use crate::tx::{AccountAddress, ModuleId, Transaction};

use super::context::SimValue;

/// Length of a DER `SubjectPublicKeyInfo` of a 3072-bit RSA key with exponent 65537 (the
/// envelope reader key a device registers): a fixed 422 bytes.
pub const RSA3072_SPKI_DER_LEN: usize = 422;

/// The two transactions of an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxKind {
    /// Binds the car (VID) to its owner, RSA key, device key and agent.
    DeviceSetup,
    /// The car's first report: a put attestation.
    PutAttestation,
}

impl TxKind {
    fn tag(self) -> u8 {
        match self {
            TxKind::DeviceSetup => 1,
            TxKind::PutAttestation => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(TxKind::DeviceSetup),
            2 => Some(TxKind::PutAttestation),
            _ => None,
        }
    }
}

/// A transaction of the workload: which enrollment, which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId {
    /// The enrollment number.
    pub enrollment: u32,
    /// Setup or attestation.
    pub kind: TxKind,
}

fn signed_len(module: ModuleId, call: &RegistryCall) -> usize {
    let Ok(secret) = SecretKey::from_slice(&[7; 32]) else {
        return 0;
    };
    let tx = Transaction {
        chain_id: "carchain-1".into(),
        sender: PublicKey::from_secret_key(SECP256K1, &secret),
        nonce: 1,
        fee: Amount::from_base_units(1_000).unwrap_or(Amount::ZERO),
        module,
        call: codec::to_vec(call).unwrap_or_default(),
    };
    tx.sign(&secret)
        .and_then(|signed| signed.encode())
        .map_or(0, |bytes| bytes.len())
}

/// Encoded sizes in bytes of a device-setup and a put-attestation transaction.
///
/// Real encodings: a [`SignedTx`](crate::tx::SignedTx) (as it travels and sits in blocks) of
/// a [`RegistryCall::Setup`] with a 17-character VID, a DER RSA-3072 key
/// ([`RSA3072_SPKI_DER_LEN`] bytes), a compressed device key and an agent account, and of a
/// [`RegistryCall::Attest`] with a [`RecordKey`] encoding of `{"vid": <17 chars>, "ts": <ms>}`,
/// a 32-byte dHash and placement commitment and the format `"obd-report/v1"`.
pub fn tx_sizes() -> (usize, usize) {
    let key = |b: u8| {
        SecretKey::from_slice(&[b; 32])
            .map(|s| PublicKey::from_secret_key(SECP256K1, &s))
            .ok()
    };
    let (Some(device), Some(agent)) = (key(2), key(3)) else {
        return (0, 0);
    };
    let vid = "WVWZZZ1JZXW000001".to_owned();
    let setup = RegistryCall::Setup {
        vid: vid.clone(),
        rsa_spki: vec![0x30; RSA3072_SPKI_DER_LEN],
        device_key: device,
        agent: AccountAddress::from_public_key(&agent),
    };
    let record_key = RecordKey::new(vec![
        ("vid".into(), KeyPart::Str(vid.clone())),
        ("ts".into(), KeyPart::Int(1_700_000_000_000)),
    ])
    .map(|k| k.encode())
    .unwrap_or_default();
    let put = RegistryCall::Attest {
        vid,
        address: AccountAddress([4; 20]),
        key: record_key,
        dhash: [5; 32],
        size: 4096,
        metres: 0,
        format: "obd-report/v1".into(),
        placement: [6; 32],
    };
    (
        signed_len(ModuleId::REGISTRY, &setup),
        signed_len(ModuleId::REGISTRY, &put),
    )
}

/// Parameters of the enrollment workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Concurrent enrollments, all submitted at time zero.
    pub enrollments: u32,
    /// Encoded size of a device-setup transaction.
    pub setup_bytes: u32,
    /// Encoded size of a put-attestation transaction.
    pub attest_bytes: u32,
    /// Largest block (the encoded value) in bytes.
    pub max_block_bytes: u64,
    /// Most transactions per block.
    pub max_block_txs: u32,
    /// One-way delay between a client and its validator (finality notice, then submission).
    pub client_delay_ms: u64,
}

impl Workload {
    /// A workload of `enrollments` with sizes from [`tx_sizes`], 4 MiB / 20,000-transaction
    /// blocks and clients 100 ms from their validator.
    pub fn new(enrollments: u32) -> Self {
        let (s, a) = tx_sizes();
        Workload {
            enrollments,
            setup_bytes: u32::try_from(s).unwrap_or(u32::MAX),
            attest_bytes: u32::try_from(a).unwrap_or(u32::MAX),
            max_block_bytes: 4 << 20,
            max_block_txs: 20_000,
            client_delay_ms: 100,
        }
    }

    /// Total transactions the workload finalizes.
    pub fn total_txs(&self) -> u64 {
        u64::from(self.enrollments).saturating_mul(2)
    }

    fn size_of(&self, kind: TxKind) -> u32 {
        match kind {
            TxKind::DeviceSetup => self.setup_bytes,
            TxKind::PutAttestation => self.attest_bytes,
        }
    }

    /// The bytes of a transaction.
    pub fn tx_bytes(&self, id: TxId) -> Vec<u8> {
        let size = usize::try_from(self.size_of(id.kind)).unwrap_or(0).max(5);
        let mut b = Vec::with_capacity(size);
        b.push(id.kind.tag());
        b.extend_from_slice(&id.enrollment.to_be_bytes());
        b.resize(size, 0);
        b
    }

    /// Parses a transaction, refusing anything that is not exactly one of ours.
    pub fn parse_tx(&self, bytes: &[u8]) -> Option<TxId> {
        let kind = TxKind::from_tag(*bytes.first()?)?;
        let enrollment = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?);
        let size = usize::try_from(self.size_of(kind)).ok()?;
        let ok = enrollment < self.enrollments
            && bytes.len() == size
            && bytes.get(5..).is_some_and(|f| f.iter().all(|x| *x == 0));
        ok.then_some(TxId { enrollment, kind })
    }

    /// The transactions of a block value, or why it is malformed.
    pub fn parse_block(&self, value: &SimValue) -> Result<Vec<TxId>, &'static str> {
        if u64::try_from(value.0.len()).unwrap_or(u64::MAX) > self.max_block_bytes {
            return Err("block over the byte limit");
        }
        let mut rest = value.0.get(20..).ok_or("truncated block")?;
        let count = take_u32(&mut rest)?;
        if count > self.max_block_txs {
            return Err("block over the transaction limit");
        }
        let mut txs = Vec::new();
        for _ in 0..count {
            let len = usize::try_from(take_u32(&mut rest)?).map_err(|_| "bad length")?;
            let (tx, tail) = rest.split_at_checked(len).ok_or("truncated transaction")?;
            rest = tail;
            txs.push(self.parse_tx(tx).ok_or("malformed transaction")?);
        }
        if !rest.is_empty() {
            return Err("trailing bytes in block");
        }
        Ok(txs)
    }

    /// Checks a block against the transactions final before it; returns its transactions.
    ///
    /// # Errors
    /// Malformed, over a limit, a repeated or already-final transaction, or an attestation
    /// whose setup is not final yet.
    pub fn check_block(
        &self,
        height: u64,
        value: &SimValue,
        committed: &BTreeSet<TxId>,
    ) -> Result<Vec<TxId>, &'static str> {
        if !value.is_valid_for(height) {
            return Err("not a block for this height");
        }
        let txs = self.parse_block(value)?;
        let mut seen = BTreeSet::new();
        for tx in &txs {
            if committed.contains(tx) || !seen.insert(*tx) {
                return Err("transaction already final or repeated");
            }
            if tx.kind == TxKind::PutAttestation
                && !committed.contains(&TxId {
                    enrollment: tx.enrollment,
                    kind: TxKind::DeviceSetup,
                })
            {
                return Err("attestation before its device setup is final");
            }
        }
        Ok(txs)
    }
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, &'static str> {
    let (head, tail) = rest.split_at_checked(4).ok_or("truncated block")?;
    *rest = tail;
    Ok(u32::from_be_bytes(
        head.try_into().map_err(|_| "truncated block")?,
    ))
}

/// One validator's view of the workload: its mempool (arrival order) and the final set.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    order: BTreeMap<u64, TxId>,
    pending: BTreeMap<TxId, u64>,
    next: u64,
    /// Transactions final in this node's chain.
    pub committed: BTreeSet<TxId>,
}

impl Pool {
    /// Admits a transaction unless it is already pending or final; true if it was new.
    pub fn admit(&mut self, tx: TxId) -> bool {
        if self.committed.contains(&tx) || self.pending.contains_key(&tx) {
            return false;
        }
        self.next = self.next.saturating_add(1);
        self.order.insert(self.next, tx);
        self.pending.insert(tx, self.next);
        true
    }

    /// Pending transactions.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Marks a block's transactions final and drops them from the mempool.
    pub fn commit(&mut self, txs: &[TxId]) {
        for tx in txs {
            if let Some(seq) = self.pending.remove(tx) {
                self.order.remove(&seq);
            }
            self.committed.insert(*tx);
        }
    }

    /// A block for `height` from the oldest pending transactions that fit the limits.
    pub fn build_block(&self, w: &Workload, height: u64, proposer: u32, round: u32) -> SimValue {
        let mut payload = vec![0u8; 4];
        let mut count: u32 = 0;
        let limit = usize::try_from(w.max_block_bytes).unwrap_or(usize::MAX);
        for tx in self.order.values() {
            if count >= w.max_block_txs {
                break;
            }
            if tx.kind == TxKind::PutAttestation
                && !self.committed.contains(&TxId {
                    enrollment: tx.enrollment,
                    kind: TxKind::DeviceSetup,
                })
            {
                continue;
            }
            let bytes = w.tx_bytes(*tx);
            // 20 bytes of value header, 4 of length prefix.
            let after = payload.len().saturating_add(bytes.len()).saturating_add(24);
            if after > limit {
                break;
            }
            payload.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
            payload.extend_from_slice(&bytes);
            count = count.saturating_add(1);
        }
        if let Some(head) = payload.get_mut(..4) {
            head.copy_from_slice(&count.to_be_bytes());
        }
        SimValue::new(height, proposer, round, &payload)
    }
}

/// What the enrollment workload measured (part of [`super::SimReport`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadReport {
    /// Simulated ms until every enrollment's attestation was final at its client's validator.
    pub all_final_ms: u64,
    /// Simulated ms until every device setup was final at its client's validator.
    pub setups_final_ms: u64,
    /// Simulated ms until every honest validator had every transaction final.
    pub everywhere_final_ms: u64,
    /// Transactions final (checked: each exactly once).
    pub txs_final: u64,
    /// Heights decided until the end.
    pub blocks: u64,
    /// Heights whose block carried transactions.
    pub tx_blocks: u64,
    /// Rounds beyond the first that heights needed (sum of the decided rounds): failed
    /// rounds, e.g. proposals slower to arrive than the propose timeout.
    pub extra_rounds: u64,
    /// Highest round a height was decided in.
    pub max_round: u32,
    /// Sum of the encoded sizes of the decided blocks.
    pub block_bytes: u64,
    /// Largest decided block.
    pub max_block_bytes: u64,
    /// Bytes sent gossiping transactions.
    pub tx_gossip_bytes: u64,
    /// Bytes sent as proposals (first transmissions and re-gossip).
    pub proposal_bytes: u64,
    /// Bytes sent as decided-block sync.
    pub sync_bytes: u64,
}

/// The enrollment experiment's network: `nodes` equal, honest validators, `latency_ms` one way
/// with no jitter or loss, `bandwidth_bytes_per_s` of uplink each, `block_interval_ms` between a
/// decision and the next height, Tendermint's default round timeouts (propose 3 s, prevote and
/// precommit 1 s, each +0.5 s per round), and at most `bound_ms` of simulated time.
pub fn scenario(
    nodes: usize,
    latency_ms: u64,
    bandwidth_bytes_per_s: u64,
    block_interval_ms: u64,
    workload: Workload,
    bound_ms: u64,
) -> super::SimConfig {
    use core::time::Duration;
    let mut c = super::SimConfig::fault_free(nodes);
    c.net = super::NetConfig {
        latency_ms,
        jitter_ms: 0,
        loss_ppm: 0,
        bandwidth_bytes_per_s,
    };
    c.gst_ms = 0;
    c.liveness_bound_ms = bound_ms;
    c.block_interval_ms = block_interval_ms;
    c.timeouts = crate::consensus::TimeoutConfig {
        propose: Duration::from_millis(3_000),
        propose_delta: Duration::from_millis(500),
        prevote: Duration::from_millis(1_000),
        prevote_delta: Duration::from_millis(500),
        precommit: Duration::from_millis(1_000),
        precommit_delta: Duration::from_millis(500),
    };
    c.workload = Some(workload);
    c
}
