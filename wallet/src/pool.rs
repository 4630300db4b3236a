//! Per-device address pools (the brief's `setDup`) and the choice of a record's address
//! (`deductFrom`).
//!
//! Derivation, all recoverable from the mnemonic (and BIP39 passphrase) plus the VID:
//!
//! * **Pool account.** `account = 2^30 + (HMAC-SHA256(k_acct, "carchain/pool-account/v1" ‖
//!   len(vid) ‖ vid ‖ attempt)[0..4] mod 2^30)`, with `k_acct = HKDF-SHA256(seed,
//!   salt = "carchain/wallet/v1", info = "pool-account")`. Pool accounts therefore sit in the
//!   hardened range `[2^30, 2^31)`, far from the ordinary accounts `0, 1, …` of the wallet.
//!   `attempt` starts at 0 and is only raised if two VIDs of one device list collide.
//! * **Pool addresses.** `m/84'/coin'/account'/0/i` for `i in 0..N`: plain BIP84 receiving
//!   addresses of that account, so any BIP84 wallet that is told the account sees the funds.
//! * **User seed.** `HKDF-SHA256(seed, salt = "carchain/user-seed/v1", info = "vid:" ‖ vid)`,
//!   32 bytes. It is handed to the device; it reveals nothing about the wallet keys or other
//!   devices' seeds.
//! * **Deduction.** `index = u128_be(HMAC-SHA256(user_seed, "carchain/deduct/v1" ‖ len(vid) ‖
//!   vid ‖ "YYYYMMDD")[0..16]) mod N`. With a 128-bit numerator the bias is below
//!   `N / 2^128`, i.e. no measurable bias for any pool size.
//!
//! `len(vid)` is a big-endian `u32`; all strings are ASCII.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fmt;
use std::str::FromStr;

use bitcoin::bip32::Xpub;
use bitcoin::Address;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Result, WalletError};
use crate::keys::{address_at, normal, secp, HdKeys, WalletNetwork};

type HmacSha256 = Hmac<Sha256>;

/// Largest pool a device may have.
pub const MAX_POOL_SIZE: u32 = 10_000;

/// First hardened account index used for pools (2^30).
pub const POOL_ACCOUNT_BASE: u32 = 1 << 30;

const POOL_ACCOUNT_MASK: u32 = POOL_ACCOUNT_BASE - 1;
const WALLET_SALT: &[u8] = b"carchain/wallet/v1";
const POOL_ACCOUNT_DOMAIN: &[u8] = b"carchain/pool-account/v1";
const USER_SEED_SALT: &[u8] = b"carchain/user-seed/v1";
const DEDUCT_DOMAIN: &[u8] = b"carchain/deduct/v1";

/// Longest accepted VID, in bytes.
pub const MAX_VID_LEN: usize = 64;

/// A device identifier: 1 to 64 printable ASCII characters without spaces (a VIN fits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Vid(String);

impl Vid {
    /// Validates a VID.
    ///
    /// # Errors
    /// [`WalletError::InvalidVid`] if empty, longer than 64 bytes, or not printable ASCII.
    pub fn new(s: &str) -> Result<Self> {
        let ok = !s.is_empty() && s.len() <= MAX_VID_LEN && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(WalletError::InvalidVid(s.chars().take(80).collect()))
        }
    }

    /// The VID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Feeds `len(vid) ‖ vid`, the unambiguous form used inside MAC inputs.
    fn feed(&self, mac: &mut HmacSha256) {
        // The length is at most MAX_VID_LEN, so it always fits a u32.
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(self.0.as_bytes());
    }
}

impl TryFrom<String> for Vid {
    type Error = WalletError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(&s)
    }
}

impl From<Vid> for String {
    fn from(v: Vid) -> String {
        v.0
    }
}

impl fmt::Display for Vid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Vid {
    type Err = WalletError;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// A calendar day (proleptic Gregorian), written `YYYYMMDD`, years 0001 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordDate {
    year: u16,
    month: u8,
    day: u8,
}

