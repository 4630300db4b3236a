//! The device side: the brief's `putIotKV`, run by a car head unit or the `device` simulator.
//!
//! A [`DeviceClient`] is built from the provisioning file the owner's wallet wrote at `setup`
//! ([`DeviceProvision`]), the network file (`agent devnet` writes one) and a spool directory.
//! [`DeviceClient::put_iot_kv`] stores one record:
//!
//! 1. the day's address: [`deduct_address`] over the pool, by the record's date, VID and user
//!    seed — the owner recomputes the same address from VID and date;
//! 2. the record is sealed for the owner's RSA key and mapped onto KVS cells;
//! 3. **write-ahead**: before any network call the sealed cells (and everything the
//!    attestation needs) are written to the spool ([`Spool`], atomic: temporary file, fsync,
//!    rename), under a name derived from (address, encoded key). Every retry — also after a
//!    crash and restart ([`DeviceClient::resume`]) — re-sends those same bytes: sealing again
//!    would give new ciphertext, and the storage cluster refuses a second, different stripe for
//!    the same (address, key);
//! 4. the cells go to the storage cluster through the gateway, which returns the stripe root
//!    (the placement commitment);
//! 5. the put is attested on chain (`RegistryCall::Attest`), signed with the device key and
//!    paid from the device's fee credits, and the client waits for its block;
//! 6. retries are idempotent: the attestation is looked up with a *verified* query before
//!    putting and whenever a submit is refused as a duplicate or times out; the same `dHash`
//!    already attested is [`PutOutcome::AlreadyAttested`] (no second charge), a different one
//!    is [`DeviceError::DuplicateKey`]. A nonce race re-reads the nonce; an unreachable agent
//!    is retried with bounded backoff (the gateway client itself fails over between agents).
//!
//! The spool entry is removed once the attestation is final. The pure decisions
//! ([`check_attestation`], [`classify_submit_error`]) are separate functions so they can be
//! tested without a network. [`sim`] generates the brief's trip and violation records for the
//! simulator.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chain::ledger::registry::{self, Attestation, RegistryCall};
use chain::tx::AccountAddress;
use gateway::cells::{stored_size, to_cells};
use gateway::proto::{Blob, Cells, ErrorCode, PutRecord};
use gateway::{GatewayClient, GatewayError, NetworkFile, TxBuilder, Verifier};
use primitives::hash::{Domain, Hash32, Hasher};
use primitives::record::{Record, RecordKey};
use rsa::RsaPublicKey;
use secp256k1::{SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use tokenomics::Amount;

use crate::error::WalletError;
use crate::fsio;
use crate::pool::{deduct_address, RecordDate, UserSeed, Vid};
use crate::provision::DeviceProvision;
use crate::reader_key::public_from_pem;
use crate::records::record_date;

/// Current spool entry format version.
pub const SPOOL_VERSION: u32 = 1;
/// File name suffix of live spool entries.
const SPOOL_SUFFIX: &str = ".json";
/// File name suffix of entries set aside because they can never be attested.
const REJECTED_SUFFIX: &str = ".rejected";

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A wallet-library failure (pool, seed, files).
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The record carries no date, so no pool address can be chosen for it.
    #[error("the record has no date (no START_TIME or DATE key part, no datetime or date column): no pool address can be chosen")]
    MissingDate,
    /// The provisioning file cannot be used.
    #[error("provisioning: {0}")]
    Provision(String),
    /// The network file cannot be used with this provisioning.
    #[error("network: {0}")]
    Network(String),
    /// Sealing the record or making its cells failed.
    #[error("sealing: {0}")]
    Seal(String),
    /// The (address, key) is already attested, or spooled, with another record.
    #[error("{address} already holds another record under key {key}: attested dHash {existing}, this record's {ours}")]
    DuplicateKey {
        /// The pool address.
        address: String,
        /// The record key (JSON).
        key: String,
        /// The `dHash` already attested or spooled (hex).
        existing: String,
        /// This record's `dHash` (hex).
        ours: String,
    },
    /// The storage cluster holds different content under this (address, key).
    #[error("the storage cluster holds other content at {address} key {key}: {message}")]
    StorageConflict {
        /// The pool address.
        address: String,
        /// The record key (JSON).
        key: String,
        /// The gateway's message.
        message: String,
    },
    /// A gateway call failed.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    /// The attestation transaction could not be built.
    #[error("attestation transaction: {0}")]
    Tx(String),
    /// A spool file cannot be read or written.
    #[error("spool {path}: {detail}")]
    Spool {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A bounded retry ran out.
    #[error("gave up {what} after {attempts} attempts: {last}")]
    GaveUp {
        /// The step.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// Result alias for device operations.
pub type DeviceResult<T> = std::result::Result<T, DeviceError>;

// ---------------------------------------------------------------------------------------------
// Identity: what the provisioning file gives the device.
// ---------------------------------------------------------------------------------------------

/// The device's identity and keys, decoded from its provisioning file.
pub struct Device {
    vid: Vid,
    secret: SecretKey,
    account: AccountAddress,
    owner_rsa: RsaPublicKey,
    pool: Vec<String>,
    seed: UserSeed,
    btc_network: bitcoin::Network,
    chain_id: String,
    agent: String,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("vid", &self.vid)
            .field("account", &self.account)
            .field("pool", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Decodes a provisioning file's keys and checks them.
    ///
    /// # Errors
    /// [`DeviceError::Provision`] for a bad VID, key, seed, network or pool address.
    pub fn from_provision(p: &DeviceProvision) -> DeviceResult<Self> {
        let bad = |what: &str, e: String| DeviceError::Provision(format!("{what}: {e}"));
        let vid = Vid::new(&p.vid).map_err(|e| bad("vid", e.to_string()))?;
        let secret_bytes =
            hex::decode(&p.device_secret).map_err(|e| bad("device_secret", e.to_string()))?;
        let secret = SecretKey::from_slice(&secret_bytes)
            .map_err(|e| bad("device_secret", e.to_string()))?;
        let account = AccountAddress::from_public_key(&secret.public_key(SECP256K1));
        let owner_rsa =
            public_from_pem(&p.owner_rsa_pem).map_err(|e| bad("owner_rsa_pem", e.to_string()))?;
        let seed = UserSeed::from_hex(&p.user_seed).map_err(|e| bad("user_seed", e.to_string()))?;
        let btc_network = gateway::network::bitcoin_network(&p.network)
            .ok_or_else(|| bad("network", format!("unknown network {:?}", p.network)))?;
        if p.pool.is_empty() {
            return Err(bad("pool", "empty".into()));
        }
        for a in &p.pool {
            AccountAddress::from_bech32(a, btc_network).map_err(|e| bad("pool", e.to_string()))?;
        }
        Ok(Device {
            vid,
            secret,
            account,
            owner_rsa,
            pool: p.pool.clone(),
            seed,
            btc_network,
            chain_id: p.chain_id.clone(),
            agent: p.agent.clone(),
        })
    }

    /// The device identifier.
    pub fn vid(&self) -> &Vid {
        &self.vid
    }

    /// The device's account (the one that signs and pays for attestations).
    pub fn account(&self) -> AccountAddress {
        self.account
    }

    /// The address network of the pool.
    pub fn btc_network(&self) -> bitcoin::Network {
        self.btc_network
    }

    /// The pool address that holds the device's records of `date` (`deductFrom`).
    ///
    /// # Errors
    /// [`DeviceError::Wallet`] for an empty pool.
    pub fn address_for(&self, date: RecordDate) -> DeviceResult<&str> {
        Ok(deduct_address(&self.pool, date, &self.vid, &self.seed)?.as_str())
    }

    /// Chooses the address, seals `record` for the owner and writes it ahead to `spool` — or,
    /// if the same record is already spooled (an earlier attempt, perhaps before a crash),
    /// returns that entry so the same bytes are sent again.
    ///
    /// # Errors
    /// [`DeviceError::MissingDate`]; [`DeviceError::DuplicateKey`] if another record is spooled
    /// under the same (address, key); sealing and spool failures.
    pub fn prepare(&self, spool: &Spool, record: &Record, metres: u64) -> DeviceResult<SpoolEntry> {
        let date = record_date(record).ok_or(DeviceError::MissingDate)?;
        let address = self.address_for(date)?.to_owned();
        let key = record.key().encode();
        let dhash = record.dhash();
        if let Some(entry) = spool.load(&address, &key)? {
            if entry.dhash == dhash && entry.vid == self.vid.as_str() {
                return Ok(entry);
            }
            return Err(DeviceError::DuplicateKey {
                address,
                key: record.key().to_json_string(),
                existing: hex::encode(entry.dhash),
                ours: hex::encode(dhash),
            });
        }
        let sealed = primitives::envelope::seal(
            record,
            &address,
            &[&self.owner_rsa],
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| DeviceError::Seal(e.to_string()))?;
        let cells = to_cells(&sealed).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let entry = SpoolEntry {
            version: SPOOL_VERSION,
            vid: self.vid.as_str().to_owned(),
            address,
            key: Blob(key),
            format: record.format().to_owned(),
            dhash,
            size: stored_size(&cells),
            metres,
            cells,
            root: None,
            submitted_nonce: None,
        };
        spool.store(&entry)?;
        Ok(entry)
    }
}

// ---------------------------------------------------------------------------------------------
// The spool: write-ahead storage of sealed puts.
// ---------------------------------------------------------------------------------------------

/// A put written ahead: the sealed cells and all the attestation needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolEntry {
    /// Format version ([`SPOOL_VERSION`]).
    pub version: u32,
    /// The device.
    pub vid: String,
    /// The pool address (bech32).
    pub address: String,
    /// The encoded record key.
    pub key: Blob,
    /// The record's format.
    pub format: String,
    /// The record's `dHash`.
    #[serde(with = "primitives::bytes::hex32")]
    pub dhash: Hash32,
    /// The stored size of the cells.
    pub size: u64,
    /// Distance the record covers, in metres.
    pub metres: u64,
    /// The sealed cells, exactly as sent (and re-sent).
    pub cells: Cells,
    /// The stripe root, once the storage cluster has the cells.
    #[serde(default, with = "opt_hex32")]
    pub root: Option<Hash32>,
    /// The nonce of the last attestation submitted for this put, if any.
    #[serde(default)]
    pub submitted_nonce: Option<u64>,
}

impl SpoolEntry {
    /// The record key as JSON (for messages).
    pub fn key_json(&self) -> String {
        RecordKey::decode(&self.key.0)
            .map(|k| k.to_json_string())
            .unwrap_or_else(|_| hex::encode(&self.key.0))
    }
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        v.map(hex::encode).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| serde::de::Error::custom("not 32 bytes"))
        })
        .transpose()
    }
}

