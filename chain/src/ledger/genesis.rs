//! The genesis file: the chain's first state and parameters, as JSON.
//!
//! ```json
//! {
//!   "chain_id": "carchain-devnet",
//!   "network": "regtest",
//!   "genesis_time_ms": 1767225600000,
//!   "validators": [ { "public_key": "02…33-byte hex…", "stake": "100000" } ],
//!   "balances": [ { "address": "bcrt1q…", "amount": "5000.5" } ],
//!   "tokenomics": { …tokenomics::GenesisParams… },
//!   "epoch_length": 100,
//!   "unbonding_epochs": 2,
//!   "max_tx_bytes": 65536,
//!   "max_block_bytes": 4194304,
//!   "max_block_txs": 10000,
//!   "min_stake": "1000",
//!   "min_tx_fee": 1000,
//!   "slash_bps": 500,
//!   "nonce_window": 16,
//!   "device_setup_fee": "1"
//! }
//! ```
//!
//! Amounts are either base units (a JSON number) or whole tokens as a decimal string. Balances
//! name bech32 P2WPKH addresses of `network`; validators name compressed secp256k1 public keys
//! in hex (a validator's account is the P2WPKH address of the same key). Genesis balances and
//! stakes are issued as the first phase-3 sale, so they must fit the circulation pool.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeSet;

use primitives::hash::{hash, Domain};
use secp256k1::{PublicKey, SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use tokenomics::{Amount, GenesisParams};

use super::{LedgerError, LedgerParams};
use crate::block::MAX_CHAIN_ID_LEN;
use crate::tx::AccountAddress;

/// Why a genesis file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The text is not a genesis file.
    #[error("genesis file does not parse: {0}")]
    Parse(String),
    /// A field is out of range or inconsistent.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

impl From<LedgerError> for GenesisError {
    fn from(e: LedgerError) -> Self {
        GenesisError::Invalid(e.to_string())
    }
}

/// A genesis validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// Compressed secp256k1 public key, hex.
    pub public_key: String,
    /// Bonded stake (its voting power in base units).
    pub stake: Amount,
}

impl GenesisValidator {
    /// The parsed key.
    ///
    /// # Errors
    /// [`GenesisError::Invalid`] if not a compressed secp256k1 key in hex.
    pub fn key(&self) -> Result<PublicKey, GenesisError> {
        let bytes = hex::decode(&self.public_key).map_err(|e| {
            GenesisError::Invalid(format!("validator key {:?}: {e}", self.public_key))
        })?;
        if bytes.len() != 33 {
            return Err(GenesisError::Invalid(format!(
                "validator key {:?} is not a 33-byte compressed key",
                self.public_key
            )));
        }
        PublicKey::from_slice(&bytes)
            .map_err(|e| GenesisError::Invalid(format!("validator key {:?}: {e}", self.public_key)))
    }
}

/// A genesis balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    /// bech32 P2WPKH address on the genesis network.
    pub address: String,
    /// Tokens.
    pub amount: Amount,
}

/// The genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id (1 to 64 bytes).
    pub chain_id: String,
    /// Address network: `bitcoin`, `testnet`, `signet` or `regtest`.
    pub network: String,
    /// Time of the genesis state, milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The first validator set.
    pub validators: Vec<GenesisValidator>,
    /// Initial balances.
    pub balances: Vec<GenesisBalance>,
    /// The token rules.
    pub tokenomics: GenesisParams,
    /// Blocks per epoch.
    pub epoch_length: u64,
    /// Epochs before unbonded stake is paid back.
    pub unbonding_epochs: u64,
    /// Largest encoded transaction.
    pub max_tx_bytes: u32,
    /// Largest sum of a block's transactions.
    pub max_block_bytes: u64,
    /// Most transactions per block.
    pub max_block_txs: u32,
    /// Least stake for a seat in the validator set.
    pub min_stake: Amount,
    /// Base fee of every transaction.
    pub min_tx_fee: Amount,
    /// Share of stake burned for double signing (basis points, at most 10 000).
    pub slash_bps: u16,
    /// How far ahead of an account's nonce the mempool admits.
    pub nonce_window: u64,
    /// Surcharge on every device setup, on top of `min_tx_fee` (a setup is granted fee
    /// credits from the automatic pool, so it must not be nearly free). Default zero.
    #[serde(default)]
    pub device_setup_fee: Amount,
}

