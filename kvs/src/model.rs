//! The logical data model: records in address partitions, their packing into stripes, the
//! row index, the chain's index entry, read accounting, storage modes and fee quotes.
//!
//! The address is the partition key. Inside an address, rows are ordered by the record's
//! order-preserving encoded key (opaque bytes here). A record has one cell per column, each an
//! opaque ciphertext. One or more records of an address are packed into one payload — cells
//! concatenated, each row remembering its cells' offsets — and the payload is erasure coded as
//! one stripe. Packing amortizes per-stripe and per-shard costs for small values; reading one
//! column fetches only that column's byte range from the data shard(s) holding it.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::coding::CodingParams;
use crate::error::{KvsError, Result};
use crate::keys;
use crate::merkle::{self, Hash};
use crate::wire::{Reader, Writer};

/// Domain of the record data hash.
pub const DOMAIN_DHASH: &str = "carchain/kvs/dhash/v1";

/// A record: its encoded key and one ciphertext cell per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Order-preserving encoded key.
    pub key: Vec<u8>,
    /// Column name → ciphertext.
    pub columns: BTreeMap<String, Vec<u8>>,
}

impl Record {
    /// A record from a key and `(column, ciphertext)` pairs.
    pub fn new(
        key: impl Into<Vec<u8>>,
        columns: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Self {
        Self {
            key: key.into(),
            columns: columns.into_iter().collect(),
        }
    }

    /// Sum of the cell sizes.
    pub fn size(&self) -> u64 {
        self.columns
            .values()
            .map(|v| v.len() as u64)
            .fold(0u64, u64::saturating_add)
    }

    /// The data hash attested on chain: SHA-256 over the key and every (column, cell) pair,
    /// each length-prefixed, in column order.
    pub fn dhash(&self) -> Hash {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        parts.push((self.key.len() as u64).to_be_bytes().to_vec());
        parts.push(self.key.clone());
        for (name, cell) in &self.columns {
            parts.push((name.len() as u64).to_be_bytes().to_vec());
            parts.push(name.as_bytes().to_vec());
            parts.push((cell.len() as u64).to_be_bytes().to_vec());
            parts.push(cell.clone());
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        merkle::hash_parts(DOMAIN_DHASH, &refs)
    }
}

/// Where one cell sits inside its stripe's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpan {
    /// Column name.
    pub column: String,
    /// Offset in the payload.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One manifest row: a record's encoded key and its `(column, length)` cells in payload order.
pub type ManifestRow = (Vec<u8>, Vec<(String, u32)>);

/// One record's location: its stripe and where its cells are in the stripe's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEntry {
    /// Stripe root.
    pub root: Hash,
    /// Coding parameters of the stripe.
    pub params: CodingParams,
    /// Payload length of the stripe.
    pub payload_len: u64,
    /// Placement epoch the stripe was written under.
    pub epoch: u64,
    /// The record's cells.
    pub cells: Vec<CellSpan>,
}

impl RowEntry {
    /// The record's logical size (sum of its cells).
    pub fn size(&self) -> u64 {
        self.cells
            .iter()
            .map(|c| c.len)
            .fold(0u64, u64::saturating_add)
    }
}

/// The directory of one stripe: its address, coding, and each record's key and cell sizes
/// (offsets follow from the packing order). Every node holding a shard of the stripe keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Partition key of every record of the stripe.
    pub address: String,
    /// Stripe root.
    pub root: Hash,
    /// Coding parameters.
    pub params: CodingParams,
    /// Payload length.
    pub payload_len: u64,
    /// Placement epoch of the write.
    pub epoch: u64,
    /// `(key, [(column, len)])` per record, sorted by key, in payload order.
    pub rows: Vec<ManifestRow>,
}

