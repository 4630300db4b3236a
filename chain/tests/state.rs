//! The state tree against a `BTreeMap` model: roots depend only on the entries, every key's
//! proof verifies and every kind of tampering is caught; proof decoding refuses garbage; an
//! update's new and stale nodes are exactly those entering and leaving the tree (what pruning
//! relies on).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};

use chain::state::smt::{self, ProofTerminal, TREE_DEPTH};
use chain::state::{
    apply, get_value_hash, prove, MemNodes, NodeReader, ProofError, StateProof, WriteSet,
    EMPTY_ROOT,
};
use primitives::hash::Hash32;
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Applies `writes` to the tree and the store, checks the update's bookkeeping.
fn step(nodes: &mut MemNodes, root: Hash32, writes: &WriteSet) -> Hash32 {
    let u = apply(nodes, root, writes).unwrap();
    for (h, bytes) in &u.new_nodes {
        assert_eq!(smt::Node::decode(bytes).unwrap().hash(), *h);
    }
    assert!(u
        .stale_nodes
        .iter()
        .all(|s| u.new_nodes.iter().all(|(n, _)| n != s)));
    nodes.commit(&u);
    u.root
}

fn from_scratch(model: &Model) -> Hash32 {
    let all: WriteSet = model
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    apply(&MemNodes::new(), EMPTY_ROOT, &all).unwrap().root
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small key space, so writes often hit existing keys and deletes often hit something.
    (0u8..48).prop_map(|k| vec![b'k', k])
}

fn block() -> impl Strategy<Value = WriteSet> {
    proptest::collection::btree_map(
        key(),
        proptest::option::weighted(0.7, proptest::collection::vec(any::<u8>(), 0..6)),
        0..12,
    )
}

/// The nodes reachable from `root`.
fn reachable(nodes: &MemNodes, root: Hash32) -> BTreeSet<Hash32> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(h) = todo.pop() {
        if h == EMPTY_ROOT || !seen.insert(h) {
            continue;
        }
        let bytes = nodes.node(&h).unwrap().unwrap();
        if let smt::Node::Inner { left, right } = smt::Node::decode(&bytes).unwrap() {
            todo.extend([left, right]);
        }
    }
    seen
}

