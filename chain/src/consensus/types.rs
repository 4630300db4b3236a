//! Messages and small value types of the consensus protocol.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::context::Context;

/// Names one consensus instance (the main chain or a shard chain). Bound into every signature,
/// so a vote for one instance can never be replayed into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub u64);

/// A round within a height; rounds start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Round(pub u32);

impl Round {
    /// The first round of every height.
    pub const ZERO: Round = Round(0);

    /// The following round, or `None` on overflow.
    pub fn next(self) -> Option<Round> {
        self.0.checked_add(1).map(Round)
    }
}

/// The two kinds of vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteType {
    /// First voting step: "this proposal is acceptable".
    Prevote,
    /// Second voting step: "I saw +2/3 prevotes for it and commit to it".
    Precommit,
}

/// An unsigned vote. `value` is `None` for a vote for nil.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Vote<C: Context> {
    /// Consensus instance.
    pub instance: InstanceId,
    /// Height voted at.
    pub height: C::Height,
    /// Round voted at.
    pub round: Round,
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// The value voted for, or `None` for nil.
    pub value: Option<C::ValueId>,
    /// The voter.
    pub validator: C::Address,
}

/// A vote with its signature over [`Context::vote_sign_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SignedVote<C: Context> {
    /// The vote.
    pub vote: Vote<C>,
    /// The voter's signature.
    pub signature: C::Signature,
}

/// An unsigned proposal of a value for one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Proposal<C: Context> {
    /// Consensus instance.
    pub instance: InstanceId,
    /// Height proposed at.
    pub height: C::Height,
    /// Round proposed at.
    pub round: Round,
    /// The proposed value.
    pub value: C::Value,
    /// Proof-of-lock round: the earlier round in which this value got +2/3 prevotes, if re-proposed.
    pub pol_round: Option<Round>,
    /// The proposer.
    pub proposer: C::Address,
}

/// A proposal with its signature over [`Context::proposal_sign_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SignedProposal<C: Context> {
    /// The proposal.
    pub proposal: Proposal<C>,
    /// The proposer's signature.
    pub signature: C::Signature,
}

/// Where a round is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted; waiting for +2/3 prevotes.
    Prevote,
    /// Precommitted; waiting for +2/3 precommits.
    Precommit,
    /// Decided; waiting for the host to start the next height.
    Commit,
}

/// Which step a timeout guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// No proposal arrived in time: prevote nil.
    Propose,
    /// +2/3 prevotes but no quorum for one value in time: precommit nil.
    Prevote,
    /// +2/3 precommits but no decision in time: next round.
    Precommit,
}

/// A timer the host must set and report back through [`super::Input::TimeoutExpired`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Timeout<C: Context> {
    /// Height the timer belongs to.
    pub height: C::Height,
    /// Round the timer belongs to.
    pub round: Round,
    /// Step the timer guards.
    pub kind: TimeoutKind,
}

/// Timeout durations; each grows linearly with the round so that after the network stabilises
/// some round lasts long enough for every correct validator's messages to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutConfig {
    /// Propose timeout at round 0.
    pub propose: Duration,
    /// Added to the propose timeout per round.
    pub propose_delta: Duration,
    /// Prevote timeout at round 0.
    pub prevote: Duration,
    /// Added to the prevote timeout per round.
    pub prevote_delta: Duration,
    /// Precommit timeout at round 0.
    pub precommit: Duration,
    /// Added to the precommit timeout per round.
    pub precommit_delta: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            propose: Duration::from_millis(3000),
            propose_delta: Duration::from_millis(500),
            prevote: Duration::from_millis(1000),
            prevote_delta: Duration::from_millis(500),
            precommit: Duration::from_millis(1000),
            precommit_delta: Duration::from_millis(500),
        }
    }
}

impl TimeoutConfig {
    /// The duration of `kind` at `round` (base + delta × round, saturating).
    pub fn duration(&self, kind: TimeoutKind, round: Round) -> Duration {
        let (base, delta) = match kind {
            TimeoutKind::Propose => (self.propose, self.propose_delta),
            TimeoutKind::Prevote => (self.prevote, self.prevote_delta),
            TimeoutKind::Precommit => (self.precommit, self.precommit_delta),
        };
        base.saturating_add(delta.saturating_mul(round.0))
    }
}
