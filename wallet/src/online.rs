//! The wallet on the chain: the owner's signing key, the device keys it provisions, the pool
//! commitment it registers, and reads whose every answer is checked against the chain.
//!
//! # Keys
//!
//! | what | derivation |
//! |---|---|
//! | owner key (signs every owner transaction) | BIP84 `m/84'/coin'/0'/0/0`, the wallet's first receiving address; its chain account is [`AccountAddress::from_public_key`] of it, the same 20 bytes the address encodes |
//! | device key of generation `g` | `HKDF-SHA256(ikm = BIP39 seed, salt = "carchain/device-key/v1", info = "vid:" ‖ u32_be(len(vid)) ‖ vid ‖ u32_be(g) ‖ u32_be(c))`, 32 bytes read as a secp256k1 secret; `c` starts at 0 and is bumped in the (probability 2^-128) case the bytes are not a valid secret |
//!
//! Both are recomputable from the mnemonic alone. Generation 0 is the key bound at `setup`;
//! each `reset` moves to the next generation. The generation is **not** kept in a file: the
//! chain's `DeviceRecord.resets` (read with a proof) is the authority, so a wallet recovered
//! from its mnemonic on another machine resets to the right next key, and two copies of a
//! wallet can never disagree about it.
//!
//! # Pool commitment
//!
//! `SetDup` publishes `hash(Domain::AddressPool, user_seed ‖ a_0 ‖ … ‖ a_{n-1})` where `a_i`
//! are the pool's 20-byte P2WPKH witness programs in pool order. The user seed (secret to
//! owner and device) salts it, so nobody can test a guessed address against it; the addresses
//! themselves never reach the chain.
//!
//! # Verified reads
//!
//! A read pays the agent with a signed `PayRead` transaction, gets the cells from the storage
//! cluster, then asks the chain — through the same untrusted agent, but with proofs checked
//! against the genesis validator set — for the attestation of every returned row and, for a
//! whole-address scan, the address's attestation count. [`check_rows`] refuses: a row whose
//! envelope names another address or key, rows out of order or repeated, an attestation whose
//! `dHash` differs from the envelope's, a record asked for by key that is not attested, and a
//! count that differs from the attested rows returned (the agent withheld records). Rows the
//! chain does not index (a put whose attestation has not landed) are left out of listings:
//! the index decides what the data set is. The wallet then decrypts each
//! record and, for a full record, re-hashes the plaintext against the `dHash`.

use std::collections::BTreeMap;
use std::time::Duration;

use chain::ledger::bank::{self, AccountRecord};
use chain::ledger::registry::{
    self, address_count_key, attestation_key, decode_count, Attestation, DeviceRecord, PoolRecord,
    RegistryCall,
};
use chain::tx::AccountAddress;
use gateway::cells::{self, from_cells, projection, stored_size, to_cells};
use gateway::client::{GatewayClient, GatewayError};
use gateway::proto::{Blob, Cells, PutRecord, Row, MAX_QUERY_KEYS, MAX_SCAN_ROWS};
use gateway::txs::{TxBuildError, TxBuilder};
use gateway::verify::{self, Proven, Verifier, VerifyError};
use gateway::NetworkFile;
use hkdf::Hkdf;
use primitives::envelope::SealedRecord;
use primitives::hash::{hash, Domain, Hash32};
use primitives::record::{KeyPart, Record};
use primitives::RecordKey;
use rsa::pkcs8::EncodePublicKey;
use secp256k1::{SecretKey, SECP256K1};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::devices::{DeviceList, RecordLocation};
use crate::error::WalletError;
use crate::keys::{normal, secp, HdKeys};
use crate::pool::{user_seed, RecordDate, UserSeed, Vid};
use crate::provision::{DeviceProvision, PROVISION_VERSION};
use crate::reader_key::ReaderKey;

/// Deadline of one gateway call that does not wait for a block.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// HKDF salt of device keys.
pub const DEVICE_KEY_SALT: &[u8] = b"carchain/device-key/v1";

