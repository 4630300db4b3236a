//! The light client: checks headers, validator-set changes and state answers without running
//! a node, so a wallet need not trust the agent that serves it.
//!
//! # Trust model
//!
//! - **Anchor.** A [`LightClient`] starts from a header and its validator set that the user
//!   trusts out of band (the genesis file, or a checkpoint from a source the user trusts). Nothing
//!   in this module can tell a genuine anchor from a forged one.
//! - **Sequential verification.** From a trusted header at height `h`, the client accepts the
//!   header at `h + 1` only if it extends the trusted one (same chain id and instance,
//!   `prev_hash` equal to the trusted header's hash, later time), its signing set is the one the
//!   trusted header vouched for (`validator_set_hash(set) == trusted.next_validators_hash`), and
//!   a [`CommitCertificate`] for exactly that header carries valid precommit signatures from
//!   members of that set holding more than 2/3 of its voting power ([`verify_commit`]).
//!   Headers are fed one by one ([`LightClient::update`]), except that a later header signed
//!   by the very set the client already trusts may be accepted directly
//!   ([`LightClient::update_same_set`]: its `validators_hash` names the trusted set and more
//!   than 2/3 of that set's power signed it). There is no bisection over set changes.
//! - **Assumption.** Each set along the way had less than 1/3 of its power Byzantine while it
//!   was signing. Then no conflicting header at any height can gather a certificate, and every
//!   accepted header is the chain's.
//! - **Not covered.** There is no trusting period: a set whose stake has long been unbonded
//!   could sign an alternative history at no cost (a long-range attack), so a client that was
//!   offline for longer than the unbonding period should take a fresh anchor. There is no fork
//!   detection against other peers either.
//! - **State.** An answer `(key, value or none, proof)` is checked against the `state_root` of
//!   a verified header: it proves the state *after* that header's block ([`verify_state`]).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde::{Deserialize, Serialize};

use crate::block::{validator_set_hash, ChainContext, Header};
use crate::consensus::{CommitCertificate, ConsensusError, ValidatorSet};
use crate::state::{ProofError, StateProof};

/// Why a header, a set change or a state answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LightError {
    /// The header belongs to another network.
    #[error("header is for chain {found:?}, expected {expected:?}")]
    WrongChain {
        /// The chain id the client follows.
        expected: String,
        /// The header's chain id.
        found: String,
    },
    /// The header or certificate belongs to another consensus instance.
    #[error("header or certificate is for another consensus instance")]
    WrongInstance,
    /// The certificate is for another height than the header.
    #[error("certificate is for height {cert}, the header is at {header}")]
    HeightMismatch {
        /// The certificate's height.
        cert: u64,
        /// The header's height.
        header: u64,
    },
    /// The certificate certifies another block.
    #[error("certificate is for another block than this header")]
    NotThisHeader,
    /// The offered validator set is not the one the header names.
    #[error("validator set does not match the header's validators hash")]
    WrongValidatorSet,
    /// The certificate did not verify (bad or foreign signature, duplicate signer, not more
    /// than 2/3 of the power).
    #[error("commit certificate rejected: {0}")]
    Certificate(ConsensusError),
    /// The header does not encode, so it has no hash.
    #[error("header does not encode: {0}")]
    Header(ConsensusError),
    /// The header is not the one after the trusted header.
    #[error("expected the header at height {expected}, got height {found}")]
    NotNext {
        /// The height the client accepts next.
        expected: u64,
        /// The header's height.
        found: u64,
    },
    /// The header's `prev_hash` is not the trusted header's hash.
    #[error("header does not extend the trusted header")]
    NotLinked,
    /// The header's time is not after the trusted header's.
    #[error("header time does not increase")]
    TimeNotIncreasing,
    /// The trusted header's `next_validators_hash` does not vouch for the signing set.
    #[error("signing validator set is not the one the trusted header named")]
    SetNotVouched,
    /// The state proof did not check against the header's state root.
    #[error("state answer rejected: {0}")]
    Proof(#[from] ProofError),
}

/// A header with the certificate that finalized it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeader {
    /// The header.
    pub header: Header,
    /// Precommits from more than 2/3 of the header's validator set.
    pub commit: CommitCertificate<ChainContext>,
}

/// An agent's answer to a state query: the value under `key` (or none) and its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnswer {
    /// The key asked about.
    pub key: Vec<u8>,
    /// Its value, or `None` if the key is absent.
    pub value: Option<Vec<u8>>,
    /// The proof against a header's `state_root`.
    pub proof: StateProof,
}

