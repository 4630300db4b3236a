//! The per-height Tendermint state machine (propose / prevote / precommit with locking), driven
//! by [`Input`]s and answering with [`Output`]s. No I/O, clock or randomness: the host signs,
//! sends, sets timers and validates values, and reports back.

use std::collections::{BTreeMap, BTreeSet};

use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::cert::{CommitCertificate, CommitSignature};
use super::context::{ConsensusHeight, Context};
use super::error::ConsensusError;
use super::keeper::{AddOutcome, Evidence, VoteKeeper};
use super::types::{
    InstanceId, Proposal, Round, SignedProposal, SignedVote, Step, Timeout, TimeoutConfig,
    TimeoutKind, Vote, VoteType,
};
use super::validators::{is_one_third_plus, is_quorum, ValidatorSet};

/// Most next-height messages kept per signer (a proposal and a few rounds of votes), so one
/// validator cannot crowd the others out of the buffer.
pub const FUTURE_PER_SIGNER: usize = 8;

/// Static parameters of one consensus instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Which instance (main chain, shard) this is.
    pub instance: InstanceId,
    /// Round timeouts.
    pub timeouts: TimeoutConfig,
    /// Maximum number of next-height messages buffered while the current height finishes.
    pub future_buffer: usize,
    /// Votes and proposals more than this many rounds ahead are refused (bounds memory).
    pub max_round_lookahead: u32,
}

impl Params {
    /// Default parameters for `instance`.
    pub fn new(instance: InstanceId) -> Self {
        Params {
            instance,
            timeouts: TimeoutConfig::default(),
            future_buffer: 1024,
            max_round_lookahead: 256,
        }
    }
}

/// Something that happened, reported to the core by its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Input<C: Context> {
    /// A signed proposal (from the network, or our own after signing it).
    Proposal(SignedProposal<C>),
    /// A signed vote (from the network, or our own after signing it).
    Vote(SignedVote<C>),
    /// A timer set by [`Output::ScheduleTimeout`] fired.
    TimeoutExpired(Timeout<C>),
    /// The value to propose, answering [`Output::GetValue`].
    ProposeValue {
        /// Height asked for.
        height: C::Height,
        /// Round asked for.
        round: Round,
        /// The value.
        value: C::Value,
    },
    /// The verdict on a value, answering [`Output::ValidateValue`].
    ValueValidated {
        /// Height of the proposal.
        height: C::Height,
        /// The value's identifier.
        value_id: C::ValueId,
        /// Whether the value is valid.
        valid: bool,
    },
    /// A value with its commit certificate learned out of band (block sync).
    Commit {
        /// The decided value.
        value: C::Value,
        /// Its certificate.
        certificate: CommitCertificate<C>,
    },
}

impl<C: Context> Input<C> {
    /// The height an input belongs to, if it names one.
    pub fn height(&self) -> Option<C::Height> {
        match self {
            Input::Proposal(p) => Some(p.proposal.height),
            Input::Vote(v) => Some(v.vote.height),
            Input::TimeoutExpired(t) => Some(t.height),
            Input::ProposeValue { height, .. } | Input::ValueValidated { height, .. } => {
                Some(*height)
            }
            Input::Commit { certificate, .. } => Some(certificate.height),
        }
    }
}

/// A decided value with the certificate that finalizes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Decision<C: Context> {
    /// The value.
    pub value: C::Value,
    /// Precommits from more than 2/3 of the power.
    pub certificate: CommitCertificate<C>,
}

/// Something the host must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Output<C: Context> {
    /// We propose this round: build a value and answer with [`Input::ProposeValue`].
    GetValue {
        /// Height.
        height: C::Height,
        /// Round.
        round: Round,
        /// How long the host has before the round's propose timeout.
        timeout: Duration,
    },
    /// Sign (through the signing guard), broadcast, and feed back as [`Input::Proposal`].
    SignProposal(Proposal<C>),
    /// Sign (through the signing guard), broadcast, and feed back as [`Input::Vote`].
    SignVote(Vote<C>),
    /// Set a timer; report it with [`Input::TimeoutExpired`].
    ScheduleTimeout {
        /// The timer.
        timeout: Timeout<C>,
        /// Its duration.
        after: Duration,
    },
    /// Check this value and answer with [`Input::ValueValidated`].
    ValidateValue {
        /// Height.
        height: C::Height,
        /// Round of the proposal.
        round: Round,
        /// The value.
        value: C::Value,
    },
    /// The height is decided; store the value with its certificate, then call
    /// [`Consensus::start_height`].
    Decide(Decision<C>),
    /// A validator double-signed.
    Evidence(Evidence<C>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    PrevoteAnyTimeout,
    PrevoteValueQuorum,
    PrecommitAnyTimeout,
}

