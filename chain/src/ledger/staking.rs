//! Staking: validators, stake and unstake at epoch boundaries, and double-sign evidence.
//!
//! - A validator's key is its account key: `Stake` moves tokens from the sender's account into
//!   pending stake at once; `Unstake` marks bonded stake to leave. Both take effect at the end
//!   of the epoch's last block, when the next set is computed (members: not removed, bonded ≥
//!   `min_stake`; voting power = bonded base units) and returned as `next_validators`. Unbonded
//!   stake is paid back `unbonding_epochs` epochs later. If no one would qualify, the set is
//!   kept unchanged.
//! - Every set is stored with the first height it signs, so evidence is checked against the
//!   set of its own height; sets older than the evidence horizon are pruned at epoch ends. Evidence ([`Evidence::verify`]) may be submitted by anyone up to
//!   `unbonding_epochs × epoch_length` blocks after the fact; it burns `slash_bps` of the
//!   offender's bonded and pending stake, starts unbonding the rest, tombstones the offender and
//!   removes it from the set from the next height. The same (offender, height) is refused twice,
//!   as is evidence against an already removed validator. Removing the last validator is refused.
//!   Stake already unbonding when the evidence lands is not slashed.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use tokenomics::Amount;

use super::{
    bank, decode_call, get_decoded, key, BlockContext, CallInfo, ExecError, Genesis, GenesisError,
    LedgerError, Module, Pending, RejectCode, Rejection, TxContext,
};
use crate::block::{ChainContext, ChainValidator};
use crate::consensus::secp::ValidatorAddress;
use crate::consensus::{Evidence, Validator, ValidatorSet};
use crate::state::StateView;
use crate::tx::{AccountAddress, ModuleId};

/// Prefix of validator records.
pub const VALIDATOR_PREFIX: &[u8] = b"stake/v/";
/// Prefix of unbonding entries.
pub const UNBONDING_PREFIX: &[u8] = b"stake/u/";
/// Prefix of stored validator sets.
pub const SET_PREFIX: &[u8] = b"stake/s/";
/// Key of the list of stored sets' first heights.
pub const SET_HEIGHTS_KEY: &[u8] = b"stake/sh";
/// Prefix of processed evidence.
pub const EVIDENCE_PREFIX: &[u8] = b"stake/e/";
/// Key of the "set changed in this block" flag.
pub const CHANGED_KEY: &[u8] = b"stake/changed";

/// Most validator records scanned at an epoch boundary.
pub const MAX_VALIDATORS: usize = 100_000;

/// The state key of a validator record.
pub fn validator_key(address: &ValidatorAddress) -> Vec<u8> {
    key(VALIDATOR_PREFIX, &[&address.0])
}

/// The state key of the set that signs from `height`.
pub fn set_key(height: u64) -> Vec<u8> {
    key(SET_PREFIX, &[&height.to_be_bytes()])
}

/// The state key marking evidence against `offender` at `height` as processed.
pub fn evidence_key(offender: &ValidatorAddress, height: u64) -> Vec<u8> {
    key(EVIDENCE_PREFIX, &[&offender.0, &height.to_be_bytes()])
}

fn unbonding_key(release_epoch: u64, address: &ValidatorAddress) -> Vec<u8> {
    key(
        UNBONDING_PREFIX,
        &[&release_epoch.to_be_bytes(), &address.0],
    )
}

/// A validator (or candidate) as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorRecord {
    /// Its consensus and account key.
    pub public_key: PublicKey,
    /// Stake in force.
    pub bonded: Amount,
    /// Stake added this epoch (bonded at its end).
    pub pending_bond: Amount,
    /// Stake leaving at the end of this epoch.
    pub pending_unbond: Amount,
    /// Slashed for double signing and removed for good.
    pub tombstoned: bool,
}

/// A staking call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StakingCall {
    /// Bonds tokens of the sender (whose key becomes a validator key) from the next epoch.
    Stake {
        /// Tokens bonded.
        amount: Amount,
    },
    /// Starts unbonding stake at the end of the epoch.
    Unstake {
        /// Tokens unbonded.
        amount: Amount,
    },
    /// Double-sign evidence (anyone may submit).
    Evidence(Box<Evidence<ChainContext>>),
}