impl RecordDate {
    /// A validated date.
    ///
    /// # Errors
    /// [`WalletError::InvalidDate`] if the day does not exist.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        if valid {
            Ok(Self { year, month, day })
        } else {
            Err(WalletError::InvalidDate(format!(
                "{year:04}{month:02}{day:02}"
            )))
        }
    }

    /// Parses exactly eight ASCII digits `YYYYMMDD`.
    ///
    /// # Errors
    /// [`WalletError::InvalidDate`] for any other text or an impossible day.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || WalletError::InvalidDate(s.chars().take(40).collect());
        let b = s.as_bytes();
        if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16> {
            s.get(r).and_then(|t| t.parse().ok()).ok_or_else(bad)
        };
        let year = num(0..4)?;
        let month = u8::try_from(num(4..6)?).map_err(|_| bad())?;
        let day = u8::try_from(num(6..8)?).map_err(|_| bad())?;
        Self::new(year, month, day).map_err(|_| bad())
    }

    /// The day of a numeric timestamp as records carry them: `YYYYMMDD` (8 digits) or
    /// `YYYYMMDDhhmmss` (14 digits, the time of day is checked and dropped).
    ///
    /// # Errors
    /// [`WalletError::InvalidDate`] for any other number.
    pub fn from_number(n: i128) -> Result<Self> {
        let text = n.to_string();
        match text.len() {
            8 => Self::parse(&text),
            14 => {
                let bad = || WalletError::InvalidDate(text.clone());
                let field = |r: std::ops::Range<usize>| -> Result<u8> {
                    text.get(r).and_then(|t| t.parse().ok()).ok_or_else(bad)
                };
                if field(8..10)? > 23 || field(10..12)? > 59 || field(12..14)? > 60 {
                    return Err(bad());
                }
                Self::parse(text.get(0..8).ok_or_else(bad)?)
            }
            _ => Err(WalletError::InvalidDate(text)),
        }
    }

    /// The day after this one, if it is still within year 9999.
    pub fn succ(self) -> Option<Self> {
        if self.day < days_in_month(self.year, self.month) {
            return Some(Self {
                day: self.day.checked_add(1)?,
                ..self
            });
        }
        if self.month < 12 {
            return Some(Self {
                month: self.month.checked_add(1)?,
                day: 1,
                ..self
            });
        }
        Self::new(self.year.checked_add(1)?, 1, 1).ok()
    }

    /// The eight ASCII digits `YYYYMMDD`.
    pub fn digits(self) -> [u8; 8] {
        let mut out = [b'0'; 8];
        let fields = [
            (u32::from(self.year), 4usize),
            (u32::from(self.month), 2),
            (u32::from(self.day), 2),
        ];
        let mut pos = 0usize;
        for (value, width) in fields {
            let mut v = value;
            for i in (0..width).rev() {
                if let Some(slot) = out.get_mut(pos.saturating_add(i)) {
                    *slot = b'0'.saturating_add(u8::try_from(v % 10).unwrap_or(0));
                }
                v /= 10;
            }
            pos = pos.saturating_add(width);
        }
        out
    }

    /// Year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// Month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// Day of the month, from 1.
    pub fn day(self) -> u8 {
        self.day
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl fmt::Display for RecordDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for RecordDate {
    type Err = WalletError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RecordDate {
    type Error = WalletError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<RecordDate> for String {
    fn from(d: RecordDate) -> String {
        d.to_string()
    }
}

/// The per-device secret that selects a record's address; shared by owner and device.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSeed(Zeroizing<[u8; 32]>);

impl UserSeed {
    /// Wraps raw seed bytes (for a device that received the seed from its owner).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// [`WalletError::Malformed`] for anything else.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.trim(), out.as_mut_slice()).map_err(|e| WalletError::Malformed {
            what: "user seed",
            detail: format!("expected 64 hex characters: {e}"),
        })?;
        Ok(Self(out))
    }

    /// The seed as lower-case hex, for handing to the device.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_slice()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for UserSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserSeed(redacted)")
    }
}

