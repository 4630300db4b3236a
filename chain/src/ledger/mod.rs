//! The ledger state machine: modules composed behind one [`Module`] trait.
//!
//! Each module owns a key prefix of the flat state and the calls addressed to its
//! [`ModuleId`]. The [`Ledger`] holds a list of `Box<dyn Module>` (bank, staking and registry
//! here; `market` registers its own with [`Ledger::register`] without `chain` knowing it) and
//! runs what every transaction shares: decoding, signature, chain id, nonce, size and fee
//! (charged through [`bank`], which applies the `tokenomics` rules). The ledger is sans-IO: it
//! reads a [`StateView`] and returns a [`WriteSet`]; the host applies it.
//!
//! ## What a block does
//! [`Ledger::execute_block`]: every module's begin-block hook; then each transaction is decoded,
//! its signature, chain id, nonce (exactly the account's), fee (at least the minimum, and
//! payable) and call (decodes, module known) checked — any failure makes the **block** invalid
//! ([`BlockError`]), since an honest proposer only includes what [`Ledger::check_tx`] admitted.
//! The fee is charged and the nonce bumped, then the module delivers the call on a child view;
//! if it fails its writes are dropped but the fee and nonce stay, and the [`Receipt`] says why.
//! Finally every module's end-block hook (fee payout to the proposer, epoch change of the
//! validator set, removal of a slashed validator).
//!
//! ## State layout
//! All values are [`primitives::codec`] encodings unless noted; integers in keys are big-endian.
//!
//! | prefix | module | key rest | value |
//! |---|---|---|---|
//! | `ledger/params` | ledger | — | [`LedgerParams`] |
//! | `ledger/last` | ledger | — | [`LastBlock`] (height and time of the last executed block) |
//! | `bank/a/` | bank | account (20 bytes) | [`bank::AccountRecord`] (nonce, tokens, fee credits) |
//! | `bank/issuance` | bank | — | `tokenomics::Issuance` |
//! | `bank/supply` | bank | — | [`bank::SupplyRecord`] (fee pool of the current block, burned total) |
//! | `stake/v/` | staking | validator address (20 bytes) | [`staking::ValidatorRecord`] |
//! | `stake/u/` | staking | release epoch (8) ‖ validator address (20) | unbonding amount (u64 base units) |
//! | `stake/s/` | staking | first height (8) | `Vec<ChainValidator>`: the set signing from that height |
//! | `stake/sh` | staking | — | `Vec<u64>`: first heights of every stored set, ascending |
//! | `stake/e/` | staking | offender (20) ‖ height (8) | `()`: evidence already processed |
//! | `stake/changed` | staking | — | `()`: the set changed in this block (cleared at end-block) |
//! | `reg/d/` | registry | VID bytes | [`registry::DeviceRecord`] |
//! | `reg/k/` | registry | device account (20 bytes) | VID bytes (device key → VID index) |
//! | `reg/p/` | registry | VID bytes | [`registry::PoolRecord`] (setDup commitment) |
//! | `reg/t/` | registry | address (20 bytes) ‖ encoded record key | [`registry::Attestation`] |
//! | `reg/n/` | registry | address (20 bytes) | attestations under the address (`u64`, big-endian) |
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod bank;
pub mod genesis;
pub mod registry;
pub mod staking;

use primitives::codec;
use primitives::hash::Hash32;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokenomics::{Amount, DataOp};

use crate::block::{tx_hash, ChainValidator};
use crate::consensus::secp::ValidatorAddress;
use crate::state::{Overlay, StateError, StateView, WriteSet};
use crate::tx::{AccountAddress, ModuleId, SignedTx, Transaction, TxError};

pub use genesis::{Genesis, GenesisError};

/// Key of the ledger parameters.
pub const PARAMS_KEY: &[u8] = b"ledger/params";
/// Key of the last executed block's height and time.
pub const LAST_BLOCK_KEY: &[u8] = b"ledger/last";

