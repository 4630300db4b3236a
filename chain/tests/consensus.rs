//! Round state machine, certificates and evidence, driven input by input with real
//! secp256k1 signatures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chain::consensus::secp::{self, ValidatorAddress};
use chain::consensus::{
    CommitCertificate, Consensus, ConsensusError, Context, Input, InstanceId, Output, Params,
    Proposal, Round, SignedProposal, SignedVote, Step, Timeout, TimeoutKind, Validator,
    ValidatorSet, Vote, VoteType,
};
use chain::sim::context::{SimContext, SimValue, ValueId};
use secp256k1::{PublicKey, SecretKey, SECP256K1};

const I: InstanceId = InstanceId(7);

struct Net {
    keys: Vec<SecretKey>,
    addrs: Vec<ValidatorAddress>,
    set: ValidatorSet<SimContext>,
}

fn net(powers: &[u64]) -> Net {
    let keys: Vec<SecretKey> = (0..powers.len())
        .map(|i| {
            let mut b = [0u8; 32];
            b[0] = 1;
            b[31] = u8::try_from(i + 1).unwrap();
            SecretKey::from_slice(&b).unwrap()
        })
        .collect();
    let addrs: Vec<ValidatorAddress> = keys
        .iter()
        .map(|k| ValidatorAddress::from_public_key(&PublicKey::from_secret_key(SECP256K1, k)))
        .collect();
    let set = ValidatorSet::new(
        keys.iter()
            .zip(powers)
            .map(|(k, p)| {
                let pk = PublicKey::from_secret_key(SECP256K1, k);
                Validator {
                    address: ValidatorAddress::from_public_key(&pk),
                    public_key: pk,
                    voting_power: *p,
                }
            })
            .collect(),
    )
    .unwrap();
    Net { keys, addrs, set }
}

impl Net {
    fn idx(&self, a: &ValidatorAddress) -> usize {
        self.addrs.iter().position(|x| x == a).unwrap()
    }
    fn proposer(&self, r: u32) -> usize {
        self.idx(self.set.proposer(Round(r)).unwrap())
    }
    /// A validator that proposes none of rounds 0..=2.
    fn bystander(&self) -> usize {
        (0..self.addrs.len())
            .find(|i| (0..3).all(|r| self.proposer(r) != *i))
            .unwrap()
    }
    fn core(&self, me: usize) -> Consensus<SimContext> {
        Consensus::new(
            SimContext,
            Params::new(I),
            Some(self.addrs[me]),
            1,
            self.set.clone(),
        )
    }
    fn vote(
        &self,
        who: usize,
        r: u32,
        t: VoteType,
        value: Option<ValueId>,
    ) -> SignedVote<SimContext> {
        self.vote_at(who, 1, r, t, value)
    }
    fn vote_at(
        &self,
        who: usize,
        h: u64,
        r: u32,
        t: VoteType,
        value: Option<ValueId>,
    ) -> SignedVote<SimContext> {
        let vote = Vote {
            instance: I,
            height: h,
            round: Round(r),
            vote_type: t,
            value,
            validator: self.addrs[who],
        };
        let signature = secp::sign(&self.keys[who], &SimContext.vote_sign_bytes(&vote).unwrap());
        SignedVote { vote, signature }
    }
    fn proposal(&self, r: u32, value: &SimValue, pol: Option<u32>) -> SignedProposal<SimContext> {
        let who = self.proposer(r);
        let proposal = Proposal {
            instance: I,
            height: 1,
            round: Round(r),
            value: value.clone(),
            pol_round: pol.map(Round),
            proposer: self.addrs[who],
        };
        let signature = secp::sign(
            &self.keys[who],
            &SimContext.proposal_sign_bytes(&proposal).unwrap(),
        );
        SignedProposal {
            proposal,
            signature,
        }
    }
}

fn id(v: &SimValue) -> ValueId {
    SimContext.value_id(v)
}

fn val(tag: u8) -> SimValue {
    SimValue::new(1, 0, 0, &[tag])
}

/// Feeds an input, answering validation requests (everything valid) and signing our own
/// votes/proposals with `me`'s key; returns every output seen.
fn feed(
    net: &Net,
    me: usize,
    core: &mut Consensus<SimContext>,
    input: Input<SimContext>,
) -> Vec<Output<SimContext>> {
    let mut seen = Vec::new();
    let mut pending = vec![input];
    while let Some(i) = pending.pop() {
        let outs = core.handle(i).unwrap();
        for o in outs {
            match &o {
                Output::ValidateValue { height, value, .. } => {
                    pending.push(Input::ValueValidated {
                        height: *height,
                        value_id: id(value),
                        valid: value.is_valid_for(*height),
                    })
                }
                Output::SignVote(v) => {
                    let signature =
                        secp::sign(&net.keys[me], &SimContext.vote_sign_bytes(v).unwrap());
                    pending.push(Input::Vote(SignedVote {
                        vote: v.clone(),
                        signature,
                    }));
                }
                Output::SignProposal(p) => {
                    let signature =
                        secp::sign(&net.keys[me], &SimContext.proposal_sign_bytes(p).unwrap());
                    pending.push(Input::Proposal(SignedProposal {
                        proposal: p.clone(),
                        signature,
                    }));
                }
                _ => {}
            }
            seen.push(o);
        }
    }
    seen
}

