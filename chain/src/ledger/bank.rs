//! The bank: accounts (nonce, tokens, non-transferable fee credits), transfers, fees and the
//! issuance counters, all through the `tokenomics` rules.
//!
//! - Fees: every transaction pays at least [`LedgerParams::min_tx_fee`] plus the fee of the data
//!   operation its call bills (a put, by size or mileage, from the `tokenomics` fee schedule).
//!   The payer pays with fee credits first, then tokens ([`Issuance::settle_payment`]); credits
//!   redeemed are minted from the automatic pool, and for producer operations (puts) the
//!   automatic pool mirrors the data-operation part back to the payer while it lasts
//!   ([`Issuance::commit`]). The block's fees collect in the fee pool and go to the block's
//!   proposer at end-block (they stay in the pool if the proposer is not a known validator).
//! - Genesis balances and stakes are the first phase-3 sale ([`Issuance::buy_tokens`] at the
//!   sale's start epoch), so they count against the cap like every other issued token.
//! - Supply invariant: Σ tokens + Σ stake (bonded, pending, unbonding) + fee pool + burned
//!   = issued ([`Issuance::total_issued`]); Σ credits = credits outstanding; issued + credits
//!   outstanding ≤ cap. Burns are slashes.
//! - Phase-2 prefetch allocations need audited storage and compute figures the chain does not
//!   have yet; they are not run here.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde::{Deserialize, Serialize};
use tokenomics::{AccountBalance, Amount, DataOp, Issuance, SettlementTotals};

use super::{
    decode_call, get_decoded, key, staking, CallInfo, ExecError, Genesis, GenesisError,
    LedgerError, LedgerParams, Module, Pending, RejectCode, Rejection, TxContext,
};
use crate::block::ChainValidator;
use crate::state::StateView;
use crate::tx::{AccountAddress, ModuleId};

/// Prefix of accounts.
pub const ACCOUNT_PREFIX: &[u8] = b"bank/a/";
/// Key of the issuance counters.
pub const ISSUANCE_KEY: &[u8] = b"bank/issuance";
/// Key of the fee pool and burn counter.
pub const SUPPLY_KEY: &[u8] = b"bank/supply";

/// The state key of an account.
pub fn account_key(address: &AccountAddress) -> Vec<u8> {
    key(ACCOUNT_PREFIX, &[&address.0])
}

/// An account as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The next nonce the account's transactions must use.
    pub nonce: u64,
    /// Transferable tokens.
    pub tokens: Amount,
    /// Fee credits (pay fees only; never transferred).
    pub credits: Amount,
}

impl AccountRecord {
    /// The `tokenomics` balance of the account.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] if the balance cannot be rebuilt.
    pub fn balance(&self) -> Result<AccountBalance, LedgerError> {
        Ok(AccountBalance::restore(self.tokens, self.credits))
    }

    fn set_balance(&mut self, b: &AccountBalance) {
        self.tokens = b.tokens();
        self.credits = b.credits().amount();
    }
}

/// The fee pool (fees of the current block, paid out at end-block) and the burned total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyRecord {
    /// Fees collected and not yet paid to a proposer.
    pub fee_pool: Amount,
    /// Tokens destroyed (slashes).
    pub burned: Amount,
}

/// A bank call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankCall {
    /// Moves tokens (never credits) to another account.
    Transfer {
        /// Recipient.
        to: AccountAddress,
        /// Amount moved.
        amount: Amount,
    },
}

/// The account at `address` (all zero if it never received anything).
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn account(
    view: &(impl StateView + ?Sized),
    address: &AccountAddress,
) -> Result<AccountRecord, LedgerError> {
    Ok(get_decoded(view, &account_key(address))?.unwrap_or_default())
}

/// Stores an account.
///
/// # Errors
/// [`LedgerError::Corrupt`] if it does not encode.
pub fn put_account(
    state: &mut Pending<'_>,
    address: &AccountAddress,
    record: &AccountRecord,
) -> Result<(), LedgerError> {
    state.put_encoded(account_key(address), record)
}

/// The issuance counters.
///
/// # Errors
/// [`LedgerError::NotInitialised`] before genesis, [`LedgerError::Corrupt`].
pub fn issuance(view: &(impl StateView + ?Sized)) -> Result<Issuance, LedgerError> {
    let bytes = view.get(ISSUANCE_KEY)?.ok_or(LedgerError::NotInitialised)?;
    primitives::codec::from_slice(&bytes)
        .map_err(|e| LedgerError::Corrupt(format!("issuance: {e}")))
}

