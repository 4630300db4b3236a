//! The issuance state machine: pool counters, phases, and the transitions that mint.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde::{Deserialize, Serialize};

use crate::params::{GenesisParams, MintBasis, PriceSchedule, StorageMode, BPS_DENOM};
use crate::{Amount, Error};

/// Fee credits: a balance that can only pay fees and has no transfer operation.
///
/// Credits are granted from the automatic pool when a device registers and are reserved there;
/// when they pay a fee the reserve mints that many real tokens to the providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeeCredits(Amount);

impl FeeCredits {
    /// No credits.
    pub const ZERO: FeeCredits = FeeCredits(Amount::ZERO);

    /// The credit balance as an amount (for display and accounting only).
    #[inline]
    pub fn amount(self) -> Amount {
        self.0
    }
}

/// Credits granted to one registered device, to be added to its balance with
/// [`AccountBalance::receive_grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a credit grant is reserved from the automatic pool and must be credited"]
pub struct CreditGrant(FeeCredits);

impl CreditGrant {
    /// Credits in the grant.
    #[inline]
    pub fn amount(self) -> Amount {
        self.0 .0
    }
}

/// The two balance kinds of an account: transferable tokens and non-transferable fee credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    tokens: Amount,
    credits: FeeCredits,
}

/// How a fee was paid by one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Paid out of fee credits.
    pub from_credits: Amount,
    /// Paid out of tokens.
    pub from_tokens: Amount,
}

impl AccountBalance {
    /// An account holding `tokens` and no credits.
    pub fn with_tokens(tokens: Amount) -> AccountBalance {
        AccountBalance {
            tokens,
            credits: FeeCredits::ZERO,
        }
    }

    /// Rebuilds a balance from its stored parts (a ledger reading its own state back). Credits
    /// only ever enter an account through [`AccountBalance::receive_grant`]; this constructor
    /// exists so storage layers can restore what they persisted, and nothing else should call it.
    pub fn restore(tokens: Amount, credits: Amount) -> AccountBalance {
        AccountBalance {
            tokens,
            credits: FeeCredits(credits),
        }
    }

    /// Transferable tokens.
    #[inline]
    pub fn tokens(&self) -> Amount {
        self.tokens
    }

    /// Fee credits.
    #[inline]
    pub fn credits(&self) -> FeeCredits {
        self.credits
    }

    /// What the account can spend on fees: tokens plus credits.
    pub fn fee_capacity(&self) -> Option<Amount> {
        self.tokens.checked_add(self.credits.0)
    }

    /// Adds received tokens (a transfer's credit side, a mint, a purchase).
    #[inline]
    pub fn deposit(&mut self, amount: Amount) -> Result<(), Error> {
        self.tokens = self.tokens.checked_add(amount).ok_or(Error::AboveCap)?;
        Ok(())
    }

    /// Removes tokens being sent elsewhere.
    #[inline]
    pub fn withdraw(&mut self, amount: Amount) -> Result<(), Error> {
        self.tokens = self
            .tokens
            .checked_sub(amount)
            .ok_or(Error::InsufficientFunds {
                need: amount,
                have: self.tokens,
            })?;
        Ok(())
    }

    /// Moves tokens to another account; credits never move.
    pub fn transfer_tokens(
        &mut self,
        to: &mut AccountBalance,
        amount: Amount,
    ) -> Result<(), Error> {
        let new_to = to.tokens.checked_add(amount).ok_or(Error::AboveCap)?;
        self.withdraw(amount)?;
        to.tokens = new_to;
        Ok(())
    }

    /// Adds a registration grant to the credit balance.
    pub fn receive_grant(&mut self, grant: CreditGrant) -> Result<(), Error> {
        self.credits = FeeCredits(
            self.credits
                .0
                .checked_add(grant.0 .0)
                .ok_or(Error::AboveCap)?,
        );
        Ok(())
    }

    /// Pays a fee, credits first and then tokens; nothing changes if the account cannot pay.
    #[inline(always)]
    pub fn pay_fee(&mut self, fee: Amount) -> Result<Payment, Error> {
        let from_credits = fee.min(self.credits.0);
        let from_tokens = fee.checked_sub(from_credits).ok_or(Error::Overflow)?;
        if from_tokens > self.tokens {
            return Err(Error::InsufficientFunds {
                need: fee,
                have: self.fee_capacity().unwrap_or(Amount::MAX_SUPPLY),
            });
        }
        self.credits = FeeCredits(
            self.credits
                .0
                .checked_sub(from_credits)
                .ok_or(Error::Overflow)?,
        );
        self.tokens = self
            .tokens
            .checked_sub(from_tokens)
            .ok_or(Error::Overflow)?;
        Ok(Payment {
            from_credits,
            from_tokens,
        })
    }
}

