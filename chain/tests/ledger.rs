//! The ledger end to end on an in-memory state: genesis, transfers and fees, admission reasons,
//! invalid blocks, the registry's device lifecycle and attestations, staking, evidence, and the
//! supply invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;

use chain::block::{BlockHash, ChainContext};
use chain::consensus::secp::{self, ValidatorAddress};
use chain::consensus::{Context, Evidence, InstanceId, Round, SignedVote, Vote, VoteType};
use chain::ledger::bank::{self, BankCall};
use chain::ledger::registry::{self, RegistryCall};
use chain::ledger::staking::{self, StakingCall};
use chain::ledger::{BlockContext, BlockError, BlockOutcome, Genesis, Ledger, RejectCode};
use chain::state::{MemState, StateView};
use chain::tx::{AccountAddress, ModuleId, Transaction};
use primitives::codec;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs8::EncodePublicKey;
use secp256k1::{PublicKey, SecretKey, SECP256K1};
use serde::Serialize;
use tokenomics::Amount;

const SEED: u64 = 42;

struct Net {
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

fn tokens(n: u64) -> Amount {
    Amount::from_tokens(n).unwrap()
}

fn units(n: u64) -> Amount {
    Amount::from_base_units(n).unwrap()
}

impl Net {
    fn new(validators: u32) -> Net {
        Self::with(Genesis::example(validators, SEED))
    }

    fn with(genesis: Genesis) -> Net {
        let ledger = Ledger::new();
        let (writes, set) = ledger.init_genesis(&genesis).unwrap();
        assert_eq!(set.len(), genesis.validators.len());
        let mut state = MemState::new();
        state.apply(&writes);
        Net {
            ledger,
            genesis,
            state,
            height: 0,
        }
    }

    fn ctx(&self) -> BlockContext {
        BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height: self.height + 1,
            time_ms: self.genesis.genesis_time_ms + 1000 * (self.height + 1),
            proposer: ValidatorAddress::from_public_key(&vkey(0).public_key(SECP256K1)),
        }
    }

    fn execute(&self, txs: &[Vec<u8>]) -> Result<BlockOutcome, BlockError> {
        self.ledger.execute_block(&self.state, &self.ctx(), txs)
    }

    fn block(&mut self, txs: &[Vec<u8>]) -> BlockOutcome {
        let out = self.execute(txs).unwrap();
        self.state.apply(&out.writes);
        self.height += 1;
        assert!(bank::totals(&self.state)
            .unwrap()
            .conserved(self.genesis.tokenomics.cap));
        out
    }

    fn nonce(&self, k: &SecretKey) -> u64 {
        bank::account(&self.state, &addr(k)).unwrap().nonce
    }

    fn account(&self, k: &SecretKey) -> bank::AccountRecord {
        bank::account(&self.state, &addr(k)).unwrap()
    }

    fn tx<C: Serialize>(&self, k: &SecretKey, module: ModuleId, call: &C, fee: Amount) -> Vec<u8> {
        self.tx_n(k, self.nonce(k), module, call, fee)
    }

    fn tx_n<C: Serialize>(
        &self,
        k: &SecretKey,
        nonce: u64,
        module: ModuleId,
        call: &C,
        fee: Amount,
    ) -> Vec<u8> {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: k.public_key(SECP256K1),
            nonce,
            fee,
            module,
            call: codec::to_vec(call).unwrap(),
        }
        .sign(k)
        .unwrap()
        .encode()
        .unwrap()
    }

    fn fee(&self) -> Amount {
        self.genesis.min_tx_fee
    }

    fn setup_fee(&self) -> Amount {
        self.genesis
            .min_tx_fee
            .checked_add(self.genesis.device_setup_fee)
            .unwrap()
    }

    fn transfer(&self, from: &SecretKey, to: &SecretKey, amount: Amount) -> Vec<u8> {
        self.tx(
            from,
            ModuleId::BANK,
            &BankCall::Transfer {
                to: addr(to),
                amount,
            },
            self.fee(),
        )
    }
}

#[test]
fn genesis_state_holds_balances_stake_and_the_first_set() {
    let net = Net::new(4);
    let set = net.ledger.validators(&net.state).unwrap();
    assert_eq!(set.len(), 4);
    assert!(set
        .iter()
        .all(|v| v.voting_power == tokens(100_000).to_base_units()));
    assert_eq!(net.account(&vkey(2)).tokens, tokens(1_000_000));
    let t = bank::totals(&net.state).unwrap();
    assert_eq!(t.tokens, tokens(4_000_000));
    assert_eq!(t.staked, tokens(400_000));
    assert_eq!(t.issued, tokens(4_400_000));
    assert!(t.conserved(net.genesis.tokenomics.cap));
}

#[test]
fn genesis_beyond_the_circulation_pool_is_refused() {
    let mut g = Genesis::example(1, SEED);
    g.balances[0].amount = Amount::from_tokens(300_000_000).unwrap();
    let err = Ledger::new().init_genesis(&g).unwrap_err();
    assert!(err.to_string().contains("circulation pool"), "{err}");
}

