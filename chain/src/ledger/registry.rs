//! The registry: devices, their address pools, and put-attestations (the name-node index).
//!
//! - `Setup` binds a VID to the sender (the owner's address), the owner's RSA public key (SPKI
//!   DER, parsed and at least 2048 bits), the device's secp256k1 key and its agent's address.
//!   The device's account receives its fee credits from the automatic pool (once per VID).
//! - `SetDup` registers or replaces the device's address pool: only a 32-byte **commitment**
//!   to the pool, its size and the last height it is valid, never the addresses. Publishing
//!   the addresses would link every pool address (and so every record) to the VID and its
//!   owner, which is what the pool exists to prevent; the owner's wallet recomputes the pool
//!   from its keys and checks the commitment.
//! - `Reset` rotates the device key (and agent, optionally the RSA key); only the current owner
//!   may send it (the transaction's signature is the owner's signature). The device's unspent
//!   fee credits move to the new key's account, so a reset device can go on reporting.
//! - `Attest` records (address, key) → {dHash, size, format, placement commitment, writer,
//!   height}. **Only the device's current key may attest** (the sender must be that key): a
//!   device's puts must be signed by it, and the device pays with its own fee credits. An agent
//!   relays the signed transaction but cannot sign in the device's place, so a compromised
//!   agent cannot forge index entries. The device must have a pool valid at this height. The
//!   same (address, key) can never be attested twice. The fee bills a put of `size` bytes
//!   (or `metres`, on a mileage basis). Each attestation also bumps the address's count
//!   (`reg/n/`), so a reader can check it was shown *every* record of an address: the tree
//!   proves single keys, not ranges, and the count closes that gap.
//! - `AttestOwn` is the wallet's own put (the brief's putWalKV): the same entry, at the
//!   sender's own account as the address, written by the sender; no device is involved.
//! - `PayRead` pays for a read of `addresses` addresses served by `agent`: the reader signs it
//!   and hands it to the agent with the read request; the fee is the read fee per address
//!   traversed ([`DataOp::Read`]), charged to the reader like any fee. It changes no registry
//!   state; the agent serves the read once the transaction is admitted.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use primitives::hash::Hash32;
use primitives::RecordKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use tokenomics::DataOp;

use super::{
    bank, decode_call, get_decoded, key, CallInfo, ExecError, LedgerError, Module, Pending,
    RejectCode, Rejection, TxContext,
};
use crate::state::StateView;
use crate::tx::{AccountAddress, ModuleId};

/// Prefix of device records.
pub const DEVICE_PREFIX: &[u8] = b"reg/d/";
/// Prefix of the device-key index.
pub const DEVICE_KEY_PREFIX: &[u8] = b"reg/k/";
/// Prefix of pool registrations.
pub const POOL_PREFIX: &[u8] = b"reg/p/";
/// Prefix of attestations.
pub const ATTESTATION_PREFIX: &[u8] = b"reg/t/";
/// Prefix of per-address attestation counts.
pub const ADDRESS_COUNT_PREFIX: &[u8] = b"reg/n/";
/// Most addresses one `PayRead` pays for.
pub const MAX_READ_ADDRESSES: u64 = 1 << 20;

/// Longest VID.
pub const MAX_VID_LEN: usize = 64;
/// Longest encoded record key in an attestation.
pub const MAX_RECORD_KEY_LEN: usize = 1024;
/// Longest format name.
pub const MAX_FORMAT_LEN: usize = 64;
/// Longest RSA SPKI DER.
pub const MAX_RSA_SPKI_LEN: usize = 2048;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The state key of a device.
pub fn device_key(vid: &str) -> Vec<u8> {
    key(DEVICE_PREFIX, &[vid.as_bytes()])
}

/// The state key of a device-key index entry.
pub fn device_index_key(device: &AccountAddress) -> Vec<u8> {
    key(DEVICE_KEY_PREFIX, &[&device.0])
}

/// The state key of a device's pool registration.
pub fn pool_key(vid: &str) -> Vec<u8> {
    key(POOL_PREFIX, &[vid.as_bytes()])
}

/// The state key of the attestation of (`address`, encoded record `key`); the address has a
/// fixed length, so distinct pairs never share a key.
pub fn attestation_key(address: &AccountAddress, record_key: &[u8]) -> Vec<u8> {
    key(ATTESTATION_PREFIX, &[&address.0, record_key])
}

