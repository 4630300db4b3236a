//! The node configuration file, the genesis file and the validator key file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use chain::consensus::TimeoutConfig;
use chain::ledger::{Genesis, Ledger};
use chain::node::{GenesisState, NodeConfig};
use secp256k1::SecretKey;
use serde::{Deserialize, Serialize};

/// Consensus timeouts in milliseconds (round 0 and the per-round increase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Propose timeout.
    pub propose_ms: u64,
    /// Propose increase per round.
    pub propose_delta_ms: u64,
    /// Prevote timeout.
    pub prevote_ms: u64,
    /// Prevote increase per round.
    pub prevote_delta_ms: u64,
    /// Precommit timeout.
    pub precommit_ms: u64,
    /// Precommit increase per round.
    pub precommit_delta_ms: u64,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        TimeoutsFile {
            propose_ms: 1000,
            propose_delta_ms: 500,
            prevote_ms: 500,
            prevote_delta_ms: 250,
            precommit_ms: 500,
            precommit_delta_ms: 250,
        }
    }
}

impl From<TimeoutsFile> for TimeoutConfig {
    fn from(t: TimeoutsFile) -> Self {
        TimeoutConfig {
            propose: Duration::from_millis(t.propose_ms),
            propose_delta: Duration::from_millis(t.propose_delta_ms),
            prevote: Duration::from_millis(t.prevote_ms),
            prevote_delta: Duration::from_millis(t.prevote_delta_ms),
            precommit: Duration::from_millis(t.precommit_ms),
            precommit_delta: Duration::from_millis(t.precommit_delta_ms),
        }
    }
}

/// `agent run`'s configuration file. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// The validator key file (hex secret key).
    pub key_file: PathBuf,
    /// The genesis file (JSON).
    pub genesis_file: PathBuf,
    /// UDP address for QUIC peers.
    pub listen: SocketAddr,
    /// TCP address of the admin endpoint (keep it on loopback).
    pub admin: SocketAddr,
    /// Peer addresses to dial.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// Pause between a decision and the next height.
    #[serde(default = "default_block_interval")]
    pub block_interval_ms: u64,
    /// Status and consensus re-gossip period.
    #[serde(default = "default_gossip")]
    pub gossip_interval_ms: u64,
    /// Consensus timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// State versions kept behind the head: older versions of the state Merkle tree are pruned
    /// from disk (proofs are served for the latest state). `0` keeps every version (an archive
    /// node). Default 0: pruning costs block rate (docs/BENCHMARKS.md); 100 is a sensible
    /// horizon for a node that wants bounded disk.
    #[serde(default = "default_state_versions_kept")]
    pub state_versions_kept: u64,
    /// The agent's gateways and storage node (absent: a plain validator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentFile>,
}

/// The agent part of a node: the gateways devices and wallets use, and the storage node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// UDP address of the QUIC gateway.
    pub gateway: SocketAddr,
    /// TCP address of the HTTP API (keep it on loopback); none: not served.
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// Directory of the TLS identity (`cert.der`, `key.der`) of the gateway and storage node.
    pub tls_dir: PathBuf,
    /// The storage cluster.
    pub storage: crate::storage::StorageFile,
}

fn default_block_interval() -> u64 {
    200
}

fn default_gossip() -> u64 {
    300
}

fn default_state_versions_kept() -> u64 {
    chain::node::store::DEFAULT_STATE_VERSIONS_KEPT
}

/// Reads a genesis file (JSON, the ledger's [`Genesis`]).
///
/// # Errors
/// Unreadable or invalid file.
pub fn read_genesis(path: &Path) -> Result<Genesis> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Genesis::from_json(&text).with_context(|| format!("parsing {}", path.display()))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a TOML file.
///
/// # Errors
/// Unreadable or malformed file.
pub fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes a TOML file.
///
/// # Errors
/// Unwritable file.
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Reads a hex secret key.
///
/// # Errors
/// Unreadable file or not a secp256k1 secret key.
pub fn read_key(path: &Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim()).context("key file is not hex")?;
    SecretKey::from_slice(&bytes).context("key file is not a secp256k1 secret key")
}

/// Writes a hex secret key readable only by its owner.
///
/// # Errors
/// Unwritable file.
pub fn write_key(path: &Path, key: &SecretKey) -> Result<()> {
    std::fs::write(path, hex::encode(key.secret_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A loaded node configuration: everything `agent run` needs.
#[derive(Debug)]
pub struct Loaded {
    /// The file as read (with overrides applied).
    pub file: NodeFile,
    /// The node configuration.
    pub node: NodeConfig,
    /// The validator key.
    pub key: SecretKey,
    /// The genesis.
    pub genesis: GenesisState,
    /// The genesis file as read.
    pub genesis_file: Genesis,
    /// The TLS identity directory, resolved (if the node is an agent).
    pub tls_dir: Option<PathBuf>,
}

/// Loads `path`, applying `data_dir` if given (it overrides the file).
///
/// # Errors
/// Unreadable or inconsistent files.
pub fn load(path: &Path, data_dir: Option<PathBuf>) -> Result<Loaded> {
    let mut file: NodeFile = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(d) = data_dir {
        file.data_dir = d;
    }
    let data_dir = resolve(base, &file.data_dir);
    let key = read_key(&resolve(base, &file.key_file))?;
    let genesis = read_genesis(&resolve(base, &file.genesis_file))?;
    let mut node = NodeConfig::new(genesis.chain_id.clone(), data_dir, file.listen);
    node.peers = file.peers.clone();
    node.block_interval = Duration::from_millis(file.block_interval_ms);
    node.gossip_interval = Duration::from_millis(file.gossip_interval_ms.max(10));
    node.timeouts = file.timeouts.into();
    node.state_versions_kept = file.state_versions_kept;
    let state = GenesisState::derive(&Ledger::new(), &genesis)?;
    let tls_dir = file.agent.as_ref().map(|a| resolve(base, &a.tls_dir));
    Ok(Loaded {
        genesis: state,
        genesis_file: genesis,
        file,
        node,
        key,
        tls_dir,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
data_dir = "data"
key_file = "validator.key"
genesis_file = "genesis.json"
listen = "127.0.0.1:9000"
admin = "127.0.0.1:9001"
"#;

    #[test]
    fn state_versions_kept_is_optional_with_the_chain_default() {
        let file: NodeFile = toml::from_str(MINIMAL).unwrap();
        assert_eq!(
            file.state_versions_kept,
            chain::node::store::DEFAULT_STATE_VERSIONS_KEPT
        );
        let pruning: NodeFile =
            toml::from_str(&format!("{MINIMAL}state_versions_kept = 100\n")).unwrap();
        assert_eq!(pruning.state_versions_kept, 100);
        let back: NodeFile = toml::from_str(&toml::to_string_pretty(&pruning).unwrap()).unwrap();
        assert_eq!(back, pruning);
    }
}
