//! The token amount: a capped count of base units with checked arithmetic.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A non-negative amount of the token in base units, never above [`Amount::MAX_SUPPLY`].
///
/// Every operation that could leave the range returns `None` (or an error) instead of wrapping,
/// so a fee or a mint can never create money out of an overflow.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "u64")]
pub struct Amount(u64);

/// Human or machine spelling accepted when reading an amount from a human-readable format
/// (TOML, JSON): base units or a decimal token string.
#[derive(Deserialize)]
#[serde(untagged)]
enum AmountRepr {
    Base(u64),
    Tokens(String),
}

impl TryFrom<AmountRepr> for Amount {
    type Error = Error;
    fn try_from(r: AmountRepr) -> Result<Self, Error> {
        match r {
            AmountRepr::Base(b) => Amount::from_base_units(b).ok_or(Error::AboveCap),
            AmountRepr::Tokens(s) => s.parse(),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Human-readable formats (config files, JSON APIs) accept base units or a decimal token
    /// string; binary formats (the canonical codec of chain state) carry base units only, so they
    /// need no self-describing input. Both refuse amounts above the cap.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            AmountRepr::deserialize(d)?
                .try_into()
                .map_err(serde::de::Error::custom)
        } else {
            let units = u64::deserialize(d)?;
            Amount::from_base_units(units).ok_or_else(|| serde::de::Error::custom(Error::AboveCap))
        }
    }
}

impl From<Amount> for u64 {
    fn from(a: Amount) -> u64 {
        a.0
    }
}

impl Amount {
    /// Number of decimal places of one whole token.
    pub const DECIMALS: u32 = 8;
    /// Base units in one whole token.
    pub const ONE_TOKEN_UNITS: u64 = 100_000_000;
    /// Whole tokens that can ever exist.
    pub const MAX_TOKENS: u64 = 1_000_000_000;
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// One whole token.
    pub const ONE_TOKEN: Amount = Amount(Self::ONE_TOKEN_UNITS);
    /// The hard supply cap: one billion tokens.
    pub const MAX_SUPPLY: Amount = Amount(Self::MAX_TOKENS * Self::ONE_TOKEN_UNITS);

    /// An amount of base units, or `None` above the supply cap.
    pub const fn from_base_units(units: u64) -> Option<Amount> {
        if units <= Self::MAX_SUPPLY.0 {
            Some(Amount(units))
        } else {
            None
        }
    }

    /// An amount of whole tokens, or `None` above the supply cap.
    pub const fn from_tokens(tokens: u64) -> Option<Amount> {
        if tokens <= Self::MAX_TOKENS {
            Some(Amount(tokens * Self::ONE_TOKEN_UNITS))
        } else {
            None
        }
    }

    /// The amount in base units.
    pub const fn to_base_units(self) -> u64 {
        self.0
    }

    /// True when zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Sum, or `None` above the cap.
    #[inline]
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).and_then(Amount::from_base_units)
    }

    /// Difference, or `None` below zero.
    #[inline]
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }

    /// Difference clamped at zero.
    #[inline]
    pub fn saturating_sub(self, rhs: Amount) -> Amount {
        Amount(self.0.saturating_sub(rhs.0))
    }

    /// Product with a count, or `None` above the cap.
    #[inline]
    pub fn checked_mul(self, rhs: u64) -> Option<Amount> {
        self.0.checked_mul(rhs).and_then(Amount::from_base_units)
    }

    /// Floor division by a count, or `None` when dividing by zero.
    pub fn checked_div(self, rhs: u64) -> Option<Amount> {
        self.0.checked_div(rhs).map(Amount)
    }

    /// `self * num / den` rounded down, computed without intermediate overflow; `None` when
    /// `den` is zero or the result is above the cap.
    pub fn mul_div_floor(self, num: u64, den: u64) -> Option<Amount> {
        let wide = u128::from(self.0).checked_mul(u128::from(num))?;
        let q = wide.checked_div(u128::from(den))?;
        u64::try_from(q).ok().and_then(Amount::from_base_units)
    }

    /// The share of `self` given in basis points (1/10 000), rounded down.
    pub fn mul_bps(self, bps: u16) -> Option<Amount> {
        self.mul_div_floor(u64::from(bps), 10_000)
    }

    /// Sum of many amounts, or `None` above the cap.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(iter: I) -> Option<Amount> {
        iter.into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }

    /// The smaller of two amounts.
    #[inline]
    pub fn min(self, other: Amount) -> Amount {
        if self <= other {
            self
        } else {
            other
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

/// Whole tokens, a dot and exactly [`Amount::DECIMALS`] digits, e.g. `12.50000000`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::ONE_TOKEN_UNITS;
        let frac = self.0 % Self::ONE_TOKEN_UNITS;
        write!(f, "{whole}.{frac:08}")
    }
}

