//! Repair planning, sans-IO: from the shards each node verifiably holds and the nodes'
//! states, decide which shards to rebuild, move or drop so every stripe is back at its
//! placement. Running the plan and planning again yields an empty plan (idempotent), and a
//! crash part-way leaves a state from which planning simply continues.
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
use crate::merkle::Hash;
use crate::placement::{self, NodeId};

/// What the repairer knows of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Reachable.
    Up,
    /// Unreachable since the given time (seconds); its shards count as present until the grace
    /// period has passed.
    Down {
        /// When it was first seen down.
        since: u64,
    },
    /// Left the membership: its shards are gone.
    Removed,
    /// Left the membership but still reachable: its shards are moved to their new placement
    /// (drained), then it holds nothing.
    Leaving,
}

/// One stripe as observed: which nodes hold which verified shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeState {
    /// Stripe root.
    pub root: Hash,
    /// Partition key (address) of the stripe.
    pub address: String,
    /// Coding parameters.
    pub params: CodingParams,
    /// Shard index → nodes holding a verified copy.
    pub holders: BTreeMap<u8, BTreeSet<NodeId>>,
}

/// One step of a repair plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairAction {
    /// Reconstruct shard `index` from `k` others and write it to `target`.
    Rebuild {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
        /// Node to write to.
        target: NodeId,
    },
    /// Copy shard `index` from `from` to `to`, then delete it from `from` (rebalancing).
    Move {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
        /// Current holder.
        from: NodeId,
        /// Placement target.
        to: NodeId,
    },
    /// Delete a surplus copy.
    Drop {
        /// Stripe root.
        root: Hash,
        /// Shard index.
        index: u8,
        /// Node holding the surplus copy.
        node: NodeId,
    },
}

/// Result of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// Actions to run (each independent and idempotent).
    pub actions: Vec<RepairAction>,
    /// Stripes with fewer than `k` live shards: data loss unless a down node returns.
    pub unrecoverable: Vec<Hash>,
    /// Stripes that cannot be placed (too few eligible nodes) or wait for a node in grace.
    pub waiting: Vec<Hash>,
}

/// Repair policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairConfig {
    /// Seconds a down node keeps its shards before they are rebuilt elsewhere.
    pub grace_secs: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            grace_secs: 15 * 60,
        }
    }
}

fn in_grace(state: Option<&NodeState>, now: u64, cfg: &RepairConfig) -> bool {
    matches!(state, Some(NodeState::Down { since }) if now.saturating_sub(*since) < cfg.grace_secs)
}

/// Plans the repair of `stripes` given node `states` (nodes absent from `states` are removed).
pub fn plan(
    stripes: &[StripeState],
    states: &BTreeMap<NodeId, NodeState>,
    now: u64,
    cfg: &RepairConfig,
) -> RepairPlan {
    let eligible: Vec<NodeId> = states
        .iter()
        .filter(|(_, s)| matches!(s, NodeState::Up) || in_grace(Some(s), now, cfg))
        .map(|(id, _)| id.clone())
        .collect();
    let is_up = |n: &NodeId| {
        matches!(
            states.get(n),
            Some(NodeState::Up) | Some(NodeState::Leaving)
        )
    };
    let mut out = RepairPlan::default();
    for st in stripes {
        let Ok(desired) = placement::place(st.address.as_bytes(), &eligible, st.params.n()) else {
            out.waiting.push(st.root);
            continue;
        };
        let live_indices = st
            .holders
            .values()
            .filter(|hs| hs.iter().any(is_up))
            .count();
        let mut actions = Vec::new();
        let mut waiting = false;
        let mut needs_rebuild = false;
        for (i, target) in desired.iter().enumerate() {
            let Ok(index) = u8::try_from(i) else { continue };
            let holders = st.holders.get(&index).cloned().unwrap_or_default();
            let up_holders: Vec<&NodeId> = holders.iter().filter(|h| is_up(h)).collect();
            let target_has = holders.contains(target);
            if target_has {
                if !is_up(target) {
                    waiting = true;
                }
                for h in up_holders.iter().filter(|h| **h != target) {
                    actions.push(RepairAction::Drop {
                        root: st.root,
                        index,
                        node: (*h).clone(),
                    });
                }
                continue;
            }
            if !is_up(target) {
                waiting = true;
                continue;
            }
            if let Some(from) = up_holders.first() {
                actions.push(RepairAction::Move {
                    root: st.root,
                    index,
                    from: (*from).clone(),
                    to: target.clone(),
                });
                for h in up_holders.iter().skip(1) {
                    actions.push(RepairAction::Drop {
                        root: st.root,
                        index,
                        node: (*h).clone(),
                    });
                }
            } else if holders.iter().any(|h| in_grace(states.get(h), now, cfg)) {
                waiting = true;
            } else {
                needs_rebuild = true;
                actions.push(RepairAction::Rebuild {
                    root: st.root,
                    index,
                    target: target.clone(),
                });
            }
        }
        // shards with an index beyond n (foreign parameters) or held only by non-placement nodes
        // are covered above; rebuilding needs k live shards
        if needs_rebuild && live_indices < usize::from(st.params.k) {
            out.unrecoverable.push(st.root);
            actions.retain(|a| !matches!(a, RepairAction::Rebuild { .. }));
        }
        if waiting {
            out.waiting.push(st.root);
        }
        out.actions.extend(actions);
    }
    out
}

