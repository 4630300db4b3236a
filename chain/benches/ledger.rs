//! Ledger figures as JSON lines (`cargo bench -p chain --bench ledger`): block execution rate
//! for transfers and for attestations, admission (`check_tx`) and mempool insert+reap rates,
//! each beside the single-core secp256k1 verification rate measured in the same run (every
//! transaction costs one verification; `ratio` = rate ÷ verification rate).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use chain::consensus::secp::ValidatorAddress;
use chain::ledger::bank::BankCall;
use chain::ledger::genesis::GenesisBalance;
use chain::ledger::registry::RegistryCall;
use chain::ledger::{BlockContext, Genesis, Ledger};
use chain::mempool::{Mempool, MempoolConfig, Source};
use chain::state::MemState;
use chain::tx::{AccountAddress, ModuleId, Transaction};
use primitives::codec;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs8::EncodePublicKey;
use secp256k1::{Message, SecretKey, SECP256K1};
use tokenomics::{Amount, DataOp};

const N: usize = 2_000;

fn line(bench: &str, value: f64, unit: &str, baseline: Option<f64>) {
    match baseline {
        Some(b) => println!(
            "{{\"bench\":\"{bench}\",\"value\":{value:.1},\"unit\":\"{unit}\",\"baseline\":{b:.1},\"ratio\":{:.3}}}",
            value / b
        ),
        None => println!("{{\"bench\":\"{bench}\",\"value\":{value:.1},\"unit\":\"{unit}\"}}"),
    }
}

fn key(i: usize) -> SecretKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    b[31] = 1;
    SecretKey::from_slice(&b).unwrap()
}

fn addr(k: &SecretKey) -> AccountAddress {
    AccountAddress::from_public_key(&k.public_key(SECP256K1))
}

fn signed(
    g: &Genesis,
    k: &SecretKey,
    nonce: u64,
    module: ModuleId,
    call: Vec<u8>,
    fee: Amount,
) -> Vec<u8> {
    Transaction {
        chain_id: g.chain_id.clone(),
        sender: k.public_key(SECP256K1),
        nonce,
        fee,
        module,
        call,
    }
    .sign(k)
    .unwrap()
    .encode()
    .unwrap()
}

fn ctx(g: &Genesis, height: u64) -> BlockContext {
    BlockContext {
        chain_id: g.chain_id.clone(),
        height,
        time_ms: g.genesis_time_ms + height,
        proposer: ValidatorAddress::from_public_key(
            &Genesis::example_key(1, 0).public_key(SECP256K1),
        ),
    }
}

