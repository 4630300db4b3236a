//! The network file: what a wallet or device needs to reach a devnet or network and to check
//! what its agents say — the chain id, the genesis (whose validator set anchors every proof
//! check), and the agents' gateways with their pinned TLS certificates. `agent devnet` writes
//! one; `wallet` and `device` read it.

use std::net::SocketAddr;
use std::path::Path;

use chain::ledger::Genesis;
use serde::{Deserialize, Serialize};

/// One agent's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// A name for messages.
    pub name: String,
    /// The agent's account (bech32): read fees are paid to it.
    pub account: String,
    /// The gateway's QUIC address.
    pub gateway: SocketAddr,
    /// SHA-256 of the gateway's TLS certificate (hex), pinned by clients.
    pub cert_sha256: String,
    /// The loopback HTTP API, if served.
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

/// The network file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// The genesis (chain id, validators, parameters).
    pub genesis: Genesis,
    /// The agents, in preference order.
    pub agents: Vec<AgentEntry>,
}

/// Why a network file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The content is not a network file.
    #[error("{path} is not a valid network file: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl NetworkFile {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`NetworkFileError`].
    pub fn load(path: &Path) -> Result<Self, NetworkFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetworkFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let malformed = |reason: String| NetworkFileError::Malformed {
            path: path.display().to_string(),
            reason,
        };
        let file: NetworkFile =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        file.genesis
            .validate()
            .map_err(|e| malformed(e.to_string()))?;
        if file.agents.is_empty() {
            return Err(malformed("it lists no agents".into()));
        }
        Ok(file)
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    /// [`NetworkFileError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), NetworkFileError> {
        let io = |source| NetworkFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The bitcoin network of the chain's addresses.
    ///
    /// # Errors
    /// [`NetworkFileError::Malformed`] for an unknown network name.
    pub fn bitcoin_network(&self) -> Result<bitcoin::Network, NetworkFileError> {
        bitcoin_network(&self.genesis.network).ok_or_else(|| NetworkFileError::Malformed {
            path: String::new(),
            reason: format!("unknown network {:?}", self.genesis.network),
        })
    }
}

/// The `bitcoin::Network` named `name` (`bitcoin`, `testnet`, `signet`, `regtest`).
pub fn bitcoin_network(name: &str) -> Option<bitcoin::Network> {
    match name {
        "bitcoin" | "main" | "mainnet" => Some(bitcoin::Network::Bitcoin),
        "testnet" => Some(bitcoin::Network::Testnet),
        "signet" => Some(bitcoin::Network::Signet),
        "regtest" => Some(bitcoin::Network::Regtest),
        _ => None,
    }
}