/// Blocks over few keys and few values, so values are often written back to what they were
/// and nodes come back.
fn churn_block() -> impl Strategy<Value = WriteSet> {
    proptest::collection::btree_map(
        (0u8..12).prop_map(|k| vec![b'k', k]),
        proptest::option::weighted(0.75, (0u8..3).prop_map(|v| vec![v])),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// What a pruning host relies on: an update's `new_nodes` are exactly the nodes that enter
    /// the tree (a node coming back after it went stale included) and `stale_nodes` exactly
    /// those that leave it, each once.
    #[test]
    fn updates_list_exactly_the_nodes_entering_and_leaving_the_tree(
        blocks in proptest::collection::vec(churn_block(), 1..20),
    ) {
        let mut nodes = MemNodes::new();
        let mut root = EMPTY_ROOT;
        for b in &blocks {
            let before = reachable(&nodes, root);
            let u = apply(&nodes, root, b).unwrap();
            nodes.commit(&u);
            let after = reachable(&nodes, u.root);
            let new: BTreeSet<Hash32> = u.new_nodes.iter().map(|(h, _)| *h).collect();
            let stale: BTreeSet<Hash32> = u.stale_nodes.iter().copied().collect();
            prop_assert_eq!(new.len(), u.new_nodes.len());
            prop_assert_eq!(stale.len(), u.stale_nodes.len());
            prop_assert_eq!(&new, &after.difference(&before).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(&stale, &before.difference(&after).copied().collect::<BTreeSet<_>>());
            root = u.root;
        }
    }

    #[test]
    fn incremental_root_equals_the_root_from_scratch(blocks in proptest::collection::vec(block(), 1..8)) {
        let mut nodes = MemNodes::new();
        let mut root = EMPTY_ROOT;
        let mut model = Model::new();
        let mut history = Vec::new();
        for b in &blocks {
            root = step(&mut nodes, root, b);
            for (k, v) in b {
                match v {
                    Some(v) => { model.insert(k.clone(), v.clone()); }
                    None => { model.remove(k); }
                }
            }
            prop_assert_eq!(root, from_scratch(&model));
            history.push((root, model.clone()));
        }
        // Every key of the key space, present or not, proves correctly in every old version
        // (old roots stay readable).
        for (root, model) in &history {
            for k in 0u8..48 {
                let key = vec![b'k', k];
                let proof = prove(&nodes, *root, &key).unwrap();
                let value = model.get(&key);
                prop_assert!(proof.verify(root, &key, value.map(Vec::as_slice)).is_ok());
                prop_assert_eq!(
                    get_value_hash(&nodes, *root, &key).unwrap(),
                    value.map(|v| smt::value_hash(v))
                );
                // The opposite claim fails.
                match value {
                    Some(v) => {
                        prop_assert_eq!(proof.verify(root, &key, None), Err(ProofError::Present));
                        let mut other = v.clone();
                        other.push(0);
                        prop_assert_eq!(proof.verify(root, &key, Some(&other)), Err(ProofError::WrongValue));
                    }
                    None => prop_assert_eq!(proof.verify(root, &key, Some(b"x")), Err(ProofError::Absent)),
                }
                let bytes = proof.to_bytes().unwrap();
                prop_assert_eq!(StateProof::from_bytes(&bytes).unwrap(), proof);
            }
        }
    }

    #[test]
    fn the_root_does_not_depend_on_write_order(
        entries in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..4), 0..30),
        split in any::<prop::sample::Index>(),
        churn in block(),
    ) {
        // Build the same final set two ways: all at once, or in two blocks with churn first
        // (keys written then overwritten or deleted).
        let model: Model = entries.clone();
        let items: Vec<_> = entries.into_iter().collect();
        let cut = if items.is_empty() { 0 } else { split.index(items.len() + 1) };
        let mut nodes = MemNodes::new();
        let mut root = step(&mut nodes, EMPTY_ROOT, &churn);
        let first: WriteSet = items[..cut].iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        let mut second: WriteSet = items[cut..].iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        // Churned keys outside the final set are deleted; the others are rewritten by one of
        // the two blocks.
        for k in churn.keys() {
            if !model.contains_key(k) {
                second.insert(k.clone(), None);
            }
        }
        root = step(&mut nodes, root, &first);
        root = step(&mut nodes, root, &second);
        prop_assert_eq!(root, from_scratch(&model));
    }

    #[test]
    fn tampered_proofs_fail(
        model in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..4), 2..40),
        pick in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bitn in 0u8..8,
    ) {
        let root = from_scratch(&model);
        let mut nodes = MemNodes::new();
        step(&mut nodes, EMPTY_ROOT, &model.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect());
        let keys: Vec<_> = model.keys().cloned().collect();
        let key = &keys[pick.index(keys.len())];
        let value = model[key].clone();
        let proof = prove(&nodes, root, key).unwrap();
        prop_assert!(proof.verify(&root, key, Some(&value)).is_ok());
        // At least two keys: the root is an inner node, so there is a sibling.
        prop_assert!(!proof.siblings.is_empty());

        // Wrong root.
        let mut bad_root = root;
        bad_root[0] ^= 1;
        prop_assert_eq!(proof.verify(&bad_root, key, Some(&value)), Err(ProofError::RootMismatch));
        prop_assert!(proof.verify(&EMPTY_ROOT, key, Some(&value)).is_err());

        // Wrong key: another present key with this proof.
        let other = keys.iter().find(|k| *k != key).unwrap();
        prop_assert!(proof.verify(&root, other, Some(&model[other])).is_err());
        prop_assert!(proof.verify(&root, other, Some(&value)).is_err());
        // An absent key cannot borrow this proof to claim the value. (It may well use it to
        // show its own absence: a leaf on its path that is not its own proves exactly that.)
        prop_assert!(proof.verify(&root, b"absent", Some(&value)).is_err());

        // Tampered sibling.
        let mut t = proof.clone();
        let i = flip.index(t.siblings.len());
        t.siblings[i][usize::from(bitn) % 32] ^= 1 << bitn;
        prop_assert_eq!(t.verify(&root, key, Some(&value)), Err(ProofError::RootMismatch));

        // Truncated: the deepest or the top sibling removed.
        let mut t = proof.clone();
        t.siblings.pop();
        prop_assert!(t.verify(&root, key, Some(&value)).is_err());
        let mut t = proof.clone();
        t.siblings.remove(0);
        prop_assert!(t.verify(&root, key, Some(&value)).is_err());

        // Extended, with an empty or a copied sibling, at either end.
        for extra in [EMPTY_ROOT, proof.siblings[0]] {
            let mut t = proof.clone();
            t.siblings.push(extra);
            prop_assert!(t.verify(&root, key, Some(&value)).is_err());
            let mut t = proof.clone();
            t.siblings.insert(0, extra);
            prop_assert!(t.verify(&root, key, Some(&value)).is_err());
        }

        // Tampered terminal.
        let mut t = proof.clone();
        if let ProofTerminal::Leaf { value_hash, .. } = &mut t.terminal {
            value_hash[0] ^= 1;
        }
        prop_assert!(t.verify(&root, key, Some(&value)).is_err());
        let t = StateProof { terminal: ProofTerminal::Empty, ..proof.clone() };
        prop_assert!(t.verify(&root, key, None).is_err());

        // Nor can it show another present key absent.
        prop_assert!(proof.verify(&root, other, None).is_err());
    }

    #[test]
    fn proof_decoding_refuses_garbage_cleanly(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..600),
        versioned in any::<bool>(),
    ) {
        // Half the inputs get the right version byte, so the decoder sees past it.
        if versioned {
            bytes.insert(0, primitives::codec::FORMAT_VERSION);
        }
        // Never panics; whatever decodes re-encodes to the same bytes (canonical).
        if let Ok(p) = StateProof::from_bytes(&bytes) {
            prop_assert_eq!(p.to_bytes().unwrap(), bytes.clone());
        }
        if let Ok(n) = smt::Node::decode(&bytes) {
            prop_assert_eq!(n.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn mutated_proof_bytes_never_verify(
        model in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..4), 1..20),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut nodes = MemNodes::new();
        let root = step(&mut nodes, EMPTY_ROOT, &model.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect());
        let (key, value) = model.iter().next().unwrap();
        let mut bytes = prove(&nodes, root, key).unwrap().to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(p) = StateProof::from_bytes(&bytes) {
            prop_assert!(p.verify(&root, key, Some(value)).is_err());
        }
    }
}

