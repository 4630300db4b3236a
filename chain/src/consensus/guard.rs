//! The signing guard: the durable "last signed" state that keeps a validator from signing twice
//! at one height, round and step, even across a crash and restart.

use serde::{Deserialize, Serialize};

use super::error::ConsensusError;
use super::types::Round;

/// The step a signature is for, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignStep {
    /// A proposal.
    Propose,
    /// A prevote.
    Prevote,
    /// A precommit.
    Precommit,
}

/// The last thing signed. The host must persist this (the signing WAL) *before* the signed
/// message leaves the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSigned<H> {
    /// Height signed at.
    pub height: H,
    /// Round signed at.
    pub round: Round,
    /// Step signed at.
    pub step: SignStep,
    /// The exact bytes signed.
    pub sign_bytes: Vec<u8>,
}

/// Refuses any signature that is not strictly after the last one, except a repeat of exactly
/// the same bytes at a position already signed in the current height (which a deterministic
/// signature scheme reproduces identically, so a restarted node can replay its height).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningGuard<H> {
    last: Option<LastSigned<H>>,
    height_log: Vec<LastSigned<H>>,
}

impl<H: Ord + Copy> Default for SigningGuard<H> {
    fn default() -> Self {
        SigningGuard {
            last: None,
            height_log: Vec::new(),
        }
    }
}

impl<H: Ord + Copy> SigningGuard<H> {
    /// A guard that has signed nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last signed position, if any.
    pub fn last(&self) -> Option<&LastSigned<H>> {
        self.last.as_ref()
    }

    /// Checks that signing `sign_bytes` at (`height`, `round`, `step`) is safe and records it.
    ///
    /// # Errors
    /// [`ConsensusError::DoubleSign`] for a step back (unless it repeats bytes already signed
    /// at exactly that position) or different bytes at the same position.
    pub fn authorize(
        &mut self,
        height: H,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<(), ConsensusError> {
        if let Some(last) = &self.last {
            let at = (height, round, step);
            let prev = (last.height, last.round, last.step);
            if at <= prev {
                let repeat = self.height_log.iter().any(|s| {
                    (s.height, s.round, s.step) == at && s.sign_bytes.as_slice() == sign_bytes
                });
                return if repeat {
                    Ok(())
                } else {
                    Err(ConsensusError::DoubleSign)
                };
            }
            if height > last.height {
                self.height_log.clear();
            }
        }
        let signed = LastSigned {
            height,
            round,
            step,
            sign_bytes: sign_bytes.to_vec(),
        };
        self.height_log.push(signed.clone());
        self.last = Some(signed);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn step(k: u8) -> SignStep {
        match k % 3 {
            0 => SignStep::Propose,
            1 => SignStep::Prevote,
            _ => SignStep::Precommit,
        }
    }

    proptest! {
        #[test]
        fn never_two_different_signatures_at_one_position(
            reqs in prop::collection::vec((0u64..3, 0u32..3, 0u8..3, 0u8..3), 1..60)
        ) {
            let mut g = SigningGuard::<u64>::new();
            let mut signed: BTreeMap<(u64, u32, SignStep), u8> = BTreeMap::new();
            for (h, r, k, b) in reqs {
                if g.authorize(h, Round(r), step(k), &[b]).is_ok() {
                    let prev = signed.insert((h, r, step(k)), b);
                    prop_assert!(prev.is_none_or(|p| p == b));
                }
            }
        }
    }

    #[test]
    fn refuses_different_bytes_at_same_position() {
        let mut g = SigningGuard::<u64>::new();
        g.authorize(5, Round(1), SignStep::Prevote, b"a").unwrap();
        assert_eq!(
            g.authorize(5, Round(1), SignStep::Prevote, b"b"),
            Err(ConsensusError::DoubleSign)
        );
        g.authorize(5, Round(1), SignStep::Prevote, b"a").unwrap();
    }

    #[test]
    fn refuses_steps_back_but_allows_exact_replays_within_height() {
        let mut g = SigningGuard::<u64>::new();
        g.authorize(5, Round(0), SignStep::Prevote, b"p0").unwrap();
        g.authorize(5, Round(0), SignStep::Precommit, b"c0")
            .unwrap();
        g.authorize(5, Round(1), SignStep::Prevote, b"p1").unwrap();
        // Replaying the height after a restart reproduces the same bytes: allowed.
        g.authorize(5, Round(0), SignStep::Prevote, b"p0").unwrap();
        // A different prevote at round 0 is a double sign.
        assert!(g.authorize(5, Round(0), SignStep::Prevote, b"x").is_err());
        // A position never signed before but behind the last one is refused.
        assert!(g.authorize(5, Round(0), SignStep::Propose, b"q").is_err());
        g.authorize(6, Round(0), SignStep::Prevote, b"h6").unwrap();
        // The previous height is closed entirely.
        assert!(g.authorize(5, Round(1), SignStep::Prevote, b"p1").is_err());
        assert_eq!(g.last().unwrap().height, 6);
    }
}
