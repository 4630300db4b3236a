//! The simulation harness and the wire decoder it exercises.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chain::consensus::secp::{self, ValidatorAddress};
use chain::consensus::{
    CommitCertificate, CommitSignature, Context, InstanceId, Proposal, Round, SignedProposal,
    SignedVote, Vote, VoteType,
};
use chain::sim::context::{SimContext, SimValue};
use chain::sim::enroll::{scenario, tx_sizes, Pool, TxId, TxKind, Workload, RSA3072_SPKI_DER_LEN};
use chain::sim::wire::{decode, encode, Message};
use chain::sim::{
    run, run_seed, run_seeds, Behaviour, CrashEvent, PartitionEvent, SimConfig, SimFailure,
};
use proptest::prelude::*;
use secp256k1::{PublicKey, SecretKey, SECP256K1};

fn key() -> (SecretKey, PublicKey, ValidatorAddress) {
    let sk = SecretKey::from_slice(&[3u8; 32]).unwrap();
    let pk = PublicKey::from_secret_key(SECP256K1, &sk);
    (sk, pk, ValidatorAddress::from_public_key(&pk))
}

fn samples() -> Vec<Message> {
    let (sk, _, addr) = key();
    let value = SimValue::new(4, 1, 2, b"payload");
    let vote = Vote {
        instance: InstanceId(1),
        height: 4,
        round: Round(2),
        vote_type: VoteType::Precommit,
        value: Some(SimContext.value_id(&value)),
        validator: addr,
    };
    let sv = SignedVote {
        signature: secp::sign(&sk, &SimContext.vote_sign_bytes(&vote).unwrap()),
        vote,
    };
    let proposal = Proposal {
        instance: InstanceId(1),
        height: 4,
        round: Round(2),
        value: value.clone(),
        pol_round: Some(Round(1)),
        proposer: addr,
    };
    let sp = SignedProposal {
        signature: secp::sign(&sk, &SimContext.proposal_sign_bytes(&proposal).unwrap()),
        proposal,
    };
    let certificate = CommitCertificate {
        instance: InstanceId(1),
        height: 4,
        round: Round(2),
        value_id: SimContext.value_id(&value),
        signatures: vec![CommitSignature {
            validator: addr,
            signature: sv.signature,
        }],
    };
    vec![
        Message::Vote(sv),
        Message::Proposal(sp),
        Message::Status {
            height: 9,
            round: 2,
            proposal: true,
            decided: false,
        },
        Message::Decided { value, certificate },
        Message::Tx(vec![1, 0, 0, 0, 7, 0, 0]),
    ]
}

/// Whether a decoded message still carries a valid signature by the sample key.
fn authentic(m: &Message) -> bool {
    let (_, pk, addr) = key();
    match m {
        Message::Vote(sv) => {
            sv.vote.validator == addr
                && SimContext.verify(
                    &pk,
                    &SimContext.vote_sign_bytes(&sv.vote).unwrap(),
                    &sv.signature,
                )
        }
        Message::Proposal(sp) => {
            sp.proposal.proposer == addr
                && SimContext.verify(
                    &pk,
                    &SimContext.proposal_sign_bytes(&sp.proposal).unwrap(),
                    &sp.signature,
                )
        }
        Message::Decided { value, certificate } => {
            SimContext.value_id(value) == certificate.value_id
                && certificate.signatures.iter().all(|s| {
                    SimContext.verify(
                        &pk,
                        &SimContext
                            .vote_sign_bytes(&certificate.vote_of(&s.validator))
                            .unwrap(),
                        &s.signature,
                    )
                })
        }
        Message::Status { .. } | Message::Tx(_) => false,
    }
}

#[test]
fn wire_round_trips() {
    for m in samples() {
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }
}

#[test]
fn every_bit_flip_is_rejected_or_unauthentic() {
    for m in samples() {
        let bytes = encode(&m);
        for pos in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[pos] ^= 1 << bit;
                if let Ok(d) = decode(&b) {
                    assert_ne!(d, m);
                    assert!(
                        !authentic(&d) || matches!(m, Message::Status { .. } | Message::Tx(_)),
                        "flip {pos}/{bit} of {m:?} still authentic"
                    );
                }
            }
        }
    }
}

