//! Placement of stripes on storage nodes by rendezvous (highest-random-weight) hashing of the
//! partition key, and the membership source that supplies the node set.
//!
//! Shard indices are matched to nodes by a stable matching over the scores
//! `H(address, i, node)`: adding or removing a node moves the shards whose choice involved it
//! plus the few it displaces, and every client computes the same placement from the same node
//! set.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{KvsError, Result};
use crate::merkle::hash_parts;

/// Identifies a storage node (its stable name in the membership).
pub type NodeId = String;

/// Domain of placement scores.
pub const DOMAIN_HRW: &str = "carchain/kvs/hrw/v1";

/// One storage node as the membership source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Stable node name.
    pub id: NodeId,
    /// Network address (`host:port`) of its QUIC endpoint.
    pub addr: String,
    /// Hex SHA-256 of the node's self-signed TLS certificate, pinned by clients when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

/// Where the current node set comes from (a static file now, the chain registry later).
pub trait Membership: Send + Sync {
    /// Placement epoch; changes whenever the node set changes.
    fn epoch(&self) -> u64;
    /// The nodes of the current epoch.
    fn nodes(&self) -> Vec<NodeInfo>;
}

/// A fixed node set read from a JSON file `{"epoch": 1, "nodes": [{"id": .., "addr": ..}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticMembership {
    /// Placement epoch.
    pub epoch: u64,
    /// Nodes.
    pub nodes: Vec<NodeInfo>,
}

impl StaticMembership {
    /// A membership from a node list.
    pub fn new(epoch: u64, nodes: Vec<NodeInfo>) -> Result<Self> {
        let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        if ids.len() != nodes.len() {
            return Err(KvsError::Membership("duplicate node id".into()));
        }
        Ok(Self { epoch, nodes })
    }

    /// Reads a membership file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let m: StaticMembership =
            serde_json::from_str(&text).map_err(|e| KvsError::Membership(e.to_string()))?;
        Self::new(m.epoch, m.nodes)
    }

    /// Writes the membership file.
    pub fn to_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| KvsError::Membership(e.to_string()))?;
        std::fs::write(path, text)?;
        Ok(())
    }
}

impl Membership for StaticMembership {
    fn epoch(&self) -> u64 {
        self.epoch
    }
    fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.clone()
    }
}

/// The rendezvous score of `node` for shard `index` of `partition`.
pub fn score(partition: &[u8], index: u8, node: &str) -> [u8; 32] {
    hash_parts(
        DOMAIN_HRW,
        &[
            &(partition.len() as u64).to_be_bytes(),
            partition,
            &[index],
            node.as_bytes(),
        ],
    )
}

/// The node for each of the `n` shards of `partition` among `nodes` (distinct nodes).
///
/// A stable matching of shard indices to nodes: every index ranks nodes by
/// [`score`]`(partition, index, node)`, every node prefers the index that scores it higher,
/// and indices propose in order until matched. The result depends only on the node set; when a
/// node leaves, its index moves and only indices it displaces on the way follow.
pub fn place(partition: &[u8], nodes: &[NodeId], n: usize) -> Result<Vec<NodeId>> {
    let distinct: Vec<&NodeId> = nodes.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let too_few = || KvsError::TooFewNodes {
        need: n,
        have: distinct.len(),
    };
    if distinct.len() < n {
        return Err(too_few());
    }
    let mut prefs: Vec<Vec<([u8; 32], &NodeId)>> = Vec::with_capacity(n);
    for i in 0..n {
        let index = u8::try_from(i).map_err(|_| KvsError::Overflow("shard index"))?;
        let mut p: Vec<([u8; 32], &NodeId)> = distinct
            .iter()
            .map(|id| (score(partition, index, id), *id))
            .collect();
        p.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        prefs.push(p);
    }
    let mut next = vec![0usize; n];
    let mut holder: std::collections::BTreeMap<&NodeId, (usize, [u8; 32])> =
        std::collections::BTreeMap::new();
    let mut free: std::collections::VecDeque<usize> = (0..n).collect();
    while let Some(i) = free.pop_front() {
        let cursor = next.get_mut(i).ok_or_else(too_few)?;
        let (s, node) = *prefs
            .get(i)
            .and_then(|p| p.get(*cursor))
            .ok_or_else(too_few)?;
        *cursor = cursor
            .checked_add(1)
            .ok_or(KvsError::Overflow("placement"))?;
        match holder.get(node).copied() {
            None => {
                holder.insert(node, (i, s));
            }
            Some((j, sj)) if s > sj => {
                holder.insert(node, (i, s));
                free.push_back(j);
            }
            Some(_) => free.push_back(i),
        }
    }
    let mut out: Vec<Option<NodeId>> = vec![None; n];
    for (node, (i, _)) in holder {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(node.clone());
        }
    }
    out.into_iter().map(|o| o.ok_or_else(too_few)).collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn placement_is_deterministic_distinct_and_order_free() {
        let nodes = ids(10);
        let a = place(b"bc1qaddr", &nodes, 6).unwrap();
        let mut rev = nodes.clone();
        rev.reverse();
        assert_eq!(a, place(b"bc1qaddr", &rev, 6).unwrap());
        let set: BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), 6);
        assert!(matches!(
            place(b"x", &ids(5), 6),
            Err(KvsError::TooFewNodes { need: 6, have: 5 })
        ));
    }

    #[test]
    fn removing_a_node_moves_few_shards() {
        let nodes = ids(12);
        let mut moved = 0usize;
        let mut total = 0usize;
        for a in 0..300u32 {
            let key = format!("addr-{a}");
            let before = place(key.as_bytes(), &nodes, 6).unwrap();
            let after = place(key.as_bytes(), &nodes[1..], 6).unwrap();
            for (b, c) in before.iter().zip(&after) {
                total += 1;
                if b != c {
                    moved += 1;
                }
            }
            // a shard that was not on the removed node keeps its node unless a cascade hit it
            assert!(!after.contains(&nodes[0]));
        }
        // one node of twelve leaves: about 1/12 of shards must move; allow cascades up to 1/4
        assert!(moved * 4 < total, "moved {moved} of {total}");
        assert!(moved > 0);
    }

    #[test]
    fn load_spreads_over_nodes() {
        let nodes = ids(8);
        let mut counts = std::collections::BTreeMap::new();
        for a in 0..800u32 {
            for n in place(format!("a{a}").as_bytes(), &nodes, 6).unwrap() {
                *counts.entry(n).or_insert(0usize) += 1;
            }
        }
        // 4800 shards over 8 nodes: 600 each on average
        for (_, c) in counts {
            assert!((480..720).contains(&c), "{c}");
        }
    }

    #[test]
    fn membership_file_round_trips_and_rejects_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("members.json");
        let m = StaticMembership::new(
            3,
            ids(3)
                .into_iter()
                .map(|id| NodeInfo {
                    addr: format!("127.0.0.1:0/{id}"),
                    id,
                    cert_sha256: None,
                })
                .collect(),
        )
        .unwrap();
        m.to_file(&p).unwrap();
        let back = StaticMembership::from_file(&p).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.epoch(), 3);
        let dup = vec![
            NodeInfo {
                id: "a".into(),
                addr: "x".into(),
                cert_sha256: None,
            },
            NodeInfo {
                id: "a".into(),
                addr: "y".into(),
                cert_sha256: Some("ab".into()),
            },
        ];
        assert!(StaticMembership::new(1, dup).is_err());
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            StaticMembership::from_file(&p),
            Err(KvsError::Membership(_))
        ));
    }
}