/// The state key of the number of attestations under `address` (a big-endian `u64`).
pub fn address_count_key(address: &AccountAddress) -> Vec<u8> {
    key(ADDRESS_COUNT_PREFIX, &[&address.0])
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The owner's account.
    pub owner: AccountAddress,
    /// The owner's RSA public key, SPKI DER.
    #[serde(with = "primitives::bytes::base64")]
    pub rsa_spki: Vec<u8>,
    /// The device's current secp256k1 key.
    pub device_key: PublicKey,
    /// The agent the device talks to.
    pub agent: AccountAddress,
    /// Height of the setup.
    pub setup_height: u64,
    /// Number of resets so far.
    pub resets: u32,
}

/// A pool registration (setDup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// Commitment to the pool's addresses (the wallet defines and checks it).
    pub commitment: Hash32,
    /// Number of addresses.
    pub size: u32,
    /// Last height at which the device may attest under this pool.
    pub valid_until: u64,
    /// Height of registration.
    pub registered_height: u64,
}

/// A put-attestation: the index entry for (address, key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The record's `dHash`.
    pub dhash: Hash32,
    /// Size of the stored (sealed) value in bytes.
    pub size: u64,
    /// The record's format.
    pub format: String,
    /// Commitment to where the shards are placed.
    pub placement: Hash32,
    /// The device account that wrote it.
    pub writer: AccountAddress,
    /// Height of the block that recorded it.
    pub height: u64,
}

/// A registry call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryCall {
    /// Binds a new VID to the sender.
    Setup {
        /// The device identifier.
        vid: String,
        /// The owner's RSA public key, SPKI DER.
        #[serde(with = "primitives::bytes::base64")]
        rsa_spki: Vec<u8>,
        /// The device's key.
        device_key: PublicKey,
        /// The device's agent.
        agent: AccountAddress,
    },
    /// Registers or replaces the device's address pool commitment.
    SetDup {
        /// The device.
        vid: String,
        /// Commitment to the pool.
        commitment: Hash32,
        /// Pool size.
        size: u32,
        /// Last height of validity.
        valid_until: u64,
    },
    /// Rotates the device key (owner only).
    Reset {
        /// The device.
        vid: String,
        /// The new device key.
        device_key: PublicKey,
        /// The agent from now on.
        agent: AccountAddress,
        /// A new RSA key, if it changes.
        #[serde(with = "opt_bytes")]
        rsa_spki: Option<Vec<u8>>,
    },
    /// Attests a put (device key only).
    Attest {
        /// The device.
        vid: String,
        /// The pool address holding the record.
        address: AccountAddress,
        /// The record key, order-preserving encoding ([`RecordKey::encode`]).
        #[serde(with = "primitives::bytes::base64")]
        key: Vec<u8>,
        /// The record's `dHash`.
        dhash: Hash32,
        /// Stored size in bytes.
        size: u64,
        /// Distance covered by the record, in metres (for a mileage basis; else 0).
        metres: u64,
        /// The record's format.
        format: String,
        /// Placement commitment.
        placement: Hash32,
    },
    /// Attests a record the sender stores at its own account's address (the brief's putWalKV:
    /// an owner's personal data, such as a VIN, uploaded from the wallet itself).
    AttestOwn {
        /// The record key, order-preserving encoding ([`RecordKey::encode`]).
        #[serde(with = "primitives::bytes::base64")]
        key: Vec<u8>,
        /// The record's `dHash`.
        dhash: Hash32,
        /// Stored size in bytes.
        size: u64,
        /// The record's format (mandatory for wallet data).
        format: String,
        /// Placement commitment.
        placement: Hash32,
    },
    /// Pays for a read of `addresses` addresses served by `agent` (the sender is the reader).
    PayRead {
        /// The agent serving the read.
        agent: AccountAddress,
        /// Addresses the read traverses.
        addresses: u64,
    },
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct B(#[serde(with = "primitives::bytes::base64")] Vec<u8>);

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.clone().map(B).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<B>::deserialize(d)?.map(|b| b.0))
    }
}

/// A device record.
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn device(
    view: &(impl StateView + ?Sized),
    vid: &str,
) -> Result<Option<DeviceRecord>, LedgerError> {
    get_decoded(view, &device_key(vid))
}

/// A device's pool registration.
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn pool(
    view: &(impl StateView + ?Sized),
    vid: &str,
) -> Result<Option<PoolRecord>, LedgerError> {
    get_decoded(view, &pool_key(vid))
}