#[test]
fn proofs_longer_than_the_tree_are_refused() {
    let p = StateProof {
        siblings: vec![EMPTY_ROOT; TREE_DEPTH + 1],
        terminal: ProofTerminal::Empty,
    };
    assert_eq!(
        p.verify(&EMPTY_ROOT, b"k", None),
        Err(ProofError::TooDeep(TREE_DEPTH + 1))
    );
    assert!(p.to_bytes().is_err());
    // Hand-built bytes with 257 siblings are refused by the decoder's limit.
    let mut bytes = vec![primitives::codec::FORMAT_VERSION];
    bytes.extend_from_slice(&((TREE_DEPTH + 1) as u32).to_be_bytes());
    bytes.extend(std::iter::repeat_n(0u8, (TREE_DEPTH + 1) * 32));
    bytes.extend_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        StateProof::from_bytes(&bytes),
        Err(ProofError::Decode(_))
    ));
    // A claimed count far beyond the input is refused before allocating.
    let mut bytes = vec![primitives::codec::FORMAT_VERSION];
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(StateProof::from_bytes(&bytes).is_err());
}

#[test]
fn empty_tree_proves_absence_only() {
    let nodes = MemNodes::new();
    let p = prove(&nodes, EMPTY_ROOT, b"anything").unwrap();
    assert!(p.siblings.is_empty());
    assert!(p.verify(&EMPTY_ROOT, b"anything", None).is_ok());
    assert_eq!(
        p.verify(&EMPTY_ROOT, b"anything", Some(b"v")),
        Err(ProofError::Absent)
    );
    assert_eq!(
        get_value_hash(&nodes, EMPTY_ROOT, b"anything").unwrap(),
        None
    );
}

#[test]
fn non_membership_through_a_neighbouring_leaf() {
    // Find an absent key whose search ends at another key's leaf, and check that proof.
    let mut nodes = MemNodes::new();
    let model: WriteSet = (0u8..8).map(|i| (vec![i], Some(vec![i]))).collect();
    let root = step(&mut nodes, EMPTY_ROOT, &model);
    let mut seen_leaf = false;
    let mut seen_empty = false;
    for i in 100u8..=255 {
        let p = prove(&nodes, root, &[i]).unwrap();
        assert!(p.verify(&root, &[i], None).is_ok());
        match p.terminal {
            ProofTerminal::Leaf { .. } => {
                seen_leaf = true;
                // Claiming the neighbour's value for this key fails.
                assert!(p.verify(&root, &[i], Some(&[0])).is_err());
            }
            ProofTerminal::Empty => seen_empty = true,
        }
    }
    assert!(seen_leaf && seen_empty);
}

#[test]
fn stale_nodes_can_be_pruned_leaving_the_new_root_whole() {
    let mut nodes = MemNodes::new();
    let first: WriteSet = (0u16..200)
        .map(|i| (i.to_be_bytes().to_vec(), Some(vec![1])))
        .collect();
    let u1 = apply(&nodes, EMPTY_ROOT, &first).unwrap();
    nodes.commit(&u1);
    assert_eq!(nodes.len(), u1.new_nodes.len());
    let second: WriteSet = (0u16..200)
        .step_by(3)
        .map(|i| {
            let v = if i % 2 == 0 { Some(vec![2]) } else { None };
            (i.to_be_bytes().to_vec(), v)
        })
        .collect();
    let u2 = apply(&nodes, u1.root, &second).unwrap();
    nodes.commit(&u2);
    nodes.prune(&u2.stale_nodes);
    // Exactly the nodes of the new tree remain: a fresh build stores the same count.
    let mut fresh = MemNodes::new();
    let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = first.clone();
    model.extend(second.clone());
    let live: WriteSet = model.into_iter().filter(|(_, v)| v.is_some()).collect();
    let u = apply(&fresh, EMPTY_ROOT, &live).unwrap();
    fresh.commit(&u);
    assert_eq!(u.root, u2.root);
    assert_eq!(nodes, fresh);
    for (k, v) in &live {
        let p = prove(&nodes, u2.root, k).unwrap();
        assert!(p.verify(&u2.root, k, v.as_deref()).is_ok());
    }
}
