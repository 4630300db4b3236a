//! Genesis parameters: the cap, the three pools, the fee schedule and each phase's settings.

use serde::{Deserialize, Serialize};

use crate::{Amount, Error};

/// Basis points in one whole (100%).
pub const BPS_DENOM: u16 = 10_000;

/// Everything the issuance rules need, fixed at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisParams {
    /// Total supply that the three pools together may ever issue (≤ [`Amount::MAX_SUPPLY`]).
    pub cap: Amount,
    /// How the cap is split between the three pools.
    pub pools: PoolShares,
    /// Prices of data operations.
    pub fees: FeeSchedule,
    /// Automatic issuance (phase 1).
    pub phase1: Phase1Params,
    /// Bulk prefetch to agent nodes (phase 2).
    pub phase2: Phase2Params,
    /// Sales to service providers (phase 3).
    pub phase3: Phase3Params,
}

/// Shares of the cap, in basis points; they must add up to 10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolShares {
    /// Phase 1: minted as data is produced (the brief's 50%).
    pub automatic_bps: u16,
    /// Phase 2: batch allocations to agent nodes (the brief's 30%).
    pub prefetch_bps: u16,
    /// Phase 3: sold to service providers (the brief's 20%).
    pub circulation_bps: u16,
}

impl Default for PoolShares {
    fn default() -> Self {
        PoolShares {
            automatic_bps: 5_000,
            prefetch_bps: 3_000,
            circulation_bps: 2_000,
        }
    }
}

/// A price per quantity with sub-base-unit precision: `per_giga` base units per 10⁹ units of
/// the quantity (bytes, addresses, metres, byte·epochs, compute units).
///
/// Charges round *up*, so any non-zero use of a priced resource costs at least one base unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate {
    /// Base units charged per 10⁹ units of quantity.
    pub per_giga: u64,
}

impl Rate {
    /// Quantity units in the rate's denominator.
    pub const GIGA: u64 = 1_000_000_000;

    /// A rate of `units` base units per single unit of quantity.
    pub const fn per_unit(units: u64) -> Option<Rate> {
        match units.checked_mul(Self::GIGA) {
            Some(per_giga) => Some(Rate { per_giga }),
            None => None,
        }
    }

    /// The charge for `qty` units, rounded up; an error if it exceeds the cap.
    #[inline(always)]
    pub fn charge(self, qty: u64) -> Result<Amount, Error> {
        if let Some(n) = self.per_giga.checked_mul(qty) {
            return Amount::from_base_units(n.div_ceil(Self::GIGA)).ok_or(Error::AboveCap);
        }
        let num = u128::from(self.per_giga)
            .checked_mul(u128::from(qty))
            .ok_or(Error::Overflow)?;
        let den = u128::from(Self::GIGA);
        let q = num.div_ceil(den);
        u64::try_from(q)
            .ok()
            .and_then(Amount::from_base_units)
            .ok_or(Error::AboveCap)
    }

    /// True when `charge` is additive (no rounding): the rate is a whole number of base units.
    pub fn is_exact(self) -> bool {
        self.per_giga % Self::GIGA == 0
    }
}

/// Where a storage node keeps data; shared-mode nodes store anyone's data and waive the fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageMode {
    /// Only its own users' data; storage is billed.
    Private,
    /// Anyone's data, rewarded through phase 2 instead; storage is free to the producer.
    Shared,
}

/// The fee schedule for data operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    /// Put, per byte of (encrypted) value.
    pub put_per_byte: Rate,
    /// Put, per metre driven, used instead of bytes when phase 1 is by mileage.
    pub put_per_metre: Rate,
    /// Read, per address traversed.
    pub read_per_address: Rate,
    /// Storage, per byte kept for one epoch.
    pub storage_per_byte_epoch: Rate,
    /// Compute, per metered unit.
    pub compute_per_unit: Rate,
}

impl FeeSchedule {
    /// Fee for putting `bytes` bytes.
    #[inline(always)]
    pub fn put_by_volume(&self, bytes: u64) -> Result<Amount, Error> {
        self.put_per_byte.charge(bytes)
    }

    /// Fee for putting the record of a trip of `metres` metres.
    #[inline(always)]
    pub fn put_by_mileage(&self, metres: u64) -> Result<Amount, Error> {
        self.put_per_metre.charge(metres)
    }

    /// Fee for a read that traverses `addresses` partition addresses.
    #[inline]
    pub fn read(&self, addresses: u64) -> Result<Amount, Error> {
        self.read_per_address.charge(addresses)
    }

    /// Fee for keeping `bytes` for `epochs` epochs; zero in shared mode (the waiver).
    #[inline(always)]
    pub fn storage(&self, bytes: u64, epochs: u64, mode: StorageMode) -> Result<Amount, Error> {
        match mode {
            StorageMode::Shared => Ok(Amount::ZERO),
            StorageMode::Private => {
                let qty = bytes.checked_mul(epochs).ok_or(Error::Overflow)?;
                self.storage_per_byte_epoch.charge(qty)
            }
        }
    }