/// The attestation (index entry) of (`address`, `record_key`).
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn attestation(
    view: &(impl StateView + ?Sized),
    address: &AccountAddress,
    record_key: &[u8],
) -> Result<Option<Attestation>, LedgerError> {
    get_decoded(view, &attestation_key(address, record_key))
}

/// The attestations under `address`, in record-key order (the order-preserving key encoding
/// makes this the records' own order), at most `limit` of them: what a wallet lists for one
/// pool address.
///
/// # Errors
/// [`LedgerError`] if the state fails or an entry is malformed.
pub fn attestations_at(
    view: &(impl StateView + ?Sized),
    address: &AccountAddress,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Attestation)>, LedgerError> {
    let prefix = key(ATTESTATION_PREFIX, &[&address.0]);
    view.scan_prefix(&prefix, limit)?
        .into_iter()
        .map(|(k, v)| {
            let record_key = k.get(prefix.len()..).unwrap_or_default().to_vec();
            let entry = primitives::codec::from_slice(&v)
                .map_err(|e| LedgerError::Corrupt(format!("attestation: {e}")))?;
            Ok((record_key, entry))
        })
        .collect()
}

/// How many attestations `address` holds.
///
/// # Errors
/// [`LedgerError`] if the state fails or the count is malformed.
pub fn address_count(
    view: &(impl StateView + ?Sized),
    address: &AccountAddress,
) -> Result<u64, LedgerError> {
    decode_count(view.get(&address_count_key(address))?.as_deref())
}

/// Decodes an address count value (absent = 0).
///
/// # Errors
/// [`LedgerError::Corrupt`] if it is not 8 bytes.
pub fn decode_count(value: Option<&[u8]>) -> Result<u64, LedgerError> {
    match value {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| LedgerError::Corrupt("address count is not 8 bytes".into())),
    }
}

/// The VID whose current device key has account `device`.
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn vid_of_device(
    view: &(impl StateView + ?Sized),
    device: &AccountAddress,
) -> Result<Option<String>, LedgerError> {
    match view.get(&device_index_key(device))? {
        None => Ok(None),
        Some(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| LedgerError::Corrupt("device index entry is not UTF-8".into())),
    }
}

fn bad(reason: impl Into<String>) -> Rejection {
    Rejection::new(RejectCode::BadCall, reason)
}