fn votes_signed(outs: &[Output<SimContext>]) -> Vec<Vote<SimContext>> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SignVote(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

fn others(net: &Net, me: usize) -> Vec<usize> {
    (0..net.addrs.len()).filter(|i| *i != me).collect()
}

fn timeout(r: u32, kind: TimeoutKind) -> Input<SimContext> {
    Input::TimeoutExpired(Timeout {
        height: 1,
        round: Round(r),
        kind,
    })
}

/// Drives a bystander to lock on `v` in round 0 while everyone else precommits nil, then on to
/// round 1 by the precommit timeout.
fn locked_on(net: &Net, me: usize, v: &SimValue) -> Consensus<SimContext> {
    let mut core = net.core(me);
    core.start();
    feed(
        net,
        me,
        &mut core,
        Input::Proposal(net.proposal(0, v, None)),
    );
    let o = others(net, me);
    for w in &o[..2] {
        feed(
            net,
            me,
            &mut core,
            Input::Vote(net.vote(*w, 0, VoteType::Prevote, Some(id(v)))),
        );
    }
    assert_eq!(core.locked_round(), Some(Round(0)));
    for w in &o[..2] {
        feed(
            net,
            me,
            &mut core,
            Input::Vote(net.vote(*w, 0, VoteType::Precommit, None)),
        );
    }
    let outs = feed(net, me, &mut core, timeout(0, TimeoutKind::Precommit));
    assert_eq!(core.round(), Round(1));
    assert!(outs.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.kind == TimeoutKind::Propose && timeout.round == Round(1))));
    core
}

#[test]
fn happy_path_decides_with_verifiable_certificate() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    let start = core.start();
    assert!(start.iter().all(|o| !matches!(o, Output::GetValue { .. })));
    let v = val(1);
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(0, &v, None)),
    );
    assert_eq!(votes_signed(&outs)[0].value, Some(id(&v)));
    assert_eq!(core.step(), Step::Prevote);
    let o = others(&net, me);
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, Some(id(&v)))),
    );
    assert_eq!(core.step(), Step::Prevote, "2 of 4 is not a quorum");
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[1], 0, VoteType::Prevote, Some(id(&v)))),
    );
    let pc = votes_signed(&outs);
    assert_eq!(pc.len(), 1);
    assert_eq!(
        (pc[0].vote_type, pc[0].value),
        (VoteType::Precommit, Some(id(&v)))
    );
    assert_eq!(core.locked_round(), Some(Round(0)));
    assert_eq!(core.valid_round(), Some(Round(0)));
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Precommit, Some(id(&v)))),
    );
    assert!(core.decision().is_none());
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[1], 0, VoteType::Precommit, Some(id(&v)))),
    );
    let d = outs
        .iter()
        .find_map(|o| match o {
            Output::Decide(d) => Some(d.clone()),
            _ => None,
        })
        .expect("decided");
    assert_eq!(d.value, v);
    assert_eq!(core.step(), Step::Commit);
    assert_eq!(d.certificate.signatures.len(), 3);
    assert_eq!(d.certificate.verify(&SimContext, I, &net.set).unwrap(), 30);
}

#[test]
fn proposer_asks_for_a_value_and_proposes_it() {
    let net = net(&[10, 10, 10, 10]);
    let p = net.proposer(0);
    let mut core = net.core(p);
    let outs = core.start();
    let (h, r) = outs
        .iter()
        .find_map(|o| match o {
            Output::GetValue { height, round, .. } => Some((*height, *round)),
            _ => None,
        })
        .expect("asked for a value");
    let v = val(9);
    let outs = feed(
        &net,
        p,
        &mut core,
        Input::ProposeValue {
            height: h,
            round: r,
            value: v.clone(),
        },
    );
    let prop = outs
        .iter()
        .find_map(|o| match o {
            Output::SignProposal(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((prop.value, prop.pol_round), (v.clone(), None));
    // Its own proposal is valid without asking, and it prevotes for it.
    assert_eq!(votes_signed(&outs)[0].value, Some(id(&v)));
}

#[test]
fn locked_validator_prevotes_nil_for_other_value_then_relocks_on_quorum() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let v = val(1);
    let w = val(2);
    let mut core = locked_on(&net, me, &v);
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(1, &w, None)),
    );
    assert_eq!(
        votes_signed(&outs)[0].value,
        None,
        "locked on v: prevote nil for w"
    );
    let o = others(&net, me);
    let mut all = Vec::new();
    for x in &o {
        all.extend(feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 1, VoteType::Prevote, Some(id(&w)))),
        ));
    }
    let pcs = votes_signed(&all);
    assert_eq!(pcs.len(), 1);
    assert_eq!(
        (pcs[0].vote_type, pcs[0].value),
        (VoteType::Precommit, Some(id(&w)))
    );
    assert_eq!(core.locked_round(), Some(Round(1)));
}