fn put_issuance(state: &mut Pending<'_>, iss: &Issuance) -> Result<(), LedgerError> {
    state.put_encoded(ISSUANCE_KEY.to_vec(), iss)
}

/// The fee pool and burned total.
///
/// # Errors
/// [`LedgerError`] if the state fails.
pub fn supply(view: &(impl StateView + ?Sized)) -> Result<SupplyRecord, LedgerError> {
    Ok(get_decoded(view, SUPPLY_KEY)?.unwrap_or_default())
}

fn put_supply(state: &mut Pending<'_>, s: &SupplyRecord) -> Result<(), LedgerError> {
    state.put_encoded(SUPPLY_KEY.to_vec(), s)
}

/// Records `amount` as destroyed (a slash).
///
/// # Errors
/// [`LedgerError`] if the state fails or the counter overflows.
pub fn burn(state: &mut Pending<'_>, amount: Amount) -> Result<(), LedgerError> {
    let mut s = supply(state)?;
    s.burned = s
        .burned
        .checked_add(amount)
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
    put_supply(state, &s)
}

/// Adds tokens to an account (a payout, a release of unbonded stake).
///
/// # Errors
/// [`LedgerError`] if the state fails or the balance would exceed the cap.
pub fn deposit(
    state: &mut Pending<'_>,
    address: &AccountAddress,
    amount: Amount,
) -> Result<(), LedgerError> {
    let mut acct = account(state, address)?;
    acct.tokens = acct
        .tokens
        .checked_add(amount)
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
    put_account(state, address, &acct)
}

/// Removes tokens from an account (stake bonding).
///
/// # Errors
/// [`ExecError::Failed`] with [`RejectCode::InsufficientFunds`] if the tokens do not cover it.
pub fn withdraw(
    state: &mut Pending<'_>,
    address: &AccountAddress,
    amount: Amount,
) -> Result<(), ExecError> {
    let mut acct = account(state, address)?;
    acct.tokens = acct.tokens.checked_sub(amount).ok_or_else(|| {
        Rejection::new(
            RejectCode::InsufficientFunds,
            format!("{amount} needed, the account holds {} tokens", acct.tokens),
        )
    })?;
    put_account(state, address, &acct)?;
    Ok(())
}

/// Grants a newly set-up device its fee credits from the automatic pool (fewer or none when
/// the pool is nearly exhausted); returns the amount granted.
///
/// # Errors
/// [`LedgerError`] if the state fails or the rules refuse.
pub fn grant_device_credits(
    state: &mut Pending<'_>,
    device: &AccountAddress,
) -> Result<Amount, LedgerError> {
    let mut iss = issuance(state)?;
    let grant = iss.register_device()?;
    let granted = grant.amount();
    let mut acct = account(state, device)?;
    let mut bal = acct.balance()?;
    bal.receive_grant(grant)?;
    acct.set_balance(&bal);
    put_account(state, device, &acct)?;
    put_issuance(state, &iss)?;
    Ok(granted)
}

/// Moves a device's unspent fee credits from its old key's account to its new one when its
/// owner rotates the key: the credits belong to the device (granted once per VID at setup),
/// not to a key, and still never reach any other account. Returns the amount moved.
///
/// # Errors
/// [`LedgerError`] if the state fails or the new account's credits would overflow.
pub fn move_device_credits(
    state: &mut Pending<'_>,
    from: &AccountAddress,
    to: &AccountAddress,
) -> Result<Amount, LedgerError> {
    if from == to {
        return Ok(Amount::ZERO);
    }
    let mut old = account(state, from)?;
    let moved = old.credits;
    if moved == Amount::ZERO {
        return Ok(moved);
    }
    let mut new = account(state, to)?;
    new.credits = new
        .credits
        .checked_add(moved)
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
    old.credits = Amount::ZERO;
    put_account(state, from, &old)?;
    put_account(state, to, &new)?;
    Ok(moved)
}

/// The minimum fee of a transaction billing `op`: the base fee plus the operation's fee.
///
/// # Errors
/// [`LedgerError`] if the state fails or the fee overflows.
pub fn min_fee(
    view: &(impl StateView + ?Sized),
    params: &LedgerParams,
    op: Option<&DataOp>,
) -> Result<Amount, LedgerError> {
    let data = match op {
        None => Amount::ZERO,
        Some(op) => issuance(view)?.fee(op)?,
    };
    params
        .min_tx_fee
        .checked_add(data)
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))
}