impl Manifest {
    /// Every record with its location, in key order.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, RowEntry)>> {
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(self.rows.len());
        for (key, cols) in &self.rows {
            let mut cells = Vec::with_capacity(cols.len());
            for (name, len) in cols {
                cells.push(CellSpan {
                    column: name.clone(),
                    offset,
                    len: u64::from(*len),
                });
                offset = offset
                    .checked_add(u64::from(*len))
                    .ok_or(KvsError::Overflow("manifest offsets"))?;
            }
            out.push((key.clone(), self.entry(cells)));
        }
        if offset > self.payload_len {
            return Err(KvsError::malformed("manifest", "cells exceed payload"));
        }
        Ok(out)
    }

    fn entry(&self, cells: Vec<CellSpan>) -> RowEntry {
        RowEntry {
            root: self.root,
            params: self.params,
            payload_len: self.payload_len,
            epoch: self.epoch,
            cells,
        }
    }

    /// The location of the record under `key`, if in this stripe.
    pub fn find(&self, key: &[u8]) -> Result<Option<RowEntry>> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, e)| e))
    }

    /// Digest of everything but the root (address, coding, epoch, rows); bound into the
    /// stripe root as its last Merkle leaf.
    pub fn digest(&self) -> Result<Hash> {
        let unrooted = Manifest {
            root: [0u8; 32],
            ..self.clone()
        };
        Ok(crate::merkle::hash_parts(
            "carchain/kvs/manifest/v1",
            &[&unrooted.encode()?],
        ))
    }

    /// Smallest and largest key (empty stripe: two empty keys).
    pub fn key_range(&self) -> (&[u8], &[u8]) {
        let first = self.rows.first().map(|(k, _)| k.as_slice()).unwrap_or(&[]);
        let last = self.rows.last().map(|(k, _)| k.as_slice()).unwrap_or(&[]);
        (first, last)
    }

    /// Serialized form. Keys are sorted, so each is written as the length of the prefix it
    /// shares with the previous key (the longest one: the encoding is canonical) and the rest;
    /// small packed records then cost their node a few bytes of manifest each.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(MANIFEST_VERSION).bytes(self.address.as_bytes())?;
        w.raw(&self.root)
            .u8(self.params.k)
            .u8(self.params.m)
            .u64(self.payload_len)
            .u64(self.epoch);
        w.u32(u32::try_from(self.rows.len()).map_err(|_| KvsError::Overflow("manifest rows"))?);
        let mut prev: &[u8] = &[];
        for (key, cols) in &self.rows {
            let too_long = || KvsError::TooLarge {
                what: "key",
                size: key.len(),
                limit: u16::MAX.into(),
            };
            let shared = prev
                .iter()
                .zip(key.iter())
                .take_while(|(a, b)| a == b)
                .count();
            let rest = key.get(shared..).unwrap_or_default();
            w.u16(u16::try_from(shared).map_err(|_| too_long())?)
                .u16(u16::try_from(rest.len()).map_err(|_| too_long())?)
                .raw(rest);
            w.u8(u8::try_from(cols.len()).map_err(|_| KvsError::TooLarge {
                what: "column count",
                size: cols.len(),
                limit: u8::MAX.into(),
            })?);
            for (name, len) in cols {
                w.u8(u8::try_from(name.len()).map_err(|_| KvsError::TooLarge {
                    what: "column name",
                    size: name.len(),
                    limit: u8::MAX.into(),
                })?);
                w.raw(name.as_bytes()).u32(*len);
            }
            prev = key;
        }
        Ok(w.finish())
    }

    /// Parses [`Manifest::encode`] output.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "manifest");
        if r.u8()? != MANIFEST_VERSION {
            return Err(KvsError::malformed("manifest", "unknown version"));
        }
        let address = String::from_utf8(r.bytes()?.to_vec())
            .map_err(|_| KvsError::malformed("manifest", "address not utf-8"))?;
        let root = r.array::<32>()?;
        let params = CodingParams::new(r.u8()?, r.u8()?)?;
        let payload_len = r.u64()?;
        let epoch = r.u64()?;
        let n = r.u32()?;
        let mut rows: Vec<ManifestRow> = Vec::new();
        for _ in 0..n {
            let shared = usize::from(r.u16()?);
            let rest_len = r.u16()?;
            let rest = r.take(rest_len.into())?;
            let prev: &[u8] = rows.last().map_or(&[], |(k, _)| k.as_slice());
            let head = prev.get(..shared).ok_or(KvsError::malformed(
                "manifest",
                "shared key prefix too long",
            ))?;
            if !rest.is_empty() && rest.first() == prev.get(shared) {
                return Err(KvsError::malformed(
                    "manifest",
                    "shared key prefix not maximal",
                ));
            }
            let mut key = Vec::with_capacity(shared.saturating_add(rest.len()));
            key.extend_from_slice(head);
            key.extend_from_slice(rest);
            let ncols = r.u8()?;
            let mut cols = Vec::with_capacity(ncols.into());
            for _ in 0..ncols {
                let nlen = r.u8()?;
                let name = String::from_utf8(r.take(nlen.into())?.to_vec())
                    .map_err(|_| KvsError::malformed("manifest", "column not utf-8"))?;
                cols.push((name, r.u32()?));
            }
            rows.push((key, cols));
        }
        r.finish()?;
        let m = Self {
            address,
            root,
            params,
            payload_len,
            epoch,
            rows,
        };
        if !m.rows.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
            return Err(KvsError::malformed("manifest", "rows not sorted"));
        }
        m.entries()?;
        Ok(m)
    }
}

