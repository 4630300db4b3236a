//! The `agent` command: run a validator, start a local devnet, query a node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent::{admin, config, devnet, gateway as gw, http, storage};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The CarChain agent node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a validator from a configuration file.
    Run {
        /// The node configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Where to keep state (overrides the file's `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// QUIC listen address (overrides the file).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin endpoint address (overrides the file).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Write a local devnet (or reuse the one in DIR) and run its validators as separate
    /// processes until Ctrl-C.
    Devnet {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory of the devnet.
        #[arg(long)]
        data_dir: PathBuf,
        /// Pause between blocks, in milliseconds.
        #[arg(long, default_value_t = 200)]
        block_interval_ms: u64,
        /// Only write the files; start nothing.
        #[arg(long)]
        init_only: bool,
        /// Print one JSON line per node (with its process id) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark validators in this process over real QUIC on loopback at saturation; prints
    /// JSON lines.
    Bench {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Warm-up seconds.
        #[arg(long, default_value_t = 5)]
        warmup_secs: u64,
        /// Funded senders (each keeps up to 16 transfers pending).
        #[arg(long, default_value_t = 1024)]
        senders: usize,
        /// Most transactions per proposed block.
        #[arg(long, default_value_t = 5000)]
        block_txs: usize,
        /// Pause between blocks, in milliseconds.
        #[arg(long, default_value_t = 0)]
        block_interval_ms: u64,
        /// Concurrent submitters (several: one validator each).
        #[arg(long, default_value_t = 1)]
        submitters: usize,
        /// Where the validators keep state (a temporary directory if not given).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// What to send: bank transfers, or devices' put attestations (after their setup).
        #[arg(long, value_enum, default_value = "transfer")]
        workload: agent::bench::Workload,
        /// Most pending transactions per validator's mempool (the node's admission limit:
        /// beyond it submissions are refused with `mempool_full` and retried by the load
        /// generator). Default: the node's default.
        #[arg(long)]
        mempool_txs: Option<usize>,
        /// State versions each validator keeps (0: an archive node that never prunes).
        /// Default: the node's default.
        #[arg(long)]
        state_versions_kept: Option<u64>,
    },
    /// Send test tokens from a devnet's faucet account to an address (devnets only: the
    /// faucet key is a file in the devnet directory).
    Faucet {
        /// The devnet directory (its network.json and faucet.key are used).
        #[arg(long)]
        devnet: PathBuf,
        /// The receiving address (bech32).
        #[arg(long)]
        to: String,
        /// Whole tokens to send.
        #[arg(long, default_value_t = 1000)]
        tokens: u64,
    },
    /// Benchmark the data path end to end: a devnet of 4 agent processes, an owner setting
    /// up simulated cars, every car putting a day of trips (sealed, erasure-coded, attested),
    /// the owner's verified day listing; and the same records against raw RocksDB in the same
    /// run. Prints JSON lines.
    BenchData {
        /// Simulated cars (concurrent writers).
        #[arg(long, default_value_t = 4)]
        cars: usize,
        /// Records per car.
        #[arg(long, default_value_t = 25)]
        records: u32,
        /// Day listings measured.
        #[arg(long, default_value_t = 5)]
        listings: usize,
        /// Pause between blocks of the devnet, in milliseconds.
        #[arg(long, default_value_t = 100)]
        block_interval_ms: u64,
        /// Where to keep the devnet and the baseline database (a temporary directory if not given).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print a node's status from its admin endpoint.
    Status {
        /// The admin endpoint, e.g. 127.0.0.1:28000.
        #[arg(long)]
        node: SocketAddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Run {
            config,
            data_dir,
            listen,
            admin,
        } => rt.block_on(run(config, data_dir, listen, admin)),
        Cmd::Devnet {
            validators,
            data_dir,
            block_interval_ms,
            init_only,
            json,
        } => rt.block_on(run_devnet(
            validators,
            data_dir,
            block_interval_ms,
            init_only,
            json,
        )),
        Cmd::Status { node, json } => rt.block_on(status(node, json)),
        Cmd::Faucet { devnet, to, tokens } => rt.block_on(faucet(devnet, to, tokens)),
        Cmd::BenchData {
            cars,
            records,
            listings,
            block_interval_ms,
            data_dir,
        } => {
            let tmp = tempfile::tempdir()?;
            let dir = data_dir.unwrap_or_else(|| tmp.path().to_path_buf());
            let cfg = agent::bench_data::DataBenchConfig {
                cars,
                records,
                listings,
                block_interval_ms,
            };
            let r = rt.block_on(agent::bench_data::run(&dir, &cfg));
            rt.shutdown_timeout(Duration::from_secs(1));
            r
        }
        Cmd::Bench {
            validators,
            secs,
            warmup_secs,
            senders,
            block_txs,
            block_interval_ms,
            submitters,
            data_dir,
            workload,
            mempool_txs,
            state_versions_kept,
        } => {
            let tmp = tempfile::tempdir()?;
            let dir = data_dir.unwrap_or_else(|| tmp.path().to_path_buf());
            let cfg = agent::bench::BenchConfig {
                validators,
                duration: Duration::from_secs(secs),
                warmup: Duration::from_secs(warmup_secs),
                senders,
                block_txs,
                block_interval: Duration::from_millis(block_interval_ms),
                submitters,
                workload,
                mempool_txs,
                state_versions_kept,
            };
            let r = rt.block_on(agent::bench::run(&dir, &cfg));
            rt.shutdown_timeout(Duration::from_secs(1));
            r
        }
    }
}

async fn run(
    path: PathBuf,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
) -> Result<()> {
    let mut loaded = config::load(&path, data_dir)?;
    if let Some(l) = listen {
        loaded.node.listen = l;
    }
    let admin_addr = admin_addr.unwrap_or(loaded.file.admin);
    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding the admin endpoint {admin_addr}"))?;
    let data_dir = loaded.node.data_dir.clone();
    let chain_id = loaded.genesis_file.chain_id.clone();
    let network = agent::gateway_network(&loaded.genesis_file)?;
    let account =
        chain::tx::AccountAddress::from_public_key(&loaded.key.public_key(secp256k1::SECP256K1));
    let (handle, task) = chain::node::start(
        loaded.node,
        loaded.key,
        loaded.genesis,
        Arc::new(chain::ledger::Ledger::new()),
    )?;
    tracing::info!(validator = %handle.address, listen = %handle.listen, admin = %admin_addr, "node running");
    tokio::spawn(admin::serve(handle.clone(), listener));
    // The agent's gateways and storage node, when configured; kept alive until the end.
    let mut _servers = None;
    if let (Some(agent_cfg), Some(tls_dir)) = (loaded.file.agent.clone(), loaded.tls_dir.clone()) {
        std::fs::create_dir_all(&tls_dir)
            .with_context(|| format!("creating {}", tls_dir.display()))?;
        let identity = kvs::net::tls::Identity::load_or_create(&tls_dir)
            .context("loading the agent's TLS identity")?;
        let store = Arc::new(storage::Storage::start(
            &agent_cfg.storage,
            &data_dir,
            &identity,
        )?);
        let gateway = Arc::new(gw::Gateway {
            node: handle.clone(),
            storage: store,
            account,
            network,
            chain_id,
            metrics: gw::Metrics::default(),
        });
        let server = gw::Server::start(gateway.clone(), &identity, agent_cfg.gateway)?;
        let http_addr = match agent_cfg.http {
            Some(a) => Some(http::start(gateway.clone(), a).await?),
            None => None,
        };
        tracing::info!(
            gateway = %server.local_addr()?,
            http = ?http_addr,
            storage = %gateway.storage.local_addr()?,
            account = %account.to_bech32(network),
            "agent serving"
        );
        _servers = Some((server, gateway));
    }
    tokio::select! {
        r = task => {
            r.context("node task panicked")??;
        }
        r = shutdown_signal() => {
            r?;
            tracing::info!("stopping");
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn faucet(dir: PathBuf, to: String, tokens: u64) -> Result<()> {
    let (hash, height) = devnet::fund(&dir, &to, tokens).await?;
    println!(
        "sent {tokens} tokens to {to} in transaction {} (block {})",
        hex::encode(hash),
        height.map_or_else(|| "pending".to_string(), |h| h.to_string())
    );
    Ok(())
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn run_devnet(
    n: usize,
    dir: PathBuf,
    block_interval_ms: u64,
    init_only: bool,
    json: bool,
) -> Result<()> {
    let nodes = devnet::init(&dir, n, block_interval_ms)?;
    let exe = std::env::current_exe().context("locating the agent binary")?;
    let mut children = Children(Vec::new());
    for node in &nodes {
        let pid = if init_only {
            None
        } else {
            let log_path = node.config.parent().unwrap_or(&dir).join("node.log");
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let child = Command::new(&exe)
                .arg("run")
                .arg("--config")
                .arg(&node.config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a validator")?;
            let pid = child.id();
            children.0.push(child);
            Some(pid)
        };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "node": node.index,
                    "pid": pid,
                    "listen": node.listen,
                    "admin": node.admin,
                    "address": node.address,
                    "config": node.config,
                    "network": devnet::network_file(&dir),
                })
            );
        } else {
            println!(
                "node-{} validator {} quic {} admin {}{}",
                node.index,
                node.address,
                node.listen,
                node.admin,
                pid.map(|p| format!(" pid {p}")).unwrap_or_default()
            );
        }
    }
    if init_only {
        return Ok(());
    }
    shutdown_signal().await?;
    drop(children);
    Ok(())
}

async fn status(addr: SocketAddr, json: bool) -> Result<()> {
    let mut client = tokio::time::timeout(Duration::from_secs(5), admin::Client::connect(addr))
        .await
        .context("timed out connecting")??;
    let s = client.status().await?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "chain {} validator {}\nheight {} block {}\nconsensus at height {} round {}\npeers {} mempool {}",
            s.chain_id, s.address, s.height, s.block_hash, s.consensus_height, s.round, s.peers, s.mempool
        );
    }
    Ok(())
}