/// The record of a validator.
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn validator(
    view: &(impl StateView + ?Sized),
    address: &ValidatorAddress,
) -> Result<Option<ValidatorRecord>, LedgerError> {
    get_decoded(view, &validator_key(address))
}

fn set_heights(view: &(impl StateView + ?Sized)) -> Result<Vec<u64>, LedgerError> {
    Ok(get_decoded(view, SET_HEIGHTS_KEY)?.unwrap_or_default())
}

/// The validator set that signs `height`.
///
/// # Errors
/// [`LedgerError::Corrupt`] if no set covers `height`.
pub fn set_at(
    view: &(impl StateView + ?Sized),
    height: u64,
) -> Result<Vec<ChainValidator>, LedgerError> {
    let heights = set_heights(view)?;
    let from = heights
        .iter()
        .rev()
        .find(|h| **h <= height)
        .copied()
        .ok_or_else(|| LedgerError::Corrupt(format!("no validator set covers height {height}")))?;
    get_decoded(view, &set_key(from))?
        .ok_or_else(|| LedgerError::Corrupt(format!("validator set from height {from} missing")))
}

/// The most recent validator set (the one that signs the next block).
///
/// # Errors
/// [`LedgerError`] if the state fails or holds no set.
pub fn current_set(view: &(impl StateView + ?Sized)) -> Result<Vec<ChainValidator>, LedgerError> {
    set_at(view, u64::MAX)
}

fn store_set(
    state: &mut Pending<'_>,
    from_height: u64,
    set: &[ChainValidator],
) -> Result<(), LedgerError> {
    let mut heights = set_heights(state)?;
    heights.retain(|h| *h < from_height);
    heights.push(from_height);
    state.put_encoded(set_key(from_height), &set.to_vec())?;
    state.put_encoded(SET_HEIGHTS_KEY.to_vec(), &heights)
}

/// Drops stored sets no admissible evidence can need any more: evidence is accepted up to
/// `unbonding_epochs × epoch_length` blocks back, so after `height` only the set covering
/// `height + 1 − max_age` and later ones are kept.
fn prune_sets(
    state: &mut Pending<'_>,
    height: u64,
    params: &super::LedgerParams,
) -> Result<(), LedgerError> {
    let max_age = params.unbonding_epochs.saturating_mul(params.epoch_length);
    let oldest_needed = height.saturating_add(1).saturating_sub(max_age);
    let heights = set_heights(state)?;
    let keep_from = heights
        .iter()
        .rposition(|h| *h <= oldest_needed)
        .unwrap_or(0);
    let (old, kept) = heights.split_at(keep_from.min(heights.len()));
    if old.is_empty() {
        return Ok(());
    }
    for h in old {
        state.delete(set_key(*h));
    }
    let kept = kept.to_vec();
    state.put_encoded(SET_HEIGHTS_KEY.to_vec(), &kept)
}

fn all_validators(
    view: &(impl StateView + ?Sized),
) -> Result<Vec<(ValidatorAddress, ValidatorRecord)>, LedgerError> {
    let mut out = Vec::new();
    for (k, v) in view.scan_prefix(VALIDATOR_PREFIX, MAX_VALIDATORS)? {
        let addr: [u8; 20] = k
            .get(VALIDATOR_PREFIX.len()..)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| LedgerError::Corrupt("validator key length".into()))?;
        let rec: ValidatorRecord = primitives::codec::from_slice(&v)
            .map_err(|e| LedgerError::Corrupt(format!("validator record: {e}")))?;
        out.push((ValidatorAddress(addr), rec));
    }
    Ok(out)
}

