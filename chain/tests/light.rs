//! The light client against a chain of real secp256k1-signed headers with a validator-set
//! change, and every tampering it must refuse.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use chain::block::{txs_root, validator_set_hash, BlockHash, ChainContext, Header};
use chain::consensus::secp::{self, ValidatorAddress};
use chain::consensus::{
    CommitCertificate, CommitSignature, ConsensusError, Context, InstanceId, Round, Validator,
    ValidatorSet,
};
use chain::light::{
    verify_commit, verify_state, LightClient, LightError, SignedHeader, StateAnswer,
};
use chain::state::{apply, prove, MemNodes, ProofError, WriteSet, EMPTY_ROOT};
use primitives::hash::Hash32;
use secp256k1::{PublicKey, SecretKey, SECP256K1};

const CHAIN: &str = "carchain-light-test";

/// One state write: key and new value (`None` deletes).
type Write<'a> = (&'a [u8], Option<&'a [u8]>);

struct Key {
    sk: SecretKey,
    pk: PublicKey,
    addr: ValidatorAddress,
}

fn key(seed: u8) -> Key {
    let mut b = [0u8; 32];
    b[0] = 1;
    b[31] = seed;
    let sk = SecretKey::from_slice(&b).unwrap();
    let pk = PublicKey::from_secret_key(SECP256K1, &sk);
    Key {
        sk,
        pk,
        addr: ValidatorAddress::from_public_key(&pk),
    }
}

fn set(keys: &[&Key], powers: &[u64]) -> ValidatorSet<ChainContext> {
    ValidatorSet::new(
        keys.iter()
            .zip(powers)
            .map(|(k, p)| Validator {
                address: k.addr,
                public_key: k.pk,
                voting_power: *p,
            })
            .collect(),
    )
    .unwrap()
}

fn certify(
    ctx: &ChainContext,
    header: &Header,
    signers: &[&Key],
) -> CommitCertificate<ChainContext> {
    let mut cert = CommitCertificate {
        instance: header.instance,
        height: header.height,
        round: Round(0),
        value_id: header.hash().unwrap(),
        signatures: Vec::new(),
    };
    cert.signatures = signers
        .iter()
        .map(|k| CommitSignature {
            validator: k.addr,
            signature: secp::sign(&k.sk, &ctx.vote_sign_bytes(&cert.vote_of(&k.addr)).unwrap()),
        })
        .collect();
    cert
}

/// A three-block chain: heights 1 and 2 signed by set A (a, b, c, d), which at height 2 names
/// set B (c, d, e) as the next signers; height 3 signed by B. The state after height 3 holds
/// `balance/alice = 100` and `balance/carol = 5`; `balance/bob` was deleted.
struct Fixture {
    ctx: ChainContext,
    keys: Vec<Key>,
    set_a: ValidatorSet<ChainContext>,
    set_b: ValidatorSet<ChainContext>,
    headers: Vec<SignedHeader>,
    nodes: MemNodes,
}

impl Fixture {
    fn a(&self) -> Vec<&Key> {
        self.keys[..4].iter().collect()
    }
    fn b(&self) -> Vec<&Key> {
        self.keys[2..].iter().collect()
    }
}

fn header(
    prev: Option<&Header>,
    state_root: Hash32,
    vals: Hash32,
    next_vals: Hash32,
    proposer: ValidatorAddress,
) -> Header {
    Header {
        chain_id: CHAIN.into(),
        instance: InstanceId(0),
        height: prev.map_or(1, |p| p.height + 1),
        time_ms: prev.map_or(1_000, |p| p.time_ms + 5_000),
        prev_hash: prev.map_or(BlockHash([0; 32]), |p| p.hash().unwrap()),
        txs_root: txs_root(&[]),
        state_root,
        validators_hash: vals,
        next_validators_hash: next_vals,
        proposer,
    }
}

