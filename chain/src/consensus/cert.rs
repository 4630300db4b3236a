//! Commit certificates: the precommits that finalize a value, stored with the block.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::error::ConsensusError;
use super::types::{InstanceId, Round, Vote, VoteType};
use super::validators::{is_quorum, ValidatorSet};

/// One validator's precommit signature inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CommitSignature<C: Context> {
    /// The signer.
    pub validator: C::Address,
    /// Its signature over the precommit for the certified value.
    pub signature: C::Signature,
}

/// Precommits from more than two thirds of the voting power for one value at one height and
/// round. Anyone holding the validator set can check it ([`CommitCertificate::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CommitCertificate<C: Context> {
    /// Consensus instance.
    pub instance: InstanceId,
    /// Height decided.
    pub height: C::Height,
    /// Round in which the precommits were cast.
    pub round: Round,
    /// The decided value's identifier.
    pub value_id: C::ValueId,
    /// The precommit signatures.
    pub signatures: Vec<CommitSignature<C>>,
}

impl<C: Context> CommitCertificate<C> {
    /// The precommit vote a signature in this certificate covers.
    pub fn vote_of(&self, validator: &C::Address) -> Vote<C> {
        Vote {
            instance: self.instance,
            height: self.height,
            round: self.round,
            vote_type: VoteType::Precommit,
            value: Some(self.value_id.clone()),
            validator: validator.clone(),
        }
    }

    /// Verifies the certificate for `instance` against `validators` (the set of its height):
    /// distinct signers, all members, all signatures valid, more than 2/3 of the total power.
    /// Returns the certified power.
    ///
    /// # Errors
    /// [`ConsensusError::InvalidCertificate`] or [`ConsensusError::WrongInstance`].
    pub fn verify(
        &self,
        ctx: &C,
        instance: InstanceId,
        validators: &ValidatorSet<C>,
    ) -> Result<u64, ConsensusError> {
        if self.instance != instance {
            return Err(ConsensusError::WrongInstance);
        }
        if self.signatures.len() > validators.len() {
            return Err(ConsensusError::InvalidCertificate(
                "more signatures than validators",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut power: u64 = 0;
        for s in &self.signatures {
            if !seen.insert(&s.validator) {
                return Err(ConsensusError::InvalidCertificate("duplicate signer"));
            }
            let member = validators
                .get(&s.validator)
                .ok_or(ConsensusError::InvalidCertificate(
                    "signer not in validator set",
                ))?;
            let bytes = ctx.vote_sign_bytes(&self.vote_of(&s.validator))?;
            if !ctx.verify(&member.public_key, &bytes, &s.signature) {
                return Err(ConsensusError::InvalidCertificate("bad signature"));
            }
            power = power
                .checked_add(member.voting_power)
                .ok_or(ConsensusError::VotingPowerOverflow)?;
        }
        if !is_quorum(power, validators.total_power()) {
            return Err(ConsensusError::InvalidCertificate(
                "not more than 2/3 of voting power",
            ));
        }
        Ok(power)
    }
}
