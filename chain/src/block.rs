//! Blocks, headers and the production consensus [`Context`].
//!
//! A [`Block`] is a [`Header`] and an ordered list of encoded signed transactions. The header
//! commits to everything a light client needs: the transactions (`txs_root`), the whole state
//! *after* this block (`state_root`), the validator set that signs this height
//! (`validators_hash`) and the one that signs the next (`next_validators_hash`), so a client
//! holding one trusted set can follow set changes header by header.
//!
//! Consensus votes carry only the [`BlockHash`] (the header's hash); the header's `txs_root`
//! binds the body. [`ChainContext`] fixes the consensus core's types for the real chain:
//! secp256k1 validator keys, blocks as values, and signing bytes bound to the chain id.

use primitives::codec;
use primitives::hash::{hash, Domain, Hash32, Hasher};
use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

use crate::consensus::secp::{self, ValidatorAddress};
use crate::consensus::{
    ConsensusError, Context, InstanceId, Proposal, Round, Validator, ValidatorSet, Vote,
};

/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// Hash domain of transaction-list Merkle nodes.
pub const TX_MERKLE_DOMAIN: Domain = Domain::Custom("tx-merkle");
/// Hash domain of validator-set commitments.
pub const VALIDATOR_SET_DOMAIN: Domain = Domain::Custom("validator-set");

/// A block's identifier: the [`Domain::BlockHeader`] hash of the header's canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockHash(pub Hash32);

impl core::fmt::Display for BlockHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The network this block belongs to (bound into every signature too).
    pub chain_id: String,
    /// The consensus instance (main chain or a shard chain).
    pub instance: InstanceId,
    /// Height; the first block is height 1 (the genesis state is height 0).
    pub height: u64,
    /// Proposer's wall clock in milliseconds since the Unix epoch; strictly increasing.
    pub time_ms: u64,
    /// Hash of the previous block's header (all zeros at height 1).
    pub prev_hash: BlockHash,
    /// Merkle root of the transactions ([`txs_root`]).
    pub txs_root: Hash32,
    /// Root of the state after applying this block.
    pub state_root: Hash32,
    /// [`validator_set_hash`] of the set that signs this height.
    pub validators_hash: Hash32,
    /// [`validator_set_hash`] of the set that signs the next height.
    pub next_validators_hash: Hash32,
    /// The proposer.
    pub proposer: ValidatorAddress,
}

impl Header {
    /// The header's hash.
    ///
    /// # Errors
    /// [`ConsensusError::Encoding`] if the header does not encode (a chain id too long).
    pub fn hash(&self) -> Result<BlockHash, ConsensusError> {
        if self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(ConsensusError::Encoding("chain id too long".into()));
        }
        let bytes = codec::to_vec(self).map_err(|e| ConsensusError::Encoding(e.to_string()))?;
        Ok(BlockHash(hash(Domain::BlockHeader, &bytes)))
    }
}

/// A block: header and encoded signed transactions, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Canonically encoded signed transactions.
    #[serde(with = "primitives::bytes::base64_seq")]
    pub txs: Vec<Vec<u8>>,
}

impl Block {
    /// Whether the header's `txs_root` matches the body.
    pub fn body_matches(&self) -> bool {
        self.header.txs_root == txs_root(&self.txs)
    }
}

/// The hash of one encoded transaction (its identifier).
pub fn tx_hash(tx: &[u8]) -> Hash32 {
    hash(Domain::Transaction, tx)
}

/// A binary Merkle root over the transactions' hashes: leaves `0x00 ‖ tx_hash`, inner nodes
/// `0x01 ‖ left ‖ right`, an odd node promoted unchanged; the empty list has root
/// `hash(TX_MERKLE_DOMAIN, "")`.
pub fn txs_root(txs: &[Vec<u8>]) -> Hash32 {
    if txs.is_empty() {
        return hash(TX_MERKLE_DOMAIN, b"");
    }
    let mut level: Vec<Hash32> = txs
        .iter()
        .map(|tx| {
            let mut h = Hasher::new(TX_MERKLE_DOMAIN);
            h.update(&[0]).update(&tx_hash(tx));
            h.finish()
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut h = Hasher::new(TX_MERKLE_DOMAIN);
                    h.update(&[1]).update(l).update(r);
                    h.finish()
                }
                [single] => *single,
                _ => hash(TX_MERKLE_DOMAIN, b""),
            })
            .collect();
    }
    level.first().copied().unwrap_or_default()
}

