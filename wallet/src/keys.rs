//! HD keys: BIP39 mnemonic → seed → BIP32 master key → BIP84 (P2WPKH, bech32) addresses.
//!
//! Receiving addresses live at `m/84'/coin'/account'/0/i` and change at `.../1/i`, with
//! `coin = 0` on mainnet and `1` on testnet and regtest, exactly as standard Bitcoin wallets do,
//! so the same mnemonic shows the same addresses everywhere.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{All, Secp256k1};
use bitcoin::Address;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, WalletError};

/// Number of words in a freshly generated mnemonic (256 bits of entropy).
pub const NEW_MNEMONIC_WORDS: usize = 24;

/// BIP84 purpose field.
const BIP84_PURPOSE: u32 = 84;

/// SLIP-132 version bytes for BIP84 extended keys.
const ZPRV: [u8; 4] = [0x04, 0xb2, 0x43, 0x0c];
const ZPUB: [u8; 4] = [0x04, 0xb2, 0x47, 0x46];
const VPRV: [u8; 4] = [0x04, 0x5f, 0x18, 0xbc];
const VPUB: [u8; 4] = [0x04, 0x5f, 0x1c, 0xf6];

/// The shared secp256k1 context (building one costs far more than a derivation).
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// The Bitcoin network whose address format and BIP44 coin type the wallet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum WalletNetwork {
    /// Bitcoin mainnet: `bc1…` addresses, coin type 0.
    Bitcoin,
    /// Bitcoin testnet: `tb1…` addresses, coin type 1.
    Testnet,
    /// Local regtest: `bcrt1…` addresses, coin type 1.
    Regtest,
}

impl WalletNetwork {
    /// The `bitcoin` crate's network value.
    pub fn bitcoin(self) -> bitcoin::Network {
        match self {
            Self::Bitcoin => bitcoin::Network::Bitcoin,
            Self::Testnet => bitcoin::Network::Testnet,
            Self::Regtest => bitcoin::Network::Regtest,
        }
    }

    /// BIP44 coin type: 0 on mainnet, 1 on every test network.
    pub fn coin_type(self) -> u32 {
        match self {
            Self::Bitcoin => 0,
            Self::Testnet | Self::Regtest => 1,
        }
    }

    /// The lower-case name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bitcoin => "bitcoin",
            Self::Testnet => "testnet",
            Self::Regtest => "regtest",
        }
    }
}

impl fmt::Display for WalletNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WalletNetwork {
    type Err = WalletError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bitcoin" | "mainnet" => Ok(Self::Bitcoin),
            "testnet" => Ok(Self::Testnet),
            "regtest" => Ok(Self::Regtest),
            other => Err(WalletError::Malformed {
                what: "network name",
                detail: format!("{other:?} is not one of bitcoin, testnet, regtest"),
            }),
        }
    }
}

/// Which BIP84 chain of an account: external (receiving) or internal (change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// `…/0/i`: addresses handed out to others.
    Receive,
    /// `…/1/i`: change addresses.
    Change,
}

impl Chain {
    fn index(self) -> u32 {
        match self {
            Self::Receive => 0,
            Self::Change => 1,
        }
    }
}

/// A normalised, checksum-valid BIP39 English mnemonic, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MnemonicPhrase(String);

impl MnemonicPhrase {
    /// Generates a new 24-word mnemonic from the operating system's randomness.
    pub fn generate() -> Result<Self> {
        let m = bip39::Mnemonic::generate(NEW_MNEMONIC_WORDS)
            .map_err(|e| WalletError::InvalidMnemonic(e.to_string()))?;
        Ok(Self(m.to_string()))
    }

    /// Parses a phrase typed by a human: any whitespace between words, any case.
    ///
    /// # Errors
    /// [`WalletError::InvalidMnemonic`] on an unknown word, bad length or bad checksum.
    pub fn parse(input: &str) -> Result<Self> {
        let mut lowered = Zeroizing::new(input.trim().to_lowercase());
        let words: Vec<&str> = lowered.split_whitespace().collect();
        let count = words.len();
        if !matches!(count, 12 | 15 | 18 | 21 | 24) {
            return Err(WalletError::MnemonicLength(count));
        }
        let joined = Zeroizing::new(words.join(" "));
        let m = bip39::Mnemonic::parse_in(bip39::Language::English, joined.as_str())
            .map_err(|e| WalletError::InvalidMnemonic(e.to_string()))?;
        lowered.zeroize();
        Ok(Self(m.to_string()))
    }

    /// The phrase, words separated by single spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of words.
    pub fn word_count(&self) -> usize {
        self.0.split(' ').count()
    }

