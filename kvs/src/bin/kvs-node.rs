//! `kvs-node`: one KVS storage node process serving shards over QUIC with self-signed TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kvs::net::frame::DEFAULT_MAX_FRAME;
use kvs::net::tls::Identity;
use kvs::net::transport::Server;
use kvs::store::{RocksStore, Store, SyncMode};
use kvs::{LocalNode, StorageMode};

/// Runs a KVS storage node: shards, stripe manifests and audits in a RocksDB under
/// `--data-dir`, served over QUIC (TLS 1.3 with a self-signed certificate kept in the data
/// directory; clients pin its SHA-256 from the membership file). On start it prints one JSON
/// line (`--json`: `{"id","addr","cert_sha256"}`) to stdout, then serves until SIGINT/SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "kvs-node", version)]
struct Args {
    /// Node id as listed in the membership file.
    #[arg(long)]
    id: String,
    /// UDP address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the RocksDB store and the TLS identity.
    #[arg(long)]
    data_dir: PathBuf,
    /// Private mode: store only these addresses (repeatable). Without it: shared mode.
    #[arg(long = "private-address")]
    private_addresses: Vec<String>,
    /// Acknowledge writes after the WAL write without fsync (survives kill -9, not power loss).
    #[arg(long)]
    no_fsync: bool,
    /// Largest accepted frame in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Print the startup line as JSON (for scripts and tests) instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let sync = if args.no_fsync {
        SyncMode::WalOnly
    } else {
        SyncMode::Fsync
    };
    let store: Arc<dyn Store> = Arc::new(
        RocksStore::open_with(args.data_dir.join("db"), sync).context("opening the store")?,
    );
    let mode = if args.private_addresses.is_empty() {
        StorageMode::Shared
    } else {
        StorageMode::Private {
            addresses: args.private_addresses.iter().cloned().collect(),
        }
    };
    let identity = Identity::load_or_create(&args.data_dir).context("loading the TLS identity")?;
    let node = Arc::new(LocalNode::new(args.id.clone(), store, mode));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(node, &identity, args.listen, args.max_frame).context("starting the server")?;
        let addr = server.local_addr()?.to_string();
        if args.json {
            let line = serde_json::json!({ "id": args.id, "addr": addr, "cert_sha256": identity.fingerprint_hex() });
            println!("{line}");
        } else {
            println!("kvs-node {} listening on {} (certificate sha256 {})", args.id, addr, identity.fingerprint_hex());
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        server.stop();
        anyhow::Ok(())
    })
}