/// A paid data operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum DataOp {
    /// A device puts a record; billed by bytes or by metres driven per the phase-1 basis.
    Put {
        /// Size of the encrypted value.
        bytes: u64,
        /// Distance covered by the record.
        metres: u64,
    },
    /// Storage of a producer's data for some epochs.
    Store {
        /// Bytes kept.
        bytes: u64,
        /// Epochs kept.
        epochs: u64,
        /// Mode of the storing node.
        mode: StorageMode,
    },
    /// Compute over the producer's data.
    Compute {
        /// Metered units.
        units: u64,
    },
    /// A read by an application, billed per address traversed; never minted against.
    Read {
        /// Addresses traversed.
        addresses: u64,
    },
}

impl DataOp {
    /// Whether the reserve mirrors this payment with a mint to the payer (producer operations).
    #[inline]
    pub fn mints(&self) -> bool {
        !matches!(self, DataOp::Read { .. })
    }
}

/// The explicit outcome of a settled data operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The fee charged.
    pub fee: Amount,
    /// How the payer paid it.
    pub payment: Payment,
    /// Tokens the providers receive: the fee (credits are redeemed by a mint from the reserve).
    pub to_providers: Amount,
    /// Tokens minted to the payer by the mirror rule (less than the fee only when the pool ran out).
    pub minted_to_payer: Amount,
}

impl Settlement {
    /// Tokens newly minted by this settlement: redeemed credits plus the mirror mint.
    pub fn newly_minted(&self) -> Option<Amount> {
        self.payment.from_credits.checked_add(self.minted_to_payer)
    }
}

/// Sums of many settlements, committed to the pools at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementTotals {
    /// Credits redeemed.
    pub from_credits: Amount,
    /// Tokens paid.
    pub from_tokens: Amount,
    /// Mirror mints.
    pub minted_to_payers: Amount,
}

impl SettlementTotals {
    /// Adds one settlement.
    #[inline]
    pub fn add(&mut self, s: &Settlement) -> Result<(), Error> {
        self.merge(&SettlementTotals {
            from_credits: s.payment.from_credits,
            from_tokens: s.payment.from_tokens,
            minted_to_payers: s.minted_to_payer,
        })
    }

    /// Adds another sum.
    #[inline]
    pub fn merge(&mut self, o: &SettlementTotals) -> Result<(), Error> {
        let add = |a: Amount, b: Amount| a.checked_add(b).ok_or(Error::AboveCap);
        *self = SettlementTotals {
            from_credits: add(self.from_credits, o.from_credits)?,
            from_tokens: add(self.from_tokens, o.from_tokens)?,
            minted_to_payers: add(self.minted_to_payers, o.minted_to_payers)?,
        };
        Ok(())
    }
}

/// What an agent node contributed in one epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// Bytes whose storage audits passed this epoch.
    pub audited_bytes: u64,
    /// Metered compute units served this epoch.
    pub compute_units: u64,
}

/// The outcome of one phase-2 epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The epoch allocated.
    pub epoch: u64,
    /// Amount available this epoch (schedule clamped to the pool).
    pub available: Amount,
    /// Share of each contributor, in the order given.
    pub shares: Vec<Amount>,
    /// Sum of the shares.
    pub minted: Amount,
}

/// The outcome of one phase-3 purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// Tokens bought (to be deposited to the buyer).
    pub tokens: Amount,
    /// Price paid in quote units (credited to the community fund).
    pub cost_quote: u128,
}

/// Issuance phases, which only move forward.
///
/// Phase 2 allocations run from genesis, concurrently with phase 1; phase-3 sales are open from
/// their start epoch in every phase. The phase names which issuance is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The automatic pool still mints (phase 1, with phase 2 alongside).
    Automatic,
    /// The automatic pool is exhausted; the prefetch pool still allocates.
    Prefetch,
    /// Both issuance pools are exhausted: only free circulation and phase-3 sales remain.
    Circulation,
}