#[test]
fn truncations_and_trailing_bytes_are_rejected() {
    for m in samples() {
        let bytes = encode(&m);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "prefix {cut} of {m:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = decode(&bytes) {
            // Whatever decodes re-encodes to exactly the input (the encoding is canonical).
            prop_assert_eq!(encode(&m), bytes);
        }
    }
}

#[test]
fn fault_free_network_decides_every_height() {
    let r = run(&SimConfig::fault_free(4), 1).unwrap();
    assert!(r.honest_height >= 5);
    assert_eq!((r.dropped, r.evidence, r.guard_refusals), (0, 0, 0));
    assert!(r.decisions >= 4 * 5);
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let a = run_seed(11).unwrap();
    let b = run_seed(11).unwrap();
    assert_eq!(a, b);
    let c = run_seed(12).unwrap();
    assert_ne!(a.trace, c.trace);
}

fn sweep(range: std::ops::Range<u64>) {
    if let Err(f) = run_seeds(range) {
        panic!("{f} — replay with chain::sim::run_seed({})", f.seed);
    }
}

#[test]
fn seeds_000_to_059() {
    sweep(0..60);
}

#[test]
fn seeds_060_to_119() {
    sweep(60..120);
}

#[test]
fn seeds_120_to_179() {
    sweep(120..180);
}

#[test]
fn seeds_180_to_239() {
    sweep(180..240);
}

fn with(n: usize, byz: &[(usize, Behaviour)]) -> SimConfig {
    let mut c = SimConfig::fault_free(n);
    c.liveness_heights = 3;
    for (i, b) in byz {
        c.behaviours[*i] = *b;
    }
    c
}

#[test]
fn equivocators_are_caught_and_cannot_split_the_network() {
    let mut evidence = 0;
    for seed in 0..10 {
        let r = run(&with(4, &[(2, Behaviour::Equivocate)]), seed).unwrap();
        evidence += r.evidence;
    }
    assert!(
        evidence > 0,
        "conflicting votes sent to one peer must produce evidence"
    );
}

#[test]
fn garbage_is_rejected_and_never_authentic() {
    let r = run(&with(4, &[(1, Behaviour::Garbage)]), 3).unwrap();
    assert!(r.garbage_sent > 0);
    assert!(r.garbage_rejected > 0);
}

#[test]
fn withheld_votes_and_invalid_proposals_do_not_stop_progress() {
    let mut c = with(7, &[(0, Behaviour::Withhold), (5, Behaviour::BadProposals)]);
    c.liveness_heights = 8;
    let r = run(&c, 5).unwrap();
    assert!(r.honest_height >= 8);
}

#[test]
fn a_third_of_byzantine_power_is_refused_as_a_scenario() {
    let c = with(3, &[(0, Behaviour::Equivocate)]);
    assert_eq!(
        run(&c, 0).unwrap_err(),
        SimFailure::Config("byzantine power must be below one third")
    );
}

#[test]
fn partition_without_quorum_stalls_then_heals() {
    let mut c = SimConfig::fault_free(4);
    c.gst_ms = 3_000;
    c.partitions = vec![PartitionEvent {
        at_ms: 0,
        heal_ms: 3_000,
        groups: vec![0, 0, 1, 1],
    }];
    c.liveness_heights = 3;
    let r = run(&c, 2).unwrap();
    assert_eq!(
        r.honest_height, 3,
        "nothing decided during the 2/2 split; 3 heights after heal"
    );
}

/// Nodes that crash and come straight back mid-height, having lost everything but their
/// decided chain and (optionally) the signing guard.
fn amnesia(seed: u64, guard: bool) -> SimConfig {
    let mut c = SimConfig::fault_free(4);
    c.gst_ms = 8_000;
    c.net.loss_ppm = 300_000;
    c.net.latency_ms = 40;
    c.net.jitter_ms = 20;
    c.replay_wal = false;
    c.signing_guard = guard;
    c.crashes = (0..12)
        .map(|k| CrashEvent {
            node: ((seed + k) % 4) as usize,
            at_ms: 200 + k * 600 + seed * 37 % 300,
            restart_ms: 210 + k * 600 + seed * 37 % 300 + seed * 13 % 60,
        })
        .collect();
    c
}