/// The user seed of a device, derived from the wallet seed and the VID.
pub fn user_seed(keys: &HdKeys, vid: &Vid) -> Result<UserSeed> {
    let hk = Hkdf::<Sha256>::new(Some(USER_SEED_SALT), keys.seed());
    let mut info = Vec::with_capacity(vid.as_str().len().saturating_add(4));
    info.extend_from_slice(b"vid:");
    info.extend_from_slice(vid.as_str().as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(&info, out.as_mut_slice())
        .map_err(|e| WalletError::Derivation(e.to_string()))?;
    Ok(UserSeed(out))
}

/// The hardened BIP84 account that holds a device's pool, for a given collision `attempt`.
pub fn pool_account(keys: &HdKeys, vid: &Vid, attempt: u32) -> Result<u32> {
    let hk = Hkdf::<Sha256>::new(Some(WALLET_SALT), keys.seed());
    let mut k_acct = Zeroizing::new([0u8; 32]);
    hk.expand(b"pool-account", k_acct.as_mut_slice())
        .map_err(|e| WalletError::Derivation(e.to_string()))?;
    let mut mac = mac_with(k_acct.as_slice())?;
    mac.update(POOL_ACCOUNT_DOMAIN);
    vid.feed(&mut mac);
    mac.update(&attempt.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    let mut word = [0u8; 4];
    for (dst, src) in word.iter_mut().zip(tag.iter()) {
        *dst = *src;
    }
    Ok(POOL_ACCOUNT_BASE | (u32::from_be_bytes(word) & POOL_ACCOUNT_MASK))
}

/// A device's address pool: `size` receiving addresses of its pool account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    /// The device.
    pub vid: Vid,
    /// The hardened pool account index (≥ 2^30).
    pub account: u32,
    /// The network of the addresses.
    pub network: WalletNetwork,
    /// `m/84'/coin'/account'/0/i` for `i in 0..size`.
    pub addresses: Vec<Address>,
}

impl AddressPool {
    /// Derives the pool of `size` addresses for `vid` under `account`.
    ///
    /// # Errors
    /// [`WalletError::InvalidPoolSize`] unless `1 <= size <= MAX_POOL_SIZE`.
    pub fn derive(keys: &HdKeys, vid: &Vid, account: u32, size: u32) -> Result<Self> {
        if size == 0 || size > MAX_POOL_SIZE {
            return Err(WalletError::InvalidPoolSize(size));
        }
        let chain = receive_chain_xpub(keys, account)?;
        let addresses = (0..size)
            .map(|i| address_at(&chain, i, keys.network()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vid: vid.clone(),
            account,
            network: keys.network(),
            addresses,
        })
    }

    /// The BIP32 path of the `index`-th address, for display.
    pub fn path_of(&self, index: u32) -> String {
        format!(
            "m/84'/{}'/{}'/0/{}",
            self.network.coin_type(),
            self.account,
            index
        )
    }
}

/// The chain key `m/84'/coin'/account'/0` from which pool addresses are derived.
pub(crate) fn receive_chain_xpub(keys: &HdKeys, account: u32) -> Result<Xpub> {
    keys.account_xpub(account)?
        .derive_pub(secp(), &[normal(0)?])
        .map_err(|e| WalletError::Derivation(e.to_string()))
}

/// Picks the pool index that holds the record of `vid` on `date` (see the module docs).
///
/// # Errors
/// [`WalletError::MalformedPool`] for an empty pool.
pub fn deduct_index(
    pool_len: usize,
    date: RecordDate,
    vid: &Vid,
    seed: &UserSeed,
) -> Result<usize> {
    let n = u128::try_from(pool_len).map_err(|_| WalletError::MalformedPool("too large".into()))?;
    if n == 0 {
        return Err(WalletError::MalformedPool("empty pool".into()));
    }
    let mut mac = mac_with(seed.as_bytes())?;
    mac.update(DEDUCT_DOMAIN);
    vid.feed(&mut mac);
    mac.update(&date.digits());
    let tag = mac.finalize().into_bytes();
    let mut head = [0u8; 16];
    for (dst, src) in head.iter_mut().zip(tag.iter()) {
        *dst = *src;
    }
    let r = u128::from_be_bytes(head)
        .checked_rem(n)
        .ok_or_else(|| WalletError::MalformedPool("empty pool".into()))?;
    usize::try_from(r).map_err(|_| WalletError::MalformedPool("index overflow".into()))
}

/// The brief's `deductFrom(addresses, date, VID, userSeed)`: the pool entry that holds the
/// record of `vid` on `date`. Works on any slice, so a device can use plain address strings.
pub fn deduct_address<'a, T>(
    pool: &'a [T],
    date: RecordDate,
    vid: &Vid,
    seed: &UserSeed,
) -> Result<&'a T> {
    let i = deduct_index(pool.len(), date, vid, seed)?;
    pool.get(i)
        .ok_or_else(|| WalletError::MalformedPool("index out of range".into()))
}