#[test]
fn a_transfer_moves_tokens_pays_the_proposer_and_bumps_the_nonce() {
    let mut net = Net::new(2);
    let (a, b) = (vkey(1), user(9));
    let before_proposer = net.account(&vkey(0)).tokens;
    let out = net.block(&[net.transfer(&a, &b, tokens(10))]);
    assert_eq!(out.receipts.len(), 1);
    assert!(out.receipts[0].succeeded());
    assert_eq!(net.account(&b).tokens, tokens(10));
    assert_eq!(
        net.account(&a).tokens,
        tokens(1_000_000 - 10).checked_sub(net.fee()).unwrap()
    );
    assert_eq!(net.nonce(&a), 1);
    assert_eq!(
        net.account(&vkey(0)).tokens,
        before_proposer.checked_add(net.fee()).unwrap()
    );
    assert_eq!(bank::supply(&net.state).unwrap().fee_pool, Amount::ZERO);
    assert_eq!(out.next_validators, None);
}

#[test]
fn a_failing_call_in_a_valid_block_still_pays_its_fee_and_nonce() {
    let mut net = Net::new(2);
    let a = vkey(1);
    let bal = net.account(&a).tokens;
    let out = net.block(&[net.transfer(&a, &user(3), tokens(2_000_000))]);
    let r = &out.receipts[0];
    assert!(!r.succeeded());
    assert_eq!(
        r.failure.as_ref().unwrap().code,
        RejectCode::InsufficientFunds
    );
    assert_eq!(net.account(&a).tokens, bal.checked_sub(net.fee()).unwrap());
    assert_eq!(net.nonce(&a), 1);
    assert_eq!(net.account(&user(3)).tokens, Amount::ZERO);
}

#[test]
fn two_transactions_of_one_sender_execute_in_nonce_order() {
    let mut net = Net::new(1);
    let a = vkey(0);
    let call = BankCall::Transfer {
        to: addr(&user(5)),
        amount: tokens(1),
    };
    let t0 = net.tx_n(&a, 0, ModuleId::BANK, &call, net.fee());
    let t1 = net.tx_n(&a, 1, ModuleId::BANK, &call, net.fee());
    let err = net.execute(&[t1.clone(), t0.clone()]).unwrap_err();
    assert!(
        matches!(&err, BlockError::InvalidTx { index: 0, rejection } if rejection.code == RejectCode::NonceTooHigh),
        "{err}"
    );
    net.block(&[t0, t1]);
    assert_eq!(net.account(&user(5)).tokens, tokens(2));
}

#[test]
fn invalid_transactions_make_the_block_invalid() {
    let net = Net::new(1);
    let a = vkey(0);
    let good = net.transfer(&a, &user(2), tokens(1));
    // Undecodable.
    let err = net.execute(&[good.clone(), vec![1, 2, 3]]).unwrap_err();
    assert!(
        matches!(&err, BlockError::InvalidTx { index: 1, rejection } if rejection.code == RejectCode::Decode)
    );
    // Bad signature: re-sign with another key but keep the sender.
    let mut stx = chain::tx::SignedTx::decode(&good, 1 << 20).unwrap();
    stx.signature = stx.tx.clone().sign(&user(7)).unwrap().signature;
    let err = net.execute(&[stx.encode().unwrap()]).unwrap_err();
    assert!(
        matches!(&err, BlockError::InvalidTx { rejection, .. } if rejection.code == RejectCode::BadSignature)
    );
    // Replayed nonce.
    let err = net.execute(&[good.clone(), good.clone()]).unwrap_err();
    assert!(
        matches!(&err, BlockError::InvalidTx { index: 1, rejection } if rejection.code == RejectCode::NonceTooLow)
    );
    // Wrong height.
    let mut ctx = net.ctx();
    ctx.height = 5;
    assert!(matches!(
        net.ledger
            .execute_block(&net.state, &ctx, std::slice::from_ref(&good)),
        Err(BlockError::Context(_))
    ));
    // Too many transactions.
    let mut g = Genesis::example(1, SEED);
    g.max_block_txs = 1;
    let small = Net::with(g);
    let t0 = small.transfer(&a, &user(2), tokens(1));
    assert!(matches!(
        small.execute(&[t0.clone(), t0]),
        Err(BlockError::TooBig(_))
    ));
}