/// The spool directory: one file per pending put.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool directory `dir`.
    ///
    /// # Errors
    /// [`DeviceError::Wallet`] if it cannot be created.
    pub fn open(dir: &Path) -> DeviceResult<Self> {
        fsio::ensure_private_dir(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name stem of the entry for (`address`, encoded `key`): a domain-separated hash.
    pub fn entry_stem(address: &str, key: &[u8]) -> String {
        let mut h = Hasher::new(Domain::Custom("device-spool"));
        h.update_field(address.as_bytes()).update_field(key);
        hex::encode(h.finish())
    }

    /// The path of the entry for (`address`, `key`).
    pub fn path_of(&self, address: &str, key: &[u8]) -> PathBuf {
        self.dir
            .join(format!("{}{SPOOL_SUFFIX}", Self::entry_stem(address, key)))
    }

    fn read(path: &Path) -> DeviceResult<SpoolEntry> {
        let bytes = fsio::read(path)?;
        let entry: SpoolEntry = serde_json::from_slice(&bytes).map_err(|e| DeviceError::Spool {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if entry.version != SPOOL_VERSION {
            return Err(DeviceError::Spool {
                path: path.to_path_buf(),
                detail: format!(
                    "version {} (this build reads {SPOOL_VERSION})",
                    entry.version
                ),
            });
        }
        Ok(entry)
    }

    /// The entry for (`address`, `key`), if spooled.
    ///
    /// # Errors
    /// [`DeviceError::Spool`] for an unreadable entry.
    pub fn load(&self, address: &str, key: &[u8]) -> DeviceResult<Option<SpoolEntry>> {
        let path = self.path_of(address, key);
        if !path.exists() {
            return Ok(None);
        }
        let entry = Self::read(&path)?;
        if entry.address != address || entry.key.0 != key {
            return Err(DeviceError::Spool {
                path,
                detail: "the entry names another address or key than its file name".into(),
            });
        }
        Ok(Some(entry))
    }

    /// Writes `entry` atomically (temporary file, fsync, rename, fsync of the directory).
    ///
    /// # Errors
    /// [`DeviceError`] if it cannot be encoded or written.
    pub fn store(&self, entry: &SpoolEntry) -> DeviceResult<()> {
        let path = self.path_of(&entry.address, &entry.key.0);
        let bytes = serde_json::to_vec(entry).map_err(|e| DeviceError::Spool {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        fsio::write_atomic(&path, &bytes)?;
        Ok(())
    }

    /// Removes the entry of a finished put.
    ///
    /// # Errors
    /// [`DeviceError::Spool`] if it exists and cannot be removed.
    pub fn remove(&self, entry: &SpoolEntry) -> DeviceResult<()> {
        let path = self.path_of(&entry.address, &entry.key.0);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DeviceError::Spool {
                path,
                detail: e.to_string(),
            }),
        }
    }

    /// Moves an entry that can never be attested out of the way (renamed `….rejected`, kept
    /// for inspection, skipped by [`Spool::entries`]).
    ///
    /// # Errors
    /// [`DeviceError::Spool`] if it cannot be renamed.
    pub fn set_aside(&self, entry: &SpoolEntry) -> DeviceResult<PathBuf> {
        let path = self.path_of(&entry.address, &entry.key.0);
        let to = path.with_extension(REJECTED_SUFFIX.trim_start_matches('.'));
        std::fs::rename(&path, &to).map_err(|e| DeviceError::Spool {
            path,
            detail: e.to_string(),
        })?;
        Ok(to)
    }

    /// Every live entry (for `vid`, or all when `None`), in file-name order. Temporary files
    /// of interrupted writes and set-aside entries are skipped.
    ///
    /// # Errors
    /// [`DeviceError`] if the directory or an entry cannot be read.
    pub fn entries(&self, vid: Option<&str>) -> DeviceResult<Vec<SpoolEntry>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| WalletError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        let mut paths = Vec::new();
        for item in rd {
            let item = item.map_err(|e| WalletError::Io {
                path: self.dir.clone(),
                source: e,
            })?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(SPOOL_SUFFIX) {
                continue;
            }
            paths.push(item.path());
        }
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let e = Self::read(&p)?;
            if vid.is_none_or(|v| v == e.vid) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions.
// ---------------------------------------------------------------------------------------------

/// What the chain's index says about a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationCheck {
    /// Nothing is attested under (address, key).
    Absent,
    /// This very record (same `dHash`) is attested.
    Same(Attestation),
    /// Another record is attested there.
    Different(Attestation),
}

/// Compares what is attested under (address, key) with the record's `dhash`.
pub fn check_attestation(found: Option<Attestation>, dhash: &Hash32) -> AttestationCheck {
    match found {
        None => AttestationCheck::Absent,
        Some(a) if &a.dhash == dhash => AttestationCheck::Same(a),
        Some(a) => AttestationCheck::Different(a),
    }
}

/// Whether an attestation found with the same `dHash` was made by this put (rather than by an
/// earlier, independent put of the same record): this put submitted one, the writer is this
/// device and the placement is this put's stripe root.
pub fn made_by_this_put(a: &Attestation, entry: &SpoolEntry, device: AccountAddress) -> bool {
    entry.submitted_nonce.is_some() && a.writer == device && entry.root == Some(a.placement)
}

/// What to do after a failed submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitAction {
    /// Refused as a duplicate: look the attestation up (it may be ours, already included or
    /// pending, or another record's).
    CheckAttestation,
    /// Admitted but not yet included, or the answer is unknown: poll the attestation.
    WaitAndCheck,
    /// The nonce was taken meanwhile: read it again and re-sign.
    RenewNonce,
    /// No agent answered, or the chain is congested (its mempool is full, which is the
    /// network's back-pressure): back off and retry the step.
    RetryTransport,
    /// Anything else: the put fails.
    Fail,
}

/// Classifies a submit failure (see [`SubmitAction`]).
pub fn classify_submit_error(e: &GatewayError) -> SubmitAction {
    if e.is_rejection("duplicate") {
        return SubmitAction::CheckAttestation;
    }
    if e.is_rejection("nonce_too_low") || e.is_rejection("nonce_too_high") {
        return SubmitAction::RenewNonce;
    }
    if e.is_rejection("mempool_full") {
        return SubmitAction::RetryTransport;
    }
    match e {
        GatewayError::Unreachable(_) => SubmitAction::RetryTransport,
        GatewayError::Remote {
            code: ErrorCode::Timeout,
            ..
        } => SubmitAction::WaitAndCheck,
        GatewayError::Remote {
            code: ErrorCode::Unavailable | ErrorCode::Retry,
            ..
        } => SubmitAction::RetryTransport,
        _ => SubmitAction::Fail,
    }
}

/// Whether a gateway failure of a read or a put is worth retrying after a backoff.
pub fn is_transient(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::Unreachable(_)
            | GatewayError::Remote {
                code: ErrorCode::Unavailable | ErrorCode::Retry | ErrorCode::Timeout,
                ..
            }
    )
}

/// The backoff before retry `attempt` (1-based): `base * 2^(attempt-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

// ---------------------------------------------------------------------------------------------
// Outcomes.
// ---------------------------------------------------------------------------------------------

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutReceipt {
    /// The device.
    pub vid: String,
    /// The pool address holding the record.
    pub address: String,
    /// The record key (JSON).
    pub key: String,
    /// The encoded record key (hex).
    pub key_hex: String,
    /// The record's `dHash` (hex).
    pub dhash: String,
    /// The stripe root (placement commitment) the attestation names (hex).
    pub root: String,
    /// Height of the block holding the attestation.
    pub height: u64,
    /// The fee this put paid (base units; 0 when it was already attested).
    pub fee: u64,
    /// Whether this put created the attestation.
    pub new: bool,
}

/// The outcome of [`DeviceClient::put_iot_kv`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PutOutcome {
    /// The put was stored and attested now.
    Attested(PutReceipt),
    /// The same record was already attested: nothing was charged twice.
    AlreadyAttested(PutReceipt),
}

