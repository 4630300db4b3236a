//! Validator sets with voting power, quorum arithmetic and the weighted round-robin proposer.

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::error::ConsensusError;
use super::types::Round;

/// Upper bound on a set's total voting power, so that priority arithmetic (which works within
/// a window of a few times the total) can never overflow.
pub const MAX_TOTAL_VOTING_POWER: u64 = (i64::MAX as u64) / 8;

/// One member of a validator set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Validator<C: Context> {
    /// The validator's address.
    pub address: C::Address,
    /// Its verification key.
    pub public_key: C::PublicKey,
    /// Its stake-weighted voting power (positive).
    pub voting_power: u64,
}

/// `weight` is more than two thirds of `total` (exact integer arithmetic).
pub fn is_quorum(weight: u64, total: u64) -> bool {
    u128::from(weight).saturating_mul(3) > u128::from(total).saturating_mul(2)
}

/// `weight` is more than one third of `total`: at least one correct validator is among them.
pub fn is_one_third_plus(weight: u64, total: u64) -> bool {
    u128::from(weight).saturating_mul(3) > u128::from(total)
}

/// A validator set, sorted by address, with the proposer priorities of Tendermint's weighted
/// round-robin: over any window, each validator proposes in proportion to its power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "", try_from = "RawValidatorSet<C>")]
pub struct ValidatorSet<C: Context> {
    validators: Vec<Validator<C>>,
    priorities: Vec<i64>,
    total: u64,
}

/// The serialized form, re-validated on the way in.
#[derive(Deserialize)]
#[serde(bound = "")]
struct RawValidatorSet<C: Context> {
    validators: Vec<Validator<C>>,
    priorities: Vec<i64>,
    /// Recomputed by [`ValidatorSet::new`]; a stored total is never trusted.
    #[allow(dead_code)]
    total: u64,
}

impl<C: Context> TryFrom<RawValidatorSet<C>> for ValidatorSet<C> {
    type Error = ConsensusError;

    fn try_from(raw: RawValidatorSet<C>) -> Result<Self, ConsensusError> {
        let mut set = ValidatorSet::new(raw.validators)?;
        // Priorities belong to the sorted order `new` produced; keep them only if they fit.
        if raw.priorities.len() == set.validators.len() {
            set.priorities = raw.priorities;
        }
        Ok(set)
    }
}

impl<C: Context> ValidatorSet<C> {
    /// Builds a set; every validator starts with priority zero.
    ///
    /// # Errors
    /// Empty set, duplicate address, zero power, or total power above [`MAX_TOTAL_VOTING_POWER`].
    pub fn new(mut validators: Vec<Validator<C>>) -> Result<Self, ConsensusError> {
        if validators.is_empty() {
            return Err(ConsensusError::EmptyValidatorSet);
        }
        validators.sort_by(|a, b| a.address.cmp(&b.address));
        let mut total: u64 = 0;
        let mut previous: Option<&C::Address> = None;
        for v in &validators {
            if v.voting_power == 0 {
                return Err(ConsensusError::ZeroVotingPower);
            }
            if previous == Some(&v.address) {
                return Err(ConsensusError::DuplicateValidator);
            }
            previous = Some(&v.address);
            total = total
                .checked_add(v.voting_power)
                .filter(|t| *t <= MAX_TOTAL_VOTING_POWER)
                .ok_or(ConsensusError::VotingPowerOverflow)?;
        }
        let priorities = vec![0; validators.len()];
        Ok(ValidatorSet {
            validators,
            priorities,
            total,
        })
    }

    /// Sum of all voting power.
    pub fn total_power(&self) -> u64 {
        self.total
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set is never empty.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The validators, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = &Validator<C>> {
        self.validators.iter()
    }

    /// The member with `address`, if any.
    pub fn get(&self, address: &C::Address) -> Option<&Validator<C>> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .and_then(|i| self.validators.get(i))
    }

    /// Voting power of `address` (zero for non-members).
    pub fn power_of(&self, address: &C::Address) -> u64 {
        self.get(address).map_or(0, |v| v.voting_power)
    }