type Locked<C> = (Round, <C as Context>::Value, <C as Context>::ValueId);

/// One consensus instance's state at its current height.
#[derive(Debug, Clone)]
pub struct Consensus<C: Context> {
    ctx: C,
    params: Params,
    me: Option<C::Address>,
    height: C::Height,
    validators: ValidatorSet<C>,
    round: Round,
    step: Step,
    locked: Option<Locked<C>>,
    valid: Option<Locked<C>>,
    proposals: BTreeMap<Round, (SignedProposal<C>, C::ValueId)>,
    proposal_ids: BTreeSet<C::ValueId>,
    validity: BTreeMap<C::ValueId, bool>,
    pending_validation: BTreeSet<C::ValueId>,
    keeper: VoteKeeper<C>,
    fired: BTreeSet<(Round, Rule)>,
    reported: BTreeSet<(C::Address, Round, VoteType)>,
    decision: Option<Decision<C>>,
    future: Vec<Input<C>>,
    started: bool,
}

impl<C: Context> Consensus<C> {
    /// A core at `height` with `validators`; `me` is our address if we are a validator.
    /// Call [`Consensus::start`] to enter round 0.
    pub fn new(
        ctx: C,
        params: Params,
        me: Option<C::Address>,
        height: C::Height,
        validators: ValidatorSet<C>,
    ) -> Self {
        let total = validators.total_power();
        Consensus {
            ctx,
            params,
            me,
            height,
            validators,
            round: Round::ZERO,
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            proposal_ids: BTreeSet::new(),
            validity: BTreeMap::new(),
            pending_validation: BTreeSet::new(),
            keeper: VoteKeeper::new(total),
            fired: BTreeSet::new(),
            reported: BTreeSet::new(),
            decision: None,
            future: Vec::new(),
            started: false,
        }
    }

    /// Enters round 0 of the current height and replays buffered messages for it.
    pub fn start(&mut self) -> Vec<Output<C>> {
        let mut out = Vec::new();
        if self.started {
            return out;
        }
        self.started = true;
        self.start_round(Round::ZERO, &mut out);
        let buffered = core::mem::take(&mut self.future);
        for input in buffered {
            let same_height = match &input {
                Input::Proposal(p) => p.proposal.height == self.height,
                Input::Vote(v) => v.vote.height == self.height,
                _ => false,
            };
            if same_height {
                if let Ok(more) = self.handle(input) {
                    out.extend(more);
                }
            }
        }
        self.evaluate(&mut out);
        out
    }

    /// Moves to `height` with its validator set (after a decision or after block sync) and starts it.
    pub fn start_height(
        &mut self,
        height: C::Height,
        validators: ValidatorSet<C>,
    ) -> Vec<Output<C>> {
        let future = core::mem::take(&mut self.future);
        let mut fresh = Consensus::new(
            self.ctx.clone(),
            self.params.clone(),
            self.me.clone(),
            height,
            validators,
        );
        fresh.future = future;
        *self = fresh;
        self.start()
    }

    /// Current height.
    pub fn height(&self) -> C::Height {
        self.height
    }

    /// Current round.
    pub fn round(&self) -> Round {
        self.round
    }

    /// Current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The instance this core runs.
    pub fn instance(&self) -> InstanceId {
        self.params.instance
    }

    /// The validator set of the current height.
    pub fn validators(&self) -> &ValidatorSet<C> {
        &self.validators
    }

    /// The locked round, if locked.
    pub fn locked_round(&self) -> Option<Round> {
        self.locked.as_ref().map(|l| l.0)
    }

    /// The valid round, if any.
    pub fn valid_round(&self) -> Option<Round> {
        self.valid.as_ref().map(|l| l.0)
    }

    /// The decision at the current height, once made.
    pub fn decision(&self) -> Option<&Decision<C>> {
        self.decision.as_ref()
    }

