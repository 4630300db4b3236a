//! The driver: the synchronous glue every host needs around [`Consensus`] — signing through a
//! durable guard, answering value requests from the application, feeding our own signed
//! messages back, logging accepted inputs to the write-ahead log — turned into a short list of
//! [`Effect`]s for the host's network, timers and block store.
//!
//! Still sans-IO: durability is a [`ConsensusStore`] the host passes in (in memory in the
//! simulation, RocksDB in the node), keys are a [`Signer`], values come from an [`Application`].

use serde::{Deserialize, Serialize};

use core::time::Duration;

use super::context::Context;
use super::error::ConsensusError;
use super::guard::{SignStep, SigningGuard};
use super::keeper::Evidence;
use super::machine::{Consensus, Decision, Input, Output, Params};
use super::types::{Round, SignedProposal, SignedVote, Timeout, VoteType};
use super::validators::ValidatorSet;

/// Signs consensus messages with the validator's key.
pub trait Signer<C: Context> {
    /// Our validator address.
    fn address(&self) -> C::Address;
    /// Signs canonical signing bytes.
    fn sign(&self, sign_bytes: &[u8]) -> C::Signature;
}

/// Builds values to propose and judges proposed ones (the ledger, in the node).
pub trait Application<C: Context> {
    /// A value to propose at `height`, `round`.
    fn propose(&mut self, height: C::Height, round: Round) -> C::Value;
    /// Whether `value` is a valid block for `height`.
    fn validate(&mut self, height: C::Height, value: &C::Value) -> bool;
}

/// The durable state of one consensus instance on one node.
pub trait ConsensusStore<C: Context> {
    /// Records that `sign_bytes` is about to be signed at (`height`, `round`, `step`), durably,
    /// before returning; refuses a double sign (see [`SigningGuard::authorize`]).
    ///
    /// # Errors
    /// [`ConsensusError::DoubleSign`].
    fn authorize_signing(
        &mut self,
        height: C::Height,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<(), ConsensusError>;
    /// Appends an accepted external input to the current height's write-ahead log.
    fn append_input(&mut self, input: &Input<C>);
    /// Atomically stores a decision (block and certificate) and drops the decided height's
    /// inputs from the write-ahead log. Inputs for later heights (messages that arrived early
    /// and wait in the core's buffer) must stay: after a crash they are the only record of,
    /// say, the next proposal we already prevoted.
    fn commit(&mut self, decision: &Decision<C>);
}

/// A [`ConsensusStore`] in memory: for tests and the simulation (where "durable" means
/// "survives the simulated crash").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct MemoryStore<C: Context> {
    /// The signing guard.
    pub guard: SigningGuard<C::Height>,
    /// Accepted inputs of the current height.
    pub wal: Vec<Input<C>>,
    /// Decided values with their certificates, by height order.
    pub decisions: Vec<Decision<C>>,
}

impl<C: Context> Default for MemoryStore<C> {
    fn default() -> Self {
        MemoryStore {
            guard: SigningGuard::new(),
            wal: Vec::new(),
            decisions: Vec::new(),
        }
    }
}

impl<C: Context> ConsensusStore<C> for MemoryStore<C> {
    fn authorize_signing(
        &mut self,
        height: C::Height,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<(), ConsensusError> {
        self.guard.authorize(height, round, step, sign_bytes)
    }

    fn append_input(&mut self, input: &Input<C>) {
        self.wal.push(input.clone());
    }

    fn commit(&mut self, decision: &Decision<C>) {
        self.decisions.push(decision.clone());
        let decided = decision.certificate.height;
        self.wal.retain(|i| i.height().is_some_and(|h| h > decided));
    }
}

/// A consensus message to send to every peer of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum ConsensusMessage<C: Context> {
    /// A signed proposal.
    Proposal(SignedProposal<C>),
    /// A signed vote.
    Vote(SignedVote<C>),
}

/// What the host must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<C: Context> {
    /// Send to all peers (already signed and durably guarded).
    Broadcast(ConsensusMessage<C>),
    /// Set a timer and hand it back to [`Driver::handle`] as [`Input::TimeoutExpired`].
    ScheduleTimeout {
        /// The timer.
        timeout: Timeout<C>,
        /// Its duration.
        after: Duration,
    },
    /// A decision, already committed to the store: start the next height when ready.
    Decided(Decision<C>),
    /// A validator double-signed: turn into an evidence transaction.
    Evidence(Evidence<C>),
    /// The signing guard refused to sign (after a restart without the full log).
    SigningRefused {
        /// Height.
        height: C::Height,
        /// Round.
        round: Round,
        /// Step.
        step: SignStep,
    },
}

/// [`Consensus`] plus signing, application and write-ahead logging.
#[derive(Debug, Clone)]
pub struct Driver<C: Context, S> {
    ctx: C,
    core: Consensus<C>,
    signer: S,
}

impl<C: Context, S: Signer<C>> Driver<C, S> {
    /// A driver at `height` with `validators` (call [`Driver::start`], then replay the store's
    /// write-ahead log with [`Driver::handle`] after a restart).
    pub fn new(
        ctx: C,
        params: Params,
        signer: S,
        height: C::Height,
        validators: ValidatorSet<C>,
    ) -> Self {
        let core = Consensus::new(
            ctx.clone(),
            params,
            Some(signer.address()),
            height,
            validators,
        );
        Driver { ctx, core, signer }
    }

    /// The state machine, for inspection.
    pub fn core(&self) -> &Consensus<C> {
        &self.core
    }