fn fixture() -> Fixture {
    let ctx = ChainContext::new(CHAIN);
    let keys: Vec<Key> = (1..=5).map(key).collect();
    let set_a = set(&keys[..4].iter().collect::<Vec<_>>(), &[10, 10, 10, 10]);
    let set_b = set(&keys[2..].iter().collect::<Vec<_>>(), &[30, 30, 40]);
    let (ha, hb) = (validator_set_hash(&set_a), validator_set_hash(&set_b));

    let mut nodes = MemNodes::new();
    let mut root = EMPTY_ROOT;
    let mut headers: Vec<SignedHeader> = Vec::new();
    let blocks: [(&[Write], Hash32, Hash32); 3] = [
        (
            &[
                (b"balance/alice", Some(b"50")),
                (b"balance/bob", Some(b"7")),
            ],
            ha,
            ha,
        ),
        (&[(b"balance/alice", Some(b"80"))], ha, hb),
        (
            &[
                (b"balance/alice", Some(b"100")),
                (b"balance/bob", None),
                (b"balance/carol", Some(b"5")),
            ],
            hb,
            hb,
        ),
    ];
    for (i, (writes, vals, next)) in blocks.iter().enumerate() {
        let ws: WriteSet = writes
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        let u = apply(&nodes, root, &ws).unwrap();
        nodes.commit(&u);
        root = u.root;
        let h = header(
            headers.last().map(|s| &s.header),
            root,
            *vals,
            *next,
            keys[i].addr,
        );
        let signers: Vec<&Key> = if *vals == ha {
            keys[..3].iter().collect() // 30 of 40: more than 2/3
        } else {
            keys[3..].iter().collect() // d and e: 70 of 100
        };
        let commit = certify(&ctx, &h, &signers);
        headers.push(SignedHeader { header: h, commit });
    }
    Fixture {
        ctx,
        keys,
        set_a,
        set_b,
        headers,
        nodes,
    }
}

fn client(f: &Fixture) -> LightClient {
    LightClient::new(f.ctx.clone(), f.headers[0].header.clone(), f.set_a.clone()).unwrap()
}

#[test]
fn follows_a_chain_through_a_validator_set_change_and_checks_state() {
    let f = fixture();
    let mut c = client(&f);
    c.update(&f.headers[1], f.set_a.clone()).unwrap();
    c.update(&f.headers[2], f.set_b.clone()).unwrap();
    assert_eq!(c.trusted_header().height, 3);
    assert_eq!(c.trusted_validators(), &f.set_b);

    let root = c.trusted_header().state_root;
    let alice = StateAnswer {
        key: b"balance/alice".to_vec(),
        value: Some(b"100".to_vec()),
        proof: prove(&f.nodes, root, b"balance/alice").unwrap(),
    };
    c.verify_answer(&alice).unwrap();
    let bob = StateAnswer {
        key: b"balance/bob".to_vec(),
        value: None,
        proof: prove(&f.nodes, root, b"balance/bob").unwrap(),
    };
    c.verify_answer(&bob).unwrap();
    // Height 1's state is still provable against height 1's header.
    let h1 = &f.headers[0].header;
    let p = prove(&f.nodes, h1.state_root, b"balance/bob").unwrap();
    verify_state(h1, b"balance/bob", Some(b"7"), &p).unwrap();
    assert!(verify_state(h1, b"balance/bob", None, &p).is_err());
}

#[test]
fn tampered_state_answers_are_refused() {
    let f = fixture();
    let mut c = client(&f);
    c.update(&f.headers[1], f.set_a.clone()).unwrap();
    c.update(&f.headers[2], f.set_b.clone()).unwrap();
    let root = c.trusted_header().state_root;
    let honest = StateAnswer {
        key: b"balance/alice".to_vec(),
        value: Some(b"100".to_vec()),
        proof: prove(&f.nodes, root, b"balance/alice").unwrap(),
    };

    // Tampered value.
    let mut a = honest.clone();
    a.value = Some(b"1000000".to_vec());
    assert_eq!(
        c.verify_answer(&a),
        Err(LightError::Proof(ProofError::WrongValue))
    );
    // A stale value (true at height 2, not at 3).
    a.value = Some(b"80".to_vec());
    assert!(c.verify_answer(&a).is_err());
    // Claimed absent.
    a.value = None;
    assert_eq!(
        c.verify_answer(&a),
        Err(LightError::Proof(ProofError::Present))
    );
    // Another key with this proof.
    let mut a = honest.clone();
    a.key = b"balance/mallory".to_vec();
    assert!(c.verify_answer(&a).is_err());
    // Tampered proof.
    let mut a = honest.clone();
    if let Some(s) = a.proof.siblings.first_mut() {
        s[5] ^= 0x10;
    } else {
        panic!("two keys were written, so the proof has a sibling");
    }
    assert_eq!(
        c.verify_answer(&a),
        Err(LightError::Proof(ProofError::RootMismatch))
    );
    // An old proof against the new root.
    let mut a = honest.clone();
    a.value = Some(b"80".to_vec());
    a.proof = prove(&f.nodes, f.headers[1].header.state_root, b"balance/alice").unwrap();
    assert!(c.verify_answer(&a).is_err());
    // A true answer for a root the header does not carry.
    let mut forged = c.trusted_header().clone();
    forged.state_root = f.headers[1].header.state_root;
    assert!(verify_state(&forged, b"balance/alice", Some(b"100"), &honest.proof).is_err());
}