#[test]
fn check_tx_gives_a_code_and_reason_for_every_refusal() {
    let net = Net::new(1);
    let a = vkey(0);
    let call = BankCall::Transfer {
        to: addr(&user(2)),
        amount: tokens(1),
    };
    let ok = net
        .ledger
        .check_tx(&net.state, &net.transfer(&a, &user(2), tokens(1)))
        .unwrap();
    assert_eq!(ok.nonce, 0);
    assert_eq!(ok.min_fee, net.fee());
    let code = |raw: &[u8]| net.ledger.check_tx(&net.state, raw).unwrap_err().code;
    assert_eq!(code(&[0xff; 10]), RejectCode::Decode);
    assert_eq!(code(&vec![0; 70_000]), RejectCode::TooLarge);
    let mut wrong_chain = Transaction {
        chain_id: "other-chain".into(),
        sender: a.public_key(SECP256K1),
        nonce: 0,
        fee: net.fee(),
        module: ModuleId::BANK,
        call: codec::to_vec(&call).unwrap(),
    };
    assert_eq!(
        code(&wrong_chain.clone().sign(&a).unwrap().encode().unwrap()),
        RejectCode::WrongChain
    );
    wrong_chain.chain_id = net.genesis.chain_id.clone();
    assert_eq!(
        code(
            &wrong_chain
                .clone()
                .sign(&user(1))
                .unwrap()
                .encode()
                .unwrap()
        ),
        RejectCode::BadSignature
    );
    // `recheck_tx` trusts the signature check already done (it is for admitted bytes only).
    let badly_signed = wrong_chain
        .clone()
        .sign(&user(1))
        .unwrap()
        .encode()
        .unwrap();
    assert!(net.ledger.recheck_tx(&net.state, &badly_signed).is_ok());
    assert_eq!(
        code(&net.tx_n(&a, 17, ModuleId::BANK, &call, net.fee())),
        RejectCode::NonceTooHigh
    );
    assert!(net
        .ledger
        .check_tx(
            &net.state,
            &net.tx_n(&a, 16, ModuleId::BANK, &call, net.fee())
        )
        .is_ok());
    assert_eq!(
        code(&net.tx(&a, ModuleId::BANK, &call, units(999))),
        RejectCode::FeeTooLow
    );
    assert_eq!(
        code(&net.tx(&user(4), ModuleId::BANK, &call, net.fee())),
        RejectCode::InsufficientFunds
    );
    assert_eq!(
        code(&net.tx(&a, ModuleId(99), &call, net.fee())),
        RejectCode::UnknownModule
    );
    assert_eq!(
        code(&net.tx(&a, ModuleId::BANK, &"not a call", net.fee())),
        RejectCode::BadCall
    );
    let too_much = BankCall::Transfer {
        to: addr(&user(2)),
        amount: tokens(5_000_000),
    };
    let r = net
        .ledger
        .check_tx(
            &net.state,
            &net.tx(&a, ModuleId::BANK, &too_much, net.fee()),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::InsufficientFunds);
    assert!(r.to_string().starts_with("insufficient_funds: "), "{r}");
}

#[test]
fn a_nonce_already_used_is_refused_after_the_block() {
    let mut net = Net::new(1);
    let t = net.transfer(&vkey(0), &user(2), tokens(1));
    net.block(std::slice::from_ref(&t));
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::NonceTooLow
    );
}

fn rsa_spki() -> Vec<u8> {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        key.to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    })
    .clone()
}

struct Device {
    owner: SecretKey,
    key: SecretKey,
    vid: String,
}

fn setup_device(net: &mut Net, owner: SecretKey, key: SecretKey, vid: &str) -> Device {
    let setup = RegistryCall::Setup {
        vid: vid.into(),
        rsa_spki: rsa_spki(),
        device_key: key.public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let pool = RegistryCall::SetDup {
        vid: vid.into(),
        commitment: [7; 32],
        size: 100,
        valid_until: 1_000,
    };
    let t0 = net.tx(&owner, ModuleId::REGISTRY, &setup, net.setup_fee());
    let t1 = net.tx_n(
        &owner,
        net.nonce(&owner) + 1,
        ModuleId::REGISTRY,
        &pool,
        net.fee(),
    );
    let out = net.block(&[t0, t1]);
    assert!(
        out.receipts.iter().all(|r| r.succeeded()),
        "{:?}",
        out.receipts
    );
    Device {
        owner,
        key,
        vid: vid.into(),
    }
}

fn record_key(n: i64) -> Vec<u8> {
    primitives::RecordKey::from_json_str(&format!("{{\"SESSION_ID\":{n}}}"))
        .unwrap()
        .encode()
}

fn attest(
    net: &Net,
    signer: &SecretKey,
    vid: &str,
    address: AccountAddress,
    n: i64,
    size: u64,
) -> Vec<u8> {
    let call = RegistryCall::Attest {
        vid: vid.into(),
        address,
        key: record_key(n),
        dhash: [n as u8; 32],
        size,
        metres: 0,
        format: "trip-gps".into(),
        placement: [3; 32],
    };
    let fee = bank::min_fee(
        &net.state,
        &Ledger::params(&net.state).unwrap(),
        Some(&tokenomics::DataOp::Put {
            bytes: size,
            metres: 0,
        }),
    )
    .unwrap();
    net.tx(signer, ModuleId::REGISTRY, &call, fee)
}

#[test]
fn device_setup_grants_credits_and_attestations_are_paid_from_them() {
    let mut net = Net::new(1);
    let dev = setup_device(&mut net, vkey(0), user(20), "VIN0000001");
    let rec = registry::device(&net.state, &dev.vid).unwrap().unwrap();
    assert_eq!(rec.owner, addr(&dev.owner));
    assert_eq!(rec.device_key, dev.key.public_key(SECP256K1));
    let credits = net.account(&dev.key).credits;
    assert_eq!(credits, net.genesis.tokenomics.phase1.initial_credits);
    assert_eq!(net.account(&dev.key).tokens, Amount::ZERO);
    assert_eq!(
        registry::vid_of_device(&net.state, &addr(&dev.key))
            .unwrap()
            .as_deref(),
        Some("VIN0000001")
    );

    let pool_addr = addr(&user(77));
    let t = attest(&net, &dev.key, &dev.vid, pool_addr, 1, 4_000);
    let info = net.ledger.check_tx(&net.state, &t).unwrap();
    assert!(
        info.min_fee > net.fee(),
        "a put costs more than the base fee"
    );
    let out = net.block(&[t]);
    assert!(out.receipts[0].succeeded(), "{:?}", out.receipts);
    let entry = registry::attestation(&net.state, &pool_addr, &record_key(1))
        .unwrap()
        .unwrap();
    assert_eq!(entry.dhash, [1; 32]);
    assert_eq!(entry.size, 4_000);
    assert_eq!(entry.writer, addr(&dev.key));
    assert_eq!(entry.height, net.height);
    let after = net.account(&dev.key);
    assert_eq!(after.credits, credits.checked_sub(info.fee).unwrap());
    // The automatic pool mirrors the put part of the fee back in tokens.
    let put_fee = info.fee.checked_sub(net.fee()).unwrap();
    assert_eq!(after.tokens, put_fee);

    // The same (address, key) never twice: refused at admission, and failed inside a block.
    let again = attest(&net, &dev.key, &dev.vid, pool_addr, 1, 10);
    assert_eq!(
        net.ledger.check_tx(&net.state, &again).unwrap_err().code,
        RejectCode::Duplicate
    );
    let out = net.block(&[again]);
    assert_eq!(
        out.receipts[0].failure.as_ref().unwrap().code,
        RejectCode::Duplicate
    );
    let entry2 = registry::attestation(&net.state, &pool_addr, &record_key(1))
        .unwrap()
        .unwrap();
    assert_eq!(entry2, entry);
    // Another key at the same address is fine.
    let other = attest(&net, &dev.key, &dev.vid, pool_addr, 2, 10);
    assert!(net.block(&[other]).receipts[0].succeeded());
    let listed = registry::attestations_at(&net.state, &pool_addr, 10).unwrap();
    let keys: Vec<Vec<u8>> = listed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![record_key(1), record_key(2)]);
    assert_eq!(listed[0].1, entry);
    assert!(registry::attestations_at(&net.state, &addr(&user(78)), 10)
        .unwrap()
        .is_empty());
}

