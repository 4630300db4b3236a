//! The mempool: every rejection reason, replacement and eviction, reaping for blocks, updating
//! after a block, and the gossip queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use chain::block::tx_hash;
use chain::consensus::secp::ValidatorAddress;
use chain::ledger::bank::BankCall;
use chain::ledger::{BlockContext, Genesis, Ledger, RejectCode};
use chain::mempool::{Mempool, MempoolConfig, Source};
use chain::state::MemState;
use chain::tx::{AccountAddress, ModuleId, Transaction};
use primitives::codec;
use secp256k1::{SecretKey, SECP256K1};
use tokenomics::Amount;

const SEED: u64 = 9;

struct Env {
    ledger: Ledger,
    genesis: Genesis,
    state: MemState,
    height: u64,
}

fn vkey(i: u32) -> SecretKey {
    Genesis::example_key(SEED, i)
}

fn user(i: u8) -> SecretKey {
    SecretKey::from_slice(&[i.max(1); 32]).unwrap()
}

fn addr(k: &SecretKey) -> AccountAddress {
    AccountAddress::from_public_key(&k.public_key(SECP256K1))
}

impl Env {
    fn new() -> Env {
        let genesis = Genesis::example(4, SEED);
        let ledger = Ledger::new();
        let (writes, _) = ledger.init_genesis(&genesis).unwrap();
        let mut state = MemState::new();
        state.apply(&writes);
        Env {
            ledger,
            genesis,
            state,
            height: 0,
        }
    }

    /// A transfer of `amount` base units paying `fee` base units.
    fn tx(&self, k: &SecretKey, nonce: u64, fee: u64, amount: u64) -> Vec<u8> {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: k.public_key(SECP256K1),
            nonce,
            fee: Amount::from_base_units(fee).unwrap(),
            module: ModuleId::BANK,
            call: codec::to_vec(&BankCall::Transfer {
                to: addr(&user(200)),
                amount: Amount::from_base_units(amount).unwrap(),
            })
            .unwrap(),
        }
        .sign(k)
        .unwrap()
        .encode()
        .unwrap()
    }

    fn commit(&mut self, txs: &[Vec<u8>]) {
        let ctx = BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height: self.height + 1,
            time_ms: self.genesis.genesis_time_ms + self.height + 1,
            proposer: ValidatorAddress::from_public_key(&vkey(0).public_key(SECP256K1)),
        };
        let out = self.ledger.execute_block(&self.state, &ctx, txs).unwrap();
        assert!(out.receipts.iter().all(|r| r.succeeded()));
        self.state.apply(&out.writes);
        self.height += 1;
    }
}

const FEE: u64 = 1_000;

fn pool(max_txs: usize, max_bytes: usize, max_per_sender: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs,
        max_bytes,
        max_per_sender,
    })
}

#[test]
fn admission_failures_carry_the_ledger_reason() {
    let env = Env::new();
    let mut mp = pool(100, 1 << 20, 10);
    let insert = |mp: &mut Mempool, raw: Vec<u8>| {
        mp.insert(&env.ledger, &env.state, raw, Source::Peer)
            .unwrap_err()
            .code
    };
    let mut bad_sig = chain::tx::SignedTx::decode(&env.tx(&vkey(0), 0, FEE, 1), 1 << 20).unwrap();
    bad_sig.tx.nonce = 1;
    assert_eq!(
        insert(&mut mp, bad_sig.encode().unwrap()),
        RejectCode::BadSignature
    );
    assert_eq!(
        insert(&mut mp, env.tx(&vkey(0), 17, FEE, 1)),
        RejectCode::NonceTooHigh
    );
    assert_eq!(
        insert(&mut mp, env.tx(&user(3), 0, FEE, 1)),
        RejectCode::InsufficientFunds
    );
    assert_eq!(
        insert(&mut mp, env.tx(&vkey(0), 0, FEE - 1, 1)),
        RejectCode::FeeTooLow
    );
    assert_eq!(insert(&mut mp, vec![7; 100_000]), RejectCode::TooLarge);
    assert_eq!(insert(&mut mp, vec![1, 0, 0]), RejectCode::Decode);
    assert!(mp.is_empty());
    assert_eq!(mp.bytes(), 0);
}