fn verify_rate() -> f64 {
    let sk = key(0);
    let pk = sk.public_key(SECP256K1);
    let msg = Message::from_digest([7; 32]);
    let sig = SECP256K1.sign_ecdsa(&msg, &sk);
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        assert!(SECP256K1.verify_ecdsa(&msg, &sig, &pk).is_ok());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let verify = verify_rate();
    line("chain::secp256k1/verify", verify, "verifications/s", None);

    let mut g = Genesis::example(4, 1);
    g.max_block_txs = 100_000;
    g.max_block_bytes = 64 << 20;
    for i in 0..N {
        g.balances.push(GenesisBalance {
            address: addr(&key(i)).to_bech32(bitcoin::Network::Regtest),
            amount: Amount::from_tokens(1_000).unwrap(),
        });
    }
    let ledger = Ledger::new();
    let (writes, _) = ledger.init_genesis(&g).unwrap();
    let mut state = MemState::new();
    state.apply(&writes);
    let fee = g.min_tx_fee;

    // Transfers: N distinct senders in one block.
    let transfers: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let call = codec::to_vec(&BankCall::Transfer {
                to: addr(&key((i + 1) % N)),
                amount: Amount::ONE_TOKEN,
            })
            .unwrap();
            signed(&g, &key(i), 0, ModuleId::BANK, call, fee)
        })
        .collect();

    let t = Instant::now();
    for tx in &transfers {
        ledger.check_tx(&state, tx).unwrap();
    }
    let rate = N as f64 / t.elapsed().as_secs_f64();
    line(
        &format!("chain::ledger/check_tx/transfers/n={N}"),
        rate,
        "tx/s",
        Some(verify),
    );

    let t = Instant::now();
    let mut mp = Mempool::new(MempoolConfig::default());
    for tx in &transfers {
        mp.insert(&ledger, &state, tx.clone(), Source::Peer)
            .unwrap();
    }
    let reaped = mp.reap(usize::MAX, usize::MAX);
    assert_eq!(reaped.len(), N);
    let rate = N as f64 / t.elapsed().as_secs_f64();
    line(
        &format!("chain::mempool/insert_and_reap/n={N}"),
        rate,
        "tx/s",
        Some(verify),
    );

    let t = Instant::now();
    let out = ledger
        .execute_block(&state, &ctx(&g, 1), &transfers)
        .unwrap();
    let rate = N as f64 / t.elapsed().as_secs_f64();
    assert!(out.receipts.iter().all(|r| r.succeeded()));
    line(
        &format!("chain::ledger/execute_block/transfers/n={N}"),
        rate,
        "tx/s",
        Some(verify),
    );
    let t = Instant::now();
    let cached = ledger
        .execute_block_with_verified(&state, &ctx(&g, 1), &transfers, &|h| mp.contains(h))
        .unwrap();
    let rate = N as f64 / t.elapsed().as_secs_f64();
    assert_eq!(cached, out);
    line(
        &format!("chain::ledger/execute_block/transfers_signatures_cached/n={N}"),
        rate,
        "tx/s",
        Some(verify),
    );
    state.apply(&out.writes);

    // Device setups (one per owner), then one attestation per device in one block.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let spki = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .unwrap()
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let devices = N / 2;
    let setup_fee = fee.checked_add(g.device_setup_fee).unwrap();
    let dev_key = |i: usize| key(1_000_000 + i);
    let setups: Vec<Vec<u8>> = (0..devices)
        .flat_map(|i| {
            let vid = format!("VIN{i:08}");
            let setup = codec::to_vec(&RegistryCall::Setup {
                vid: vid.clone(),
                rsa_spki: spki.clone(),
                device_key: dev_key(i).public_key(SECP256K1),
                agent: addr(&key(0)),
            })
            .unwrap();
            let pool = codec::to_vec(&RegistryCall::SetDup {
                vid,
                commitment: [1; 32],
                size: 1000,
                valid_until: 1_000_000,
            })
            .unwrap();
            [
                signed(&g, &key(i), 1, ModuleId::REGISTRY, setup, setup_fee),
                signed(&g, &key(i), 2, ModuleId::REGISTRY, pool, fee),
            ]
        })
        .collect();
    let t = Instant::now();
    let out = ledger.execute_block(&state, &ctx(&g, 2), &setups).unwrap();
    let rate = setups.len() as f64 / t.elapsed().as_secs_f64();
    assert!(out.receipts.iter().all(|r| r.succeeded()));
    line(
        &format!(
            "chain::ledger/execute_block/device_setup_and_pool/n={}",
            setups.len()
        ),
        rate,
        "tx/s",
        Some(verify),
    );
    state.apply(&out.writes);

    let size = 4_096u64;
    let put_fee = Ledger::params(&state)
        .and_then(|p| {
            chain::ledger::bank::min_fee(
                &state,
                &p,
                Some(&DataOp::Put {
                    bytes: size,
                    metres: 0,
                }),
            )
        })
        .unwrap();
    let attests: Vec<Vec<u8>> = (0..devices)
        .map(|i| {
            let record_key =
                primitives::RecordKey::from_json_str(&format!("{{\"SESSION_ID\":{i}}}"))
                    .unwrap()
                    .encode();
            let call = codec::to_vec(&RegistryCall::Attest {
                vid: format!("VIN{i:08}"),
                address: addr(&key(5_000_000 + i)),
                key: record_key,
                dhash: [2; 32],
                size,
                metres: 0,
                format: "trip-gps".into(),
                placement: [3; 32],
            })
            .unwrap();
            signed(&g, &dev_key(i), 0, ModuleId::REGISTRY, call, put_fee)
        })
        .collect();
    let t = Instant::now();
    let out = ledger.execute_block(&state, &ctx(&g, 3), &attests).unwrap();
    let rate = attests.len() as f64 / t.elapsed().as_secs_f64();
    assert!(
        out.receipts.iter().all(|r| r.succeeded()),
        "{:?}",
        out.receipts.iter().find(|r| !r.succeeded())
    );
    line(
        &format!(
            "chain::ledger/execute_block/attestations/n={}",
            attests.len()
        ),
        rate,
        "tx/s",
        Some(verify),
    );
    let entry_bytes: usize = out
        .writes
        .iter()
        .filter(|(k, _)| k.starts_with(chain::ledger::registry::ATTESTATION_PREFIX))
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    line(
        "chain::ledger/attestation_entry/bytes",
        entry_bytes as f64 / attests.len() as f64,
        "bytes (key + value)",
        None,
    );
}
