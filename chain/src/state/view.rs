//! Reading the committed state and collecting a block's writes.

use std::collections::BTreeMap;
use std::ops::Bound;

/// A block's state changes: key → new value, or `None` for a deletion. Ordered, so applying
/// it is deterministic.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Why the state could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The backing store failed (I/O, corruption).
    #[error("state store: {0}")]
    Store(String),
    /// A Merkle node the commitment needs is missing from the store.
    #[error("state tree node {0} is missing")]
    MissingNode(String),
    /// A stored value did not decode.
    #[error("state entry {key} is malformed: {reason}")]
    Malformed {
        /// Hex of the key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// Read access to one version of the state.
pub trait StateView {
    /// The value under `key`, if any.
    ///
    /// # Errors
    /// [`StateError::Store`] when the backing store fails.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// All entries whose key starts with `prefix`, in key order, at most `limit` of them.
    ///
    /// # Errors
    /// [`StateError::Store`] when the backing store fails.
    #[allow(clippy::type_complexity)]
    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError>;
}

/// The state in memory: for unit tests and the simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemState {
    /// An empty state.
    pub fn new() -> Self {
        MemState::default()
    }

    /// Applies a write set.
    pub fn apply(&mut self, writes: &WriteSet) {
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.entries.insert(k.clone(), v.clone());
                }
                None => {
                    self.entries.remove(k);
                }
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the state is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.entries.iter()
    }
}

impl StateView for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.entries.get(key).cloned())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        Ok(self
            .entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// A pending view: a write set layered over a base view (a block being executed sees its own
/// earlier writes).
#[derive(Debug)]
pub struct Overlay<'a, V: ?Sized> {
    base: &'a V,
    writes: &'a WriteSet,
}

impl<'a, V: StateView + ?Sized> Overlay<'a, V> {
    /// `writes` over `base`.
    pub fn new(base: &'a V, writes: &'a WriteSet) -> Self {
        Overlay { base, writes }
    }
}

impl<V: StateView + ?Sized> StateView for Overlay<'_, V> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        // Merge the base's entries with the pending writes; deletions hide base entries, so
        // read enough of the base to still return `limit` live entries.
        let pending_deletes = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.is_none())
            .count();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .scan_prefix(prefix, limit.saturating_add(pending_deletes))?
            .into_iter()
            .collect();
        for (k, v) in self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_prefix_stays_inside_the_prefix_and_limit() {
        let mut s = MemState::new();
        let mut w = WriteSet::new();
        for k in [&b"a1"[..], b"a2", b"a3", b"b1", b"\x00"] {
            w.insert(k.to_vec(), Some(k.to_vec()));
        }
        s.apply(&w);
        let got = s.scan_prefix(b"a", 2).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, b"a1");
        assert_eq!(got[1].0, b"a2");
        assert_eq!(s.scan_prefix(b"b", 10).unwrap().len(), 1);
    }

    #[test]
    fn overlay_sees_pending_writes_and_deletes() {
        let mut s = MemState::new();
        let mut w = WriteSet::new();
        w.insert(b"k1".to_vec(), Some(b"v1".to_vec()));
        w.insert(b"k2".to_vec(), Some(b"v2".to_vec()));
        w.insert(b"k3".to_vec(), Some(b"v3".to_vec()));
        s.apply(&w);
        let mut pending = WriteSet::new();
        pending.insert(b"k1".to_vec(), None);
        pending.insert(b"k4".to_vec(), Some(b"v4".to_vec()));
        let o = Overlay::new(&s, &pending);
        assert_eq!(o.get(b"k1").unwrap(), None);
        assert_eq!(o.get(b"k2").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(o.get(b"k4").unwrap(), Some(b"v4".to_vec()));
        let keys: Vec<_> = o
            .scan_prefix(b"k", 3)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"k2".to_vec(), b"k3".to_vec(), b"k4".to_vec()]);
    }
}
