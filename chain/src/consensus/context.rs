//! The [`Context`] trait: everything the core is generic over.

use core::fmt::Debug;
use core::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ConsensusError;
use super::types::{Proposal, Vote};

/// A block height: totally ordered, with a successor.
pub trait ConsensusHeight: Copy + Ord + Hash + Debug + Serialize + DeserializeOwned {
    /// The following height, or `None` on overflow.
    fn next(self) -> Option<Self>;
}

impl ConsensusHeight for u64 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// The types and pure functions a consensus instance runs over: who votes, what is decided,
/// how messages are turned into signing bytes and how signatures verify.
///
/// Implementations must be deterministic; the core never does I/O through them.
pub trait Context: Clone + Debug + PartialEq + Eq {
    /// Block height.
    type Height: ConsensusHeight;
    /// Identifies a validator (derived from its public key).
    type Address: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned;
    /// A validator's verification key.
    type PublicKey: Clone + Eq + Debug + Serialize + DeserializeOwned;
    /// A signature over signing bytes.
    type Signature: Clone + Eq + Debug + Serialize + DeserializeOwned;
    /// What is decided (a block).
    type Value: Clone + Eq + Debug + Serialize + DeserializeOwned;
    /// A short commitment to a value (a block hash); votes carry only this.
    type ValueId: Clone + Ord + Hash + Debug + Serialize + DeserializeOwned;

    /// The identifier of `value`.
    fn value_id(&self, value: &Self::Value) -> Self::ValueId;
    /// The canonical bytes a vote's signature covers.
    ///
    /// # Errors
    /// [`ConsensusError::Encoding`] if the vote cannot be encoded.
    fn vote_sign_bytes(&self, vote: &Vote<Self>) -> Result<Vec<u8>, ConsensusError>;
    /// The canonical bytes a proposal's signature covers.
    ///
    /// # Errors
    /// [`ConsensusError::Encoding`] if the proposal cannot be encoded.
    fn proposal_sign_bytes(&self, proposal: &Proposal<Self>) -> Result<Vec<u8>, ConsensusError>;
    /// Whether `signature` by `key` over `message` is valid.
    fn verify(&self, key: &Self::PublicKey, message: &[u8], signature: &Self::Signature) -> bool;
}
