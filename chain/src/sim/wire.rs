//! The simulation's wire format: a strict, canonical, length-checked binary encoding of
//! consensus messages. Decoding never panics and rejects anything malformed or trailing.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use secp256k1::ecdsa::Signature;

use super::context::{SimContext, SimValue, ValueId};
use crate::consensus::secp::ValidatorAddress;
use crate::consensus::{
    CommitCertificate, CommitSignature, InstanceId, Proposal, Round, SignedProposal, SignedVote,
    Vote, VoteType,
};

/// Format version carried in the first byte.
pub const WIRE_VERSION: u8 = 1;
/// Largest value (block) accepted on the wire.
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// Largest gossiped transaction accepted on the wire.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Most signatures a certificate may carry on the wire.
pub const MAX_CERT_SIGNATURES: usize = 1024;

/// A message between simulated validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A signed proposal.
    Proposal(SignedProposal<SimContext>),
    /// A signed vote.
    Vote(SignedVote<SimContext>),
    /// "I am at this height and round": peers further ahead answer with [`Message::Decided`],
    /// peers in a later round of the same height with their own messages of that round.
    Status {
        /// The sender's current height.
        height: u64,
        /// The sender's current round.
        round: u32,
        /// Whether the sender holds a proposal for that height and round.
        proposal: bool,
        /// Whether the sender has decided that height (and waits to start the next).
        decided: bool,
    },
    /// A decided value with its commit certificate (block sync).
    Decided {
        /// The value.
        value: SimValue,
        /// Its certificate.
        certificate: CommitCertificate<SimContext>,
    },
    /// A pending transaction, gossiped to every validator.
    Tx(Vec<u8>),
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ended early.
    #[error("truncated message")]
    Truncated,
    /// Bytes left after the message.
    #[error("trailing bytes after message")]
    Trailing,
    /// Unknown version byte.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// Unknown message or field tag.
    #[error("invalid tag {0}")]
    Tag(u8),
    /// A length above its limit.
    #[error("length {0} over limit")]
    TooLong(usize),
    /// Not a valid compact ECDSA signature.
    #[error("invalid signature encoding")]
    Signature,
}

/// Encodes a message.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    match msg {
        Message::Proposal(sp) => {
            out.push(1);
            let p = &sp.proposal;
            out.extend_from_slice(&p.instance.0.to_be_bytes());
            out.extend_from_slice(&p.height.to_be_bytes());
            out.extend_from_slice(&p.round.0.to_be_bytes());
            match p.pol_round {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&r.0.to_be_bytes());
                }
            }
            out.extend_from_slice(&p.proposer.0);
            put_bytes(&mut out, &p.value.0);
            out.extend_from_slice(&sp.signature.serialize_compact());
        }
        Message::Vote(sv) => {
            out.push(2);
            SimContext::vote_fields(&sv.vote, &mut out);
            out.extend_from_slice(&sv.signature.serialize_compact());
        }
        Message::Status {
            height,
            round,
            proposal,
            decided,
        } => {
            out.push(3);
            out.extend_from_slice(&height.to_be_bytes());
            out.extend_from_slice(&round.to_be_bytes());
            out.push(u8::from(*proposal) | (u8::from(*decided) << 1));
        }
        Message::Tx(bytes) => {
            out.push(5);
            put_bytes(&mut out, bytes);
        }
        Message::Decided { value, certificate } => {
            out.push(4);
            put_bytes(&mut out, &value.0);
            out.extend_from_slice(&certificate.instance.0.to_be_bytes());
            out.extend_from_slice(&certificate.height.to_be_bytes());
            out.extend_from_slice(&certificate.round.0.to_be_bytes());
            out.extend_from_slice(&certificate.value_id.0);
            let n = u32::try_from(certificate.signatures.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            for s in &certificate.signatures {
                out.extend_from_slice(&s.validator.0);
                out.extend_from_slice(&s.signature.serialize_compact());
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(DecodeError::Tag(t)),
        }
    }

    fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| DecodeError::TooLong(usize::MAX))?;
        if n > max {
            return Err(DecodeError::TooLong(n));
        }
        Ok(n)
    }

    fn address(&mut self) -> Result<ValidatorAddress, DecodeError> {
        Ok(ValidatorAddress(self.array()?))
    }

    fn signature(&mut self) -> Result<Signature, DecodeError> {
        let bytes: [u8; 64] = self.array()?;
        Signature::from_compact(&bytes).map_err(|_| DecodeError::Signature)
    }

    fn value(&mut self) -> Result<SimValue, DecodeError> {
        let n = self.len(MAX_VALUE_BYTES)?;
        Ok(SimValue(self.take(n)?.to_vec()))
    }
}

/// Decodes one message, requiring the input to be exactly one canonical encoding.
///
/// # Errors
/// [`DecodeError`] for truncated, oversized, unknown-tag, bad-signature or trailing input.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { buf: bytes };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(DecodeError::Version(version));
    }
    let msg = match r.u8()? {
        1 => {
            let instance = InstanceId(r.u64()?);
            let height = r.u64()?;
            let round = Round(r.u32()?);
            let pol_round = if r.flag()? {
                Some(Round(r.u32()?))
            } else {
                None
            };
            let proposer = r.address()?;
            let value = r.value()?;
            let signature = r.signature()?;
            Message::Proposal(SignedProposal {
                proposal: Proposal {
                    instance,
                    height,
                    round,
                    value,
                    pol_round,
                    proposer,
                },
                signature,
            })
        }
        2 => {
            let instance = InstanceId(r.u64()?);
            let height = r.u64()?;
            let round = Round(r.u32()?);
            let vote_type = match r.u8()? {
                0 => VoteType::Prevote,
                1 => VoteType::Precommit,
                t => return Err(DecodeError::Tag(t)),
            };
            let value = if r.flag()? {
                Some(ValueId(r.array()?))
            } else {
                None
            };
            let validator = r.address()?;
            let signature = r.signature()?;
            Message::Vote(SignedVote {
                vote: Vote {
                    instance,
                    height,
                    round,
                    vote_type,
                    value,
                    validator,
                },
                signature,
            })
        }
        3 => {
            let height = r.u64()?;
            let round = r.u32()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(DecodeError::Tag(flags));
            }
            Message::Status {
                height,
                round,
                proposal: flags & 1 == 1,
                decided: flags & 2 == 2,
            }
        }
        5 => {
            let n = r.len(MAX_TX_BYTES)?;
            Message::Tx(r.take(n)?.to_vec())
        }
        4 => {
            let value = r.value()?;
            let instance = InstanceId(r.u64()?);
            let height = r.u64()?;
            let round = Round(r.u32()?);
            let value_id = ValueId(r.array()?);
            let n = r.len(MAX_CERT_SIGNATURES)?;
            let mut signatures = Vec::new();
            for _ in 0..n {
                let validator = r.address()?;
                let signature = r.signature()?;
                signatures.push(CommitSignature {
                    validator,
                    signature,
                });
            }
            Message::Decided {
                value,
                certificate: CommitCertificate {
                    instance,
                    height,
                    round,
                    value_id,
                    signatures,
                },
            }
        }
        t => return Err(DecodeError::Tag(t)),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(msg)
}
