//! Checking an agent's chain answers without trusting the agent.
//!
//! The anchor is the genesis validator set (from the network file the user was given). A
//! `Proven` answer is accepted only if its header carries precommits from more than 2/3 of that
//! set's power ([`chain::light::verify_commit`]) and every value comes with a Merkle proof
//! against that header's state root ([`chain::light::verify_state`]). A header signed by
//! another set is refused: this verifier follows the genesis set only (following validator-set
//! changes needs the sequential [`chain::light::LightClient::update`] walk, which the wallet
//! does not do yet).

use chain::block::ChainContext;
use chain::consensus::ValidatorSet;
use chain::ledger::{Genesis, Ledger};
use chain::light::{verify_commit, verify_state, LightError, SignedHeader, StateAnswer};
use primitives::codec;
use serde::de::DeserializeOwned;

/// Why an answer was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The genesis does not yield a validator set.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The header or a proof failed.
    #[error("{0}")]
    Light(#[from] LightError),
    /// The answers do not match the keys asked.
    #[error("the agent answered other keys than were asked")]
    WrongKeys,
    /// A proven value does not decode as the expected type.
    #[error("proven value of {what} does not decode: {reason}")]
    Value {
        /// What it should have been.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Checks headers and state answers against the genesis validator set.
#[derive(Debug, Clone)]
pub struct Verifier {
    ctx: ChainContext,
    set: ValidatorSet<ChainContext>,
    highest: u64,
}

/// Values proven at one finalized height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The height they hold at.
    pub height: u64,
    /// The header's time (ms since the Unix epoch).
    pub time_ms: u64,
    /// One value (or absence) per key asked.
    pub values: Vec<Option<Vec<u8>>>,
}

impl Verifier {
    /// A verifier anchored on `genesis`'s validator set.
    ///
    /// # Errors
    /// [`VerifyError::Genesis`] if the genesis is invalid.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, VerifyError> {
        let (_, validators) = Ledger::new()
            .init_genesis(genesis)
            .map_err(|e| VerifyError::Genesis(e.to_string()))?;
        let set = ValidatorSet::new(validators).map_err(|e| VerifyError::Genesis(e.to_string()))?;
        Ok(Verifier {
            ctx: ChainContext::new(genesis.chain_id.clone()),
            set,
            highest: 0,
        })
    }

    /// The highest finalized height verified so far.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Checks `header` and that `answers` prove the values of exactly `keys` against it.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first failed check.
    pub fn check(
        &mut self,
        header: &SignedHeader,
        keys: &[Vec<u8>],
        answers: &[StateAnswer],
    ) -> Result<Proven, VerifyError> {
        verify_commit(&self.ctx, &header.header, &header.commit, &self.set)?;
        if answers.len() != keys.len() || answers.iter().zip(keys).any(|(a, k)| &a.key != k) {
            return Err(VerifyError::WrongKeys);
        }
        for a in answers {
            verify_state(&header.header, &a.key, a.value.as_deref(), &a.proof)?;
        }
        self.highest = self.highest.max(header.header.height);
        Ok(Proven {
            height: header.header.height,
            time_ms: header.header.time_ms,
            values: answers.iter().map(|a| a.value.clone()).collect(),
        })
    }
}

/// Decodes a proven state value stored in the canonical codec.
///
/// # Errors
/// [`VerifyError::Value`].
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    value: Option<&[u8]>,
) -> Result<Option<T>, VerifyError> {
    value
        .map(|v| {
            codec::from_slice(v).map_err(|e| VerifyError::Value {
                what,
                reason: e.to_string(),
            })
        })
        .transpose()
}