    /// The proposer of `round` at the height this set (with its current priorities) is used for:
    /// the priorities are advanced `round + 1` times and the last winner proposes. (`None` only
    /// for an empty set, which construction and deserialization both refuse.)
    pub fn proposer(&self, round: Round) -> Option<&C::Address> {
        let mut priorities = self.priorities.clone();
        let mut winner = self.step(&mut priorities);
        for _ in 0..round.0 {
            winner = self.step(&mut priorities);
        }
        self.validators.get(winner).map(|v| &v.address)
    }

    /// Advances the priorities by one step: the set to use for the next height.
    pub fn advance(&mut self) {
        let mut priorities = core::mem::take(&mut self.priorities);
        self.step(&mut priorities);
        self.priorities = priorities;
    }

    /// One round of the proposer-priority algorithm; returns the index of the winner.
    fn step(&self, priorities: &mut [i64]) -> usize {
        let total = i128::from(self.total);
        let window = total.saturating_mul(2);
        let (min, max) = priorities
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
        let spread = i128::from(max).saturating_sub(i128::from(min));
        if spread > window && window > 0 {
            // Rescale so the spread stays within twice the total power.
            let ratio = spread
                .saturating_add(window)
                .saturating_sub(1)
                .checked_div(window)
                .unwrap_or(1);
            for p in priorities.iter_mut() {
                *p = clamp(i128::from(*p).checked_div(ratio).unwrap_or(0));
            }
        }
        // Centre around zero so priorities do not drift.
        let sum: i128 = priorities
            .iter()
            .fold(0i128, |acc, p| acc.saturating_add(i128::from(*p)));
        let n = i128::try_from(priorities.len()).unwrap_or(1).max(1);
        let avg = sum.checked_div(n).unwrap_or(0);
        let mut best: Option<(usize, i128)> = None;
        for (i, (p, v)) in priorities.iter_mut().zip(&self.validators).enumerate() {
            let next = i128::from(*p)
                .saturating_sub(avg)
                .saturating_add(i128::from(v.voting_power));
            *p = clamp(next);
            // Ties go to the lower address (the earlier index).
            if best.is_none_or(|(_, b)| i128::from(*p) > b) {
                best = Some((i, i128::from(*p)));
            }
        }
        let winner = best.map_or(0, |(i, _)| i);
        if let Some(p) = priorities.get_mut(winner) {
            *p = clamp(i128::from(*p).saturating_sub(total));
        }
        winner
    }
}