#[test]
fn duplicates_are_refused_and_a_replacement_must_pay_more() {
    let env = Env::new();
    let mut mp = pool(100, 1 << 20, 10);
    let t = env.tx(&vkey(0), 0, FEE, 1);
    mp.insert(&env.ledger, &env.state, t.clone(), Source::Local)
        .unwrap();
    let r = mp
        .insert(&env.ledger, &env.state, t.clone(), Source::Peer)
        .unwrap_err();
    assert_eq!(r.code, RejectCode::Duplicate);
    assert!(r.reason.contains("already in the mempool"), "{r}");
    let same_nonce = env.tx(&vkey(0), 0, FEE, 2);
    let r = mp
        .insert(&env.ledger, &env.state, same_nonce, Source::Peer)
        .unwrap_err();
    assert_eq!(r.code, RejectCode::Duplicate);
    assert!(r.reason.contains("nonce 0"), "{r}");
    let better = env.tx(&vkey(0), 0, FEE * 2, 2);
    mp.insert(&env.ledger, &env.state, better.clone(), Source::Peer)
        .unwrap();
    assert_eq!(mp.len(), 1);
    assert!(!mp.contains(&tx_hash(&t)));
    assert!(mp.contains(&tx_hash(&better)));
    assert_eq!(mp.bytes(), better.len());
}

#[test]
fn limits_by_count_bytes_and_sender_with_fee_based_eviction() {
    let env = Env::new();
    // Per sender.
    let mut mp = pool(100, 1 << 20, 2);
    for n in 0..2 {
        mp.insert(
            &env.ledger,
            &env.state,
            env.tx(&vkey(0), n, FEE, 1),
            Source::Local,
        )
        .unwrap();
    }
    let r = mp
        .insert(
            &env.ledger,
            &env.state,
            env.tx(&vkey(0), 2, FEE, 1),
            Source::Local,
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::MempoolFull);
    assert!(r.reason.contains("this sender"), "{r}");

    // By count: an equal fee cannot evict, a higher one evicts the cheapest tail.
    let mut mp = pool(2, 1 << 20, 10);
    let a0 = env.tx(&vkey(0), 0, FEE, 1);
    let a1 = env.tx(&vkey(0), 1, FEE * 3, 1);
    mp.insert(&env.ledger, &env.state, a0.clone(), Source::Local)
        .unwrap();
    mp.insert(&env.ledger, &env.state, a1.clone(), Source::Local)
        .unwrap();
    let r = mp
        .insert(
            &env.ledger,
            &env.state,
            env.tx(&vkey(1), 0, FEE, 1),
            Source::Peer,
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::MempoolFull);
    // vkey(1) pays twice the fee: it may evict a1 (the tail of its sender) only if a1 pays
    // less per byte, which it does not; so still full.
    let r = mp
        .insert(
            &env.ledger,
            &env.state,
            env.tx(&vkey(1), 0, FEE * 2, 1),
            Source::Peer,
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::MempoolFull);
    let rich = env.tx(&vkey(1), 0, FEE * 4, 1);
    mp.insert(&env.ledger, &env.state, rich.clone(), Source::Peer)
        .unwrap();
    assert_eq!(mp.len(), 2);
    assert!(
        mp.contains(&tx_hash(&a0)),
        "the head of a queue is kept: no nonce gap"
    );
    assert!(!mp.contains(&tx_hash(&a1)), "the tail was evicted");
    assert!(mp.contains(&tx_hash(&rich)));

    // By bytes.
    let t = env.tx(&vkey(0), 0, FEE, 1);
    let mut mp = pool(100, t.len() + 10, 10);
    mp.insert(&env.ledger, &env.state, t, Source::Local)
        .unwrap();
    let r = mp
        .insert(
            &env.ledger,
            &env.state,
            env.tx(&vkey(1), 0, FEE, 1),
            Source::Local,
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::MempoolFull);
    assert!(r.reason.contains("full"), "{r}");
    assert_eq!(mp.len(), 1);
}