#[test]
fn only_the_device_key_attests_and_only_the_owner_resets() {
    let mut net = Net::new(2);
    let dev = setup_device(&mut net, vkey(0), user(21), "VIN-A");
    let stranger = vkey(1);
    let t = attest(&net, &stranger, &dev.vid, addr(&user(70)), 1, 100);
    let r = net.ledger.check_tx(&net.state, &t).unwrap_err();
    assert_eq!(r.code, RejectCode::Unauthorized);

    let reset = RegistryCall::Reset {
        vid: dev.vid.clone(),
        device_key: user(22).public_key(SECP256K1),
        agent: addr(&vkey(1)),
        rsa_spki: None,
    };
    let by_stranger = net.tx(&stranger, ModuleId::REGISTRY, &reset, net.fee());
    assert_eq!(
        net.ledger
            .check_tx(&net.state, &by_stranger)
            .unwrap_err()
            .code,
        RejectCode::Unauthorized
    );
    let out = net.block(&[by_stranger]);
    assert_eq!(
        out.receipts[0].failure.as_ref().unwrap().code,
        RejectCode::Unauthorized
    );
    assert_eq!(
        registry::device(&net.state, &dev.vid)
            .unwrap()
            .unwrap()
            .device_key,
        dev.key.public_key(SECP256K1)
    );

    let credits_before = bank::account(&net.state, &addr(&dev.key)).unwrap().credits;
    assert!(credits_before > Amount::ZERO);
    let by_owner = net.tx(&dev.owner, ModuleId::REGISTRY, &reset, net.fee());
    assert!(net.block(&[by_owner]).receipts[0].succeeded());
    let rec = registry::device(&net.state, &dev.vid).unwrap().unwrap();
    assert_eq!(rec.device_key, user(22).public_key(SECP256K1));
    assert_eq!(rec.resets, 1);
    // The device's unspent credits moved to its new key; the old key keeps none.
    assert_eq!(
        bank::account(&net.state, &addr(&user(22))).unwrap().credits,
        credits_before
    );
    assert_eq!(
        bank::account(&net.state, &addr(&dev.key)).unwrap().credits,
        Amount::ZERO
    );
    // The stale key can no longer attest, even with tokens to pay; the new one can, paying
    // with the moved credits.
    net.block(&[net.transfer(&vkey(1), &dev.key, tokens(5))]);
    let stale = attest(&net, &dev.key, &dev.vid, addr(&user(70)), 1, 100);
    assert_eq!(
        net.ledger.check_tx(&net.state, &stale).unwrap_err().code,
        RejectCode::Unauthorized
    );
    let fresh = attest(&net, &user(22), &dev.vid, addr(&user(70)), 1, 100);
    assert!(net.block(&[fresh]).receipts[0].succeeded());
}