/// Σ of stake held by the module: bonded, pending and unbonding.
///
/// # Errors
/// [`LedgerError`] if the state fails or the sum overflows.
pub fn total_staked(view: &(impl StateView + ?Sized)) -> Result<Amount, LedgerError> {
    let overflow = || LedgerError::Token(tokenomics::Error::AboveCap);
    let mut total = Amount::ZERO;
    for (_, r) in all_validators(view)? {
        total = Amount::checked_sum([total, r.bonded, r.pending_bond]).ok_or_else(overflow)?;
    }
    for (_, v) in view.scan_prefix(UNBONDING_PREFIX, usize::MAX)? {
        let a: u64 = primitives::codec::from_slice(&v)
            .map_err(|e| LedgerError::Corrupt(format!("unbonding entry: {e}")))?;
        let a = Amount::from_base_units(a).ok_or_else(overflow)?;
        total = total.checked_add(a).ok_or_else(overflow)?;
    }
    Ok(total)
}

fn add_unbonding(
    state: &mut Pending<'_>,
    release_epoch: u64,
    address: &ValidatorAddress,
    amount: Amount,
) -> Result<(), LedgerError> {
    if amount.is_zero() {
        return Ok(());
    }
    let k = unbonding_key(release_epoch, address);
    let old: u64 = get_decoded(state, &k)?.unwrap_or(0);
    let new = Amount::from_base_units(old)
        .and_then(|o| o.checked_add(amount))
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
    state.put_encoded(k, &new.to_base_units())
}

fn members(
    records: &[(ValidatorAddress, ValidatorRecord)],
    min_stake: Amount,
) -> Vec<ChainValidator> {
    records
        .iter()
        .filter(|(_, r)| !r.tombstoned && r.bonded >= min_stake && !r.bonded.is_zero())
        .map(|(a, r)| Validator {
            address: *a,
            public_key: r.public_key,
            voting_power: r.bonded.to_base_units(),
        })
        .collect()
}

/// The staking module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Staking;

impl Staking {
    fn call(ctx: &TxContext<'_>) -> Result<StakingCall, Rejection> {
        decode_call(&ctx.tx.call)
    }

    fn stake(
        ctx: &TxContext<'_>,
        state: &mut Pending<'_>,
        amount: Amount,
    ) -> Result<(), ExecError> {
        let address = ValidatorAddress::from_public_key(&ctx.tx.sender);
        let mut rec = validator(state, &address)?.unwrap_or(ValidatorRecord {
            public_key: ctx.tx.sender,
            bonded: Amount::ZERO,
            pending_bond: Amount::ZERO,
            pending_unbond: Amount::ZERO,
            tombstoned: false,
        });
        if rec.tombstoned {
            return Err(Rejection::new(
                RejectCode::Unauthorized,
                "this validator was removed for double signing and may not stake again",
            )
            .into());
        }
        bank::withdraw(state, &ctx.sender, amount)?;
        rec.pending_bond = rec
            .pending_bond
            .checked_add(amount)
            .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
        state.put_encoded(validator_key(&address), &rec)?;
        Ok(())
    }

    fn unstake(
        ctx: &TxContext<'_>,
        state: &mut Pending<'_>,
        amount: Amount,
    ) -> Result<(), ExecError> {
        let address = ValidatorAddress::from_public_key(&ctx.tx.sender);
        let mut rec = validator(state, &address)?
            .ok_or_else(|| Rejection::new(RejectCode::Conflict, "the sender has no stake"))?;
        let available = rec
            .bonded
            .checked_add(rec.pending_bond)
            .and_then(|a| a.checked_sub(rec.pending_unbond))
            .unwrap_or(Amount::ZERO);
        if amount > available {
            return Err(Rejection::new(
                RejectCode::InsufficientFunds,
                format!("unstake of {amount} but only {available} is staked and not leaving"),
            )
            .into());
        }
        rec.pending_unbond = rec
            .pending_unbond
            .checked_add(amount)
            .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
        state.put_encoded(validator_key(&address), &rec)?;
        Ok(())
    }