/// Version byte of the manifest encoding (2: keys prefix-compressed).
const MANIFEST_VERSION: u8 = 2;

/// What the chain's name-node index attests for a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Data hash of the record.
    pub dhash: Hash,
    /// Logical size of the record in bytes.
    pub size: u64,
    /// Merkle root over the shard hashes of the stripe holding the record.
    pub root: Hash,
    /// Placement epoch the stripe was written under.
    pub epoch: u64,
    /// Coding parameters of the stripe.
    pub params: CodingParams,
    /// Payload length of the stripe (fixes the shard length for audits).
    pub payload_len: u64,
}

/// A packed payload and its directory rows (stripe root not yet known).
#[derive(Debug, Clone)]
pub struct Packed {
    /// Concatenated cells of all records, in key order.
    pub payload: Vec<u8>,
    /// Manifest rows: `(key, [(column, len)])`, sorted by key.
    pub rows: Vec<ManifestRow>,
    /// `(key, dhash, size)` per record, sorted by key.
    pub hashes: Vec<(Vec<u8>, Hash, u64)>,
}

/// Concatenates the cells of `records` (all of one address), sorted by key, into one payload.
pub fn pack(records: &[Record]) -> Result<Packed> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    if sorted
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.key == b.key))
    {
        return Err(KvsError::Duplicate);
    }
    let mut payload = Vec::new();
    let mut rows = Vec::with_capacity(sorted.len());
    let mut hashes = Vec::with_capacity(sorted.len());
    for rec in sorted {
        let mut cols = Vec::with_capacity(rec.columns.len());
        for (name, cell) in &rec.columns {
            let len = u32::try_from(cell.len()).map_err(|_| KvsError::TooLarge {
                what: "cell",
                size: cell.len(),
                limit: u32::MAX as usize,
            })?;
            payload.extend_from_slice(cell);
            cols.push((name.clone(), len));
        }
        rows.push((rec.key.clone(), cols));
        hashes.push((rec.key.clone(), rec.dhash(), rec.size()));
    }
    Ok(Packed {
        payload,
        rows,
        hashes,
    })
}

/// A byte range of one data shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    /// Data shard index.
    pub index: u8,
    /// Offset inside the shard.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// The data-shard ranges covering payload bytes `offset..offset+len` of a systematic stripe.
pub fn data_ranges(
    params: CodingParams,
    payload_len: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<ShardRange>> {
    let shard_len = params.shard_len(payload_len);
    let end = offset
        .checked_add(len)
        .ok_or(KvsError::Overflow("cell range"))?;
    if end > payload_len {
        return Err(KvsError::malformed("cell span", "outside payload"));
    }
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < end {
        let index = pos
            .checked_div(shard_len)
            .ok_or(KvsError::Overflow("shard index"))?;
        let in_shard = pos
            .checked_rem(shard_len)
            .ok_or(KvsError::Overflow("shard offset"))?;
        let room = shard_len
            .checked_sub(in_shard)
            .ok_or(KvsError::Overflow("shard room"))?;
        let take = room.min(end.saturating_sub(pos));
        out.push(ShardRange {
            index: u8::try_from(index).map_err(|_| KvsError::Overflow("shard index"))?,
            offset: in_shard,
            len: take,
        });
        pos = pos.saturating_add(take);
    }
    Ok(out)
}

/// Key of an address's stripe-directory entry: `x | address | root`.
pub fn stripe_dir_key(address: &str, root: &Hash) -> Vec<u8> {
    let mut out = address_prefix(address);
    out.extend_from_slice(root);
    out
}

/// Prefix of every stripe-directory key of `address`.
pub fn address_prefix(address: &str) -> Vec<u8> {
    let mut out = vec![b'x'];
    keys::push_component(&mut out, address.as_bytes());
    out
}

/// Accounting of one read: the billing unit is the number of addresses traversed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats {
    /// Distinct address partitions traversed.
    pub addresses_traversed: u64,
    /// Rows returned.
    pub rows: u64,
    /// Shard bytes fetched from nodes (cells, or whole shards when degraded).
    pub bytes_fetched: u64,
    /// Reads that had to reconstruct from parity.
    pub degraded: u64,
    /// Nodes whose row for a checked read named another stripe than the index (the index won).
    pub index_disagreements: u64,
}

impl ReadStats {
    /// Adds another read's accounting.
    pub fn absorb(&mut self, o: &ReadStats) {
        self.addresses_traversed = self
            .addresses_traversed
            .saturating_add(o.addresses_traversed);
        self.rows = self.rows.saturating_add(o.rows);
        self.bytes_fetched = self.bytes_fetched.saturating_add(o.bytes_fetched);
        self.degraded = self.degraded.saturating_add(o.degraded);
        self.index_disagreements = self
            .index_disagreements
            .saturating_add(o.index_disagreements);
    }
}

