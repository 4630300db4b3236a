//! The mempool: admitted transactions waiting for a block.
//!
//! Sans-IO: the host feeds it transactions (from the local gateway or from peers) together
//! with the ledger and the committed state; it answers with a [`TxInfo`] or a [`Rejection`]
//! whose [`RejectCode`] names the reason (signature, nonce, balance, size, duplicate, full, …).
//!
//! - Admission is [`Ledger::check_tx`] against the committed state (nonces up to the genesis
//!   `nonce_window` ahead are kept, so a sender can queue several), plus the pool's own checks:
//!   the same bytes twice, the same (sender, nonce) twice (a replacement must pay a strictly
//!   higher fee), two transactions claiming the same entry ([`TxInfo::conflict`]: an
//!   attestation's (address, key), a VID's setup), the per-sender limit, and the count and byte
//!   limits.
//! - When full, a new transaction evicts the lowest fee-per-byte transaction that is the
//!   *last* queued of its sender (so eviction never leaves a nonce gap) if it pays strictly
//!   more per byte; otherwise it is refused with [`RejectCode::MempoolFull`].
//! - [`Mempool::reap`] picks transactions for a block, bounded by bytes and count: each
//!   sender's run of consecutive nonces from its account nonce, senders interleaved by fee per
//!   byte (then arrival).
//! - [`Mempool::update`] removes what a block committed and re-checks the rest against the new
//!   state, dropping what no longer passes (used nonces, spent balances).
//! - Gossip: [`Mempool::take_gossip`] hands out each newly admitted transaction once;
//!   [`Mempool::missing`] says which announced identifiers are unknown here.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use primitives::hash::Hash32;

use crate::block::tx_hash;
use crate::ledger::{Ledger, RejectCode, Rejection, TxInfo};
use crate::state::StateView;
use crate::tx::AccountAddress;

/// Limits of a mempool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes held (sum of encoded transactions).
    pub max_bytes: usize,
    /// Most transactions held per sender.
    pub max_per_sender: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 50_000,
            max_bytes: 64 << 20,
            max_per_sender: 64,
        }
    }
}

/// Where a transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This node's own gateway (a device or wallet).
    Local,
    /// Another node's gossip.
    Peer,
}

#[derive(Debug, Clone)]
struct Entry {
    raw: Vec<u8>,
    info: TxInfo,
    seq: u64,
    source: Source,
}

/// `a` pays strictly more per byte than `b`.
fn pays_more(a: &TxInfo, b: &TxInfo) -> bool {
    fee_rate_cmp(a, b) == Ordering::Greater
}

fn fee_rate_cmp(a: &TxInfo, b: &TxInfo) -> Ordering {
    let size = |i: &TxInfo| u128::try_from(i.size).unwrap_or(u128::MAX);
    let fa = u128::from(a.fee.to_base_units()).saturating_mul(size(b));
    let fb = u128::from(b.fee.to_base_units()).saturating_mul(size(a));
    fa.cmp(&fb)
}

/// A sender's next transaction, as a candidate of [`Mempool::reap`].
struct Head<'a> {
    entry: &'a Entry,
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head<'_> {}
impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        fee_rate_cmp(&self.entry.info, &other.entry.info)
            .then_with(|| other.entry.seq.cmp(&self.entry.seq))
    }
}

/// Transactions waiting for a block.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    by_hash: HashMap<Hash32, Entry>,
    by_sender: BTreeMap<AccountAddress, BTreeMap<u64, Hash32>>,
    next_nonce: BTreeMap<AccountAddress, u64>,
    conflicts: HashMap<Vec<u8>, Hash32>,
    bytes: usize,
    seq: u64,
    gossip: Vec<Hash32>,
}

impl Mempool {
    /// An empty pool with `config`'s limits.
    pub fn new(config: MempoolConfig) -> Self {
        Mempool {
            config,
            ..Mempool::default()
        }
    }

    /// Number of transactions held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Sum of the held transactions' sizes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The nonce after `sender`'s highest pending transaction, if it has any pending: what a
    /// client signing several transactions in a row uses next.
    pub fn pending_next_nonce(&self, sender: &AccountAddress) -> Option<u64> {
        self.by_sender
            .get(sender)?
            .keys()
            .next_back()?
            .checked_add(1)
    }

    /// Whether the transaction with identifier `hash` is held.
    pub fn contains(&self, hash: &Hash32) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The encoded transaction with identifier `hash`.
    pub fn get(&self, hash: &Hash32) -> Option<&[u8]> {
        self.by_hash.get(hash).map(|e| e.raw.as_slice())
    }

