//! HDFS backend (cargo feature `hdfs`): values are HDFS files, one per key, named by the hex of
//! the key (hex keeps the key order) under a base directory.
//!
//! Atomic batches use a redo log on local disk, never in HDFS (HDFS erasure-coded directories
//! ignore hflush/hsync): a batch is first fsynced into a local RocksDB log, then applied to HDFS
//! (each put written to a temporary file, closed, then renamed over the final name), then
//! removed from the log. Opening the store replays any batch still in the log, so a batch
//! acknowledged before a crash is complete after restart. Readers may see a batch half applied
//! while it is being applied; batches are atomic with respect to crashes, not isolated.
//!
//! The calls block on a private tokio runtime: call them from plain threads or
//! `spawn_blocking`, never from inside an async task (that is reported as an error).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hdfs_native::{Client, WriteOptions};

use super::{BatchOp, RocksStore, Store, WriteBatch};
use crate::error::{KvsError, Result};
use crate::wire::{Reader, Writer};

/// Values in HDFS, write-ahead log on local disk.
pub struct HdfsStore {
    client: Client,
    base: String,
    rt: tokio::runtime::Runtime,
    wal: RocksStore,
    seq: AtomicU64,
}

impl std::fmt::Debug for HdfsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsStore")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn hdfs_err(e: hdfs_native::HdfsError) -> KvsError {
    KvsError::Hdfs(e.to_string())
}

fn encode_batch(b: &WriteBatch) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.u32(u32::try_from(b.ops.len()).map_err(|_| KvsError::Overflow("batch size"))?);
    for op in &b.ops {
        match op {
            BatchOp::Put(k, v) => {
                w.u8(0).bytes(k)?.bytes(v)?;
            }
            BatchOp::Delete(k) => {
                w.u8(1).bytes(k)?;
            }
        }
    }
    Ok(w.finish())
}

fn decode_batch(bytes: &[u8]) -> Result<WriteBatch> {
    let mut r = Reader::new(bytes, "hdfs redo batch");
    let n = r.u32()?;
    let mut b = WriteBatch::new();
    for _ in 0..n {
        match r.u8()? {
            0 => {
                let k = r.bytes()?.to_vec();
                let v = r.bytes()?.to_vec();
                b.put(k, v);
            }
            1 => {
                b.delete(r.bytes()?.to_vec());
            }
            _ => return Err(KvsError::malformed("hdfs redo batch", "unknown op")),
        }
    }
    r.finish()?;
    Ok(b)
}

impl HdfsStore {
    /// Connects to `url` (e.g. `hdfs://namenode:9000`), keeps values under `base` and the redo
    /// log in the local directory `wal_dir`; replays unfinished batches.
    pub fn open(url: &str, base: &str, wal_dir: impl AsRef<Path>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = Client::new(url).map_err(hdfs_err)?;
        let wal = RocksStore::open(wal_dir)?;
        let base = base.trim_end_matches('/').to_string();
        let store = Self {
            client,
            base,
            rt,
            wal,
            seq: AtomicU64::new(0),
        };
        store.block(async {
            store
                .client
                .mkdirs(&format!("{}/.tmp", store.base), 0o755, true)
                .await
                .map_err(hdfs_err)
        })?;
        let pending = store.wal.scan_prefix(b"", usize::MAX)?;
        let mut last = 0u64;
        for (k, v) in pending {
            let batch = decode_batch(&v)?;
            store.apply(&batch)?;
            store.wal.delete(&k)?;
            let mut seq = [0u8; 8];
            if let Some(s) = k.get(..8) {
                seq.copy_from_slice(s);
            }
            last = last.max(u64::from_be_bytes(seq));
        }
        store.seq.store(last.saturating_add(1), Ordering::SeqCst);
        Ok(store)
    }