#[test]
fn proof_of_lock_from_a_later_round_unlocks() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let (v, w) = (val(1), val(2));
    let o = others(&net, me);

    // Without the +2/3 prevotes of round 1, a round-2 re-proposal of w gets nil.
    let mut core = locked_on(&net, me, &v);
    feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(2, &w, Some(1))),
    );
    assert_eq!(core.round(), Round(1));
    for x in &o[..2] {
        feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 2, VoteType::Prevote, None)),
        );
    }
    assert_eq!(
        core.round(),
        Round(2),
        "more than a third of the power in round 2: skip"
    );
    let outs = feed(&net, me, &mut core, timeout(2, TimeoutKind::Propose));
    assert_eq!(
        votes_signed(&outs)[0].value,
        None,
        "no proof of lock yet: nil on timeout"
    );

    // With them, the proof of lock (round 1 > locked round 0) releases the lock.
    let mut core = locked_on(&net, me, &v);
    feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(2, &w, Some(1))),
    );
    for x in &o {
        feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 1, VoteType::Prevote, Some(id(&w)))),
        );
    }
    assert_eq!(
        core.locked_round(),
        Some(Round(0)),
        "no round-1 proposal held: no relock"
    );
    let mut all = Vec::new();
    for x in &o[..2] {
        all.extend(feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 2, VoteType::Prevote, None)),
        ));
    }
    assert_eq!(core.round(), Round(2));
    let prevotes: Vec<_> = votes_signed(&all)
        .into_iter()
        .filter(|v| v.round == Round(2) && v.vote_type == VoteType::Prevote)
        .collect();
    assert_eq!(prevotes[0].value, Some(id(&w)));
}

#[test]
fn re_proposal_without_proof_of_lock_gets_nil() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let (v, w) = (val(1), val(2));
    let mut core = locked_on(&net, me, &v);
    feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(2, &w, None)),
    );
    let o = others(&net, me);
    let mut all = Vec::new();
    for x in &o[..2] {
        all.extend(feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 2, VoteType::Prevote, None)),
        ));
    }
    let pv: Vec<_> = votes_signed(&all)
        .into_iter()
        .filter(|v| v.round == Round(2))
        .collect();
    assert_eq!(pv[0].value, None);
}

#[test]
fn timeouts_drive_nil_votes_and_grow_per_round() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    let start = core.start();
    let d0 = start
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { timeout, after } if timeout.kind == TimeoutKind::Propose => {
                Some(*after)
            }
            _ => None,
        })
        .unwrap();
    // A stale timer does nothing.
    assert!(feed(&net, me, &mut core, timeout(3, TimeoutKind::Propose)).is_empty());
    let outs = feed(&net, me, &mut core, timeout(0, TimeoutKind::Propose));
    assert_eq!(votes_signed(&outs)[0].value, None);
    let o = others(&net, me);
    let v = val(5);
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, Some(id(&v)))),
    );
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[1], 0, VoteType::Prevote, None)),
    );
    assert!(
        votes_signed(&outs).is_empty(),
        "split prevotes: no precommit yet"
    );
    assert!(outs.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.kind == TimeoutKind::Prevote)));
    let outs = feed(&net, me, &mut core, timeout(0, TimeoutKind::Prevote));
    assert_eq!(votes_signed(&outs)[0].value, None);
    assert_eq!(core.step(), Step::Precommit);
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Precommit, None)),
    );
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[1], 0, VoteType::Precommit, Some(id(&v)))),
    );
    assert!(outs.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.kind == TimeoutKind::Precommit)));
    let outs = feed(&net, me, &mut core, timeout(0, TimeoutKind::Precommit));
    assert_eq!(core.round(), Round(1));
    let d1 = outs
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { timeout, after } if timeout.kind == TimeoutKind::Propose => {
                Some(*after)
            }
            _ => None,
        })
        .unwrap();
    assert!(d1 > d0, "propose timeout grows with the round");
}

#[test]
fn two_nil_prevote_quorum_precommits_nil_at_once() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    feed(&net, me, &mut core, timeout(0, TimeoutKind::Propose));
    let o = others(&net, me);
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, None)),
    );
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[1], 0, VoteType::Prevote, None)),
    );
    let pc = votes_signed(&outs);
    assert_eq!((pc[0].vote_type, pc[0].value), (VoteType::Precommit, None));
}

#[test]
fn skips_to_higher_round_only_with_more_than_a_third() {
    let net = net(&[30, 10, 10, 10]);
    let me = (1..4).find(|i| net.proposer(0) != *i).unwrap();
    let mut core = net.core(me);
    core.start();
    let small = (1..4).find(|i| *i != me).unwrap();
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(small, 5, VoteType::Prevote, None)),
    );
    assert_eq!(core.round(), Round(0), "10 of 60 is not more than a third");
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(0, 5, VoteType::Precommit, None)),
    );
    assert_eq!(core.round(), Round(5), "40 of 60 is");
}