#[test]
fn reap_respects_nonce_order_gaps_and_bounds_and_builds_a_valid_block() {
    let mut env = Env::new();
    let mut mp = pool(100, 1 << 20, 10);
    // Inserted out of order, with a gap for vkey(1) (nonce 0 missing).
    for raw in [
        env.tx(&vkey(0), 2, FEE, 1),
        env.tx(&vkey(0), 0, FEE, 1),
        env.tx(&vkey(1), 1, FEE * 5, 1),
        env.tx(&vkey(0), 1, FEE, 1),
        env.tx(&vkey(2), 0, FEE * 2, 1),
    ] {
        mp.insert(&env.ledger, &env.state, raw, Source::Peer)
            .unwrap();
    }
    let reaped = mp.reap(1 << 20, 100);
    assert_eq!(reaped.len(), 4, "vkey(1)'s nonce 1 waits for nonce 0");
    let decoded: Vec<_> = reaped
        .iter()
        .map(|r| chain::tx::SignedTx::decode(r, 1 << 20).unwrap().tx)
        .collect();
    assert_eq!(
        decoded[0].sender,
        vkey(2).public_key(SECP256K1),
        "highest fee first"
    );
    let nonces: Vec<u64> = decoded
        .iter()
        .filter(|t| t.sender == vkey(0).public_key(SECP256K1))
        .map(|t| t.nonce)
        .collect();
    assert_eq!(nonces, vec![0, 1, 2]);
    assert_eq!(mp.reap(1 << 20, 2).len(), 2);
    let one = reaped[0].len();
    assert_eq!(mp.reap(one, 100).len(), 1);
    assert!(mp.reap(one - 1, 100).is_empty());

    env.commit(&reaped);
    let dropped = mp.update(&env.ledger, &env.state, &reaped);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(mp.len(), 1);
    // vkey(1) nonce 0 arrives: now both go.
    mp.insert(
        &env.ledger,
        &env.state,
        env.tx(&vkey(1), 0, FEE, 1),
        Source::Local,
    )
    .unwrap();
    let next = mp.reap(1 << 20, 100);
    assert_eq!(next.len(), 2);
    env.commit(&next);
    mp.update(&env.ledger, &env.state, &next);
    assert!(mp.is_empty());
}

#[test]
fn update_drops_what_the_new_state_no_longer_admits() {
    let mut env = Env::new();
    let mut mp = pool(100, 1 << 20, 10);
    let mine = env.tx(&vkey(0), 0, FEE, 1);
    mp.insert(&env.ledger, &env.state, mine.clone(), Source::Local)
        .unwrap();
    // Another node's block used nonce 0 of the same sender with a different transaction.
    let theirs = env.tx(&vkey(0), 0, FEE + 1, 2);
    env.commit(std::slice::from_ref(&theirs));
    let dropped = mp.update(&env.ledger, &env.state, &[theirs]);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, tx_hash(&mine));
    assert_eq!(dropped[0].1.code, RejectCode::NonceTooLow);
    assert!(mp.is_empty());
    assert_eq!(mp.bytes(), 0);
}

