//! `agent bench`: validators in one process over real QUIC on loopback (each with its own
//! RocksDB store and the real ledger), fed transactions at saturation; prints JSON lines
//! (throughput, time to finality from submission to commit, and the single-core secp256k1
//! verification rate measured in the same run, with the headline ratio).
//!
//! Workloads: `transfer` (bank transfers between funded accounts) and `attest` (the name-node
//! index's put attestations: every sender first sets up a device with a pool, then the devices
//! attest records of 1 KiB, each under a new key, signed by the device key and paid from its
//! fee credits — the transactions a car's puts generate).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chain::consensus::TimeoutConfig;
use chain::ledger::bank::BankCall;
use chain::ledger::genesis::GenesisBalance;
use chain::ledger::registry::RegistryCall;
use chain::ledger::{Genesis, Ledger};
use chain::node::app::BlockLimits;
use chain::node::{GenesisState, NodeConfig, NodeHandle};
use chain::tx::{AccountAddress, ModuleId, Transaction};
use gateway::TxBuilder;
use primitives::codec;
use primitives::hash::Hash32;
use secp256k1::{Message, SecretKey, SECP256K1};
use serde_json::json;
use tokenomics::Amount;

/// Most transactions a sender has pending at once (the genesis nonce window).
const PER_SENDER: u64 = 16;

/// What the senders send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Bank transfers.
    Transfer,
    /// Put attestations by devices (after their setup).
    Attest,
}

struct Sender {
    key: SecretKey,
    /// The device's VID and pool address (attest workload).
    device: Option<(String, AccountAddress)>,
    to: AccountAddress,
    next_nonce: u64,
    committed: u64,
}

fn attest(builder: &TxBuilder, s: &Sender) -> Result<Vec<u8>> {
    let Some((vid, address)) = &s.device else {
        bail!("not a device");
    };
    let key =
        primitives::RecordKey::from_json_str(&format!("{{\"SESSION_ID\":{}}}", s.next_nonce))?;
    let call = RegistryCall::Attest {
        vid: vid.clone(),
        address: *address,
        key: key.encode(),
        dhash: primitives::hash::hash(
            primitives::hash::Domain::Custom("bench-record"),
            &s.next_nonce.to_be_bytes(),
        ),
        size: 1024,
        metres: 0,
        format: "trip-gps".into(),
        placement: [0; 32],
    };
    Ok(builder.registry(&s.key, s.next_nonce, &call)?)
}

