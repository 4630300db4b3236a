//! `agent bench-data`: the data path end to end on a devnet of separate agent processes, against
//! raw RocksDB in the same run. Prints JSON lines.
//!
//! 1. `agent devnet` (4 agents: validators, storage nodes, gateways) in a temporary directory;
//! 2. an owner wallet, funded from the faucet, sets up `cars` devices (setup + setDup);
//! 3. every car puts `records` simulated trips of one day at once (one task per car, puts in
//!    sequence within a car, as a car does): sealed for the owner, stored erasure-coded over
//!    the agents, attested on chain and waited for — puts/s and put latency;
//! 4. the owner lists car 0's day (`wallet trips`: pay, scan, proofs, decryption) — latency;
//! 5. baseline: the same number of records, sealed the same way, written by the same number of
//!    writers to one raw RocksDB with synced writes (key = address ‖ record key), and the day
//!    listed by a prefix scan plus decryption.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use gateway::{GatewayClient, NetworkFile};
use primitives::codec;
use serde_json::json;
use wallet::device::sim::CarSim;
use wallet::device::DeviceClient;
use wallet::online::{self, Online, ReadRange, SetupParams};
use wallet::provision::DeviceProvision;
use wallet::{DeviceList, HdKeys, MnemonicPhrase, ReaderKey, RecordDate, Vid, WalletNetwork};