#[test]
fn refuses_bad_inputs() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    let o = others(&net, me);
    let mut wrong = net.vote(o[0], 0, VoteType::Prevote, None);
    wrong.vote.instance = InstanceId(8);
    assert_eq!(
        core.handle(Input::Vote(wrong)).unwrap_err(),
        ConsensusError::WrongInstance
    );
    let mut forged = net.vote(o[0], 0, VoteType::Prevote, None);
    forged.signature = net.vote(o[1], 0, VoteType::Prevote, None).signature;
    assert_eq!(
        core.handle(Input::Vote(forged)).unwrap_err(),
        ConsensusError::InvalidSignature
    );
    let mut outsider = net.vote(o[0], 0, VoteType::Prevote, None);
    outsider.vote.validator = ValidatorAddress([0xee; 20]);
    assert_eq!(
        core.handle(Input::Vote(outsider)).unwrap_err(),
        ConsensusError::UnknownValidator
    );
    assert_eq!(
        core.handle(Input::Vote(net.vote_at(
            o[0],
            3,
            0,
            VoteType::Prevote,
            None
        )))
        .unwrap_err(),
        ConsensusError::WrongHeight
    );
    assert_eq!(
        core.handle(Input::Vote(net.vote(
            o[0],
            100_000,
            VoteType::Prevote,
            None
        )))
        .unwrap_err(),
        ConsensusError::RoundTooFar
    );
    let mut not_proposer = net.proposal(0, &val(1), None);
    let wrong_who = (0..4).find(|i| *i != net.proposer(0)).unwrap();
    not_proposer.proposal.proposer = net.addrs[wrong_who];
    not_proposer.signature = secp::sign(
        &net.keys[wrong_who],
        &SimContext
            .proposal_sign_bytes(&not_proposer.proposal)
            .unwrap(),
    );
    assert_eq!(
        core.handle(Input::Proposal(not_proposer)).unwrap_err(),
        ConsensusError::NotProposer
    );
    let mut bad_pol = net.proposal(1, &val(1), Some(1));
    bad_pol.signature = secp::sign(
        &net.keys[net.proposer(1)],
        &SimContext.proposal_sign_bytes(&bad_pol.proposal).unwrap(),
    );
    assert_eq!(
        core.handle(Input::Proposal(bad_pol)).unwrap_err(),
        ConsensusError::InvalidPolRound
    );
    core.handle(Input::Proposal(net.proposal(0, &val(1), None)))
        .unwrap();
    assert_eq!(
        core.handle(Input::Proposal(net.proposal(0, &val(2), None)))
            .unwrap_err(),
        ConsensusError::ConflictingProposal
    );
}

#[test]
fn invalid_values_get_nil_prevotes_and_are_never_decided() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    let bad = SimValue::new(99, 0, 0, b"wrong height");
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Proposal(net.proposal(0, &bad, None)),
    );
    assert_eq!(votes_signed(&outs)[0].value, None);
    let o = others(&net, me);
    let mut all = Vec::new();
    for x in &o {
        feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 0, VoteType::Prevote, Some(id(&bad)))),
        );
        all.extend(feed(
            &net,
            me,
            &mut core,
            Input::Vote(net.vote(*x, 0, VoteType::Precommit, Some(id(&bad)))),
        ));
    }
    assert!(core.decision().is_none());
    assert!(votes_signed(&all).iter().all(|v| v.value.is_none()));
}

#[test]
fn equivocation_yields_verifiable_evidence_once() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    let o = others(&net, me);
    feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, None)),
    );
    let outs = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, Some(id(&val(3))))),
    );
    let ev = outs
        .iter()
        .find_map(|o| match o {
            Output::Evidence(e) => Some(e.clone()),
            _ => None,
        })
        .expect("evidence");
    assert_eq!(ev.offender(), &net.addrs[o[0]]);
    ev.verify(&SimContext, &net.set).unwrap();
    let again = feed(
        &net,
        me,
        &mut core,
        Input::Vote(net.vote(o[0], 0, VoteType::Prevote, Some(id(&val(4))))),
    );
    assert!(again.iter().all(|o| !matches!(o, Output::Evidence(_))));
    // Not evidence: the same vote twice, or two votes by different validators.
    let mut fake = ev.clone();
    fake.second = fake.first.clone();
    assert!(fake.verify(&SimContext, &net.set).is_err());
    let mut fake = ev.clone();
    fake.second = net.vote(o[1], 0, VoteType::Prevote, Some(id(&val(3))));
    assert!(fake.verify(&SimContext, &net.set).is_err());
    let mut fake = ev;
    fake.second.signature = fake.first.signature;
    assert!(fake.verify(&SimContext, &net.set).is_err());
}