/// Which data an agent's storage node accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum StorageMode {
    /// Only the configured owners' addresses (still stored k+m across nodes).
    Private {
        /// Addresses (address pools of the agent's users) this node stores.
        addresses: BTreeSet<String>,
    },
    /// Any data, for a reward.
    #[default]
    Shared,
}

impl StorageMode {
    /// Whether a record of `address` may be stored here.
    pub fn admits(&self, address: &str) -> bool {
        match self {
            StorageMode::Private { addresses } => addresses.contains(address),
            StorageMode::Shared => true,
        }
    }
    /// Whether this is shared mode.
    pub fn is_shared(&self) -> bool {
        matches!(self, StorageMode::Shared)
    }
}

/// A request for a storage fee quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRequest {
    /// Logical bytes stored (sum of the record's cells).
    pub bytes: u64,
    /// Epochs the data is to be kept.
    pub epochs: u64,
    /// Whether the storing node runs in shared mode.
    pub shared: bool,
}

/// A storage fee quote in the token's base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeQuote {
    /// Amount due.
    pub amount: u128,
    /// Whether the shared-mode waiver applied.
    pub waived: bool,
}

/// The hook where the token rules price storage (bytes × epochs) and decide waivers.
pub trait FeePolicy {
    /// Quotes the fee for a request.
    fn quote(&self, req: &FeeRequest) -> Result<FeeQuote>;
}

/// Linear pricing: `bytes × epochs × price`, waived in shared mode if configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearFee {
    /// Base units per byte per epoch.
    pub price_per_byte_epoch: u64,
    /// Waive the fee for shared-mode storage (the brief's default).
    pub shared_waiver: bool,
}

impl FeePolicy for LinearFee {
    fn quote(&self, req: &FeeRequest) -> Result<FeeQuote> {
        if req.shared && self.shared_waiver {
            return Ok(FeeQuote {
                amount: 0,
                waived: true,
            });
        }
        let amount = u128::from(req.bytes)
            .checked_mul(u128::from(req.epochs))
            .and_then(|v| v.checked_mul(u128::from(self.price_per_byte_epoch)))
            .ok_or(KvsError::Overflow("fee"))?;
        Ok(FeeQuote {
            amount,
            waived: false,
        })
    }
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

