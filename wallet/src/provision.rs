//! The provisioning file: everything the owner's wallet hands a device at `setup` (and again at
//! `reset`) so it can report data on its own — its VID, its secp256k1 device key (the key the
//! registry binds to the VID; only it may attest the device's puts), the owner's account and RSA
//! public key (records are sealed for it), the address pool and the user seed (to pick the day's
//! address), and the agent it reports through.
//!
//! The file holds two secrets (the device key and the user seed): it is written with mode 0600,
//! atomically, and is meant to be moved onto the device and deleted from the owner's machine.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, WalletError};
use crate::fsio;

/// Current provisioning file version.
pub const PROVISION_VERSION: u32 = 1;

/// What a device needs to report data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProvision {
    /// Format version ([`PROVISION_VERSION`]).
    pub version: u32,
    /// The device identifier.
    pub vid: String,
    /// The wallet network of the addresses (`bitcoin`, `testnet`, `signet`, `regtest`).
    pub network: String,
    /// The chain the device was set up on.
    pub chain_id: String,
    /// The device's secp256k1 secret key, hex (32 bytes).
    pub device_secret: String,
    /// How many resets this key generation follows (0 after setup).
    pub generation: u32,
    /// The owner's account (bech32).
    pub owner: String,
    /// The owner's RSA public key (SPKI PEM): every record is sealed for it.
    pub owner_rsa_pem: String,
    /// The address pool, in pool order (bech32).
    pub pool: Vec<String>,
    /// The user seed shared by owner and device, hex (32 bytes).
    pub user_seed: String,
    /// The agent's account (bech32): the device reports through this agent first.
    pub agent: String,
}

impl DeviceProvision {
    /// Reads and checks a provisioning file.
    ///
    /// # Errors
    /// [`WalletError::Io`] if unreadable; [`WalletError::Malformed`] if it is not a valid
    /// provisioning file of this version.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = fsio::read(path)?;
        let malformed = |detail: String| WalletError::Malformed {
            what: "provisioning file",
            detail: format!("{}: {detail}", path.display()),
        };
        let p: DeviceProvision =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if p.version != PROVISION_VERSION {
            return Err(malformed(format!(
                "version {} (this build reads {PROVISION_VERSION})",
                p.version
            )));
        }
        if p.pool.is_empty() {
            return Err(malformed("the address pool is empty".into()));
        }
        let secret = hex::decode(&p.device_secret).map_err(|e| malformed(e.to_string()))?;
        if secret.len() != 32 {
            return Err(malformed("device_secret is not 32 bytes".into()));
        }
        let seed = hex::decode(&p.user_seed).map_err(|e| malformed(e.to_string()))?;
        if seed.len() != 32 {
            return Err(malformed("user_seed is not 32 bytes".into()));
        }
        Ok(p)
    }

    /// Writes the file atomically with mode 0600.
    ///
    /// # Errors
    /// [`WalletError::Io`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| WalletError::Malformed {
            what: "provisioning file",
            detail: e.to_string(),
        })?;
        fsio::write_atomic(path, text.as_bytes())
    }
}