/// Parses a network name.
///
/// # Errors
/// [`GenesisError::Invalid`] for an unknown name.
pub fn parse_network(name: &str) -> Result<bitcoin::Network, GenesisError> {
    match name {
        "bitcoin" | "mainnet" => Ok(bitcoin::Network::Bitcoin),
        "testnet" => Ok(bitcoin::Network::Testnet),
        "signet" => Ok(bitcoin::Network::Signet),
        "regtest" => Ok(bitcoin::Network::Regtest),
        other => Err(GenesisError::Invalid(format!(
            "network {other:?} is not one of bitcoin, testnet, signet, regtest"
        ))),
    }
}

impl Genesis {
    /// Parses and validates a JSON genesis file.
    ///
    /// # Errors
    /// [`GenesisError::Parse`] or [`GenesisError::Invalid`].
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// The file's JSON text.
    ///
    /// # Errors
    /// [`GenesisError::Parse`] if serialization fails.
    pub fn to_json(&self) -> Result<String, GenesisError> {
        serde_json::to_string_pretty(self).map_err(|e| GenesisError::Parse(e.to_string()))
    }

    /// The address network.
    ///
    /// # Errors
    /// [`GenesisError::Invalid`] for an unknown name.
    pub fn bitcoin_network(&self) -> Result<bitcoin::Network, GenesisError> {
        parse_network(&self.network)
    }