    /// Where the transaction with identifier `hash` came from (a host need not echo a peer's
    /// transaction back to it).
    pub fn source_of(&self, hash: &Hash32) -> Option<Source> {
        self.by_hash.get(hash).map(|e| e.source)
    }

    /// Of the identifiers a peer announced, those not held here (to request them).
    pub fn missing(&self, announced: &[Hash32]) -> Vec<Hash32> {
        announced
            .iter()
            .filter(|h| !self.by_hash.contains_key(*h))
            .copied()
            .collect()
    }

    /// Transactions admitted since the last call (each handed out once), for gossip.
    pub fn take_gossip(&mut self) -> Vec<Vec<u8>> {
        let hashes = std::mem::take(&mut self.gossip);
        hashes
            .iter()
            .filter_map(|h| self.by_hash.get(h).map(|e| e.raw.clone()))
            .collect()
    }

    fn remove(&mut self, hash: &Hash32) -> Option<Entry> {
        let e = self.by_hash.remove(hash)?;
        self.bytes = self.bytes.saturating_sub(e.raw.len());
        if let Some(c) = &e.info.conflict {
            if self.conflicts.get(c) == Some(hash) {
                self.conflicts.remove(c);
            }
        }
        if let Some(q) = self.by_sender.get_mut(&e.info.sender) {
            q.remove(&e.info.nonce);
            if q.is_empty() {
                self.by_sender.remove(&e.info.sender);
                self.next_nonce.remove(&e.info.sender);
            }
        }
        Some(e)
    }

    /// The cheapest (per byte) transaction that is the last of its sender's queue once
    /// `planned` are gone, other than `except`'s.
    fn eviction_candidate(
        &self,
        except: &AccountAddress,
        planned: &HashSet<Hash32>,
    ) -> Option<&Entry> {
        self.by_sender
            .iter()
            .filter(|(s, _)| *s != except)
            .filter_map(|(_, q)| q.values().rev().find(|h| !planned.contains(*h)))
            .filter_map(|h| self.by_hash.get(h))
            .min_by(|a, b| fee_rate_cmp(&a.info, &b.info).then_with(|| b.seq.cmp(&a.seq)))
    }

    /// Admits `tx` (checked with `ledger` against the committed state `view`).
    ///
    /// # Errors
    /// A [`Rejection`]: any of [`Ledger::check_tx`]'s, or [`RejectCode::Duplicate`] (same
    /// transaction, or same sender and nonce without a higher fee) or
    /// [`RejectCode::MempoolFull`] (count, bytes or per-sender limit, and nothing cheaper to
    /// evict).
    pub fn insert(
        &mut self,
        ledger: &Ledger,
        view: &dyn StateView,
        tx: Vec<u8>,
        source: Source,
    ) -> Result<TxInfo, Rejection> {
        let hash = tx_hash(&tx);
        if self.by_hash.contains_key(&hash) {
            return Err(Rejection::new(
                RejectCode::Duplicate,
                "this transaction is already in the mempool",
            ));
        }
        let info = ledger.check_tx(view, &tx)?;
        if tx.len() > self.config.max_bytes {
            return Err(Rejection::new(
                RejectCode::TooLarge,
                format!(
                    "transaction of {} bytes exceeds the mempool's {} bytes",
                    tx.len(),
                    self.config.max_bytes
                ),
            ));
        }
        let replaced = match self
            .by_sender
            .get(&info.sender)
            .and_then(|q| q.get(&info.nonce))
            .and_then(|h| self.by_hash.get(h))
        {
            Some(old) if info.fee > old.info.fee => Some(old.info.hash),
            Some(old) => {
                return Err(Rejection::new(
                    RejectCode::Duplicate,
                    format!(
                        "nonce {} of this sender is already pending with fee {}; a replacement must pay more",
                        info.nonce, old.info.fee
                    ),
                ))
            }
            None => None,
        };
        if let Some(other) = info.conflict.as_ref().and_then(|c| self.conflicts.get(c)) {
            if Some(*other) != replaced {
                return Err(Rejection::new(
                    RejectCode::Duplicate,
                    "another pending transaction already claims the same entry (the same attestation or device)",
                ));
            }
        }
        let queued = self.by_sender.get(&info.sender).map_or(0, BTreeMap::len);
        if replaced.is_none() && queued >= self.config.max_per_sender {
            return Err(Rejection::new(
                RejectCode::MempoolFull,
                format!("this sender already has {queued} pending transactions (the limit)"),
            ));
        }
        // Make room: the replaced transaction first, then the cheapest evictable ones.
        let freed = replaced
            .and_then(|h| self.by_hash.get(&h))
            .map_or(0, |e| e.raw.len());
        let mut count = self.by_hash.len();
        if replaced.is_none() {
            count = count.saturating_add(1);
        }
        let mut bytes = self.bytes.saturating_sub(freed).saturating_add(tx.len());
        let mut evict: HashSet<Hash32> = HashSet::new();
        while count > self.config.max_txs || bytes > self.config.max_bytes {
            let Some(victim) = self.eviction_candidate(&info.sender, &evict) else {
                return Err(self.full_rejection());
            };
            if !pays_more(&info, &victim.info) {
                return Err(self.full_rejection());
            }
            count = count.saturating_sub(1);
            bytes = bytes.saturating_sub(victim.raw.len());
            evict.insert(victim.info.hash);
        }
        if let Some(h) = replaced {
            self.remove(&h);
        }
        for h in &evict {
            self.remove(h);
        }
        self.seq = self.seq.saturating_add(1);
        self.bytes = self.bytes.saturating_add(tx.len());
        if let Some(c) = &info.conflict {
            self.conflicts.insert(c.clone(), hash);
        }
        self.by_sender
            .entry(info.sender)
            .or_default()
            .insert(info.nonce, hash);
        let next = self
            .next_nonce
            .entry(info.sender)
            .or_insert(info.account_nonce);
        *next = (*next).max(info.account_nonce);
        self.by_hash.insert(
            hash,
            Entry {
                raw: tx,
                info: info.clone(),
                seq: self.seq,
                source,
            },
        );
        self.gossip.push(hash);
        Ok(info)
    }