/// Chain-wide parameters fixed at genesis (stored in the state so every node reads the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerParams {
    /// The chain id every transaction must name.
    pub chain_id: String,
    /// Network of bech32 addresses (`bitcoin`, `testnet`, `regtest`, `signet`).
    pub network: String,
    /// Blocks per epoch (stake changes apply at the end of an epoch's last block).
    pub epoch_length: u64,
    /// Epochs unbonded stake waits before it is paid back (also the maximum evidence age).
    pub unbonding_epochs: u64,
    /// Largest encoded signed transaction.
    pub max_tx_bytes: u32,
    /// Largest sum of a block's encoded transactions.
    pub max_block_bytes: u64,
    /// Most transactions in a block.
    pub max_block_txs: u32,
    /// Least bonded stake that earns a seat in the validator set.
    pub min_stake: Amount,
    /// Fee every transaction pays at least, on top of its data-operation fee.
    pub min_tx_fee: Amount,
    /// Share of stake burned for double signing, in basis points.
    pub slash_bps: u16,
    /// Surcharge on a device setup (which is granted fee credits from the automatic pool).
    pub device_setup_fee: Amount,
    /// How far ahead of the account nonce the mempool admits transactions.
    pub nonce_window: u64,
}

impl LedgerParams {
    /// The address network.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] for an unknown name.
    pub fn bitcoin_network(&self) -> Result<bitcoin::Network, LedgerError> {
        genesis::parse_network(&self.network).map_err(|e| LedgerError::Corrupt(e.to_string()))
    }

    /// Epoch of `height` (height 0 is genesis, epoch 0 covers heights 1..=epoch_length).
    pub fn epoch_of(&self, height: u64) -> u64 {
        height
            .saturating_sub(1)
            .checked_div(self.epoch_length)
            .unwrap_or_default()
    }

    /// Whether `height` is the last block of its epoch.
    pub fn is_epoch_end(&self, height: u64) -> bool {
        height != 0 && height.checked_rem(self.epoch_length) == Some(0)
    }
}

/// Height and time of the last executed block (height 0 after genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBlock {
    /// Height.
    pub height: u64,
    /// Block time in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// What the host tells the ledger about the block being executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockContext {
    /// The chain id (must match the genesis one).
    pub chain_id: String,
    /// The block's height (the last one plus one).
    pub height: u64,
    /// The block's time (milliseconds since the Unix epoch).
    pub time_ms: u64,
    /// The block's proposer (receives the block's fees).
    pub proposer: ValidatorAddress,
}

/// A machine-readable reason a transaction was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectCode {
    /// The bytes are not a signed transaction.
    Decode,
    /// Larger than the maximum transaction size.
    TooLarge,
    /// The signature does not verify.
    BadSignature,
    /// Another chain's transaction.
    WrongChain,
    /// The nonce was already used.
    NonceTooLow,
    /// The nonce is beyond the admitted window (or not the next one, inside a block).
    NonceTooHigh,
    /// The fee is below the minimum.
    FeeTooLow,
    /// Tokens and fee credits do not cover the fee (or the amount moved).
    InsufficientFunds,
    /// No module has this id.
    UnknownModule,
    /// The call does not decode or is malformed.
    BadCall,
    /// The call is not allowed for this sender.
    Unauthorized,
    /// The call conflicts with the state (unknown device, already attested, …).
    Conflict,
    /// Already known (same transaction, same nonce, same evidence, same attestation).
    Duplicate,
    /// The mempool is full and the transaction does not pay enough to evict another.
    MempoolFull,
    /// The node's state could not be read.
    State,
}

impl RejectCode {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Decode => "decode",
            RejectCode::TooLarge => "too_large",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::WrongChain => "wrong_chain",
            RejectCode::NonceTooLow => "nonce_too_low",
            RejectCode::NonceTooHigh => "nonce_too_high",
            RejectCode::FeeTooLow => "fee_too_low",
            RejectCode::InsufficientFunds => "insufficient_funds",
            RejectCode::UnknownModule => "unknown_module",
            RejectCode::BadCall => "bad_call",
            RejectCode::Unauthorized => "unauthorized",
            RejectCode::Conflict => "conflict",
            RejectCode::Duplicate => "duplicate",
            RejectCode::MempoolFull => "mempool_full",
            RejectCode::State => "state",
        }
    }
}