    /// Fee for `units` metered compute units.
    #[inline]
    pub fn compute(&self, units: u64) -> Result<Amount, Error> {
        self.compute_per_unit.charge(units)
    }
}

/// What a put is billed by in phase 1 (and so what the reserve mints back to the producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MintBasis {
    /// By bytes put ([`FeeSchedule::put_per_byte`]).
    Volume,
    /// By metres driven ([`FeeSchedule::put_per_metre`]).
    Mileage,
}

/// Phase-1 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase1Params {
    /// Basis of put fees and of the mirrored mint.
    pub basis: MintBasis,
    /// Fee credits granted to each newly registered device (reserved from the automatic pool).
    pub initial_credits: Amount,
}

/// Phase-2 settings: a per-epoch batch split by contributed storage and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase2Params {
    /// Allocation of the first epoch.
    pub per_epoch: Amount,
    /// The per-epoch allocation halves every this many epochs (0: never).
    pub halving_epochs: u64,
    /// Part of each allocation that rewards audited storage; the rest rewards compute.
    pub storage_weight_bps: u16,
}

impl Phase2Params {
    /// Scheduled allocation of `epoch` (before clamping to what the pool has left).
    pub fn scheduled(&self, epoch: u64) -> Amount {
        let halvings = epoch.checked_div(self.halving_epochs).unwrap_or_default();
        match u32::try_from(halvings) {
            Ok(h) if h < 64 => {
                Amount::from_base_units(self.per_epoch.to_base_units() >> h).unwrap_or(Amount::ZERO)
            }
            _ => Amount::ZERO,
        }
    }
}

/// How phase-3 tokens are priced, in integer quote units (the shipped scenarios use micro-euros).
///
/// In config files the variant is a `kind` field (`{ kind = "linear", start = …, … }`); in the
/// canonical binary codec (chain state) it is the variant index, because the codec is not
/// self-describing and an internally tagged enum needs to look ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", remote = "Self")]
pub enum PriceSchedule {
    /// A constant price per whole token.
    Fixed {
        /// Quote units per whole token.
        quote_per_token: u64,
    },
    /// A linear bonding curve: the price per whole token starts at `start` and rises by
    /// `slope_per_million` for every million whole tokens sold.
    Linear {
        /// Quote units per whole token before any sale.
        start: u64,
        /// Price increase in quote units per million whole tokens sold.
        slope_per_million: u64,
    },
}

/// The config-file spelling of [`PriceSchedule`], tagged by `kind`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TaggedPriceSchedule {
    Fixed { quote_per_token: u64 },
    Linear { start: u64, slope_per_million: u64 },
}

impl From<PriceSchedule> for TaggedPriceSchedule {
    fn from(p: PriceSchedule) -> Self {
        match p {
            PriceSchedule::Fixed { quote_per_token } => {
                TaggedPriceSchedule::Fixed { quote_per_token }
            }
            PriceSchedule::Linear {
                start,
                slope_per_million,
            } => TaggedPriceSchedule::Linear {
                start,
                slope_per_million,
            },
        }
    }
}

impl From<TaggedPriceSchedule> for PriceSchedule {
    fn from(p: TaggedPriceSchedule) -> Self {
        match p {
            TaggedPriceSchedule::Fixed { quote_per_token } => {
                PriceSchedule::Fixed { quote_per_token }
            }
            TaggedPriceSchedule::Linear {
                start,
                slope_per_million,
            } => PriceSchedule::Linear {
                start,
                slope_per_million,
            },
        }
    }
}

impl Serialize for PriceSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            TaggedPriceSchedule::from(*self).serialize(s)
        } else {
            PriceSchedule::serialize(self, s)
        }
    }
}

impl<'de> Deserialize<'de> for PriceSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            TaggedPriceSchedule::deserialize(d).map(PriceSchedule::from)
        } else {
            PriceSchedule::deserialize(d)
        }
    }
}

/// Phase-3 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase3Params {
    /// Price schedule of the sale.
    pub price: PriceSchedule,
    /// First epoch at which sales are accepted.
    pub sale_start_epoch: u64,
}