fn certificate(net: &Net, signers: &[usize], v: &SimValue) -> CommitCertificate<SimContext> {
    CommitCertificate {
        instance: I,
        height: 1,
        round: Round(0),
        value_id: id(v),
        signatures: signers
            .iter()
            .map(|s| chain::consensus::CommitSignature {
                validator: net.addrs[*s],
                signature: net.vote(*s, 0, VoteType::Precommit, Some(id(v))).signature,
            })
            .collect(),
    }
}

#[test]
fn certificates_reject_tampering() {
    let net = net(&[10, 10, 10, 10]);
    let v = val(1);
    let good = certificate(&net, &[0, 1, 2], &v);
    assert_eq!(good.verify(&SimContext, I, &net.set).unwrap(), 30);
    assert!(
        certificate(&net, &[0, 1], &v)
            .verify(&SimContext, I, &net.set)
            .is_err(),
        "2 of 4"
    );
    let mut dup = certificate(&net, &[0, 1], &v);
    dup.signatures.push(dup.signatures[0].clone());
    assert!(dup.verify(&SimContext, I, &net.set).is_err());
    let mut other = good.clone();
    other.value_id = id(&val(2));
    assert!(other.verify(&SimContext, I, &net.set).is_err());
    let mut round = good.clone();
    round.round = Round(1);
    assert!(round.verify(&SimContext, I, &net.set).is_err());
    assert_eq!(
        good.verify(&SimContext, InstanceId(8), &net.set)
            .unwrap_err(),
        ConsensusError::WrongInstance
    );
    let mut swapped = good.clone();
    swapped.signatures[0].signature = swapped.signatures[1].signature;
    assert!(swapped.verify(&SimContext, I, &net.set).is_err());
    let stranger = net_of_strangers();
    assert!(good.verify(&SimContext, I, &stranger).is_err());
}

fn net_of_strangers() -> ValidatorSet<SimContext> {
    let mut b = [7u8; 32];
    b[0] = 2;
    let pk = PublicKey::from_secret_key(SECP256K1, &SecretKey::from_slice(&b).unwrap());
    ValidatorSet::new(vec![Validator {
        address: ValidatorAddress::from_public_key(&pk),
        public_key: pk,
        voting_power: 1,
    }])
    .unwrap()
}

#[test]
fn synced_commit_decides_and_tampered_commit_is_refused() {
    let net = net(&[10, 10, 10, 10]);
    let v = val(1);
    let mut core = net.core(3);
    core.start();
    let bad = certificate(&net, &[0, 1], &v);
    assert!(core
        .handle(Input::Commit {
            value: v.clone(),
            certificate: bad
        })
        .is_err());
    let good = certificate(&net, &[0, 1, 2], &v);
    assert!(core
        .handle(Input::Commit {
            value: val(2),
            certificate: good.clone()
        })
        .is_err());
    let outs = core
        .handle(Input::Commit {
            value: v.clone(),
            certificate: good.clone(),
        })
        .unwrap();
    assert!(matches!(&outs[..], [Output::Decide(d)] if d.value == v));
    assert_eq!(
        core.handle(Input::Commit {
            value: v,
            certificate: good
        })
        .unwrap_err(),
        ConsensusError::AlreadyDecided
    );
}

#[test]
fn next_height_messages_are_buffered_and_replayed() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    let o = others(&net, me);
    for x in &o {
        core.handle(Input::Vote(net.vote_at(
            *x,
            2,
            0,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    }
    // Next-height messages are checked against the current set before being kept.
    let mut forged = net.vote_at(o[0], 2, 0, VoteType::Prevote, None);
    forged.signature = net.vote_at(o[1], 2, 0, VoteType::Prevote, None).signature;
    assert_eq!(
        core.handle(Input::Vote(forged)).unwrap_err(),
        ConsensusError::InvalidSignature
    );
    let mut outsider = net.vote_at(o[0], 2, 0, VoteType::Prevote, None);
    outsider.vote.validator = ValidatorAddress([0xee; 20]);
    assert_eq!(
        core.handle(Input::Vote(outsider)).unwrap_err(),
        ConsensusError::UnknownValidator
    );
    let mut next = net.set.clone();
    next.advance();
    let outs = core.start_height(2, next);
    assert_eq!(core.height(), 2);
    assert!(
        outs.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.kind == TimeoutKind::Precommit)),
        "three buffered precommits form a quorum at height 2"
    );
}

#[test]
fn own_messages_are_available_for_regossip() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    feed(&net, me, &mut core, timeout(0, TimeoutKind::Propose));
    let (p, votes) = core.gossip_messages();
    assert!(p.is_none());
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].vote.validator, net.addrs[me]);
}

