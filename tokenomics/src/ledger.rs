//! A reference ledger: accounts plus [`Issuance`], applying every transition's result.
//!
//! The chain's bank keeps balances in its own state store but applies the same steps; this
//! in-memory version is what the invariants are checked against.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;

use crate::issuance::{
    AccountBalance, Allocation, Contribution, DataOp, Issuance, Sale, Settlement,
};
use crate::params::GenesisParams;
use crate::{Amount, Error};

/// Accounts keyed by `K`, with the issuance state that feeds them.
#[derive(Debug, Clone)]
pub struct Ledger<K: Ord + Clone> {
    issuance: Issuance,
    accounts: BTreeMap<K, AccountBalance>,
}

impl<K: Ord + Clone> Ledger<K> {
    /// An empty ledger at genesis.
    pub fn new(params: GenesisParams) -> Result<Self, Error> {
        Ok(Ledger {
            issuance: Issuance::new(params)?,
            accounts: BTreeMap::new(),
        })
    }

    /// The issuance state.
    pub fn issuance(&self) -> &Issuance {
        &self.issuance
    }

    /// Balance of an account (zero if unknown).
    pub fn balance(&self, k: &K) -> AccountBalance {
        self.accounts.get(k).copied().unwrap_or_default()
    }

    /// All accounts.
    pub fn accounts(&self) -> impl Iterator<Item = (&K, &AccountBalance)> {
        self.accounts.iter()
    }

    /// Registers a device account and credits its grant.
    pub fn register_device(&mut self, k: K) -> Result<Amount, Error> {
        let mut acc = self.balance(&k);
        let mut iss = self.issuance.clone();
        let grant = iss.register_device()?;
        let granted = grant.amount();
        acc.receive_grant(grant)?;
        self.issuance = iss;
        self.accounts.insert(k, acc);
        Ok(granted)
    }

    /// Settles a data operation paid by `payer` to `provider`.
    pub fn data_op(&mut self, payer: &K, provider: &K, op: &DataOp) -> Result<Settlement, Error> {
        let mut iss = self.issuance.clone();
        let mut p = self.balance(payer);
        let s = iss.settle(&mut p, op)?;
        let mut accounts = self.accounts.clone();
        accounts.insert(payer.clone(), p);
        let mut q = accounts.get(provider).copied().unwrap_or_default();
        q.deposit(s.to_providers)?;
        accounts.insert(provider.clone(), q);
        self.accounts = accounts;
        self.issuance = iss;
        Ok(s)
    }

    /// Moves tokens between accounts (credits cannot be moved by anything).
    pub fn transfer(&mut self, from: &K, to: &K, amount: Amount) -> Result<(), Error> {
        let mut a = self.balance(from);
        if from == to {
            a.withdraw(amount)?;
            return Ok(());
        }
        let mut b = self.balance(to);
        a.transfer_tokens(&mut b, amount)?;
        self.accounts.insert(from.clone(), a);
        self.accounts.insert(to.clone(), b);
        Ok(())
    }

    /// Allocates a prefetch epoch to agent nodes.
    pub fn allocate_prefetch(
        &mut self,
        epoch: u64,
        contributions: &[(K, Contribution)],
    ) -> Result<Allocation, Error> {
        let mut iss = self.issuance.clone();
        let c: Vec<Contribution> = contributions.iter().map(|(_, c)| *c).collect();
        let alloc = iss.allocate_prefetch(epoch, &c)?;
        let mut accounts = self.accounts.clone();
        for ((k, _), share) in contributions.iter().zip(alloc.shares.iter()) {
            let mut acc = accounts.get(k).copied().unwrap_or_default();
            acc.deposit(*share)?;
            accounts.insert(k.clone(), acc);
        }
        self.accounts = accounts;
        self.issuance = iss;
        Ok(alloc)
    }

    /// A service provider buys from the circulation pool with a quote budget.
    pub fn buy(&mut self, buyer: &K, epoch: u64, budget_quote: u128) -> Result<Sale, Error> {
        let mut iss = self.issuance.clone();
        let sale = iss.buy_with_budget(epoch, budget_quote)?;
        let mut acc = self.balance(buyer);
        acc.deposit(sale.tokens)?;
        self.accounts.insert(buyer.clone(), acc);
        self.issuance = iss;
        Ok(sale)
    }

    /// Sum of token balances.
    pub fn total_tokens(&self) -> Result<Amount, Error> {
        Amount::checked_sum(self.accounts.values().map(AccountBalance::tokens))
            .ok_or(Error::AboveCap)
    }

    /// Sum of credit balances.
    pub fn total_credits(&self) -> Result<Amount, Error> {
        Amount::checked_sum(self.accounts.values().map(|a| a.credits().amount()))
            .ok_or(Error::AboveCap)
    }

    /// Checks the accounting invariants: balances equal issuance, credits equal the reservation,
    /// no pool above its cap, nothing above the supply cap.
    pub fn check_invariants(&self) -> Result<(), Error> {
        let iss = &self.issuance;
        let (a, p, c) = iss.pool_caps();
        let bad = |what: &'static str| Err(Error::InvariantViolated(what));
        if self.total_tokens()? != iss.total_issued()? {
            return bad("token balances differ from issued supply");
        }
        if self.total_credits()? != iss.credits_outstanding() {
            return bad("credit balances differ from the reservation");
        }
        let auto = iss
            .automatic_minted()
            .checked_add(iss.credits_outstanding())
            .ok_or(Error::AboveCap)?;
        if auto > a || iss.prefetch_minted() > p || iss.circulation_sold() > c {
            return bad("a pool issued above its cap");
        }
        let all = iss.total_issued()?.checked_add(iss.credits_outstanding());
        if all.is_none_or(|t| t > iss.params().cap) {
            return bad("issued above the cap");
        }
        Ok(())
    }
}
