//! A local devnet: a genesis, and per validator a key and a node configuration on loopback
//! ports, under one directory (`DIR/genesis.json`, `DIR/node-N/{config.toml,validator.key}`).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use secp256k1::{SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};

use chain::ledger::Genesis;

use crate::config::{self, NodeFile, TimeoutsFile};

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
    std::fs::write(&genesis_path, genesis.to_json()?)
        .with_context(|| format!("writing {}", genesis_path.display()))?;
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
        };
        config::write_toml(&node_dir.join("config.toml"), &file)?;
    }
    read(dir)
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