#[test]
fn restarted_validators_without_their_wal_never_double_sign() {
    let mut refusals = 0;
    let mut restarts = 0;
    for seed in 0..8 {
        let r = run(&amnesia(seed, true), seed).unwrap();
        refusals += r.guard_refusals;
        restarts += r.restarts;
    }
    assert_eq!(restarts, 96);
    assert!(
        refusals > 0,
        "amnesic restarts must have been stopped by the signing guard"
    );
}

#[test]
fn without_the_signing_guard_amnesia_is_caught_as_double_signing() {
    let caught = (0..8).any(|seed| {
        matches!(
            run(&amnesia(seed, false), seed),
            Err(SimFailure::DoubleSign { .. })
        )
    });
    assert!(
        caught,
        "the double-sign invariant must fire when the guard is off"
    );
}

#[test]
fn liveness_check_fails_when_the_bound_is_too_short() {
    let mut c = SimConfig::fault_free(4);
    c.liveness_bound_ms = 1;
    assert!(matches!(run(&c, 0), Err(SimFailure::Liveness { .. })));
}

// ---- The enrollment workload ----

/// A small enrollment run: 4 validators, 20 ms links, short block interval.
fn enroll_config(enrollments: u32, bandwidth: u64, max_block_txs: u32) -> SimConfig {
    let mut w = Workload::new(enrollments);
    w.max_block_txs = max_block_txs;
    w.client_delay_ms = 10;
    scenario(4, 20, bandwidth, 200, w, 600_000)
}

#[test]
fn transaction_sizes_come_from_the_encodings() {
    let (setup, put) = tx_sizes();
    // The RSA key alone is 422 bytes; the signed envelope, VID, keys and agent add more.
    assert!(setup > RSA3072_SPKI_DER_LEN + 65 + 33 + 3 * 20, "{setup}");
    assert!(setup < 1_000, "{setup}");
    assert!(put > 20 + 32 + 32 + 8 + 65 && put < setup, "{put}");
}

#[test]
fn every_enrollment_becomes_final_exactly_once() {
    let r = run(&enroll_config(150, 12_500_000, 40), 7).unwrap();
    let w = r.workload.unwrap();
    assert_eq!(w.txs_final, 300, "every transaction final, none twice");
    // 150 setups at 40 per block take 4 blocks, so do the attestations.
    assert!(w.tx_blocks >= 8, "{w:?}");
    assert!(w.setups_final_ms > 0 && w.setups_final_ms < w.all_final_ms);
    assert!(w.all_final_ms <= w.everywhere_final_ms + 10);
    assert!(w.max_block_bytes <= 40 * 1_000 + 24);
    assert!(
        w.proposal_bytes > w.block_bytes,
        "blocks travel to the peers"
    );
    // Each block goes to each of the 3 peers once (plus ~130 bytes of signed header).
    assert!(
        w.proposal_bytes <= 3 * (w.block_bytes + 200 * w.blocks),
        "proposals re-sent needlessly: {w:?}"
    );
    assert_eq!(
        w.extra_rounds, 0,
        "a fast network decides every height in round 0"
    );
    assert!(
        w.tx_gossip_bytes >= 300 * 3 * 100,
        "every transaction goes to every peer"
    );
    assert_eq!(r.evidence, 0);
}