fn transfer(chain_id: &str, s: &Sender, fee: Amount) -> Result<Vec<u8>> {
    let call = codec::to_vec(&BankCall::Transfer {
        to: s.to,
        amount: Amount::from_base_units(1).unwrap_or(Amount::ZERO),
    })?;
    Transaction {
        chain_id: chain_id.to_string(),
        sender: s.key.public_key(SECP256K1),
        nonce: s.next_nonce,
        fee,
        module: ModuleId::BANK,
        call,
    }
    .sign(&s.key)
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .encode()
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Single-core secp256k1 verifications per second, measured for `for_how_long`.
pub fn verify_rate(for_how_long: Duration) -> f64 {
    let sk = SecretKey::from_slice(&[0x42; 32])
        .unwrap_or_else(|_| SecretKey::new(&mut rand::thread_rng()));
    let pk = sk.public_key(SECP256K1);
    let msg = Message::from_digest([7; 32]);
    let sig = SECP256K1.sign_ecdsa(&msg, &sk);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < for_how_long {
        for _ in 0..100 {
            if SECP256K1.verify_ecdsa(&msg, &sig, &pk).is_ok() {
                n += 1;
            }
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Validators.
    pub validators: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Funded senders; each keeps up to 16 transfers pending.
    pub senders: usize,
    /// Most transactions per proposed block.
    pub block_txs: usize,
    /// Pause between blocks.
    pub block_interval: Duration,
    /// Concurrent submitters; submitter `k` feeds the senders `i` with `i % submitters == k`
    /// to validator `k % validators` (1: one submitter, round-robin over the validators).
    pub submitters: usize,
    /// What is sent.
    pub workload: Workload,
    /// Each validator's mempool limit (`None`: the node's default).
    pub mempool_txs: Option<usize>,
    /// State versions each validator keeps (`None`: the node's default; 0: never prune).
    pub state_versions_kept: Option<u64>,
}

/// Sets up one device per owner (Setup and SetDup, the owner's nonces 0 and 1) and waits until
/// every setup is committed; returns the device senders.
async fn setup_devices(
    nodes: &[NodeHandle],
    builder: &TxBuilder,
    owners: &[SecretKey],
    seed: u64,
) -> Result<Vec<Sender>> {
    let rsa = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa.to_public_key())?
        .as_bytes()
        .to_vec();
    let agent =
        AccountAddress::from_public_key(&Genesis::example_key(seed, 0).public_key(SECP256K1));
    let mut devices = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let device = Genesis::example_key(seed.wrapping_add(2), u32::try_from(i)?);
        let vid = format!("BENCH{i:06}");
        let setup = RegistryCall::Setup {
            vid: vid.clone(),
            rsa_spki: spki.clone(),
            device_key: device.public_key(SECP256K1),
            agent,
        };
        let dup = RegistryCall::SetDup {
            vid: vid.clone(),
            commitment: [1; 32],
            size: 1,
            valid_until: u64::MAX,
        };
        let node = &nodes[i % nodes.len()];
        for (nonce, call) in [(0, &setup), (1, &dup)] {
            node.submit(builder.registry(owner, nonce, call)?)
                .await
                .map_err(|r| anyhow::anyhow!("device setup refused: {r}"))?;
        }
        let address = AccountAddress::from_public_key(
            &Genesis::example_key(seed.wrapping_add(3), u32::try_from(i)?).public_key(SECP256K1),
        );
        devices.push(Sender {
            key: device,
            device: Some((vid, address)),
            to: address,
            next_nonce: 0,
            committed: 0,
        });
    }
    let store = nodes[0].shared.store.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    for owner in owners {
        let a = AccountAddress::from_public_key(&owner.public_key(SECP256K1));
        while chain::ledger::bank::account(&*store, &a)?.nonce < 2 {
            if Instant::now() > deadline {
                bail!("device setups not committed within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(devices)
}

/// Runs the benchmark in `dir`, printing JSON lines.
///
/// # Errors
/// The nodes cannot start or never finalize.
pub async fn run(dir: &Path, cfg: &BenchConfig) -> Result<()> {
    let n = cfg.validators;
    if n == 0 {
        bail!("need at least one validator");
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let verify_per_s = tokio::task::spawn_blocking(|| verify_rate(Duration::from_secs(2))).await?;

    let seed: u64 = rand::random();
    let count = u32::try_from(n)?;
    let mut genesis = Genesis::example(count, seed);
    genesis.genesis_time_ms = chain::node::app::now_ms();
    let network = genesis
        .bitcoin_network()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let senders_n = cfg.senders.max(2);
    let sender_keys: Vec<SecretKey> = (0..u32::try_from(senders_n)?)
        .map(|i| Genesis::example_key(seed.wrapping_add(1), i))
        .collect();
    let addrs_of: Vec<AccountAddress> = sender_keys
        .iter()
        .map(|k| AccountAddress::from_public_key(&k.public_key(SECP256K1)))
        .collect();
    for a in &addrs_of {
        genesis.balances.push(GenesisBalance {
            address: a.to_bech32(network),
            amount: Amount::from_tokens(1_000).unwrap_or(Amount::ZERO),
        });
    }
    let ledger = Arc::new(Ledger::new());
    let state = GenesisState::derive(&ledger, &genesis)?;
    let keys: Vec<SecretKey> = (0..count).map(|i| Genesis::example_key(seed, i)).collect();
    let addrs: Vec<SocketAddr> = (0..n).map(|_| free_udp()).collect::<Result<_>>()?;
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut nc = NodeConfig::new(
            genesis.chain_id.clone(),
            dir.join(format!("node-{i}")),
            addrs[i],
        );
        nc.peers = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| *a)
            .collect();
        nc.block_interval = cfg.block_interval;
        nc.gossip_interval = Duration::from_millis(300);
        nc.timeouts = TimeoutConfig {
            propose: Duration::from_millis(3000),
            propose_delta: Duration::from_millis(500),
            prevote: Duration::from_millis(1000),
            prevote_delta: Duration::from_millis(500),
            precommit: Duration::from_millis(1000),
            precommit_delta: Duration::from_millis(500),
        };
        nc.limits = BlockLimits {
            max_txs: cfg.block_txs,
            max_bytes: 4 << 20,
        };
        if let Some(m) = cfg.mempool_txs {
            nc.mempool_txs = m;
        }
        if let Some(k) = cfg.state_versions_kept {
            nc.state_versions_kept = k;
        }
        let (h, _task) = chain::node::start(nc, *key, state.clone(), ledger.clone())?;
        nodes.push(h);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if nodes[0].status().await.is_some_and(|s| s.height >= 1) {
            break;
        }
        if Instant::now() > deadline {
            bail!("no block within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Generator: every sender keeps up to PER_SENDER transfers pending, spread over the nodes.
    let builder = Arc::new(TxBuilder::new(&genesis)?);
    let initial: Vec<Sender> = match cfg.workload {
        Workload::Transfer => sender_keys
            .iter()
            .enumerate()
            .map(|(i, k)| Sender {
                key: *k,
                device: None,
                to: addrs_of[(i + 1) % addrs_of.len()],
                next_nonce: 0,
                committed: 0,
            })
            .collect(),
        Workload::Attest => setup_devices(&nodes, &builder, &sender_keys, seed).await?,
    };
    let mut commits = nodes[0].subscribe();
    let submitted: Arc<std::sync::Mutex<HashMap<Hash32, (usize, Instant)>>> = Arc::default();
    let senders: Arc<std::sync::Mutex<Vec<Sender>>> = Arc::new(std::sync::Mutex::new(initial));
    let submitters_n = cfg.submitters.max(1);
    let refused_full = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut generators = Vec::new();
    for k in 0..submitters_n {
        let gen_nodes = nodes.clone();
        let gen_sub = submitted.clone();
        let gen_senders = senders.clone();
        let chain_id = genesis.chain_id.clone();
        let fee = genesis.min_tx_fee;
        let builder = builder.clone();
        let workload = cfg.workload;
        let refused_full = refused_full.clone();
        generators.push(tokio::spawn(async move {
            let mut round: usize = k;
            loop {
                let mut sent_any = false;
                for i in (k..senders_n).step_by(submitters_n) {
                    let tx = {
                        let Ok(mut ss) = gen_senders.lock() else {
                            return;
                        };
                        let s = &mut ss[i];
                        if s.next_nonce >= s.committed + PER_SENDER {
                            continue;
                        }
                        let made = match workload {
                            Workload::Transfer => transfer(&chain_id, s, fee),
                            Workload::Attest => attest(&builder, s),
                        };
                        let Ok(tx) = made else {
                            continue;
                        };
                        s.next_nonce += 1;
                        tx
                    };
                    // One submitter: round-robin over the validators; several: one validator each.
                    if submitters_n == 1 {
                        round = round.wrapping_add(1);
                    }
                    let node = &gen_nodes[round % gen_nodes.len()];
                    let h = chain::block::tx_hash(&tx);
                    let at = Instant::now();
                    if let Ok(mut m) = gen_sub.lock() {
                        m.insert(h, (i, at));
                    }
                    if let Err(r) = node.submit(tx).await {
                        if r.code == chain::ledger::RejectCode::MempoolFull {
                            refused_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if let Ok(mut m) = gen_sub.lock() {
                            m.remove(&h);
                        }
                        if let Ok(mut ss) = gen_senders.lock() {
                            ss[i].next_nonce -= 1;
                        }
                    } else {
                        sent_any = true;
                    }
                }
                if !sent_any {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }

    let warm_end = Instant::now() + cfg.warmup;
    let end = warm_end + cfg.duration;
    let mut latencies: Vec<f64> = Vec::new();
    let mut committed: u64 = 0;
    let mut blocks: u64 = 0;
    let mut first_height = None;
    let mut last_height = 0;
    while Instant::now() < end {
        let c = match tokio::time::timeout(end - Instant::now(), commits.recv()).await {
            Ok(Ok(c)) => c,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) => break,
            Err(_) => break,
        };
        let now = Instant::now();
        let mut m = submitted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut ss = senders.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let measuring = now >= warm_end;
        for t in &c.txs {
            if let Some((i, at)) = m.remove(t) {
                ss[i].committed += 1;
                if measuring {
                    latencies.push(now.duration_since(at).as_secs_f64() * 1000.0);
                    committed += 1;
                }
            }
        }
        if measuring {
            blocks += 1;
            first_height.get_or_insert(c.height);
            last_height = c.height;
        }
    }
    for g in &generators {
        g.abort();
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let secs = cfg.duration.as_secs_f64();
    let tps = committed as f64 / secs;
    let capacity = verify_per_s * cores as f64 / n as f64;
    let tag = format!(
        "validators={n}/workload={}",
        match cfg.workload {
            Workload::Transfer => "transfer",
            Workload::Attest => "attest",
        }
    );
    let lines = [
        json!({"bench": format!("agent::bench/quic_tx_per_s/{tag}"), "value": tps, "unit": "tx/s",
               "senders": senders_n, "submitters": submitters_n}),
        json!({"bench": format!("agent::bench/finality_p50/{tag}"), "value": percentile(&latencies, 0.5), "unit": "ms"}),
        json!({"bench": format!("agent::bench/finality_p99/{tag}"), "value": percentile(&latencies, 0.99), "unit": "ms"}),
        json!({"bench": "agent::bench/secp256k1_verify_single_core", "value": verify_per_s, "unit": "verifications/s"}),
        json!({"bench": format!("agent::bench/headline/{tag}"), "value": tps / capacity, "unit": "ratio",
               "baseline": capacity, "ratio": tps / capacity,
               "note": format!("tx/s / (verifications/s x {cores} cores / {n} validators)")}),
        json!({"bench": format!("agent::bench/blocks/{tag}"), "value": blocks, "unit": "blocks",
               "heights": [first_height, last_height], "seconds": secs}),
        json!({"bench": format!("agent::bench/refused_mempool_full/{tag}"),
               "value": refused_full.load(std::sync::atomic::Ordering::Relaxed), "unit": "submissions",
               "mempool_txs": cfg.mempool_txs, "note": "whole run, warm-up included; each is retried"}),
    ];
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
