//! The device list: which devices the wallet owns and the address pool each reports to.
//!
//! Stored as `devices.json` in the data directory (written atomically, mode 0600). It holds only
//! public data (VIDs, pool accounts, addresses); user seeds are re-derived from the keystore
//! when needed, and every address the wallet answers with is re-derived from the keys and
//! checked against the stored list, so an edited file cannot redirect records.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::str::FromStr;

use bitcoin::Address;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WalletError};
use crate::fsio;
use crate::keys::{address_at, HdKeys, WalletNetwork};
use crate::pool::{
    deduct_index, pool_account, receive_chain_xpub, user_seed, AddressPool, RecordDate, Vid,
    MAX_POOL_SIZE,
};

/// Current device-list format version.
pub const DEVICE_LIST_VERSION: u32 = 1;

/// How many collision-avoiding attempts are tried when assigning a pool account.
const MAX_ATTEMPTS: u32 = 64;

/// One device and its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// The device identifier.
    pub vid: Vid,
    /// Collision counter used to derive `account` (almost always 0).
    pub attempt: u32,
    /// Hardened BIP84 account of the pool.
    pub account: u32,
    /// The pool addresses, `m/84'/coin'/account'/0/i`.
    pub addresses: Vec<String>,
}

/// Where a record of a device on a given day lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordLocation {
    /// The device.
    pub vid: Vid,
    /// The day.
    pub date: RecordDate,
    /// Index in the pool.
    pub index: u32,
    /// The BIP32 path of the address.
    pub path: String,
    /// The address (the KVS partition key).
    pub address: String,
}

/// The wallet's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceList {
    version: u32,
    network: WalletNetwork,
    devices: Vec<DeviceEntry>,
}

impl DeviceList {
    /// An empty list for a network.
    pub fn new(network: WalletNetwork) -> Self {
        Self {
            version: DEVICE_LIST_VERSION,
            network,
            devices: Vec::new(),
        }
    }

    /// The network of every address in the list.
    pub fn network(&self) -> WalletNetwork {
        self.network
    }