impl GenesisParams {
    /// Checks the parameters are consistent: shares add to 100%, the cap fits, the price curve
    /// can sell the whole pool without overflow.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cap > Amount::MAX_SUPPLY || self.cap.is_zero() {
            return Err(Error::InvalidParams("cap must be in 1..=MAX_SUPPLY"));
        }
        let p = self.pools;
        let total = u32::from(p.automatic_bps)
            .saturating_add(u32::from(p.prefetch_bps))
            .saturating_add(u32::from(p.circulation_bps));
        if total != u32::from(BPS_DENOM) {
            return Err(Error::InvalidParams("pool shares must add up to 10000 bps"));
        }
        if self.phase2.storage_weight_bps > BPS_DENOM {
            return Err(Error::InvalidParams("storage_weight_bps above 10000"));
        }
        let (auto, _, circ) = self.pool_caps()?;
        if self.phase1.initial_credits > auto {
            return Err(Error::InvalidParams(
                "initial credits exceed the automatic pool",
            ));
        }
        crate::issuance::sale_cost(&self.phase3.price, Amount::ZERO, circ)
            .map_err(|_| Error::InvalidParams("price schedule overflows over the pool"))?;
        Ok(())
    }

    /// Caps of the automatic, prefetch and circulation pools; rounding dust goes to the
    /// automatic pool so the three add up to the cap exactly.
    pub fn pool_caps(&self) -> Result<(Amount, Amount, Amount), Error> {
        let pre = self
            .cap
            .mul_bps(self.pools.prefetch_bps)
            .ok_or(Error::Overflow)?;
        let circ = self
            .cap
            .mul_bps(self.pools.circulation_bps)
            .ok_or(Error::Overflow)?;
        let auto = self
            .cap
            .checked_sub(pre)
            .and_then(|r| r.checked_sub(circ))
            .ok_or(Error::Overflow)?;
        Ok((auto, pre, circ))
    }

    /// The brief's defaults: the whole cap, 50/30/20, volume basis, modest fees.
    pub fn example() -> GenesisParams {
        GenesisParams {
            cap: Amount::MAX_SUPPLY,
            pools: PoolShares::default(),
            fees: FeeSchedule {
                put_per_byte: Rate {
                    per_giga: 10_000_000_000,
                },
                put_per_metre: Rate {
                    per_giga: 500_000_000_000,
                },
                read_per_address: Rate {
                    per_giga: 1_000_000_000_000,
                },
                storage_per_byte_epoch: Rate {
                    per_giga: 10_000_000,
                },
                compute_per_unit: Rate {
                    per_giga: 100_000_000_000,
                },
            },
            phase1: Phase1Params {
                basis: MintBasis::Volume,
                initial_credits: Amount::ONE_TOKEN.checked_mul(10).unwrap_or(Amount::ZERO),
            },
            phase2: Phase2Params {
                per_epoch: Amount::from_tokens(200_000).unwrap_or(Amount::ZERO),
                halving_epochs: 365,
                storage_weight_bps: 7_000,
            },
            phase3: Phase3Params {
                price: PriceSchedule::Linear {
                    start: 50_000,
                    slope_per_million: 500,
                },
                sale_start_epoch: 0,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_up_and_report_exactness() {
        let r = Rate { per_giga: 1 };
        assert_eq!(r.charge(0).unwrap(), Amount::ZERO);
        assert_eq!(r.charge(1).unwrap().to_base_units(), 1);
        assert_eq!(r.charge(2_000_000_000).unwrap().to_base_units(), 2);
        assert!(!r.is_exact());
        let e = Rate::per_unit(3).unwrap();
        assert!(e.is_exact());
        assert_eq!(e.charge(7).unwrap().to_base_units(), 21);
        assert!(Rate { per_giga: u64::MAX }.charge(u64::MAX).is_err());
    }

    #[test]
    fn shared_mode_waives_storage_only() {
        let f = GenesisParams::example().fees;
        assert_eq!(
            f.storage(1 << 20, 30, StorageMode::Shared).unwrap(),
            Amount::ZERO
        );
        assert!(!f
            .storage(1 << 20, 30, StorageMode::Private)
            .unwrap()
            .is_zero());
        assert!(!f.put_by_volume(1 << 20).unwrap().is_zero());
        assert!(!f.read(1000).unwrap().is_zero());
    }

    #[test]
    fn pool_caps_add_up_to_cap() {
        let mut p = GenesisParams::example();
        p.cap = Amount::from_base_units(1_000_003).unwrap();
        let (a, b, c) = p.pool_caps().unwrap();
        assert_eq!(Amount::checked_sum([a, b, c]).unwrap(), p.cap);
        assert_eq!(b.to_base_units(), 300_000);
        assert_eq!(c.to_base_units(), 200_000);
    }

    #[test]
    fn validation_rejects_bad_shares_and_curves() {
        assert!(GenesisParams::example().validate().is_ok());
        let mut p = GenesisParams::example();
        p.pools.circulation_bps = 2_001;
        assert!(p.validate().is_err());
        let mut p = GenesisParams::example();
        p.phase3.price = PriceSchedule::Linear {
            start: u64::MAX,
            slope_per_million: u64::MAX,
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn phase2_schedule_halves() {
        let p = GenesisParams::example().phase2;
        assert_eq!(p.scheduled(0), p.per_epoch);
        assert_eq!(p.scheduled(364), p.per_epoch);
        assert_eq!(
            p.scheduled(365).to_base_units(),
            p.per_epoch.to_base_units() / 2
        );
        assert_eq!(p.scheduled(365 * 70), Amount::ZERO);
    }
}