#[test]
fn instances_are_isolated_and_signatures_bind_the_instance() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut main = net.core(me);
    let mut shard = Consensus::new(
        SimContext,
        Params::new(InstanceId(8)),
        Some(net.addrs[me]),
        1,
        net.set.clone(),
    );
    main.start();
    shard.start();
    let o = others(&net, me);
    let v = net.vote(o[0], 0, VoteType::Prevote, None);
    assert_eq!(
        shard.handle(Input::Vote(v.clone())).unwrap_err(),
        ConsensusError::WrongInstance
    );
    let mut replayed = v.clone();
    replayed.vote.instance = InstanceId(8);
    assert_eq!(
        shard.handle(Input::Vote(replayed)).unwrap_err(),
        ConsensusError::InvalidSignature
    );
    main.handle(Input::Vote(v)).unwrap();
}

mod model {
    //! Random input sequences against one validator's core: whatever arrives, its own
    //! signatures move strictly forward, its precommits and decisions are backed by quorums it
    //! actually received, and its lock only moves forward.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone)]
    enum Action {
        Vote {
            from: usize,
            round: u32,
            precommit: bool,
            value: u8,
        },
        Proposal {
            round: u32,
            value: u8,
            pol: Option<u32>,
        },
        Timeout {
            round: u32,
            kind: u8,
        },
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (1usize..4, 0u32..4, any::<bool>(), 0u8..3).prop_map(|(from, round, precommit, value)| Action::Vote { from, round, precommit, value }),
            2 => (0u32..4, 1u8..3, any::<bool>()).prop_map(|(round, value, p)| Action::Proposal {
                round,
                value,
                pol: if p && round > 0 { Some(round - 1) } else { None },
            }),
            2 => (0u32..4, 0u8..3).prop_map(|(round, kind)| Action::Timeout { round, kind }),
        ]
    }

    fn value_of(k: u8) -> Option<ValueId> {
        (k > 0).then(|| id(&val(k)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn own_votes_are_monotonic_and_backed_by_quorums(actions in prop::collection::vec(action(), 1..80)) {
            let net = net(&[10, 10, 10, 10]);
            let me = 0;
            let mut core = net.core(me);
            // Inputs as received: (round, type) -> value -> voters.
            let mut received: BTreeMap<(u32, bool), BTreeMap<Option<ValueId>, BTreeSet<usize>>> = BTreeMap::new();
            let mut signed: Vec<(u32, bool)> = Vec::new();
            let mut last_lock = None;
            let mut outs = core.start();
            let mut pending: Vec<Input<SimContext>> = Vec::new();
            let mut actions = actions.into_iter();
            loop {
                for o in std::mem::take(&mut outs) {
                    match o {
                        Output::SignVote(v) => {
                            prop_assert!(core.decision().is_none());
                            let pos = (v.round.0, v.vote_type == VoteType::Precommit);
                            prop_assert!(signed.last().is_none_or(|l| *l < pos), "own votes move strictly forward: {:?} then {:?}", signed, pos);
                            signed.push(pos);
                            if let (VoteType::Precommit, Some(x)) = (v.vote_type, v.value) {
                                let n = received.get(&(v.round.0, false)).and_then(|m| m.get(&Some(x))).map_or(0, |s| s.len());
                                prop_assert!(n >= 3, "precommit for a value needs +2/3 prevotes received");
                            }
                            received.entry(pos).or_default().entry(v.value).or_default().insert(me);
                            let signature = secp::sign(&net.keys[me], &SimContext.vote_sign_bytes(&v).unwrap());
                            pending.push(Input::Vote(SignedVote { vote: v, signature }));
                        }
                        Output::SignProposal(p) => {
                            let signature = secp::sign(&net.keys[me], &SimContext.proposal_sign_bytes(&p).unwrap());
                            pending.push(Input::Proposal(SignedProposal { proposal: p, signature }));
                        }
                        Output::GetValue { height, round, .. } => pending.push(Input::ProposeValue { height, round, value: val(1) }),
                        Output::ValidateValue { height, value, .. } => pending.push(Input::ValueValidated { height, value_id: id(&value), valid: value.is_valid_for(height) }),
                        Output::Decide(d) => {
                            let c = &d.certificate;
                            prop_assert!(c.verify(&SimContext, I, &net.set).is_ok());
                            let n = received.get(&(c.round.0, true)).and_then(|m| m.get(&Some(c.value_id))).map_or(0, |s| s.len());
                            prop_assert!(n >= 3);
                        }
                        _ => {}
                    }
                }
                let lock = core.locked_round();
                prop_assert!(lock >= last_lock, "lock never moves back");
                last_lock = lock;
                if let Some(input) = pending.pop() {
                    outs = core.handle(input).unwrap();
                    continue;
                }
                let Some(a) = actions.next() else { break };
                let input = match a {
                    Action::Vote { from, round, precommit, value } => {
                        let t = if precommit { VoteType::Precommit } else { VoteType::Prevote };
                        received.entry((round, precommit)).or_default().entry(value_of(value)).or_default().insert(from);
                        Input::Vote(net.vote(from, round, t, value_of(value)))
                    }
                    Action::Proposal { round, value, pol } => {
                        if net.proposer(round) == me { continue; }
                        Input::Proposal(net.proposal(round, &val(value), pol))
                    }
                    Action::Timeout { round, kind } => timeout(round, match kind {
                        0 => TimeoutKind::Propose,
                        1 => TimeoutKind::Prevote,
                        _ => TimeoutKind::Precommit,
                    }),
                };
                // Refusals (conflicting proposals, equivocations' duplicates) are fine; panics are not.
                outs = core.handle(input).unwrap_or_default();
            }
        }
    }
}

mod driver {
    use super::*;
    use chain::consensus::{
        Application, ConsensusMessage, Driver, Effect, MemoryStore, SignStep, Signer,
    };

    #[derive(Clone, Copy)]
    struct Key(SecretKey, ValidatorAddress);
    impl Signer<SimContext> for Key {
        fn address(&self) -> ValidatorAddress {
            self.1
        }
        fn sign(&self, bytes: &[u8]) -> secp256k1::ecdsa::Signature {
            secp::sign(&self.0, bytes)
        }
    }
    struct App;
    impl Application<SimContext> for App {
        fn propose(&mut self, height: u64, round: Round) -> SimValue {
            SimValue::new(height, 9, round.0, b"app")
        }
        fn validate(&mut self, height: u64, value: &SimValue) -> bool {
            value.is_valid_for(height)
        }
    }

    struct OtherApp;
    impl Application<SimContext> for OtherApp {
        fn propose(&mut self, height: u64, round: Round) -> SimValue {
            SimValue::new(height, 9, round.0, b"different")
        }
        fn validate(&mut self, height: u64, value: &SimValue) -> bool {
            value.is_valid_for(height)
        }
    }

    fn broadcasts(e: &[Effect<SimContext>]) -> Vec<ConsensusMessage<SimContext>> {
        e.iter()
            .filter_map(|e| match e {
                Effect::Broadcast(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn driver_signs_logs_commits_and_replays_identically() {
        let net = net(&[10, 10, 10, 10]);
        let me = net.proposer(0);
        let key = Key(net.keys[me], net.addrs[me]);
        let mut store = MemoryStore::<SimContext>::default();
        let mut d = Driver::new(SimContext, Params::new(I), key, 1, net.set.clone());
        let first = broadcasts(&d.start(&mut App, &mut store));
        // Proposal, then our prevote for it.
        assert!(
            matches!(&first[..], [ConsensusMessage::Proposal(p), ConsensusMessage::Vote(v)]
            if p.proposal.value.is_valid_for(1) && v.vote.value == Some(id(&p.proposal.value)))
        );
        assert_eq!(store.guard.last().unwrap().step, SignStep::Prevote);
        assert!(
            store.wal.is_empty(),
            "our own messages are not external inputs"
        );
        let value = match &first[0] {
            ConsensusMessage::Proposal(p) => p.proposal.value.clone(),
            ConsensusMessage::Vote(_) => unreachable!(),
        };
        let o = others(&net, me);
        let mut precommit = Vec::new();
        for x in &o[..2] {
            let e = d
                .handle(
                    Input::Vote(net.vote(*x, 0, VoteType::Prevote, Some(id(&value)))),
                    &mut App,
                    &mut store,
                )
                .unwrap();
            precommit.extend(broadcasts(&e));
        }
        assert_eq!(store.wal.len(), 2);
        // A re-gossiped copy is neither processed nor logged again.
        let copy = Input::Vote(net.vote(o[0], 0, VoteType::Prevote, Some(id(&value))));
        assert!(d.handle(copy, &mut App, &mut store).unwrap().is_empty());
        assert_eq!(store.wal.len(), 2);

        // Crash: a fresh driver replays the log and re-signs exactly the same messages.
        let mut again = Driver::new(SimContext, Params::new(I), key, 1, net.set.clone());
        let mut replayed = broadcasts(&again.start(&mut App, &mut store));
        for input in std::mem::take(&mut store.wal) {
            let e = again.handle(input, &mut App, &mut store).unwrap();
            assert!(e
                .iter()
                .all(|e| !matches!(e, Effect::SigningRefused { .. })));
            replayed.extend(broadcasts(&e));
        }
        let mut all = first.clone();
        all.extend(precommit);
        assert_eq!(replayed, all);

        // A next-height message arriving before our decision is buffered and logged.
        let early = Input::Vote(net.vote_at(o[2], 2, 0, VoteType::Prevote, None));
        assert!(again
            .handle(early.clone(), &mut App, &mut store)
            .unwrap()
            .is_empty());
        for x in &o[..2] {
            let e = again
                .handle(
                    Input::Vote(net.vote(*x, 0, VoteType::Precommit, Some(id(&value)))),
                    &mut App,
                    &mut store,
                )
                .unwrap();
            if let Some(Effect::Decided(dec)) = e.iter().find(|e| matches!(e, Effect::Decided(_))) {
                assert_eq!(dec.value, value);
            }
        }
        assert_eq!(store.decisions.len(), 1);
        assert_eq!(
            store.wal,
            vec![early.clone()],
            "a commit drops the decided height's inputs and keeps the next height's"
        );

        // A driver that lost its log but kept the guard can neither propose another value nor
        // prevote nil where it prevoted the value.
        let mut amnesic = Driver::new(SimContext, Params::new(I), key, 1, net.set.clone());
        let mut fresh = MemoryStore::<SimContext> {
            guard: store.guard.clone(),
            ..MemoryStore::default()
        };
        let e = amnesic.start(&mut OtherApp, &mut fresh);
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::SigningRefused {
                step: SignStep::Propose,
                ..
            }
        )));
        assert!(broadcasts(&e).is_empty());
        let e = amnesic
            .handle(timeout(0, TimeoutKind::Propose), &mut OtherApp, &mut fresh)
            .unwrap();
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::SigningRefused {
                step: SignStep::Prevote,
                ..
            }
        )));
        assert!(broadcasts(&e).is_empty());
    }

    /// A store that notes how many inputs its log held each time a signature was authorized.
    #[derive(Default)]
    struct Recording {
        inner: MemoryStore<SimContext>,
        logged_at_signing: Vec<(SignStep, usize)>,
    }
    impl chain::consensus::ConsensusStore<SimContext> for Recording {
        fn authorize_signing(
            &mut self,
            height: u64,
            round: Round,
            step: SignStep,
            sign_bytes: &[u8],
        ) -> Result<(), chain::consensus::ConsensusError> {
            self.logged_at_signing.push((step, self.inner.wal.len()));
            self.inner
                .authorize_signing(height, round, step, sign_bytes)
        }
        fn append_input(&mut self, input: &Input<SimContext>) {
            self.inner.append_input(input);
        }
        fn commit(&mut self, decision: &chain::consensus::Decision<SimContext>) {
            self.inner.commit(decision);
        }
    }

    /// The node's log append is not fsynced by itself; what makes it durable is the synced guard
    /// write that precedes every signature. That only holds if the input a vote answers is
    /// appended before the vote is authorized.
    #[test]
    fn every_input_a_vote_answers_is_logged_before_the_vote_is_signed() {
        let net = net(&[10, 10, 10, 10]);
        let me = net.proposer(0);
        let key = Key(net.keys[me], net.addrs[me]);
        let mut store = Recording::default();
        let mut d = Driver::new(SimContext, Params::new(I), key, 1, net.set.clone());
        let first = broadcasts(&d.start(&mut App, &mut store));
        let value = match &first[0] {
            ConsensusMessage::Proposal(p) => p.proposal.value.clone(),
            ConsensusMessage::Vote(_) => unreachable!(),
        };
        assert_eq!(
            store.logged_at_signing,
            vec![(SignStep::Propose, 0), (SignStep::Prevote, 0)]
        );
        let o = others(&net, me);
        let mut accepted = 0;
        for kind in [VoteType::Prevote, VoteType::Precommit] {
            for x in &o[..2] {
                let signed_before = store.logged_at_signing.len();
                d.handle(
                    Input::Vote(net.vote(*x, 0, kind, Some(id(&value)))),
                    &mut App,
                    &mut store,
                )
                .unwrap();
                accepted += 1;
                for &(s, logged) in &store.logged_at_signing[signed_before..] {
                    assert_eq!(
                        logged, accepted,
                        "{s:?} authorized with {logged} of {accepted} inputs logged"
                    );
                }
            }
        }
        // The second prevote completed a quorum: our precommit answered it.
        assert_eq!(
            store.logged_at_signing.last(),
            Some(&(SignStep::Precommit, 2))
        );
        assert_eq!(store.inner.decisions.len(), 1);
    }
}

