//! The `agent` command: run a validator, start a local devnet, query a node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent::{admin, config, devnet};
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
        Cmd::Bench {
            validators,
            secs,
            warmup_secs,
            senders,
            block_txs,
            block_interval_ms,
            submitters,
            data_dir,
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
    let (handle, task) = chain::node::start(
        loaded.node,
        loaded.key,
        loaded.genesis,
        Arc::new(chain::ledger::Ledger::new()),
    )?;
    tracing::info!(validator = %handle.address, listen = %handle.listen, admin = %admin_addr, "node running");
    tokio::spawn(admin::serve(handle.clone(), listener));
    tokio::select! {
        r = task => {
            r.context("node task panicked")??;
        }
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
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
    tokio::signal::ctrl_c().await?;
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