    fn full_rejection(&self) -> Rejection {
        Rejection::new(
            RejectCode::MempoolFull,
            format!(
                "the mempool is full ({} transactions, {} bytes) and this transaction does not pay more per byte than any it could replace",
                self.by_hash.len(),
                self.bytes
            ),
        )
    }

    /// Transactions for the next block: at most `max_count` and `max_bytes` in total, each
    /// sender's consecutive nonces from its account nonce, in nonce order.
    pub fn reap(&self, max_bytes: usize, max_count: usize) -> Vec<Vec<u8>> {
        let mut heap = BinaryHeap::new();
        for (sender, q) in &self.by_sender {
            let want = self.next_nonce.get(sender).copied().unwrap_or_default();
            if let Some(entry) = q.get(&want).and_then(|h| self.by_hash.get(h)) {
                heap.push(Head { entry });
            }
        }
        let mut out = Vec::new();
        let mut bytes: usize = 0;
        while let Some(Head { entry }) = heap.pop() {
            if out.len() >= max_count {
                break;
            }
            let Some(total) = bytes
                .checked_add(entry.raw.len())
                .filter(|t| *t <= max_bytes)
            else {
                // This sender's run stops here; others may still fit.
                continue;
            };
            bytes = total;
            out.push(entry.raw.clone());
            let next = entry
                .info
                .nonce
                .checked_add(1)
                .and_then(|n| self.by_sender.get(&entry.info.sender)?.get(&n))
                .and_then(|h| self.by_hash.get(h));
            if let Some(entry) = next {
                heap.push(Head { entry });
            }
        }
        out
    }

    /// After a block: removes the committed transactions and re-checks every other one against
    /// the new committed state `view` ([`Ledger::recheck_tx`]: signatures are not verified
    /// twice); returns what was dropped and why.
    pub fn update(
        &mut self,
        ledger: &Ledger,
        view: &dyn StateView,
        committed: &[Vec<u8>],
    ) -> Vec<(Hash32, Rejection)> {
        for raw in committed {
            self.remove(&tx_hash(raw));
        }
        let mut dropped = Vec::new();
        let mut hashes: Vec<(Hash32, u64)> =
            self.by_hash.iter().map(|(h, e)| (*h, e.seq)).collect();
        hashes.sort_by_key(|(_, seq)| *seq);
        self.next_nonce.clear();
        for (h, _) in hashes {
            let Some(raw) = self.by_hash.get(&h).map(|e| e.raw.clone()) else {
                continue;
            };
            match ledger.recheck_tx(view, &raw) {
                Ok(info) => {
                    self.next_nonce.insert(info.sender, info.account_nonce);
                    if let Some(e) = self.by_hash.get_mut(&h) {
                        e.info = info;
                    }
                }
                Err(r) => {
                    self.remove(&h);
                    dropped.push((h, r));
                }
            }
        }
        dropped
    }
}