#[test]
fn one_signer_cannot_crowd_the_next_height_buffer() {
    let net = net(&[10, 10, 10, 10]);
    let me = net.bystander();
    let mut core = net.core(me);
    core.start();
    let o = others(&net, me);
    for r in 0..10 {
        core.handle(Input::Vote(net.vote_at(
            o[0],
            2,
            r,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    }
    for x in &o[1..] {
        core.handle(Input::Vote(net.vote_at(
            *x,
            2,
            9,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    }
    let mut next = net.set.clone();
    next.advance();
    let outs = core.start_height(2, next);
    assert_eq!(
        core.round(),
        Round(9),
        "two signers at round 9 hold more than a third"
    );
    let precommit_timeout = |outs: &[Output<SimContext>]| {
        outs.iter().any(|o| {
            matches!(o, Output::ScheduleTimeout { timeout, .. }
            if timeout.kind == TimeoutKind::Precommit && timeout.round == Round(9))
        })
    };
    assert!(
        !precommit_timeout(&outs),
        "o[0]'s tenth message was not kept"
    );
    let outs = core
        .handle(Input::Vote(net.vote_at(
            o[0],
            2,
            9,
            VoteType::Precommit,
            None,
        )))
        .unwrap();
    assert!(precommit_timeout(&outs));
}