fn clamp(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::consensus::secp::ValidatorAddress;
    use crate::sim::context::SimContext;
    use proptest::prelude::*;
    use secp256k1::{PublicKey, SecretKey, SECP256K1};

    fn set(powers: &[u64]) -> ValidatorSet<SimContext> {
        let vals = powers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut b = [0u8; 32];
                b[31] = u8::try_from(i + 1).unwrap();
                let pk = PublicKey::from_secret_key(SECP256K1, &SecretKey::from_slice(&b).unwrap());
                Validator {
                    address: ValidatorAddress([u8::try_from(i).unwrap(); 20]),
                    public_key: pk,
                    voting_power: *p,
                }
            })
            .collect();
        ValidatorSet::new(vals).unwrap()
    }

    #[test]
    fn quorum_thresholds_are_strict() {
        assert!(!is_quorum(2, 3));
        assert!(is_quorum(3, 3));
        assert!(!is_quorum(6, 9));
        assert!(is_quorum(7, 9));
        assert!(!is_one_third_plus(3, 9));
        assert!(is_one_third_plus(4, 9));
        assert!(is_quorum(u64::MAX, u64::MAX));
        assert!(!is_quorum(u64::MAX / 3 * 2, u64::MAX));
    }

    #[test]
    fn rejects_bad_sets() {
        assert_eq!(
            ValidatorSet::<SimContext>::new(Vec::new()).unwrap_err(),
            ConsensusError::EmptyValidatorSet
        );
        let s = set(&[1, 2]);
        let mut v: Vec<_> = s.iter().cloned().collect();
        v[1].address = v[0].address;
        assert_eq!(
            ValidatorSet::new(v).unwrap_err(),
            ConsensusError::DuplicateValidator
        );
        let mut v: Vec<_> = s.iter().cloned().collect();
        v[0].voting_power = 0;
        assert_eq!(
            ValidatorSet::new(v).unwrap_err(),
            ConsensusError::ZeroVotingPower
        );
        let mut v: Vec<_> = s.iter().cloned().collect();
        v[0].voting_power = MAX_TOTAL_VOTING_POWER;
        assert_eq!(
            ValidatorSet::new(v).unwrap_err(),
            ConsensusError::VotingPowerOverflow
        );
    }

    #[test]
    fn proposer_frequency_matches_stake_over_a_window() {
        let mut s = set(&[1, 2, 3, 4]);
        let mut counts = [0u32; 4];
        for _ in 0..100 {
            let p = *s.proposer(Round(0)).unwrap();
            counts[usize::from(p.0[0])] += 1;
            s.advance();
        }
        assert_eq!(counts, [10, 20, 30, 40]);
    }

    #[test]
    fn proposer_of_round_r_is_r_steps_ahead() {
        let s = set(&[3, 1, 4, 1, 5]);
        let mut t = s.clone();
        for r in 0..20u32 {
            assert_eq!(s.proposer(Round(r)), t.proposer(Round(0)), "round {r}");
            assert!(s.proposer(Round(r)).is_some());
            t.advance();
        }
    }

    #[test]
    fn deserialization_revalidates() {
        let mut s = set(&[5, 6, 7]);
        s.advance();
        let bytes = primitives::codec::to_vec(&s).unwrap();
        let back: ValidatorSet<SimContext> = primitives::codec::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        let v: Vec<Validator<SimContext>> = s.iter().cloned().collect();
        let empty = primitives::codec::to_vec(&(
            Vec::<Validator<SimContext>>::new(),
            Vec::<i64>::new(),
            0u64,
        ))
        .unwrap();
        assert!(primitives::codec::from_slice::<ValidatorSet<SimContext>>(&empty).is_err());
        let dup =
            primitives::codec::to_vec(&(vec![v[0].clone(), v[0].clone()], vec![0i64, 0], 10u64))
                .unwrap();
        assert!(primitives::codec::from_slice::<ValidatorSet<SimContext>>(&dup).is_err());
        let lying_total = primitives::codec::to_vec(&(v.clone(), vec![0i64; 3], 1u64)).unwrap();
        let fixed: ValidatorSet<SimContext> = primitives::codec::from_slice(&lying_total).unwrap();
        assert_eq!(fixed.total_power(), 18);
    }

    proptest! {
        #[test]
        fn quorum_matches_rational_definition(w in any::<u64>(), t in any::<u64>()) {
            prop_assert_eq!(is_quorum(w, t), u128::from(w) * 3 > u128::from(t) * 2);
            prop_assert_eq!(is_one_third_plus(w, t), u128::from(w) * 3 > u128::from(t));
        }

        #[test]
        fn proposer_is_deterministic_and_fair(powers in prop::collection::vec(1u64..1000, 1..8)) {
            let a = set(&powers);
            let mut rev: Vec<_> = a.iter().cloned().collect();
            rev.reverse();
            let mut b = ValidatorSet::new(rev).unwrap();
            let mut a = a;
            let total: u64 = powers.iter().sum();
            let mut counts = vec![0u64; powers.len()];
            for _ in 0..total {
                let p = *a.proposer(Round(0)).unwrap();
                prop_assert_eq!(Some(&p), b.proposer(Round(0)));
                counts[usize::from(p.0[0])] += 1;
                a.advance();
                b.advance();
            }
            // Over one full window every validator proposes within one of its power.
            for (c, p) in counts.iter().zip(&powers) {
                prop_assert!(c.abs_diff(*p) <= 1, "counts {:?} powers {:?}", counts, powers);
            }
        }

        #[test]
        fn priorities_stay_bounded(powers in prop::collection::vec(1u64..(MAX_TOTAL_VOTING_POWER / 16), 1..6), steps in 1usize..200) {
            let mut s = set(&powers);
            for _ in 0..steps { s.advance(); }
            let bound = i128::from(s.total_power()) * 3;
            for p in &s.priorities {
                prop_assert!(i128::from(*p).abs() <= bound);
            }
        }
    }
}