/// Why a transaction was not admitted, or why its call failed: a code and a human reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}: {reason}", code.as_str())]
pub struct Rejection {
    /// Machine code.
    pub code: RejectCode,
    /// Human explanation.
    pub reason: String,
}

impl Rejection {
    /// A rejection with `code` and `reason`.
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Rejection {
            code,
            reason: reason.into(),
        }
    }
}

impl From<TxError> for Rejection {
    fn from(e: TxError) -> Self {
        let code = match &e {
            TxError::TooLarge { .. } => RejectCode::TooLarge,
            TxError::BadSignature(_) => RejectCode::BadSignature,
            TxError::ChainIdTooLong => RejectCode::WrongChain,
            TxError::Decode(_) | TxError::Address(_) => RejectCode::Decode,
        };
        Rejection::new(code, e.to_string())
    }
}

impl From<StateError> for Rejection {
    fn from(e: StateError) -> Self {
        Rejection::new(RejectCode::State, e.to_string())
    }
}

impl From<LedgerError> for Rejection {
    fn from(e: LedgerError) -> Self {
        Rejection::new(RejectCode::State, e.to_string())
    }
}

/// A failure that is not the transaction's fault: the state could not be read or is corrupt,
/// or a rule computation overflowed. It aborts the block (the host must not commit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored value did not decode or breaks an invariant.
    #[error("corrupt ledger state: {0}")]
    Corrupt(String),
    /// The token rules refused an operation that admission should have excluded.
    #[error("token rules: {0}")]
    Token(#[from] tokenomics::Error),
    /// The ledger has no genesis state.
    #[error("the ledger state has no genesis parameters")]
    NotInitialised,
}

/// The outcome of delivering a call: a failure of the transaction (fee kept, receipt says why)
/// or a fatal error (the block aborts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The call failed; its writes are dropped.
    #[error(transparent)]
    Failed(Rejection),
    /// The state could not be read or written.
    #[error(transparent)]
    Fatal(LedgerError),
}

impl From<Rejection> for ExecError {
    fn from(r: Rejection) -> Self {
        ExecError::Failed(r)
    }
}

impl From<LedgerError> for ExecError {
    fn from(e: LedgerError) -> Self {
        ExecError::Fatal(e)
    }
}

impl From<StateError> for ExecError {
    fn from(e: StateError) -> Self {
        ExecError::Fatal(LedgerError::State(e))
    }
}

/// Why a block cannot be executed: it is invalid (a transaction an honest proposer would never
/// include, or a bound exceeded) or the state failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A transaction fails admission (decode, signature, chain id, nonce, fee, call).
    #[error("transaction {index} is invalid: {rejection}")]
    InvalidTx {
        /// Position in the block.
        index: usize,
        /// Why.
        rejection: Rejection,
    },
    /// Too many transactions or bytes.
    #[error("block exceeds its bounds: {0}")]
    TooBig(String),
    /// The block's chain id or height does not follow the state.
    #[error("block context does not match the state: {0}")]
    Context(String),
    /// The state could not be read, or a rule computation failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StateError> for BlockError {
    fn from(e: StateError) -> Self {
        BlockError::Ledger(LedgerError::State(e))
    }
}

/// The result of one transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's identifier.
    pub tx_hash: Hash32,
    /// The sender's account.
    pub sender: AccountAddress,
    /// The nonce consumed.
    pub nonce: u64,
    /// Fee charged.
    pub fee: Amount,
    /// `None` when the call succeeded, otherwise why it failed.
    pub failure: Option<Rejection>,
}