/// The three pools' counters and the rules that move them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    params: GenesisParams,
    automatic_cap: Amount,
    prefetch_cap: Amount,
    circulation_cap: Amount,
    automatic_minted: Amount,
    credits_outstanding: Amount,
    prefetch_minted: Amount,
    circulation_sold: Amount,
    community_fund_quote: u128,
    last_allocated_epoch: Option<u64>,
    phase: Phase,
}

/// Picks one kind of contribution.
type Weight = fn(&Contribution) -> u64;

/// Base units per whole token, widened.
const U: u128 = Amount::ONE_TOKEN_UNITS as u128;
/// Whole tokens per "million" in the slope of the linear curve.
const M: u128 = 1_000_000;

/// Exact price in quote units of `delta` base units sold after `sold`, rounded up.
pub fn sale_cost(price: &PriceSchedule, sold: Amount, delta: Amount) -> Result<u128, Error> {
    let d = u128::from(delta.to_base_units());
    let s = u128::from(sold.to_base_units());
    let (num, den) = match *price {
        PriceSchedule::Fixed { quote_per_token } => (
            u128::from(quote_per_token)
                .checked_mul(d)
                .ok_or(Error::Overflow)?,
            U,
        ),
        PriceSchedule::Linear {
            start,
            slope_per_million,
        } => {
            // ∫ price = start·Δ/U + slope·Δ·(2s+Δ)/(2·U²·M)
            let flat = u128::from(start)
                .checked_mul(d)
                .and_then(|v| v.checked_mul(2 * U * M))
                .ok_or(Error::Overflow)?;
            let ramp = s
                .checked_mul(2)
                .and_then(|v| v.checked_add(d))
                .and_then(|v| v.checked_mul(d))
                .and_then(|v| v.checked_mul(u128::from(slope_per_million)))
                .ok_or(Error::Overflow)?;
            (
                flat.checked_add(ramp).ok_or(Error::Overflow)?,
                2 * U * U * M,
            )
        }
    };
    Ok(num.div_ceil(den))
}

/// Share of `portion` for weight `w` out of `total`, rounded down.
fn pro_rata(portion: Amount, w: u64, total: u128) -> Result<Amount, Error> {
    let q = u128::from(portion.to_base_units())
        .checked_mul(u128::from(w))
        .and_then(|v| v.checked_div(total))
        .ok_or(Error::Overflow)?;
    u64::try_from(q)
        .ok()
        .and_then(Amount::from_base_units)
        .ok_or(Error::Overflow)
}

impl Issuance {
    /// Genesis state from validated parameters: nothing minted, phase [`Phase::Automatic`].
    pub fn new(params: GenesisParams) -> Result<Issuance, Error> {
        params.validate()?;
        let (automatic_cap, prefetch_cap, circulation_cap) = params.pool_caps()?;
        Ok(Issuance {
            params,
            automatic_cap,
            prefetch_cap,
            circulation_cap,
            automatic_minted: Amount::ZERO,
            credits_outstanding: Amount::ZERO,
            prefetch_minted: Amount::ZERO,
            circulation_sold: Amount::ZERO,
            community_fund_quote: 0,
            last_allocated_epoch: None,
            phase: Phase::Automatic,
        })
    }