#[test]
fn setup_refuses_duplicates_and_malformed_keys() {
    let mut net = Net::new(1);
    let dev = setup_device(&mut net, vkey(0), user(30), "VIN-B");
    let again = RegistryCall::Setup {
        vid: dev.vid.clone(),
        rsa_spki: rsa_spki(),
        device_key: user(31).public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let t = net.tx(&vkey(0), ModuleId::REGISTRY, &again, net.setup_fee());
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::Duplicate
    );
    let reused_key = RegistryCall::Setup {
        vid: "VIN-C".into(),
        rsa_spki: rsa_spki(),
        device_key: dev.key.public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let t = net.tx(&vkey(0), ModuleId::REGISTRY, &reused_key, net.setup_fee());
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::Conflict
    );
    let bad_rsa = RegistryCall::Setup {
        vid: "VIN-D".into(),
        rsa_spki: vec![0x30, 0x03, 1, 2, 3],
        device_key: user(32).public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let t = net.tx(&vkey(0), ModuleId::REGISTRY, &bad_rsa, net.setup_fee());
    let r = net.ledger.check_tx(&net.state, &t).unwrap_err();
    assert_eq!(r.code, RejectCode::BadCall);
    assert!(r.reason.contains("SPKI"), "{r}");
    let bad_vid = RegistryCall::Setup {
        vid: "has space".into(),
        rsa_spki: rsa_spki(),
        device_key: user(32).public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let t = net.tx(&vkey(0), ModuleId::REGISTRY, &bad_vid, net.setup_fee());
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::BadCall
    );
    // Attesting without a pool.
    let no_pool = RegistryCall::Setup {
        vid: "VIN-E".into(),
        rsa_spki: rsa_spki(),
        device_key: user(33).public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    // A setup pays the setup surcharge on top of the base fee.
    let cheap = net.tx(&vkey(0), ModuleId::REGISTRY, &no_pool, net.fee());
    let r = net.ledger.check_tx(&net.state, &cheap).unwrap_err();
    assert_eq!(r.code, RejectCode::FeeTooLow);
    assert!(matches!(
        net.execute(&[cheap]),
        Err(BlockError::InvalidTx { .. })
    ));
    net.block(&[net.tx(&vkey(0), ModuleId::REGISTRY, &no_pool, net.setup_fee())]);
    let t = attest(&net, &user(33), "VIN-E", addr(&user(71)), 1, 10);
    let r = net.ledger.check_tx(&net.state, &t).unwrap_err();
    assert_eq!(r.code, RejectCode::Conflict);
    assert!(r.reason.contains("pool"), "{r}");
}

fn run_to_epoch_end(net: &mut Net) -> BlockOutcome {
    loop {
        let out = net.block(&[]);
        if net.height % net.genesis.epoch_length == 0 {
            return out;
        }
        assert_eq!(out.next_validators, None);
    }
}

#[test]
fn stake_and_unstake_take_effect_at_the_epoch_boundary() {
    let mut net = Net::new(2);
    let newcomer = user(40);
    net.block(&[net.transfer(&vkey(0), &newcomer, tokens(50_000))]);
    let stake = StakingCall::Stake {
        amount: tokens(20_000),
    };
    net.block(&[net.tx(&newcomer, ModuleId::STAKING, &stake, net.fee())]);
    assert_eq!(net.ledger.validators(&net.state).unwrap().len(), 2);
    let out = run_to_epoch_end(&mut net);
    let next = out.next_validators.expect("epoch end returns the next set");
    assert_eq!(next.len(), 3);
    let na = ValidatorAddress::from_public_key(&newcomer.public_key(SECP256K1));
    assert_eq!(
        next.iter().find(|v| v.address == na).unwrap().voting_power,
        tokens(20_000).to_base_units()
    );
    assert_eq!(net.ledger.validators(&net.state).unwrap(), next);

    let unstake = StakingCall::Unstake {
        amount: tokens(20_000),
    };
    net.block(&[net.tx(&newcomer, ModuleId::STAKING, &unstake, net.fee())]);
    let before = net.account(&newcomer).tokens;
    let next = run_to_epoch_end(&mut net).next_validators.unwrap();
    assert_eq!(next.len(), 2);
    assert_eq!(
        net.account(&newcomer).tokens,
        before,
        "not paid back before unbonding ends"
    );
    for _ in 0..net.genesis.unbonding_epochs {
        run_to_epoch_end(&mut net);
    }
    assert_eq!(
        net.account(&newcomer).tokens,
        before.checked_add(tokens(20_000)).unwrap()
    );
    // Sets beyond the evidence horizon are pruned; recent ones are kept.
    let horizon = net.genesis.unbonding_epochs * net.genesis.epoch_length;
    assert!(net.height > horizon + 1);
    assert!(staking::set_at(&net.state, 1).is_err());
    assert!(staking::set_at(&net.state, net.height + 1 - horizon).is_ok());
    let too_much = StakingCall::Unstake { amount: tokens(1) };
    let t = net.tx(&newcomer, ModuleId::STAKING, &too_much, net.fee());
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::InsufficientFunds
    );
}

fn double_sign(net: &Net, who: u32, height: u64) -> Evidence<ChainContext> {
    let ctx = ChainContext::new(net.genesis.chain_id.clone());
    let sk = vkey(who);
    let validator = ValidatorAddress::from_public_key(&sk.public_key(SECP256K1));
    let vote = |v: u8| {
        let vote = Vote::<ChainContext> {
            instance: InstanceId(0),
            height,
            round: Round(0),
            vote_type: VoteType::Precommit,
            value: Some(BlockHash([v; 32])),
            validator,
        };
        let signature = secp::sign(&sk, &ctx.vote_sign_bytes(&vote).unwrap());
        SignedVote { vote, signature }
    };
    Evidence {
        first: vote(1),
        second: vote(2),
    }
}

#[test]
fn double_sign_evidence_slashes_and_removes_the_offender_at_once() {
    let mut net = Net::new(4);
    net.block(&[]);
    net.block(&[]);
    let ev = double_sign(&net, 2, 2);
    let offender = *ev.offender();
    let reporter = user(50);
    net.block(&[net.transfer(&vkey(0), &reporter, tokens(1))]);
    let call = StakingCall::Evidence(Box::new(ev.clone()));
    let t = net.tx(&reporter, ModuleId::STAKING, &call, net.fee());
    net.ledger.check_tx(&net.state, &t).unwrap();
    let burned_before = bank::supply(&net.state).unwrap().burned;
    let out = net.block(&[t]);
    assert!(out.receipts[0].succeeded(), "{:?}", out.receipts);
    let next = out
        .next_validators
        .expect("the offender leaves from the next height");
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|v| v.address != offender));
    let rec = staking::validator(&net.state, &offender).unwrap().unwrap();
    assert!(rec.tombstoned);
    let slashed = tokens(100_000).mul_bps(net.genesis.slash_bps).unwrap();
    assert_eq!(
        bank::supply(&net.state).unwrap().burned,
        burned_before.checked_add(slashed).unwrap()
    );
    // The set of the evidence height still has the offender (history is kept).
    assert_eq!(staking::set_at(&net.state, 2).unwrap().len(), 4);

    // The same evidence again is a duplicate.
    let again = net.tx(&reporter, ModuleId::STAKING, &call, net.fee());
    assert_eq!(
        net.ledger.check_tx(&net.state, &again).unwrap_err().code,
        RejectCode::Duplicate
    );
    // Forged evidence (tampered vote) is refused.
    let mut forged = double_sign(&net, 1, 3);
    forged.second.vote.value = Some(BlockHash([9; 32]));
    let t = net.tx(
        &reporter,
        ModuleId::STAKING,
        &StakingCall::Evidence(Box::new(forged)),
        net.fee(),
    );
    let r = net.ledger.check_tx(&net.state, &t).unwrap_err();
    assert_eq!(r.code, RejectCode::BadCall);
    assert!(r.reason.contains("signature"), "{r}");
    // Votes that agree are no evidence.
    let mut same = double_sign(&net, 1, 3);
    same.second = same.first.clone();
    let t = net.tx(
        &reporter,
        ModuleId::STAKING,
        &StakingCall::Evidence(Box::new(same)),
        net.fee(),
    );
    assert_eq!(
        net.ledger.check_tx(&net.state, &t).unwrap_err().code,
        RejectCode::BadCall
    );
}