    /// Our own proposal and votes at `round` of the current height, for a peer that reports
    /// being behind us in that round.
    pub fn own_messages_at(
        &self,
        round: Round,
    ) -> (Option<&SignedProposal<C>>, Vec<&SignedVote<C>>) {
        let Some(me) = &self.me else {
            return (None, Vec::new());
        };
        let proposal = self
            .proposals
            .get(&round)
            .map(|(p, _)| p)
            .filter(|p| &p.proposal.proposer == me);
        (proposal, self.keeper.votes_by(round, me).collect())
    }

    /// What the host should re-gossip periodically (messages lost before the network
    /// stabilised must be resent for liveness): our proposal and votes of the current round,
    /// and the proofs of lock in play — every prevote we hold for the current proposal's value
    /// at its proof-of-lock round, and for our valid value at its round (an equivocator's vote
    /// in such a proof may have reached only us).
    pub fn gossip_messages(&self) -> (Option<&SignedProposal<C>>, Vec<&SignedVote<C>>) {
        let proposal = self
            .proposals
            .get(&self.round)
            .map(|(p, _)| p)
            .filter(|p| self.me.as_ref() == Some(&p.proposal.proposer));
        let mut votes: Vec<&SignedVote<C>> = match &self.me {
            Some(me) => self.keeper.votes_by(self.round, me).collect(),
            None => Vec::new(),
        };
        let mut proofs = Vec::new();
        if let Some((p, id)) = self.proposals.get(&self.round) {
            if let Some(vr) = p.proposal.pol_round {
                proofs.push((vr, Some(id.clone())));
            }
        }
        if let Some((vr, _, id)) = &self.valid {
            // A proof from the current round travels with the round's own traffic.
            if *vr < self.round && proofs.first().is_none_or(|(r, _)| r != vr) {
                proofs.push((*vr, Some(id.clone())));
            }
        }
        for (vr, id) in proofs {
            votes.extend(
                self.keeper
                    .votes_for(vr, VoteType::Prevote, id)
                    .filter(|v| {
                        v.vote.round != self.round || Some(&v.vote.validator) != self.me.as_ref()
                    }),
            );
        }
        (proposal, votes)
    }

    /// Whether `input` is a message already held (a re-gossiped copy): processing it again
    /// would change nothing, so hosts need not log or process it.
    pub fn is_duplicate(&self, input: &Input<C>) -> bool {
        match input {
            Input::Vote(v) => {
                (v.vote.height == self.height && self.keeper.contains(v))
                    || self.future.contains(input)
            }
            Input::Proposal(p) => {
                (p.proposal.height == self.height
                    && self
                        .proposals
                        .get(&p.proposal.round)
                        .is_some_and(|(held, _)| held == p))
                    || self.future.contains(input)
            }
            _ => false,
        }
    }

    /// Processes one input.
    ///
    /// # Errors
    /// The input was refused (wrong instance or height, bad signature, unknown signer, ...);
    /// the state is unchanged.
    pub fn handle(&mut self, input: Input<C>) -> Result<Vec<Output<C>>, ConsensusError> {
        let mut out = Vec::new();
        match input {
            Input::Proposal(p) => self.on_proposal(p, &mut out)?,
            Input::Vote(v) => self.on_vote(v, &mut out)?,
            Input::TimeoutExpired(t) => self.on_timeout(t, &mut out),
            Input::ProposeValue {
                height,
                round,
                value,
            } => self.on_propose_value(height, round, value, &mut out),
            Input::ValueValidated {
                height,
                value_id,
                valid,
            } => {
                if height == self.height {
                    self.pending_validation.remove(&value_id);
                    self.validity.entry(value_id).or_insert(valid);
                }
            }
            Input::Commit { value, certificate } => {
                self.on_commit(value, certificate, &mut out)?;
            }
        }
        if self.started {
            self.evaluate(&mut out);
        }
        Ok(out)
    }

    /// Keeps a next-height message for when that height starts. Only messages signed by a
    /// member of the current set are kept (the set usually carries over; a message from a
    /// validator joining at an epoch boundary is simply re-gossiped later), so outsiders cannot
    /// fill the bounded buffer.
    fn buffer_or_refuse(
        &mut self,
        height: C::Height,
        signer: &C::Address,
        sign_bytes: &[u8],
        signature: &C::Signature,
        input: Input<C>,
    ) -> Result<(), ConsensusError> {
        if self.height.next() != Some(height) {
            return Err(ConsensusError::WrongHeight);
        }
        let member = self
            .validators
            .get(signer)
            .ok_or(ConsensusError::UnknownValidator)?;
        if !self.ctx.verify(&member.public_key, sign_bytes, signature) {
            return Err(ConsensusError::InvalidSignature);
        }
        let from_signer = self
            .future
            .iter()
            .filter(|i| match i {
                Input::Vote(v) => &v.vote.validator == signer,
                Input::Proposal(p) => &p.proposal.proposer == signer,
                _ => false,
            })
            .count();
        if self.future.len() < self.params.future_buffer
            && from_signer < FUTURE_PER_SIGNER
            && !self.future.contains(&input)
        {
            self.future.push(input);
        }
        Ok(())
    }

