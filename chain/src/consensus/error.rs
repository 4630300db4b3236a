//! Errors of the consensus core.

/// Why the consensus core refused an input or a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// A validator set must have at least one member.
    #[error("validator set is empty")]
    EmptyValidatorSet,
    /// A validator appears twice in one set.
    #[error("duplicate validator in set")]
    DuplicateValidator,
    /// Every validator needs positive voting power.
    #[error("validator has zero voting power")]
    ZeroVotingPower,
    /// The set's total power exceeds [`crate::consensus::MAX_TOTAL_VOTING_POWER`].
    #[error("total voting power exceeds the maximum")]
    VotingPowerOverflow,
    /// The message belongs to another consensus instance (another chain or shard).
    #[error("message for another consensus instance")]
    WrongInstance,
    /// The message is for a height this instance is not at (and cannot buffer).
    #[error("message for a height that is neither current nor next")]
    WrongHeight,
    /// The signer is not a member of the validator set.
    #[error("signer is not in the validator set")]
    UnknownValidator,
    /// A proposal was signed by someone other than the round's proposer.
    #[error("proposal is not from the round's proposer")]
    NotProposer,
    /// A signature did not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The round is too far ahead of the current one to be kept.
    #[error("round too far in the future")]
    RoundTooFar,
    /// The proposal's proof-of-lock round is not below its round.
    #[error("proof-of-lock round is not below the proposal round")]
    InvalidPolRound,
    /// The proposer signed two different proposals for one round.
    #[error("conflicting proposal for the same round")]
    ConflictingProposal,
    /// A commit certificate did not verify.
    #[error("invalid commit certificate: {0}")]
    InvalidCertificate(&'static str),
    /// Evidence did not show two conflicting votes by one validator.
    #[error("invalid evidence: {0}")]
    InvalidEvidence(&'static str),
    /// The signing guard refused to sign: it would be a second, different signature at one
    /// height, round and step, or a step back.
    #[error("refusing to double-sign at height/round/step")]
    DoubleSign,
    /// The instance already decided at this height.
    #[error("already decided at this height")]
    AlreadyDecided,
    /// Signing bytes could not be encoded.
    #[error("cannot encode signing bytes: {0}")]
    Encoding(String),
    /// The next height does not exist (height counter overflow).
    #[error("height overflow")]
    HeightOverflow,
}
