//! A local devnet: a genesis, and per validator a key and a node configuration on loopback
//! ports, under one directory (`DIR/genesis.json`, `DIR/node-N/{config.toml,validator.key}`).
//! With two or more validators every node is also an agent: a gateway (QUIC and loopback
//! HTTP) and a storage node, its TLS identity in `DIR/node-N/tls/`. The network file wallets
//! and devices use is `DIR/network.json`; `DIR/faucet.key` holds a funded account for handing
//! out test tokens (`agent faucet`).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use secp256k1::{SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};

use chain::ledger::genesis::GenesisBalance;
use chain::ledger::Genesis;
use chain::tx::AccountAddress;
use gateway::network::{AgentEntry, NetworkFile};
use kvs::net::tls::Identity;
use tokenomics::Amount;

use crate::config::{self, AgentFile, NodeFile, TimeoutsFile};
use crate::storage::{StorageFile, StoragePeer};

/// Tokens the devnet faucet account starts with.
pub const FAUCET_TOKENS: u64 = 10_000_000;

/// The network file of the devnet in `dir`.
pub fn network_file(dir: &Path) -> PathBuf {
    dir.join("network.json")
}

/// The faucet key file of the devnet in `dir`.
pub fn faucet_key(dir: &Path) -> PathBuf {
    dir.join("faucet.key")
}

/// Reed–Solomon parameters for a cluster of `n` storage nodes: RS(4,2) from six nodes on,
/// RS(2,2) for four or five (one node down still leaves a write quorum of three), fewer data
/// shards below that.
pub fn coding_for(n: usize) -> (u8, u8) {
    match n {
        0..=2 => (1, 1),
        3 => (1, 2),
        4 | 5 => (2, 2),
        _ => (4, 2),
    }
}

/// One validator of a devnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetNode {
    /// Index.
    pub index: usize,
    /// Its configuration file.
    pub config: PathBuf,
    /// QUIC address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Validator address (hex).
    pub address: String,
}

fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The configuration file of node `i` under `dir`.
pub fn node_config(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node-{i}")).join("config.toml")
}

/// Writes a devnet of `n` validators into `dir`, or reads the one already there.
///
/// # Errors
/// `n` is zero, or files cannot be written or read.
pub fn init(dir: &Path, n: usize, block_interval_ms: u64) -> Result<Vec<DevnetNode>> {
    if n == 0 {
        bail!("a devnet needs at least one validator");
    }
    let genesis_path = dir.join("genesis.json");
    if genesis_path.exists() {
        return read(dir);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Example keys from a fresh random seed (anyone holding the seed could rebuild them: fine for
    // a local devnet, never for a real network).
    let seed: u64 = rand::random();
    let count = u32::try_from(n).context("too many validators")?;
    let keys: Vec<SecretKey> = (0..count).map(|i| Genesis::example_key(seed, i)).collect();
    let ports: Vec<(SocketAddr, SocketAddr)> = (0..n)
        .map(|_| Ok((free_udp()?, free_tcp()?)))
        .collect::<Result<_>>()?;
    let mut genesis = Genesis::example(count, seed);
    genesis.genesis_time_ms = chain::node::app::now_ms();
    let faucet = SecretKey::new(&mut rand::thread_rng());
    let network = gateway::network::bitcoin_network(&genesis.network)
        .context("the example genesis names an unknown network")?;
    genesis.balances.push(GenesisBalance {
        address: AccountAddress::from_public_key(&faucet.public_key(SECP256K1)).to_bech32(network),
        amount: Amount::from_tokens(FAUCET_TOKENS).context("faucet amount")?,
    });
    config::write_key(&faucet_key(dir), &faucet)?;
    std::fs::write(&genesis_path, genesis.to_json()?)
        .with_context(|| format!("writing {}", genesis_path.display()))?;
    let agents = if n >= 2 {
        Some(plan_agents(dir, &keys, network)?)
    } else {
        None
    };
    if let Some((_, entries)) = &agents {
        NetworkFile {
            genesis: genesis.clone(),
            agents: entries.clone(),
        }
        .save(&network_file(dir))?;
    }
    for (i, (key, (listen, admin))) in keys.iter().zip(&ports).enumerate() {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)?;
        config::write_key(&node_dir.join("validator.key"), key)?;
        let file = NodeFile {
            data_dir: PathBuf::from("data"),
            key_file: PathBuf::from("validator.key"),
            genesis_file: PathBuf::from("../genesis.json"),
            listen: *listen,
            admin: *admin,
            peers: ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (l, _))| *l)
                .collect(),
            block_interval_ms,
            gossip_interval_ms: 300,
            timeouts: TimeoutsFile::default(),
            state_versions_kept: chain::node::store::DEFAULT_STATE_VERSIONS_KEPT,
            agent: agents.as_ref().and_then(|(files, _)| files.get(i).cloned()),
        };
        config::write_toml(&node_dir.join("config.toml"), &file)?;
    }
    read(dir)
}

