//! The vote keeper: aggregates verified votes by voting power per round and step, and detects
//! equivocation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::error::ConsensusError;
use super::types::{Round, SignedVote, VoteType};
use super::validators::ValidatorSet;

/// Proof that a validator signed two different votes at one height, round and step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Evidence<C: Context> {
    /// The vote seen first.
    pub first: SignedVote<C>,
    /// The conflicting vote.
    pub second: SignedVote<C>,
}

impl<C: Context> Evidence<C> {
    /// The validator that double-signed.
    pub fn offender(&self) -> &C::Address {
        &self.first.vote.validator
    }

    /// Checks that both votes are by the same member of `validators`, at the same instance,
    /// height, round and step, for different values, and that both signatures verify.
    ///
    /// # Errors
    /// [`ConsensusError::InvalidEvidence`] saying what does not hold.
    pub fn verify(&self, ctx: &C, validators: &ValidatorSet<C>) -> Result<(), ConsensusError> {
        let (a, b) = (&self.first.vote, &self.second.vote);
        if a.validator != b.validator {
            return Err(ConsensusError::InvalidEvidence("different validators"));
        }
        if a.instance != b.instance
            || a.height != b.height
            || a.round != b.round
            || a.vote_type != b.vote_type
        {
            return Err(ConsensusError::InvalidEvidence(
                "votes at different positions",
            ));
        }
        if a.value == b.value {
            return Err(ConsensusError::InvalidEvidence("votes do not conflict"));
        }
        let member = validators
            .get(&a.validator)
            .ok_or(ConsensusError::InvalidEvidence("not a validator"))?;
        for sv in [&self.first, &self.second] {
            let bytes = ctx.vote_sign_bytes(&sv.vote)?;
            if !ctx.verify(&member.public_key, &bytes, &sv.signature) {
                return Err(ConsensusError::InvalidEvidence("bad signature"));
            }
        }
        Ok(())
    }
}

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome<C: Context> {
    /// A new vote was counted.
    Added,
    /// The identical vote was already counted.
    Duplicate,
    /// The validator had already voted differently here (the new vote may still be counted
    /// for its own value; see [`VoteKeeper::add`]).
    Equivocation(Box<Evidence<C>>),
}

/// Distinct values per validator and step that are counted even when they are not nil or a
/// known proposal's value (bounds what an equivocator can make us store).
pub const FREE_CONFLICT_SLOTS: usize = 2;

#[derive(Debug, Clone)]
struct Tally<C: Context> {
    votes: BTreeMap<C::Address, Vec<SignedVote<C>>>,
    per_value: BTreeMap<Option<C::ValueId>, u64>,
    any: u64,
}