    /// Enters round 0 of the current height.
    pub fn start(
        &mut self,
        app: &mut impl Application<C>,
        store: &mut impl ConsensusStore<C>,
    ) -> Vec<Effect<C>> {
        let outs = self.core.start();
        self.run(outs, app, store)
    }

    /// Moves to `height` (after storing a decision or syncing) and starts it.
    pub fn start_height(
        &mut self,
        height: C::Height,
        validators: ValidatorSet<C>,
        app: &mut impl Application<C>,
        store: &mut impl ConsensusStore<C>,
    ) -> Vec<Effect<C>> {
        let outs = self.core.start_height(height, validators);
        self.run(outs, app, store)
    }

    /// Processes an external input (a message from a peer, a timer, a synced commit); logs it
    /// to the write-ahead log once accepted. Re-gossiped copies of held messages are dropped
    /// without logging, so the log stays bounded by the height's distinct messages.
    ///
    /// # Errors
    /// The core refused the input; nothing changed and nothing was logged.
    pub fn handle(
        &mut self,
        input: Input<C>,
        app: &mut impl Application<C>,
        store: &mut impl ConsensusStore<C>,
    ) -> Result<Vec<Effect<C>>, ConsensusError> {
        if self.core.is_duplicate(&input) {
            return Ok(Vec::new());
        }
        let outs = self.core.handle(input.clone())?;
        store.append_input(&input);
        Ok(self.run(outs, app, store))
    }

    /// Messages to re-send on the host's gossip timer (see [`Consensus::gossip_messages`]).
    pub fn gossip(&self) -> Vec<ConsensusMessage<C>> {
        let (p, votes) = self.core.gossip_messages();
        p.cloned()
            .map(ConsensusMessage::Proposal)
            .into_iter()
            .chain(votes.into_iter().cloned().map(ConsensusMessage::Vote))
            .collect()
    }

    /// Our own messages at `round` of the current height, for a peer behind us in that round
    /// (see [`Consensus::own_messages_at`]).
    pub fn catch_up(&self, round: Round) -> Vec<ConsensusMessage<C>> {
        let (p, votes) = self.core.own_messages_at(round);
        p.cloned()
            .map(ConsensusMessage::Proposal)
            .into_iter()
            .chain(votes.into_iter().cloned().map(ConsensusMessage::Vote))
            .collect()
    }

    fn run(
        &mut self,
        outs: Vec<Output<C>>,
        app: &mut impl Application<C>,
        store: &mut impl ConsensusStore<C>,
    ) -> Vec<Effect<C>> {
        let mut effects = Vec::new();
        let mut queue: std::collections::VecDeque<Output<C>> = outs.into();
        while let Some(out) = queue.pop_front() {
            let derived = match out {
                Output::GetValue { height, round, .. } => Some(Input::ProposeValue {
                    height,
                    round,
                    value: app.propose(height, round),
                }),
                Output::ValidateValue { height, value, .. } => Some(Input::ValueValidated {
                    height,
                    value_id: self.ctx.value_id(&value),
                    valid: app.validate(height, &value),
                }),
                Output::SignProposal(proposal) => {
                    let (h, r) = (proposal.height, proposal.round);
                    let authorized = self.ctx.proposal_sign_bytes(&proposal).and_then(|bytes| {
                        store
                            .authorize_signing(h, r, SignStep::Propose, &bytes)
                            .map(|()| bytes)
                    });
                    match authorized {
                        Ok(bytes) => {
                            let signed = SignedProposal {
                                signature: self.signer.sign(&bytes),
                                proposal,
                            };
                            effects.push(Effect::Broadcast(ConsensusMessage::Proposal(
                                signed.clone(),
                            )));
                            Some(Input::Proposal(signed))
                        }
                        Err(_) => {
                            effects.push(Effect::SigningRefused {
                                height: h,
                                round: r,
                                step: SignStep::Propose,
                            });
                            None
                        }
                    }
                }
                Output::SignVote(vote) => {
                    let step = match vote.vote_type {
                        VoteType::Prevote => SignStep::Prevote,
                        VoteType::Precommit => SignStep::Precommit,
                    };
                    let (h, r) = (vote.height, vote.round);
                    let authorized = self.ctx.vote_sign_bytes(&vote).and_then(|bytes| {
                        store.authorize_signing(h, r, step, &bytes).map(|()| bytes)
                    });
                    match authorized {
                        Ok(bytes) => {
                            let signed = SignedVote {
                                signature: self.signer.sign(&bytes),
                                vote,
                            };
                            effects.push(Effect::Broadcast(ConsensusMessage::Vote(signed.clone())));
                            Some(Input::Vote(signed))
                        }
                        Err(_) => {
                            effects.push(Effect::SigningRefused {
                                height: h,
                                round: r,
                                step,
                            });
                            None
                        }
                    }
                }
                Output::ScheduleTimeout { timeout, after } => {
                    effects.push(Effect::ScheduleTimeout { timeout, after });
                    None
                }
                Output::Decide(decision) => {
                    store.commit(&decision);
                    effects.push(Effect::Decided(decision));
                    None
                }
                Output::Evidence(e) => {
                    effects.push(Effect::Evidence(e));
                    None
                }
            };
            if let Some(input) = derived {
                // Our own answers and signed messages are always acceptable to our own core.
                if let Ok(more) = self.core.handle(input) {
                    queue.extend(more);
                }
            }
        }
        effects
    }
}
