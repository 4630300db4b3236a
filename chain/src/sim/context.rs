//! The concrete [`Context`] the simulation runs: secp256k1 ECDSA validators deciding opaque
//! byte-string values. Signing bytes are the canonical `primitives::codec` encoding of a
//! [`SignedPayload`]; signatures are over their [`primitives::hash::Domain::Consensus`] hash.

use primitives::codec;
use primitives::hash::{hash, Domain};
use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

use crate::consensus::secp::{self, ValidatorAddress};
use crate::consensus::{ConsensusError, Context, InstanceId, Proposal, Round, Vote, VoteType};

/// Hash domain of value identifiers.
pub const VALUE_DOMAIN: Domain = Domain::Custom("sim-value");

/// What a consensus signature covers; the variant index keeps votes and proposals apart.
#[derive(Debug, Serialize)]
pub enum SignedPayload<'a> {
    /// A vote, as is.
    Vote(&'a Vote<SimContext>),
    /// A proposal, with its value replaced by the value's identifier.
    Proposal {
        /// Instance.
        instance: InstanceId,
        /// Height.
        height: u64,
        /// Round.
        round: Round,
        /// Proof-of-lock round.
        pol_round: Option<Round>,
        /// Proposer.
        proposer: ValidatorAddress,
        /// The proposed value's identifier.
        value_id: ValueId,
    },
}

fn encode(payload: &SignedPayload<'_>) -> Result<Vec<u8>, ConsensusError> {
    codec::to_vec(payload).map_err(|e| ConsensusError::Encoding(e.to_string()))
}

const VALUE_MAGIC: &[u8; 4] = b"blk1";

/// A simulated block: `blk1`, height, proposer index, round (big-endian), then payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SimValue(pub Vec<u8>);

impl SimValue {
    /// A well-formed value for `height`.
    pub fn new(height: u64, proposer: u32, round: u32, payload: &[u8]) -> Self {
        let mut b = Vec::with_capacity(payload.len().saturating_add(20));
        b.extend_from_slice(VALUE_MAGIC);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&proposer.to_be_bytes());
        b.extend_from_slice(&round.to_be_bytes());
        b.extend_from_slice(payload);
        SimValue(b)
    }

    /// The proposer index encoded in a well-formed value.
    pub fn proposer(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.0.get(12..16)?.try_into().ok()?))
    }

    /// The round encoded in a well-formed value.
    pub fn round(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.0.get(16..20)?.try_into().ok()?))
    }

    /// The validity predicate: well-formed and built for `height`.
    pub fn is_valid_for(&self, height: u64) -> bool {
        self.0.get(..4) == Some(VALUE_MAGIC.as_slice())
            && self.0.get(4..12) == Some(height.to_be_bytes().as_slice())
            && self.0.len() >= 20
    }
}

/// A value identifier: domain-separated SHA-256 of the value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValueId(pub [u8; 32]);

/// The simulation's context (also a template for the production one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimContext;

impl SimContext {
    /// Appends a vote's fields in the wire layout.
    pub(crate) fn vote_fields(vote: &Vote<Self>, out: &mut Vec<u8>) {
        out.extend_from_slice(&vote.instance.0.to_be_bytes());
        out.extend_from_slice(&vote.height.to_be_bytes());
        out.extend_from_slice(&vote.round.0.to_be_bytes());
        out.push(match vote.vote_type {
            VoteType::Prevote => 0,
            VoteType::Precommit => 1,
        });
        match &vote.value {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.0);
            }
        }
        out.extend_from_slice(&vote.validator.0);
    }
}

impl Context for SimContext {
    type Height = u64;
    type Address = ValidatorAddress;
    type PublicKey = PublicKey;
    type Signature = Signature;
    type Value = SimValue;
    type ValueId = ValueId;

    fn value_id(&self, value: &SimValue) -> ValueId {
        ValueId(hash(VALUE_DOMAIN, &value.0))
    }

    fn vote_sign_bytes(&self, vote: &Vote<Self>) -> Result<Vec<u8>, ConsensusError> {
        encode(&SignedPayload::Vote(vote))
    }

    fn proposal_sign_bytes(&self, p: &Proposal<Self>) -> Result<Vec<u8>, ConsensusError> {
        encode(&SignedPayload::Proposal {
            instance: p.instance,
            height: p.height,
            round: p.round,
            pol_round: p.pol_round,
            proposer: p.proposer,
            value_id: self.value_id(&p.value),
        })
    }

    fn verify(&self, key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
        secp::verify(key, message, signature)
    }
}