/// Settings.
#[derive(Debug, Clone)]
pub struct DataBenchConfig {
    /// Simulated cars (concurrent writers).
    pub cars: usize,
    /// Records per car.
    pub records: u32,
    /// Day listings measured.
    pub listings: usize,
    /// Pause between blocks of the devnet.
    pub block_interval_ms: u64,
}

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i.min(v.len() - 1)).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark under `dir`.
///
/// # Errors
/// The devnet does not come up, or a step of the data path fails.
pub async fn run(dir: &Path, cfg: &DataBenchConfig) -> Result<()> {
    if cfg.cars == 0 || cfg.records == 0 {
        bail!("need at least one car and one record");
    }
    let net_dir = dir.join("devnet");
    let exe = std::env::current_exe().context("locating the agent binary")?;
    let devnet = Command::new(exe)
        .args(["devnet", "--validators", "4", "--json"])
        .args(["--block-interval-ms", &cfg.block_interval_ms.to_string()])
        .arg("--data-dir")
        .arg(&net_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the devnet")?;
    let _devnet = Kill(vec![devnet]);
    let file_path = crate::devnet::network_file(&net_dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    let network = loop {
        if let Ok(f) = NetworkFile::load(&file_path) {
            break f;
        }
        if Instant::now() > deadline {
            bail!("the devnet wrote no network file within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = GatewayClient::for_network(&network, 0, Duration::from_secs(5))?;
    while client.status().await.map_or(true, |s| s.height < 1) {
        if Instant::now() > deadline {
            bail!("the devnet finalized nothing within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The owner and the cars.
    let keys = HdKeys::from_mnemonic(&MnemonicPhrase::generate()?, "", WalletNetwork::Regtest)?;
    let reader = tokio::task::spawn_blocking(ReaderKey::generate).await??;
    crate::devnet::fund(
        &net_dir,
        &online::owner_account(&keys)?.to_bech32(network.bitcoin_network()?),
        100_000,
    )
    .await?;
    let mut online = Online::connect(network.clone(), &keys, Duration::from_secs(30))?;
    let mut list = DeviceList::new(WalletNetwork::Regtest);
    let agent = network
        .agents
        .first()
        .map(|a| a.account.clone())
        .context("no agents")?;
    let date = RecordDate::parse("20160511")?;
    let mut cars = Vec::new();
    for i in 0..cfg.cars {
        let vid = Vid::new(&format!("BENCHCAR{i:06}"))?;
        list.add(&keys, vid.clone(), 16)?;
        let out = dir.join(format!("{vid}.device.json"));
        online::setup(
            &mut online,
            &keys,
            &reader,
            &list,
            &SetupParams {
                vid: &vid,
                agent: &agent,
                valid_until: u64::MAX,
                out: &out,
            },
        )
        .await?;
        let records = CarSim::new(7, vid.as_str()).day(date, cfg.records, 0)?;
        cars.push((vid, DeviceProvision::load(&out)?, records));
    }

    // End-to-end puts: one task per car.
    let network = Arc::new(network);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (_, prov, records)) in cars.iter().enumerate() {
        let device = DeviceClient::new(prov, &network, &dir.join(format!("spool-{i}")))?;
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for r in &records {
                let t = Instant::now();
                device.put_iot_kv(&r.record, r.metres).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let e2e_secs = start.elapsed().as_secs_f64();
    let total = latencies.len();
    let e2e_rate = total as f64 / e2e_secs;

    // The owner's day listing.
    let vid0 = &cars.first().context("no cars")?.0;
    let mut listing = Vec::new();
    for _ in 0..cfg.listings.max(1) {
        let t = Instant::now();
        let report = online::read(
            &mut online,
            &keys,
            &reader,
            &list,
            vid0,
            date,
            &ReadRange::All,
            &[],
        )
        .await?;
        listing.push(t.elapsed().as_secs_f64() * 1000.0);
        if report.records.len() != cfg.records as usize {
            bail!(
                "the listing returned {} records, {} were put",
                report.records.len(),
                cfg.records
            );
        }
    }

    // Baseline: raw RocksDB, synced writes, same records sealed the same way.
    let db = Arc::new(rocksdb::DB::open_default(dir.join("raw-rocksdb"))?);
    let owner_rsa = reader.public_key();
    let mut jobs = Vec::new();
    let raw_start = Instant::now();
    for (i, (vid, _, records)) in cars.iter().enumerate() {
        let loc = list.locate(&keys, vid, date)?;
        let (db, records, owner_rsa) = (db.clone(), records.clone(), owner_rsa.clone());
        jobs.push(std::thread::spawn(move || -> Result<()> {
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            for r in &records {
                let sealed = primitives::envelope::seal(
                    &r.record,
                    &loc.address,
                    &[&owner_rsa],
                    &mut rand::thread_rng(),
                )?;
                let cells = gateway::cells::to_cells(&sealed)?;
                let mut key = loc.address.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(&r.record.key().encode());
                db.put_opt(key, codec::to_vec(&cells)?, &wo)?;
            }
            let _ = i;
            Ok(())
        }));
    }
    for j in jobs {
        j.join()
            .map_err(|_| anyhow::anyhow!("a baseline writer panicked"))??;
    }
    let raw_secs = raw_start.elapsed().as_secs_f64();
    let raw_rate = total as f64 / raw_secs;
    let loc0 = list.locate(&keys, vid0, date)?;
    let mut prefix = loc0.address.as_bytes().to_vec();
    prefix.push(0);
    let mut raw_listing = Vec::new();
    for _ in 0..cfg.listings.max(1) {
        let t = Instant::now();
        let mut n = 0usize;
        for item in db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let cells: gateway::proto::Cells = codec::from_slice(&v)?;
            gateway::cells::from_cells(&cells)?.open(reader.private_key())?;
            n += 1;
        }
        raw_listing.push(t.elapsed().as_secs_f64() * 1000.0);
        if n != cfg.records as usize {
            bail!("the raw listing found {n} records");
        }
    }

    let tag = format!("cars={}/records={}", cfg.cars, cfg.records);
    let list_p50 = percentile(&mut listing, 0.5);
    let raw_list_p50 = percentile(&mut raw_listing, 0.5);
    let lines = [
        json!({"bench": format!("agent::bench_data/puts_per_s/{tag}"), "value": e2e_rate, "unit": "puts/s",
               "baseline": raw_rate, "ratio": e2e_rate / raw_rate,
               "note": "devnet of 4 agent processes (seal, RS(2,2) store over QUIC, attest, wait for the block) vs raw RocksDB synced puts of the same sealed records"}),
        json!({"bench": format!("agent::bench_data/put_latency_p50/{tag}"), "value": percentile(&mut latencies.clone(), 0.5), "unit": "ms"}),
        json!({"bench": format!("agent::bench_data/put_latency_p99/{tag}"), "value": percentile(&mut latencies, 0.99), "unit": "ms"}),
        json!({"bench": format!("agent::bench_data/day_listing_p50/{tag}"), "value": list_p50, "unit": "ms",
               "baseline": raw_list_p50, "ratio": list_p50 / raw_list_p50,
               "note": "owner's verified listing of one car's day (pay, scan, proofs, decrypt) vs raw RocksDB prefix scan + decrypt"}),
        json!({"bench": format!("agent::bench_data/records/{tag}"), "value": total, "unit": "records",
               "e2e_seconds": e2e_secs, "raw_seconds": raw_secs}),
    ];
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