    /// Checks every field, with a message naming what is wrong.
    ///
    /// # Errors
    /// [`GenesisError::Invalid`].
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return bad(format!("chain_id must be 1 to {MAX_CHAIN_ID_LEN} bytes"));
        }
        let network = self.bitcoin_network()?;
        self.tokenomics
            .validate()
            .map_err(|e| GenesisError::Invalid(format!("tokenomics: {e}")))?;
        if self.epoch_length == 0 {
            return bad("epoch_length must be at least 1".into());
        }
        if self.max_tx_bytes < 256 {
            return bad("max_tx_bytes must be at least 256".into());
        }
        if self.max_block_bytes < u64::from(self.max_tx_bytes) {
            return bad("max_block_bytes must hold at least one maximal transaction".into());
        }
        if self.max_block_txs == 0 {
            return bad("max_block_txs must be at least 1".into());
        }
        if self.slash_bps > 10_000 {
            return bad("slash_bps must be at most 10000".into());
        }
        if self.validators.is_empty() {
            return bad("at least one validator is needed".into());
        }
        let mut keys = BTreeSet::new();
        let mut power: u64 = 0;
        for v in &self.validators {
            let k = v.key()?;
            if !keys.insert(k.serialize()) {
                return bad(format!("validator {} is listed twice", v.public_key));
            }
            if v.stake < self.min_stake || v.stake.is_zero() {
                return bad(format!(
                    "validator {} stakes {} below min_stake {}",
                    v.public_key, v.stake, self.min_stake
                ));
            }
            power = power
                .checked_add(v.stake.to_base_units())
                .ok_or_else(|| GenesisError::Invalid("total stake overflows".into()))?;
        }
        let mut addrs = BTreeSet::new();
        for b in &self.balances {
            let a = AccountAddress::from_bech32(&b.address, network)
                .map_err(|e| GenesisError::Invalid(format!("balance: {e}")))?;
            if !addrs.insert(a) {
                return bad(format!("address {} is listed twice", b.address));
            }
        }
        Ok(())
    }

    /// The parameters the ledger stores.
    pub fn ledger_params(&self) -> LedgerParams {
        LedgerParams {
            chain_id: self.chain_id.clone(),
            network: self.network.clone(),
            epoch_length: self.epoch_length,
            unbonding_epochs: self.unbonding_epochs,
            max_tx_bytes: self.max_tx_bytes,
            max_block_bytes: self.max_block_bytes,
            max_block_txs: self.max_block_txs,
            min_stake: self.min_stake,
            min_tx_fee: self.min_tx_fee,
            slash_bps: self.slash_bps,
            nonce_window: self.nonce_window,
            device_setup_fee: self.device_setup_fee,
        }
    }

    /// The secret key of example validator `index` for `seed` (devnets and tests only: anyone
    /// who knows the seed knows the key).
    pub fn example_key(seed: u64, index: u32) -> SecretKey {
        let mut counter: u32 = 0;
        loop {
            let mut msg = seed.to_be_bytes().to_vec();
            msg.extend_from_slice(&index.to_be_bytes());
            msg.extend_from_slice(&counter.to_be_bytes());
            let digest = hash(Domain::Custom("example-validator-key"), &msg);
            if let Ok(k) = SecretKey::from_slice(&digest) {
                return k;
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// A devnet genesis: `n_validators` validators with keys [`Genesis::example_key`]`(seed, i)`,
    /// each staking 100 000 tokens and holding 1 000 000 tokens on its account; regtest
    /// addresses; the `tokenomics` example rules; epochs of 20 blocks.
    pub fn example(n_validators: u32, seed: u64) -> Genesis {
        let stake = Amount::from_tokens(100_000).unwrap_or(Amount::ZERO);
        let balance = Amount::from_tokens(1_000_000).unwrap_or(Amount::ZERO);
        let mut validators = Vec::new();
        let mut balances = Vec::new();
        for i in 0..n_validators.max(1) {
            let pk = Self::example_key(seed, i).public_key(SECP256K1);
            validators.push(GenesisValidator {
                public_key: hex::encode(pk.serialize()),
                stake,
            });
            balances.push(GenesisBalance {
                address: AccountAddress::from_public_key(&pk).to_bech32(bitcoin::Network::Regtest),
                amount: balance,
            });
        }
        Genesis {
            chain_id: format!("carchain-devnet-{seed}"),
            network: "regtest".into(),
            genesis_time_ms: 1_767_225_600_000,
            validators,
            balances,
            tokenomics: GenesisParams::example(),
            epoch_length: 20,
            unbonding_epochs: 2,
            max_tx_bytes: crate::tx::DEFAULT_MAX_TX_BYTES,
            max_block_bytes: 4 << 20,
            max_block_txs: 10_000,
            min_stake: Amount::from_tokens(1_000).unwrap_or(Amount::ZERO),
            min_tx_fee: Amount::from_base_units(1_000).unwrap_or(Amount::ZERO),
            slash_bps: 500,
            nonce_window: 16,
            device_setup_fee: Amount::ONE_TOKEN,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips_through_json_and_validates() {
        let g = Genesis::example(4, 7);
        let text = g.to_json().unwrap();
        assert_eq!(Genesis::from_json(&text).unwrap(), g);
        assert_ne!(Genesis::example(4, 8), g);
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut g = Genesis::example(2, 1);
        g.validators[1] = g.validators[0].clone();
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(m)) if m.contains("twice")));
        let mut g = Genesis::example(2, 1);
        g.network = "bitcoin".into();
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(m)) if m.contains("balance")));
        let mut g = Genesis::example(2, 1);
        g.epoch_length = 0;
        assert!(g.validate().is_err());
        let mut g = Genesis::example(2, 1);
        g.validators[0].stake = Amount::ONE_TOKEN;
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(m)) if m.contains("min_stake")));
        let mut g = Genesis::example(2, 1);
        g.validators[0].public_key = "02abcd".into();
        assert!(g.validate().is_err());
        assert!(matches!(
            Genesis::from_json("{\"chain_id\": 5}"),
            Err(GenesisError::Parse(_))
        ));
    }
}