    proptest! {
        #[test]
        fn data_ranges_cover_exactly(payload_len in 1u64..10_000, a in 0u64..10_000, b in 0u64..10_000, k in 1u8..8) {
            let p = CodingParams::new(k, 2).unwrap();
            let (off, len) = (a % payload_len, b % payload_len);
            let len = len.min(payload_len - off);
            let ranges = data_ranges(p, payload_len, off, len).unwrap();
            let total: u64 = ranges.iter().map(|r| r.len).sum();
            prop_assert_eq!(total, len);
            let sl = p.shard_len(payload_len);
            let mut pos = off;
            for r in &ranges {
                prop_assert_eq!(u64::from(r.index) * sl + r.offset, pos);
                prop_assert!(r.offset + r.len <= sl);
                pos += r.len;
            }
        }

        #[test]
        fn manifests_round_trip(rows in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..8),
                                    proptest::collection::vec(("[a-z]{1,8}", 0u32..100), 0..4), 0..6), epoch in any::<u64>()) {
            let rows: Vec<_> = rows.into_iter().collect();
            let total: u64 = rows.iter().flat_map(|(_, c)| c.iter().map(|(_, l)| u64::from(*l))).sum();
            let m = Manifest { address: "bc1q".into(), root: [3; 32], params: CodingParams::default(), payload_len: total, epoch, rows };
            prop_assert_eq!(Manifest::decode(&m.encode().unwrap()).unwrap(), m);
        }

        #[test]
        fn prefix_compressed_keys_round_trip(keys in proptest::collection::btree_set(proptest::collection::vec(0u8..3, 0..6), 0..12)) {
            let rows: Vec<ManifestRow> = keys.into_iter().map(|k| (k, vec![("v".to_string(), 1)])).collect();
            let m = Manifest { address: "bc1q".into(), root: [3; 32], params: CodingParams::default(), payload_len: rows.len() as u64, epoch: 1, rows };
            let bytes = m.encode().unwrap();
            let back = Manifest::decode(&bytes).unwrap();
            prop_assert_eq!(back.encode().unwrap(), bytes);
            prop_assert_eq!(back, m);
        }

        #[test]
        fn manifest_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = Manifest::decode(&bytes);
        }
    }

    #[test]
    fn a_shared_key_prefix_must_be_the_longest() {
        let m = Manifest {
            address: "a".into(),
            root: [0; 32],
            params: CodingParams::default(),
            payload_len: 2,
            epoch: 1,
            rows: vec![
                (b"key-1".to_vec(), vec![("v".to_string(), 1)]),
                (b"key-2".to_vec(), vec![("v".to_string(), 1)]),
            ],
        };
        let bytes = m.encode().unwrap();
        // the second row shares 4 bytes ("key-") and keeps "2"
        let second = bytes.len() - (2 + 2 + 1 + 1 + 1 + 1 + 4);
        assert_eq!(&bytes[second..second + 5], &[0, 4, 0, 1, b'2']);
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // the same key written with a shorter shared prefix is refused (one encoding only)
        let mut other = bytes[..second].to_vec();
        other.extend_from_slice(&[0, 3, 0, 2, b'-', b'2']);
        other.extend_from_slice(&bytes[second + 5..]);
        assert!(Manifest::decode(&other).is_err());
        // a shared prefix longer than the previous key is refused
        let mut long = bytes.clone();
        long[second + 1] = 9;
        assert!(Manifest::decode(&long).is_err());
    }

    #[test]
    fn pack_sorts_places_cells_and_rejects_duplicate_keys() {
        let r1 = Record::new(
            b"k1".to_vec(),
            [
                ("a".to_string(), b"xx".to_vec()),
                ("b".to_string(), b"yyy".to_vec()),
            ],
        );
        let r2 = Record::new(b"k2".to_vec(), [("a".to_string(), b"z".to_vec())]);
        let p = pack(&[r2, r1.clone()]).unwrap();
        assert_eq!(p.payload, b"xxyyyz");
        let m = Manifest {
            address: "a".into(),
            root: [0; 32],
            params: CodingParams::default(),
            payload_len: 6,
            epoch: 1,
            rows: p.rows,
        };
        let e = m.find(b"k2").unwrap().unwrap();
        assert_eq!(
            e.cells,
            vec![CellSpan {
                column: "a".into(),
                offset: 5,
                len: 1
            }]
        );
        assert_eq!(m.key_range(), (&b"k1"[..], &b"k2"[..]));
        assert_eq!(p.hashes[0].1, r1.dhash());
        assert!(matches!(pack(&[r1.clone(), r1]), Err(KvsError::Duplicate)));
        let short = Manifest {
            payload_len: 5,
            ..m
        };
        assert!(short.entries().is_err());
    }

    #[test]
    fn dhash_depends_on_every_cell_and_name() {
        let a = Record::new(b"k".to_vec(), [("c".to_string(), b"v".to_vec())]);
        let b = Record::new(b"k".to_vec(), [("c".to_string(), b"w".to_vec())]);
        let c = Record::new(b"k".to_vec(), [("d".to_string(), b"v".to_vec())]);
        assert_ne!(a.dhash(), b.dhash());
        assert_ne!(a.dhash(), c.dhash());
    }

    #[test]
    fn private_mode_admits_only_its_addresses_and_shared_fees_are_waived() {
        let m = StorageMode::Private {
            addresses: ["bc1qa".to_string()].into(),
        };
        assert!(m.admits("bc1qa"));
        assert!(!m.admits("bc1qb"));
        assert!(StorageMode::Shared.admits("anything"));
        let fee = LinearFee {
            price_per_byte_epoch: 3,
            shared_waiver: true,
        };
        let q = fee
            .quote(&FeeRequest {
                bytes: 1000,
                epochs: 10,
                shared: false,
            })
            .unwrap();
        assert_eq!(
            q,
            FeeQuote {
                amount: 30_000,
                waived: false
            }
        );
        let q = fee
            .quote(&FeeRequest {
                bytes: 1000,
                epochs: 10,
                shared: true,
            })
            .unwrap();
        assert_eq!(
            q,
            FeeQuote {
                amount: 0,
                waived: true
            }
        );
        let no_waiver = LinearFee {
            shared_waiver: false,
            ..fee
        };
        assert_eq!(
            no_waiver
                .quote(&FeeRequest {
                    bytes: 1,
                    epochs: 1,
                    shared: true
                })
                .unwrap()
                .amount,
            3
        );
        let big = LinearFee {
            price_per_byte_epoch: u64::MAX,
            shared_waiver: false,
        };
        assert!(big
            .quote(&FeeRequest {
                bytes: u64::MAX,
                epochs: u64::MAX,
                shared: false
            })
            .is_err());
    }
}