/// Checks that `cert` finalizes `header` and was signed by more than 2/3 of the power of
/// `validators`, the set `header.validators_hash` names. Returns the signing power.
///
/// # Errors
/// The [`LightError`] naming the first check that fails.
pub fn verify_commit(
    ctx: &ChainContext,
    header: &Header,
    cert: &CommitCertificate<ChainContext>,
    validators: &ValidatorSet<ChainContext>,
) -> Result<u64, LightError> {
    if header.chain_id != ctx.chain_id {
        return Err(LightError::WrongChain {
            expected: ctx.chain_id.clone(),
            found: header.chain_id.clone(),
        });
    }
    if cert.instance != header.instance {
        return Err(LightError::WrongInstance);
    }
    if cert.height != header.height {
        return Err(LightError::HeightMismatch {
            cert: cert.height,
            header: header.height,
        });
    }
    if header.hash().map_err(LightError::Header)? != cert.value_id {
        return Err(LightError::NotThisHeader);
    }
    if validator_set_hash(validators) != header.validators_hash {
        return Err(LightError::WrongValidatorSet);
    }
    cert.verify(ctx, header.instance, validators)
        .map_err(LightError::Certificate)
}

/// Checks a state answer against a header the caller has verified: `key` has `value` (or no
/// value) in the state after that header's block.
///
/// # Errors
/// [`LightError::Proof`] if the proof does not show exactly that.
pub fn verify_state(
    header: &Header,
    key: &[u8],
    value: Option<&[u8]>,
    proof: &StateProof,
) -> Result<(), LightError> {
    Ok(proof.verify(&header.state_root, key, value)?)
}

/// A client following one chain instance header by header from a trusted anchor (see the
/// module's trust model).
#[derive(Debug, Clone)]
pub struct LightClient {
    ctx: ChainContext,
    header: Header,
    validators: ValidatorSet<ChainContext>,
}

impl LightClient {
    /// Starts from a trusted header and the validator set that signs its height.
    ///
    /// # Errors
    /// [`LightError::WrongChain`] if the header is for another chain than `ctx`,
    /// [`LightError::WrongValidatorSet`] if the set is not the one the header names,
    /// [`LightError::Header`] if the header does not encode.
    pub fn new(
        ctx: ChainContext,
        header: Header,
        validators: ValidatorSet<ChainContext>,
    ) -> Result<Self, LightError> {
        if header.chain_id != ctx.chain_id {
            return Err(LightError::WrongChain {
                expected: ctx.chain_id,
                found: header.chain_id,
            });
        }
        header.hash().map_err(LightError::Header)?;
        if validator_set_hash(&validators) != header.validators_hash {
            return Err(LightError::WrongValidatorSet);
        }
        Ok(LightClient {
            ctx,
            header,
            validators,
        })
    }

    /// The latest verified header.
    pub fn trusted_header(&self) -> &Header {
        &self.header
    }

    /// The validator set that signed the latest verified header.
    pub fn trusted_validators(&self) -> &ValidatorSet<ChainContext> {
        &self.validators
    }

    /// Verifies the next header, signed by `validators`, and trusts it. On error the client
    /// is unchanged.
    ///
    /// # Errors
    /// The [`LightError`] naming the first check that fails.
    pub fn update(
        &mut self,
        next: &SignedHeader,
        validators: ValidatorSet<ChainContext>,
    ) -> Result<(), LightError> {
        let h = &next.header;
        if h.chain_id != self.ctx.chain_id {
            return Err(LightError::WrongChain {
                expected: self.ctx.chain_id.clone(),
                found: h.chain_id.clone(),
            });
        }
        if h.instance != self.header.instance {
            return Err(LightError::WrongInstance);
        }
        let expected = self
            .header
            .height
            .checked_add(1)
            .ok_or(LightError::NotNext {
                expected: u64::MAX,
                found: h.height,
            })?;
        if h.height != expected {
            return Err(LightError::NotNext {
                expected,
                found: h.height,
            });
        }
        if h.prev_hash != self.header.hash().map_err(LightError::Header)? {
            return Err(LightError::NotLinked);
        }
        if h.time_ms <= self.header.time_ms {
            return Err(LightError::TimeNotIncreasing);
        }
        if validator_set_hash(&validators) != self.header.next_validators_hash {
            return Err(LightError::SetNotVouched);
        }
        verify_commit(&self.ctx, h, &next.commit, &validators)?;
        self.header = h.clone();
        self.validators = validators;
        Ok(())
    }