    fn evidence(
        ctx: &TxContext<'_>,
        state: &mut Pending<'_>,
        ev: &Evidence<ChainContext>,
    ) -> Result<(), ExecError> {
        let p = ctx.params;
        let height = ev.first.vote.height;
        let offender = *ev.offender();
        if height > ctx.block.height {
            return Err(
                Rejection::new(RejectCode::BadCall, "evidence from a future height").into(),
            );
        }
        let max_age = p.unbonding_epochs.saturating_mul(p.epoch_length);
        if ctx.block.height.saturating_sub(height) > max_age {
            return Err(Rejection::new(
                RejectCode::Conflict,
                format!("evidence from height {height} is older than {max_age} blocks"),
            )
            .into());
        }
        let ek = evidence_key(&offender, height);
        if state.get(&ek)?.is_some() {
            return Err(Rejection::new(
                RejectCode::Duplicate,
                format!("evidence against {offender} at height {height} was already processed"),
            )
            .into());
        }
        let members = set_at(state, height)?;
        let set = ValidatorSet::new(members).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        ev.verify(&ChainContext::new(p.chain_id.clone()), &set)
            .map_err(|e| Rejection::new(RejectCode::BadCall, format!("invalid evidence: {e}")))?;
        let mut rec = validator(state, &offender)?
            .ok_or_else(|| LedgerError::Corrupt(format!("set member {offender} has no record")))?;
        if rec.tombstoned {
            return Err(Rejection::new(
                RejectCode::Duplicate,
                format!("{offender} was already slashed and removed"),
            )
            .into());
        }
        let current: Vec<ChainValidator> = current_set(state)?
            .into_iter()
            .filter(|v| v.address != offender)
            .collect();
        if current.is_empty() {
            return Err(Rejection::new(
                RejectCode::Conflict,
                "the offender is the only validator; removing it would halt the chain",
            )
            .into());
        }
        let overflow = || LedgerError::Token(tokenomics::Error::AboveCap);
        let at_stake = rec
            .bonded
            .checked_add(rec.pending_bond)
            .ok_or_else(overflow)?;
        let slash = at_stake.mul_bps(p.slash_bps).ok_or_else(overflow)?;
        let rest = at_stake.checked_sub(slash).ok_or_else(overflow)?;
        rec.bonded = Amount::ZERO;
        rec.pending_bond = Amount::ZERO;
        rec.pending_unbond = Amount::ZERO;
        rec.tombstoned = true;
        let release = p
            .epoch_of(ctx.block.height)
            .saturating_add(1)
            .saturating_add(p.unbonding_epochs);
        add_unbonding(state, release, &offender, rest)?;
        bank::burn(state, slash)?;
        state.put_encoded(validator_key(&offender), &rec)?;
        state.put_encoded(ek, &())?;
        store_set(state, ctx.block.height.saturating_add(1), &current)?;
        state.put_encoded(CHANGED_KEY.to_vec(), &())?;
        Ok(())
    }

    fn epoch_change(
        ctx: &BlockContext,
        state: &mut Pending<'_>,
        params: &super::LedgerParams,
    ) -> Result<Option<Vec<ChainValidator>>, LedgerError> {
        let new_epoch = params.epoch_of(ctx.height).saturating_add(1);
        let overflow = || LedgerError::Token(tokenomics::Error::AboveCap);
        let mut records = all_validators(state)?;
        for (addr, rec) in records.iter_mut() {
            if rec.pending_bond.is_zero() && rec.pending_unbond.is_zero() {
                continue;
            }
            let total = rec
                .bonded
                .checked_add(rec.pending_bond)
                .ok_or_else(overflow)?;
            let leaving = rec.pending_unbond.min(total);
            rec.bonded = total.checked_sub(leaving).ok_or_else(overflow)?;
            rec.pending_bond = Amount::ZERO;
            rec.pending_unbond = Amount::ZERO;
            let release = new_epoch.saturating_add(params.unbonding_epochs);
            add_unbonding(state, release, addr, leaving)?;
            state.put_encoded(validator_key(addr), rec)?;
        }
        for (k, v) in state.scan_prefix(UNBONDING_PREFIX, usize::MAX)? {
            let rest = k.get(UNBONDING_PREFIX.len()..).unwrap_or_default();
            let (epoch_bytes, addr_bytes) = rest.split_at(rest.len().min(8));
            let epoch = u64::from_be_bytes(
                epoch_bytes
                    .try_into()
                    .map_err(|_| LedgerError::Corrupt("unbonding key".into()))?,
            );
            if epoch > new_epoch {
                break;
            }
            let addr: [u8; 20] = addr_bytes
                .try_into()
                .map_err(|_| LedgerError::Corrupt("unbonding key".into()))?;
            let units: u64 = primitives::codec::from_slice(&v)
                .map_err(|e| LedgerError::Corrupt(format!("unbonding entry: {e}")))?;
            let amount = Amount::from_base_units(units).ok_or_else(overflow)?;
            let rec = validator(state, &ValidatorAddress(addr))?.ok_or_else(|| {
                LedgerError::Corrupt("unbonding entry without a validator".into())
            })?;
            bank::deposit(
                state,
                &AccountAddress::from_public_key(&rec.public_key),
                amount,
            )?;
            state.delete(k);
        }
        prune_sets(state, ctx.height, params)?;
        let set = members(&records, params.min_stake);
        if set.is_empty() || ValidatorSet::new(set.clone()).is_err() {
            return Ok(None);
        }
        store_set(state, ctx.height.saturating_add(1), &set)?;
        Ok(Some(set))
    }
}