impl PutOutcome {
    /// The receipt.
    pub fn receipt(&self) -> &PutReceipt {
        match self {
            PutOutcome::Attested(r) | PutOutcome::AlreadyAttested(r) => r,
        }
    }

    /// Whether this put created the attestation.
    pub fn is_new(&self) -> bool {
        matches!(self, PutOutcome::Attested(_))
    }
}

// ---------------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------------

/// Bounds of the retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts of one network step while no agent answers.
    pub transport_attempts: u32,
    /// First backoff.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// How long a submit waits for its block.
    pub submit_wait: Duration,
    /// Re-signs after a nonce race.
    pub nonce_retries: u32,
    /// Polls of the attestation while the transaction is pending.
    pub pending_polls: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            transport_attempts: 8,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            submit_wait: Duration::from_secs(30),
            nonce_retries: 8,
            pending_polls: 20,
        }
    }
}

/// A device reporting records through the network's agents.
pub struct DeviceClient {
    device: Device,
    gateway: Arc<GatewayClient>,
    verifier: tokio::sync::Mutex<Verifier>,
    builder: TxBuilder,
    spool: Spool,
    policy: RetryPolicy,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("device", &self.device)
            .field("spool", &self.spool.dir)
            .finish_non_exhaustive()
    }
}

/// The index of the agent named by the provisioning (by account) in `network`, else 0.
pub fn preferred_agent(network: &NetworkFile, agent_account: &str) -> usize {
    network
        .agents
        .iter()
        .position(|a| a.account == agent_account)
        .unwrap_or(0)
}

impl DeviceClient {
    /// A client with its own gateway connection (starting with the provisioned agent). Must
    /// be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`DeviceError`] if the provisioning, network file or spool cannot be used.
    pub fn new(
        provision: &DeviceProvision,
        network: &NetworkFile,
        spool_dir: &Path,
    ) -> DeviceResult<Self> {
        Self::connect(provision, network, spool_dir, Duration::from_secs(10))
    }

    /// Like [`DeviceClient::new`], with `timeout` per gateway request and agent.
    ///
    /// # Errors
    /// [`DeviceError`] if the provisioning, network file or spool cannot be used.
    pub fn connect(
        provision: &DeviceProvision,
        network: &NetworkFile,
        spool_dir: &Path,
        timeout: Duration,
    ) -> DeviceResult<Self> {
        let first = preferred_agent(network, &provision.agent);
        let gateway = GatewayClient::for_network(network, first, timeout)?;
        Self::with_gateway(provision, network, spool_dir, Arc::new(gateway))
    }

    /// A client sharing `gateway` (e.g. several simulated cars on one endpoint).
    ///
    /// # Errors
    /// [`DeviceError`] if the provisioning, network file or spool cannot be used.
    pub fn with_gateway(
        provision: &DeviceProvision,
        network: &NetworkFile,
        spool_dir: &Path,
        gateway: Arc<GatewayClient>,
    ) -> DeviceResult<Self> {
        let device = Device::from_provision(provision)?;
        if device.chain_id != network.genesis.chain_id {
            return Err(DeviceError::Network(format!(
                "the device was set up on chain {:?} but the network file is for {:?}",
                device.chain_id, network.genesis.chain_id
            )));
        }
        let net = network
            .bitcoin_network()
            .map_err(|e| DeviceError::Network(e.to_string()))?;
        if net != device.btc_network {
            return Err(DeviceError::Network(format!(
                "the device's addresses are for {} but the chain uses {}",
                device.btc_network, net
            )));
        }
        let verifier = Verifier::from_genesis(&network.genesis).map_err(GatewayError::from)?;
        let builder =
            TxBuilder::new(&network.genesis).map_err(|e| DeviceError::Tx(e.to_string()))?;
        Ok(DeviceClient {
            device,
            gateway,
            verifier: tokio::sync::Mutex::new(verifier),
            builder,
            spool: Spool::open(spool_dir)?,
            policy: RetryPolicy::default(),
        })
    }

    /// Replaces the retry bounds.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The agent the device was provisioned with (bech32 account).
    pub fn agent(&self) -> &str {
        &self.device.agent
    }

