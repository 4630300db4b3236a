//! The sans-IO Tendermint consensus core.
//!
//! [`Consensus`] runs one height of one instance: it takes [`Input`]s (proposals, votes, timer
//! expiries, proposed values, validation verdicts, synced commits) and returns [`Output`]s
//! (sign this, set that timer, validate this value, decided). It is generic over a [`Context`]
//! that fixes the value, address, key and signature types, so the same code runs the main chain,
//! each shard chain (distinguished by [`InstanceId`]) and the simulation.
//!
//! Around it: [`VoteKeeper`] (vote aggregation by voting power, equivocation [`Evidence`]),
//! [`ValidatorSet`] (stake-weighted round-robin proposer), [`CommitCertificate`] (the finality
//! proof stored with each block) and [`SigningGuard`] (the durable never-sign-twice state).
//! [`Driver`] wraps the core with signing, the application and the write-ahead log, so a host
//! (the simulation, the node) only moves [`Effect`]s between network, timers and storage.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod cert;
pub mod context;
pub mod driver;
pub mod error;
pub mod guard;
pub mod keeper;
pub mod machine;
pub mod secp;
pub mod types;
pub mod validators;

pub use cert::{CommitCertificate, CommitSignature};
pub use context::{ConsensusHeight, Context};
pub use driver::{
    Application, ConsensusMessage, ConsensusStore, Driver, Effect, MemoryStore, Signer,
};
pub use error::ConsensusError;
pub use guard::{LastSigned, SignStep, SigningGuard};
pub use keeper::{AddOutcome, Evidence, VoteKeeper};
pub use machine::{Consensus, Decision, Input, Output, Params};
pub use types::{
    InstanceId, Proposal, Round, SignedProposal, SignedVote, Step, Timeout, TimeoutConfig,
    TimeoutKind, Vote, VoteType,
};
pub use validators::{
    is_one_third_plus, is_quorum, Validator, ValidatorSet, MAX_TOTAL_VOTING_POWER,
};
