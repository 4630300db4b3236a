//! `device`: a CarChain device and a fleet simulator.
//!
//! `device put` stores one record the way a car head unit does (the brief's `putIotKV`): seal
//! for the owner, write ahead to the spool, store the cells through an agent's gateway, attest
//! on chain signed by the device key. `device resume` re-drives spooled puts after a crash.
//! `device simulate` drives several provisioned cars concurrently with seeded trip and
//! violation records and reports throughput and latency.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use gateway::{GatewayClient, NetworkFile};
use primitives::record::Record;
use serde_json::json;
use wallet::device::sim::{gps_metres, CarSim, SimRecord};
use wallet::device::{preferred_agent, DeviceClient, DeviceError, PutOutcome, RetryPolicy};
use wallet::provision::DeviceProvision;
use wallet::RecordDate;

/// A CarChain device: puts sealed records into the storage cluster and attests them on chain.
///
/// Every command reads the provisioning file written by `wallet device setup` (the device key,
/// the owner's RSA key, the address pool and user seed) and the network file written by
/// `agent devnet` (chain genesis and the agents' gateways).
#[derive(Debug, Parser)]
#[command(name = "device", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Attempts of each network step while no agent answers (bounded exponential backoff).
    #[arg(long, global = true, value_name = "N", default_value_t = 8)]
    attempts: u32,

    /// Timeout of one gateway request to one agent, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Put one record (`{"format":…,"key":{…},"value":{…}}`) and attest it.
    Put(PutArgs),
    /// Re-drive every put left in the spool (after a crash or a failed run).
    Resume(ResumeArgs),
    /// Drive several cars concurrently with generated trips and violations.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
struct PutArgs {
    /// The device's provisioning file.
    #[arg(long, value_name = "FILE")]
    provision: PathBuf,
    /// The network file.
    #[arg(long, value_name = "FILE")]
    network: PathBuf,
    /// The record, as JSON in the brief's shape.
    #[arg(long, value_name = "FILE.json")]
    record: PathBuf,
    /// Distance the record covers in metres [default: the length of its GPS track, else 0].
    #[arg(long, value_name = "N")]
    metres: Option<u64>,
    /// Spool directory for write-ahead puts [default: VID.spool beside the provisioning file].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ResumeArgs {
    /// The device's provisioning file.
    #[arg(long, value_name = "FILE")]
    provision: PathBuf,
    /// The network file.
    #[arg(long, value_name = "FILE")]
    network: PathBuf,
    /// Spool directory [default: VID.spool beside the provisioning file].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// The network file.
    #[arg(long, value_name = "FILE")]
    network: PathBuf,
    /// A car's provisioning file (repeat for more cars).
    #[arg(long, value_name = "FILE", required = true)]
    provision: Vec<PathBuf>,
    /// Trips each car drives on the day.
    #[arg(long, value_name = "N")]
    trips_per_car: u32,
    /// The day (YYYYMMDD).
    #[arg(long, value_name = "YYYYMMDD")]
    date: String,
    /// Parking violations each car gets on the day.
    #[arg(long, value_name = "N", default_value_t = 0)]
    violations_per_car: u32,
    /// Seed of the record generator (the same seed drives the same trips).
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Cars putting at the same time [default: all].
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// Spool root: each car spools under DIR/VID [default: VID.spool beside each provisioning file].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Without a terminal, print a progress line every N puts.
    #[arg(long, value_name = "N", default_value_t = 25)]
    progress_every: u64,
}

fn default_spool(provision_path: &Path, vid: &str) -> PathBuf {
    let dir = match provision_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join(format!("{vid}.spool"))
}

fn load(provision: &Path, network: &Path) -> anyhow::Result<(DeviceProvision, NetworkFile)> {
    let p = DeviceProvision::load(provision)
        .with_context(|| format!("reading the provisioning file {}", provision.display()))?;
    let n = NetworkFile::load(network)
        .with_context(|| format!("reading the network file {}", network.display()))?;
    Ok((p, n))
}

/// Network knobs shared by every command.
#[derive(Debug, Clone, Copy)]
struct Net {
    json: bool,
    attempts: u32,
    timeout: Duration,
}

impl Net {
    fn client(
        &self,
        p: &DeviceProvision,
        n: &NetworkFile,
        spool: &Path,
    ) -> anyhow::Result<DeviceClient> {
        Ok(DeviceClient::connect(p, n, spool, self.timeout)?.with_policy(self.policy()))
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            transport_attempts: self.attempts.max(1),
            ..RetryPolicy::default()
        }
    }
}