    /// The 64-byte BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds, salt `"mnemonic" ‖ passphrase`).
    pub fn to_seed(&self, passphrase: &str) -> Result<Zeroizing<[u8; 64]>> {
        let m = bip39::Mnemonic::parse_in(bip39::Language::English, self.0.as_str())
            .map_err(|e| WalletError::InvalidMnemonic(e.to_string()))?;
        Ok(Zeroizing::new(m.to_seed(passphrase)))
    }
}

impl fmt::Debug for MnemonicPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MnemonicPhrase({} words, redacted)", self.word_count())
    }
}

/// The wallet's HD key material: the BIP39 seed and the network it derives addresses for.
///
/// Only the seed is kept; BIP32 keys are derived on demand, so nothing but the
/// (zeroized-on-drop) seed sits in memory between calls.
#[derive(Clone)]
pub struct HdKeys {
    seed: Zeroizing<[u8; 64]>,
    network: WalletNetwork,
}

impl fmt::Debug for HdKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdKeys")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl HdKeys {
    /// Keys for a mnemonic and optional BIP39 passphrase (empty string for none).
    pub fn from_mnemonic(
        mnemonic: &MnemonicPhrase,
        passphrase: &str,
        network: WalletNetwork,
    ) -> Result<Self> {
        Ok(Self {
            seed: mnemonic.to_seed(passphrase)?,
            network,
        })
    }

    /// Keys from a raw 64-byte BIP39 seed.
    pub fn from_seed(seed: [u8; 64], network: WalletNetwork) -> Self {
        Self {
            seed: Zeroizing::new(seed),
            network,
        }
    }

    /// The network these keys produce addresses for.
    pub fn network(&self) -> WalletNetwork {
        self.network
    }

    /// The BIP39 seed; the root of everything else the wallet derives (pools, user seeds).
    pub(crate) fn seed(&self) -> &[u8; 64] {
        &self.seed
    }

    /// The BIP32 master private key.
    pub fn master(&self) -> Result<Xpriv> {
        Xpriv::new_master(self.network.bitcoin(), self.seed.as_slice())
            .map_err(|e| WalletError::Derivation(e.to_string()))
    }

    /// The BIP84 account path `m/84'/coin'/account'`.
    pub fn account_path(&self, account: u32) -> Result<DerivationPath> {
        Ok(DerivationPath::from(vec![
            hardened(BIP84_PURPOSE)?,
            hardened(self.network.coin_type())?,
            hardened(account)?,
        ]))
    }

    /// The account's extended private key.
    pub fn account_xpriv(&self, account: u32) -> Result<Xpriv> {
        let path = self.account_path(account)?;
        self.master()?
            .derive_priv(secp(), &path)
            .map_err(|e| WalletError::Derivation(e.to_string()))
    }

    /// The account's extended public key (from which a watch-only wallet derives addresses).
    pub fn account_xpub(&self, account: u32) -> Result<Xpub> {
        Ok(Xpub::from_priv(secp(), &self.account_xpriv(account)?))
    }

    /// The P2WPKH address at `m/84'/coin'/account'/chain/index`.
    pub fn address(&self, account: u32, chain: Chain, index: u32) -> Result<Address> {
        let xpub = self.account_xpub(account)?;
        address_from_account_xpub(&xpub, chain, index, self.network)
    }

    /// The `index`-th receiving address of account 0.
    pub fn receiving_address(&self, index: u32) -> Result<Address> {
        self.address(0, Chain::Receive, index)
    }

    /// The `index`-th change address of account 0.
    pub fn change_address(&self, index: u32) -> Result<Address> {
        self.address(0, Chain::Change, index)
    }

    /// The master key in SLIP-132 form (`zprv…` on mainnet, `vprv…` otherwise).
    pub fn master_zprv(&self) -> Result<String> {
        Ok(slip132_private(&self.master()?, self.network))
    }

    /// The master public key in SLIP-132 form (`zpub…` / `vpub…`).
    pub fn master_zpub(&self) -> Result<String> {
        let xpub = Xpub::from_priv(secp(), &self.master()?);
        Ok(slip132_public(&xpub, self.network))
    }

    /// The account private key in SLIP-132 form.
    pub fn account_zprv(&self, account: u32) -> Result<String> {
        Ok(slip132_private(&self.account_xpriv(account)?, self.network))
    }

    /// The account public key in SLIP-132 form, for a watch-only BIP84 wallet.
    pub fn account_zpub(&self, account: u32) -> Result<String> {
        Ok(slip132_public(&self.account_xpub(account)?, self.network))
    }
}

/// Derives `chain/index` below an account xpub and encodes it as a P2WPKH address.
pub fn address_from_account_xpub(
    account: &Xpub,
    chain: Chain,
    index: u32,
    network: WalletNetwork,
) -> Result<Address> {
    let chain_xpub = account
        .derive_pub(secp(), &[normal(chain.index())?])
        .map_err(|e| WalletError::Derivation(e.to_string()))?;
    address_at(&chain_xpub, index, network)
}