impl Module for Staking {
    fn id(&self) -> ModuleId {
        ModuleId::STAKING
    }

    fn name(&self) -> &'static str {
        "staking"
    }

    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[b"stake/"]
    }

    fn check_call(&self, ctx: &TxContext<'_>) -> Result<CallInfo, Rejection> {
        match Self::call(ctx)? {
            StakingCall::Stake { amount } | StakingCall::Unstake { amount } if amount.is_zero() => {
                Err(Rejection::new(
                    RejectCode::BadCall,
                    "stake change of zero tokens",
                ))
            }
            StakingCall::Evidence(ev) if ev.first.vote.validator != ev.second.vote.validator => {
                Err(Rejection::new(
                    RejectCode::BadCall,
                    "evidence votes are by different validators",
                ))
            }
            _ => Ok(CallInfo::default()),
        }
    }

    fn check_state(&self, ctx: &TxContext<'_>, view: &dyn StateView) -> Result<(), Rejection> {
        let mut scratch = Pending::new(view);
        match self.deliver(ctx, &mut scratch) {
            Ok(()) => Ok(()),
            Err(ExecError::Failed(r)) => Err(r),
            Err(ExecError::Fatal(e)) => Err(e.into()),
        }
    }

    fn deliver(&self, ctx: &TxContext<'_>, state: &mut Pending<'_>) -> Result<(), ExecError> {
        match Self::call(ctx)? {
            StakingCall::Stake { amount } => Self::stake(ctx, state, amount),
            StakingCall::Unstake { amount } => Self::unstake(ctx, state, amount),
            StakingCall::Evidence(ev) => Self::evidence(ctx, state, &ev),
        }
    }

    fn init_genesis(&self, genesis: &Genesis, state: &mut Pending<'_>) -> Result<(), GenesisError> {
        let mut records = Vec::new();
        for v in &genesis.validators {
            let pk = v.key()?;
            let rec = ValidatorRecord {
                public_key: pk,
                bonded: v.stake,
                pending_bond: Amount::ZERO,
                pending_unbond: Amount::ZERO,
                tombstoned: false,
            };
            let addr = ValidatorAddress::from_public_key(&pk);
            state.put_encoded(validator_key(&addr), &rec)?;
            records.push((addr, rec));
        }
        let set = members(&records, genesis.min_stake);
        ValidatorSet::<ChainContext>::new(set.clone())
            .map_err(|e| GenesisError::Invalid(format!("validator set: {e}")))?;
        store_set(state, 1, &set)?;
        Ok(())
    }

    fn end_block(
        &self,
        ctx: &BlockContext,
        state: &mut Pending<'_>,
    ) -> Result<Option<Vec<ChainValidator>>, LedgerError> {
        let params = super::Ledger::params(state)?;
        let changed = state.get(CHANGED_KEY)?.is_some();
        if changed {
            state.delete(CHANGED_KEY.to_vec());
        }
        if params.is_epoch_end(ctx.height) {
            if let Some(set) = Self::epoch_change(ctx, state, &params)? {
                return Ok(Some(set));
            }
        }
        if changed {
            return Ok(Some(current_set(state)?));
        }
        Ok(None)
    }
}