/// Why an online operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// A wallet operation failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The gateway failed or refused.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    /// A chain answer did not verify.
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    /// A transaction could not be built.
    #[error("transaction: {0}")]
    Tx(#[from] TxBuildError),
    /// A record's cells are malformed.
    #[error("cells: {0}")]
    Cells(#[from] cells::CellsError),
    /// A record could not be sealed or opened (includes a plaintext that does not re-hash to
    /// its dHash).
    #[error(transparent)]
    Envelope(#[from] primitives::EnvelopeError),
    /// A record or key is malformed.
    #[error(transparent)]
    Record(#[from] primitives::RecordError),
    /// An address or account is invalid.
    #[error("{0}")]
    Address(String),
    /// The wallet and the network file disagree, or the network file is unusable.
    #[error("network: {0}")]
    Network(String),
    /// A proven chain value does not decode.
    #[error("chain state: {0}")]
    Chain(String),
    /// The device is not the wallet's, or not in the state the operation needs.
    #[error("{0}")]
    Device(String),
    /// The transaction was admitted but not included in a block within the wait.
    #[error("transaction {0} was not included in a block in time; check later with `wallet balance` or retry")]
    NotIncluded(String),
    /// The agent returned fewer (or more) records than the chain attests at the address.
    #[error("the chain attests {attested} record(s) at {address} but the agent returned {returned}: records were withheld or invented")]
    CountMismatch {
        /// The address.
        address: String,
        /// Attestations on chain.
        attested: u64,
        /// Rows returned.
        returned: u64,
    },
    /// A returned record has no attestation on chain.
    #[error("record {key} has no attestation on chain: the agent served an unattested record")]
    MissingAttestation {
        /// The record key (JSON).
        key: String,
    },
    /// A returned record's dHash differs from the attested one.
    #[error("record {key}: its dHash {found} differs from the attested {attested}")]
    DhashMismatch {
        /// The record key (JSON).
        key: String,
        /// The envelope's dHash (hex).
        found: String,
        /// The chain's dHash (hex).
        attested: String,
    },
    /// A returned row is not what was asked for.
    #[error("the agent returned a bad row: {0}")]
    BadRow(String),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
}

/// Result alias of this module.
pub type Result<T, E = OnlineError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Keys and commitments (pure).

/// The owner's secret key: `m/84'/coin'/0'/0/0`.
///
/// # Errors
/// [`WalletError::Derivation`].
pub fn owner_secret(keys: &HdKeys) -> Result<SecretKey> {
    let xpriv = keys
        .account_xpriv(0)?
        .derive_priv(secp(), &[normal(0)?, normal(0)?])
        .map_err(|e| WalletError::Derivation(e.to_string()))?;
    Ok(xpriv.private_key)
}

/// The owner's chain account.
///
/// # Errors
/// [`WalletError::Derivation`].
pub fn owner_account(keys: &HdKeys) -> Result<AccountAddress> {
    Ok(AccountAddress::from_public_key(
        &owner_secret(keys)?.public_key(SECP256K1),
    ))
}

/// The device key of `vid` at `generation` (see the module docs).
///
/// # Errors
/// [`WalletError::Derivation`] (never in practice).
pub fn device_secret(keys: &HdKeys, vid: &Vid, generation: u32) -> Result<SecretKey> {
    let hk = Hkdf::<Sha256>::new(Some(DEVICE_KEY_SALT), keys.seed());
    let name = vid.as_str().as_bytes();
    let len = u32::try_from(name.len()).map_err(|_| WalletError::InvalidVid(vid.to_string()))?;
    for counter in 0u32..16 {
        let mut info = Vec::with_capacity(name.len().saturating_add(16));
        info.extend_from_slice(b"vid:");
        info.extend_from_slice(&len.to_be_bytes());
        info.extend_from_slice(name);
        info.extend_from_slice(&generation.to_be_bytes());
        info.extend_from_slice(&counter.to_be_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(&info, out.as_mut_slice())
            .map_err(|e| WalletError::Derivation(e.to_string()))?;
        if let Ok(k) = SecretKey::from_slice(out.as_slice()) {
            return Ok(k);
        }
    }
    Err(WalletError::Derivation("no valid device key".into()).into())
}

/// Parses a bech32 P2WPKH address of `network` as a chain account.
///
/// # Errors
/// [`OnlineError::Address`].
pub fn account_of(address: &str, network: bitcoin::Network) -> Result<AccountAddress> {
    AccountAddress::from_bech32(address.trim(), network)
        .map_err(|e| OnlineError::Address(format!("invalid address: {e}")))
}

/// The `SetDup` commitment to a pool (see the module docs).
pub fn pool_commitment(seed: &UserSeed, pool: &[AccountAddress]) -> Hash32 {
    let mut msg = Zeroizing::new(Vec::with_capacity(
        pool.len().saturating_mul(20).saturating_add(32),
    ));
    msg.extend_from_slice(seed.as_bytes());
    for a in pool {
        msg.extend_from_slice(&a.0);
    }
    hash(Domain::AddressPool, &msg)
}

/// The owner's RSA public key as SPKI DER (what `Setup` binds).
///
/// # Errors
/// [`WalletError::Rsa`].
pub fn rsa_spki(reader: &ReaderKey) -> Result<Vec<u8>> {
    Ok(reader
        .public_key()
        .to_public_key_der()
        .map_err(|e| WalletError::Rsa(e.to_string()))?
        .into_vec())
}

// ---------------------------------------------------------------------------------------------
// Checking rows against proven attestations (pure).

/// A row whose cells, key, address and attestation agree.
#[derive(Debug, Clone)]
pub struct CheckedRow {
    /// The record key.
    pub key: RecordKey,
    /// The sealed record (or projection) as stored.
    pub sealed: SealedRecord,
    /// Its attestation on chain.
    pub attestation: Attestation,
}

/// The state keys to prove for `rows` at `account`: the address count first when `complete`,
/// then each row's attestation.
pub fn proof_keys(account: &AccountAddress, rows: &[Row], complete: bool) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(rows.len().saturating_add(1));
    if complete {
        keys.push(address_count_key(account));
    }
    keys.extend(rows.iter().map(|r| attestation_key(account, &r.key.0)));
    keys
}

/// Checks `rows` read from `address` against `values`, the proven values of
/// [`proof_keys`]`(account, rows, complete)` (see the module docs for what is refused).
///
/// # Errors
/// [`OnlineError::CountMismatch`], [`OnlineError::MissingAttestation`],
/// [`OnlineError::DhashMismatch`], [`OnlineError::BadRow`], [`OnlineError::Cells`],
/// [`OnlineError::Verify`].
pub fn check_rows(
    address: &str,
    rows: &[Row],
    values: &[Option<Vec<u8>>],
    complete: bool,
) -> Result<Vec<CheckedRow>> {
    let mut values = values.iter();
    let count = if complete {
        Some(
            decode_count(values.next().and_then(|v| v.as_deref()))
                .map_err(|e| OnlineError::Chain(e.to_string()))?,
        )
    } else {
        None
    };
    let mut out: Vec<CheckedRow> = Vec::with_capacity(rows.len());
    let mut previous: Option<&[u8]> = None;
    for row in rows {
        let value = values
            .next()
            .ok_or_else(|| OnlineError::BadRow("fewer proven values than rows".into()))?;
        if previous.is_some_and(|p| p >= row.key.0.as_slice()) {
            return Err(OnlineError::BadRow(
                "rows are not in strictly increasing key order (a row is repeated or misplaced)"
                    .into(),
            ));
        }
        previous = Some(row.key.0.as_slice());
        let key = RecordKey::decode(&row.key.0)
            .map_err(|e| OnlineError::BadRow(format!("undecodable key: {e}")))?;
        let key_json = key.to_json_string();
        let sealed = from_cells(&row.cells)?;
        if sealed.address != address {
            return Err(OnlineError::BadRow(format!(
                "record {key_json} is sealed for address {}, not {address}",
                sealed.address
            )));
        }
        if sealed.key != key {
            return Err(OnlineError::BadRow(format!(
                "the row key {key_json} differs from its envelope's key {}",
                sealed.key.to_json_string()
            )));
        }
        let Some(attestation) = verify::decode::<Attestation>("attestation", value.as_deref())?
        else {
            // Stored but not in the index (a put whose attestation is still on its way, or
            // never came): the chain decides what the data set is, so it is not shown.
            if complete || rows.len() > 1 {
                continue;
            }
            return Err(OnlineError::MissingAttestation { key: key_json });
        };
        if attestation.dhash != sealed.dhash {
            return Err(OnlineError::DhashMismatch {
                key: key_json,
                found: hex::encode(sealed.dhash),
                attested: hex::encode(attestation.dhash),
            });
        }
        out.push(CheckedRow {
            key,
            sealed,
            attestation,
        });
    }
    if values.next().is_some() {
        return Err(OnlineError::BadRow("more proven values than rows".into()));
    }
    if let Some(count) = count {
        let returned = u64::try_from(out.len()).unwrap_or(u64::MAX);
        if count != returned {
            return Err(OnlineError::CountMismatch {
                address: address.to_owned(),
                attested: count,
                returned,
            });
        }
    }
    Ok(out)
}

/// A record read, checked and decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct ReadRecord {
    /// The key as JSON text (written order).
    pub key: String,
    /// The order-preserving key encoding, hex.
    pub key_hex: String,
    /// `START_TIME`, if the key has one.
    pub start_time: Option<Value>,
    /// `END_TIME`, if the key has one.
    pub end_time: Option<Value>,
    /// The record's format.
    pub format: String,
    /// The decrypted columns.
    pub columns: BTreeMap<String, Value>,
    /// Whether every column was decrypted and the plaintext re-hashed to the attested dHash
    /// (false for a projection: then the envelope's dHash, bound into every column's AAD, was
    /// checked against the attested one).
    pub dhash_verified: bool,
    /// The dHash, hex.
    pub dhash: String,
    /// The stored size the chain attests.
    pub size: u64,
    /// The height of the attesting block.
    pub height: u64,
    /// The account that attested it (bech32).
    pub writer: String,
}

fn key_part(key: &RecordKey, name: &str) -> Option<Value> {
    key.parts()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| match p {
            KeyPart::Int(i) => u64::try_from(*i)
                .map(Value::from)
                .or_else(|_| i64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            KeyPart::Str(s) => Value::String(s.clone()),
            KeyPart::Max => Value::String(primitives::record::INF_MAX.to_owned()),
        })
}

/// Decrypts a checked row: all columns (re-hashing the plaintext against the dHash) when
/// `columns` is empty, else only those.
///
/// # Errors
/// [`OnlineError::Envelope`] (not a reader, tampered column, dHash mismatch, unknown column).
pub fn open_row(
    row: &CheckedRow,
    reader: &ReaderKey,
    columns: &[String],
    network: bitcoin::Network,
) -> Result<ReadRecord> {
    let (cols, full) = if columns.is_empty() {
        let rec: Record = row.sealed.open(reader.private_key())?;
        (rec.columns().clone(), true)
    } else {
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        (
            row.sealed.open_columns(reader.private_key(), &names)?,
            false,
        )
    };
    Ok(ReadRecord {
        key: row.key.to_json_string(),
        key_hex: hex::encode(row.key.encode()),
        start_time: key_part(&row.key, "START_TIME"),
        end_time: key_part(&row.key, "END_TIME"),
        format: row.sealed.format.clone(),
        columns: cols,
        dhash_verified: full,
        dhash: hex::encode(row.sealed.dhash),
        size: row.attestation.size,
        height: row.attestation.height,
        writer: row.attestation.writer.to_bech32(network),
    })
}

// ---------------------------------------------------------------------------------------------
// The connection.

/// A connection to a network's gateways, with a proof checker and a transaction builder.
#[derive(Debug)]
pub struct Online {
    network: NetworkFile,
    btc: bitcoin::Network,
    /// Reads, queries and nonces (a short per-call deadline, so a dead agent fails fast).
    client: GatewayClient,
    /// Submissions that wait for their block (a deadline above the wait).
    submitter: GatewayClient,
    verifier: Verifier,
    builder: TxBuilder,
    wait: Duration,
}

/// A transaction included in a block.
#[derive(Debug, Clone, Serialize)]
pub struct Included {
    /// What it did.
    pub call: &'static str,
    /// Its hash, hex.
    pub tx: String,
    /// The height of its block.
    pub height: u64,
}

impl Online {
    /// Connects to `network`'s agents for a wallet on `keys`' network; transactions wait up
    /// to `wait` for their block (at most 60 s).
    ///
    /// # Errors
    /// [`OnlineError::Network`] if the wallet and the chain use different networks;
    /// [`OnlineError::Gateway`], [`OnlineError::Verify`], [`OnlineError::Tx`] for setup.
    pub fn connect(network: NetworkFile, keys: &HdKeys, wait: Duration) -> Result<Self> {
        let btc = network
            .bitcoin_network()
            .map_err(|e| OnlineError::Network(e.to_string()))?;
        if btc != keys.network().bitcoin() {
            return Err(OnlineError::Network(format!(
                "the chain {} uses {} addresses but this wallet is on {}",
                network.genesis.chain_id,
                network.genesis.network,
                keys.network()
            )));
        }
        let wait = wait.min(Duration::from_secs(60));
        let client = GatewayClient::for_network(&network, 0, CALL_TIMEOUT)?;
        let submitter = GatewayClient::for_network(&network, 0, wait.saturating_add(CALL_TIMEOUT))?;
        let verifier = Verifier::from_genesis(&network.genesis)?;
        let builder = TxBuilder::new(&network.genesis)?;
        Ok(Online {
            network,
            btc,
            client,
            submitter,
            verifier,
            builder,
            wait,
        })
    }

    /// The bitcoin network of the chain's addresses.
    pub fn btc(&self) -> bitcoin::Network {
        self.btc
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.network.genesis.chain_id
    }

    /// Proven values of `keys` (in chunks the gateway accepts).
    ///
    /// # Errors
    /// [`OnlineError::Gateway`] (including a failed verification).
    pub async fn query(&mut self, keys: &[Vec<u8>]) -> Result<Proven> {
        let mut all: Option<Proven> = None;
        for chunk in keys.chunks(MAX_QUERY_KEYS) {
            let p = self
                .client
                .query_verified(&mut self.verifier, chunk)
                .await?;
            match &mut all {
                None => all = Some(p),
                Some(a) => {
                    a.height = a.height.max(p.height);
                    a.values.extend(p.values);
                }
            }
        }
        all.ok_or_else(|| OnlineError::Chain("nothing was asked".into()))
    }

    /// Signs `call` with `secret` at its next nonce, submits it and waits for its block.
    ///
    /// # Errors
    /// [`OnlineError::Gateway`] (a refusal names the chain's reason);
    /// [`OnlineError::NotIncluded`].
    pub async fn send(
        &self,
        secret: &SecretKey,
        what: &'static str,
        call: &RegistryCall,
    ) -> Result<Included> {
        let account = AccountAddress::from_public_key(&secret.public_key(SECP256K1));
        let nonce = self.client.next_nonce(account).await?;
        let tx = self.builder.registry(secret, nonce, call)?;
        let (hash, height) = self.submitter.submit(tx, self.wait).await?;
        let tx = hex::encode(hash);
        let height = height.ok_or_else(|| OnlineError::NotIncluded(tx.clone()))?;
        Ok(Included {
            call: what,
            tx,
            height,
        })
    }

    /// The answering agent's account (read fees go to it); also makes it the preferred agent.
    ///
    /// # Errors
    /// [`OnlineError::Gateway`].
    pub async fn agent(&self) -> Result<AccountAddress> {
        Ok(self.client.status().await?.agent)
    }

    /// A signed `PayRead` for one address, paying `agent`.
    ///
    /// # Errors
    /// [`OnlineError::Gateway`], [`OnlineError::Tx`].
    pub async fn payment(&self, secret: &SecretKey, agent: AccountAddress) -> Result<Vec<u8>> {
        let account = AccountAddress::from_public_key(&secret.public_key(SECP256K1));
        let nonce = self.client.next_nonce(account).await?;
        let call = RegistryCall::PayRead {
            agent,
            addresses: 1,
        };
        Ok(self.builder.registry(secret, nonce, &call)?)
    }

    /// The proven device and pool records of `vid`.
    ///
    /// # Errors
    /// [`OnlineError::Gateway`], [`OnlineError::Verify`].
    pub async fn device(
        &mut self,
        vid: &Vid,
    ) -> Result<(Option<DeviceRecord>, Option<PoolRecord>, u64)> {
        let keys = vec![
            registry::device_key(vid.as_str()),
            registry::pool_key(vid.as_str()),
        ];
        let p = self.query(&keys).await?;
        let mut v = p.values.iter();
        let dev = verify::decode("device record", v.next().and_then(|x| x.as_deref()))?;
        let pool = verify::decode("pool record", v.next().and_then(|x| x.as_deref()))?;
        Ok((dev, pool, p.height))
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// What `device setup` and `device reset` did.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReport {
    /// The device.
    pub vid: String,
    /// The chain.
    pub chain_id: String,
    /// The owner's account (bech32).
    pub owner: String,
    /// The device key's account (bech32).
    pub device_account: String,
    /// The device key's generation.
    pub generation: u32,
    /// The agent (bech32).
    pub agent: String,
    /// The pool size.
    pub pool_size: usize,
    /// The pool commitment, hex (setup only).
    pub commitment: Option<String>,
    /// Transactions sent and included.
    pub transactions: Vec<Included>,
    /// Steps skipped because the chain already had them (a resumed setup).
    pub skipped: Vec<&'static str>,
    /// The provisioning file written.
    pub file: String,
}

#[allow(clippy::too_many_arguments)]
fn provision(
    keys: &HdKeys,
    reader: &ReaderKey,
    list: &DeviceList,
    vid: &Vid,
    chain_id: &str,
    device: &SecretKey,
    generation: u32,
    agent: &str,
    btc: bitcoin::Network,
) -> Result<DeviceProvision> {
    let entry = list.get(vid)?;
    Ok(DeviceProvision {
        version: PROVISION_VERSION,
        vid: vid.to_string(),
        network: keys.network().as_str().to_owned(),
        chain_id: chain_id.to_owned(),
        device_secret: hex::encode(device.secret_bytes()),
        generation,
        owner: owner_account(keys)?.to_bech32(btc),
        owner_rsa_pem: reader.public_pem()?,
        pool: entry.addresses.clone(),
        user_seed: user_seed(keys, vid)?.to_hex().to_string(),
        agent: agent.to_owned(),
    })
}

/// Setup parameters.
#[derive(Debug, Clone)]
pub struct SetupParams<'a> {
    /// The device.
    pub vid: &'a Vid,
    /// Its agent's account (bech32).
    pub agent: &'a str,
    /// Last height the pool is valid.
    pub valid_until: u64,
    /// Where to write the provisioning file.
    pub out: &'a std::path::Path,
}

/// `setup` + `setDup`: binds the device (generation-0 key) to the owner, registers the pool
/// commitment, writes the provisioning file. The device must already be in `list`. Steps the
/// chain already has (same owner, same key, same commitment) are skipped, so an interrupted
/// setup can be rerun.
///
/// # Errors
/// [`OnlineError`]; [`OnlineError::Device`] if another owner holds the VID or it was reset.
pub async fn setup(
    online: &mut Online,
    keys: &HdKeys,
    reader: &ReaderKey,
    list: &DeviceList,
    p: &SetupParams<'_>,
) -> Result<ProvisionReport> {
    let btc = online.btc();
    let vid = p.vid;
    let agent = account_of(p.agent, btc)?;
    let owner = owner_secret(keys)?;
    let owner_acct = owner_account(keys)?;
    let device = device_secret(keys, vid, 0)?;
    let device_pk = device.public_key(SECP256K1);
    let entry = list.get(vid)?;
    let pool: Vec<AccountAddress> = entry
        .addresses
        .iter()
        .map(|a| account_of(a, btc))
        .collect::<Result<_>>()?;
    let size =
        u32::try_from(pool.len()).map_err(|_| WalletError::MalformedPool("too large".into()))?;
    let commitment = pool_commitment(&user_seed(keys, vid)?, &pool);

    let (dev, reg, _) = online.device(vid).await?;
    let mut transactions = Vec::new();
    let mut skipped = Vec::new();
    match dev {
        Some(d) if d.owner != owner_acct => {
            return Err(OnlineError::Device(format!(
                "device {vid} is already set up by another owner ({})",
                d.owner.to_bech32(btc)
            )))
        }
        Some(d) if d.device_key == device_pk => skipped.push("setup"),
        Some(d) => {
            return Err(OnlineError::Device(format!(
                "device {vid} is already set up by this wallet and was reset {} time(s); use `wallet device reset`",
                d.resets
            )))
        }
        None => {
            let call = RegistryCall::Setup {
                vid: vid.to_string(),
                rsa_spki: rsa_spki(reader)?,
                device_key: device_pk,
                agent,
            };
            transactions.push(online.send(&owner, "setup", &call).await?);
        }
    }
    if reg.is_some_and(|r| {
        r.commitment == commitment && r.size == size && r.valid_until == p.valid_until
    }) {
        skipped.push("setDup");
    } else {
        let call = RegistryCall::SetDup {
            vid: vid.to_string(),
            commitment,
            size,
            valid_until: p.valid_until,
        };
        transactions.push(online.send(&owner, "setDup", &call).await?);
    }
    let agent_b32 = agent.to_bech32(btc);
    let file = provision(
        keys,
        reader,
        list,
        vid,
        online.chain_id(),
        &device,
        0,
        &agent_b32,
        btc,
    )?;
    file.save(p.out)?;
    Ok(ProvisionReport {
        vid: vid.to_string(),
        chain_id: online.chain_id().to_owned(),
        owner: owner_acct.to_bech32(btc),
        device_account: AccountAddress::from_public_key(&device_pk).to_bech32(btc),
        generation: 0,
        agent: agent_b32,
        pool_size: pool.len(),
        commitment: Some(hex::encode(commitment)),
        transactions,
        skipped,
        file: p.out.display().to_string(),
    })
}

/// `reset`: the next generation's device key (generation = the chain's proven `resets` + 1),
/// optionally a new agent (default: the current one), a `Reset` signed by the owner, and a new
/// provisioning file.
///
/// # Errors
/// [`OnlineError`]; [`OnlineError::Device`] if the device is not set up or not the wallet's.
pub async fn reset(
    online: &mut Online,
    keys: &HdKeys,
    reader: &ReaderKey,
    list: &DeviceList,
    vid: &Vid,
    agent: Option<&str>,
    out: &std::path::Path,
) -> Result<ProvisionReport> {
    let btc = online.btc();
    let owner = owner_secret(keys)?;
    let owner_acct = owner_account(keys)?;
    let pool_size = list.get(vid)?.addresses.len();
    let (dev, _, _) = online.device(vid).await?;
    let dev = dev.ok_or_else(|| {
        OnlineError::Device(format!(
            "device {vid} is not set up on chain {}: run `wallet device setup` first",
            online.chain_id()
        ))
    })?;
    if dev.owner != owner_acct {
        return Err(OnlineError::Device(format!(
            "device {vid} belongs to {}, not to this wallet ({})",
            dev.owner.to_bech32(btc),
            owner_acct.to_bech32(btc)
        )));
    }
    let generation = dev
        .resets
        .checked_add(1)
        .ok_or_else(|| OnlineError::Device(format!("device {vid} cannot be reset again")))?;
    let agent = match agent {
        Some(a) => account_of(a, btc)?,
        None => dev.agent,
    };
    let device = device_secret(keys, vid, generation)?;
    let device_pk = device.public_key(SECP256K1);
    let call = RegistryCall::Reset {
        vid: vid.to_string(),
        device_key: device_pk,
        agent,
        rsa_spki: None,
    };
    let included = online.send(&owner, "reset", &call).await?;
    let agent_b32 = agent.to_bech32(btc);
    let file = provision(
        keys,
        reader,
        list,
        vid,
        online.chain_id(),
        &device,
        generation,
        &agent_b32,
        btc,
    )?;
    file.save(out)?;
    Ok(ProvisionReport {
        vid: vid.to_string(),
        chain_id: online.chain_id().to_owned(),
        owner: owner_acct.to_bech32(btc),
        device_account: AccountAddress::from_public_key(&device_pk).to_bech32(btc),
        generation,
        agent: agent_b32,
        pool_size,
        commitment: None,
        transactions: vec![included],
        skipped: Vec::new(),
        file: out.display().to_string(),
    })
}

/// What a read returned.
#[derive(Debug, Clone, Serialize)]
pub struct ReadReport {
    /// The device.
    pub vid: String,
    /// The day.
    pub date: String,
    /// The pool address read.
    pub address: String,
    /// Its BIP32 path.
    pub path: String,
    /// Whether the agent was shown to have returned every record of the address (a
    /// whole-address scan checked against the attested count).
    pub complete: bool,
    /// The finalized height the proofs were checked at.
    pub proven_height: u64,
    /// The records, in key order.
    pub records: Vec<ReadRecord>,
}

/// What to read.
#[derive(Debug, Clone)]
pub enum ReadRange {
    /// The whole address (checked for completeness).
    All,
    /// One key.
    One(RecordKey),
    /// `start <= key < end`.
    Range(RecordKey, RecordKey),
}

fn want_cells(columns: &[String]) -> Option<Vec<String>> {
    (!columns.is_empty()).then(|| projection(columns))
}

/// Reads records of `vid` on `date` (a whole address, one key or a range), verifying every
/// row (see the module docs) and decrypting them.
///
/// # Errors
/// [`OnlineError`].
#[allow(clippy::too_many_arguments)]
pub async fn read(
    online: &mut Online,
    keys: &HdKeys,
    reader: &ReaderKey,
    list: &DeviceList,
    vid: &Vid,
    date: RecordDate,
    range: &ReadRange,
    columns: &[String],
) -> Result<ReadReport> {
    let loc: RecordLocation = list.locate(keys, vid, date)?;
    let owner = owner_secret(keys)?;
    let (proven_height, records) =
        read_at(online, &owner, reader, &loc.address, range, columns).await?;
    Ok(ReadReport {
        vid: vid.to_string(),
        date: date.to_string(),
        address: loc.address,
        path: loc.path,
        complete: matches!(range, ReadRange::All),
        proven_height,
        records,
    })
}

/// Reads records at `address`, paid by `payer`, verifies and decrypts them; see [`read`].
/// Returns the height the proofs were checked at and the records. A whole-address listing
/// whose proofs count more records than the scan returned is read once more (a record may
/// have been attested between the scan and the proof) before it is called withheld.
///
/// # Errors
/// [`OnlineError`].
pub async fn read_at(
    online: &mut Online,
    payer: &SecretKey,
    reader: &ReaderKey,
    address: &str,
    range: &ReadRange,
    columns: &[String],
) -> Result<(u64, Vec<ReadRecord>)> {
    match read_once(online, payer, reader, address, range, columns).await {
        Err(OnlineError::CountMismatch {
            attested, returned, ..
        }) if attested > returned => {
            read_once(online, payer, reader, address, range, columns).await
        }
        other => other,
    }
}

async fn read_once(
    online: &mut Online,
    payer: &SecretKey,
    reader: &ReaderKey,
    address: &str,
    range: &ReadRange,
    columns: &[String],
) -> Result<(u64, Vec<ReadRecord>)> {
    let btc = online.btc();
    let account = account_of(address, btc)?;
    let agent = online.agent().await?;
    let payment = online.payment(payer, agent).await?;
    let want = want_cells(columns);
    let rows = match range {
        ReadRange::All => {
            online
                .client
                .scan(address, &[], None, want, MAX_SCAN_ROWS, payment)
                .await?
        }
        ReadRange::Range(start, end) => {
            let (s, e) = (start.encode(), end.encode());
            if s >= e {
                return Err(OnlineError::NotFound(
                    "the range is empty: the end key does not sort after the start key".into(),
                ));
            }
            let rows = online
                .client
                .scan(address, &s, Some(&e), want, MAX_SCAN_ROWS, payment)
                .await?;
            if let Some(r) = rows
                .iter()
                .find(|r| r.key.0.as_slice() < s.as_slice() || r.key.0.as_slice() >= e.as_slice())
            {
                return Err(OnlineError::BadRow(format!(
                    "key {} is outside the range asked for",
                    hex::encode(&r.key.0)
                )));
            }
            rows
        }
        ReadRange::One(key) => {
            let k = key.encode();
            let cells = online.client.get(address, &k, want, payment).await?;
            let proven = online.query(&[attestation_key(&account, &k)]).await?;
            let attested = proven.values.first().is_some_and(Option::is_some);
            match cells {
                None if attested => {
                    return Err(OnlineError::BadRow(format!(
                        "the chain attests {} at {address} but the agent returned nothing: it is withholding the record",
                        key.to_json_string()
                    )))
                }
                None => {
                    return Err(OnlineError::NotFound(format!(
                        "no record {} at {address} (none is attested on chain either)",
                        key.to_json_string()
                    )))
                }
                Some(cells) => {
                    let rows = vec![Row {
                        key: Blob(k),
                        cells,
                    }];
                    let checked = check_rows(address, &rows, &proven.values, false)?;
                    let records = checked
                        .iter()
                        .map(|r| open_row(r, reader, columns, btc))
                        .collect::<Result<_>>()?;
                    return Ok((proven.height, records));
                }
            }
        }
    };
    let complete = matches!(range, ReadRange::All);
    let proven = online.query(&proof_keys(&account, &rows, complete)).await?;
    let checked = check_rows(address, &rows, &proven.values, complete)?;
    let records = checked
        .iter()
        .map(|r| open_row(r, reader, columns, btc))
        .collect::<Result<_>>()?;
    Ok((proven.height, records))
}

/// What `put` did.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    /// The wallet's own address the record is stored at.
    pub address: String,
    /// The key (JSON).
    pub key: String,
    /// The format.
    pub format: String,
    /// The dHash, hex.
    pub dhash: String,
    /// The stored size.
    pub size: u64,
    /// The stripe root (placement commitment), hex.
    pub placement: String,
    /// Shards stored durably / still missing.
    pub durable: u32,
    /// Shards still missing (repair completes them).
    pub missing: u32,
    /// The attestation transaction.
    pub attested: Included,
}

/// `putWalKV`: seals `record` for the wallet's own RSA key at its first receiving address,
/// stores its cells and attests it with `AttestOwn` signed by the owner. Refuses a key that
/// is already attested (it could never be attested again, and overwriting the stored cells
/// would break the attested record).
///
/// # Errors
/// [`OnlineError`].
pub async fn put_own(
    online: &mut Online,
    keys: &HdKeys,
    reader: &ReaderKey,
    record: &Record,
) -> Result<PutReport> {
    let owner = owner_secret(keys)?;
    let account = owner_account(keys)?;
    let address = keys.receiving_address(0)?.to_string();
    let key = record.key().encode();
    let proven = online.query(&[attestation_key(&account, &key)]).await?;
    if proven.values.first().is_some_and(Option::is_some) {
        return Err(OnlineError::Device(format!(
            "{} is already attested at {address}; an attested record cannot be replaced",
            record.key().to_json_string()
        )));
    }
    let sealed = crate::records::seal_record(record, &address, reader, &[])?;
    let cells: Cells = to_cells(&sealed)?;
    let size = stored_size(&cells);
    let (roots, durable, missing) = online
        .client
        .put(
            &address,
            vec![PutRecord {
                key: Blob(key.clone()),
                cells,
            }],
        )
        .await?;
    let placement = *roots.first().ok_or_else(|| {
        OnlineError::BadRow("the agent stored the record but returned no root".into())
    })?;
    let call = RegistryCall::AttestOwn {
        key,
        dhash: sealed.dhash,
        size,
        format: record.format().to_owned(),
        placement,
    };
    let attested = online.send(&owner, "attestOwn", &call).await?;
    Ok(PutReport {
        address,
        key: record.key().to_json_string(),
        format: record.format().to_owned(),
        dhash: hex::encode(sealed.dhash),
        size,
        placement: hex::encode(placement),
        durable,
        missing,
        attested,
    })
}

/// The owner account's proven balance.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceReport {
    /// The account (bech32).
    pub account: String,
    /// Transferable tokens (decimal).
    pub tokens: String,
    /// Fee credits (decimal).
    pub credits: String,
    /// Tokens in base units.
    pub tokens_base: u64,
    /// Credits in base units.
    pub credits_base: u64,
    /// The account's next nonce (confirmed transactions only).
    pub nonce: u64,
    /// The finalized height it was proven at.
    pub height: u64,
}