/// The P2WPKH address of the non-hardened child `index` of an already derived chain key.
pub(crate) fn address_at(chain_xpub: &Xpub, index: u32, network: WalletNetwork) -> Result<Address> {
    let child = chain_xpub
        .derive_pub(secp(), &[normal(index)?])
        .map_err(|e| WalletError::Derivation(e.to_string()))?;
    Ok(Address::p2wpkh(&child.to_pub(), network.bitcoin()))
}

pub(crate) fn hardened(index: u32) -> Result<ChildNumber> {
    ChildNumber::from_hardened_idx(index).map_err(|e| WalletError::Derivation(e.to_string()))
}

pub(crate) fn normal(index: u32) -> Result<ChildNumber> {
    ChildNumber::from_normal_idx(index).map_err(|e| WalletError::Derivation(e.to_string()))
}

fn slip132_private(key: &Xpriv, network: WalletNetwork) -> String {
    let mut raw = Zeroizing::new(key.encode());
    let version = match network {
        WalletNetwork::Bitcoin => ZPRV,
        WalletNetwork::Testnet | WalletNetwork::Regtest => VPRV,
    };
    replace_version(&mut raw, version);
    bitcoin::base58::encode_check(raw.as_slice())
}

fn slip132_public(key: &Xpub, network: WalletNetwork) -> String {
    let mut raw = key.encode();
    let version = match network {
        WalletNetwork::Bitcoin => ZPUB,
        WalletNetwork::Testnet | WalletNetwork::Regtest => VPUB,
    };
    replace_version(&mut raw, version);
    bitcoin::base58::encode_check(&raw)
}