fn print_outcome(json: bool, o: &PutOutcome) {
    if json {
        println!("{}", serde_json::to_string(o).unwrap_or_default());
        return;
    }
    let r = o.receipt();
    let what = if o.is_new() {
        "attested"
    } else {
        "already attested"
    };
    println!(
        "{what}: key {} at {} (height {}, dHash {}, root {}, fee {} base units)",
        r.key, r.address, r.height, r.dhash, r.root, r.fee
    );
}

async fn cmd_put(net: Net, a: PutArgs) -> anyhow::Result<()> {
    let (p, n) = load(&a.provision, &a.network)?;
    let text = std::fs::read_to_string(&a.record)
        .with_context(|| format!("reading the record {}", a.record.display()))?;
    let record = Record::from_json_str(&text)
        .with_context(|| format!("{} is not a record", a.record.display()))?;
    let metres = a.metres.unwrap_or_else(|| gps_metres(&record));
    let spool = a
        .spool
        .unwrap_or_else(|| default_spool(&a.provision, &p.vid));
    let client = net.client(&p, &n, &spool)?;
    let outcome = client
        .put_iot_kv(&record, metres)
        .await
        .map_err(|e| put_failed(&e, &spool))?;
    print_outcome(net.json, &outcome);
    Ok(())
}

fn put_failed(e: &DeviceError, spool: &Path) -> anyhow::Error {
    match e {
        DeviceError::GaveUp { .. } | DeviceError::Gateway(_) => anyhow!(
            "the put failed: {e}\nits sealed cells stay in {}; run `device resume` to retry with the same bytes",
            spool.display()
        ),
        _ => anyhow!("the put failed: {e}"),
    }
}

async fn cmd_resume(net: Net, a: ResumeArgs) -> anyhow::Result<()> {
    let (p, n) = load(&a.provision, &a.network)?;
    let spool = a
        .spool
        .unwrap_or_else(|| default_spool(&a.provision, &p.vid));
    let client = net.client(&p, &n, &spool)?;
    let results = client.resume().await?;
    let mut failed = 0usize;
    for r in &results {
        match r {
            Ok(o) => print_outcome(net.json, o),
            Err(e) => {
                failed = failed.saturating_add(1);
                eprintln!("error: {e}");
            }
        }
    }
    if !net.json {
        println!(
            "{} spooled put(s) re-driven, {failed} failed",
            results.len()
        );
    }
    if failed > 0 {
        bail!(
            "{failed} spooled put(s) still failed; they stay in {}",
            spool.display()
        );
    }
    Ok(())
}

/// What one put of the simulation did.
enum Done {
    Ok {
        new: bool,
        latency: Duration,
        fee: u64,
    },
    Failed {
        vid: String,
        error: String,
    },
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let last = sorted.len().saturating_sub(1);
    let i = last.saturating_mul(pct).checked_div(100).unwrap_or(0);
    sorted.get(i).copied().unwrap_or(Duration::ZERO)
}