    fn block<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(KvsError::Hdfs(
                "blocking hdfs call from inside an async runtime; use spawn_blocking".into(),
            ));
        }
        self.rt.block_on(fut)
    }

    fn path(&self, key: &[u8]) -> String {
        format!("{}/{}", self.base, hex::encode(key))
    }

    fn apply(&self, batch: &WriteBatch) -> Result<()> {
        self.block(async {
            for op in &batch.ops {
                match op {
                    BatchOp::Put(k, v) => {
                        let fin = self.path(k);
                        let n = self.seq.fetch_add(1, Ordering::SeqCst);
                        let tmp = format!("{}/.tmp/{}.{}", self.base, hex::encode(k), n);
                        let mut w = self
                            .client
                            .create(&tmp, WriteOptions::default().overwrite(true))
                            .await
                            .map_err(hdfs_err)?;
                        w.write(bytes::Bytes::from(v.clone()))
                            .await
                            .map_err(hdfs_err)?;
                        w.close().await.map_err(hdfs_err)?;
                        self.client
                            .rename(&tmp, &fin, true)
                            .await
                            .map_err(hdfs_err)?;
                    }
                    BatchOp::Delete(k) => match self.client.delete(&self.path(k), false).await {
                        Ok(_) | Err(hdfs_native::HdfsError::FileNotFound(_)) => {}
                        Err(e) => return Err(hdfs_err(e)),
                    },
                }
            }
            Ok(())
        })
    }
}

impl Store for HdfsStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.block(async {
            match self.client.read(&self.path(key)).await {
                Ok(r) => Ok(Some(
                    r.read_range(0, r.file_length())
                        .await
                        .map_err(hdfs_err)?
                        .to_vec(),
                )),
                Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(None),
                Err(e) => Err(hdfs_err(e)),
            }
        })
    }

    fn get_range(&self, key: &[u8], offset: usize, len: usize) -> Result<Option<Vec<u8>>> {
        self.block(async {
            match self.client.read(&self.path(key)).await {
                Ok(r) => {
                    let start = offset.min(r.file_length());
                    let take = len.min(r.file_length().saturating_sub(start));
                    Ok(Some(
                        r.read_range(start, take).await.map_err(hdfs_err)?.to_vec(),
                    ))
                }
                Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(None),
                Err(e) => Err(hdfs_err(e)),
            }
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let log_key = seq.to_be_bytes();
        self.wal.put(&log_key, &encode_batch(&batch)?)?;
        self.apply(&batch)?;
        self.wal.delete(&log_key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let listing = self.block(async {
            self.client
                .list_status(&self.base, false)
                .await
                .map_err(hdfs_err)
        })?;
        let mut keys: Vec<Vec<u8>> = listing
            .into_iter()
            .filter(|s| !s.isdir)
            .filter_map(|s| {
                s.path
                    .rsplit('/')
                    .next()
                    .and_then(|name| hex::decode(name).ok())
            })
            .filter(|k| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
            .collect();
        keys.sort();
        keys.truncate(limit);
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(v) = self.get(&k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redo_batches_round_trip() {
        let mut b = WriteBatch::new();
        b.put(b"k".to_vec(), b"v".to_vec()).delete(b"d".to_vec());
        assert_eq!(decode_batch(&encode_batch(&b).unwrap()).unwrap(), b);
        assert!(decode_batch(&[0, 0, 0, 1, 9]).is_err());
    }

    /// Runs against a real NameNode when `CARCHAIN_HDFS_URL` is set.
    #[test]
    fn hdfs_store_conforms_when_a_namenode_is_configured() {
        let Ok(url) = std::env::var("CARCHAIN_HDFS_URL") else {
            eprintln!("skipping hdfs integration test: CARCHAIN_HDFS_URL is not set (no HDFS can run on this machine)");
            return;
        };
        let wal = tempfile::tempdir().unwrap();
        let base = format!("/carchain-kvs-test/{}", std::process::id());
        let s = HdfsStore::open(&url, &base, wal.path()).unwrap();
        super::super::conformance::all(&s);
    }
}