#[test]
fn verify_commit_accepts_the_honest_header() {
    let f = fixture();
    let s = &f.headers[0];
    assert_eq!(
        verify_commit(&f.ctx, &s.header, &s.commit, &f.set_a).unwrap(),
        30
    );
    let s = &f.headers[2];
    assert_eq!(
        verify_commit(&f.ctx, &s.header, &s.commit, &f.set_b).unwrap(),
        70
    );
}

#[test]
fn a_tampered_header_field_breaks_the_certificate() {
    let f = fixture();
    let s = &f.headers[1];
    let tampers: Vec<fn(&mut Header)> = vec![
        |h| h.state_root[0] ^= 1,
        |h| h.time_ms += 1,
        |h| h.txs_root[3] ^= 1,
        |h| h.next_validators_hash[0] ^= 1,
        |h| h.prev_hash.0[0] ^= 1,
        |h| h.proposer.0[0] ^= 1,
    ];
    for t in tampers {
        let mut h = s.header.clone();
        t(&mut h);
        assert_eq!(
            verify_commit(&f.ctx, &h, &s.commit, &f.set_a),
            Err(LightError::NotThisHeader)
        );
        let mut c = client(&f);
        let forged = SignedHeader {
            header: h,
            commit: s.commit.clone(),
        };
        assert!(c.update(&forged, f.set_a.clone()).is_err());
        assert_eq!(c.trusted_header().height, 1);
    }
    // A re-certified header whose validators hash names a set other than the signers'.
    let mut h = s.header.clone();
    h.validators_hash[0] ^= 1;
    let commit = certify(&f.ctx, &h, &f.a()[..3]);
    assert_eq!(
        verify_commit(&f.ctx, &h, &commit, &f.set_a),
        Err(LightError::WrongValidatorSet)
    );
}

#[test]
fn a_certificate_below_two_thirds_is_refused() {
    let f = fixture();
    let s = &f.headers[0];
    // Two of four equal validators: exactly half.
    let commit = certify(&f.ctx, &s.header, &f.a()[..2]);
    assert!(matches!(
        verify_commit(&f.ctx, &s.header, &commit, &f.set_a),
        Err(LightError::Certificate(ConsensusError::InvalidCertificate(
            _
        )))
    ));
    // Set B: d (30) + c (30) = 60 of 100, not more than 2/3.
    let s = &f.headers[2];
    let commit = certify(&f.ctx, &s.header, &f.b()[..2]);
    let mut c = client(&f);
    c.update(&f.headers[1], f.set_a.clone()).unwrap();
    let weak = SignedHeader {
        header: s.header.clone(),
        commit,
    };
    assert!(matches!(
        c.update(&weak, f.set_b.clone()),
        Err(LightError::Certificate(_))
    ));
    assert_eq!(c.trusted_header().height, 2);
    // A signer listed twice does not count twice.
    let mut commit = certify(&f.ctx, &f.headers[0].header, &f.a()[..2]);
    commit.signatures.push(commit.signatures[0].clone());
    assert!(verify_commit(&f.ctx, &f.headers[0].header, &commit, &f.set_a).is_err());
}

#[test]
fn signatures_from_outside_the_set_are_refused() {
    let f = fixture();
    let s = &f.headers[0];
    // e is not in set A.
    let outsider = &f.keys[4];
    let commit = certify(&f.ctx, &s.header, &[&f.keys[0], &f.keys[1], outsider]);
    assert!(matches!(
        verify_commit(&f.ctx, &s.header, &commit, &f.set_a),
        Err(LightError::Certificate(ConsensusError::InvalidCertificate(
            _
        )))
    ));
    // An outsider's signature under a member's address.
    let mut commit = certify(&f.ctx, &s.header, &f.a()[..3]);
    let vote = commit.vote_of(&f.keys[2].addr);
    commit.signatures[2].signature =
        secp::sign(&outsider.sk, &f.ctx.vote_sign_bytes(&vote).unwrap());
    assert!(verify_commit(&f.ctx, &s.header, &commit, &f.set_a).is_err());
    // A set that contains the outsider but not the header's signers is not the header's set.
    let other = set(&[&f.keys[0], &f.keys[1], outsider], &[10, 10, 10]);
    let commit = certify(&f.ctx, &s.header, &[&f.keys[0], &f.keys[1], outsider]);
    assert_eq!(
        verify_commit(&f.ctx, &s.header, &commit, &other),
        Err(LightError::WrongValidatorSet)
    );
}