/// Parses a decimal token count such as `12`, `0.5` or `1000.00000001`.
impl FromStr for Amount {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Parse(s.to_owned());
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > Self::DECIMALS as usize || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if s.contains('.') && frac.is_empty() {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let mut frac_units: u64 = 0;
        let mut digits: u32 = 0;
        for b in frac.bytes() {
            let d = u64::from(b.wrapping_sub(b'0'));
            frac_units = frac_units
                .checked_mul(10)
                .and_then(|v| v.checked_add(d))
                .ok_or_else(bad)?;
            digits = digits.saturating_add(1);
        }
        let scale = 10u64
            .checked_pow(Self::DECIMALS.saturating_sub(digits))
            .ok_or_else(bad)?;
        let units = whole
            .checked_mul(Self::ONE_TOKEN_UNITS)
            .and_then(|w| frac_units.checked_mul(scale).and_then(|f| w.checked_add(f)))
            .ok_or(Error::AboveCap)?;
        Amount::from_base_units(units).ok_or(Error::AboveCap)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_one_billion_tokens() {
        assert_eq!(Amount::MAX_SUPPLY.to_base_units(), 100_000_000_000_000_000);
        assert!(Amount::from_base_units(Amount::MAX_SUPPLY.to_base_units() + 1).is_none());
        assert!(Amount::from_tokens(Amount::MAX_TOKENS + 1).is_none());
    }

    #[test]
    fn checked_ops_refuse_to_leave_range() {
        assert!(Amount::MAX_SUPPLY
            .checked_add(Amount::from_base_units(1).unwrap())
            .is_none());
        assert!(Amount::ZERO
            .checked_sub(Amount::from_base_units(1).unwrap())
            .is_none());
        assert!(Amount::ONE_TOKEN.checked_mul(u64::MAX).is_none());
        assert!(Amount::ONE_TOKEN.checked_div(0).is_none());
        assert_eq!(
            Amount::ONE_TOKEN.mul_bps(2_500).unwrap().to_base_units(),
            25_000_000
        );
        assert_eq!(
            Amount::MAX_SUPPLY.mul_div_floor(u64::MAX, u64::MAX),
            Some(Amount::MAX_SUPPLY)
        );
    }

    #[test]
    fn display_and_parse_round_trip() {
        let a: Amount = "12.5".parse().unwrap();
        assert_eq!(a.to_base_units(), 1_250_000_000);
        assert_eq!(a.to_string(), "12.50000000");
        assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        assert_eq!("0.00000001".parse::<Amount>().unwrap().to_base_units(), 1);
        for bad in ["", ".5", "1.", "1.123456789", "-1", "1e3", "abc", "1.2.3"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad} parsed");
        }
        assert_eq!("1000000001".parse::<Amount>(), Err(Error::AboveCap));
    }

    #[test]
    fn serde_reads_units_or_decimal_strings_and_writes_units() {
        let a: Amount = serde_json::from_str("150000000").unwrap();
        let b: Amount = serde_json::from_str("\"1.5\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "150000000");
        assert!(serde_json::from_str::<Amount>("100000000000000001").is_err());
    }
}
