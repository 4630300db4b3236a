//! Key-value backends that hold a storage node's shards and row index.
//!
//! [`Store`] is a small synchronous trait: get, put, delete, ordered range scans and atomic
//! batches. [`RocksStore`] is the default on-disk backend, [`MemStore`] serves unit tests and
//! simulations, and `HdfsStore` (cargo feature `hdfs`) keeps values in HDFS with its
//! write-ahead state on local disk.

mod mem;
#[cfg(feature = "rocksdb")]
mod rocks;

#[cfg(feature = "hdfs")]
mod hdfs;

pub use mem::MemStore;
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksStore, SyncMode};

#[cfg(feature = "hdfs")]
pub use hdfs::HdfsStore;

use crate::error::Result;

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// A group of writes applied all-or-nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The operations, applied in order.
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Put(key.into(), value.into()));
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Delete(key.into()));
        self
    }
    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// An ordered byte-key store with atomic batches.
///
/// Once `write` (or `put`/`delete`) returns `Ok`, the change survives a process crash; the
/// backend documents what it does for a power loss.
pub trait Store: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies every operation of `batch` atomically.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Up to `limit` entries with `start <= key < end` (no upper bound if `end` is `None`),
    /// in key order.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Up to `limit` keys with `start <= key < end` (no upper bound if `end` is `None`), in
    /// key order, without copying their values (inventories of shards).
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .scan(start, end, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Up to `limit` keys starting with `prefix`, in key order, without their values.
    fn scan_prefix_keys(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let end = crate::keys::prefix_end(prefix);
        self.scan_keys(prefix, end.as_deref(), limit)
    }

    /// Sets one key.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    /// Removes one key.
    fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = crate::keys::prefix_end(prefix);
        self.scan(prefix, end.as_deref(), limit)
    }

    /// Bytes `offset..offset+len` of the value under `key` (clamped to its end).
    fn get_range(&self, key: &[u8], offset: usize, len: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key)?.map(|v| {
            let start = offset.min(v.len());
            let end = start.saturating_add(len).min(v.len());
            v.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod conformance {
    //! The behaviour every backend must show; each backend's tests call these.
    use super::*;

    pub fn put_get_delete(s: &dyn Store) {
        assert_eq!(s.get(b"a").unwrap(), None);
        s.put(b"a", b"1").unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        s.put(b"a", b"2").unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        s.delete(b"a").unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        s.delete(b"never-there").unwrap();
    }

    pub fn ordered_scans(s: &dyn Store) {
        for k in [&b"p/b"[..], b"p/a", b"q", b"p/c", b"o", b"p\xff"] {
            s.put(k, k).unwrap();
        }
        let keys: Vec<_> = s
            .scan_prefix(b"p/", 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![b"p/a".to_vec(), b"p/b".to_vec(), b"p/c".to_vec()]
        );
        let limited = s.scan_prefix(b"p/", 2).unwrap();
        assert_eq!(limited.len(), 2);
        let range: Vec<_> = s
            .scan(b"p/b", Some(b"q"), 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            range,
            vec![b"p/b".to_vec(), b"p/c".to_vec(), b"p\xff".to_vec()]
        );
        let open: Vec<_> = s
            .scan(b"p\xff", None, 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(open, vec![b"p\xff".to_vec(), b"q".to_vec()]);
        assert_eq!(
            s.scan_prefix_keys(b"p/", 100).unwrap(),
            vec![b"p/a".to_vec(), b"p/b".to_vec(), b"p/c".to_vec()]
        );
        assert_eq!(
            s.scan_keys(b"p/b", Some(b"q"), 2).unwrap(),
            vec![b"p/b".to_vec(), b"p/c".to_vec()]
        );
        assert_eq!(
            s.scan_keys(b"p\xff", None, 100).unwrap(),
            vec![b"p\xff".to_vec(), b"q".to_vec()]
        );
        assert_eq!(s.get_range(b"p/a", 1, 10).unwrap().unwrap(), b"/a".to_vec());
        assert_eq!(
            s.get_range(b"p/a", 9, 10).unwrap().unwrap(),
            Vec::<u8>::new()
        );
    }

    pub fn batches_are_applied_together(s: &dyn Store) {
        s.put(b"gone", b"x").unwrap();
        let mut b = WriteBatch::new();
        b.put(b"k1", b"v1").put(b"k2", b"v2").delete(b"gone");
        s.write(b).unwrap();
        assert_eq!(s.get(b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(s.get(b"k2").unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(s.get(b"gone").unwrap(), None);
    }

    pub fn all(s: &dyn Store) {
        put_get_delete(s);
        ordered_scans(s);
        batches_are_applied_together(s);
    }
}