#[test]
fn wrong_chain_id_is_refused() {
    let f = fixture();
    let s = &f.headers[0];
    // The same header checked by a client of another chain.
    let other = ChainContext::new("carchain-other");
    assert!(matches!(
        verify_commit(&other, &s.header, &s.commit, &f.set_a),
        Err(LightError::WrongChain { .. })
    ));
    // A header of another chain, signed by the same validators for that chain.
    let mut h = f.headers[1].header.clone();
    h.chain_id = "carchain-other".into();
    let commit = certify(&other, &h, &f.a()[..3]);
    let mut c = client(&f);
    let foreign = SignedHeader {
        header: h.clone(),
        commit: commit.clone(),
    };
    assert!(matches!(
        c.update(&foreign, f.set_a.clone()),
        Err(LightError::WrongChain { .. })
    ));
    // Signatures made for another chain id do not verify under ours, even on our header.
    let ours = f.headers[1].header.clone();
    let mut commit = certify(&f.ctx, &ours, &f.a()[..3]);
    let votes: Vec<_> = f.a().iter().map(|k| commit.vote_of(&k.addr)).collect();
    for ((s, k), vote) in commit.signatures.iter_mut().zip(f.a()).zip(votes) {
        s.signature = secp::sign(&k.sk, &other.vote_sign_bytes(&vote).unwrap());
    }
    assert!(matches!(
        verify_commit(&f.ctx, &ours, &commit, &f.set_a),
        Err(LightError::Certificate(_))
    ));
    assert!(LightClient::new(other, f.headers[0].header.clone(), f.set_a.clone()).is_err());
}

#[test]
fn wrong_height_is_refused() {
    let f = fixture();
    // Skipping a height.
    let mut c = client(&f);
    assert_eq!(
        c.update(&f.headers[2], f.set_b.clone()),
        Err(LightError::NotNext {
            expected: 2,
            found: 3
        })
    );
    // Replaying the anchor.
    assert!(matches!(
        c.update(&f.headers[0], f.set_a.clone()),
        Err(LightError::NotNext { .. })
    ));
    // A certificate for another height than its header.
    let s = &f.headers[1];
    let mut commit = certify(&f.ctx, &s.header, &f.a()[..3]);
    commit.height = 7;
    assert_eq!(
        verify_commit(&f.ctx, &s.header, &commit, &f.set_a),
        Err(LightError::HeightMismatch { cert: 7, header: 2 })
    );
    // A header relabelled to the right height but not linked to the trusted one.
    let mut h = f.headers[2].header.clone();
    h.height = 2;
    h.validators_hash = validator_set_hash(&f.set_a);
    let commit = certify(&f.ctx, &h, &f.a()[..3]);
    let unlinked = SignedHeader { header: h, commit };
    assert_eq!(
        c.update(&unlinked, f.set_a.clone()),
        Err(LightError::NotLinked)
    );
    // Another instance.
    let mut commit = s.commit.clone();
    commit.instance = InstanceId(1);
    assert_eq!(
        verify_commit(&f.ctx, &s.header, &commit, &f.set_a),
        Err(LightError::WrongInstance)
    );
}