#[test]
fn a_third_party_module_can_be_registered_but_not_over_another_prefix() {
    struct Dummy(&'static [&'static [u8]], u16);
    impl chain::ledger::Module for Dummy {
        fn id(&self) -> ModuleId {
            ModuleId(self.1)
        }
        fn name(&self) -> &'static str {
            "dummy"
        }
        fn prefixes(&self) -> &'static [&'static [u8]] {
            self.0
        }
        fn check_call(
            &self,
            _: &chain::ledger::TxContext<'_>,
        ) -> Result<chain::ledger::CallInfo, chain::ledger::Rejection> {
            Ok(Default::default())
        }
        fn check_state(
            &self,
            _: &chain::ledger::TxContext<'_>,
            _: &dyn StateView,
        ) -> Result<(), chain::ledger::Rejection> {
            Ok(())
        }
        fn deliver(
            &self,
            ctx: &chain::ledger::TxContext<'_>,
            state: &mut chain::ledger::Pending<'_>,
        ) -> Result<(), chain::ledger::ExecError> {
            state.put(b"market/x".to_vec(), ctx.tx.call.clone());
            Ok(())
        }
    }
    let mut ledger = Ledger::new();
    assert!(ledger.register(Box::new(Dummy(&[b"bank/x"], 50))).is_err());
    assert!(ledger.register(Box::new(Dummy(&[b"market/"], 1))).is_err());
    ledger.register(Box::new(Dummy(&[b"market/"], 50))).unwrap();
    let mut net = Net::new(1);
    net.ledger = ledger;
    let t = net.tx(&vkey(0), ModuleId(50), &7u8, net.fee());
    net.block(&[t]);
    assert_eq!(net.state.get(b"market/x").unwrap(), Some(vec![7]));
}

#[derive(Debug, Clone)]
enum Op {
    Transfer { from: u8, to: u8, amount: u64 },
    Stake { who: u8, amount: u64 },
    Unstake { who: u8, amount: u64 },
    Attest { n: u16, size: u32 },
    DoubleSign { who: u8 },
    Empty,
}

/// The device every invariant run sets up (its key is `user(60)`).
const PROP_VID: &str = "VIN-PROP";

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u8..6, 1u64..2_000_000).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (0u8..6, 1u64..2_000_000).prop_map(|(who, amount)| Op::Stake { who, amount }),
        (0u8..6, 1u64..2_000_000).prop_map(|(who, amount)| Op::Unstake { who, amount }),
        (0u16..64, 1u32..2_000_000).prop_map(|(n, size)| Op::Attest { n, size }),
        (0u8..3).prop_map(|who| Op::DoubleSign { who }),
        Just(Op::Empty),
    ]
}