impl Receipt {
    /// Whether the call succeeded.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// What executing a block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// All state changes of the block, to apply atomically.
    pub writes: WriteSet,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// The validator set that signs from the next height, when it changes (end of an epoch, or
    /// an offender removed).
    pub next_validators: Option<Vec<ChainValidator>>,
}

/// What admission learned about a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo {
    /// Identifier ([`crate::block::tx_hash`] of the bytes).
    pub hash: Hash32,
    /// The sender's account.
    pub sender: AccountAddress,
    /// Its nonce.
    pub nonce: u64,
    /// The account's next nonce in the state checked against.
    pub account_nonce: u64,
    /// Fee offered.
    pub fee: Amount,
    /// The minimum fee for this transaction.
    pub min_fee: Amount,
    /// Encoded size in bytes.
    pub size: usize,
    /// The executing module.
    pub module: ModuleId,
    /// The state key the call claims once and for all (an attestation, a VID), if any: the
    /// mempool holds at most one pending transaction per such key, so a retried put is never
    /// charged twice.
    pub conflict: Option<Vec<u8>>,
}

/// What a module's stateless check says about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallInfo {
    /// The data operation the call bills (a put), if any: its fee is added to the minimum and,
    /// for producer operations, mirrored by the automatic pool.
    pub data_op: Option<DataOp>,
    /// A module's own surcharge on the minimum fee (a device setup's, for example).
    pub extra_fee: Amount,
}

/// Everything a module sees about the transaction it handles.
#[derive(Debug, Clone, Copy)]
pub struct TxContext<'a> {
    /// The block being executed (for admission: the next block, as far as it is known).
    pub block: &'a BlockContext,
    /// Chain parameters.
    pub params: &'a LedgerParams,
    /// The transaction.
    pub tx: &'a Transaction,
    /// Its sender's account.
    pub sender: AccountAddress,
    /// Its identifier.
    pub hash: Hash32,
}

/// A block's pending state: writes layered over a base view.
pub struct Pending<'a> {
    base: &'a dyn StateView,
    writes: WriteSet,
}

impl<'a> Pending<'a> {
    /// No writes yet over `base`.
    pub fn new(base: &'a dyn StateView) -> Self {
        Pending {
            base,
            writes: WriteSet::new(),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Encodes and stores `value` under `key`.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] if the value does not encode.
    pub fn put_encoded<T: Serialize>(
        &mut self,
        key: Vec<u8>,
        value: &T,
    ) -> Result<(), LedgerError> {
        let bytes = codec::to_vec(value).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        self.put(key, bytes);
        Ok(())
    }

    /// The writes so far.
    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }

    /// Adds writes made on a child view.
    pub fn absorb(&mut self, writes: WriteSet) {
        self.writes.extend(writes);
    }

    /// The write set.
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

impl core::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pending")
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl StateView for Pending<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Overlay::new(self.base, &self.writes).get(key)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        Overlay::new(self.base, &self.writes).scan_prefix(prefix, limit)
    }
}

/// Reads and decodes the value under `key`.
///
/// # Errors
/// [`LedgerError::State`] or [`LedgerError::Corrupt`].
pub fn get_decoded<T: DeserializeOwned>(
    view: &(impl StateView + ?Sized),
    key: &[u8],
) -> Result<Option<T>, LedgerError> {
    match view.get(key)? {
        None => Ok(None),
        Some(bytes) => codec::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt(format!("entry {}: {e}", hex::encode(key)))),
    }
}

/// `prefix ‖ parts…` as one key.
pub(crate) fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Decodes a module call, refusing anything non-canonical.
pub(crate) fn decode_call<T: DeserializeOwned>(call: &[u8]) -> Result<T, Rejection> {
    codec::from_slice(call)
        .map_err(|e| Rejection::new(RejectCode::BadCall, format!("call does not decode: {e}")))
}