/// Charges a transaction's fee to `payer` and bumps its nonce: credits first, then tokens;
/// credits redeemed and the producer mirror mint are committed to the automatic pool; the fee
/// goes to the fee pool.
///
/// # Errors
/// [`ExecError::Failed`] with [`RejectCode::InsufficientFunds`] if the payer cannot pay.
pub fn charge_fee(
    state: &mut Pending<'_>,
    payer: &AccountAddress,
    fee: Amount,
    op: Option<&DataOp>,
) -> Result<(), ExecError> {
    let mut iss = issuance(state)?;
    let mut acct = account(state, payer)?;
    let mut bal = acct.balance()?;
    let (mints, allowance) = match op {
        Some(op) if op.mints() => (
            true,
            iss.automatic_remaining()
                .min(iss.fee(op).map_err(LedgerError::from)?),
        ),
        _ => (false, Amount::ZERO),
    };
    let settlement = Issuance::settle_payment(&mut bal, fee, mints, allowance).map_err(|e| {
        Rejection::new(
            RejectCode::InsufficientFunds,
            format!("cannot pay the fee {fee}: {e}"),
        )
    })?;
    let mut totals = SettlementTotals::default();
    totals.add(&settlement).map_err(LedgerError::from)?;
    iss.commit(&totals).map_err(LedgerError::from)?;
    acct.set_balance(&bal);
    acct.nonce = acct
        .nonce
        .checked_add(1)
        .ok_or_else(|| Rejection::new(RejectCode::NonceTooHigh, "account nonce exhausted"))?;
    let mut s = supply(state)?;
    s.fee_pool = s
        .fee_pool
        .checked_add(settlement.to_providers)
        .ok_or(LedgerError::Token(tokenomics::Error::AboveCap))?;
    put_account(state, payer, &acct)?;
    put_issuance(state, &iss)?;
    put_supply(state, &s)?;
    Ok(())
}

/// The bank module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bank;

impl Bank {
    fn call(ctx: &TxContext<'_>) -> Result<BankCall, Rejection> {
        decode_call(&ctx.tx.call)
    }
}

impl Module for Bank {
    fn id(&self) -> ModuleId {
        ModuleId::BANK
    }