fn actor(i: u8) -> SecretKey {
    if i < 3 {
        vkey(u32::from(i))
    } else {
        user(100 + i)
    }
}

fn build(net: &Net, ops: &[Op]) -> Vec<Vec<u8>> {
    let mut nonces = std::collections::BTreeMap::new();
    let mut txs = Vec::new();
    for o in ops {
        let (k, module, call): (SecretKey, ModuleId, Vec<u8>) = match o {
            Op::Transfer { from, to, amount } => (
                actor(*from),
                ModuleId::BANK,
                codec::to_vec(&BankCall::Transfer {
                    to: addr(&actor(*to)),
                    amount: tokens(*amount),
                })
                .unwrap(),
            ),
            Op::Stake { who, amount } => (
                actor(*who),
                ModuleId::STAKING,
                codec::to_vec(&StakingCall::Stake {
                    amount: tokens(*amount),
                })
                .unwrap(),
            ),
            Op::Unstake { who, amount } => (
                actor(*who),
                ModuleId::STAKING,
                codec::to_vec(&StakingCall::Unstake {
                    amount: tokens(*amount),
                })
                .unwrap(),
            ),
            Op::Attest { n, size } => {
                let t = attest(
                    net,
                    &user(60),
                    PROP_VID,
                    addr(&user(61)),
                    i64::from(*n),
                    u64::from(*size),
                );
                let stx = chain::tx::SignedTx::decode(&t, 1 << 20).unwrap();
                let a = addr(&user(60));
                let acct = bank::account(&net.state, &a).unwrap();
                let cap = acct.tokens.checked_add(acct.credits).unwrap();
                if stx.tx.fee > cap || nonces.contains_key(&a) {
                    continue;
                }
                nonces.insert(a, acct.nonce + 1);
                txs.push(t);
                continue;
            }
            Op::DoubleSign { who } => (
                user(62),
                ModuleId::STAKING,
                codec::to_vec(&StakingCall::Evidence(Box::new(double_sign(
                    net,
                    u32::from(*who),
                    net.height.max(1),
                ))))
                .unwrap(),
            ),
            Op::Empty => continue,
        };
        let pk: PublicKey = k.public_key(SECP256K1);
        let a = AccountAddress::from_public_key(&pk);
        let acct = bank::account(&net.state, &a).unwrap();
        if acct.tokens < net.fee() {
            continue;
        }
        let n = nonces.entry(a).or_insert(acct.nonce);
        let tx = Transaction {
            chain_id: net.genesis.chain_id.clone(),
            sender: pk,
            nonce: *n,
            fee: net.fee(),
            module,
            call,
        };
        *n += 1;
        txs.push(tx.sign(&k).unwrap().encode().unwrap());
    }
    txs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Random transfers and stake changes over several epochs: every block is deterministic
    /// (executed twice, same writes and receipts) and the supply is conserved and capped.
    #[test]
    fn blocks_are_deterministic_and_conserve_supply(blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..30)) {
        let mut g = Genesis::example(3, SEED);
        g.epoch_length = 4;
        g.unbonding_epochs = 1;
        let mut net = Net::with(g);
        // Give the non-validator actors something to spend.
        let seed_txs: Vec<Vec<u8>> = (3u8..6)
            .enumerate()
            .map(|(n, i)| net.tx_n(&vkey(0), n as u64, ModuleId::BANK, &BankCall::Transfer { to: addr(&actor(i)), amount: tokens(500_000) }, net.fee()))
            .collect();
        net.block(&seed_txs);
        net.block(&[net.transfer(&vkey(1), &user(62), tokens(10))]);
        setup_device(&mut net, vkey(2), user(60), PROP_VID);
        for ops in blocks {
            let txs = build(&net, &ops);
            let a = net.execute(&txs);
            let b = net.execute(&txs);
            prop_assert_eq!(&a, &b);
            let out = a.unwrap();
            net.state.apply(&out.writes);
            net.height += 1;
            let t = bank::totals(&net.state).unwrap();
            prop_assert!(t.conserved(net.genesis.tokenomics.cap), "{:?}", t);
            prop_assert_eq!(out.receipts.len(), txs.len());
            prop_assert!(t.issued <= Amount::MAX_SUPPLY);
            if let Some(set) = out.next_validators {
                prop_assert!(!set.is_empty());
                prop_assert!(set.iter().all(|v| v.voting_power >= net.genesis.min_stake.to_base_units()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Arbitrary or mutated bytes never panic admission or execution, and a block holding them
    /// is refused without changing anything.
    #[test]
    fn garbage_never_panics_and_never_executes(
        junk in proptest::collection::vec(any::<u8>(), 0..300),
        pos in any::<usize>(),
        val in any::<u8>(),
    ) {
        let net = Net::new(1);
        prop_assert!(net.ledger.check_tx(&net.state, &junk).is_err());
        prop_assert!(net.execute(std::slice::from_ref(&junk)).is_err());
        let mut t = net.transfer(&vkey(0), &user(2), tokens(1));
        let n = t.len();
        t[pos % n] ^= val.max(1);
        let _ = net.ledger.check_tx(&net.state, &t);
        if let Ok(out) = net.execute(std::slice::from_ref(&t)) {
            // Only a mutation that still verifies can execute (practically never).
            prop_assert_eq!(out.receipts.len(), 1);
        }
    }
}

/// The ledger's writes commit into the state tree, and an index entry (and an absent one) is
/// provable against the root, as the wallet will check it.
#[test]
fn ledger_writes_commit_to_the_state_tree_and_entries_are_provable() {
    use chain::state::{apply, prove, MemNodes, EMPTY_ROOT};
    let mut net = Net::new(2);
    let mut nodes = MemNodes::new();
    let (genesis_writes, _) = net.ledger.init_genesis(&net.genesis).unwrap();
    let update = apply(&nodes, EMPTY_ROOT, &genesis_writes).unwrap();
    nodes.commit(&update);
    let mut root = update.root;
    let mut commit = |net: &mut Net, txs: &[Vec<u8>]| {
        let out = net.block(txs);
        let update = apply(&nodes, root, &out.writes).unwrap();
        nodes.commit(&update);
        root = update.root;
        out
    };
    let setup = RegistryCall::Setup {
        vid: "VIN-SMT".into(),
        rsa_spki: rsa_spki(),
        device_key: user(90).public_key(SECP256K1),
        agent: addr(&vkey(0)),
    };
    let pool = RegistryCall::SetDup {
        vid: "VIN-SMT".into(),
        commitment: [5; 32],
        size: 10,
        valid_until: 100,
    };
    let t0 = net.tx(&vkey(0), ModuleId::REGISTRY, &setup, net.setup_fee());
    let t1 = net.tx_n(&vkey(0), 1, ModuleId::REGISTRY, &pool, net.fee());
    commit(&mut net, &[t0, t1]);
    let pool_addr = addr(&user(91));
    let t = attest(&net, &user(90), "VIN-SMT", pool_addr, 7, 512);
    let out = commit(&mut net, &[t]);
    assert!(out.receipts[0].succeeded());

    let k = registry::attestation_key(&pool_addr, &record_key(7));
    let value = net.state.get(&k).unwrap().unwrap();
    let proof = prove(&nodes, root, &k).unwrap();
    proof.verify(&root, &k, Some(&value)).unwrap();
    let mut forged = value.clone();
    forged[0] ^= 1;
    assert!(proof.verify(&root, &k, Some(&forged)).is_err());
    assert!(proof.verify(&root, &k, None).is_err());
    let absent = registry::attestation_key(&pool_addr, &record_key(8));
    prove(&nodes, root, &absent)
        .unwrap()
        .verify(&root, &absent, None)
        .unwrap();
    let acct = bank::account_key(&addr(&user(90)));
    let acct_value = net.state.get(&acct).unwrap().unwrap();
    prove(&nodes, root, &acct)
        .unwrap()
        .verify(&root, &acct, Some(&acct_value))
        .unwrap();
}

#[test]
fn execution_skips_only_the_signatures_the_caller_already_verified() {
    let net = Net::new(1);
    let good = net.transfer(&vkey(0), &user(2), tokens(1));
    let mut stx = chain::tx::SignedTx::decode(&good, 1 << 20).unwrap();
    stx.signature = stx.tx.clone().sign(&user(7)).unwrap().signature;
    let forged = stx.encode().unwrap();
    let forged_hash = chain::block::tx_hash(&forged);
    let err = net
        .ledger
        .execute_block_with_verified(
            &net.state,
            &net.ctx(),
            std::slice::from_ref(&forged),
            &|h| *h != forged_hash,
        )
        .unwrap_err();
    assert!(
        matches!(&err, BlockError::InvalidTx { rejection, .. } if rejection.code == RejectCode::BadSignature)
    );
    let plain = net.execute(std::slice::from_ref(&good)).unwrap();
    let cached = net
        .ledger
        .execute_block_with_verified(&net.state, &net.ctx(), std::slice::from_ref(&good), &|h| {
            *h == chain::block::tx_hash(&good)
        })
        .unwrap();
    assert_eq!(plain, cached);
}

#[test]
fn a_node_reports_double_sign_evidence_as_a_transaction_the_ledger_admits() {
    let mut net = Net::new(4);
    net.block(&[]);
    net.block(&[]);
    let ev = double_sign(&net, 3, 2);
    let offender = *ev.offender();
    // Validator 0's node found it: the report is signed by its key and paid by its account.
    let tx = chain::node::evidence::evidence_transaction(&net.state, &vkey(0), &ev, None).unwrap();
    let info = net.ledger.check_tx(&net.state, &tx).unwrap();
    assert_eq!(info.sender, addr(&vkey(0)));
    assert_eq!(info.fee, info.min_fee);
    // With transactions of its own pending, the report takes the next nonce after them.
    let later = chain::node::evidence::evidence_transaction(
        &net.state,
        &vkey(0),
        &ev,
        Some(info.nonce + 3),
    )
    .unwrap();
    assert_eq!(
        net.ledger.check_tx(&net.state, &later).unwrap().nonce,
        info.nonce + 3
    );
    let out = net.block(&[tx]);
    assert!(out.receipts[0].succeeded(), "{:?}", out.receipts);
    assert!(
        staking::validator(&net.state, &offender)
            .unwrap()
            .unwrap()
            .tombstoned
    );
}
