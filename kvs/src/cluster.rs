//! The KVS client over a set of storage nodes: quorum writes, projected and degraded reads,
//! range scans, repair execution and audits. Nodes are reached through [`NodeApi`] handles
//! (in-process); the networked client drives the same coding, placement and repair logic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::RwLock;
use tracing::{debug, warn};

use crate::audit::{self, AuditLedger, AuditOutcome, Challenge};
use crate::coding::{self, CodingParams, StoredShard, Stripe};
use crate::error::{KvsError, Result};
use crate::merkle::{self, Hash};
use crate::model::{self, IndexEntry, Manifest, ReadStats, Record, RowEntry};
use crate::node::{LocalNode, NodeApi};
use crate::placement::{self, NodeId};
use crate::repair::{self, NodeState, RepairAction, RepairConfig, StripeState};

/// Client configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Erasure coding parameters for new stripes.
    pub params: CodingParams,
    /// Shards that must be durable before a write is acknowledged; at least `k + 1`.
    pub write_quorum: usize,
    /// Hedged reads: if the direct read has not succeeded after this long, a reconstructing
    /// read from any `k` shards races it. `None`: reconstruct only after the direct read fails.
    pub hedge_after: Option<std::time::Duration>,
    /// Stripes a repair round works on at the same time (at least 1).
    pub repair_threads: usize,
}

impl ClusterConfig {
    /// Configuration with the minimum quorum `k + 1`.
    pub fn new(params: CodingParams) -> Self {
        Self {
            params,
            write_quorum: usize::from(params.k).saturating_add(1),
            hedge_after: None,
            repair_threads: 2,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self::new(CodingParams::default())
    }
}

/// What a write achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// The index entry of each record written, for the chain to attest.
    pub entries: Vec<(Vec<u8>, IndexEntry)>,
    /// Shards acknowledged durable, with their node.
    pub durable: Vec<(u8, NodeId)>,
    /// Shards not written, with their node and the reason; repair completes them.
    pub missing: Vec<(u8, NodeId, String)>,
}

/// Result of one repair round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Corrupt shards found by scrubbing and discarded.
    pub corrupt_discarded: usize,
    /// Shards rebuilt from parity.
    pub rebuilt: usize,
    /// Shards moved to their placement.
    pub moved: usize,
    /// Surplus copies dropped.
    pub dropped: usize,
    /// Actions that failed (retried next round).
    pub failed: usize,
    /// Stripes with fewer than `k` live shards.
    pub unrecoverable: Vec<Hash>,
    /// Shards dropped because their stripe contradicts the chain's index.
    pub displaced: usize,
}

/// What the chain's name-node index attests, as the repairer sees it.
pub trait IndexView: Send + Sync {
    /// Whether some attested index entry names the stripe `root`.
    fn attests(&self, root: &Hash) -> bool;
}

impl IndexView for BTreeSet<Hash> {
    fn attests(&self, root: &Hash) -> bool {
        self.contains(root)
    }
}

/// Unattested stripes binding a key that an attested stripe of the same address binds.
fn conflicts_with_index(
    stripes: &[StripeState],
    manifests: &BTreeMap<Hash, (Manifest, CodingParams)>,
    index: &dyn IndexView,
) -> BTreeSet<Hash> {
    let mut attested_keys: BTreeMap<(&str, &[u8]), Hash> = BTreeMap::new();
    for st in stripes.iter().filter(|s| index.attests(&s.root)) {
        if let Some((m, _)) = manifests.get(&st.root) {
            for (key, _) in &m.rows {
                attested_keys.insert((m.address.as_str(), key.as_slice()), st.root);
            }
        }
    }
    stripes
        .iter()
        .filter(|s| !index.attests(&s.root))
        .filter(|s| {
            manifests.get(&s.root).is_some_and(|(m, _)| {
                m.rows.iter().any(|(key, _)| {
                    attested_keys
                        .get(&(m.address.as_str(), key.as_slice()))
                        .is_some_and(|r| r != &s.root)
                })
            })
        })
        .map(|s| s.root)
        .collect()
}

/// A client over storage nodes reached through [`NodeApi`] handles.
pub struct Cluster<N: NodeApi + ?Sized> {
    nodes: RwLock<BTreeMap<NodeId, Arc<N>>>,
    members: RwLock<(u64, Vec<NodeId>)>,
    known: RwLock<BTreeMap<NodeId, Vec<(Hash, u8)>>>,
    cfg: ClusterConfig,
}