/// The proven balance of the owner account.
///
/// # Errors
/// [`OnlineError`].
pub async fn balance(online: &mut Online, keys: &HdKeys) -> Result<BalanceReport> {
    let account = owner_account(keys)?;
    let proven = online.query(&[bank::account_key(&account)]).await?;
    let rec: AccountRecord =
        verify::decode("account", proven.values.first().and_then(|v| v.as_deref()))?
            .unwrap_or_default();
    Ok(BalanceReport {
        account: account.to_bech32(online.btc()),
        tokens: rec.tokens.to_string(),
        credits: rec.credits.to_string(),
        tokens_base: rec.tokens.to_base_units(),
        credits_base: rec.credits.to_base_units(),
        nonce: rec.nonce,
        height: proven.height,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::keys::{MnemonicPhrase, WalletNetwork};
    use crate::test_support::shared_reader;
    use chain::block::{txs_root, validator_set_hash, BlockHash, ChainContext, Header};
    use chain::consensus::ValidatorSet;
    use chain::consensus::{
        secp as vote, CommitCertificate, CommitSignature, Context, InstanceId, Round,
    };
    use chain::ledger::{Genesis, Ledger};
    use chain::light::{SignedHeader, StateAnswer};
    use chain::state::{apply, prove, MemNodes, WriteSet, EMPTY_ROOT};
    use primitives::codec;

    const WORDS: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn keys() -> HdKeys {
        HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(WORDS).unwrap(),
            "",
            WalletNetwork::Regtest,
        )
        .unwrap()
    }

    fn vid(s: &str) -> Vid {
        Vid::new(s).unwrap()
    }

    #[test]
    fn device_keys_are_recoverable_and_differ_per_generation_vid_and_owner() {
        let (a, b) = (keys(), keys()); // "recovered" twice from the same words
        let v = vid("LBVNU79049SB81546");
        let k0 = device_secret(&a, &v, 0).unwrap();
        assert_eq!(k0, device_secret(&b, &v, 0).unwrap());
        let k1 = device_secret(&a, &v, 1).unwrap();
        assert_ne!(k0, k1);
        assert_eq!(k1, device_secret(&b, &v, 1).unwrap());
        assert_ne!(k0, device_secret(&a, &vid("OTHER"), 0).unwrap());
        assert_ne!(k0, owner_secret(&a).unwrap());
        // A passphrase makes another wallet, hence other device keys.
        let other = HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(WORDS).unwrap(),
            "x",
            WalletNetwork::Regtest,
        )
        .unwrap();
        assert_ne!(k0, device_secret(&other, &v, 0).unwrap());
    }

    #[test]
    fn the_owner_account_is_the_first_receiving_address() {
        let k = keys();
        let acct = owner_account(&k).unwrap();
        assert_eq!(
            acct.to_bech32(bitcoin::Network::Regtest),
            k.receiving_address(0).unwrap().to_string()
        );
        assert_eq!(
            account_of(
                &k.receiving_address(0).unwrap().to_string(),
                bitcoin::Network::Regtest
            )
            .unwrap(),
            acct
        );
        assert!(account_of("bc1qnotanaddress", bitcoin::Network::Regtest).is_err());
    }

    #[test]
    fn the_pool_commitment_is_deterministic_salted_and_ordered() {
        let k = keys();
        let v = vid("LBVNU79049SB81546");
        let seed = user_seed(&k, &v).unwrap();
        let pool: Vec<AccountAddress> = (0u8..4).map(|i| AccountAddress([i; 20])).collect();
        let c = pool_commitment(&seed, &pool);
        assert_eq!(c, pool_commitment(&user_seed(&keys(), &v).unwrap(), &pool));
        // Another device's seed (the salt) changes it.
        assert_ne!(
            c,
            pool_commitment(&user_seed(&k, &vid("OTHER")).unwrap(), &pool)
        );
        // Order and membership matter.
        let mut swapped = pool.clone();
        swapped.swap(0, 1);
        assert_ne!(c, pool_commitment(&seed, &swapped));
        assert_ne!(c, pool_commitment(&seed, &pool[..3]));
        // Without the salt it is not the plain hash of the addresses.
        let plain: Vec<u8> = pool.iter().flat_map(|a| a.0).collect();
        assert_ne!(c, hash(Domain::AddressPool, &plain));
    }

    const ADDR: &str = "bcrt1qexampleaddress";

    fn sealed_row(session: i64) -> (Row, SealedRecord) {
        let rec = Record::from_json_str(&format!(
            r#"{{"format":"trip-gps","key":{{"SESSION_ID":{session},"START_TIME":20160511071428,"END_TIME":20160511094623}},"value":{{"SPEED":"0,23,52","len":3}}}}"#
        ))
        .unwrap();
        let sealed = crate::records::seal_record(&rec, ADDR, shared_reader(), &[]).unwrap();
        let row = Row {
            key: Blob(rec.key().encode()),
            cells: to_cells(&sealed).unwrap(),
        };
        (row, sealed)
    }

    fn attestation_of(sealed: &SealedRecord) -> Vec<u8> {
        codec::to_vec(&Attestation {
            dhash: sealed.dhash,
            size: 100,
            format: sealed.format.clone(),
            placement: [7; 32],
            writer: AccountAddress([1; 20]),
            height: 12,
        })
        .unwrap()
    }

    fn count(n: u64) -> Option<Vec<u8>> {
        Some(n.to_be_bytes().to_vec())
    }

    #[test]
    fn honest_rows_check_and_open() {
        let (r1, s1) = sealed_row(1);
        let (r2, s2) = sealed_row(2);
        let rows = vec![r1, r2];
        let values = vec![
            count(2),
            Some(attestation_of(&s1)),
            Some(attestation_of(&s2)),
        ];
        let checked = check_rows(ADDR, &rows, &values, true).unwrap();
        assert_eq!(checked.len(), 2);
        let opened =
            open_row(&checked[0], shared_reader(), &[], bitcoin::Network::Regtest).unwrap();
        assert!(opened.dhash_verified);
        assert_eq!(opened.columns["SPEED"], serde_json::json!("0,23,52"));
        assert_eq!(
            opened.start_time,
            Some(serde_json::json!(20_160_511_071_428u64))
        );
        assert_eq!(opened.height, 12);
        let part = open_row(
            &checked[1],
            shared_reader(),
            &["len".to_owned()],
            bitcoin::Network::Regtest,
        )
        .unwrap();
        assert!(!part.dhash_verified);
        assert_eq!(part.columns.len(), 1);
        // A partial read carries no count.
        check_rows(ADDR, &rows, &values[1..], false).unwrap();
        // An empty address with a zero (absent) count is complete.
        assert!(check_rows(ADDR, &[], &[None], true).unwrap().is_empty());
        // The keys to prove: the count first, then one attestation per row.
        let acct = AccountAddress([3; 20]);
        let pk = proof_keys(&acct, &rows, true);
        assert_eq!(pk[0], address_count_key(&acct));
        assert_eq!(pk[2], attestation_key(&acct, &rows[1].key.0));
    }

    #[test]
    fn a_withheld_record_is_a_count_mismatch() {
        let (r1, s1) = sealed_row(1);
        let values = vec![count(2), Some(attestation_of(&s1))];
        assert!(matches!(
            check_rows(ADDR, &[r1], &values, true),
            Err(OnlineError::CountMismatch {
                attested: 2,
                returned: 1,
                ..
            })
        ));
        // Nothing returned while one record is attested.
        assert!(matches!(
            check_rows(ADDR, &[], &[count(1)], true),
            Err(OnlineError::CountMismatch { .. })
        ));
    }

    #[test]
    fn a_repeated_row_cannot_pad_the_count() {
        let (r1, s1) = sealed_row(1);
        let a = Some(attestation_of(&s1));
        let values = vec![count(2), a.clone(), a];
        assert!(matches!(
            check_rows(ADDR, &[r1.clone(), r1], &values, true),
            Err(OnlineError::BadRow(_))
        ));
    }

    #[test]
    fn an_unattested_record_is_not_listed_and_refused_when_asked_for() {
        let (r1, s1) = sealed_row(1);
        let (r2, _) = sealed_row(2);
        // A listing skips what the chain does not index, and still counts what it does.
        let listed = check_rows(
            ADDR,
            &[r1.clone(), r2.clone()],
            &[count(1), Some(attestation_of(&s1)), None],
            true,
        )
        .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(matches!(
            check_rows(ADDR, std::slice::from_ref(&r2), &[count(1), None], true),
            Err(OnlineError::CountMismatch { .. })
        ));
        // One record asked for by key and not attested is an error, not an empty answer.
        assert!(matches!(
            check_rows(ADDR, &[r2], &[None], false),
            Err(OnlineError::MissingAttestation { .. })
        ));
    }

    #[test]
    fn a_dhash_mismatch_is_refused() {
        let (r1, _) = sealed_row(1);
        let (_, other) = sealed_row(9);
        assert!(matches!(
            check_rows(ADDR, &[r1], &[count(1), Some(attestation_of(&other))], true),
            Err(OnlineError::DhashMismatch { .. })
        ));
    }

    #[test]
    fn rows_of_another_address_or_key_and_tampered_cells_are_refused() {
        let (r1, s1) = sealed_row(1);
        let values = vec![count(1), Some(attestation_of(&s1))];
        assert!(matches!(
            check_rows("bcrt1qother", std::slice::from_ref(&r1), &values, true),
            Err(OnlineError::BadRow(_))
        ));
        let (r2, _) = sealed_row(2);
        let mut moved = r1.clone();
        moved.key = r2.key;
        assert!(matches!(
            check_rows(ADDR, &[moved], &values, true),
            Err(OnlineError::BadRow(_))
        ));
        // A forged attestation value that does not decode.
        assert!(matches!(
            check_rows(
                ADDR,
                std::slice::from_ref(&r1),
                &[count(1), Some(vec![1, 2, 3])],
                true
            ),
            Err(OnlineError::Verify(_))
        ));
        // A swapped column ciphertext passes the index check but fails to open.
        let (r3, s3) = sealed_row(3);
        let mut tampered = r1.clone();
        tampered
            .cells
            .insert("SPEED".into(), r3.cells["SPEED"].clone());
        let checked = check_rows(ADDR, &[tampered], &values, true).unwrap();
        assert!(open_row(&checked[0], shared_reader(), &[], bitcoin::Network::Regtest).is_err());
        let _ = s3;
    }

    /// A header at height 5 over `writes`, signed by the example genesis' validator.
    fn signed_state(
        genesis: &Genesis,
        signer: &SecretKey,
        writes: &[(Vec<u8>, Vec<u8>)],
    ) -> (SignedHeader, MemNodes, Hash32) {
        let (_, validators) = Ledger::new().init_genesis(genesis).unwrap();
        let set = ValidatorSet::new(validators.clone()).unwrap();
        let ws: WriteSet = writes
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let mut nodes = MemNodes::new();
        let u = apply(&nodes, EMPTY_ROOT, &ws).unwrap();
        nodes.commit(&u);
        let vh = validator_set_hash(&set);
        let proposer = validators[0].address;
        let header = Header {
            chain_id: genesis.chain_id.clone(),
            instance: InstanceId(0),
            height: 5,
            time_ms: genesis.genesis_time_ms + 5_000,
            prev_hash: BlockHash([1; 32]),
            txs_root: txs_root(&[]),
            state_root: u.root,
            validators_hash: vh,
            next_validators_hash: vh,
            proposer,
        };
        let ctx = ChainContext::new(genesis.chain_id.clone());
        let mut cert = CommitCertificate {
            instance: header.instance,
            height: header.height,
            round: Round(0),
            value_id: header.hash().unwrap(),
            signatures: Vec::new(),
        };
        cert.signatures = vec![CommitSignature {
            validator: proposer,
            signature: vote::sign(
                signer,
                &ctx.vote_sign_bytes(&cert.vote_of(&proposer)).unwrap(),
            ),
        }];
        (
            SignedHeader {
                header,
                commit: cert,
            },
            nodes,
            u.root,
        )
    }

    #[test]
    fn proofs_are_checked_and_a_forged_proof_or_signature_is_refused() {
        let genesis = Genesis::example(1, 7);
        let (_, s1) = sealed_row(1);
        let acct = AccountAddress([5; 20]);
        let key = attestation_key(&acct, b"k");
        let ckey = address_count_key(&acct);
        let writes = vec![
            (key.clone(), attestation_of(&s1)),
            (ckey.clone(), 1u64.to_be_bytes().to_vec()),
        ];
        let (signed, nodes, root) = signed_state(&genesis, &Genesis::example_key(7, 0), &writes);
        let answer = |k: &Vec<u8>, v: Option<Vec<u8>>| StateAnswer {
            key: k.clone(),
            value: v,
            proof: prove(&nodes, root, k).unwrap(),
        };
        let keys = vec![ckey.clone(), key.clone()];
        let honest = vec![
            answer(&ckey, count(1)),
            answer(&key, Some(attestation_of(&s1))),
        ];
        let mut verifier = Verifier::from_genesis(&genesis).unwrap();
        let proven = verifier.check(&signed, &keys, &honest).unwrap();
        assert_eq!(proven.height, 5);
        assert_eq!(proven.values[0], count(1));

        // The agent lowers the count (to hide a record): the proof no longer matches.
        let mut forged = honest.clone();
        forged[0].value = count(0);
        assert!(verifier.check(&signed, &keys, &forged).is_err());
        // ... or claims the attestation is absent.
        let mut forged = honest.clone();
        forged[1].value = None;
        assert!(verifier.check(&signed, &keys, &forged).is_err());
        // ... or answers another key.
        let mut forged = honest.clone();
        forged[1].key = attestation_key(&acct, b"other");
        assert!(verifier.check(&signed, &keys, &forged).is_err());
        // A header signed by a key outside the genesis set is refused.
        let (bad, _, _) = signed_state(&genesis, &Genesis::example_key(8, 0), &writes);
        assert!(verifier.check(&bad, &keys, &honest).is_err());
        // A header of another chain is refused.
        let other = Genesis::example(1, 9);
        let (foreign, _, _) = signed_state(&other, &Genesis::example_key(9, 0), &writes);
        assert!(verifier.check(&foreign, &keys, &honest).is_err());
    }
}