    /// The genesis parameters.
    pub fn params(&self) -> &GenesisParams {
        &self.params
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Caps of the automatic, prefetch and circulation pools.
    pub fn pool_caps(&self) -> (Amount, Amount, Amount) {
        (self.automatic_cap, self.prefetch_cap, self.circulation_cap)
    }

    /// Tokens minted from the automatic pool (mirror mints and redeemed credits).
    pub fn automatic_minted(&self) -> Amount {
        self.automatic_minted
    }

    /// Credits granted and not yet spent (reserved in the automatic pool).
    pub fn credits_outstanding(&self) -> Amount {
        self.credits_outstanding
    }

    /// Tokens allocated from the prefetch pool.
    pub fn prefetch_minted(&self) -> Amount {
        self.prefetch_minted
    }

    /// Tokens sold from the circulation pool.
    pub fn circulation_sold(&self) -> Amount {
        self.circulation_sold
    }

    /// Quote units raised by phase-3 sales for the community fund.
    pub fn community_fund_quote(&self) -> u128 {
        self.community_fund_quote
    }

    /// The last epoch given a phase-2 allocation.
    pub fn last_allocated_epoch(&self) -> Option<u64> {
        self.last_allocated_epoch
    }

    /// What the automatic pool can still mint or grant as credits.
    #[inline]
    pub fn automatic_remaining(&self) -> Amount {
        self.automatic_cap
            .saturating_sub(self.automatic_minted)
            .saturating_sub(self.credits_outstanding)
    }

    /// What the prefetch pool can still allocate.
    pub fn prefetch_remaining(&self) -> Amount {
        self.prefetch_cap.saturating_sub(self.prefetch_minted)
    }

    /// What the circulation pool can still sell.
    pub fn circulation_remaining(&self) -> Amount {
        self.circulation_cap.saturating_sub(self.circulation_sold)
    }

    /// All tokens in existence (in balances), excluding unspent credits.
    pub fn total_issued(&self) -> Result<Amount, Error> {
        Amount::checked_sum([
            self.automatic_minted,
            self.prefetch_minted,
            self.circulation_sold,
        ])
        .ok_or(Error::AboveCap)
    }

    fn refresh_phase(&mut self) {
        let derived = if !self.automatic_remaining().is_zero() {
            Phase::Automatic
        } else if !self.prefetch_remaining().is_zero() {
            Phase::Prefetch
        } else {
            Phase::Circulation
        };
        if derived > self.phase {
            self.phase = derived;
        }
    }

    /// The fee of a data operation under the schedule and the phase-1 basis.
    #[inline(always)]
    pub fn fee(&self, op: &DataOp) -> Result<Amount, Error> {
        let f = &self.params.fees;
        match *op {
            DataOp::Put { bytes, metres } => match self.params.phase1.basis {
                MintBasis::Volume => f.put_by_volume(bytes),
                MintBasis::Mileage => f.put_by_mileage(metres),
            },
            DataOp::Store {
                bytes,
                epochs,
                mode,
            } => f.storage(bytes, epochs, mode),
            DataOp::Compute { units } => f.compute(units),
            DataOp::Read { addresses } => f.read(addresses),
        }
    }

    /// Registers a device: reserves its initial credits from the automatic pool (fewer, or
    /// none, once the pool is nearly exhausted).
    pub fn register_device(&mut self) -> Result<CreditGrant, Error> {
        let grant = self
            .params
            .phase1
            .initial_credits
            .min(self.automatic_remaining());
        self.credits_outstanding = self
            .credits_outstanding
            .checked_add(grant)
            .ok_or(Error::AboveCap)?;
        self.refresh_phase();
        Ok(CreditGrant(FeeCredits(grant)))
    }

    /// Pays `fee` from `payer` and mirrors up to `mint_allowance` back to it when `mints`;
    /// touches no pool. Used with [`Issuance::commit`] to settle many independent payers at once;
    /// [`Issuance::settle`] is the one-operation form.
    #[inline(always)]
    pub fn settle_payment(
        payer: &mut AccountBalance,
        fee: Amount,
        mints: bool,
        mint_allowance: Amount,
    ) -> Result<Settlement, Error> {
        let mut next = *payer;
        let payment = next.pay_fee(fee)?;
        let minted_to_payer = if mints {
            fee.min(mint_allowance)
        } else {
            Amount::ZERO
        };
        next.deposit(minted_to_payer)?;
        *payer = next;
        Ok(Settlement {
            fee,
            payment,
            to_providers: fee,
            minted_to_payer,
        })
    }

    /// Commits settled payments to the automatic pool; refuses (changing nothing) if they would
    /// redeem more credits than are outstanding or mint more than the pool has left.
    pub fn commit(&mut self, totals: &SettlementTotals) -> Result<(), Error> {
        if totals.minted_to_payers > self.automatic_remaining() {
            return Err(Error::PoolExhausted);
        }
        let outstanding = self
            .credits_outstanding
            .checked_sub(totals.from_credits)
            .ok_or(Error::CreditAccounting)?;
        let minted = self
            .automatic_minted
            .checked_add(totals.from_credits)
            .and_then(|m| m.checked_add(totals.minted_to_payers))
            .ok_or(Error::AboveCap)?;
        self.credits_outstanding = outstanding;
        self.automatic_minted = minted;
        self.refresh_phase();
        Ok(())
    }

    /// Settles one data operation: the payer pays the fee (credits first), the providers are
    /// owed the fee, and for producer operations the reserve mints min(remaining, fee) to the
    /// payer. Atomic: on error neither the payer nor the pools change.
    pub fn settle(&mut self, payer: &mut AccountBalance, op: &DataOp) -> Result<Settlement, Error> {
        let fee = self.fee(op)?;
        let mut next = *payer;
        let s = Self::settle_payment(&mut next, fee, op.mints(), self.automatic_remaining())?;
        let mut totals = SettlementTotals::default();
        totals.add(&s)?;
        self.commit(&totals)?;
        *payer = next;
        Ok(s)
    }

    /// Allocates epoch `epoch` of the prefetch pool to agent nodes in proportion to audited
    /// storage and to compute. Epochs must strictly increase. Rounding dust of each part goes to
    /// its largest contributor; a part with no contributors stays in the pool.
    pub fn allocate_prefetch(
        &mut self,
        epoch: u64,
        contributions: &[Contribution],
    ) -> Result<Allocation, Error> {
        if let Some(last) = self.last_allocated_epoch {
            if epoch <= last {
                return Err(Error::EpochNotAdvancing { epoch, last });
            }
        }
        let available = self
            .params
            .phase2
            .scheduled(epoch)
            .min(self.prefetch_remaining());
        let storage_part = available
            .mul_div_floor(
                u64::from(self.params.phase2.storage_weight_bps),
                u64::from(BPS_DENOM),
            )
            .ok_or(Error::Overflow)?;
        let compute_part = available.checked_sub(storage_part).ok_or(Error::Overflow)?;
        let mut shares = vec![Amount::ZERO; contributions.len()];
        let parts: [(Amount, Weight); 2] = [
            (storage_part, |c| c.audited_bytes),
            (compute_part, |c| c.compute_units),
        ];
        for (part, weight) in parts {
            let total: u128 = contributions
                .iter()
                .map(|c| u128::from(weight(c)))
                .try_fold(0u128, |a, w| a.checked_add(w))
                .ok_or(Error::Overflow)?;
            if total == 0 || part.is_zero() {
                continue;
            }
            let mut given = Amount::ZERO;
            let mut largest: Option<(usize, u64)> = None;
            for (i, (c, share)) in contributions.iter().zip(shares.iter_mut()).enumerate() {
                let w = weight(c);
                let s = pro_rata(part, w, total)?;
                *share = share.checked_add(s).ok_or(Error::AboveCap)?;
                given = given.checked_add(s).ok_or(Error::AboveCap)?;
                if largest.is_none_or(|(_, lw)| w > lw) {
                    largest = Some((i, w));
                }
            }
            let dust = part.checked_sub(given).ok_or(Error::Overflow)?;
            if let Some((i, _)) = largest {
                if let Some(share) = shares.get_mut(i) {
                    *share = share.checked_add(dust).ok_or(Error::AboveCap)?;
                }
            }
        }
        let minted = Amount::checked_sum(shares.iter().copied()).ok_or(Error::AboveCap)?;
        if minted > self.prefetch_remaining() {
            return Err(Error::PoolExhausted);
        }
        self.prefetch_minted = self
            .prefetch_minted
            .checked_add(minted)
            .ok_or(Error::AboveCap)?;
        self.last_allocated_epoch = Some(epoch);
        self.refresh_phase();
        Ok(Allocation {
            epoch,
            available,
            shares,
            minted,
        })
    }

    /// Current marginal price of one whole token, in quote units.
    pub fn marginal_price(&self) -> Result<u128, Error> {
        match self.params.phase3.price {
            PriceSchedule::Fixed { quote_per_token } => Ok(u128::from(quote_per_token)),
            PriceSchedule::Linear {
                start,
                slope_per_million,
            } => {
                let sold_tokens = u128::from(self.circulation_sold.to_base_units())
                    .checked_div(U)
                    .ok_or(Error::Overflow)?;
                u128::from(slope_per_million)
                    .checked_mul(sold_tokens)
                    .and_then(|v| v.checked_div(M))
                    .and_then(|v| v.checked_add(u128::from(start)))
                    .ok_or(Error::Overflow)
            }
        }
    }

    /// Quote units needed to buy `tokens` more from the circulation pool now.
    pub fn quote(&self, tokens: Amount) -> Result<u128, Error> {
        sale_cost(&self.params.phase3.price, self.circulation_sold, tokens)
    }

    fn check_sale_open(&self, epoch: u64) -> Result<(), Error> {
        if epoch < self.params.phase3.sale_start_epoch {
            return Err(Error::SaleNotOpen {
                opens: self.params.phase3.sale_start_epoch,
            });
        }
        Ok(())
    }

    fn record_sale(&mut self, tokens: Amount, cost_quote: u128) -> Result<Sale, Error> {
        self.circulation_sold = self
            .circulation_sold
            .checked_add(tokens)
            .ok_or(Error::AboveCap)?;
        self.community_fund_quote = self
            .community_fund_quote
            .checked_add(cost_quote)
            .ok_or(Error::Overflow)?;
        self.refresh_phase();
        Ok(Sale { tokens, cost_quote })
    }

    /// Sells exactly `tokens` (or what is left, if less) at the schedule's price.
    pub fn buy_tokens(&mut self, epoch: u64, tokens: Amount) -> Result<Sale, Error> {
        self.check_sale_open(epoch)?;
        let tokens = tokens.min(self.circulation_remaining());
        let cost = self.quote(tokens)?;
        self.record_sale(tokens, cost)
    }

    /// Sells as many tokens as `budget_quote` pays for (never more than is left).
    pub fn buy_with_budget(&mut self, epoch: u64, budget_quote: u128) -> Result<Sale, Error> {
        self.check_sale_open(epoch)?;
        let mut lo: u64 = 0;
        let mut hi: u64 = self.circulation_remaining().to_base_units();
        while lo < hi {
            let gap = hi.checked_sub(lo).ok_or(Error::Overflow)?;
            let mid = lo.checked_add(gap.div_ceil(2)).ok_or(Error::Overflow)?;
            let amount = Amount::from_base_units(mid).ok_or(Error::AboveCap)?;
            if self.quote(amount)? <= budget_quote {
                lo = mid;
            } else {
                hi = mid.checked_sub(1).ok_or(Error::Overflow)?;
            }
        }
        let tokens = Amount::from_base_units(lo).ok_or(Error::AboveCap)?;
        let cost = self.quote(tokens)?;
        self.record_sale(tokens, cost)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::params::Rate;

    fn small() -> GenesisParams {
        let mut p = GenesisParams::example();
        p.cap = Amount::from_base_units(10_000).unwrap();
        p.fees.put_per_byte = Rate::per_unit(1).unwrap();
        p.phase1.initial_credits = Amount::from_base_units(100).unwrap();
        p.phase2.per_epoch = Amount::from_base_units(1_000).unwrap();
        p.phase3.price = PriceSchedule::Fixed {
            quote_per_token: 100_000_000,
        };
        p
    }

    #[test]
    fn last_operation_mints_only_what_is_left() {
        let mut iss = Issuance::new(small()).unwrap();
        let mut dev = AccountBalance::with_tokens(Amount::ZERO);
        dev.receive_grant(iss.register_device().unwrap()).unwrap();
        // Automatic cap is 5000; credits 100 reserved.
        let put = DataOp::Put {
            bytes: 100,
            metres: 0,
        };
        let s = iss.settle(&mut dev, &put).unwrap();
        assert_eq!(s.payment.from_credits.to_base_units(), 100);
        assert_eq!(s.minted_to_payer.to_base_units(), 100);
        assert_eq!(dev.tokens().to_base_units(), 100);
        // Drain the pool to 30 left.
        let big = DataOp::Put {
            bytes: 4_770,
            metres: 0,
        };
        dev.deposit(Amount::from_base_units(4_770).unwrap())
            .unwrap();
        iss.settle(&mut dev, &big).unwrap();
        assert_eq!(iss.automatic_remaining().to_base_units(), 30);
        let s = iss.settle(&mut dev, &put).unwrap();
        assert_eq!(s.minted_to_payer.to_base_units(), 30);
        assert_eq!(iss.automatic_remaining(), Amount::ZERO);
        assert_eq!(iss.phase(), Phase::Prefetch);
        let s = iss.settle(&mut dev, &put).unwrap();
        assert_eq!(s.minted_to_payer, Amount::ZERO);
        assert_eq!(iss.automatic_minted(), iss.pool_caps().0);
    }

    #[test]
    fn reads_pay_providers_without_minting() {
        let mut iss = Issuance::new(small()).unwrap();
        let mut app = AccountBalance::with_tokens(Amount::from_base_units(10_000).unwrap());
        let s = iss
            .settle(&mut app, &DataOp::Read { addresses: 3 })
            .unwrap();
        assert_eq!(s.minted_to_payer, Amount::ZERO);
        assert_eq!(s.to_providers, s.fee);
        assert_eq!(
            app.tokens(),
            Amount::from_base_units(10_000)
                .unwrap()
                .checked_sub(s.fee)
                .unwrap()
        );
    }

    #[test]
    fn unpayable_operation_changes_nothing() {
        let mut iss = Issuance::new(small()).unwrap();
        let mut dev = AccountBalance::default();
        let before = (iss.clone(), dev);
        let err = iss.settle(
            &mut dev,
            &DataOp::Put {
                bytes: 5,
                metres: 0,
            },
        );
        assert!(matches!(err, Err(Error::InsufficientFunds { .. })));
        assert_eq!((iss, dev), before);
    }

    #[test]
    fn prefetch_is_pro_rata_and_exact() {
        let mut iss = Issuance::new(small()).unwrap();
        let c = [
            Contribution {
                audited_bytes: 1,
                compute_units: 0,
            },
            Contribution {
                audited_bytes: 2,
                compute_units: 1,
            },
            Contribution {
                audited_bytes: 0,
                compute_units: 2,
            },
        ];
        let a = iss.allocate_prefetch(0, &c).unwrap();
        assert_eq!(a.minted, a.available);
        assert_eq!(a.available.to_base_units(), 1_000);
        // storage 700 split 1:2 → 233 + 467 (dust to largest); compute 300 split 1:2 → 100, 200
        let s: Vec<u64> = a.shares.iter().map(|x| x.to_base_units()).collect();
        assert_eq!(s, vec![233, 567, 200]);
        assert!(matches!(
            iss.allocate_prefetch(0, &c),
            Err(Error::EpochNotAdvancing { .. })
        ));
        let none = iss.allocate_prefetch(1, &[]).unwrap();
        assert_eq!(none.minted, Amount::ZERO);
        assert_eq!(iss.prefetch_minted().to_base_units(), 1_000);
    }

    #[test]
    fn bonding_curve_prices_rise_and_budget_buys_are_maximal() {
        let mut p = GenesisParams::example();
        p.phase3.price = PriceSchedule::Linear {
            start: 100_000,
            slope_per_million: 1_000,
        };
        let mut iss = Issuance::new(p).unwrap();
        let million = Amount::from_tokens(1_000_000).unwrap();
        // 1M tokens: start·1M + slope·1M/2 = 1e11 + 5e8
        assert_eq!(iss.quote(million).unwrap(), 100_500_000_000);
        let sale = iss.buy_with_budget(0, 100_500_000_000).unwrap();
        assert_eq!(sale.tokens, million);
        assert_eq!(iss.marginal_price().unwrap(), 101_000);
        let one = Amount::from_base_units(1).unwrap();
        let next = iss.quote(one).unwrap();
        let before = iss.community_fund_quote();
        let s2 = iss.buy_with_budget(0, next - 1).unwrap();
        assert_eq!(s2.tokens, Amount::ZERO);
        assert_eq!(iss.community_fund_quote(), before);
    }

    #[test]
    fn sale_respects_start_epoch_and_pool() {
        let mut p = small();
        p.phase3.sale_start_epoch = 5;
        let mut iss = Issuance::new(p).unwrap();
        assert!(matches!(
            iss.buy_tokens(4, Amount::ONE_TOKEN),
            Err(Error::SaleNotOpen { .. })
        ));
        let s = iss.buy_tokens(5, Amount::MAX_SUPPLY).unwrap();
        assert_eq!(s.tokens.to_base_units(), 2_000);
        assert_eq!(iss.circulation_remaining(), Amount::ZERO);
    }

    #[test]
    fn mileage_basis_bills_puts_by_metres() {
        let mut p = small();
        p.phase1.basis = MintBasis::Mileage;
        p.fees.put_per_metre = Rate::per_unit(2).unwrap();
        let iss = Issuance::new(p).unwrap();
        let fee = iss
            .fee(&DataOp::Put {
                bytes: 1_000_000,
                metres: 7,
            })
            .unwrap();
        assert_eq!(fee.to_base_units(), 14);
    }
}