    fn check_round(&self, round: Round) -> Result<(), ConsensusError> {
        if round.0.saturating_sub(self.round.0) > self.params.max_round_lookahead {
            return Err(ConsensusError::RoundTooFar);
        }
        Ok(())
    }

    fn on_proposal(
        &mut self,
        sp: SignedProposal<C>,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        let p = &sp.proposal;
        if p.instance != self.params.instance {
            return Err(ConsensusError::WrongInstance);
        }
        if p.height != self.height {
            let (h, signer) = (p.height, p.proposer.clone());
            let bytes = self.ctx.proposal_sign_bytes(p)?;
            let signature = sp.signature.clone();
            return self.buffer_or_refuse(h, &signer, &bytes, &signature, Input::Proposal(sp));
        }
        if self.step == Step::Commit {
            return Ok(());
        }
        self.check_round(p.round)?;
        if p.pol_round.is_some_and(|vr| vr >= p.round) {
            return Err(ConsensusError::InvalidPolRound);
        }
        if self.validators.proposer(p.round) != Some(&p.proposer) {
            return Err(ConsensusError::NotProposer);
        }
        if let Some((existing, _)) = self.proposals.get(&p.round) {
            if existing == &sp {
                return Ok(());
            }
        }
        let key = self
            .validators
            .get(&p.proposer)
            .map(|v| v.public_key.clone())
            .ok_or(ConsensusError::UnknownValidator)?;
        let bytes = self.ctx.proposal_sign_bytes(p)?;
        if !self.ctx.verify(&key, &bytes, &sp.signature) {
            return Err(ConsensusError::InvalidSignature);
        }
        if self.proposals.contains_key(&p.round) {
            return Err(ConsensusError::ConflictingProposal);
        }
        let id = self.ctx.value_id(&p.value);
        if !self.validity.contains_key(&id) && self.pending_validation.insert(id.clone()) {
            out.push(Output::ValidateValue {
                height: p.height,
                round: p.round,
                value: p.value.clone(),
            });
        }
        self.proposal_ids.insert(id.clone());
        self.proposals.insert(p.round, (sp, id));
        Ok(())
    }

    fn on_vote(
        &mut self,
        sv: SignedVote<C>,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        let v = &sv.vote;
        if v.instance != self.params.instance {
            return Err(ConsensusError::WrongInstance);
        }
        if v.height != self.height {
            let (h, signer) = (v.height, v.validator.clone());
            let bytes = self.ctx.vote_sign_bytes(v)?;
            let signature = sv.signature.clone();
            return self.buffer_or_refuse(h, &signer, &bytes, &signature, Input::Vote(sv));
        }
        if self.step == Step::Commit {
            return Ok(());
        }
        let member = self
            .validators
            .get(&v.validator)
            .ok_or(ConsensusError::UnknownValidator)?;
        let (key, power) = (member.public_key.clone(), member.voting_power);
        self.check_round(v.round)?;
        if self.keeper.contains(&sv) {
            return Ok(());
        }
        let bytes = self.ctx.vote_sign_bytes(v)?;
        if !self.ctx.verify(&key, &bytes, &sv.signature) {
            return Err(ConsensusError::InvalidSignature);
        }
        let (validator, round, vote_type) = (v.validator.clone(), v.round, v.vote_type);
        let relevant = v
            .value
            .as_ref()
            .is_none_or(|id| self.proposal_ids.contains(id));
        if let AddOutcome::Equivocation(evidence) = self.keeper.add(sv, power, relevant)? {
            if self.reported.insert((validator, round, vote_type)) {
                out.push(Output::Evidence(*evidence));
            }
        }
        Ok(())
    }