    fn name(&self) -> &'static str {
        "bank"
    }

    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[b"bank/"]
    }

    fn check_call(&self, ctx: &TxContext<'_>) -> Result<CallInfo, Rejection> {
        let BankCall::Transfer { amount, .. } = Self::call(ctx)?;
        if amount.is_zero() {
            return Err(Rejection::new(
                RejectCode::BadCall,
                "transfer of zero tokens",
            ));
        }
        Ok(CallInfo::default())
    }

    fn check_state(&self, ctx: &TxContext<'_>, view: &dyn StateView) -> Result<(), Rejection> {
        let BankCall::Transfer { amount, .. } = Self::call(ctx)?;
        let acct = account(view, &ctx.sender)?;
        if acct.tokens < amount {
            return Err(Rejection::new(
                RejectCode::InsufficientFunds,
                format!(
                    "transfer of {amount} but the account holds {} tokens after the fee",
                    acct.tokens
                ),
            ));
        }
        Ok(())
    }

    fn deliver(&self, ctx: &TxContext<'_>, state: &mut Pending<'_>) -> Result<(), ExecError> {
        let BankCall::Transfer { to, amount } = Self::call(ctx)?;
        let mut from = account(state, &ctx.sender)?.balance()?;
        if to == ctx.sender {
            from.withdraw(amount)
                .map_err(|e| Rejection::new(RejectCode::InsufficientFunds, e.to_string()))?;
            return Ok(());
        }
        let mut to_bal = account(state, &to)?.balance()?;
        from.transfer_tokens(&mut to_bal, amount).map_err(|e| {
            Rejection::new(
                RejectCode::InsufficientFunds,
                format!("transfer of {amount}: {e}"),
            )
        })?;
        let mut a = account(state, &ctx.sender)?;
        a.set_balance(&from);
        put_account(state, &ctx.sender, &a)?;
        let mut b = account(state, &to)?;
        b.set_balance(&to_bal);
        put_account(state, &to, &b)?;
        Ok(())
    }

    fn init_genesis(&self, genesis: &Genesis, state: &mut Pending<'_>) -> Result<(), GenesisError> {
        let mut iss = Issuance::new(genesis.tokenomics.clone())
            .map_err(|e| GenesisError::Invalid(format!("tokenomics parameters: {e}")))?;
        let network = genesis.bitcoin_network()?;
        let mut total = Amount::ZERO;
        for b in &genesis.balances {
            let addr = AccountAddress::from_bech32(&b.address, network)
                .map_err(|e| GenesisError::Invalid(format!("balance: {e}")))?;
            let mut acct = account(state, &addr).map_err(GenesisError::from)?;
            acct.tokens = acct
                .tokens
                .checked_add(b.amount)
                .ok_or_else(|| GenesisError::Invalid("a balance exceeds the cap".into()))?;
            put_account(state, &addr, &acct).map_err(GenesisError::from)?;
            total = total
                .checked_add(b.amount)
                .ok_or_else(|| GenesisError::Invalid("balances exceed the cap".into()))?;
        }
        for v in &genesis.validators {
            total = total
                .checked_add(v.stake)
                .ok_or_else(|| GenesisError::Invalid("stakes exceed the cap".into()))?;
        }
        if !total.is_zero() {
            let sale = iss
                .buy_tokens(genesis.tokenomics.phase3.sale_start_epoch, total)
                .map_err(|e| GenesisError::Invalid(format!("genesis allocation: {e}")))?;
            if sale.tokens != total {
                return Err(GenesisError::Invalid(format!(
                    "genesis balances and stakes ({total}) exceed the circulation pool ({})",
                    sale.tokens
                )));
            }
        }
        put_issuance(state, &iss).map_err(GenesisError::from)?;
        put_supply(state, &SupplyRecord::default()).map_err(GenesisError::from)?;
        Ok(())
    }

    fn end_block(
        &self,
        ctx: &super::BlockContext,
        state: &mut Pending<'_>,
    ) -> Result<Option<Vec<ChainValidator>>, LedgerError> {
        let mut s = supply(state)?;
        if s.fee_pool.is_zero() {
            return Ok(None);
        }
        if let Some(v) = staking::validator(state, &ctx.proposer)? {
            let to = AccountAddress::from_public_key(&v.public_key);
            deposit(state, &to, s.fee_pool)?;
            s.fee_pool = Amount::ZERO;
            put_supply(state, &s)?;
        }
        Ok(None)
    }
}

/// Totals over the whole state, for invariant checks and the node's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Σ account tokens.
    pub tokens: Amount,
    /// Σ account fee credits.
    pub credits: Amount,
    /// Σ stake held by the staking module (bonded, pending, unbonding).
    pub staked: Amount,
    /// The fee pool.
    pub fee_pool: Amount,
    /// Burned so far.
    pub burned: Amount,
    /// Issued according to the issuance counters.
    pub issued: Amount,
    /// Credits outstanding according to the issuance counters.
    pub credits_outstanding: Amount,
}

impl Totals {
    /// Whether the supply invariant holds: every issued token is in an account, at stake, in
    /// the fee pool or burned; credits match the reservation; nothing exceeds the cap.
    pub fn conserved(&self, cap: Amount) -> bool {
        let held = Amount::checked_sum([self.tokens, self.staked, self.fee_pool, self.burned]);
        let all = self.issued.checked_add(self.credits_outstanding);
        held == Some(self.issued)
            && self.credits == self.credits_outstanding
            && all.is_some_and(|a| a <= cap)
    }
}

/// Sums every account, stake and counter (scans the whole bank and staking state).
///
/// # Errors
/// [`LedgerError`] if the state fails or a sum overflows.
pub fn totals(view: &(impl StateView + ?Sized)) -> Result<Totals, LedgerError> {
    let overflow = || LedgerError::Token(tokenomics::Error::AboveCap);
    let mut t = Totals::default();
    for (k, v) in view.scan_prefix(ACCOUNT_PREFIX, usize::MAX)? {
        let a: AccountRecord = primitives::codec::from_slice(&v)
            .map_err(|e| LedgerError::Corrupt(format!("account {}: {e}", hex::encode(k))))?;
        t.tokens = t.tokens.checked_add(a.tokens).ok_or_else(overflow)?;
        t.credits = t.credits.checked_add(a.credits).ok_or_else(overflow)?;
    }
    t.staked = staking::total_staked(view)?;
    let s = supply(view)?;
    t.fee_pool = s.fee_pool;
    t.burned = s.burned;
    let iss = issuance(view)?;
    t.issued = iss.total_issued()?;
    t.credits_outstanding = iss.credits_outstanding();
    Ok(t)
}