    /// Verifies a later header signed by the set the client already trusts, skipping the
    /// heights in between, and trusts it. Sound under the module's assumption: that set had
    /// less than 1/3 of its power Byzantine, so more than 2/3 of it signs only the chain's
    /// header at any height. A header whose set differs needs [`LightClient::update`] from the
    /// height where it changed. A header at the trusted height is accepted only if it is the
    /// trusted one. On error the client is unchanged.
    ///
    /// # Errors
    /// The [`LightError`] naming the first check that fails ([`LightError::SetNotVouched`] if
    /// another set signs that height).
    pub fn update_same_set(&mut self, next: &SignedHeader) -> Result<(), LightError> {
        let h = &next.header;
        if h.chain_id != self.ctx.chain_id {
            return Err(LightError::WrongChain {
                expected: self.ctx.chain_id.clone(),
                found: h.chain_id.clone(),
            });
        }
        if h.instance != self.header.instance {
            return Err(LightError::WrongInstance);
        }
        if h.height == self.header.height {
            return if h == &self.header {
                Ok(())
            } else {
                Err(LightError::NotLinked)
            };
        }
        if h.height < self.header.height {
            return Err(LightError::NotNext {
                expected: self.header.height.saturating_add(1),
                found: h.height,
            });
        }
        if h.time_ms <= self.header.time_ms {
            return Err(LightError::TimeNotIncreasing);
        }
        if h.validators_hash != validator_set_hash(&self.validators) {
            return Err(LightError::SetNotVouched);
        }
        verify_commit(&self.ctx, h, &next.commit, &self.validators)?;
        self.header = h.clone();
        Ok(())
    }

    /// Checks a state answer against the latest verified header's state root.
    ///
    /// # Errors
    /// [`LightError::Proof`] if the proof does not show the answer.
    pub fn verify_answer(&self, answer: &StateAnswer) -> Result<(), LightError> {
        verify_state(
            &self.header,
            &answer.key,
            answer.value.as_deref(),
            &answer.proof,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::block::{txs_root, BlockHash, MAX_CHAIN_ID_LEN};
    use crate::consensus::secp::ValidatorAddress;
    use crate::consensus::{InstanceId, Validator};
    use secp256k1::{PublicKey, SecretKey, SECP256K1};

    fn one_validator() -> ValidatorSet<ChainContext> {
        let pk = PublicKey::from_secret_key(SECP256K1, &SecretKey::from_slice(&[9; 32]).unwrap());
        ValidatorSet::new(vec![Validator {
            address: ValidatorAddress::from_public_key(&pk),
            public_key: pk,
            voting_power: 1,
        }])
        .unwrap()
    }

    fn anchor(chain_id: &str, set: &ValidatorSet<ChainContext>) -> Header {
        Header {
            chain_id: chain_id.into(),
            instance: InstanceId(0),
            height: 1,
            time_ms: 1,
            prev_hash: BlockHash([0; 32]),
            txs_root: txs_root(&[]),
            state_root: crate::state::EMPTY_ROOT,
            validators_hash: validator_set_hash(set),
            next_validators_hash: validator_set_hash(set),
            proposer: set.iter().next().unwrap().address,
        }
    }

    #[test]
    fn an_anchor_must_encode_and_name_its_set() {
        let set = one_validator();
        let c = LightClient::new(ChainContext::new("c"), anchor("c", &set), set.clone()).unwrap();
        assert_eq!(c.trusted_header().height, 1);
        // The empty state proves every key absent against the anchor.
        let answer = StateAnswer {
            key: b"k".to_vec(),
            value: None,
            proof: StateProof {
                siblings: vec![],
                terminal: crate::state::smt::ProofTerminal::Empty,
            },
        };
        c.verify_answer(&answer).unwrap();
        let long = "x".repeat(MAX_CHAIN_ID_LEN + 1);
        assert!(matches!(
            LightClient::new(
                ChainContext::new(long.clone()),
                anchor(&long, &set),
                set.clone()
            ),
            Err(LightError::Header(_))
        ));
        let mut h = anchor("c", &set);
        h.validators_hash[0] ^= 1;
        assert_eq!(
            LightClient::new(ChainContext::new("c"), h, set).err(),
            Some(LightError::WrongValidatorSet)
        );
    }
}