/// Column projection: `None` reads every column.
pub type Columns<'a> = Option<&'a [&'a str]>;

/// Decoded cells of one record.
pub type Cells = BTreeMap<String, Vec<u8>>;

/// A client over in-process nodes.
pub type LocalCluster = Cluster<LocalNode>;

impl<N: NodeApi + ?Sized> std::fmt::Debug for Cluster<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.read().keys().collect::<Vec<_>>())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl<N: NodeApi + ?Sized + 'static> Cluster<N> {
    /// A client over `nodes`, all members of placement epoch `epoch`.
    pub fn new(nodes: Vec<Arc<N>>, epoch: u64, cfg: ClusterConfig) -> Result<Self> {
        if cfg.write_quorum <= usize::from(cfg.params.k) || cfg.write_quorum > cfg.params.n() {
            return Err(KvsError::InvalidParams {
                k: cfg.params.k.into(),
                m: cfg.params.m.into(),
            });
        }
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id().to_string()).collect();
        let map = nodes.into_iter().map(|n| (n.id().to_string(), n)).collect();
        Ok(Self {
            nodes: RwLock::new(map),
            members: RwLock::new((epoch, ids)),
            known: RwLock::new(BTreeMap::new()),
            cfg,
        })
    }

    /// The handle of node `id`.
    pub fn node(&self, id: &str) -> Option<Arc<N>> {
        self.nodes.read().get(id).cloned()
    }

    /// Adds or replaces a node handle (a restarted process); membership is unchanged.
    pub fn attach(&self, node: Arc<N>) {
        self.nodes.write().insert(node.id().to_string(), node);
    }

    /// Sets the node set used for placement of new writes and bumps the epoch.
    pub fn set_members(&self, epoch: u64, ids: Vec<NodeId>) {
        *self.members.write() = (epoch, ids);
    }

    /// The placement epoch and the member ids used for new writes.
    pub fn members(&self) -> (u64, Vec<NodeId>) {
        self.members.read().clone()
    }

    /// Ids of every attached node handle (members and nodes still being drained).
    pub fn attached(&self) -> Vec<NodeId> {
        self.nodes.read().keys().cloned().collect()
    }

    /// Detaches a node handle (a node that left and was drained).
    pub fn detach(&self, id: &str) -> Option<Arc<N>> {
        self.nodes.write().remove(id)
    }

    /// Current placement of `address`'s shards.
    pub fn placement(&self, address: &str) -> Result<(u64, Vec<NodeId>)> {
        let (epoch, ids) = self.members.read().clone();
        Ok((
            epoch,
            placement::place(address.as_bytes(), &ids, self.cfg.params.n())?,
        ))
    }

    fn handles(&self, ids: &[NodeId]) -> Vec<(NodeId, Option<Arc<N>>)> {
        let map = self.nodes.read();
        ids.iter()
            .map(|id| (id.clone(), map.get(id).cloned()))
            .collect()
    }

    /// Writes one record of `address`.
    pub fn put(&self, address: &str, record: Record) -> Result<PutReceipt> {
        self.put_batch(address, &[record])
    }

    /// Writes several records of `address` packed into one stripe; acknowledged once the
    /// write quorum of shards is durable.
    pub fn put_batch(&self, address: &str, records: &[Record]) -> Result<PutReceipt> {
        let params = self.cfg.params;
        let (epoch, targets) = self.placement(address)?;
        let handles = self.handles(&targets);
        let packed = model::pack(records)?;
        let payload_len = u64::try_from(packed.payload.len())
            .map_err(|_| KvsError::Overflow("payload length"))?;
        let mut manifest = Manifest {
            address: address.to_string(),
            root: [0u8; 32],
            params,
            payload_len,
            epoch,
            rows: packed.rows,
        };
        let stripe = coding::encode_bound(params, &packed.payload, &manifest.digest()?)?;
        manifest.root = stripe.root;
        // refuse duplicates before writing anything (each node re-checks atomically)
        'check: for (_, h) in &handles {
            let Some(node) = h else { continue };
            for (key, _) in &manifest.rows {
                match node.row(address, key) {
                    Ok(Some(existing)) if existing.root != stripe.root => {
                        return Err(KvsError::Duplicate)
                    }
                    Ok(_) => {}
                    Err(_) => continue 'check,
                }
            }
            break;
        }
        let shards: Vec<Vec<u8>> = (0..params.n())
            .map(|i| {
                Ok(stripe
                    .stored_shard(u8::try_from(i).map_err(|_| KvsError::Overflow("shard index"))?)?
                    .encode())
            })
            .collect::<Result<_>>()?;
        // all shard writes in parallel; the slowest healthy node bounds the latency
        let results: Vec<(u8, NodeId, Result<()>)> = std::thread::scope(|scope| {
            let tasks: Vec<_> = handles
                .iter()
                .zip(&shards)
                .enumerate()
                .map(|(i, ((id, handle), shard))| {
                    let manifest = &manifest;
                    let root = stripe.root;
                    scope.spawn(move || {
                        let index = u8::try_from(i).unwrap_or(u8::MAX);
                        let res = match handle {
                            Some(n) => n.put_shard(&root, index, shard, manifest),
                            None => Err(KvsError::Unavailable(id.clone())),
                        };
                        (index, id.clone(), res)
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        (
                            u8::MAX,
                            String::new(),
                            Err(KvsError::Net("writer thread failed".into())),
                        )
                    })
                })
                .collect()
        });
        let mut durable = Vec::new();
        let mut missing = Vec::new();
        for (index, id, res) in results {
            match res {
                Ok(()) => durable.push((index, id)),
                Err(KvsError::Duplicate) => return Err(KvsError::Duplicate),
                Err(KvsError::NotAdmitted(a)) => return Err(KvsError::NotAdmitted(a)),
                Err(e) => {
                    warn!(node = %id, index, error = %e, "shard write failed");
                    missing.push((index, id, e.to_string()));
                }
            }
        }
        if durable.len() < self.cfg.write_quorum {
            return Err(KvsError::QuorumNotMet {
                durable: durable.len(),
                need: self.cfg.write_quorum,
                missing: missing.iter().map(|(i, _, _)| *i).collect(),
            });
        }
        let entries = packed
            .hashes
            .into_iter()
            .map(|(k, dhash, size)| {
                (
                    k,
                    IndexEntry {
                        dhash,
                        size,
                        root: stripe.root,
                        epoch,
                        params,
                        payload_len: stripe.payload_len,
                    },
                )
            })
            .collect();
        Ok(PutReceipt {
            entries,
            durable,
            missing,
        })
    }

    fn find_row(&self, address: &str, key: &[u8]) -> Result<Option<RowEntry>> {
        let (_, targets) = self.placement(address)?;
        let mut reached = 0usize;
        for (_, h) in self.handles(&targets) {
            let Some(n) = h else { continue };
            match n.row(address, key) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => reached = reached.saturating_add(1),
                Err(e) => debug!(node = n.id(), error = %e, "row lookup failed"),
            }
        }
        // rows of a stripe live on every holder; at least n-k+1 answers of "absent" mean absent
        let need = usize::from(self.cfg.params.m).saturating_add(1);
        if reached >= need {
            Ok(None)
        } else {
            Err(KvsError::NotEnoughShards {
                stripe: String::new(),
                have: reached,
                need,
            })
        }
    }

    /// Reads one record of `address`, only the named columns.
    pub fn get(
        &self,
        address: &str,
        key: &[u8],
        columns: Columns<'_>,
        stats: &mut ReadStats,
    ) -> Result<Option<Cells>> {
        stats.addresses_traversed = stats.addresses_traversed.saturating_add(1);
        let Some(row) = self.find_row(address, key)? else {
            return Ok(None);
        };
        let cells = self.read_cells(address, &row, columns, stats)?;
        stats.rows = stats.rows.saturating_add(1);
        Ok(Some(cells))
    }

    /// Reads one record and checks it against the chain's index entry. The index wins: the
    /// record is located in the stripe the entry names (nodes whose directory says otherwise
    /// are counted in [`ReadStats::index_disagreements`] and ignored), and a full read must
    /// match the attested data hash. A stripe no reachable node holds is an error, never
    /// `Ok(None)`.
    pub fn get_checked(
        &self,
        address: &str,
        key: &[u8],
        columns: Columns<'_>,
        entry: &IndexEntry,
        stats: &mut ReadStats,
    ) -> Result<Option<Cells>> {
        stats.addresses_traversed = stats.addresses_traversed.saturating_add(1);
        let Some(row) = self.find_indexed_row(address, key, entry, stats)? else {
            return Ok(None);
        };
        if row.payload_len != entry.payload_len || row.params != entry.params {
            return Err(KvsError::IndexMismatch("stripe layout"));
        }
        let cells = self.read_cells(address, &row, columns, stats)?;
        if columns.is_none() || row.cells.len() == columns.map_or(0, <[&str]>::len) {
            let rec = Record {
                key: key.to_vec(),
                columns: cells.clone(),
            };
            if rec.dhash() != entry.dhash {
                return Err(KvsError::IndexMismatch("data hash of content"));
            }
        }
        stats.rows = stats.rows.saturating_add(1);
        Ok(Some(cells))
    }

    /// The row of `key` in the stripe `entry` names, from the first placement node holding
    /// that stripe's manifest; an [`KvsError::IndexMismatch`] when enough nodes answered and
    /// none holds it (the attested record is missing, not absent).
    fn find_indexed_row(
        &self,
        address: &str,
        key: &[u8],
        entry: &IndexEntry,
        stats: &mut ReadStats,
    ) -> Result<Option<RowEntry>> {
        let (_, targets) = self.placement(address)?;
        let mut answered = 0usize;
        let mut found = None;
        for (_, h) in self.handles(&targets) {
            let Some(n) = h else { continue };
            if let Ok(Some(own)) = n.row(address, key) {
                if own.root != entry.root {
                    stats.index_disagreements = stats.index_disagreements.saturating_add(1);
                }
            }
            match n.manifest(&entry.root) {
                Ok(Some(m)) if m.address == address => {
                    if let Some(r) = m.find(key)? {
                        found = Some(r);
                        break;
                    }
                    answered = answered.saturating_add(1);
                }
                Ok(_) => answered = answered.saturating_add(1),
                Err(e) => debug!(node = n.id(), error = %e, "manifest lookup failed"),
            }
        }
        if found.is_some() {
            return Ok(found);
        }
        let need = usize::from(self.cfg.params.m).saturating_add(1);
        if answered >= need {
            Err(KvsError::IndexMismatch("no node holds the indexed stripe"))
        } else {
            Err(KvsError::NotEnoughShards {
                stripe: hex::encode(entry.root),
                have: answered,
                need,
            })
        }
    }

    /// Records of `address` with `start <= key < end`, in key order (one address traversed).
    pub fn scan(
        &self,
        address: &str,
        start: &[u8],
        end: Option<&[u8]>,
        columns: Columns<'_>,
        limit: usize,
        stats: &mut ReadStats,
    ) -> Result<Vec<(Vec<u8>, Cells)>> {
        stats.addresses_traversed = stats.addresses_traversed.saturating_add(1);
        let rows = self.scan_rows(address, start, end, limit)?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            let cells = self.read_cells(address, &row, columns, stats)?;
            stats.rows = stats.rows.saturating_add(1);
            out.push((key, cells));
        }
        Ok(out)
    }

    /// Keys of `address` (one address traversed).
    pub fn list_keys(&self, address: &str, stats: &mut ReadStats) -> Result<Vec<Vec<u8>>> {
        stats.addresses_traversed = stats.addresses_traversed.saturating_add(1);
        Ok(self
            .scan_rows(address, &[], None, usize::MAX)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Row entries from the union of the reachable placement nodes (a node may lag after
    /// a partial write; merging m+1 answers covers every acknowledged row).
    fn scan_rows(
        &self,
        address: &str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, RowEntry)>> {
        let (_, targets) = self.placement(address)?;
        let mut merged: BTreeMap<Vec<u8>, RowEntry> = BTreeMap::new();
        let mut answered = 0usize;
        let need = usize::from(self.cfg.params.m).saturating_add(1);
        for (_, h) in self.handles(&targets) {
            let Some(n) = h else { continue };
            match n.scan_rows(address, start, end, limit) {
                Ok(rows) => {
                    answered = answered.saturating_add(1);
                    for (k, r) in rows {
                        merged.entry(k).or_insert(r);
                    }
                    if answered >= need {
                        break;
                    }
                }
                Err(e) => debug!(node = n.id(), error = %e, "scan failed"),
            }
        }
        if answered < need {
            return Err(KvsError::NotEnoughShards {
                stripe: String::new(),
                have: answered,
                need,
            });
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn read_cells(
        &self,
        address: &str,
        row: &RowEntry,
        columns: Columns<'_>,
        stats: &mut ReadStats,
    ) -> Result<Cells> {
        let wanted: Vec<model::CellSpan> = match columns {
            None => row.cells.clone(),
            Some(names) => names
                .iter()
                .map(|n| {
                    row.cells
                        .iter()
                        .find(|c| c.column == *n)
                        .cloned()
                        .ok_or_else(|| KvsError::NoSuchColumn((*n).to_string()))
                })
                .collect::<Result<_>>()?,
        };
        let (_, targets) = self.placement(address)?;
        let placed = self.handles(&targets);
        let all: Vec<(NodeId, Option<Arc<N>>)> = self
            .nodes
            .read()
            .iter()
            .map(|(id, n)| (id.clone(), Some(n.clone())))
            .collect();
        let Some(delay) = self.cfg.hedge_after else {
            return match fetch_ranges(&placed, row, &wanted) {
                Ok((cells, bytes)) => {
                    stats.bytes_fetched = stats.bytes_fetched.saturating_add(bytes);
                    Ok(cells)
                }
                Err(e) => {
                    debug!(error = %e, "direct read failed, reconstructing");
                    stats.degraded = stats.degraded.saturating_add(1);
                    let (cells, bytes) = fetch_reconstructed(&placed, &all, row, &wanted)?;
                    stats.bytes_fetched = stats.bytes_fetched.saturating_add(bytes);
                    Ok(cells)
                }
            };
        };
        // hedged: the direct read gets `delay`; then a reconstructing read races it and the
        // first success wins (the loser finishes in the background)
        let (tx, rx) = std::sync::mpsc::channel::<(bool, Result<(Cells, u64)>)>();
        {
            let (tx, placed, row, wanted) =
                (tx.clone(), placed.clone(), row.clone(), wanted.clone());
            std::thread::spawn(move || {
                let _ = tx.send((false, fetch_ranges(&placed, &row, &wanted)));
            });
        }
        let first = rx.recv_timeout(delay);
        if let Ok((_, Ok((cells, bytes)))) = first {
            stats.bytes_fetched = stats.bytes_fetched.saturating_add(bytes);
            return Ok(cells);
        }
        let mut pending: u8 = if first.is_ok() { 1 } else { 2 };
        {
            let (tx, row, wanted) = (tx.clone(), row.clone(), wanted.clone());
            std::thread::spawn(move || {
                let _ = tx.send((true, fetch_reconstructed(&placed, &all, &row, &wanted)));
            });
        }
        drop(tx);
        let mut last_err = KvsError::NotEnoughShards {
            stripe: hex::encode(row.root),
            have: 0,
            need: row.params.k.into(),
        };
        while pending > 0 {
            match rx.recv() {
                Ok((degraded, Ok((cells, bytes)))) => {
                    stats.bytes_fetched = stats.bytes_fetched.saturating_add(bytes);
                    if degraded {
                        stats.degraded = stats.degraded.saturating_add(1);
                    }
                    return Ok(cells);
                }
                Ok((_, Err(e))) => {
                    last_err = e;
                    pending = pending.saturating_sub(1);
                }
                Err(_) => break,
            }
        }
        Err(last_err)
    }

    /// Rebuilds all shards of a stripe from `k` verified ones.
    fn rebuild_stripe(
        &self,
        root: &Hash,
        params: CodingParams,
        holders: &BTreeMap<u8, BTreeSet<NodeId>>,
        bind: &Hash,
    ) -> Result<Stripe> {
        let n = params.n();
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut payload_len = None;
        let mut have = 0usize;
        for (index, nodes) in holders {
            if have >= usize::from(params.k) {
                break;
            }
            for (_, h) in self.handles(&nodes.iter().cloned().collect::<Vec<_>>()) {
                let Some(node) = h else { continue };
                if let Ok(Some(s)) = node.get_shard(root, *index) {
                    payload_len = Some(s.payload_len);
                    if let Some(slot) = shards.get_mut(usize::from(*index)) {
                        *slot = Some(s.data);
                        have = have.saturating_add(1);
                    }
                    break;
                }
            }
        }
        let payload_len = payload_len.ok_or(KvsError::NotEnoughShards {
            stripe: hex::encode(root),
            have,
            need: params.k.into(),
        })?;
        coding::reconstruct(params, &mut shards)?;
        let shards: Vec<Vec<u8>> = shards.into_iter().map(Option::unwrap_or_default).collect();
        let shard_hashes: Vec<Hash> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| merkle::shard_hash(u8::try_from(i).unwrap_or(u8::MAX), s))
            .collect();
        let rebuilt_root = coding::stripe_root(&shard_hashes, bind);
        if &rebuilt_root != root {
            return Err(KvsError::CorruptShard {
                stripe: hex::encode(root),
                index: u8::MAX,
            });
        }
        Ok(Stripe {
            params,
            payload_len,
            root: rebuilt_root,
            shard_hashes,
            shards,
            bind: *bind,
        })
    }

    /// One repair round: scrub reachable nodes (discarding corrupt shards), plan against
    /// `states` at time `now`, and run the plan.
    pub fn repair(
        &self,
        states: &BTreeMap<NodeId, NodeState>,
        now: u64,
        rcfg: &RepairConfig,
    ) -> Result<RepairReport> {
        self.repair_with_index(states, now, rcfg, None)
    }

    /// [`Cluster::repair`] checked against the chain's index: a stripe the index does not
    /// attest that binds a key of its address which an attested stripe also binds is dropped
    /// from every node holding it (the index wins), and the attested stripe's shards are then
    /// rewritten where it was displaced. Unattested stripes that conflict with nothing (writes
    /// the chain has not attested yet) are repaired as usual.
    pub fn repair_with_index(
        &self,
        states: &BTreeMap<NodeId, NodeState>,
        now: u64,
        rcfg: &RepairConfig,
        index: Option<&dyn IndexView>,
    ) -> Result<RepairReport> {
        let mut report = RepairReport::default();
        let nodes: Vec<Arc<N>> = self.nodes.read().values().cloned().collect();
        let mut holders: BTreeMap<Hash, BTreeMap<u8, BTreeSet<NodeId>>> = BTreeMap::new();
        let mut manifests: BTreeMap<Hash, (Manifest, CodingParams)> = BTreeMap::new();
        // every reachable node scrubs itself at the same time (each is a separate machine)
        let scrubbed: Vec<Option<Scrubbed>> = std::thread::scope(|scope| {
            let tasks: Vec<_> = nodes
                .iter()
                .map(|node| {
                    let up = matches!(
                        states.get(node.id()),
                        Some(NodeState::Up) | Some(NodeState::Leaving)
                    );
                    scope.spawn(move || -> Result<Option<Scrubbed>> {
                        if !up {
                            return Ok(None);
                        }
                        let Ok(corrupt) = node.scrub() else {
                            return Ok(None);
                        };
                        for (root, index) in &corrupt {
                            warn!(node = node.id(), index, stripe = %hex::encode(root), "discarding corrupt shard");
                            node.delete_shard(root, *index)?;
                        }
                        Ok(Some((corrupt.len(), node.inventory()?)))
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(KvsError::Net("scrub thread failed".into())))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for (node, res) in nodes.iter().zip(scrubbed) {
            let Some((corrupt, inventory)) = res else {
                continue;
            };
            report.corrupt_discarded = report.corrupt_discarded.saturating_add(corrupt);
            for (root, index) in inventory {
                holders
                    .entry(root)
                    .or_default()
                    .entry(index)
                    .or_default()
                    .insert(node.id().to_string());
                if let std::collections::btree_map::Entry::Vacant(slot) = manifests.entry(root) {
                    if let Some(m) = node.manifest(&root)? {
                        let params = m.params;
                        slot.insert((m, params));
                    }
                }
            }
        }
        // nodes down within their grace period keep the holdings they last reported
        {
            let mut known = self.known.write();
            for node in &nodes {
                let id = node.id();
                match states.get(id) {
                    Some(NodeState::Up) | Some(NodeState::Leaving) => {
                        let inv: Vec<(Hash, u8)> = holders
                            .iter()
                            .flat_map(|(r, h)| {
                                h.iter()
                                    .filter(|(_, ns)| ns.contains(id))
                                    .map(move |(i, _)| (*r, *i))
                            })
                            .collect();
                        known.insert(id.to_string(), inv);
                    }
                    Some(NodeState::Down { .. }) => {
                        for (root, index) in known.get(id).cloned().unwrap_or_default() {
                            holders
                                .entry(root)
                                .or_default()
                                .entry(index)
                                .or_default()
                                .insert(id.to_string());
                        }
                    }
                    _ => {
                        known.remove(id);
                    }
                }
            }
        }
        let mut stripes: Vec<StripeState> = holders
            .into_iter()
            .filter_map(|(root, h)| {
                manifests.get(&root).map(|(m, params)| StripeState {
                    root,
                    address: m.address.clone(),
                    params: *params,
                    holders: h,
                })
            })
            .collect();
        repair::forget_dead(&mut stripes, states, now, rcfg);
        if let Some(index) = index {
            let displaced = conflicts_with_index(&stripes, &manifests, index);
            for st in stripes.iter().filter(|s| displaced.contains(&s.root)) {
                for (shard, hs) in &st.holders {
                    for id in hs {
                        let res = self
                            .node(id)
                            .ok_or_else(|| KvsError::Unavailable(id.clone()))
                            .and_then(|n| n.delete_shard(&st.root, *shard));
                        let drop = RepairAction::Drop {
                            root: st.root,
                            index: *shard,
                            node: id.clone(),
                        };
                        tally(&mut report, &drop, res);
                        report.displaced = report.displaced.saturating_add(1);
                    }
                }
            }
            stripes.retain(|s| !displaced.contains(&s.root));
        }
        let plan = repair::plan(&stripes, states, now, rcfg);
        report.unrecoverable = plan.unrecoverable.clone();
        let by_root: BTreeMap<Hash, &StripeState> = stripes.iter().map(|s| (s.root, s)).collect();
        // actions of one stripe run in order (rebuild before moving: a move deletes its source,
        // which a rebuild may still need); stripes are independent and run in parallel
        let mut per_stripe: BTreeMap<Hash, Vec<&RepairAction>> = BTreeMap::new();
        for a in &plan.actions {
            let root = match a {
                RepairAction::Rebuild { root, .. }
                | RepairAction::Move { root, .. }
                | RepairAction::Drop { root, .. } => *root,
            };
            per_stripe.entry(root).or_default().push(a);
        }
        let work: Vec<Vec<&RepairAction>> = per_stripe
            .into_values()
            .map(|mut v| {
                v.sort_by_key(|a| match a {
                    RepairAction::Rebuild { .. } => 0u8,
                    RepairAction::Move { .. } => 1,
                    RepairAction::Drop { .. } => 2,
                });
                v
            })
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = self.cfg.repair_threads.clamp(1, work.len().max(1));
        let partial: Vec<RepairReport> = std::thread::scope(|scope| {
            let tasks: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut r = RepairReport::default();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(actions) = work.get(i) else { break };
                            let mut rebuilt: Option<Stripe> = None;
                            for action in actions {
                                let res =
                                    self.run_action(action, &by_root, &manifests, &mut rebuilt);
                                tally(&mut r, action, res);
                            }
                        }
                        r
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| RepairReport {
                        failed: 1,
                        ..RepairReport::default()
                    })
                })
                .collect()
        });
        for r in partial {
            report.rebuilt = report.rebuilt.saturating_add(r.rebuilt);
            report.moved = report.moved.saturating_add(r.moved);
            report.dropped = report.dropped.saturating_add(r.dropped);
            report.failed = report.failed.saturating_add(r.failed);
        }
        Ok(report)
    }

    fn run_action(
        &self,
        action: &RepairAction,
        stripes: &BTreeMap<Hash, &StripeState>,
        manifests: &BTreeMap<Hash, (Manifest, CodingParams)>,
        rebuilt: &mut Option<Stripe>,
    ) -> Result<()> {
        let node = |id: &str| {
            self.node(id)
                .ok_or_else(|| KvsError::Unavailable(id.to_string()))
        };
        match action {
            RepairAction::Rebuild {
                root,
                index,
                target,
            } => {
                let st = stripes
                    .get(root)
                    .ok_or(KvsError::malformed("repair", "unknown stripe"))?;
                let (manifest, params) = manifests
                    .get(root)
                    .ok_or(KvsError::malformed("repair", "no manifest"))?;
                if rebuilt.is_none() {
                    *rebuilt = Some(self.rebuild_stripe(
                        root,
                        *params,
                        &st.holders,
                        &manifest.digest()?,
                    )?);
                }
                let s = rebuilt
                    .as_ref()
                    .ok_or(KvsError::malformed("repair", "rebuild lost"))?;
                node(target)?.put_shard(root, *index, &s.stored_shard(*index)?.encode(), manifest)
            }
            RepairAction::Move {
                root,
                index,
                from,
                to,
            } => {
                let (manifest, _) = manifests
                    .get(root)
                    .ok_or(KvsError::malformed("repair", "no manifest"))?;
                let src = node(from)?;
                let shard: StoredShard = src
                    .get_shard(root, *index)?
                    .ok_or_else(|| KvsError::Unavailable(from.clone()))?;
                node(to)?.put_shard(root, *index, &shard.encode(), manifest)?;
                src.delete_shard(root, *index)
            }
            RepairAction::Drop {
                root,
                index,
                node: id,
            } => node(id)?.delete_shard(root, *index),
        }
    }

    /// Audits `node_id` with `ch` against `entry` and records the outcome in `ledger`.
    pub fn audit(
        &self,
        node_id: &str,
        ch: &Challenge,
        entry: &IndexEntry,
        ledger: &AuditLedger,
    ) -> Result<AuditOutcome> {
        let outcome = match self.node(node_id).map(|n| n.answer_audit(ch)) {
            None | Some(Err(KvsError::Unavailable(_))) => AuditOutcome::Missed,
            Some(Err(_)) => AuditOutcome::Failed,
            Some(Ok(proof)) if audit::verify(ch, entry, &proof) => AuditOutcome::Passed,
            Some(Ok(_)) => AuditOutcome::Failed,
        };
        ledger.record(node_id, ch, outcome)?;
        Ok(outcome)
    }
}

fn tally(r: &mut RepairReport, action: &RepairAction, res: Result<()>) {
    match (res, action) {
        (Ok(()), RepairAction::Rebuild { .. }) => r.rebuilt = r.rebuilt.saturating_add(1),
        (Ok(()), RepairAction::Move { .. }) => r.moved = r.moved.saturating_add(1),
        (Ok(()), RepairAction::Drop { .. }) => r.dropped = r.dropped.saturating_add(1),
        (Err(e), a) => {
            warn!(?a, error = %e, "repair action failed");
            r.failed = r.failed.saturating_add(1);
        }
    }
}

type Handles<N> = [(NodeId, Option<Arc<N>>)];

/// One node's scrub: corrupt shards discarded, then what it holds.
type Scrubbed = (usize, Vec<(Hash, u8)>);

/// Fetches only the cells' byte ranges from the data shards' nodes; returns the bytes moved.
fn fetch_ranges<N: NodeApi + ?Sized>(
    placed: &Handles<N>,
    row: &RowEntry,
    wanted: &[model::CellSpan],
) -> Result<(Cells, u64)> {
    let mut out = Cells::new();
    let mut fetched = 0u64;
    for c in wanted {
        let mut bytes = Vec::new();
        for r in model::data_ranges(row.params, row.payload_len, c.offset, c.len)? {
            let (id, h) = placed
                .get(usize::from(r.index))
                .ok_or(KvsError::malformed("placement", "short"))?;
            let n = h
                .as_ref()
                .ok_or_else(|| KvsError::Unavailable(id.clone()))?;
            let part = n
                .get_shard_range(&row.root, r.index, r.offset, r.len)?
                .ok_or_else(|| KvsError::Unavailable(id.clone()))?;
            fetched = fetched.saturating_add(part.len() as u64);
            bytes.extend_from_slice(&part);
        }
        out.insert(c.column.clone(), bytes);
    }
    Ok((out, fetched))
}

/// Collects `k` verified shards (placement first, then any node), decodes the payload and cuts
/// the cells out of it; returns the bytes moved.
fn fetch_reconstructed<N: NodeApi + ?Sized>(
    placed: &Handles<N>,
    all: &Handles<N>,
    row: &RowEntry,
    wanted: &[model::CellSpan],
) -> Result<(Cells, u64)> {
    let n = row.params.n();
    let k = usize::from(row.params.k);
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
    let mut have = 0usize;
    let mut fetched = 0u64;
    for pass in 0..2 {
        for i in 0..n {
            if have >= k {
                break;
            }
            if shards.get(i).is_some_and(Option::is_some) {
                continue;
            }
            let index = u8::try_from(i).map_err(|_| KvsError::Overflow("shard index"))?;
            let placed_id = placed.get(i).map(|(id, _)| id.clone());
            let candidates: Vec<&(NodeId, Option<Arc<N>>)> = if pass == 0 {
                placed.get(i).into_iter().collect()
            } else {
                all.iter()
                    .filter(|(id, _)| Some(id) != placed_id.as_ref())
                    .collect()
            };
            for (id, h) in candidates {
                let Some(node) = h else { continue };
                match node.get_shard(&row.root, index) {
                    Ok(Some(s)) => {
                        fetched = fetched.saturating_add(s.data.len() as u64);
                        if let Some(slot) = shards.get_mut(i) {
                            *slot = Some(s.data);
                            have = have.saturating_add(1);
                        }
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(node = %id, index, error = %e, "shard unusable, treated as erasure")
                    }
                }
            }
        }
    }
    if have < k {
        return Err(KvsError::NotEnoughShards {
            stripe: hex::encode(row.root),
            have,
            need: k,
        });
    }
    let payload = coding::decode(row.params, row.payload_len, shards)?;
    let mut out = Cells::new();
    for c in wanted {
        let start = usize::try_from(c.offset).map_err(|_| KvsError::Overflow("cell"))?;
        let end = start
            .checked_add(usize::try_from(c.len).map_err(|_| KvsError::Overflow("cell"))?)
            .ok_or(KvsError::Overflow("cell"))?;
        let bytes = payload
            .get(start..end)
            .ok_or(KvsError::malformed("row entry", "cell outside payload"))?;
        out.insert(c.column.clone(), bytes.to_vec());
    }
    Ok((out, fetched))
}

/// The background repair loop: each tick probes every attached node, turns the answers and the
/// membership into node states ([`repair::Liveness`]), and runs one repair round. Rounds are
/// idempotent, so a tick interrupted by a crash is completed by the next one.
pub struct RepairLoop<N: NodeApi + ?Sized> {
    cluster: Arc<Cluster<N>>,
    liveness: repair::Liveness,
    cfg: RepairConfig,
    index: Option<Arc<dyn IndexView>>,
}

impl<N: NodeApi + ?Sized> std::fmt::Debug for RepairLoop<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairLoop")
            .field("liveness", &self.liveness)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<N: NodeApi + ?Sized + 'static> RepairLoop<N> {
    /// A loop over `cluster` with the repair policy `cfg`.
    pub fn new(cluster: Arc<Cluster<N>>, cfg: RepairConfig) -> Self {
        Self {
            cluster,
            liveness: repair::Liveness::new(),
            cfg,
            index: None,
        }
    }

    /// Checks every round against the chain's index (see [`Cluster::repair_with_index`]).
    pub fn with_index(mut self, index: Arc<dyn IndexView>) -> Self {
        self.index = Some(index);
        self
    }

    /// The node states as of the last tick.
    pub fn states(&self) -> BTreeMap<NodeId, NodeState> {
        let members: BTreeSet<NodeId> = self.cluster.members().1.into_iter().collect();
        self.liveness.states(&members)
    }

    /// One round at time `now` (seconds): probe, update states, repair.
    pub fn tick(&mut self, now: u64) -> Result<RepairReport> {
        let attached = self.cluster.attached();
        let cluster = &self.cluster;
        let probes: Vec<(NodeId, bool)> = std::thread::scope(|scope| {
            let tasks: Vec<_> = attached
                .iter()
                .map(|id| {
                    scope.spawn(move || {
                        let ok = cluster.node(id).is_some_and(|n| n.ping().is_ok());
                        (id.clone(), ok)
                    })
                })
                .collect();
            tasks
                .into_iter()
                .zip(&attached)
                .map(|(t, id)| t.join().unwrap_or_else(|_| (id.clone(), false)))
                .collect()
        });
        for (id, ok) in &probes {
            self.liveness.observe(id, *ok, now);
        }
        let states = self.states();
        self.cluster
            .repair_with_index(&states, now, &self.cfg, self.index.as_deref())
    }

    /// Runs [`RepairLoop::tick`] every `interval` on a thread of its own, with the wall clock
    /// in seconds, until the handle is stopped or dropped; every round's outcome is sent to
    /// the handle.
    pub fn spawn(mut self, interval: std::time::Duration) -> RepairLoopHandle {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (report_tx, reports) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if report_tx.send(self.tick(now)).is_err() {
                return;
            }
            match stop_rx.recv_timeout(interval) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
        RepairLoopHandle {
            stop: Some(stop_tx),
            reports,
            thread: Some(thread),
        }
    }
}

/// A running [`RepairLoop`]: receives its round reports; stopping (or dropping) ends it.
#[derive(Debug)]
pub struct RepairLoopHandle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    reports: std::sync::mpsc::Receiver<Result<RepairReport>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RepairLoopHandle {
    /// The next round's outcome, waiting at most `timeout`.
    pub fn next_report(&self, timeout: std::time::Duration) -> Option<Result<RepairReport>> {
        self.reports.recv_timeout(timeout).ok()
    }

    /// Stops the loop after its current round and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RepairLoopHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