fn mac_with(key: &[u8]) -> Result<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|e| WalletError::Derivation(e.to_string()))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss
)]
mod tests {
    use super::*;
    use crate::keys::{Chain, MnemonicPhrase};

    const PHRASE: &str = "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length";

    fn keys() -> HdKeys {
        HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(PHRASE).unwrap(),
            "",
            WalletNetwork::Regtest,
        )
        .unwrap()
    }

    fn dates(start: &str, count: usize) -> Vec<RecordDate> {
        let mut d = RecordDate::parse(start).unwrap();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(d);
            d = d.succ().unwrap();
        }
        out
    }

    #[test]
    fn dates_validate_calendar_days() {
        assert_eq!(
            RecordDate::parse("20160511").unwrap().to_string(),
            "20160511"
        );
        assert!(RecordDate::parse("20240229").is_ok(), "leap year");
        assert!(RecordDate::parse("20000229").is_ok(), "400-year leap");
        for bad in [
            "20230229",
            "19000229",
            "20241301",
            "20240001",
            "20240100",
            "20240431",
            "00000101",
            "2024011",
            "202401011",
            "2024-1-01",
            "+2024011",
            "２０２４０１０１",
            "",
            "abcdefgh",
        ] {
            assert!(
                matches!(RecordDate::parse(bad), Err(WalletError::InvalidDate(_))),
                "{bad:?} should be rejected"
            );
        }
        let dec31 = RecordDate::parse("20231231").unwrap();
        assert_eq!(dec31.succ().unwrap().to_string(), "20240101");
        assert_eq!(
            RecordDate::parse("20240228")
                .unwrap()
                .succ()
                .unwrap()
                .to_string(),
            "20240229"
        );
        assert!(RecordDate::parse("99991231").unwrap().succ().is_none());
        assert_eq!(
            &RecordDate::parse("00010203").unwrap().digits(),
            b"00010203"
        );
        assert_eq!(&dec31.digits(), b"20231231");
        assert_eq!(
            RecordDate::from_number(20160511071428).unwrap().to_string(),
            "20160511"
        );
        assert_eq!(
            RecordDate::from_number(20180310).unwrap().to_string(),
            "20180310"
        );
        for bad in [
            2016051107142,
            20160511251428,
            20160511076028,
            20230229000000,
            0,
            -20180310,
            201803100,
        ] {
            assert!(RecordDate::from_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vids_validate() {
        assert!(Vid::new("LBVNU79049SB81546").is_ok());
        assert!(Vid::new(&"x".repeat(64)).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(65)] {
            assert!(
                matches!(Vid::new(bad), Err(WalletError::InvalidVid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pool_accounts_are_hardened_high_and_distinct() {
        let k = keys();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let vid = Vid::new(&format!("VID{i:04}")).unwrap();
            let a = pool_account(&k, &vid, 0).unwrap();
            assert!((POOL_ACCOUNT_BASE..(1u32 << 31)).contains(&a));
            assert!(seen.insert(a));
            assert_ne!(a, pool_account(&k, &vid, 1).unwrap());
        }
    }

    #[test]
    fn pool_addresses_are_bip84_receiving_addresses_of_the_pool_account() {
        let k = keys();
        let vid = Vid::new("LBVNU79049SB81546").unwrap();
        let account = pool_account(&k, &vid, 0).unwrap();
        let pool = AddressPool::derive(&k, &vid, account, 8).unwrap();
        assert_eq!(pool.addresses.len(), 8);
        for (i, a) in pool.addresses.iter().enumerate() {
            let i = u32::try_from(i).unwrap();
            assert_eq!(a, &k.address(account, Chain::Receive, i).unwrap());
            assert!(a.to_string().starts_with("bcrt1q"));
        }
        let distinct: std::collections::HashSet<_> = pool.addresses.iter().collect();
        assert_eq!(distinct.len(), 8);
        assert_eq!(pool.path_of(3), format!("m/84'/1'/{account}'/0/3"));
        assert!(matches!(
            AddressPool::derive(&k, &vid, account, 0),
            Err(WalletError::InvalidPoolSize(0))
        ));
        assert!(matches!(
            AddressPool::derive(&k, &vid, account, MAX_POOL_SIZE + 1),
            Err(WalletError::InvalidPoolSize(_))
        ));
    }

    #[test]
    fn user_seeds_are_per_vid_and_round_trip_hex() {
        let k = keys();
        let a = user_seed(&k, &Vid::new("A").unwrap()).unwrap();
        let b = user_seed(&k, &Vid::new("B").unwrap()).unwrap();
        assert_ne!(a, b);
        assert_eq!(UserSeed::from_hex(&a.to_hex()).unwrap(), a);
        assert!(UserSeed::from_hex("abcd").is_err());
        assert_eq!(format!("{a:?}"), "UserSeed(redacted)");
        // A different mnemonic gives a different seed for the same VID.
        let other = HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(PHRASE).unwrap(),
            "passphrase",
            WalletNetwork::Regtest,
        )
        .unwrap();
        assert_ne!(user_seed(&other, &Vid::new("A").unwrap()).unwrap(), a);
    }

    /// Pearson's chi-square statistic of `days` consecutive dates spread over a pool of `n`.
    fn chi_square(n: usize, days: usize, start: &str, vid: &str) -> (f64, Vec<u32>) {
        let k = keys();
        let vid = Vid::new(vid).unwrap();
        let seed = user_seed(&k, &vid).unwrap();
        let mut counts = vec![0u32; n];
        for d in dates(start, days) {
            counts[deduct_index(n, d, &vid, &seed).unwrap()] += 1;
        }
        let expected = days as f64 / n as f64;
        let chi2 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        (chi2, counts)
    }

    /// The 0.999 quantile of the chi-square distribution with `df` degrees of freedom, by the
    /// Wilson–Hilferty approximation (z = 3.0902); e.g. 37.8 for df = 15 (exact: 37.70).
    fn chi2_999(df: usize) -> f64 {
        let k = df as f64;
        let a = 2.0 / (9.0 * k);
        k * (1.0 - a + 3.0902 * a.sqrt()).powi(3)
    }

    /// Uniform spread: for several pool sizes (including non-powers of two) the chi-square
    /// statistic over many consecutive days stays below its 0.999 quantile. Inputs are fixed,
    /// so the outcome is deterministic; a uniform choice would fail each case with
    /// probability 0.1%.
    #[test]
    fn deduction_is_uniform_over_the_pool() {
        for (n, days, start, vid) in [
            (16, 16_000, "19800101", "LBVNU79049SB81546"),
            (7, 7_000, "20000101", "phone-1"),
            (1000, 200_000, "19000101", "fleet-car-0042"),
        ] {
            let (chi2, counts) = chi_square(n, days, start, vid);
            let bound = chi2_999(n - 1);
            assert!(chi2 < bound, "n={n}: chi-square {chi2:.1} >= {bound:.1}");
            assert!(
                counts.iter().all(|&c| c > 0),
                "n={n}: an address is never used"
            );
        }
        assert!((chi2_999(15) - 37.70).abs() < 0.2);
        assert!((chi2_999(6) - 22.46).abs() < 0.3);
    }

    /// With a different user seed, the two choices agree only by chance: for N = 16 the
    /// agreement count over 4 000 days is Binomial(4000, 1/16), mean 250, sd 15.3; we accept
    /// 250 ± 80 (more than 5 sd).
    #[test]
    fn a_different_seed_gives_unrelated_choices() {
        let k = keys();
        let vid = Vid::new("CAR-1").unwrap();
        let s1 = user_seed(&k, &vid).unwrap();
        let s2 = UserSeed::from_bytes([0x5a; 32]);
        let mut same = 0;
        for d in dates("20200101", 4000) {
            if deduct_index(16, d, &vid, &s1).unwrap() == deduct_index(16, d, &vid, &s2).unwrap() {
                same += 1;
            }
        }
        assert!((170..=330).contains(&same), "agreement {same}/4000");
        // The VID is bound in too: same seed, other VID, unrelated choices.
        let other = Vid::new("CAR-2").unwrap();
        let mut same = 0;
        for d in dates("20200101", 4000) {
            if deduct_index(16, d, &vid, &s1).unwrap() == deduct_index(16, d, &other, &s1).unwrap()
            {
                same += 1;
            }
        }
        assert!((170..=330).contains(&same), "agreement {same}/4000");
    }

    /// The device, holding only the pool and its user seed, picks addresses; the owner, holding
    /// only the mnemonic and the VID, recomputes every one of them.
    #[test]
    fn owner_recomputes_any_record_address_from_vid_and_date() {
        let vid = Vid::new("LBVNU79049SB81546").unwrap();
        let (device_pool, device_seed) = {
            let k = keys();
            let account = pool_account(&k, &vid, 0).unwrap();
            let pool = AddressPool::derive(&k, &vid, account, 32).unwrap();
            let strings: Vec<String> = pool.addresses.iter().map(ToString::to_string).collect();
            (
                strings,
                UserSeed::from_hex(&user_seed(&k, &vid).unwrap().to_hex()).unwrap(),
            )
        };
        let device_choices: Vec<(RecordDate, String)> = dates("20160501", 60)
            .into_iter()
            .map(|d| {
                let a = deduct_address(&device_pool, d, &vid, &device_seed).unwrap();
                (d, a.clone())
            })
            .collect();

        // Owner side, from scratch.
        let owner = keys();
        let account = pool_account(&owner, &vid, 0).unwrap();
        let seed = user_seed(&owner, &vid).unwrap();
        let chain = receive_chain_xpub(&owner, account).unwrap();
        for (d, addr) in &device_choices {
            let i = deduct_index(32, *d, &vid, &seed).unwrap();
            let recomputed =
                address_at(&chain, u32::try_from(i).unwrap(), WalletNetwork::Regtest).unwrap();
            assert_eq!(&recomputed.to_string(), addr, "{d}");
        }
        // Records spread over many addresses in two months.
        let distinct: std::collections::HashSet<_> =
            device_choices.iter().map(|(_, a)| a).collect();
        assert!(distinct.len() > 16, "{}", distinct.len());
    }

    #[test]
    fn empty_pool_is_an_error_not_a_panic() {
        let seed = UserSeed::from_bytes([1; 32]);
        let vid = Vid::new("x").unwrap();
        let d = RecordDate::parse("20200101").unwrap();
        let empty: [String; 0] = [];
        assert!(matches!(
            deduct_address(&empty, d, &vid, &seed),
            Err(WalletError::MalformedPool(_))
        ));
        assert_eq!(deduct_index(1, d, &vid, &seed).unwrap(), 0);
    }

    proptest::proptest! {
        #[test]
        fn deduction_is_deterministic_and_in_range(
            n in 1usize..5000,
            y in 1970u16..2100, m in 1u8..=12, day in 1u8..=28,
            seed in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            vid in "[A-Z0-9]{1,17}",
        ) {
            let d = RecordDate::new(y, m, day).unwrap();
            let vid = Vid::new(&vid).unwrap();
            let s = UserSeed::from_bytes(seed);
            let i = deduct_index(n, d, &vid, &s).unwrap();
            proptest::prop_assert!(i < n);
            proptest::prop_assert_eq!(i, deduct_index(n, d, &vid, &s).unwrap());
        }

        #[test]
        fn date_text_round_trips(y in 1u16..=9999, m in 1u8..=12, day in 1u8..=31) {
            if let Ok(d) = RecordDate::new(y, m, day) {
                proptest::prop_assert_eq!(RecordDate::parse(&d.to_string()).unwrap(), d);
                proptest::prop_assert_eq!(d.to_string().into_bytes(), d.digits().to_vec());
            }
        }
    }
}