    /// All devices, in the order they were added.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.devices
    }

    /// Adds a device with a pool of `pool_size` addresses (the brief's `setDup`).
    ///
    /// # Errors
    /// [`WalletError::DuplicateVid`], [`WalletError::InvalidPoolSize`] or
    /// [`WalletError::NetworkMismatch`].
    pub fn add(&mut self, keys: &HdKeys, vid: Vid, pool_size: u32) -> Result<&DeviceEntry> {
        self.check_network(keys)?;
        if pool_size == 0 || pool_size > MAX_POOL_SIZE {
            return Err(WalletError::InvalidPoolSize(pool_size));
        }
        if self.devices.iter().any(|d| d.vid == vid) {
            return Err(WalletError::DuplicateVid(vid.to_string()));
        }
        let mut chosen = None;
        for attempt in 0..MAX_ATTEMPTS {
            let account = pool_account(keys, &vid, attempt)?;
            if !self.devices.iter().any(|d| d.account == account) {
                chosen = Some((attempt, account));
                break;
            }
        }
        let (attempt, account) =
            chosen.ok_or_else(|| WalletError::AccountExhausted(vid.to_string()))?;
        let pool = AddressPool::derive(keys, &vid, account, pool_size)?;
        self.devices.push(DeviceEntry {
            vid,
            attempt,
            account,
            addresses: pool.addresses.iter().map(ToString::to_string).collect(),
        });
        self.devices
            .last()
            .ok_or_else(|| WalletError::MalformedPool("device list is empty after insert".into()))
    }

    /// The entry of a device.
    ///
    /// # Errors
    /// [`WalletError::UnknownVid`].
    pub fn get(&self, vid: &Vid) -> Result<&DeviceEntry> {
        self.devices
            .iter()
            .find(|d| &d.vid == vid)
            .ok_or_else(|| WalletError::UnknownVid(vid.to_string()))
    }

    /// Where the record of `vid` on `date` lives, recomputed from the keys and checked
    /// against the stored pool.
    pub fn locate(&self, keys: &HdKeys, vid: &Vid, date: RecordDate) -> Result<RecordLocation> {
        self.check_network(keys)?;
        let entry = self.get(vid)?;
        let expected_account = pool_account(keys, vid, entry.attempt)?;
        if expected_account != entry.account {
            return Err(WalletError::Malformed {
                what: "device list",
                detail: format!("pool account of {vid} does not match this wallet's keys"),
            });
        }
        let seed = user_seed(keys, vid)?;
        let index = deduct_index(entry.addresses.len(), date, vid, &seed)?;
        let index32 = u32::try_from(index)
            .map_err(|_| WalletError::MalformedPool("index overflow".into()))?;
        let chain = receive_chain_xpub(keys, entry.account)?;
        let address = address_at(&chain, index32, self.network)?.to_string();
        if entry.addresses.get(index) != Some(&address) {
            return Err(WalletError::Malformed {
                what: "device list",
                detail: format!(
                    "stored pool address {index} of {vid} does not match this wallet's keys"
                ),
            });
        }
        Ok(RecordLocation {
            vid: vid.clone(),
            date,
            index: index32,
            path: format!(
                "m/84'/{}'/{}'/0/{}",
                self.network.coin_type(),
                entry.account,
                index32
            ),
            address,
        })
    }

    /// Serialises to pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| WalletError::Malformed {
            what: "device list",
            detail: e.to_string(),
        })
    }

    /// Parses and validates (version, pool sizes, address network, unique VIDs and accounts).
    pub fn from_json(text: &str) -> Result<Self> {
        let list: Self = serde_json::from_str(text).map_err(|e| WalletError::Malformed {
            what: "device list",
            detail: e.to_string(),
        })?;
        list.validate()?;
        Ok(list)
    }

    /// Loads `path`, or an empty list for `network` if the file does not exist yet.
    pub fn load_or_new(path: &Path, network: WalletNetwork) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::new(network));
        }
        let bytes = fsio::read(path)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| WalletError::Malformed {
            what: "device list",
            detail: "not utf-8".into(),
        })?;
        let list = Self::from_json(text)?;
        if list.network != network {
            return Err(WalletError::NetworkMismatch {
                wallet: network.to_string(),
                requested: list.network.to_string(),
            });
        }
        Ok(list)
    }

    /// Writes the list atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsio::write_atomic(path, self.to_json()?.as_bytes())
    }

    fn validate(&self) -> Result<()> {
        let bad = |detail: String| WalletError::Malformed {
            what: "device list",
            detail,
        };
        if self.version != DEVICE_LIST_VERSION {
            return Err(bad(format!("unsupported version {}", self.version)));
        }
        for (i, d) in self.devices.iter().enumerate() {
            let n = d.addresses.len();
            if n == 0 || n > MAX_POOL_SIZE as usize {
                return Err(bad(format!("{} has a pool of {n} addresses", d.vid)));
            }
            if d.account < crate::pool::POOL_ACCOUNT_BASE || d.account > 0x7fff_ffff {
                return Err(bad(format!(
                    "{} has account {} outside the pool range",
                    d.vid, d.account
                )));
            }
            for a in &d.addresses {
                Address::from_str(a)
                    .map_err(|e| bad(format!("{}: address {a:?}: {e}", d.vid)))?
                    .require_network(self.network.bitcoin())
                    .map_err(|e| bad(format!("{}: address {a:?}: {e}", d.vid)))?;
            }
            let earlier = self.devices.iter().take(i);
            for e in earlier {
                if e.vid == d.vid {
                    return Err(bad(format!("{} appears twice", d.vid)));
                }
                if e.account == d.account {
                    return Err(bad(format!("{} and {} share a pool account", e.vid, d.vid)));
                }
            }
        }
        Ok(())
    }

    fn check_network(&self, keys: &HdKeys) -> Result<()> {
        if keys.network() != self.network {
            return Err(WalletError::NetworkMismatch {
                wallet: keys.network().to_string(),
                requested: self.network.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::keys::MnemonicPhrase;
    use crate::pool::{deduct_address, UserSeed};

    const PHRASE: &str = "panda eyebrow bullet gorilla call smoke muffin taste mesh discover soft ostrich alcohol speed nation flash devote level hobby quick inner drive ghost inside";

    fn keys(network: WalletNetwork) -> HdKeys {
        HdKeys::from_mnemonic(&MnemonicPhrase::parse(PHRASE).unwrap(), "", network).unwrap()
    }

    #[test]
    fn add_list_locate_and_persist() {
        let k = keys(WalletNetwork::Testnet);
        let mut list = DeviceList::new(WalletNetwork::Testnet);
        let vin = Vid::new("LBVNU79049SB81546").unwrap();
        list.add(&k, vin.clone(), 10).unwrap();
        list.add(&k, Vid::new("phone-1").unwrap(), 3).unwrap();
        assert_eq!(list.devices().len(), 2);
        assert!(matches!(
            list.add(&k, vin.clone(), 4),
            Err(WalletError::DuplicateVid(_))
        ));

        let date = RecordDate::parse("20160511").unwrap();
        let loc = list.locate(&k, &vin, date).unwrap();
        let entry = list.get(&vin).unwrap();
        assert_eq!(entry.addresses[loc.index as usize], loc.address);
        assert!(loc.address.starts_with("tb1q"));
        assert!(loc.path.starts_with("m/84'/1'/"));

        // The device computes the same thing from its pool and seed alone.
        let seed = UserSeed::from_hex(&user_seed(&k, &vin).unwrap().to_hex()).unwrap();
        assert_eq!(
            deduct_address(&entry.addresses, date, &vin, &seed).unwrap(),
            &loc.address
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.json");
        list.save(&path).unwrap();
        let back = DeviceList::load_or_new(&path, WalletNetwork::Testnet).unwrap();
        assert_eq!(back, list);
        assert!(matches!(
            DeviceList::load_or_new(&path, WalletNetwork::Bitcoin),
            Err(WalletError::NetworkMismatch { .. })
        ));
        let fresh =
            DeviceList::load_or_new(&dir.path().join("none.json"), WalletNetwork::Regtest).unwrap();
        assert!(fresh.devices().is_empty());
    }

    #[test]
    fn unknown_vid_and_bad_sizes_are_errors() {
        let k = keys(WalletNetwork::Regtest);
        let mut list = DeviceList::new(WalletNetwork::Regtest);
        let d = RecordDate::parse("20200101").unwrap();
        let err = list.locate(&k, &Vid::new("ghost").unwrap(), d).unwrap_err();
        assert!(matches!(err, WalletError::UnknownVid(_)));
        assert!(err.to_string().contains("unknown vid"));
        assert!(matches!(
            list.add(&k, Vid::new("a").unwrap(), 0),
            Err(WalletError::InvalidPoolSize(0))
        ));
        assert!(matches!(
            list.add(&k, Vid::new("a").unwrap(), MAX_POOL_SIZE + 1),
            Err(WalletError::InvalidPoolSize(_))
        ));
        let other = keys(WalletNetwork::Bitcoin);
        assert!(matches!(
            list.add(&other, Vid::new("a").unwrap(), 2),
            Err(WalletError::NetworkMismatch { .. })
        ));
    }

    #[test]
    fn edited_addresses_are_detected() {
        let k = keys(WalletNetwork::Regtest);
        let mut list = DeviceList::new(WalletNetwork::Regtest);
        let vid = Vid::new("car").unwrap();
        list.add(&k, vid.clone(), 1).unwrap();
        // Swap the only pool address for another valid regtest address of the wallet.
        let foreign = k.receiving_address(0).unwrap().to_string();
        let mut json: serde_json::Value = serde_json::from_str(&list.to_json().unwrap()).unwrap();
        json["devices"][0]["addresses"][0] = foreign.into();
        let edited = DeviceList::from_json(&json.to_string()).unwrap();
        let err = edited
            .locate(&k, &vid, RecordDate::parse("20200101").unwrap())
            .unwrap_err();
        assert!(matches!(err, WalletError::Malformed { .. }), "{err}");

        // A pool from another wallet is detected by its account.
        let stranger = HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(PHRASE).unwrap(),
            "x",
            WalletNetwork::Regtest,
        )
        .unwrap();
        assert!(matches!(
            list.locate(&stranger, &vid, RecordDate::parse("20200101").unwrap()),
            Err(WalletError::Malformed { .. })
        ));
    }

    #[test]
    fn malformed_lists_are_rejected() {
        let k = keys(WalletNetwork::Regtest);
        let mut list = DeviceList::new(WalletNetwork::Regtest);
        list.add(&k, Vid::new("car").unwrap(), 2).unwrap();
        let json: serde_json::Value = serde_json::from_str(&list.to_json().unwrap()).unwrap();

        let mut v = json.clone();
        v["devices"][0]["addresses"][1] = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu".into();
        assert!(
            DeviceList::from_json(&v.to_string()).is_err(),
            "mainnet address in regtest list"
        );
        let mut v = json.clone();
        v["devices"][0]["addresses"] = serde_json::json!([]);
        assert!(DeviceList::from_json(&v.to_string()).is_err());
        let mut v = json.clone();
        v["devices"][0]["vid"] = "bad vid".into();
        assert!(DeviceList::from_json(&v.to_string()).is_err());
        let mut v = json.clone();
        v["devices"][0]["account"] = 5.into();
        assert!(DeviceList::from_json(&v.to_string()).is_err());
        let mut v = json.clone();
        let dup = v["devices"][0].clone();
        v["devices"].as_array_mut().unwrap().push(dup);
        assert!(DeviceList::from_json(&v.to_string()).is_err());
        let mut v = json;
        v["version"] = 9.into();
        assert!(DeviceList::from_json(&v.to_string()).is_err());
        assert!(DeviceList::from_json("[]").is_err());
    }
}
