//! The agent's storage side: its own KVS storage node (RocksDB under the data directory, served
//! over QUIC) and a cluster client over every agent's storage node, through which the gateway
//! writes and reads records.
//!
//! The cluster client's node handles block on their own runtime, so cluster calls run on plain
//! threads ([`Storage::run`]), never on the async workers that serve requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use kvs::cluster::Cluster;
use kvs::net::tls::Identity;
use kvs::net::transport::{ClientEndpoint, RemoteNode, Server};
use kvs::store::{RocksStore, Store, SyncMode};
use kvs::{ClusterConfig, CodingParams, LocalNode, StorageMode};
use serde::{Deserialize, Serialize};

/// One storage node of the cluster, as the configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePeer {
    /// Node id (placement hashes it).
    pub id: String,
    /// QUIC address.
    pub addr: SocketAddr,
    /// SHA-256 of its TLS certificate (hex), pinned.
    pub cert_sha256: String,
}

/// The storage cluster's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// This agent's storage node id.
    pub id: String,
    /// Where this agent's storage node listens.
    pub listen: SocketAddr,
    /// Data shards per stripe.
    pub k: u8,
    /// Parity shards per stripe.
    pub m: u8,
    /// Every storage node of the cluster (this one included).
    pub nodes: Vec<StoragePeer>,
    /// Acknowledge writes after the WAL write without fsync (survives kill -9, not power loss).
    #[serde(default)]
    pub no_fsync: bool,
}

/// A running storage node and the cluster client.
pub struct Storage {
    server: Server,
    /// The cluster client.
    pub cluster: Arc<Cluster<RemoteNode>>,
    client_rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens the node's RocksDB under `data_dir/kvs`, serves it with `identity` on the current
    /// runtime, and connects a client to `cfg.nodes`.
    ///
    /// # Errors
    /// The store, the server or the client cannot start, or the coding does not fit the nodes.
    pub fn start(cfg: &StorageFile, data_dir: &Path, identity: &Identity) -> Result<Self> {
        let dir = data_dir.join("kvs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let sync = if cfg.no_fsync {
            SyncMode::WalOnly
        } else {
            SyncMode::Fsync
        };
        let store: Arc<dyn Store> = Arc::new(
            RocksStore::open_with(dir.join("db"), sync).context("opening the storage database")?,
        );
        let node = Arc::new(LocalNode::new(cfg.id.clone(), store, StorageMode::Shared));
        let server = Server::start(node, identity, cfg.listen, net::frame::DEFAULT_MAX_FRAME)
            .context("starting the storage node")?;
        let params = CodingParams::new(cfg.k, cfg.m).context("storage coding parameters")?;
        if cfg.nodes.len() < params.n() {
            anyhow::bail!(
                "RS({}, {}) needs {} storage nodes, the configuration lists {}",
                cfg.k,
                cfg.m,
                params.n(),
                cfg.nodes.len()
            );
        }
        let client_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kvs-client")
            .enable_all()
            .build()?;
        let ep = ClientEndpoint::new(client_rt.handle().clone())?;
        let remotes = cfg
            .nodes
            .iter()
            .map(|p| {
                Ok(Arc::new(ep.node(
                    &p.id,
                    p.addr,
                    Some(&p.cert_sha256),
                    Duration::from_secs(5),
                )?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut ccfg = ClusterConfig::new(params);
        ccfg.hedge_after = Some(Duration::from_millis(300));
        let cluster = Arc::new(Cluster::new(remotes, 1, ccfg)?);
        Ok(Storage {
            server,
            cluster,
            client_rt: Some(client_rt),
        })
    }

    /// The storage node's bound address.
    ///
    /// # Errors
    /// The endpoint has no local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.server.local_addr()?)
    }

    /// Runs `f` against the cluster on a plain thread and awaits its result.
    ///
    /// # Errors
    /// The thread could not be started or panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cluster<RemoteNode>) -> T + Send + 'static,
    ) -> Result<T> {
        let cluster = self.cluster.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("kvs-call".into())
            .spawn(move || {
                let _ = tx.send(f(&cluster));
            })
            .context("starting a storage thread")?;
        rx.await.context("the storage thread panicked")
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.server.stop();
        if let Some(rt) = self.client_rt.take() {
            rt.shutdown_background();
        }
    }
}
