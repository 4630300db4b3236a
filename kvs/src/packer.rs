//! Automatic packing of small records: per-address buffers that become one stripe once they
//! hold enough bytes, so small values do not each pay a stripe's fixed costs (shard headers
//! with Merkle paths, manifests and directory entries on every node).
//!
//! [`PackBuffer`] decides, sans-IO, when an address's buffer is due (size, count, or age given
//! by the caller's clock); [`PackingWriter`] drives a [`Cluster`] with it. A buffered record is
//! **not** durable: it is acknowledged by the [`PutReceipt`] of the flush that writes it.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;

use crate::cluster::{Cluster, PutReceipt};
use crate::error::{KvsError, Result};
use crate::model::Record;
use crate::node::NodeApi;

/// When a buffer is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackPolicy {
    /// Flush once the buffered cells of an address reach this many bytes.
    pub target_bytes: usize,
    /// Flush once an address has this many records buffered.
    pub max_records: usize,
    /// Flush a buffer whose oldest record waited this long (in the caller's time unit).
    pub max_delay: u64,
}

impl Default for PackPolicy {
    /// 64 KiB stripes (RS(4,2) shards of 16 KiB: four 4 KiB audit chunks each), at most 4096
    /// records, at most 1 s (in milliseconds) of waiting.
    fn default() -> Self {
        Self {
            target_bytes: 64 << 10,
            max_records: 4096,
            max_delay: 1000,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    records: Vec<Record>,
    bytes: usize,
    since: u64,
}

/// Per-address buffers of records waiting to be packed into one stripe.
#[derive(Debug, Default)]
pub struct PackBuffer {
    policy: PackPolicy,
    pending: BTreeMap<String, Pending>,
}

impl PackBuffer {
    /// Empty buffers under `policy`.
    pub fn new(policy: PackPolicy) -> Self {
        Self {
            policy,
            pending: BTreeMap::new(),
        }
    }

    /// Buffers `record` of `address` at time `now`; returns the address's records when its
    /// buffer is due. The same key twice with the same bytes is ignored; with other bytes it
    /// is a [`KvsError::Duplicate`] (records are immutable).
    pub fn push(&mut self, address: &str, record: Record, now: u64) -> Result<Option<Vec<Record>>> {
        let p = self.pending.entry(address.to_string()).or_default();
        if let Some(same) = p.records.iter().find(|r| r.key == record.key) {
            return if same == &record {
                Ok(None)
            } else {
                Err(KvsError::Duplicate)
            };
        }
        if p.records.is_empty() {
            p.since = now;
        }
        p.bytes = p
            .bytes
            .saturating_add(usize::try_from(record.size()).unwrap_or(usize::MAX));
        p.records.push(record);
        if p.bytes >= self.policy.target_bytes || p.records.len() >= self.policy.max_records {
            return Ok(self.pending.remove(address).map(|p| p.records));
        }
        Ok(None)
    }

    /// Buffers whose oldest record has waited `max_delay` at time `now`, removed.
    pub fn due(&mut self, now: u64) -> Vec<(String, Vec<Record>)> {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.since) >= self.policy.max_delay)
            .map(|(a, _)| a.clone())
            .collect();
        late.into_iter()
            .filter_map(|a| self.pending.remove(&a).map(|p| (a, p.records)))
            .collect()
    }

    /// Every buffer, removed.
    pub fn drain(&mut self) -> Vec<(String, Vec<Record>)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(a, p)| (a, p.records))
            .collect()
    }

    /// Records buffered over all addresses.
    pub fn len(&self) -> usize {
        self.pending
            .values()
            .map(|p| p.records.len())
            .fold(0, usize::saturating_add)
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Writes records through a [`PackBuffer`]: small records of one address share a stripe.
pub struct PackingWriter<'a, N: NodeApi + ?Sized> {
    cluster: &'a Cluster<N>,
    buffer: PackBuffer,
}

impl<N: NodeApi + ?Sized> std::fmt::Debug for PackingWriter<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackingWriter")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl<'a, N: NodeApi + ?Sized + 'static> PackingWriter<'a, N> {
    /// A writer into `cluster` under `policy`.
    pub fn new(cluster: &'a Cluster<N>, policy: PackPolicy) -> Self {
        Self {
            cluster,
            buffer: PackBuffer::new(policy),
        }
    }

    /// Buffers `record`; when that fills its address's buffer, writes the stripe and returns
    /// its receipt (which acknowledges every record in it). On a failed write the records are
    /// not acknowledged and the error is returned.
    pub fn put(&mut self, address: &str, record: Record, now: u64) -> Result<Option<PutReceipt>> {
        match self.buffer.push(address, record, now)? {
            Some(batch) => self.cluster.put_batch(address, &batch).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the buffers that have waited long enough at `now`.
    pub fn tick(&mut self, now: u64) -> Result<Vec<PutReceipt>> {
        let due = self.buffer.due(now);
        self.write_all(due)
    }

    /// Writes every buffer.
    pub fn flush(&mut self) -> Result<Vec<PutReceipt>> {
        let all = self.buffer.drain();
        self.write_all(all)
    }

    fn write_all(&mut self, batches: Vec<(String, Vec<Record>)>) -> Result<Vec<PutReceipt>> {
        batches
            .into_iter()
            .map(|(a, records)| self.cluster.put_batch(&a, &records))
            .collect()
    }

    /// Records buffered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rec(i: usize, size: usize) -> Record {
        Record::new(
            format!("k{i:04}").into_bytes(),
            [("v".to_string(), vec![u8::try_from(i % 251).unwrap(); size])],
        )
    }

    #[test]
    fn buffers_fill_to_the_target_then_flush_per_address() {
        let mut b = PackBuffer::new(PackPolicy {
            target_bytes: 1000,
            max_records: 100,
            max_delay: 50,
        });
        for i in 0..9 {
            assert!(b.push("a", rec(i, 100), 0).unwrap().is_none());
            assert!(b.push("b", rec(i, 10), 0).unwrap().is_none());
        }
        let full = b.push("a", rec(9, 100), 1).unwrap().unwrap();
        assert_eq!(full.len(), 10);
        assert_eq!(b.len(), 9, "only address b is still buffered");
        // the same record again is ignored; the same key with other bytes is refused
        assert!(b.push("b", rec(3, 10), 2).unwrap().is_none());
        assert!(matches!(
            b.push("b", rec(3, 11), 2),
            Err(KvsError::Duplicate)
        ));
        assert!(b.due(49).is_empty());
        let late = b.due(50);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0, "b");
        assert_eq!(late[0].1.len(), 9);
        assert!(b.is_empty());
    }

    #[test]
    fn record_count_also_bounds_a_buffer_and_drain_empties_all() {
        let mut b = PackBuffer::new(PackPolicy {
            target_bytes: usize::MAX,
            max_records: 3,
            max_delay: u64::MAX,
        });
        b.push("a", rec(0, 1), 0).unwrap();
        b.push("a", rec(1, 1), 0).unwrap();
        assert_eq!(b.push("a", rec(2, 1), 0).unwrap().unwrap().len(), 3);
        b.push("c", rec(0, 1), 0).unwrap();
        b.push("d", rec(0, 1), 0).unwrap();
        assert_eq!(b.drain().len(), 2);
        assert!(b.is_empty());
    }
}
