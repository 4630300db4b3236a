//! RocksDB backend: the default on-disk store of a storage node.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, WriteOptions, DB};

use super::{BatchOp, Store, WriteBatch};
use crate::error::Result;

/// How acknowledged writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every batch is appended to RocksDB's write-ahead log and the WAL is fsynced before the
    /// write returns: acknowledged data survives power loss. The default.
    #[default]
    Fsync,
    /// The WAL is written but not fsynced: acknowledged data survives a process crash
    /// (`kill -9`) but not a power loss. For benchmarks and tests.
    WalOnly,
}

/// A RocksDB database in one directory.
pub struct RocksStore {
    db: DB,
    sync: SyncMode,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("sync", &self.sync)
            .finish()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the database at `path` with fsynced writes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SyncMode::Fsync)
    }

    /// Opens the database at `path` with the given durability mode.
    pub fn open_with(path: impl AsRef<Path>, sync: SyncMode) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, path)?;
        Ok(Self { db, sync })
    }

    fn write_opts(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.sync == SyncMode::Fsync);
        w.disable_wal(false);
        w
    }
}

impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => wb.put(k, v),
                BatchOp::Delete(k) => wb.delete(k),
            }
        }
        self.db.write_opt(wb, &self.write_opts())?;
        Ok(())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut ro = ReadOptions::default();
        if let Some(e) = end {
            ro.set_iterate_upper_bound(e.to_vec());
        }
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_opt(IteratorMode::From(start, Direction::Forward), ro)
            .take(limit)
        {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut ro = ReadOptions::default();
        if let Some(e) = end {
            ro.set_iterate_upper_bound(e.to_vec());
        }
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek(start);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(k) = it.key() else { break };
            out.push(k.to_vec());
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    fn get_range(&self, key: &[u8], offset: usize, len: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_pinned(key)?.map(|v| {
            let start = offset.min(v.len());
            let end = start.saturating_add(len).min(v.len());
            v.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rocks_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path()).unwrap();
        super::super::conformance::all(&s);
    }

    #[test]
    fn rocks_store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(b"a", b"1").put(b"b", b"2");
            s.write(b).unwrap();
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.scan_prefix(b"", 10).unwrap().len(), 2);
    }
}
