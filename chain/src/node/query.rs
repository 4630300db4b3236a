//! Read-only queries a gateway answers from a node's store: the latest finalized header with
//! its commit certificate, and state values with Merkle proofs against that header, so that a
//! client holding only the validator set (a [`crate::light::LightClient`]) can check them.

use crate::light::{SignedHeader, StateAnswer};
use crate::node::store::{ChainStore, StoreError};
use crate::state::smt;
use crate::state::{StateError, StateView};

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Nothing is finalized yet (height 0 has no signed header).
    #[error("no block has been finalized yet")]
    NothingFinalized,
    /// The store failed or holds something malformed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The state tree failed.
    #[error("state: {0}")]
    State(String),
    /// The head kept moving while the answer was assembled.
    #[error("the chain advanced during the query {0} times; try again")]
    Busy(u32),
    /// A committed height lacks its block or certificate.
    #[error("height {0} has no stored block or certificate")]
    Missing(u64),
}

/// Answers for several keys, all proven against one finalized header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenState {
    /// The header the answers are proven against, with its certificate.
    pub header: SignedHeader,
    /// One answer per key, in the order asked.
    pub answers: Vec<StateAnswer>,
}

/// The finalized header of `height` with its certificate.
///
/// # Errors
/// [`QueryError::Missing`] if the height is not committed.
pub fn signed_header(store: &ChainStore, height: u64) -> Result<SignedHeader, QueryError> {
    let block = store.block(height)?.ok_or(QueryError::Missing(height))?;
    let commit = store
        .certificate(height)?
        .ok_or(QueryError::Missing(height))?;
    Ok(SignedHeader {
        header: block.header,
        commit,
    })
}

/// Values of `keys` after the latest finalized block, each with a proof against that block's
/// header. The flat state and the tree are read without a snapshot, so an answer is assembled
/// again (a few times) when a block commits in between, or when the version being read was
/// pruned meanwhile (the store keeps only its last versions); every returned proof has been
/// checked against the value returned with it.
///
/// # Errors
/// [`QueryError`].
pub fn prove_latest(store: &ChainStore, keys: &[Vec<u8>]) -> Result<ProvenState, QueryError> {
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let head = store.require_head()?;
        if head.height == 0 {
            return Err(QueryError::NothingFinalized);
        }
        let header = signed_header(store, head.height)?;
        let mut answers = Vec::with_capacity(keys.len());
        let mut consistent = true;
        for key in keys {
            let value = store
                .get(key)
                .map_err(|e| QueryError::State(e.to_string()))?;
            let proof = match smt::prove(store, head.state_root, key) {
                Ok(p) => p,
                // The version was pruned under us: more blocks than the store keeps committed
                // since `head` was read. Ask again at the new head.
                Err(StateError::MissingNode(_)) if store.require_head()?.height != head.height => {
                    consistent = false;
                    break;
                }
                Err(e) => return Err(QueryError::State(e.to_string())),
            };
            if proof
                .verify(&head.state_root, key, value.as_deref())
                .is_err()
            {
                consistent = false;
                break;
            }
            answers.push(StateAnswer {
                key: key.clone(),
                value,
                proof,
            });
        }
        if consistent && store.require_head()?.height == head.height {
            return Ok(ProvenState { header, answers });
        }
    }
    Err(QueryError::Busy(ATTEMPTS))
}
