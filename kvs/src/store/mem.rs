//! In-memory backend for unit tests and simulations (nothing survives the process).

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use super::{BatchOp, Store, WriteBatch};
use crate::error::Result;

/// A `BTreeMap` behind a lock; batches are atomic because they run under one write lock.
#[derive(Debug, Default)]
pub struct MemStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Total bytes of keys and values held (for overhead accounting).
    pub fn stored_bytes(&self) -> usize {
        self.map
            .read()
            .iter()
            .map(|(k, v)| k.len().saturating_add(v.len()))
            .fold(0usize, usize::saturating_add)
    }
    /// Applies `f` to the value under `key` in place (fault injection in tests).
    pub fn mutate(&self, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.map.write().get_mut(key) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut map = self.map.write();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => {
                    map.insert(k, v);
                }
                BatchOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.map.read();
        let upper = match end {
            Some(e) => Bound::Excluded(e.to_vec()),
            None => Bound::Unbounded,
        };
        Ok(map
            .range((Bound::Included(start.to_vec()), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>> {
        let map = self.map.read();
        let upper = match end {
            Some(e) => Bound::Excluded(e.to_vec()),
            None => Bound::Unbounded,
        };
        Ok(map
            .range((Bound::Included(start.to_vec()), upper))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_conforms() {
        super::super::conformance::all(&MemStore::new());
    }
}
