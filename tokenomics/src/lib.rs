//! # tokenomics — the token's arithmetic and issuance rules
//!
//! Job: the capped [`Amount`] money type, the three issuance phases (automatic, bulk
//! prefetch, free circulation) and the fee schedule, as pure integer code with no I/O, clocks or
//! floats, so the chain's bank module and the economic simulator run the very same rules.
//!
//! May depend on: nothing of CarChain's own.
//!
//! ## The rules in one page
//! - [`GenesisParams`] fix the cap (≤ [`Amount::MAX_SUPPLY`], one billion tokens of 10⁸ base
//!   units) and its split into three pools in basis points (50/30/20 in the brief).
//! - **Phase 1, automatic** ([`Issuance::register_device`], [`Issuance::settle`]): a registering
//!   device receives fee credits reserved from the automatic pool. A producer operation (put,
//!   storage, compute) charges a fee from the [`FeeSchedule`], paid with credits first, then
//!   tokens; providers receive the whole fee in tokens (credits are redeemed by minting), and the
//!   reserve mints `min(remaining, fee)` back to the producer, so producer balances hold while
//!   tokens drift to the service side, until the pool is exhausted — exactly. Puts are billed by
//!   bytes or by metres ([`MintBasis`]); reads are billed per address traversed and never mint;
//!   storage on shared-mode nodes is free.
//! - **Phase 2, prefetch** ([`Issuance::allocate_prefetch`]), concurrent with phase 1: each epoch
//!   a scheduled batch (halving every `halving_epochs`) is split between agent nodes in
//!   proportion to audited storage and to compute.
//! - **Phase 3, circulation** ([`Issuance::buy_with_budget`]): service providers buy the last pool
//!   on a fixed price or a linear bonding curve ([`PriceSchedule`]); the quote-currency proceeds
//!   accrue to the community fund.
//! - [`Phase`] records which issuance still runs and only moves forward.
//! - [`FeeCredits`] are a separate balance kind with no transfer operation.
//!
//! ## Step-size invariance (what is promised, and what is not)
//! - The automatic pool's mirror mint is *grouping-invariant*: settling a stream of producer
//!   fees one by one mints `min(remaining, Σ fees)` in total, however the stream is batched.
//! - Fees are additive across batching only for *exact* rates ([`Rate::is_exact`]); otherwise
//!   each operation rounds up, so splitting an operation can cost up to one base unit more per part.
//! - Phase-3 costs round up per purchase: buying in `n` pieces costs the single-purchase price
//!   plus less than `n` quote units.
//! - Phase-2 allocations are per epoch; a caller stepping several epochs at once must allocate
//!   each epoch in turn.

#![deny(clippy::float_arithmetic)]

mod amount;
pub mod issuance;
pub mod ledger;
pub mod params;

pub use amount::Amount;
pub use issuance::{
    sale_cost, AccountBalance, Allocation, Contribution, CreditGrant, DataOp, FeeCredits, Issuance,
    Payment, Phase, Sale, Settlement, SettlementTotals,
};
pub use ledger::Ledger;
pub use params::{
    FeeSchedule, GenesisParams, MintBasis, Phase1Params, Phase2Params, Phase3Params, PoolShares,
    PriceSchedule, Rate, StorageMode,
};

/// Everything that can go wrong applying the token rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An intermediate computation overflowed.
    #[error("arithmetic overflow")]
    Overflow,
    /// A result would exceed the supply cap.
    #[error("amount above the supply cap")]
    AboveCap,
    /// An amount string could not be parsed.
    #[error("invalid amount {0:?}")]
    Parse(String),
    /// The payer cannot cover the amount.
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds {
        /// Amount required.
        need: Amount,
        /// Amount available.
        have: Amount,
    },
    /// Genesis parameters are inconsistent.
    #[error("invalid genesis parameters: {0}")]
    InvalidParams(&'static str),
    /// A mint was asked for more than its pool has left.
    #[error("pool exhausted")]
    PoolExhausted,
    /// More credits redeemed than were outstanding.
    #[error("credit accounting mismatch")]
    CreditAccounting,
    /// A prefetch allocation for an epoch at or before the last one.
    #[error("epoch {epoch} is not after the last allocated epoch {last}")]
    EpochNotAdvancing {
        /// Requested epoch.
        epoch: u64,
        /// Last allocated epoch.
        last: u64,
    },
    /// A phase-3 purchase before the sale opens.
    #[error("phase-3 sale opens at epoch {opens}")]
    SaleNotOpen {
        /// First epoch of the sale.
        opens: u64,
    },
    /// A ledger invariant failed (a bug).
    #[error("invariant violated: {0}")]
    InvariantViolated(&'static str),
}