    fn on_timeout(&mut self, t: Timeout<C>, out: &mut Vec<Output<C>>) {
        if t.height != self.height || t.round != self.round || self.step == Step::Commit {
            return;
        }
        match t.kind {
            TimeoutKind::Propose if self.step == Step::Propose => {
                self.vote(VoteType::Prevote, None, out);
                self.step = Step::Prevote;
            }
            TimeoutKind::Prevote if self.step == Step::Prevote => {
                self.vote(VoteType::Precommit, None, out);
                self.step = Step::Precommit;
            }
            TimeoutKind::Precommit => {
                if let Some(next) = self.round.next() {
                    self.start_round(next, out);
                }
            }
            _ => {}
        }
    }

    fn on_propose_value(
        &mut self,
        height: C::Height,
        round: Round,
        value: C::Value,
        out: &mut Vec<Output<C>>,
    ) {
        if height != self.height
            || round != self.round
            || self.step != Step::Propose
            || self.proposals.contains_key(&round)
        {
            return;
        }
        let Some(me) = self.me.clone() else { return };
        if self.validators.proposer(round) != Some(&me) {
            return;
        }
        self.validity.insert(self.ctx.value_id(&value), true);
        out.push(Output::SignProposal(Proposal {
            instance: self.params.instance,
            height,
            round,
            value,
            pol_round: None,
            proposer: me,
        }));
    }

    fn on_commit(
        &mut self,
        value: C::Value,
        certificate: CommitCertificate<C>,
        out: &mut Vec<Output<C>>,
    ) -> Result<(), ConsensusError> {
        if self.step == Step::Commit {
            return Err(ConsensusError::AlreadyDecided);
        }
        if certificate.height != self.height {
            return Err(ConsensusError::WrongHeight);
        }
        if self.ctx.value_id(&value) != certificate.value_id {
            return Err(ConsensusError::InvalidCertificate("value does not match"));
        }
        certificate.verify(&self.ctx, self.params.instance, &self.validators)?;
        self.step = Step::Commit;
        self.decision = Some(Decision {
            value: value.clone(),
            certificate: certificate.clone(),
        });
        out.push(Output::Decide(Decision { value, certificate }));
        Ok(())
    }

    fn vote(&mut self, vote_type: VoteType, value: Option<C::ValueId>, out: &mut Vec<Output<C>>) {
        if let Some(me) = &self.me {
            if self.validators.get(me).is_some() {
                out.push(Output::SignVote(Vote {
                    instance: self.params.instance,
                    height: self.height,
                    round: self.round,
                    vote_type,
                    value,
                    validator: me.clone(),
                }));
            }
        }
    }