    /// The brief's `putIotKV`: stores `record` (covering `metres`) at the day's pool address and
    /// attests it (see the module docs).
    ///
    /// # Errors
    /// [`DeviceError::MissingDate`], [`DeviceError::DuplicateKey`], and network failures that
    /// outlast the retries (the put stays spooled for [`DeviceClient::resume`]).
    pub async fn put_iot_kv(&self, record: &Record, metres: u64) -> DeviceResult<PutOutcome> {
        let entry = self.device.prepare(&self.spool, record, metres)?;
        self.drive(entry).await
    }

    /// Re-drives every spooled put of this device (after a crash or a failed run), in order.
    ///
    /// # Errors
    /// [`DeviceError`] if the spool cannot be listed; each put's own result is in the list.
    pub async fn resume(&self) -> DeviceResult<Vec<DeviceResult<PutOutcome>>> {
        let entries = self.spool.entries(Some(self.device.vid.as_str()))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(self.drive(e).await);
        }
        Ok(out)
    }

    async fn retry<T, F, Fut>(&self, what: &'static str, mut f: F) -> DeviceResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) => {
                    attempt = attempt.saturating_add(1);
                    if attempt >= self.policy.transport_attempts {
                        return Err(DeviceError::GaveUp {
                            what,
                            attempts: attempt,
                            last: e.to_string(),
                        });
                    }
                    let wait = backoff(self.policy.base_backoff, self.policy.max_backoff, attempt);
                    tracing::warn!(step = what, attempt, error = %e, "retrying after {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The verified attestation of (`address`, `key`).
    async fn attestation(&self, state_key: &[u8]) -> DeviceResult<Option<Attestation>> {
        let keys = vec![state_key.to_vec()];
        let proven = self
            .retry("verified query", || async {
                let mut v = self.verifier.lock().await;
                self.gateway.query_verified(&mut v, &keys).await
            })
            .await?;
        let value = proven.values.into_iter().next().flatten();
        Ok(
            gateway::verify::decode::<Attestation>("attestation", value.as_deref())
                .map_err(GatewayError::from)?,
        )
    }

    fn receipt(&self, entry: &SpoolEntry, a: &Attestation, new: bool, fee: Amount) -> PutReceipt {
        PutReceipt {
            vid: entry.vid.clone(),
            address: entry.address.clone(),
            key: entry.key_json(),
            key_hex: hex::encode(&entry.key.0),
            dhash: hex::encode(entry.dhash),
            root: hex::encode(a.placement),
            height: a.height,
            fee: if new { fee.to_base_units() } else { 0 },
            new,
        }
    }

    /// Ends a put whose attestation was found with the same `dHash`.
    fn finish_found(
        &self,
        entry: &SpoolEntry,
        a: &Attestation,
        fee: Amount,
    ) -> DeviceResult<PutOutcome> {
        self.spool.remove(entry)?;
        Ok(if made_by_this_put(a, entry, self.device.account) {
            PutOutcome::Attested(self.receipt(entry, a, true, fee))
        } else {
            PutOutcome::AlreadyAttested(self.receipt(entry, a, false, fee))
        })
    }

    fn duplicate(&self, entry: &SpoolEntry, a: &Attestation) -> DeviceError {
        match self.spool.set_aside(entry) {
            Ok(p) => tracing::warn!(path = %p.display(), "spool entry set aside: its key is taken"),
            Err(e) => tracing::warn!(error = %e, "cannot set the spool entry aside"),
        }
        DeviceError::DuplicateKey {
            address: entry.address.clone(),
            key: entry.key_json(),
            existing: hex::encode(a.dhash),
            ours: hex::encode(entry.dhash),
        }
    }

    async fn drive(&self, mut entry: SpoolEntry) -> DeviceResult<PutOutcome> {
        let address = AccountAddress::from_bech32(&entry.address, self.device.btc_network)
            .map_err(|e| DeviceError::Provision(e.to_string()))?;
        let state_key = registry::attestation_key(&address, &entry.key.0);
        let zero = Amount::ZERO;

        // Before putting: is it attested already?
        match check_attestation(self.attestation(&state_key).await?, &entry.dhash) {
            AttestationCheck::Same(a) => return self.finish_found(&entry, &a, zero),
            AttestationCheck::Different(a) => return Err(self.duplicate(&entry, &a)),
            AttestationCheck::Absent => {}
        }

        // Store the cells (the same bytes on every attempt).
        let root = match entry.root {
            Some(r) => r,
            None => {
                let put = self
                    .retry("put", || {
                        self.gateway.put(
                            &entry.address,
                            vec![PutRecord {
                                key: entry.key.clone(),
                                cells: entry.cells.clone(),
                            }],
                        )
                    })
                    .await;
                let (roots, durable, missing) = match put {
                    Ok(v) => v,
                    Err(DeviceError::Gateway(GatewayError::Remote {
                        code: ErrorCode::Conflict,
                        message,
                    })) => {
                        return Err(DeviceError::StorageConflict {
                            address: entry.address.clone(),
                            key: entry.key_json(),
                            message,
                        })
                    }
                    Err(e) => return Err(e),
                };
                tracing::debug!(durable, missing, "cells stored");
                let root = roots.first().copied().ok_or(DeviceError::Gateway(
                    GatewayError::Unexpected("put without a stripe root"),
                ))?;
                entry.root = Some(root);
                self.spool.store(&entry)?;
                root
            }
        };

        // Attest.
        let call = RegistryCall::Attest {
            vid: entry.vid.clone(),
            address,
            key: entry.key.0.clone(),
            dhash: entry.dhash,
            size: entry.size,
            metres: entry.metres,
            format: entry.format.clone(),
            placement: root,
        };
        let fee = self
            .builder
            .registry_fee(&call)
            .map_err(|e| DeviceError::Tx(e.to_string()))?;
        let mut nonce_races = 0u32;
        let mut polls = 0u32;
        let mut transport = 0u32;
        loop {
            let nonce = self
                .retry("next nonce", || {
                    self.gateway.next_nonce(self.device.account)
                })
                .await?;
            let tx = self
                .builder
                .registry(&self.device.secret, nonce, &call)
                .map_err(|e| DeviceError::Tx(e.to_string()))?;
            if entry.submitted_nonce != Some(nonce) {
                entry.submitted_nonce = Some(nonce);
                self.spool.store(&entry)?;
            }
            let action = match self.gateway.submit(tx, self.policy.submit_wait).await {
                // In a block is not yet in the index: a transaction can be included and still
                // fail (a pool that expired meanwhile, a racing copy). Only the proven entry
                // acknowledges the put.
                Ok((_, Some(_))) => SubmitAction::CheckAttestation,
                Ok((_, None)) => SubmitAction::WaitAndCheck,
                Err(e) => {
                    let action = classify_submit_error(&e);
                    tracing::debug!(error = %e, ?action, "submit failed");
                    match action {
                        SubmitAction::Fail => return Err(e.into()),
                        SubmitAction::RenewNonce => {
                            nonce_races = nonce_races.saturating_add(1);
                            if nonce_races > self.policy.nonce_retries {
                                return Err(DeviceError::GaveUp {
                                    what: "attest (nonce races)",
                                    attempts: nonce_races,
                                    last: e.to_string(),
                                });
                            }
                        }
                        SubmitAction::RetryTransport => {
                            transport = transport.saturating_add(1);
                            if transport >= self.policy.transport_attempts {
                                return Err(DeviceError::GaveUp {
                                    what: "attest (transport)",
                                    attempts: transport,
                                    last: e.to_string(),
                                });
                            }
                            tokio::time::sleep(backoff(
                                self.policy.base_backoff,
                                self.policy.max_backoff,
                                transport,
                            ))
                            .await;
                        }
                        SubmitAction::CheckAttestation | SubmitAction::WaitAndCheck => {}
                    }
                    action
                }
            };
            if matches!(
                action,
                SubmitAction::CheckAttestation | SubmitAction::WaitAndCheck
            ) {
                match check_attestation(self.attestation(&state_key).await?, &entry.dhash) {
                    AttestationCheck::Same(a) => return self.finish_found(&entry, &a, fee),
                    AttestationCheck::Different(a) => return Err(self.duplicate(&entry, &a)),
                    AttestationCheck::Absent => {
                        // Pending in a mempool (ours or a relayed copy): wait for its block.
                        polls = polls.saturating_add(1);
                        if polls > self.policy.pending_polls {
                            return Err(DeviceError::GaveUp {
                                what: "attest (waiting for the block)",
                                attempts: polls,
                                last: "the attestation is still not in a finalized block".into(),
                            });
                        }
                        tokio::time::sleep(backoff(
                            self.policy.base_backoff,
                            self.policy.max_backoff,
                            polls,
                        ))
                        .await;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record generation for the simulator.
// ---------------------------------------------------------------------------------------------

pub mod sim {
    //! Seeded, reproducible records in the brief's shapes: `trip-gps` trips (a GPS random walk
    //! around Shanghai, 31.2N 121.5E, with a speed trace) and `carvio` parking violations.

    use std::collections::BTreeMap;

    use primitives::hash::{Domain, Hasher};
    use primitives::record::{KeyPart, Record, RecordError, RecordKey};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use serde_json::{json, Value};

    use crate::pool::RecordDate;

    /// Centre of the random walk (People's Square, Shanghai).
    pub const CENTRE: (f64, f64) = (31.2, 121.5);
    /// Mean Earth radius in metres.
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    /// Metres per degree of latitude.
    const METRES_PER_DEGREE: f64 = 111_320.0;
    /// Trips start between 06:00 and 22:00.
    const DAY_START_S: u64 = 6 * 3600;
    /// Length of the trip window, seconds.
    const DAY_WINDOW_S: u64 = 16 * 3600;

    /// A generated record and the distance it covers.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SimRecord {
        /// The record.
        pub record: Record,
        /// Its haversine length in metres (0 for a violation).
        pub metres: u64,
    }

    /// Great-circle distance in metres between two (lat, lng) points in degrees.
    pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
        let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
        let h = ((la2 - la1) / 2.0).sin().powi(2)
            + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }

    /// Length of a GPS track in metres.
    pub fn track_length_m(points: &[(f64, f64)]) -> f64 {
        points.windows(2).fold(0.0, |acc, w| match w {
            [a, b] => acc + haversine_m(*a, *b),
            _ => acc,
        })
    }

    /// The haversine length in metres of a record's `GPS` column (`[{"lat","lng"}…]`), or 0
    /// when it has none: the default mileage of a put.
    pub fn gps_metres(record: &Record) -> u64 {
        let Some(Value::Array(points)) = record.columns().get("GPS") else {
            return 0;
        };
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| Some((p.get("lat")?.as_f64()?, p.get("lng")?.as_f64()?)))
            .collect();
        let m = track_length_m(&pts).round();
        if m.is_finite() && m > 0.0 {
            // Non-negative and finite; `as` saturates.
            m as u64
        } else {
            0
        }
    }

    fn round6(x: f64) -> f64 {
        (x * 1e6).round() / 1e6
    }

    /// `YYYYMMDD` as a number.
    pub fn date_number(date: RecordDate) -> u64 {
        u64::from(date.year())
            .saturating_mul(10_000)
            .saturating_add(u64::from(date.month()).saturating_mul(100))
            .saturating_add(u64::from(date.day()))
    }

    /// `YYYYMMDDhhmmss` for `secs` seconds after midnight of `date` (capped at 23:59:59).
    pub fn timestamp(date: RecordDate, secs: u64) -> u64 {
        let s = secs.min(86_399);
        let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
        date_number(date)
            .saturating_mul(1_000_000)
            .saturating_add(h.saturating_mul(10_000))
            .saturating_add(m.saturating_mul(100))
            .saturating_add(sec)
    }

    /// One simulated car: its random generator and where it stands.
    #[derive(Debug, Clone)]
    pub struct CarSim {
        rng: ChaCha20Rng,
        pos: (f64, f64),
        bearing: f64,
    }

    impl CarSim {
        /// A car seeded by `seed` and its `vid` (the same pair always drives the same trips).
        pub fn new(seed: u64, vid: &str) -> Self {
            let mut h = Hasher::new(Domain::Custom("device-sim"));
            h.update_field(&seed.to_be_bytes())
                .update_field(vid.as_bytes());
            let mut rng = ChaCha20Rng::from_seed(h.finish());
            let pos = (
                CENTRE.0 + rng.gen_range(-0.08..0.08),
                CENTRE.1 + rng.gen_range(-0.08..0.08),
            );
            let bearing = rng.gen_range(0.0..360.0);
            CarSim { rng, pos, bearing }
        }

        /// The day's records: `trips` trips (spread between 06:00 and 22:00) then `violations`
        /// parking violations.
        ///
        /// # Errors
        /// A record the record model refuses (not expected).
        pub fn day(
            &mut self,
            date: RecordDate,
            trips: u32,
            violations: u32,
        ) -> Result<Vec<SimRecord>, RecordError> {
            let mut out = Vec::new();
            let slot = DAY_WINDOW_S
                .checked_div(u64::from(trips))
                .unwrap_or(DAY_WINDOW_S)
                .max(4);
            for i in 0..trips {
                let start = DAY_START_S.saturating_add(slot.saturating_mul(u64::from(i)));
                let jitter = self.rng.gen_range(0..=slot / 4);
                let duration = self
                    .rng
                    .gen_range((slot / 4).max(1)..=(slot / 2).max(1))
                    .min(3 * 3600);
                out.push(self.trip(
                    date,
                    u64::from(i).saturating_add(1),
                    start.saturating_add(jitter),
                    duration,
                )?);
            }
            for i in 0..violations {
                out.push(self.violation(date, u64::from(i).saturating_add(1))?);
            }
            Ok(out)
        }

        /// One `trip-gps` record: session `session`, starting `start_s` seconds after midnight
        /// of `date` and lasting `duration_s` seconds.
        ///
        /// # Errors
        /// A record the record model refuses (not expected).
        pub fn trip(
            &mut self,
            date: RecordDate,
            session: u64,
            start_s: u64,
            duration_s: u64,
        ) -> Result<SimRecord, RecordError> {
            let len: usize = self.rng.gen_range(10..=40);
            let steps = u64::try_from(len.saturating_sub(1)).unwrap_or(1).max(1);
            let dt = (duration_s as f64) / (steps as f64);
            let mut points = Vec::with_capacity(len);
            let mut speeds: Vec<u64> = Vec::with_capacity(len);
            let mut speed: i64 = 0;
            points.push((round6(self.pos.0), round6(self.pos.1)));
            speeds.push(0);
            for _ in 1..len {
                let before = speed;
                speed = (speed.saturating_add(self.rng.gen_range(-15..=25))).clamp(0, 110);
                let avg_kmh = (before.saturating_add(speed)) as f64 / 2.0;
                let d = avg_kmh / 3.6 * dt;
                self.bearing = (self.bearing + self.rng.gen_range(-30.0..30.0)).rem_euclid(360.0);
                // Stay near Shanghai: steer back towards the centre when drifting away.
                let (dlat, dlng) = (CENTRE.0 - self.pos.0, CENTRE.1 - self.pos.1);
                if dlat.hypot(dlng) > 0.3 {
                    self.bearing = dlng.atan2(dlat).to_degrees().rem_euclid(360.0);
                }
                let b = self.bearing.to_radians();
                let lat = self.pos.0 + d * b.cos() / METRES_PER_DEGREE;
                let lng =
                    self.pos.1 + d * b.sin() / (METRES_PER_DEGREE * self.pos.0.to_radians().cos());
                self.pos = (lat, lng);
                points.push((round6(lat), round6(lng)));
                speeds.push(u64::try_from(speed).unwrap_or(0));
            }
            let metres = track_length_m(&points).round();
            let gps: Vec<Value> = points
                .iter()
                .map(|(lat, lng)| json!({"lat": lat, "lng": lng}))
                .collect();
            let speed_text = speeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let key = RecordKey::new(vec![
                ("SESSION_ID".to_owned(), KeyPart::Int(i128::from(session))),
                (
                    "START_TIME".to_owned(),
                    KeyPart::Int(i128::from(timestamp(date, start_s))),
                ),
                (
                    "END_TIME".to_owned(),
                    KeyPart::Int(i128::from(timestamp(
                        date,
                        start_s.saturating_add(duration_s),
                    ))),
                ),
            ])?;
            let mut cols = BTreeMap::new();
            cols.insert("len".to_owned(), json!(len));
            cols.insert("GPS".to_owned(), Value::Array(gps));
            cols.insert("SPEED".to_owned(), Value::String(speed_text));
            cols.insert("VEHICLE_DATA".to_owned(), json!(1));
            cols.insert("format".to_owned(), json!("trip-gps"));
            Ok(SimRecord {
                record: Record::new("trip-gps", key, cols)?,
                // Finite and non-negative by construction; `as` saturates.
                metres: metres as u64,
            })
        }

        /// One `carvio` parking violation on `date` (ticket number `n` of the day; the key's
        /// `CARVIO_ID` is `YYYYMMDD * 10000 + n`, unique across days).
        ///
        /// # Errors
        /// A record the record model refuses (not expected).
        pub fn violation(&mut self, date: RecordDate, n: u64) -> Result<SimRecord, RecordError> {
            let id = date_number(date).saturating_mul(10_000).saturating_add(n);
            let loc = (
                round6(self.pos.0 + self.rng.gen_range(-0.002..0.002)),
                round6(self.pos.1 + self.rng.gen_range(-0.002..0.002)),
            );
            let key = RecordKey::new(vec![("CARVIO_ID".to_owned(), KeyPart::Int(i128::from(id)))])?;
            let mut cols = BTreeMap::new();
            cols.insert("format".to_owned(), json!("carvio"));
            cols.insert("VEHICLE_DATA".to_owned(), json!(1));
            cols.insert("datetime".to_owned(), json!(date_number(date)));
            cols.insert("loc".to_owned(), json!({"lat": loc.0, "lng": loc.1}));
            cols.insert("viotype".to_owned(), json!("vioparking"));
            cols.insert("price".to_owned(), json!(200));
            cols.insert("point".to_owned(), json!(0));
            Ok(SimRecord {
                record: Record::new("carvio", key, cols)?,
                metres: 0,
            })
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::sim::{haversine_m, track_length_m, CarSim, SimRecord};
    use super::*;
    use crate::devices::DeviceList;
    use crate::keys::{HdKeys, MnemonicPhrase, WalletNetwork};
    use crate::pool::user_seed;
    use crate::test_support::shared_reader;
    use serde_json::Value;

    const PHRASE: &str = "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length";

    /// The brief's first example (seed-records.json, entry 0).
    const BRIEF_TRIP: &str = r#"{"format":"trip-gps","key":{"SESSION_ID":1,"START_TIME":20160511071428,"END_TIME":20160511094623},"value":{"len":10,"GPS":[{"lat":31.250885,"lng":121.44662},{"lat":31.251259,"lng":121.4456},{"lat":31.25419,"lng":121.485504},{"lat":31.268875,"lng":121.59015},{"lat":31.29777,"lng":121.61309},{"lat":31.298483,"lng":121.6138},{"lat":31.297743,"lng":121.614525},{"lat":31.194258,"lng":121.74957},{"lat":31.195974,"lng":121.75078},{"lat":31.115866,"lng":121.77829}],"SPEED":"0,23,52,45,51,33,49,49,48,37","VEHICLE_DATA":1,"format":"trip-gps"}}"#;
    /// The brief's second example (seed-records.json, entry 1).
    const BRIEF_CARVIO: &str = r#"{"format":"carvio","key":{"CARVIO_ID":1},"value":{"format":"carvio","VEHICLE_DATA":1,"datetime":20180310,"loc":{"lat":31.250885,"lng":121.44662},"viotype":"vioparking","price":200,"point":0}}"#;

    fn date(s: &str) -> RecordDate {
        RecordDate::parse(s).unwrap()
    }

    /// The JSON type of every value, recursively (arrays by their first element).
    fn shape(v: &Value) -> Value {
        match v {
            Value::Null => Value::from("null"),
            Value::Bool(_) => Value::from("bool"),
            Value::Number(n) if n.is_u64() || n.is_i64() => Value::from("int"),
            Value::Number(_) => Value::from("float"),
            Value::String(_) => Value::from("string"),
            Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
        }
    }

    fn key_names(r: &Record) -> Vec<String> {
        r.key().parts().iter().map(|(n, _)| n.clone()).collect()
    }

    fn key_int(r: &Record, name: &str) -> i128 {
        match r.key().parts().iter().find(|(n, _)| n == name) {
            Some((_, primitives::KeyPart::Int(i))) => *i,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn sim_trip_has_the_brief_shape() {
        let brief = Record::from_json_str(BRIEF_TRIP).unwrap();
        let mut car = CarSim::new(7, "VIN-A");
        let day = car.day(date("20240315"), 5, 0).unwrap();
        assert_eq!(day.len(), 5);
        for SimRecord { record, metres } in &day {
            assert_eq!(record.format(), "trip-gps");
            assert_eq!(key_names(record), key_names(&brief));
            let cols = record.columns();
            assert_eq!(
                cols.keys().collect::<Vec<_>>(),
                brief.columns().keys().collect::<Vec<_>>()
            );
            for (name, v) in cols {
                assert_eq!(shape(v), shape(&brief.columns()[name]), "column {name}");
            }
            let gps = cols["GPS"].as_array().unwrap();
            let len = cols["len"].as_u64().unwrap() as usize;
            assert_eq!(gps.len(), len);
            let speeds: Vec<u64> = cols["SPEED"]
                .as_str()
                .unwrap()
                .split(',')
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(speeds.len(), len);
            assert_eq!(speeds[0], 0);
            for p in gps {
                let (lat, lng) = (p["lat"].as_f64().unwrap(), p["lng"].as_f64().unwrap());
                assert!(
                    (30.7..31.7).contains(&lat) && (121.0..122.0).contains(&lng),
                    "{p}"
                );
            }
            let start = key_int(record, "START_TIME");
            let end = key_int(record, "END_TIME");
            assert!(start < end, "{start} < {end}");
            assert_eq!(start / 1_000_000, 20240315);
            assert_eq!(end / 1_000_000, 20240315);
            assert_eq!(crate::records::record_date(record), Some(date("20240315")));
            // metres is the haversine length of the GPS track.
            let pts: Vec<(f64, f64)> = gps
                .iter()
                .map(|p| (p["lat"].as_f64().unwrap(), p["lng"].as_f64().unwrap()))
                .collect();
            assert_eq!(*metres, track_length_m(&pts).round() as u64);
            assert!(*metres > 0);
            // The JSON form round-trips through the brief's parser.
            assert_eq!(
                &Record::from_json_str(&record.to_json_string()).unwrap(),
                record
            );
        }
        // Sessions are numbered and trips are in time order.
        let starts: Vec<i128> = day
            .iter()
            .map(|s| key_int(&s.record, "START_TIME"))
            .collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(key_int(&day[4].record, "SESSION_ID"), 5);
    }

    #[test]
    fn sim_violation_has_the_brief_shape() {
        let brief = Record::from_json_str(BRIEF_CARVIO).unwrap();
        let mut car = CarSim::new(7, "VIN-A");
        let day = car.day(date("20180310"), 0, 3).unwrap();
        assert_eq!(day.len(), 3);
        for (i, s) in day.iter().enumerate() {
            assert_eq!(s.record.format(), "carvio");
            assert_eq!(s.metres, 0);
            assert_eq!(key_names(&s.record), key_names(&brief));
            assert_eq!(
                key_int(&s.record, "CARVIO_ID"),
                20180310 * 10_000 + i as i128 + 1
            );
            let cols = s.record.columns();
            assert_eq!(
                cols.keys().collect::<Vec<_>>(),
                brief.columns().keys().collect::<Vec<_>>()
            );
            for (name, v) in cols {
                assert_eq!(shape(v), shape(&brief.columns()[name]), "column {name}");
            }
            for same in [
                "format",
                "VEHICLE_DATA",
                "datetime",
                "viotype",
                "price",
                "point",
            ] {
                assert_eq!(cols[same], brief.columns()[same], "{same}");
            }
            assert_eq!(
                crate::records::record_date(&s.record),
                Some(date("20180310"))
            );
        }
    }

    #[test]
    fn sim_is_reproducible_from_the_seed() {
        let run = |seed, vid: &str| CarSim::new(seed, vid).day(date("20240315"), 4, 2).unwrap();
        assert_eq!(run(42, "VIN-A"), run(42, "VIN-A"));
        assert_ne!(run(42, "VIN-A"), run(43, "VIN-A"));
        assert_ne!(run(42, "VIN-A"), run(42, "VIN-B"));
    }

    #[test]
    fn haversine_matches_known_distances() {
        // One degree of latitude is about 111.2 km.
        let d = haversine_m((31.0, 121.5), (32.0, 121.5));
        assert!((d - 111_195.0).abs() < 50.0, "{d}");
        assert_eq!(haversine_m((31.2, 121.5), (31.2, 121.5)), 0.0);
        // The brief's example trip is a few tens of kilometres long.
        let brief = Record::from_json_str(BRIEF_TRIP).unwrap();
        let pts: Vec<(f64, f64)> = brief.columns()["GPS"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["lat"].as_f64().unwrap(), p["lng"].as_f64().unwrap()))
            .collect();
        let len = track_length_m(&pts);
        assert!((30_000.0..60_000.0).contains(&len), "{len}");
    }

    struct Fixture {
        keys: HdKeys,
        devices: DeviceList,
        vid: Vid,
        provision: DeviceProvision,
    }

    fn fixture() -> Fixture {
        let keys = HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(PHRASE).unwrap(),
            "",
            WalletNetwork::Regtest,
        )
        .unwrap();
        let vid = Vid::new("LBVNU79049SB81546").unwrap();
        let mut devices = DeviceList::new(WalletNetwork::Regtest);
        let entry = devices.add(&keys, vid.clone(), 16).unwrap().clone();
        let secret = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let provision = DeviceProvision {
            version: crate::provision::PROVISION_VERSION,
            vid: vid.as_str().to_owned(),
            network: "regtest".into(),
            chain_id: "carchain-test".into(),
            device_secret: hex::encode(secret.secret_bytes()),
            generation: 0,
            owner: keys.receiving_address(0).unwrap().to_string(),
            owner_rsa_pem: shared_reader().public_pem().unwrap(),
            pool: entry.addresses.clone(),
            user_seed: user_seed(&keys, &vid).unwrap().to_hex().to_string(),
            agent: keys.receiving_address(1).unwrap().to_string(),
        };
        Fixture {
            keys,
            devices,
            vid,
            provision,
        }
    }

    #[test]
    fn the_owner_recomputes_the_device_address_from_vid_and_date() {
        let f = fixture();
        let device = Device::from_provision(&f.provision).unwrap();
        assert_eq!(
            device.account(),
            AccountAddress::from_public_key(
                &SecretKey::from_slice(&[7u8; 32])
                    .unwrap()
                    .public_key(SECP256K1)
            )
        );
        let mut seen = std::collections::BTreeSet::new();
        let mut d = date("20240101");
        for _ in 0..40 {
            let ours = device.address_for(d).unwrap();
            let owner = f.devices.locate(&f.keys, &f.vid, d).unwrap();
            assert_eq!(ours, owner.address, "{d}");
            seen.insert(ours.to_owned());
            d = d.succ().unwrap();
        }
        assert!(seen.len() > 4, "days spread over the pool: {}", seen.len());
        // The address of a record is the one of its date.
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let rec = CarSim::new(1, "x")
            .day(date("20240110"), 1, 0)
            .unwrap()
            .remove(0);
        let entry = device.prepare(&spool, &rec.record, rec.metres).unwrap();
        assert_eq!(
            entry.address,
            f.devices
                .locate(&f.keys, &f.vid, date("20240110"))
                .unwrap()
                .address
        );
    }

    #[test]
    fn bad_provisioning_is_refused_clearly() {
        let f = fixture();
        let mut p = f.provision.clone();
        p.device_secret = "00".repeat(32);
        assert!(matches!(
            Device::from_provision(&p),
            Err(DeviceError::Provision(_))
        ));
        let mut p = f.provision.clone();
        p.pool = vec!["bc1qnotanaddress".into()];
        assert!(matches!(
            Device::from_provision(&p),
            Err(DeviceError::Provision(_))
        ));
        let mut p = f.provision;
        p.network = "moon".into();
        assert!(matches!(
            Device::from_provision(&p),
            Err(DeviceError::Provision(_))
        ));
    }

    #[test]
    fn a_record_without_a_date_is_a_clear_error() {
        let f = fixture();
        let device = Device::from_provision(&f.provision).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let rec =
            Record::from_json_str(r#"{"format":"x","key":{"ID":1},"value":{"a":1}}"#).unwrap();
        let e = device.prepare(&spool, &rec, 0).unwrap_err();
        assert!(matches!(e, DeviceError::MissingDate), "{e}");
        assert!(e.to_string().contains("no date"));
        assert!(spool.entries(None).unwrap().is_empty());
    }

    #[test]
    fn the_spool_resends_byte_identical_cells_after_a_restart() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let rec = Record::from_json_str(BRIEF_TRIP).unwrap();
        let first = {
            let device = Device::from_provision(&f.provision).unwrap();
            let spool = Spool::open(dir.path()).unwrap();
            device.prepare(&spool, &rec, 1234).unwrap()
            // "crash": everything in memory is dropped here.
        };
        // The write-ahead entry is on disk under the (address, key) name, mode 0600.
        let path = Spool::open(dir.path())
            .unwrap()
            .path_of(&first.address, &rec.key().encode());
        assert!(path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A leftover temporary file of an interrupted write is ignored.
        std::fs::write(dir.path().join(".x.json.1.2.tmp"), b"garbage").unwrap();

        // "restart": a new process state over the same directory.
        let device = Device::from_provision(&f.provision).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let listed = spool.entries(Some(f.vid.as_str())).unwrap();
        assert_eq!(listed, vec![first.clone()]);
        assert!(spool.entries(Some("another-vid")).unwrap().is_empty());
        let again = device.prepare(&spool, &rec, 1234).unwrap();
        assert_eq!(again, first, "same entry");
        assert_eq!(again.cells, first.cells, "byte-identical cells");
        // Sealing afresh would not give the same bytes (that is why the spool exists).
        let fresh = primitives::envelope::seal(
            &rec,
            &first.address,
            &[&shared_reader().public_key()],
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        assert_ne!(to_cells(&fresh).unwrap(), first.cells);
        // The spooled cells open to the record for the owner.
        let sealed = gateway::cells::from_cells(&first.cells).unwrap();
        assert_eq!(sealed.open(shared_reader().private_key()).unwrap(), rec);
        assert_eq!(sealed.dhash, rec.dhash());
        assert_eq!(first.size, stored_size(&first.cells));
        assert_eq!(first.metres, 1234);
        assert_eq!(first.format, "trip-gps");

        // Progress survives too.
        let mut progressed = again;
        progressed.root = Some([9; 32]);
        progressed.submitted_nonce = Some(3);
        spool.store(&progressed).unwrap();
        assert_eq!(
            spool.load(&first.address, &first.key.0).unwrap(),
            Some(progressed.clone())
        );

        // Another record under the same (address, key) is refused while one is pending.
        // (Edited as text: a JSON value round trip would reorder the key's parts.)
        let other = BRIEF_TRIP.replace("0,23,52,45,51,33,49,49,48,37", "0,1,2,3,4,5,6,7,8,9");
        let other = Record::from_json_str(&other).unwrap();
        assert_eq!(other.key(), rec.key());
        assert_ne!(other.dhash(), rec.dhash());
        assert!(matches!(
            device.prepare(&spool, &other, 0),
            Err(DeviceError::DuplicateKey { .. })
        ));

        // Setting aside and removing.
        let aside = spool.set_aside(&progressed).unwrap();
        assert!(aside.exists());
        assert!(spool.entries(None).unwrap().is_empty());
        let again = device.prepare(&spool, &rec, 1234).unwrap();
        assert_ne!(again.cells, first.cells, "a set-aside entry is not re-used");
        spool.remove(&again).unwrap();
        spool.remove(&again).unwrap();
        assert!(spool.entries(None).unwrap().is_empty());
    }

    #[test]
    fn a_sim_trip_seals_and_opens() {
        let f = fixture();
        let device = Device::from_provision(&f.provision).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut car = CarSim::new(3, f.vid.as_str());
        for s in car.day(date("20240315"), 2, 1).unwrap() {
            let entry = device.prepare(&spool, &s.record, s.metres).unwrap();
            let sealed = gateway::cells::from_cells(&entry.cells).unwrap();
            assert_eq!(sealed.address, entry.address);
            assert_eq!(
                sealed.open(shared_reader().private_key()).unwrap(),
                s.record
            );
            assert_eq!(entry.dhash, s.record.dhash());
        }
        assert_eq!(spool.entries(None).unwrap().len(), 3);
    }

    fn attestation(dhash: Hash32, writer: AccountAddress, placement: Hash32) -> Attestation {
        Attestation {
            dhash,
            size: 10,
            format: "trip-gps".into(),
            placement,
            writer,
            height: 5,
        }
    }

    #[test]
    fn the_duplicate_decision() {
        let me = AccountAddress([1; 20]);
        let ours = [3u8; 32];
        assert_eq!(check_attestation(None, &ours), AttestationCheck::Absent);
        let same = attestation(ours, me, [4; 32]);
        assert_eq!(
            check_attestation(Some(same.clone()), &ours),
            AttestationCheck::Same(same.clone())
        );
        let other = attestation([5; 32], me, [4; 32]);
        assert_eq!(
            check_attestation(Some(other.clone()), &ours),
            AttestationCheck::Different(other)
        );

        let f = fixture();
        let device = Device::from_provision(&f.provision).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let rec = Record::from_json_str(BRIEF_TRIP).unwrap();
        let mut entry = device.prepare(&spool, &rec, 0).unwrap();
        // Found before this put submitted anything: an earlier, independent put.
        assert!(!made_by_this_put(&same, &entry, me));
        entry.root = Some([4; 32]);
        entry.submitted_nonce = Some(0);
        assert!(made_by_this_put(&same, &entry, me));
        assert!(!made_by_this_put(&same, &entry, AccountAddress([2; 20])));
        entry.root = Some([6; 32]);
        assert!(!made_by_this_put(&same, &entry, me));
    }

    fn rejected(msg: &str) -> GatewayError {
        GatewayError::Remote {
            code: ErrorCode::Rejected,
            message: msg.into(),
        }
    }

    #[test]
    fn submit_failures_are_classified() {
        use SubmitAction::*;
        let cases = [
            (
                rejected("duplicate: this (address, key) is already attested"),
                CheckAttestation,
            ),
            (
                rejected("duplicate: this transaction is already in the mempool"),
                CheckAttestation,
            ),
            (rejected("nonce_too_low: expected 4, got 3"), RenewNonce),
            (rejected("insufficient_funds: no fee credits"), Fail),
            (rejected("unauthorized: only the current device key"), Fail),
            (
                rejected("mempool_full: 100000 pending and nothing cheaper to evict"),
                RetryTransport,
            ),
            (
                GatewayError::Unreachable("a: refused".into()),
                RetryTransport,
            ),
            (
                GatewayError::Remote {
                    code: ErrorCode::Timeout,
                    message: "not included within 30s".into(),
                },
                WaitAndCheck,
            ),
            (
                GatewayError::Remote {
                    code: ErrorCode::Unavailable,
                    message: "too few storage nodes".into(),
                },
                RetryTransport,
            ),
            (
                GatewayError::Remote {
                    code: ErrorCode::BadRequest,
                    message: "x".into(),
                },
                Fail,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify_submit_error(&e), want, "{e}");
        }
        assert!(is_transient(&GatewayError::Unreachable(String::new())));
        assert!(!is_transient(&rejected("duplicate: x")));
        assert!(!is_transient(&GatewayError::Remote {
            code: ErrorCode::Conflict,
            message: "other stripe".into()
        }));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff(b, m, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, m, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, m, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, m, 10), m);
        assert_eq!(backoff(b, m, 100), m);
        assert_eq!(backoff(b, m, 0), Duration::from_millis(100));
    }

    #[test]
    fn the_preferred_agent_is_the_provisioned_one() {
        let mut net = NetworkFile {
            genesis: chain::ledger::Genesis::example(1, 7),
            agents: Vec::new(),
        };
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            net.agents.push(gateway::network::AgentEntry {
                name: (*name).into(),
                account: format!("acct-{name}"),
                gateway: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                cert_sha256: String::new(),
                http: None,
            });
        }
        assert_eq!(preferred_agent(&net, "acct-b"), 1);
        assert_eq!(preferred_agent(&net, "unknown"), 0);
    }

    #[test]
    fn outcomes_serialize_with_their_kind() {
        let r = PutReceipt {
            vid: "v".into(),
            address: "a".into(),
            key: "{}".into(),
            key_hex: "00".into(),
            dhash: "11".into(),
            root: "22".into(),
            height: 3,
            fee: 0,
            new: false,
        };
        let v = serde_json::to_value(PutOutcome::AlreadyAttested(r.clone())).unwrap();
        assert_eq!(v["outcome"], "already_attested");
        assert_eq!(v["height"], 3);
        assert!(!PutOutcome::AlreadyAttested(r.clone()).is_new());
        assert!(PutOutcome::Attested(r).is_new());
    }
}