fn replace_version(raw: &mut [u8; 78], version: [u8; 4]) {
    for (dst, src) in raw.iter_mut().zip(version) {
        *dst = src;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Trezor's reference BIP39 vectors (github.com/trezor/python-mnemonic, `vectors.json`,
    /// the English 24-word entries), passphrase "TREZOR": mnemonic → seed.
    const TREZOR_24: &[(&str, &str)] = &[
        (
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
            "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
        ),
        (
            "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
            "bc09fca1804f7e69da93c2f2028eb238c227f2e9dda30cd63699232578480a4021b146ad717fbb7e451ce9eb835f43620bf5c514db0f8add49f5d121449d3e87",
        ),
        (
            "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless",
            "c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f",
        ),
        (
            "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote",
            "dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad",
        ),
        (
            "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length",
            "64c87cde7e12ecf6704ab95bb1408bef047c22db4cc7491c4271d170a1b213d20b385bc1588d9c7b38f1b39d415665b8a9030c9ec653d75e65f847d8fc1fc440",
        ),
        (
            "panda eyebrow bullet gorilla call smoke muffin taste mesh discover soft ostrich alcohol speed nation flash devote level hobby quick inner drive ghost inside",
            "72be8e052fc4919d2adf28d5306b5474b0069df35b02303de8c1729c9538dbb6fc2d731d5f832193cd9fb6aeecbc469594a70e3dd50811b5067f3b88b28c3e8d",
        ),
    ];

    #[test]
    fn bip39_trezor_vectors_24_words() {
        for (phrase, seed_hex) in TREZOR_24 {
            let m = MnemonicPhrase::parse(phrase).unwrap();
            assert_eq!(m.word_count(), 24);
            let seed = m.to_seed("TREZOR").unwrap();
            assert_eq!(hex::encode(seed.as_slice()), *seed_hex, "{phrase}");
        }
    }

    /// BIP84 test vector (bips/bip-0084.mediawiki, "Test vectors"): the 12-word
    /// "abandon … about" mnemonic, no passphrase, mainnet.
    const BIP84_MNEMONIC: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn bip84_keys() -> HdKeys {
        let m = MnemonicPhrase::parse(BIP84_MNEMONIC).unwrap();
        HdKeys::from_mnemonic(&m, "", WalletNetwork::Bitcoin).unwrap()
    }

    #[test]
    fn bip84_root_keys() {
        let k = bip84_keys();
        assert_eq!(
            k.master_zprv().unwrap(),
            "zprvAWgYBBk7JR8Gjrh4UJQ2uJdG1r3WNRRfURiABBE3RvMXYSrRJL62XuezvGdPvG6GFBZduosCc1YP5wixPox7zhZLfiUm8aunE96BBa4Kei5"
        );
        assert_eq!(
            k.master_zpub().unwrap(),
            "zpub6jftahH18ngZxLmXaKw3GSZzZsszmt9WqedkyZdezFtWRFBZqsQH5hyUmb4pCEeZGmVfQuP5bedXTB8is6fTv19U1GQRyQUKQGUTzyHACMF"
        );
    }

    #[test]
    fn bip84_account_keys() {
        let k = bip84_keys();
        assert_eq!(
            k.account_zprv(0).unwrap(),
            "zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJA9iefm1yYNZKEm7z6qUWCroSQnE"
        );
        assert_eq!(
            k.account_zpub(0).unwrap(),
            "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
        );
    }

    #[test]
    fn bip84_addresses() {
        let k = bip84_keys();
        assert_eq!(
            k.receiving_address(0).unwrap().to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
        assert_eq!(
            k.receiving_address(1).unwrap().to_string(),
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
        );
        assert_eq!(
            k.change_address(0).unwrap().to_string(),
            "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
        );
        // First receiving key, compressed public key from the same vector.
        let xpriv = k.account_xpriv(0).unwrap();
        let leaf = xpriv
            .derive_priv(secp(), &[normal(0).unwrap(), normal(0).unwrap()])
            .unwrap();
        assert_eq!(
            leaf.to_priv().to_wif(),
            "KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d"
        );
        assert_eq!(
            leaf.to_priv().public_key(secp()).to_string(),
            "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c"
        );
    }

    #[test]
    fn test_networks_use_coin_one_and_their_own_prefix() {
        let m = MnemonicPhrase::parse(BIP84_MNEMONIC).unwrap();
        let t = HdKeys::from_mnemonic(&m, "", WalletNetwork::Testnet).unwrap();
        let r = HdKeys::from_mnemonic(&m, "", WalletNetwork::Regtest).unwrap();
        let ta = t.receiving_address(0).unwrap().to_string();
        let ra = r.receiving_address(0).unwrap().to_string();
        assert!(ta.starts_with("tb1q"), "{ta}");
        assert!(ra.starts_with("bcrt1q"), "{ra}");
        assert_eq!(
            t.account_path(0).unwrap().to_string(),
            "84'/1'/0'",
            "coin type 1 off mainnet"
        );
        // Same key hash on testnet and regtest: only the human-readable part differs.
        let t0 = t.receiving_address(0).unwrap();
        let r0 = r.receiving_address(0).unwrap();
        assert_eq!(t0.script_pubkey(), r0.script_pubkey());
        assert!(t.account_zpub(0).unwrap().starts_with("vpub"));
        // Coin type 1 gives different keys from mainnet's coin type 0.
        let main = HdKeys::from_mnemonic(&m, "", WalletNetwork::Bitcoin).unwrap();
        assert_ne!(
            t0.script_pubkey(),
            main.receiving_address(0).unwrap().script_pubkey()
        );
    }

    #[test]
    fn passphrase_changes_every_address() {
        let m = MnemonicPhrase::parse(BIP84_MNEMONIC).unwrap();
        let with = HdKeys::from_mnemonic(&m, "TREZOR", WalletNetwork::Bitcoin).unwrap();
        assert_ne!(
            with.receiving_address(0).unwrap().to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
    }

    #[test]
    fn generated_mnemonics_have_24_words_and_round_trip() {
        let a = MnemonicPhrase::generate().unwrap();
        let b = MnemonicPhrase::generate().unwrap();
        assert_eq!(a.word_count(), 24);
        assert_ne!(a.as_str(), b.as_str());
        let again = MnemonicPhrase::parse(&format!("  {}\n", a.as_str().to_uppercase())).unwrap();
        assert_eq!(again.as_str(), a.as_str());
    }

    #[test]
    fn bad_mnemonics_are_rejected() {
        // Wrong checksum word.
        let bad = BIP84_MNEMONIC.replace("about", "abandon");
        assert!(matches!(
            MnemonicPhrase::parse(&bad),
            Err(WalletError::InvalidMnemonic(_))
        ));
        // Unknown word.
        let bad = BIP84_MNEMONIC.replace("about", "carchain");
        assert!(matches!(
            MnemonicPhrase::parse(&bad),
            Err(WalletError::InvalidMnemonic(_))
        ));
        // Wrong length.
        assert!(matches!(
            MnemonicPhrase::parse("abandon abandon about"),
            Err(WalletError::MnemonicLength(3))
        ));
        assert!(matches!(
            MnemonicPhrase::parse(""),
            Err(WalletError::MnemonicLength(0))
        ));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let m = MnemonicPhrase::parse(BIP84_MNEMONIC).unwrap();
        assert!(!format!("{m:?}").contains("abandon"));
        let k = HdKeys::from_mnemonic(&m, "", WalletNetwork::Bitcoin).unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("Bitcoin") && !dbg.contains("seed"), "{dbg}");
    }
}