    fn timeout(&self, kind: TimeoutKind, out: &mut Vec<Output<C>>) {
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind,
            },
            after: self.params.timeouts.duration(kind, self.round),
        });
    }

    fn start_round(&mut self, round: Round, out: &mut Vec<Output<C>>) {
        self.round = round;
        self.step = Step::Propose;
        let is_proposer = self
            .me
            .as_ref()
            .is_some_and(|me| self.validators.proposer(round) == Some(me));
        if is_proposer {
            if let (Some((vr, value, id)), Some(me)) = (self.valid.clone(), self.me.clone()) {
                self.validity.insert(id, true);
                out.push(Output::SignProposal(Proposal {
                    instance: self.params.instance,
                    height: self.height,
                    round,
                    value,
                    pol_round: Some(vr),
                    proposer: me,
                }));
            } else {
                out.push(Output::GetValue {
                    height: self.height,
                    round,
                    timeout: self.params.timeouts.duration(TimeoutKind::Propose, round),
                });
            }
        }
        self.timeout(TimeoutKind::Propose, out);
    }

    fn evaluate(&mut self, out: &mut Vec<Output<C>>) {
        loop {
            if self.step == Step::Commit || self.try_decide(out) {
                return;
            }
            if self.try_skip_round(out) {
                continue;
            }
            let progressed = self.rule_proposal(out)
                | self.rule_prevote_any(out)
                | self.rule_prevote_value(out)
                | self.rule_prevote_nil(out)
                | self.rule_precommit_any(out);
            if !progressed {
                return;
            }
        }
    }

    fn is_valid(&self, id: &C::ValueId) -> Option<bool> {
        self.validity.get(id).copied()
    }

    /// A proposal and +2/3 precommits for its value in the same round: decide.
    fn try_decide(&mut self, out: &mut Vec<Output<C>>) -> bool {
        let total = self.validators.total_power();
        let found = self.proposals.iter().find_map(|(round, (sp, id))| {
            let power = self
                .keeper
                .power_for(*round, VoteType::Precommit, &Some(id.clone()));
            (self.is_valid(id) == Some(true) && is_quorum(power, total))
                .then(|| (*round, sp.proposal.value.clone(), id.clone()))
        });
        let Some((round, value, id)) = found else {
            return false;
        };
        let signatures = self
            .keeper
            .votes_for(round, VoteType::Precommit, Some(id.clone()))
            .map(|v| CommitSignature {
                validator: v.vote.validator.clone(),
                signature: v.signature.clone(),
            })
            .collect();
        let certificate = CommitCertificate {
            instance: self.params.instance,
            height: self.height,
            round,
            value_id: id,
            signatures,
        };
        self.step = Step::Commit;
        let decision = Decision { value, certificate };
        self.decision = Some(decision.clone());
        out.push(Output::Decide(decision));
        true
    }

    /// More than 1/3 of the power is already in a later round: join it.
    fn try_skip_round(&mut self, out: &mut Vec<Output<C>>) -> bool {
        let total = self.validators.total_power();
        let target = self
            .keeper
            .rounds()
            .filter(|r| *r > self.round && is_one_third_plus(self.keeper.round_power(*r), total))
            .max();
        match target {
            Some(r) => {
                self.start_round(r, out);
                true
            }
            None => false,
        }
    }

    /// The round's proposal arrived (with its proof of lock, if re-proposed): prevote.
    fn rule_proposal(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some((sp, id)) = self.proposals.get(&self.round) else {
            return false;
        };
        let id = id.clone();
        let Some(valid) = self.is_valid(&id) else {
            return false;
        };
        let locked_on_it = self.locked.as_ref().is_some_and(|l| l.2 == id);
        let accept = match sp.proposal.pol_round {
            None => valid && (self.locked.is_none() || locked_on_it),
            Some(vr) => {
                let pol = self
                    .keeper
                    .power_for(vr, VoteType::Prevote, &Some(id.clone()));
                if !is_quorum(pol, self.validators.total_power()) {
                    return false;
                }
                let unlocked_by = self.locked.as_ref().is_none_or(|l| l.0 <= vr);
                valid && (unlocked_by || locked_on_it)
            }
        };
        self.vote(VoteType::Prevote, accept.then_some(id), out);
        self.step = Step::Prevote;
        true
    }

    fn rule_prevote_any(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Prevote
            || !is_quorum(
                self.keeper.power_any(self.round, VoteType::Prevote),
                self.validators.total_power(),
            )
            || !self.fired.insert((self.round, Rule::PrevoteAnyTimeout))
        {
            return false;
        }
        self.timeout(TimeoutKind::Prevote, out);
        true
    }

    /// The proposal has +2/3 prevotes this round: lock on it and precommit (once).
    fn rule_prevote_value(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step < Step::Prevote || self.fired.contains(&(self.round, Rule::PrevoteValueQuorum))
        {
            return false;
        }
        let Some((sp, id)) = self.proposals.get(&self.round) else {
            return false;
        };
        let id = id.clone();
        let power = self
            .keeper
            .power_for(self.round, VoteType::Prevote, &Some(id.clone()));
        if self.is_valid(&id) != Some(true) || !is_quorum(power, self.validators.total_power()) {
            return false;
        }
        let value = sp.proposal.value.clone();
        self.fired.insert((self.round, Rule::PrevoteValueQuorum));
        if self.step == Step::Prevote {
            self.locked = Some((self.round, value.clone(), id.clone()));
            self.vote(VoteType::Precommit, Some(id.clone()), out);
            self.step = Step::Precommit;
        }
        self.valid = Some((self.round, value, id));
        true
    }

    fn rule_prevote_nil(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if self.step != Step::Prevote
            || !is_quorum(
                self.keeper.power_for(self.round, VoteType::Prevote, &None),
                self.validators.total_power(),
            )
        {
            return false;
        }
        self.vote(VoteType::Precommit, None, out);
        self.step = Step::Precommit;
        true
    }

    fn rule_precommit_any(&mut self, out: &mut Vec<Output<C>>) -> bool {
        if !is_quorum(
            self.keeper.power_any(self.round, VoteType::Precommit),
            self.validators.total_power(),
        ) || !self.fired.insert((self.round, Rule::PrecommitAnyTimeout))
        {
            return false;
        }
        self.timeout(TimeoutKind::Precommit, out);
        true
    }
}