fn check_vid(vid: &str) -> Result<(), Rejection> {
    if vid.is_empty() || vid.len() > MAX_VID_LEN || !vid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(format!(
            "VID must be 1 to {MAX_VID_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn check_rsa(spki: &[u8]) -> Result<(), Rejection> {
    if spki.len() > MAX_RSA_SPKI_LEN {
        return Err(bad("RSA public key is too long"));
    }
    let key = rsa::RsaPublicKey::from_public_key_der(spki)
        .map_err(|e| bad(format!("RSA public key is not SPKI DER: {e}")))?;
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(bad(format!(
            "RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
        )));
    }
    Ok(())
}

fn owned_device(
    view: &(impl StateView + ?Sized),
    ctx: &TxContext<'_>,
    vid: &str,
) -> Result<DeviceRecord, ExecError> {
    let dev = device(view, vid)?.ok_or_else(|| {
        Rejection::new(
            RejectCode::Conflict,
            format!("device {vid:?} is not set up"),
        )
    })?;
    if dev.owner != ctx.sender {
        return Err(Rejection::new(
            RejectCode::Unauthorized,
            format!("only the owner of {vid:?} may do this; the sender is not"),
        )
        .into());
    }
    Ok(dev)
}

fn key_unused(view: &(impl StateView + ?Sized), key: &PublicKey) -> Result<(), ExecError> {
    let account = AccountAddress::from_public_key(key);
    if let Some(other) = vid_of_device(view, &account)? {
        return Err(Rejection::new(
            RejectCode::Conflict,
            format!("this device key already belongs to device {other:?}"),
        )
        .into());
    }
    Ok(())
}

/// The stateless checks of a put attestation and what it bills.
fn check_put(key: &[u8], format: &str, size: u64, metres: u64) -> Result<CallInfo, Rejection> {
    if key.is_empty() || key.len() > MAX_RECORD_KEY_LEN {
        return Err(bad(format!(
            "record key must be 1 to {MAX_RECORD_KEY_LEN} bytes"
        )));
    }
    RecordKey::decode(key).map_err(|e| bad(format!("record key: {e}")))?;
    if format.is_empty() || format.len() > MAX_FORMAT_LEN {
        return Err(bad(format!("format must be 1 to {MAX_FORMAT_LEN} bytes")));
    }
    if size == 0 {
        return Err(bad("an attested record has at least one byte"));
    }
    Ok(CallInfo {
        data_op: Some(DataOp::Put {
            bytes: size,
            metres,
        }),
        extra_fee: tokenomics::Amount::ZERO,
    })
}

/// Records the index entry of (`address`, `record_key`) and bumps the address's count; the
/// same (address, key) is never attested twice.
fn record_attestation(
    state: &mut Pending<'_>,
    address: &AccountAddress,
    record_key: &[u8],
    entry: &Attestation,
) -> Result<(), ExecError> {
    let k = attestation_key(address, record_key);
    if state.get(&k)?.is_some() {
        return Err(Rejection::new(
            RejectCode::Duplicate,
            "this (address, key) is already attested",
        )
        .into());
    }
    state.put_encoded(k, entry)?;
    let count = address_count(state, address)?
        .checked_add(1)
        .ok_or_else(|| {
            Rejection::new(RejectCode::Conflict, "address attestation count exhausted")
        })?;
    state.put(address_count_key(address), count.to_be_bytes().to_vec());
    Ok(())
}

/// What a registry call costs and whether it is well formed, without any state: its data
/// operation (billed by the fee schedule) and surcharge. Clients use it to compute the fee
/// they offer; [`Registry`] uses it to admit transactions.
///
/// # Errors
/// A [`Rejection`] for a malformed call.
pub fn call_info(
    call: &RegistryCall,
    device_setup_fee: tokenomics::Amount,
) -> Result<CallInfo, Rejection> {
    match call {
        RegistryCall::Setup { vid, rsa_spki, .. } => {
            check_vid(vid)?;
            check_rsa(rsa_spki)?;
            Ok(CallInfo {
                data_op: None,
                extra_fee: device_setup_fee,
            })
        }
        RegistryCall::SetDup { vid, size, .. } => {
            check_vid(vid)?;
            if *size == 0 {
                return Err(bad("an address pool needs at least one address"));
            }
            Ok(CallInfo::default())
        }
        RegistryCall::Reset { vid, rsa_spki, .. } => {
            check_vid(vid)?;
            if let Some(spki) = rsa_spki {
                check_rsa(spki)?;
            }
            Ok(CallInfo::default())
        }
        RegistryCall::Attest {
            vid,
            key,
            size,
            metres,
            format,
            ..
        } => {
            check_vid(vid)?;
            check_put(key, format, *size, *metres)
        }
        RegistryCall::AttestOwn {
            key, size, format, ..
        } => check_put(key, format, *size, 0),
        RegistryCall::PayRead { addresses, .. } => {
            if *addresses == 0 || *addresses > MAX_READ_ADDRESSES {
                return Err(bad(format!(
                    "a read pays for 1 to {MAX_READ_ADDRESSES} addresses"
                )));
            }
            Ok(CallInfo {
                data_op: Some(DataOp::Read {
                    addresses: *addresses,
                }),
                extra_fee: tokenomics::Amount::ZERO,
            })
        }
    }
}

/// The registry module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

impl Registry {
    fn call(ctx: &TxContext<'_>) -> Result<RegistryCall, Rejection> {
        decode_call(&ctx.tx.call)
    }

    fn apply(
        ctx: &TxContext<'_>,
        state: &mut Pending<'_>,
        call: RegistryCall,
    ) -> Result<(), ExecError> {
        let height = ctx.block.height;
        match call {
            RegistryCall::Setup {
                vid,
                rsa_spki,
                device_key: dk,
                agent,
            } => {
                if device(state, &vid)?.is_some() {
                    return Err(Rejection::new(
                        RejectCode::Duplicate,
                        format!("device {vid:?} is already set up; its owner may reset it"),
                    )
                    .into());
                }
                key_unused(state, &dk)?;
                let rec = DeviceRecord {
                    owner: ctx.sender,
                    rsa_spki,
                    device_key: dk,
                    agent,
                    setup_height: height,
                    resets: 0,
                };
                let account = AccountAddress::from_public_key(&dk);
                state.put_encoded(device_key(&vid), &rec)?;
                state.put(device_index_key(&account), vid.into_bytes());
                bank::grant_device_credits(state, &account)?;
            }
            RegistryCall::SetDup {
                vid,
                commitment,
                size,
                valid_until,
            } => {
                owned_device(state, ctx, &vid)?;
                if valid_until < height {
                    return Err(Rejection::new(
                        RejectCode::Conflict,
                        format!("pool valid until height {valid_until}, which has passed"),
                    )
                    .into());
                }
                let rec = PoolRecord {
                    commitment,
                    size,
                    valid_until,
                    registered_height: height,
                };
                state.put_encoded(pool_key(&vid), &rec)?;
            }
            RegistryCall::Reset {
                vid,
                device_key: dk,
                agent,
                rsa_spki,
            } => {
                let mut rec = owned_device(state, ctx, &vid)?;
                if dk != rec.device_key {
                    key_unused(state, &dk)?;
                }
                let old_account = AccountAddress::from_public_key(&rec.device_key);
                state.delete(device_index_key(&old_account));
                bank::move_device_credits(
                    state,
                    &old_account,
                    &AccountAddress::from_public_key(&dk),
                )?;
                state.put(
                    device_index_key(&AccountAddress::from_public_key(&dk)),
                    vid.clone().into_bytes(),
                );
                rec.device_key = dk;
                rec.agent = agent;
                if let Some(spki) = rsa_spki {
                    rec.rsa_spki = spki;
                }
                rec.resets = rec.resets.saturating_add(1);
                state.put_encoded(device_key(&vid), &rec)?;
            }
            RegistryCall::Attest {
                vid,
                address,
                key: record_key,
                dhash,
                size,
                metres: _,
                format,
                placement,
            } => {
                let dev = device(state, &vid)?.ok_or_else(|| {
                    Rejection::new(
                        RejectCode::Conflict,
                        format!("device {vid:?} is not set up"),
                    )
                })?;
                if AccountAddress::from_public_key(&dev.device_key) != ctx.sender {
                    return Err(Rejection::new(
                        RejectCode::Unauthorized,
                        format!("only the current device key of {vid:?} may attest"),
                    )
                    .into());
                }
                let pool = pool(state, &vid)?.ok_or_else(|| {
                    Rejection::new(
                        RejectCode::Conflict,
                        format!("device {vid:?} has no address pool"),
                    )
                })?;
                if pool.valid_until < height {
                    return Err(Rejection::new(
                        RejectCode::Conflict,
                        format!(
                            "the address pool of {vid:?} expired at height {}",
                            pool.valid_until
                        ),
                    )
                    .into());
                }
                let entry = Attestation {
                    dhash,
                    size,
                    format,
                    placement,
                    writer: ctx.sender,
                    height,
                };
                record_attestation(state, &address, &record_key, &entry)?;
            }
            RegistryCall::AttestOwn {
                key: record_key,
                dhash,
                size,
                format,
                placement,
            } => {
                let entry = Attestation {
                    dhash,
                    size,
                    format,
                    placement,
                    writer: ctx.sender,
                    height,
                };
                record_attestation(state, &ctx.sender, &record_key, &entry)?;
            }
            RegistryCall::PayRead { .. } => {}
        }
        Ok(())
    }
}

impl Module for Registry {
    fn id(&self) -> ModuleId {
        ModuleId::REGISTRY
    }

    fn name(&self) -> &'static str {
        "registry"
    }

    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[b"reg/"]
    }

    fn check_call(&self, ctx: &TxContext<'_>) -> Result<CallInfo, Rejection> {
        call_info(&Self::call(ctx)?, ctx.params.device_setup_fee)
    }

    fn conflict_key(&self, ctx: &TxContext<'_>) -> Option<Vec<u8>> {
        match Self::call(ctx).ok()? {
            RegistryCall::Attest { address, key, .. } => Some(attestation_key(&address, &key)),
            RegistryCall::AttestOwn { key, .. } => Some(attestation_key(&ctx.sender, &key)),
            RegistryCall::Setup { vid, .. } => Some(device_key(&vid)),
            RegistryCall::SetDup { .. }
            | RegistryCall::Reset { .. }
            | RegistryCall::PayRead { .. } => None,
        }
    }

    fn check_state(&self, ctx: &TxContext<'_>, view: &dyn StateView) -> Result<(), Rejection> {
        let mut scratch = Pending::new(view);
        let call = Self::call(ctx)?;
        match Self::apply(ctx, &mut scratch, call) {
            Ok(()) => Ok(()),
            Err(ExecError::Failed(r)) => Err(r),
            Err(ExecError::Fatal(e)) => Err(e.into()),
        }
    }

    fn deliver(&self, ctx: &TxContext<'_>, state: &mut Pending<'_>) -> Result<(), ExecError> {
        let call = Self::call(ctx)?;
        Self::apply(ctx, state, call)
    }
}