/// Ports, TLS identities and storage membership of every agent: their configuration parts
/// and the network file's entries.
fn plan_agents(
    dir: &Path,
    keys: &[SecretKey],
    network: bitcoin::Network,
) -> Result<(Vec<AgentFile>, Vec<AgentEntry>)> {
    let (k, m) = coding_for(keys.len());
    let mut peers = Vec::new();
    let mut parts = Vec::new();
    for i in 0..keys.len() {
        let tls = dir.join(format!("node-{i}")).join("tls");
        std::fs::create_dir_all(&tls).with_context(|| format!("creating {}", tls.display()))?;
        let id = Identity::load_or_create(&tls).context("creating a TLS identity")?;
        let storage = free_udp()?;
        peers.push(StoragePeer {
            id: format!("agent-{i}"),
            addr: storage,
            cert_sha256: id.fingerprint_hex(),
        });
        parts.push((free_udp()?, free_tcp()?, storage, id.fingerprint_hex()));
    }
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (i, ((gateway, http, storage, cert), key)) in parts.into_iter().zip(keys).enumerate() {
        files.push(AgentFile {
            gateway,
            http: Some(http),
            tls_dir: PathBuf::from("tls"),
            storage: StorageFile {
                id: format!("agent-{i}"),
                listen: storage,
                k,
                m,
                nodes: peers.clone(),
                no_fsync: false,
            },
        });
        entries.push(AgentEntry {
            name: format!("agent-{i}"),
            account: AccountAddress::from_public_key(&key.public_key(SECP256K1)).to_bech32(network),
            gateway,
            cert_sha256: cert,
            http: Some(http),
        });
    }
    Ok((files, entries))
}

/// Reads the devnet in `dir`.
///
/// # Errors
/// Missing or malformed files.
pub fn read(dir: &Path) -> Result<Vec<DevnetNode>> {
    let mut out = Vec::new();
    for i in 0.. {
        let path = node_config(dir, i);
        if !path.exists() {
            break;
        }
        let file: NodeFile = config::read_toml(&path)?;
        let key = config::read_key(&dir.join(format!("node-{i}")).join(&file.key_file))?;
        out.push(DevnetNode {
            index: i,
            config: path,
            listen: file.listen,
            admin: file.admin,
            address: chain::consensus::secp::ValidatorAddress::from_public_key(
                &key.public_key(SECP256K1),
            )
            .to_string(),
        });
    }
    if out.is_empty() {
        bail!("no devnet in {}", dir.display());
    }
    Ok(out)
}

/// Sends `tokens` from the devnet's faucet account (in `dir`) to `to` (bech32) through its
/// gateways and waits for the block; returns the transaction hash and height.
///
/// # Errors
/// Missing devnet files, a bad address, or the chain refusing the transfer.
pub async fn fund(dir: &Path, to: &str, tokens: u64) -> Result<([u8; 32], Option<u64>)> {
    let file = NetworkFile::load(&network_file(dir))?;
    let key = config::read_key(&faucet_key(dir))?;
    let network = file.bitcoin_network()?;
    let to_addr = AccountAddress::from_bech32(to, network)
        .with_context(|| format!("{to:?} is not an address of this network"))?;
    let amount = Amount::from_tokens(tokens).context("too many tokens")?;
    let client = gateway::GatewayClient::for_network(&file, 0, std::time::Duration::from_secs(10))?;
    let from = AccountAddress::from_public_key(&key.public_key(SECP256K1));
    let nonce = client.next_nonce(from).await?;
    let tx = gateway::TxBuilder::new(&file.genesis)?.transfer(&key, nonce, to_addr, amount)?;
    Ok(client
        .submit(tx, std::time::Duration::from_secs(30))
        .await?)
}
