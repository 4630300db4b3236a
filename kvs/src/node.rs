//! A storage node's local logic over a [`Store`]: it keeps shards, each stripe's manifest of
//! rows, and the row index of the addresses it serves; it verifies shards before storing and
//! before serving, and answers audits. The network server wraps this type.
//!
//! Key layout: `s | root | index` → stored shard; `m | root` → stripe manifest (keys and cell
//! sizes of its records); `x | address | root` → the stripe's first and last key, so gets and
//! scans of an address read only the manifests whose key range overlaps.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::audit::{self, AuditProof, Challenge};
use crate::coding::StoredShard;
use crate::error::{KvsError, Result};
use crate::merkle::Hash;
use crate::model::{self, Manifest, RowEntry, StorageMode};
use crate::store::{Store, WriteBatch};
use crate::wire::{Reader, Writer};

/// Largest shard a node accepts (64 MiB).
pub const MAX_SHARD_BYTES: usize = 64 << 20;

/// What a client needs from a storage node, in-process or over the network.
pub trait NodeApi: Send + Sync {
    /// The node's id.
    fn id(&self) -> &str;
    /// Stores a verified shard with its stripe manifest.
    fn put_shard(&self, root: &Hash, index: u8, shard: &[u8], manifest: &Manifest) -> Result<()>;
    /// A verified shard; `Ok(None)` if not held, an error if corrupt.
    fn get_shard(&self, root: &Hash, index: u8) -> Result<Option<StoredShard>>;
    /// A byte range of a verified shard's data.
    fn get_shard_range(
        &self,
        root: &Hash,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>>;
    /// Manifests of `address` whose key range meets `[lo, hi]` or `[lo, hi)`.
    fn manifests_of(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> Result<Vec<Manifest>>;
    /// One stripe's manifest.
    fn manifest(&self, root: &Hash) -> Result<Option<Manifest>>;
    /// Every `(root, index)` held.
    fn inventory(&self) -> Result<Vec<(Hash, u8)>>;
    /// Held shards failing verification.
    fn scrub(&self) -> Result<Vec<(Hash, u8)>>;
    /// Deletes a shard (and the stripe's manifest with its last shard).
    fn delete_shard(&self, root: &Hash, index: u8) -> Result<()>;
    /// Answers a storage audit.
    fn answer_audit(&self, ch: &Challenge) -> Result<AuditProof>;

    /// A cheap request answering whether the node is reachable (liveness probes).
    fn ping(&self) -> Result<()> {
        self.manifest(&[0u8; 32]).map(|_| ())
    }

    /// The location of the record `address`/`key`.
    fn row(&self, address: &str, key: &[u8]) -> Result<Option<RowEntry>> {
        for m in self.manifests_of(address, key, Some(key), true)? {
            if let Some(e) = m.find(key)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Records of `address` with `start <= key < end`, in key order, at most `limit`.
    fn scan_rows(
        &self,
        address: &str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, RowEntry)>> {
        let mut out = Vec::new();
        for m in self.manifests_of(address, start, end, false)? {
            for (k, e) in m.entries()? {
                if k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e) {
                    out.push((k, e));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        Ok(out)
    }
}

fn encode_range(first: &[u8], last: &[u8]) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes(first)?.bytes(last)?;
    Ok(w.finish())
}

fn decode_range(v: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut r = Reader::new(v, "stripe directory entry");
    let first = r.bytes()?.to_vec();
    let last = r.bytes()?.to_vec();
    r.finish()?;
    Ok((first, last))
}

fn shard_key(root: &Hash, index: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.push(b's');
    k.extend_from_slice(root);
    k.push(index);
    k
}

fn manifest_key(root: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'm');
    k.extend_from_slice(root);
    k
}

/// One storage node's state and request handling.
pub struct LocalNode {
    id: String,
    store: Arc<dyn Store>,
    mode: StorageMode,
    online: AtomicBool,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl LocalNode {
    /// A node named `id` over `store`, accepting data per `mode`.
    pub fn new(id: impl Into<String>, store: Arc<dyn Store>, mode: StorageMode) -> Self {
        Self {
            id: id.into(),
            store,
            mode,
            online: AtomicBool::new(true),
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The backing store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Takes the node offline or back (in-process fault injection: an offline node refuses
    /// every request as a dead process would).
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::SeqCst);
    }

    fn check_online(&self) -> Result<()> {
        if self.online.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(KvsError::Unavailable(self.id.clone()))
        }
    }

    fn store_shard(&self, root: &Hash, index: u8, shard: &[u8], manifest: &Manifest) -> Result<()> {
        self.check_online()?;
        if shard.len() > MAX_SHARD_BYTES {
            return Err(KvsError::TooLarge {
                what: "shard",
                size: shard.len(),
                limit: MAX_SHARD_BYTES,
            });
        }
        if !self.mode.admits(&manifest.address) {
            return Err(KvsError::NotAdmitted(manifest.address.clone()));
        }
        if &manifest.root != root {
            return Err(KvsError::malformed(
                "manifest",
                "root differs from the shard's stripe",
            ));
        }
        let stored = StoredShard::open(shard, root, index)?;
        if stored.params != manifest.params || stored.payload_len != manifest.payload_len {
            return Err(KvsError::malformed(
                "manifest",
                "coding differs from the shard's",
            ));
        }
        manifest.entries()?;
        let (first, last) = manifest.key_range();
        for (other_root, other) in self.manifests(&manifest.address, first, Some(last), true)? {
            if &other_root == root {
                continue;
            }
            if manifest
                .rows
                .iter()
                .any(|(k, _)| other.rows.binary_search_by(|(o, _)| o.cmp(k)).is_ok())
            {
                return Err(KvsError::Duplicate);
            }
        }
        let mut batch = WriteBatch::new();
        batch.put(
            model::stripe_dir_key(&manifest.address, root),
            encode_range(first, last)?,
        );
        batch.put(manifest_key(root), manifest.encode()?);
        batch.put(shard_key(root, index), shard.to_vec());
        self.store.write(batch)
    }

    /// Manifests of `address` whose key range meets `[lo, hi]` (`hi_inclusive`) or `[lo, hi)`.
    pub fn manifests(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> Result<Vec<(Hash, Manifest)>> {
        self.check_online()?;
        let prefix = model::address_prefix(address);
        let mut out = Vec::new();
        for (k, v) in self.store.scan_prefix(&prefix, usize::MAX)? {
            let (first, last) = decode_range(&v)?;
            let below_hi = match hi {
                None => true,
                Some(h) if hi_inclusive => first.as_slice() <= h,
                Some(h) => first.as_slice() < h,
            };
            if last.as_slice() < lo || !below_hi {
                continue;
            }
            let root: Hash = k
                .get(prefix.len()..)
                .and_then(|r| <[u8; 32]>::try_from(r).ok())
                .ok_or(KvsError::malformed("stripe directory key", "bad root"))?;
            if let Some(m) = self.store.get(&manifest_key(&root))? {
                out.push((root, Manifest::decode(&m)?));
            }
        }
        Ok(out)
    }
}

impl NodeApi for LocalNode {
    fn id(&self) -> &str {
        &self.id
    }

    /// Verifies the shard against `root` first. Re-storing the same shard is a no-op; a key of
    /// the address already held in a different stripe is a [`KvsError::Duplicate`].
    fn put_shard(&self, root: &Hash, index: u8, shard: &[u8], manifest: &Manifest) -> Result<()> {
        self.store_shard(root, index, shard, manifest)
    }

    /// The verified shard `index` of `root`; `Ok(None)` if not held, an error if corrupt.
    fn get_shard(&self, root: &Hash, index: u8) -> Result<Option<StoredShard>> {
        self.check_online()?;
        match self.store.get(&shard_key(root, index))? {
            Some(bytes) => Ok(Some(StoredShard::open(&bytes, root, index)?)),
            None => Ok(None),
        }
    }

    /// Bytes `offset..offset+len` of the verified shard (the whole shard is checked first).
    fn get_shard_range(
        &self,
        root: &Hash,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some(s) = self.get_shard(root, index)? else {
            return Ok(None);
        };
        let start = usize::try_from(offset).map_err(|_| KvsError::Overflow("range"))?;
        let end = start
            .checked_add(usize::try_from(len).map_err(|_| KvsError::Overflow("range"))?)
            .ok_or(KvsError::Overflow("range"))?;
        s.data
            .get(start..end)
            .map(|b| Some(b.to_vec()))
            .ok_or(KvsError::malformed("range request", "outside shard"))
    }

    /// The stripe manifest, if this node holds one.
    fn manifest(&self, root: &Hash) -> Result<Option<Manifest>> {
        self.check_online()?;
        self.store
            .get(&manifest_key(root))?
            .map(|b| Manifest::decode(&b))
            .transpose()
    }

    /// Every `(root, index)` this node holds.
    fn inventory(&self) -> Result<Vec<(Hash, u8)>> {
        self.check_online()?;
        let mut out = Vec::new();
        for k in self.store.scan_prefix_keys(b"s", usize::MAX)? {
            match k.as_slice() {
                [b's', rest @ ..] if rest.len() == 33 => {
                    let (root, idx) = rest.split_at(32);
                    let mut r = [0u8; 32];
                    r.copy_from_slice(root);
                    out.push((r, idx.first().copied().unwrap_or(0)));
                }
                _ => return Err(KvsError::malformed("shard key", "wrong length")),
            }
        }
        Ok(out)
    }

    /// Held shards that fail verification (a scrub pass).
    fn scrub(&self) -> Result<Vec<(Hash, u8)>> {
        let mut bad = Vec::new();
        for (root, idx) in self.inventory()? {
            match self.get_shard(&root, idx) {
                Ok(_) => {}
                Err(KvsError::CorruptShard { .. }) => bad.push((root, idx)),
                Err(e) => return Err(e),
            }
        }
        Ok(bad)
    }

    /// Removes shard `index` of `root`; when it was the node's last shard of the stripe, the
    /// manifest and row entries go too.
    fn delete_shard(&self, root: &Hash, index: u8) -> Result<()> {
        self.check_online()?;
        let mut batch = WriteBatch::new();
        batch.delete(shard_key(root, index));
        let mut prefix = vec![b's'];
        prefix.extend_from_slice(root);
        let others = self
            .store
            .scan_prefix_keys(&prefix, 2)?
            .into_iter()
            .filter(|k| k.last() != Some(&index))
            .count();
        if others == 0 {
            if let Some(m) = self.store.get(&manifest_key(root))? {
                let m = Manifest::decode(&m)?;
                batch.delete(model::stripe_dir_key(&m.address, root));
            }
            batch.delete(manifest_key(root));
        }
        self.store.write(batch)
    }

    /// Answers an audit challenge from the stored shard.
    fn answer_audit(&self, ch: &Challenge) -> Result<AuditProof> {
        let s = self
            .get_shard(&ch.root, ch.index)?
            .ok_or(KvsError::malformed("audit", "shard not held"))?;
        audit::prove(ch, &s.data, &s.path)
    }

    fn manifests_of(
        &self,
        address: &str,
        lo: &[u8],
        hi: Option<&[u8]>,
        hi_inclusive: bool,
    ) -> Result<Vec<Manifest>> {
        Ok(self
            .manifests(address, lo, hi, hi_inclusive)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
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
    use crate::coding::{encode, CodingParams};
    use crate::model::{pack, Record};
    use crate::store::MemStore;

    fn manifest_for(address: &str, records: &[Record]) -> (crate::coding::Stripe, Manifest) {
        let p = CodingParams::default();
        let packed = pack(records).unwrap();
        let s = encode(p, &packed.payload).unwrap();
        let m = Manifest {
            address: address.into(),
            root: s.root,
            params: p,
            payload_len: s.payload_len,
            epoch: 1,
            rows: packed.rows,
        };
        (s, m)
    }

    fn rec(key: &str, v: &str) -> Record {
        Record::new(
            key.as_bytes().to_vec(),
            [("c".to_string(), v.as_bytes().to_vec())],
        )
    }

    #[test]
    fn stores_verifies_scans_and_deletes() {
        let mem = Arc::new(MemStore::new());
        let n = LocalNode::new("n0", mem.clone(), StorageMode::Shared);
        let (s, m) = manifest_for("addr", &[rec("k1", "a"), rec("k2", "b"), rec("k3", "c")]);
        let shard = s.stored_shard(0).unwrap().encode();
        n.put_shard(&s.root, 0, &shard, &m).unwrap();
        n.put_shard(&s.root, 0, &shard, &m).unwrap();
        assert_eq!(n.get_shard(&s.root, 0).unwrap().unwrap().data, s.shards[0]);
        let keys: Vec<_> = n
            .scan_rows("addr", b"k2", None, 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"k2".to_vec(), b"k3".to_vec()]);
        let keys: Vec<_> = n
            .scan_rows("addr", b"", Some(b"k2"), 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"k1".to_vec()]);
        assert!(n.scan_rows("other", b"", None, 10).unwrap().is_empty());
        assert_eq!(n.inventory().unwrap(), vec![(s.root, 0)]);
        // a shard under the wrong index or root is refused
        assert!(n.put_shard(&s.root, 1, &shard, &m).is_err());
        assert!(n.row("addr", b"k0").unwrap().is_none());
        assert_eq!(n.row("addr", b"k3").unwrap().unwrap().cells[0].offset, 2);
        // the same key bound to another stripe is a duplicate
        let (s2, m2) = manifest_for("addr", &[rec("k1", "different")]);
        let err = n
            .put_shard(&s2.root, 0, &s2.stored_shard(0).unwrap().encode(), &m2)
            .unwrap_err();
        assert!(matches!(err, KvsError::Duplicate));
        n.delete_shard(&s.root, 0).unwrap();
        assert!(n.get_shard(&s.root, 0).unwrap().is_none());
        assert!(n.row("addr", b"k1").unwrap().is_none());
        assert!(n.manifest(&s.root).unwrap().is_none());
    }

    #[test]
    fn corruption_on_disk_is_detected_by_reads_and_scrub() {
        let mem = Arc::new(MemStore::new());
        let n = LocalNode::new("n0", mem.clone(), StorageMode::Shared);
        let (s, m) = manifest_for("addr", &[rec("k1", "hello world")]);
        n.put_shard(&s.root, 2, &s.stored_shard(2).unwrap().encode(), &m)
            .unwrap();
        assert!(n.scrub().unwrap().is_empty());
        assert!(mem.mutate(&shard_key(&s.root, 2), |v| {
            let last = v.len() - 1;
            v[last] ^= 0x80;
        }));
        assert!(matches!(
            n.get_shard(&s.root, 2),
            Err(KvsError::CorruptShard { index: 2, .. })
        ));
        assert_eq!(n.scrub().unwrap(), vec![(s.root, 2)]);
    }

    #[test]
    fn private_mode_offline_and_oversize_are_refused_with_clear_errors() {
        let n = LocalNode::new(
            "n0",
            Arc::new(MemStore::new()),
            StorageMode::Private {
                addresses: ["mine".to_string()].into(),
            },
        );
        let (s, m) = manifest_for("theirs", &[rec("k", "v")]);
        let shard = s.stored_shard(0).unwrap().encode();
        assert!(matches!(
            n.put_shard(&s.root, 0, &shard, &m),
            Err(KvsError::NotAdmitted(_))
        ));
        let big = vec![0u8; MAX_SHARD_BYTES + 1];
        assert!(matches!(
            n.put_shard(&s.root, 0, &big, &m),
            Err(KvsError::TooLarge { .. })
        ));
        n.set_online(false);
        assert!(matches!(
            n.get_shard(&s.root, 0),
            Err(KvsError::Unavailable(_))
        ));
    }
}