async fn cmd_simulate(net: Net, a: SimulateArgs) -> anyhow::Result<()> {
    let date = RecordDate::parse(&a.date).with_context(|| format!("--date {}", a.date))?;
    let network = NetworkFile::load(&a.network)
        .with_context(|| format!("reading the network file {}", a.network.display()))?;
    let mut provisions = Vec::with_capacity(a.provision.len());
    for path in &a.provision {
        let p = DeviceProvision::load(path)
            .with_context(|| format!("reading the provisioning file {}", path.display()))?;
        provisions.push((path.clone(), p));
    }
    let first = provisions
        .first()
        .map(|(_, p)| preferred_agent(&network, &p.agent))
        .unwrap_or(0);
    let gw = Arc::new(GatewayClient::for_network(&network, first, net.timeout)?);

    // Cars and their records (generated up front: reproducible from the seed).
    let mut cars = Vec::with_capacity(provisions.len());
    let mut total: u64 = 0;
    for (path, p) in &provisions {
        let spool = match &a.spool {
            Some(root) => root.join(&p.vid),
            None => default_spool(path, &p.vid),
        };
        let client = DeviceClient::with_gateway(p, &network, &spool, gw.clone())
            .with_context(|| format!("car {}", p.vid))?
            .with_policy(net.policy());
        let records = CarSim::new(a.seed, &p.vid)
            .day(date, a.trips_per_car, a.violations_per_car)
            .with_context(|| format!("generating the records of {}", p.vid))?;
        total = total.saturating_add(records.len() as u64);
        cars.push((Arc::new(client), records));
    }

    let concurrency = a.concurrency.unwrap_or(cars.len()).max(1);
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(cars.len());
    for (client, records) in cars {
        let gate = gate.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(_permit) = gate.acquire_owned().await else {
                return;
            };
            let vid = client.device().vid().to_string();
            // Earlier runs' leftovers first, so the nonce order stays simple.
            match client.resume().await {
                Ok(rs) => {
                    for r in rs.into_iter().filter_map(Result::err) {
                        let _ = tx.send(Done::Failed {
                            vid: vid.clone(),
                            error: format!("spooled put: {r}"),
                        });
                    }
                }
                Err(e) => {
                    let _ = tx.send(Done::Failed {
                        vid: vid.clone(),
                        error: format!("spool: {e}"),
                    });
                }
            }
            for SimRecord { record, metres } in records {
                let t = Instant::now();
                let done = match client.put_iot_kv(&record, metres).await {
                    Ok(o) => Done::Ok {
                        new: o.is_new(),
                        latency: t.elapsed(),
                        fee: o.receipt().fee,
                    },
                    Err(e) => Done::Failed {
                        vid: vid.clone(),
                        error: format!("{}: {e}", record.key().to_json_string()),
                    },
                };
                if tx.send(done).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);

    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} puts {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let (mut ok, mut already, mut failed, mut fees) = (0u64, 0u64, 0u64, 0u64);
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let mut seen: u64 = 0;
    while let Some(d) = rx.recv().await {
        seen = seen.saturating_add(1);
        match d {
            Done::Ok { new, latency, fee } => {
                if new {
                    ok = ok.saturating_add(1);
                } else {
                    already = already.saturating_add(1);
                }
                fees = fees.saturating_add(fee);
                latencies.push(latency);
            }
            Done::Failed { vid, error } => {
                failed = failed.saturating_add(1);
                if let Some(b) = &bar {
                    b.println(format!("error: {vid}: {error}"));
                } else {
                    eprintln!("error: {vid}: {error}");
                }
                errors.push(format!("{vid}: {error}"));
            }
        }
        match &bar {
            Some(b) => {
                b.set_position(seen.min(total));
                b.set_message(format!("{failed} failed"));
            }
            None => {
                if a.progress_every > 0 && seen.checked_rem(a.progress_every) == Some(0) {
                    eprintln!("{seen}/{total} puts ({ok} new, {already} already attested, {failed} failed)");
                }
            }
        }
    }
    for t in tasks {
        t.await.context("a car task panicked")?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    latencies.sort();
    let done = ok.saturating_add(already);
    // Precision loss is irrelevant for a report.
    let rate = done as f64 / elapsed;
    let p50 = percentile(&latencies, 50).as_secs_f64() * 1e3;
    let p99 = percentile(&latencies, 99).as_secs_f64() * 1e3;
    if net.json {
        for line in [
            json!({"bench": "device.put", "value": rate, "unit": "puts/s"}),
            json!({"bench": "device.put.latency_p50", "value": p50, "unit": "ms"}),
            json!({"bench": "device.put.latency_p99", "value": p99, "unit": "ms"}),
            json!({"bench": "device.put.ok", "value": ok, "unit": "puts"}),
            json!({"bench": "device.put.already_attested", "value": already, "unit": "puts"}),
            json!({"bench": "device.put.failed", "value": failed, "unit": "puts"}),
            json!({"bench": "device.put.fees", "value": fees, "unit": "base_units"}),
            json!({"bench": "device.put.cars", "value": provisions.len(), "unit": "cars"}),
            json!({"bench": "device.put.elapsed", "value": elapsed, "unit": "s"}),
        ] {
            println!("{line}");
        }
    } else {
        println!(
            "{} cars, {total} records on {date}: {ok} attested, {already} already attested, {failed} failed",
            provisions.len()
        );
        println!(
            "{rate:.2} puts/s over {elapsed:.1}s; put latency p50 {p50:.0} ms, p99 {p99:.0} ms; fees {fees} base units"
        );
    }
    if failed > 0 {
        bail!(
            "{failed} put(s) failed (first: {}); their sealed cells stay spooled, rerun to retry them",
            errors.first().map(String::as_str).unwrap_or("?")
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let net = Net {
        json,
        attempts: cli.attempts,
        timeout: Duration::from_millis(cli.timeout_ms.max(1)),
    };
    let result = match cli.command {
        Command::Put(a) => cmd_put(net, a).await,
        Command::Resume(a) => cmd_resume(net, a).await,
        Command::Simulate(a) => cmd_simulate(net, a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", json!({"error": format!("{e:#}")}));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