/// One ledger module: it owns a key prefix of the state and the calls of its [`ModuleId`].
pub trait Module: Send + Sync {
    /// The id transactions address.
    fn id(&self) -> ModuleId;

    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// The key prefixes this module writes.
    fn prefixes(&self) -> &'static [&'static [u8]];

    /// Stateless admission: the call decodes and is well-formed; says what data operation it
    /// bills.
    ///
    /// # Errors
    /// A [`Rejection`] (normally [`RejectCode::BadCall`]).
    fn check_call(&self, ctx: &TxContext<'_>) -> Result<CallInfo, Rejection>;

    /// Stateful admission against `view` (after the fee is paid): would the call succeed now?
    ///
    /// # Errors
    /// A [`Rejection`] saying why not.
    fn check_state(&self, ctx: &TxContext<'_>, view: &dyn StateView) -> Result<(), Rejection>;

    /// The state key this call claims once and for all (so two pending transactions claiming
    /// it conflict), if any. Called after a successful [`Module::check_call`].
    fn conflict_key(&self, _ctx: &TxContext<'_>) -> Option<Vec<u8>> {
        None
    }

    /// Executes the call; on [`ExecError::Failed`] the ledger drops this call's writes.
    ///
    /// # Errors
    /// [`ExecError`].
    fn deliver(&self, ctx: &TxContext<'_>, state: &mut Pending<'_>) -> Result<(), ExecError>;

    /// Writes the module's genesis state.
    ///
    /// # Errors
    /// [`GenesisError`] for a genesis the module cannot accept.
    fn init_genesis(
        &self,
        _genesis: &Genesis,
        _state: &mut Pending<'_>,
    ) -> Result<(), GenesisError> {
        Ok(())
    }

    /// Runs before the block's transactions.
    ///
    /// # Errors
    /// [`LedgerError`] aborts the block.
    fn begin_block(
        &self,
        _ctx: &BlockContext,
        _state: &mut Pending<'_>,
    ) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Runs after the block's transactions; may return the next validator set.
    ///
    /// # Errors
    /// [`LedgerError`] aborts the block.
    fn end_block(
        &self,
        _ctx: &BlockContext,
        _state: &mut Pending<'_>,
    ) -> Result<Option<Vec<ChainValidator>>, LedgerError> {
        Ok(None)
    }
}

/// The composed ledger.
pub struct Ledger {
    modules: Vec<Box<dyn Module>>,
}

impl core::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.modules.iter().map(|m| m.name()))
            .finish()
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    /// The chain's own modules: bank, staking, registry.
    pub fn new() -> Self {
        Ledger {
            modules: vec![
                Box::new(bank::Bank),
                Box::new(staking::Staking),
                Box::new(registry::Registry),
            ],
        }
    }

    /// Adds a module (another crate's).
    ///
    /// # Errors
    /// [`GenesisError::Invalid`] if its id is taken or its prefixes overlap another module's.
    pub fn register(&mut self, module: Box<dyn Module>) -> Result<(), GenesisError> {
        for m in &self.modules {
            if m.id() == module.id() {
                return Err(GenesisError::Invalid(format!(
                    "{} is already used by {}",
                    module.id(),
                    m.name()
                )));
            }
            for a in m.prefixes() {
                for b in module.prefixes() {
                    if a.starts_with(b) || b.starts_with(a) {
                        return Err(GenesisError::Invalid(format!(
                            "module {} prefix {:?} overlaps module {}",
                            module.name(),
                            String::from_utf8_lossy(b),
                            m.name()
                        )));
                    }
                }
            }
        }
        self.modules.push(module);
        Ok(())
    }

    fn module(&self, id: ModuleId) -> Option<&dyn Module> {
        self.modules
            .iter()
            .find(|m| m.id() == id)
            .map(|m| m.as_ref())
    }

    /// The genesis state and the first validator set.
    ///
    /// # Errors
    /// [`GenesisError`] for an invalid genesis.
    pub fn init_genesis(
        &self,
        genesis: &Genesis,
    ) -> Result<(WriteSet, Vec<ChainValidator>), GenesisError> {
        genesis.validate()?;
        let empty = crate::state::MemState::new();
        let mut state = Pending::new(&empty);
        let params = genesis.ledger_params();
        state
            .put_encoded(PARAMS_KEY.to_vec(), &params)
            .map_err(|e| GenesisError::Invalid(e.to_string()))?;
        state
            .put_encoded(
                LAST_BLOCK_KEY.to_vec(),
                &LastBlock {
                    height: 0,
                    time_ms: genesis.genesis_time_ms,
                },
            )
            .map_err(|e| GenesisError::Invalid(e.to_string()))?;
        for m in &self.modules {
            m.init_genesis(genesis, &mut state)?;
        }
        let validators =
            staking::current_set(&state).map_err(|e| GenesisError::Invalid(e.to_string()))?;
        Ok((state.into_writes(), validators))
    }

    /// The ledger parameters in `view`.
    ///
    /// # Errors
    /// [`LedgerError::NotInitialised`] before genesis.
    pub fn params(view: &(impl StateView + ?Sized)) -> Result<LedgerParams, LedgerError> {
        get_decoded(view, PARAMS_KEY)?.ok_or(LedgerError::NotInitialised)
    }

    /// The last executed block in `view`.
    ///
    /// # Errors
    /// [`LedgerError::NotInitialised`] before genesis.
    pub fn last_block(view: &(impl StateView + ?Sized)) -> Result<LastBlock, LedgerError> {
        get_decoded(view, LAST_BLOCK_KEY)?.ok_or(LedgerError::NotInitialised)
    }

    /// Checks what every transaction shares and the module's stateless check; returns the
    /// decoded transaction, its info and the module.
    fn admit<'m>(
        &'m self,
        params: &LedgerParams,
        view: &dyn StateView,
        raw: &[u8],
        block: &BlockContext,
        exact_nonce: bool,
        verify_signature: bool,
    ) -> Result<(SignedTx, TxInfo, CallInfo, &'m dyn Module), Rejection> {
        let stx = SignedTx::decode(
            raw,
            usize::try_from(params.max_tx_bytes).unwrap_or(usize::MAX),
        )?;
        if stx.tx.chain_id != params.chain_id {
            return Err(Rejection::new(
                RejectCode::WrongChain,
                format!(
                    "transaction is for chain {:?}, this is {:?}",
                    stx.tx.chain_id, params.chain_id
                ),
            ));
        }
        if verify_signature {
            stx.verify_signature()?;
        }
        let sender = stx.tx.sender_address();
        let module = self.module(stx.tx.module).ok_or_else(|| {
            Rejection::new(
                RejectCode::UnknownModule,
                format!("no ledger module has id {}", stx.tx.module.0),
            )
        })?;
        let account = bank::account(view, &sender)?;
        let account_nonce = account.nonce;
        if stx.tx.nonce < account_nonce {
            return Err(Rejection::new(
                RejectCode::NonceTooLow,
                format!(
                    "nonce {} already used; the account's next nonce is {account_nonce}",
                    stx.tx.nonce
                ),
            ));
        }
        let window = if exact_nonce { 0 } else { params.nonce_window };
        if stx.tx.nonce > account_nonce.saturating_add(window) {
            return Err(Rejection::new(
                RejectCode::NonceTooHigh,
                format!(
                    "nonce {} is ahead of the account's next nonce {account_nonce} by more than {window}",
                    stx.tx.nonce
                ),
            ));
        }
        let hash = tx_hash(raw);
        let ctx = TxContext {
            block,
            params,
            tx: &stx.tx,
            sender,
            hash,
        };
        let call = module.check_call(&ctx)?;
        let min_fee = bank::min_fee(view, params, call.data_op.as_ref())?
            .checked_add(call.extra_fee)
            .ok_or_else(|| Rejection::new(RejectCode::FeeTooLow, "minimum fee overflows"))?;
        if stx.tx.fee < min_fee {
            return Err(Rejection::new(
                RejectCode::FeeTooLow,
                format!("fee {} is below the minimum {min_fee}", stx.tx.fee),
            ));
        }
        let capacity = account
            .balance()?
            .fee_capacity()
            .unwrap_or(Amount::MAX_SUPPLY);
        if stx.tx.fee > capacity {
            return Err(Rejection::new(
                RejectCode::InsufficientFunds,
                format!(
                    "fee {} exceeds the account's tokens and fee credits ({capacity})",
                    stx.tx.fee
                ),
            ));
        }
        let info = TxInfo {
            hash,
            sender,
            nonce: stx.tx.nonce,
            account_nonce,
            fee: stx.tx.fee,
            min_fee,
            size: raw.len(),
            module: stx.tx.module,
            conflict: module.conflict_key(&ctx),
        };
        Ok((stx, info, call, module))
    }

    /// Admission of one encoded transaction against `view` (the last committed state, or the
    /// mempool's view): size, decoding, chain id, signature, module, nonce (the account's or up
    /// to [`LedgerParams::nonce_window`] ahead), fee at least the minimum and payable from
    /// tokens plus fee credits, and — for a transaction at the account's nonce — the module's
    /// stateful check after paying the fee.
    ///
    /// # Errors
    /// A [`Rejection`] with a code and a reason.
    pub fn check_tx(&self, view: &dyn StateView, tx: &[u8]) -> Result<TxInfo, Rejection> {
        self.check(view, tx, true)
    }

    /// [`Ledger::check_tx`] without verifying the signature again: only for bytes that
    /// `check_tx` already admitted (the mempool re-checking after a block). The signature
    /// covers every byte but itself, so unchanged bytes keep a valid signature.
    ///
    /// # Errors
    /// As [`Ledger::check_tx`], except [`RejectCode::BadSignature`].
    pub fn recheck_tx(&self, view: &dyn StateView, tx: &[u8]) -> Result<TxInfo, Rejection> {
        self.check(view, tx, false)
    }

    fn check(
        &self,
        view: &dyn StateView,
        tx: &[u8],
        verify_signature: bool,
    ) -> Result<TxInfo, Rejection> {
        let params = Self::params(view)?;
        let last = Self::last_block(view)?;
        let block = BlockContext {
            chain_id: params.chain_id.clone(),
            height: last.height.saturating_add(1),
            time_ms: last.time_ms,
            proposer: ValidatorAddress([0; 20]),
        };
        let (stx, info, call, module) =
            self.admit(&params, view, tx, &block, false, verify_signature)?;
        if info.nonce == info.account_nonce {
            let mut scratch = Pending::new(view);
            bank::charge_fee(&mut scratch, &info.sender, info.fee, call.data_op.as_ref()).map_err(
                |e| match e {
                    ExecError::Failed(r) => r,
                    ExecError::Fatal(f) => Rejection::from(f),
                },
            )?;
            let ctx = TxContext {
                block: &block,
                params: &params,
                tx: &stx.tx,
                sender: info.sender,
                hash: info.hash,
            };
            module.check_state(&ctx, &scratch)?;
        }
        Ok(info)
    }

    /// Executes a block's transactions over `view` (the state after the previous block).
    ///
    /// # Errors
    /// [`BlockError`] if the block is invalid or the state fails; nothing is to be applied.
    pub fn execute_block(
        &self,
        view: &dyn StateView,
        ctx: &BlockContext,
        txs: &[Vec<u8>],
    ) -> Result<BlockOutcome, BlockError> {
        self.execute_block_with_verified(view, ctx, txs, &|_| false)
    }

    /// [`Ledger::execute_block`], skipping the signature check of the transactions for which
    /// `already_verified(tx_hash)` is true — those this node's [`Ledger::check_tx`] admitted
    /// (its mempool holds them). The identifier hashes every byte, signature included, so the
    /// same identifier means the same, already verified, bytes.
    ///
    /// # Errors
    /// As [`Ledger::execute_block`].
    pub fn execute_block_with_verified(
        &self,
        view: &dyn StateView,
        ctx: &BlockContext,
        txs: &[Vec<u8>],
        already_verified: &dyn Fn(&Hash32) -> bool,
    ) -> Result<BlockOutcome, BlockError> {
        let params = Self::params(view)?;
        if ctx.chain_id != params.chain_id {
            return Err(BlockError::Context(format!(
                "block is for chain {:?}, the state is {:?}",
                ctx.chain_id, params.chain_id
            )));
        }
        let last = Self::last_block(view)?;
        if Some(ctx.height) != last.height.checked_add(1) {
            return Err(BlockError::Context(format!(
                "block height {} does not follow the last executed height {}",
                ctx.height, last.height
            )));
        }
        let max_txs = usize::try_from(params.max_block_txs).unwrap_or(usize::MAX);
        if txs.len() > max_txs {
            return Err(BlockError::TooBig(format!(
                "{} transactions, at most {max_txs}",
                txs.len()
            )));
        }
        let bytes = txs
            .iter()
            .try_fold(0u64, |a, t| a.checked_add(u64::try_from(t.len()).ok()?));
        if bytes.is_none_or(|b| b > params.max_block_bytes) {
            return Err(BlockError::TooBig(format!(
                "transactions exceed {} bytes",
                params.max_block_bytes
            )));
        }
        let mut state = Pending::new(view);
        for m in &self.modules {
            m.begin_block(ctx, &mut state)?;
        }
        let mut receipts = Vec::with_capacity(txs.len());
        for (index, raw) in txs.iter().enumerate() {
            let invalid = |rejection: Rejection| BlockError::InvalidTx { index, rejection };
            let (stx, info, call, module) = self
                .admit(
                    &params,
                    &state,
                    raw,
                    ctx,
                    true,
                    !already_verified(&tx_hash(raw)),
                )
                .map_err(invalid)?;
            match bank::charge_fee(&mut state, &info.sender, info.fee, call.data_op.as_ref()) {
                Ok(()) => {}
                Err(ExecError::Failed(r)) => return Err(invalid(r)),
                Err(ExecError::Fatal(e)) => return Err(e.into()),
            }
            let tctx = TxContext {
                block: ctx,
                params: &params,
                tx: &stx.tx,
                sender: info.sender,
                hash: info.hash,
            };
            let result = {
                let mut child = Pending::new(&state);
                match module.deliver(&tctx, &mut child) {
                    Ok(()) => Ok(child.into_writes()),
                    Err(e) => Err(e),
                }
            };
            let failure = match result {
                Ok(writes) => {
                    state.absorb(writes);
                    None
                }
                Err(ExecError::Failed(r)) => Some(r),
                Err(ExecError::Fatal(e)) => return Err(e.into()),
            };
            receipts.push(Receipt {
                tx_hash: info.hash,
                sender: info.sender,
                nonce: info.nonce,
                fee: info.fee,
                failure,
            });
        }
        let mut next_validators = None;
        for m in &self.modules {
            if let Some(set) = m.end_block(ctx, &mut state)? {
                next_validators = Some(set);
            }
        }
        state.put_encoded(
            LAST_BLOCK_KEY.to_vec(),
            &LastBlock {
                height: ctx.height,
                time_ms: ctx.time_ms,
            },
        )?;
        Ok(BlockOutcome {
            writes: state.into_writes(),
            receipts,
            next_validators,
        })
    }

    /// An account's balance, fee credits and nonce (zero for an unknown account).
    ///
    /// # Errors
    /// [`LedgerError`] if the state fails.
    pub fn account(
        &self,
        view: &dyn StateView,
        address: &AccountAddress,
    ) -> Result<bank::AccountRecord, LedgerError> {
        bank::account(view, address)
    }

    /// The validator set that signs the next block.
    ///
    /// # Errors
    /// [`LedgerError`] if the state fails.
    pub fn validators(&self, view: &dyn StateView) -> Result<Vec<ChainValidator>, LedgerError> {
        staking::current_set(view)
    }
}