#[test]
fn gossip_hands_out_each_new_transaction_once() {
    let env = Env::new();
    let mut mp = pool(100, 1 << 20, 10);
    let a = env.tx(&vkey(0), 0, FEE, 1);
    let b = env.tx(&vkey(1), 0, FEE, 1);
    mp.insert(&env.ledger, &env.state, a.clone(), Source::Local)
        .unwrap();
    mp.insert(&env.ledger, &env.state, b.clone(), Source::Peer)
        .unwrap();
    assert_eq!(mp.take_gossip(), vec![a.clone(), b.clone()]);
    assert!(mp.take_gossip().is_empty());
    assert_eq!(mp.source_of(&tx_hash(&b)), Some(Source::Peer));
    let unknown = [7u8; 32];
    assert_eq!(mp.missing(&[tx_hash(&a), unknown]), vec![unknown]);
    assert_eq!(mp.get(&tx_hash(&a)), Some(a.as_slice()));
}

#[test]
fn two_pending_claims_of_one_entry_conflict() {
    use rand_chacha::rand_core::SeedableRng;
    use rsa::pkcs8::EncodePublicKey;
    let env = Env::new();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let spki = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .unwrap()
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let setup = |owner: &SecretKey, device: u8, fee: Amount| {
        Transaction {
            chain_id: env.genesis.chain_id.clone(),
            sender: owner.public_key(SECP256K1),
            nonce: 0,
            fee,
            module: ModuleId::REGISTRY,
            call: codec::to_vec(&chain::ledger::registry::RegistryCall::Setup {
                vid: "VIN-SAME".into(),
                rsa_spki: spki.clone(),
                device_key: user(device).public_key(SECP256K1),
                agent: addr(&vkey(0)),
            })
            .unwrap(),
        }
        .sign(owner)
        .unwrap()
        .encode()
        .unwrap()
    };
    let fee = env
        .genesis
        .min_tx_fee
        .checked_add(env.genesis.device_setup_fee)
        .unwrap();
    let mut mp = pool(100, 1 << 20, 10);
    let first = setup(&vkey(0), 10, fee);
    mp.insert(&env.ledger, &env.state, first.clone(), Source::Local)
        .unwrap();
    let r = mp
        .insert(
            &env.ledger,
            &env.state,
            setup(&vkey(1), 11, fee),
            Source::Peer,
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::Duplicate);
    assert!(r.reason.contains("same entry"), "{r}");
    // The sender's own replacement (same nonce, higher fee) is not a conflict.
    let bump = fee
        .checked_add(Amount::from_base_units(1).unwrap())
        .unwrap();
    let replacement = setup(&vkey(0), 12, bump);
    mp.insert(&env.ledger, &env.state, replacement.clone(), Source::Local)
        .unwrap();
    assert!(!mp.contains(&tx_hash(&first)));
    // Once the claim leaves the pool, the entry is free again.
    mp.update(&env.ledger, &env.state, &[replacement]);
    assert!(mp.is_empty());
    mp.insert(
        &env.ledger,
        &env.state,
        setup(&vkey(1), 11, fee),
        Source::Peer,
    )
    .unwrap();
}

#[test]
fn used_nonces_and_other_chains_are_refused_at_insert() {
    let mut env = Env::new();
    let used = env.tx(&vkey(0), 0, FEE, 1);
    env.commit(std::slice::from_ref(&used));
    let mut mp = pool(100, 1 << 20, 10);
    let r = mp
        .insert(&env.ledger, &env.state, used, Source::Peer)
        .unwrap_err();
    assert_eq!(r.code, RejectCode::NonceTooLow);
    assert!(r.reason.contains("already used"), "{r}");
    let other_chain = Transaction {
        chain_id: "carchain-elsewhere".into(),
        sender: vkey(0).public_key(SECP256K1),
        nonce: 1,
        fee: Amount::from_base_units(FEE).unwrap(),
        module: ModuleId::BANK,
        call: Vec::new(),
    }
    .sign(&vkey(0))
    .unwrap()
    .encode()
    .unwrap();
    let r = mp
        .insert(&env.ledger, &env.state, other_chain, Source::Peer)
        .unwrap_err();
    assert_eq!(r.code, RejectCode::WrongChain);
    assert!(mp.is_empty());
}