#[test]
fn the_block_checker_refuses_lost_order_and_repeats() {
    let w = Workload::new(3);
    let setup = |enrollment| TxId {
        enrollment,
        kind: TxKind::DeviceSetup,
    };
    let put = |enrollment| TxId {
        enrollment,
        kind: TxKind::PutAttestation,
    };
    let block = |txs: &[TxId]| {
        let mut pool = Pool::default();
        for t in txs {
            pool.admit(*t);
        }
        pool
    };
    let mut final_txs = std::collections::BTreeSet::new();
    let pool = block(&[setup(0), setup(1), put(2)]);
    // The proposer leaves out an attestation whose setup is not final.
    let v = pool.build_block(&w, 1, 0, 0);
    assert_eq!(
        w.check_block(1, &v, &final_txs).unwrap(),
        vec![setup(0), setup(1)]
    );
    assert!(w.check_block(2, &v, &final_txs).is_err(), "wrong height");
    final_txs.insert(setup(0));
    assert!(w.check_block(1, &v, &final_txs).is_err(), "already final");
    // A hand-made block with an early attestation or a repeat is refused.
    let raw = |txs: &[TxId]| {
        let mut p = (txs.len() as u32).to_be_bytes().to_vec();
        for t in txs {
            let b = w.tx_bytes(*t);
            p.extend_from_slice(&(b.len() as u32).to_be_bytes());
            p.extend_from_slice(&b);
        }
        SimValue::new(1, 0, 0, &p)
    };
    assert!(w.check_block(1, &raw(&[put(1)]), &final_txs).is_err());
    assert!(w
        .check_block(1, &raw(&[setup(2), setup(2)]), &final_txs)
        .is_err());
    assert!(w
        .check_block(1, &raw(&[put(0), setup(2)]), &final_txs)
        .is_ok());
    // Truncated or padded transactions and unknown enrollments are malformed.
    let mut bad = raw(&[setup(2)]);
    bad.0.pop();
    assert!(w.check_block(1, &bad, &final_txs).is_err());
    assert!(w.check_block(1, &raw(&[setup(3)]), &final_txs).is_err());
    let mut small = w.clone();
    small.max_block_bytes = 100;
    assert!(small.check_block(1, &raw(&[setup(2)]), &final_txs).is_err());
}

#[test]
fn bigger_blocks_take_longer_at_the_same_bandwidth() {
    // 1 Mbit/s uplinks; the same 100 enrollments with transactions four times the size.
    let small = enroll_config(100, 125_000, 1_000);
    let mut big = small.clone();
    if let Some(w) = big.workload.as_mut() {
        w.setup_bytes *= 4;
        w.attest_bytes *= 4;
    }
    let a = run(&small, 3).unwrap().workload.unwrap();
    let b = run(&big, 3).unwrap().workload.unwrap();
    assert!(a.tx_blocks >= 2 && b.tx_blocks >= 2);
    assert_eq!((a.txs_final, b.txs_final), (200, 200));
    // Each transaction crosses an uplink three times as gossip and three times in a proposal:
    // the extra bytes (3 × the size) cost 6 × 3 × size of uplink time at 125 kB/s, spread over
    // four uplinks; ask for half of that.
    let size = u64::from(
        small
            .workload
            .as_ref()
            .map_or(0, |w| w.setup_bytes + w.attest_bytes),
    );
    let extra_ms = 100 * 6 * 3 * size * 1000 / 125_000 / 4;
    assert!(
        b.all_final_ms > a.all_final_ms + extra_ms / 2,
        "small {} ms, big {} ms, expected ~{extra_ms} ms more",
        a.all_final_ms,
        b.all_final_ms
    );
    assert!(b.max_block_bytes > 3 * a.max_block_bytes);
    // The big blocks outlast the 3 s propose timeout on these links, so rounds fail and
    // blocks are proposed again: more proposal traffic per block than the small ones.
    let per_block = |w: &chain::sim::enroll::WorkloadReport| w.proposal_bytes / w.block_bytes;
    assert!(per_block(&b) > per_block(&a), "{a:?} {b:?}");
    assert!(b.extra_rounds > a.extra_rounds, "{a:?} {b:?}");
}

#[test]
fn enrollment_runs_are_deterministic_by_seed() {
    let c = enroll_config(60, 1_250_000, 25);
    let a = run(&c, 5).unwrap();
    let b = run(&c, 5).unwrap();
    assert_eq!(a, b);
    assert!(a.workload.is_some());
}

#[test]
fn enrollment_runs_fail_liveness_when_the_bound_is_too_short() {
    let mut c = enroll_config(60, 1_250_000, 25);
    c.liveness_bound_ms = 300;
    assert!(matches!(run(&c, 0), Err(SimFailure::Liveness { .. })));
}

#[test]
fn unusable_workloads_are_refused() {
    let mut c = enroll_config(10, 1_250_000, 25);
    if let Some(w) = c.workload.as_mut() {
        w.max_block_bytes = 100;
    }
    assert!(matches!(run(&c, 0), Err(SimFailure::Config(_))));
    let c = enroll_config(0, 1_250_000, 25);
    assert!(matches!(run(&c, 0), Err(SimFailure::Config(_))));
}