#[test]
fn a_set_change_not_vouched_for_is_refused() {
    let f = fixture();
    let mut c = client(&f);
    // Height 1 names set A for height 2: a header at 2 that claims set B, fully signed by B,
    // is refused however valid its certificate.
    let mut h = f.headers[1].header.clone();
    h.validators_hash = validator_set_hash(&f.set_b);
    let commit = certify(&f.ctx, &h, &f.b());
    let hijack = SignedHeader {
        header: h.clone(),
        commit: commit.clone(),
    };
    assert_eq!(verify_commit(&f.ctx, &h, &commit, &f.set_b).unwrap(), 100);
    assert_eq!(
        c.update(&hijack, f.set_b.clone()),
        Err(LightError::SetNotVouched)
    );
    // After height 2 (which names B), the old set A cannot sign height 3.
    c.update(&f.headers[1], f.set_a.clone()).unwrap();
    let mut h = f.headers[2].header.clone();
    h.validators_hash = validator_set_hash(&f.set_a);
    let commit = certify(&f.ctx, &h, &f.a());
    let stale = SignedHeader { header: h, commit };
    assert_eq!(
        c.update(&stale, f.set_a.clone()),
        Err(LightError::SetNotVouched)
    );
    // Nor can B's header be checked against A.
    assert_eq!(
        c.update(&f.headers[2], f.set_a.clone()),
        Err(LightError::SetNotVouched)
    );
    c.update(&f.headers[2], f.set_b.clone()).unwrap();
    // The anchor must come with its own set.
    assert_eq!(
        LightClient::new(f.ctx.clone(), f.headers[0].header.clone(), f.set_b.clone()).err(),
        Some(LightError::WrongValidatorSet)
    );
}

#[test]
fn time_must_increase() {
    let f = fixture();
    let mut c = client(&f);
    let mut h = f.headers[1].header.clone();
    h.time_ms = f.headers[0].header.time_ms;
    let commit = certify(&f.ctx, &h, &f.a()[..3]);
    assert_eq!(
        c.update(&SignedHeader { header: h, commit }, f.set_a.clone()),
        Err(LightError::TimeNotIncreasing)
    );
}

#[test]
fn signed_headers_and_answers_round_trip_the_codec() {
    let f = fixture();
    let s = &f.headers[2];
    let bytes = primitives::codec::to_vec(s).unwrap();
    let back: SignedHeader = primitives::codec::from_slice(&bytes).unwrap();
    assert_eq!(&back, s);
    let a = StateAnswer {
        key: b"balance/alice".to_vec(),
        value: Some(b"100".to_vec()),
        proof: prove(&f.nodes, s.header.state_root, b"balance/alice").unwrap(),
    };
    let bytes = primitives::codec::to_vec(&a).unwrap();
    let back: StateAnswer = primitives::codec::from_slice(&bytes).unwrap();
    assert_eq!(back, a);
}

fn shared() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(fixture)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever byte of an encoded signed header an agent changes, the result either does not
    /// decode or is refused, and the client keeps its trusted header.
    #[test]
    fn any_changed_byte_of_a_signed_header_is_refused(
        at in proptest::prelude::any::<proptest::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let f = shared();
        let honest = &f.headers[1];
        let mut bytes = primitives::codec::to_vec(honest).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(forged) = primitives::codec::from_slice::<SignedHeader>(&bytes) {
            proptest::prop_assert_ne!(&forged, honest);
            let mut c = client(f);
            proptest::prop_assert!(c.update(&forged, f.set_a.clone()).is_err());
            proptest::prop_assert_eq!(c.trusted_header(), &f.headers[0].header);
            c.update(honest, f.set_a.clone()).unwrap();
        }
    }
}

#[test]
fn a_later_header_of_the_same_set_is_accepted_without_the_heights_between() {
    let f = fixture();
    // Skipping from height 1 straight to 2 is allowed only because set A signs both.
    let mut c = client(&f);
    c.update_same_set(&f.headers[1]).unwrap();
    assert_eq!(c.trusted_header().height, 2);
    // The same header again is a no-op; an older one is refused.
    c.update_same_set(&f.headers[1]).unwrap();
    assert!(matches!(
        c.update_same_set(&f.headers[0]),
        Err(LightError::NotNext { .. })
    ));
    // Height 3 is signed by set B: it needs the sequential path through height 2's vouching.
    let mut skip = client(&f);
    assert_eq!(
        skip.update_same_set(&f.headers[2]),
        Err(LightError::SetNotVouched)
    );
    assert_eq!(skip.trusted_header().height, 1);
}

#[test]
fn skipping_still_needs_two_thirds_of_the_trusted_set() {
    let f = fixture();
    let mut weak = f.headers[1].clone();
    // Only a and b sign (20 of 40 power).
    weak.commit = certify(&f.ctx, &weak.header, &f.a()[..2]);
    let mut c = client(&f);
    assert!(matches!(
        c.update_same_set(&weak),
        Err(LightError::Certificate(_))
    ));
    // A tampered header under an honest certificate is refused too.
    let mut forged = f.headers[1].clone();
    forged.header.state_root = [0x55; 32];
    assert_eq!(c.update_same_set(&forged), Err(LightError::NotThisHeader));
    assert_eq!(c.trusted_header().height, 1);
}