/// Applies `plan`'s actions to an observed state as if they all succeeded (for simulation and
/// for checking idempotence).
pub fn apply(stripes: &mut [StripeState], plan: &RepairPlan) {
    for st in stripes.iter_mut() {
        for a in &plan.actions {
            match a {
                RepairAction::Rebuild {
                    root,
                    index,
                    target,
                } if *root == st.root => {
                    st.holders.entry(*index).or_default().insert(target.clone());
                }
                RepairAction::Move {
                    root,
                    index,
                    from,
                    to,
                } if *root == st.root => {
                    let hs = st.holders.entry(*index).or_default();
                    hs.remove(from);
                    hs.insert(to.clone());
                }
                RepairAction::Drop { root, index, node } if *root == st.root => {
                    if let Some(hs) = st.holders.get_mut(index) {
                        hs.remove(node);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Removes holdings of nodes that are removed or down past the grace period (their shards are
/// gone for planning purposes).
pub fn forget_dead(
    stripes: &mut [StripeState],
    states: &BTreeMap<NodeId, NodeState>,
    now: u64,
    cfg: &RepairConfig,
) {
    for st in stripes.iter_mut() {
        for hs in st.holders.values_mut() {
            hs.retain(|h| {
                matches!(
                    states.get(h),
                    Some(NodeState::Up) | Some(NodeState::Leaving)
                ) || in_grace(states.get(h), now, cfg)
            });
        }
    }
}

/// Node states from probe outcomes and the membership, sans-IO: the input of [`plan`].
///
/// A member answering probes is `Up`; a member that stopped answering is `Down` since its first
/// failed probe (and `Up` again once it answers); a node outside the membership is `Leaving`
/// while it answers (its shards are drained) and `Removed` once it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    reachable: BTreeMap<NodeId, bool>,
    down_since: BTreeMap<NodeId, u64>,
}

impl Liveness {
    /// No observations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a probe of `node` at time `now` (seconds).
    pub fn observe(&mut self, node: &str, reachable: bool, now: u64) {
        self.reachable.insert(node.to_string(), reachable);
        if reachable {
            self.down_since.remove(node);
        } else {
            self.down_since.entry(node.to_string()).or_insert(now);
        }
    }

    /// Forgets a node (it is no longer attached at all).
    pub fn forget(&mut self, node: &str) {
        self.reachable.remove(node);
        self.down_since.remove(node);
    }

    /// The state of every observed node given the current `members`.
    pub fn states(&self, members: &BTreeSet<NodeId>) -> BTreeMap<NodeId, NodeState> {
        self.reachable
            .iter()
            .map(|(id, ok)| {
                let state = match (members.contains(id), ok) {
                    (true, true) => NodeState::Up,
                    (true, false) => NodeState::Down {
                        since: self.down_since.get(id).copied().unwrap_or(0),
                    },
                    (false, true) => NodeState::Leaving,
                    (false, false) => NodeState::Removed,
                };
                (id.clone(), state)
            })
            .collect()
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

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    fn placed(address: &str, all: &[NodeId], root: u8) -> StripeState {
        let p = CodingParams::default();
        let d = placement::place(address.as_bytes(), all, p.n()).unwrap();
        StripeState {
            root: [root; 32],
            address: address.into(),
            params: p,
            holders: d
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i as u8, [n].into()))
                .collect(),
        }
    }

    fn up(all: &[NodeId]) -> BTreeMap<NodeId, NodeState> {
        all.iter().map(|n| (n.clone(), NodeState::Up)).collect()
    }

    #[test]
    fn healthy_cluster_needs_nothing() {
        let all = nodes(8);
        let s: Vec<_> = (0..20).map(|i| placed(&format!("a{i}"), &all, i)).collect();
        let p = plan(&s, &up(&all), 0, &RepairConfig::default());
        assert_eq!(p, RepairPlan::default());
    }

    #[test]
    fn down_node_waits_for_grace_then_is_rebuilt_elsewhere() {
        let all = nodes(8);
        let s = vec![placed("addr", &all, 1)];
        let victim = s[0].holders[&0].iter().next().unwrap().clone();
        let mut states = up(&all);
        states.insert(victim.clone(), NodeState::Down { since: 100 });
        let cfg = RepairConfig { grace_secs: 60 };
        let early = plan(&s, &states, 130, &cfg);
        assert!(early.actions.is_empty());
        assert_eq!(early.waiting, vec![[1; 32]]);
        let late = plan(&s, &states, 161, &cfg);
        let rebuilds: Vec<_> = late
            .actions
            .iter()
            .filter(|a| matches!(a, RepairAction::Rebuild { .. }))
            .collect();
        assert!(!rebuilds.is_empty());
        for a in &late.actions {
            if let RepairAction::Rebuild { target, .. } | RepairAction::Move { to: target, .. } = a
            {
                assert_ne!(target, &victim);
            }
        }
    }

    #[test]
    fn liveness_turns_probes_and_membership_into_states() {
        let mut l = Liveness::new();
        let members: BTreeSet<NodeId> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        l.observe("a", true, 10);
        l.observe("b", false, 10);
        l.observe("b", false, 20);
        l.observe("d", true, 20);
        l.observe("e", false, 20);
        let s = l.states(&members);
        assert_eq!(s["a"], NodeState::Up);
        assert_eq!(s["b"], NodeState::Down { since: 10 });
        assert_eq!(s["d"], NodeState::Leaving);
        assert_eq!(s["e"], NodeState::Removed);
        assert!(!s.contains_key("c"), "never probed: unknown");
        l.observe("b", true, 30);
        l.observe("b", false, 40);
        assert_eq!(l.states(&members)["b"], NodeState::Down { since: 40 });
        l.forget("e");
        assert!(!l.states(&members).contains_key("e"));
    }

    #[test]
    fn a_leaving_node_is_drained_by_moves_not_rebuilds() {
        let all = nodes(8);
        let s = vec![placed("addr", &all, 3)];
        let leaver = s[0].holders[&2].iter().next().unwrap().clone();
        let mut states = up(&all);
        states.insert(leaver.clone(), NodeState::Leaving);
        let p = plan(&s, &states, 0, &RepairConfig::default());
        assert!(p
            .actions
            .iter()
            .all(|a| !matches!(a, RepairAction::Rebuild { .. })));
        assert!(p
            .actions
            .iter()
            .any(|a| matches!(a, RepairAction::Move { from, index: 2, .. } if *from == leaver)));
        for a in &p.actions {
            if let RepairAction::Move { to, .. } = a {
                assert_ne!(to, &leaver);
            }
        }
    }

    #[test]
    fn too_few_shards_is_reported_unrecoverable() {
        let all = nodes(6);
        let mut s = vec![placed("addr", &all, 7)];
        for i in 0..3u8 {
            s[0].holders.remove(&i);
        }
        let p = plan(&s, &up(&all), 0, &RepairConfig::default());
        assert_eq!(p.unrecoverable, vec![[7; 32]]);
        assert!(p
            .actions
            .iter()
            .all(|a| !matches!(a, RepairAction::Rebuild { .. })));
    }

    proptest! {
        #[test]
        fn plans_converge_in_one_round(n_nodes in 6usize..12, removed in proptest::collection::btree_set(0usize..12, 0..3),
                                       lost in proptest::collection::vec((0usize..20, 0u8..6), 0..10),
                                       joined in 0usize..3,
                                       leaving in proptest::collection::btree_set(0usize..12, 0..2)) {
            let all = nodes(n_nodes);
            let mut stripes: Vec<_> = (0..20).map(|i| placed(&format!("a{i}"), &all, i as u8)).collect();
            for (s, idx) in &lost {
                stripes[*s].holders.remove(idx);
            }
            let mut states: BTreeMap<NodeId, NodeState> = up(&all);
            for r in &removed {
                if let Some(n) = all.get(*r) {
                    states.insert(n.clone(), NodeState::Removed);
                }
            }
            for l in &leaving {
                if let Some(n) = all.get(*l) {
                    if !removed.contains(l) {
                        states.insert(n.clone(), NodeState::Leaving);
                    }
                }
            }
            for j in 0..joined {
                states.insert(format!("new{j}"), NodeState::Up);
            }
            let cfg = RepairConfig::default();
            forget_dead(&mut stripes, &states, 0, &cfg);
            let p = plan(&stripes, &states, 0, &cfg);
            apply(&mut stripes, &p);
            let again = plan(&stripes, &states, 0, &cfg);
            prop_assert!(again.actions.is_empty(), "second plan not empty: {:?}", again.actions);
            prop_assert_eq!(again.unrecoverable, p.unrecoverable.clone());
            // every recoverable stripe now has all n shards exactly at their placement
            let eligible: Vec<NodeId> = states.iter().filter(|(_, s)| matches!(s, NodeState::Up)).map(|(n, _)| n.clone()).collect();
            if eligible.len() < 6 {
                prop_assert_eq!(again.waiting.len(), stripes.len());
                return Ok(());
            }
            for s in &stripes {
                if p.unrecoverable.contains(&s.root) { continue; }
                let d = placement::place(s.address.as_bytes(), &eligible, 6).unwrap();
                for (i, node) in d.iter().enumerate() {
                    let hs = s.holders.get(&(i as u8)).cloned().unwrap_or_default();
                    prop_assert_eq!(hs, [node.clone()].into_iter().collect::<BTreeSet<_>>());
                }
            }
        }
    }
}