/// The commitment to a validator set: its members' (address, key, power) in address order.
/// Proposer priorities are deliberately left out: they are derived state.
pub fn validator_set_hash(set: &ValidatorSet<ChainContext>) -> Hash32 {
    let mut h = Hasher::new(VALIDATOR_SET_DOMAIN);
    h.update(&(set.len() as u64).to_be_bytes());
    for v in set.iter() {
        h.update(&v.address.0)
            .update(&v.public_key.serialize())
            .update(&v.voting_power.to_be_bytes());
    }
    h.finish()
}

/// What a consensus signature covers on the real chain; the variant index keeps votes and
/// proposals apart and the chain id keeps networks apart.
#[derive(Debug, Serialize)]
enum SignedPayload<'a> {
    Vote {
        chain_id: &'a str,
        vote: &'a Vote<ChainContext>,
    },
    Proposal {
        chain_id: &'a str,
        instance: InstanceId,
        height: u64,
        round: Round,
        pol_round: Option<Round>,
        proposer: ValidatorAddress,
        value_id: BlockHash,
    },
}

fn encode(payload: &SignedPayload<'_>) -> Result<Vec<u8>, ConsensusError> {
    codec::to_vec(payload).map_err(|e| ConsensusError::Encoding(e.to_string()))
}

/// The production [`Context`]: blocks decided by secp256k1 validators of one chain id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainContext {
    /// The chain id every signature is bound to.
    pub chain_id: String,
}

impl ChainContext {
    /// A context for `chain_id`.
    pub fn new(chain_id: impl Into<String>) -> Self {
        ChainContext {
            chain_id: chain_id.into(),
        }
    }
}

/// A validator of the real chain.
pub type ChainValidator = Validator<ChainContext>;

impl Context for ChainContext {
    type Height = u64;
    type Address = ValidatorAddress;
    type PublicKey = PublicKey;
    type Signature = Signature;
    type Value = Block;
    type ValueId = BlockHash;

    fn value_id(&self, value: &Block) -> BlockHash {
        // A header that does not encode can never gather votes: give it an id no honest
        // header hashes to (the hash of nothing under a separate domain).
        value
            .header
            .hash()
            .unwrap_or(BlockHash(hash(Domain::Custom("unencodable-header"), b"")))
    }

    fn vote_sign_bytes(&self, vote: &Vote<Self>) -> Result<Vec<u8>, ConsensusError> {
        encode(&SignedPayload::Vote {
            chain_id: &self.chain_id,
            vote,
        })
    }

    fn proposal_sign_bytes(&self, p: &Proposal<Self>) -> Result<Vec<u8>, ConsensusError> {
        encode(&SignedPayload::Proposal {
            chain_id: &self.chain_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            chain_id: "carchain-test".into(),
            instance: InstanceId(0),
            height: 1,
            time_ms: 1,
            prev_hash: BlockHash([0; 32]),
            txs_root: txs_root(&[]),
            state_root: [1; 32],
            validators_hash: [2; 32],
            next_validators_hash: [2; 32],
            proposer: ValidatorAddress([3; 20]),
        }
    }

    #[test]
    fn every_header_field_changes_the_hash() {
        let base = header().hash().unwrap();
        let mut h = header();
        h.state_root[0] ^= 1;
        assert_ne!(h.hash().unwrap(), base);
        let mut h = header();
        h.chain_id.push('x');
        assert_ne!(h.hash().unwrap(), base);
        let mut h = header();
        h.next_validators_hash[31] ^= 1;
        assert_ne!(h.hash().unwrap(), base);
    }

    #[test]
    fn txs_root_binds_order_and_content() {
        let a = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let b = vec![b"b".to_vec(), b"a".to_vec(), b"c".to_vec()];
        assert_ne!(txs_root(&a), txs_root(&b));
        assert_ne!(txs_root(&a), txs_root(&a[..2]));
        assert_ne!(txs_root(&[]), txs_root(&[Vec::new()]));
        let block = Block {
            header: Header {
                txs_root: txs_root(&a),
                ..header()
            },
            txs: a,
        };
        assert!(block.body_matches());
        let mut forged = block.clone();
        forged.txs[2] = b"d".to_vec();
        assert!(!forged.body_matches());
    }

    #[test]
    fn signatures_are_bound_to_the_chain_id() {
        let vote = Vote::<ChainContext> {
            instance: InstanceId(0),
            height: 5,
            round: Round(0),
            vote_type: crate::consensus::VoteType::Precommit,
            value: Some(BlockHash([9; 32])),
            validator: ValidatorAddress([1; 20]),
        };
        let a = ChainContext::new("carchain-a")
            .vote_sign_bytes(&vote)
            .unwrap();
        let b = ChainContext::new("carchain-b")
            .vote_sign_bytes(&vote)
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn an_overlong_chain_id_does_not_hash() {
        let mut h = header();
        h.chain_id = "x".repeat(MAX_CHAIN_ID_LEN + 1);
        assert!(h.hash().is_err());
    }
}