impl<C: Context> Default for Tally<C> {
    fn default() -> Self {
        Tally {
            votes: BTreeMap::new(),
            per_value: BTreeMap::new(),
            any: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct RoundVotes<C: Context> {
    prevotes: Tally<C>,
    precommits: Tally<C>,
    senders: BTreeSet<C::Address>,
    sender_power: u64,
}

impl<C: Context> Default for RoundVotes<C> {
    fn default() -> Self {
        RoundVotes {
            prevotes: Tally::default(),
            precommits: Tally::default(),
            senders: BTreeSet::new(),
            sender_power: 0,
        }
    }
}

/// All votes of one height, by round.
#[derive(Debug, Clone)]
pub struct VoteKeeper<C: Context> {
    rounds: BTreeMap<Round, RoundVotes<C>>,
    total: u64,
}

impl<C: Context> VoteKeeper<C> {
    /// A keeper for a set whose total power is `total`.
    pub fn new(total: u64) -> Self {
        VoteKeeper {
            rounds: BTreeMap::new(),
            total,
        }
    }

    /// Whether exactly this vote (same content and signature) is already counted; lets the
    /// caller skip signature verification for re-gossiped copies.
    pub fn contains(&self, vote: &SignedVote<C>) -> bool {
        self.tally(vote.vote.round, vote.vote.vote_type)
            .and_then(|t| t.votes.get(&vote.vote.validator))
            .is_some_and(|vs| vs.iter().any(|v| v == vote))
    }

    /// Counts a vote whose signature the caller has verified, with the voter's `power`.
    ///
    /// Like the Tendermint paper, quorums count *messages*: a validator that signs two
    /// different votes at one step has each counted towards its own value (safety holds because
    /// two +2/3 quorums still share more than 1/3 of the power, hence a correct validator). That
    /// is what lets correct validators later assemble a proof of lock that includes an
    /// equivocator's vote. `relevant` says whether the vote's value is nil or the value of a
    /// proposal we hold; other conflicting values are counted only within
    /// [`FREE_CONFLICT_SLOTS`]. The "any value" tally and round-skip power count each validator
    /// once.
    ///
    /// # Errors
    /// [`ConsensusError::VotingPowerOverflow`] if a sum would exceed the set's total (which a
    /// well-formed set makes impossible).
    pub fn add(
        &mut self,
        vote: SignedVote<C>,
        power: u64,
        relevant: bool,
    ) -> Result<AddOutcome<C>, ConsensusError> {
        let total = self.total;
        let round = self.rounds.entry(vote.vote.round).or_default();
        let tally = match vote.vote.vote_type {
            VoteType::Prevote => &mut round.prevotes,
            VoteType::Precommit => &mut round.precommits,
        };
        let add = |x: u64| {
            x.checked_add(power)
                .filter(|s| *s <= total)
                .ok_or(ConsensusError::VotingPowerOverflow)
        };
        let mut outcome = AddOutcome::Added;
        let first_of_validator = match tally.votes.get(&vote.vote.validator) {
            None => true,
            Some(existing) => {
                if existing.iter().any(|v| v.vote.value == vote.vote.value) {
                    return Ok(AddOutcome::Duplicate);
                }
                let first = existing.first().cloned();
                let counted = existing.len();
                if let Some(first) = first {
                    outcome = AddOutcome::Equivocation(Box::new(Evidence {
                        first,
                        second: vote.clone(),
                    }));
                }
                if !relevant && counted >= FREE_CONFLICT_SLOTS {
                    return Ok(outcome);
                }
                false
            }
        };
        let slot = tally.per_value.entry(vote.vote.value.clone()).or_insert(0);
        let new_value = add(*slot)?;
        let new_any = if first_of_validator {
            add(tally.any)?
        } else {
            tally.any
        };
        let new_sender = if round.senders.contains(&vote.vote.validator) {
            round.sender_power
        } else {
            add(round.sender_power)?
        };
        *slot = new_value;
        tally.any = new_any;
        round.senders.insert(vote.vote.validator.clone());
        round.sender_power = new_sender;
        tally
            .votes
            .entry(vote.vote.validator.clone())
            .or_default()
            .push(vote);
        Ok(outcome)
    }

    fn tally(&self, round: Round, vote_type: VoteType) -> Option<&Tally<C>> {
        self.rounds.get(&round).map(|r| match vote_type {
            VoteType::Prevote => &r.prevotes,
            VoteType::Precommit => &r.precommits,
        })
    }

    /// Power voting `value` (`None` = nil) at `round`, `vote_type`.
    pub fn power_for(&self, round: Round, vote_type: VoteType, value: &Option<C::ValueId>) -> u64 {
        self.tally(round, vote_type)
            .and_then(|t| t.per_value.get(value).copied())
            .unwrap_or(0)
    }

    /// Power that voted anything at `round`, `vote_type`.
    pub fn power_any(&self, round: Round, vote_type: VoteType) -> u64 {
        self.tally(round, vote_type).map_or(0, |t| t.any)
    }

    /// Power of distinct validators that sent any vote at `round`.
    pub fn round_power(&self, round: Round) -> u64 {
        self.rounds.get(&round).map_or(0, |r| r.sender_power)
    }

    /// Rounds with at least one vote, ascending.
    pub fn rounds(&self) -> impl Iterator<Item = Round> + '_ {
        self.rounds.keys().copied()
    }

    /// The votes for `value` at `round`, `vote_type` (for building certificates).
    pub fn votes_for(
        &self,
        round: Round,
        vote_type: VoteType,
        value: Option<C::ValueId>,
    ) -> impl Iterator<Item = &SignedVote<C>> + '_ {
        self.tally(round, vote_type)
            .into_iter()
            .flat_map(|t| t.votes.values())
            .filter_map(move |vs| vs.iter().find(|v| v.vote.value == value))
    }

    /// The votes `address` cast at `round`.
    pub fn votes_by<'a>(
        &'a self,
        round: Round,
        address: &'a C::Address,
    ) -> impl Iterator<Item = &'a SignedVote<C>> + 'a {
        self.rounds
            .get(&round)
            .into_iter()
            .flat_map(move |r| {
                [
                    r.prevotes.votes.get(address),
                    r.precommits.votes.get(address),
                ]
            })
            .flatten()
            .filter_map(|vs| vs.first())
    }
}
