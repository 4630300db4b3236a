//! The encrypted keystore file.
//!
//! Format (version 1), a JSON object:
//!
//! ```json
//! { "version": 1, "network": "bitcoin",
//!   "kdf": { "name": "scrypt", "log_n": 15, "r": 8, "p": 1, "salt": "<32 bytes hex>" },
//!   "cipher": { "name": "chacha20poly1305", "nonce": "<12 bytes hex>" },
//!   "ciphertext": "<hex>" }
//! ```
//!
//! The password is stretched with scrypt (default N = 2^15, r = 8, p = 1: 32 MiB of memory,
//! the interactive-login setting of the scrypt paper and RFC 7914) into a 256-bit key that seals
//! the secrets with ChaCha20-Poly1305 (RFC 8439). Every header field (version, network, KDF
//! parameters and salt) is authenticated as associated data, so editing any of them makes the
//! file fail to open, exactly like a wrong password. Salt and nonce are fresh for every write.
//! The plaintext is a JSON object with the mnemonic, the BIP39 passphrase and the RSA reader key
//! (PKCS#8 PEM); it only ever lives in buffers that are zeroized on drop.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, WalletError};
use crate::fsio;
use crate::keys::{HdKeys, MnemonicPhrase, WalletNetwork};
use crate::reader_key::ReaderKey;

/// Current keystore format version.
pub const KEYSTORE_VERSION: u32 = 1;

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "chacha20poly1305";
const AAD_DOMAIN: &[u8] = b"carchain/wallet-keystore/v1";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// scrypt cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// log2 of the CPU/memory cost N.
    pub log_n: u8,
    /// Block size r.
    pub r: u32,
    /// Parallelism p.
    pub p: u32,
}

impl KdfParams {
    /// The default: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s on a laptop core).
    pub const DEFAULT: Self = Self {
        log_n: 15,
        r: 8,
        p: 1,
    };

    /// Cheap parameters for tests only: N = 2^10. Never use for real wallets.
    pub const INSECURE_FAST: Self = Self {
        log_n: 10,
        r: 8,
        p: 1,
    };

    /// Largest scrypt memory a keystore may demand (128 · r · N bytes): 1 GiB.
    pub const MAX_MEMORY: u64 = 1 << 30;

    fn validate(self) -> Result<scrypt::Params> {
        // Bounds keep a hostile file from demanding absurd memory or time.
        let memory = (1u64 << self.log_n.min(63))
            .checked_mul(u64::from(self.r))
            .and_then(|m| m.checked_mul(128));
        let in_range = (10..=24).contains(&self.log_n)
            && (1..=32).contains(&self.r)
            && (1..=16).contains(&self.p)
            && memory.is_some_and(|m| m <= Self::MAX_MEMORY);
        if !in_range {
            return Err(WalletError::MalformedKeystore(format!(
                "scrypt parameters out of range (log_n {}, r {}, p {}; at most 1 GiB)",
                self.log_n, self.r, self.p
            )));
        }
        scrypt::Params::new(self.log_n, self.r, self.p, KEY_LEN)
            .map_err(|e| WalletError::Kdf(e.to_string()))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The secrets a keystore protects.
#[derive(Clone)]
pub struct WalletSecrets {
    mnemonic: MnemonicPhrase,
    passphrase: Zeroizing<String>,
    reader: ReaderKey,
    network: WalletNetwork,
}

impl std::fmt::Debug for WalletSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletSecrets")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl WalletSecrets {
    /// Bundles a mnemonic, its BIP39 passphrase (may be empty) and the RSA reader key.
    pub fn new(
        mnemonic: MnemonicPhrase,
        passphrase: &str,
        reader: ReaderKey,
        network: WalletNetwork,
    ) -> Self {
        Self {
            mnemonic,
            passphrase: Zeroizing::new(passphrase.to_owned()),
            reader,
            network,
        }
    }

    /// The mnemonic phrase.
    pub fn mnemonic(&self) -> &MnemonicPhrase {
        &self.mnemonic
    }

    /// The RSA reader key.
    pub fn reader(&self) -> &ReaderKey {
        &self.reader
    }

    /// The network the wallet was created for.
    pub fn network(&self) -> WalletNetwork {
        self.network
    }

    /// Derives the HD keys (runs BIP39's PBKDF2).
    pub fn hd_keys(&self) -> Result<HdKeys> {
        HdKeys::from_mnemonic(&self.mnemonic, &self.passphrase, self.network)
    }
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Plaintext {
    mnemonic: String,
    bip39_passphrase: String,
    rsa_private_pkcs8: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    name: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherJson {
    name: String,
    nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreJson {
    version: u32,
    network: WalletNetwork,
    kdf: KdfJson,
    cipher: CipherJson,
    ciphertext: String,
}

/// An encrypted keystore as stored on disk.
#[derive(Debug, Clone)]
pub struct Keystore {
    network: WalletNetwork,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Keystore {
    /// Encrypts `secrets` under `password` with fresh salt and nonce.
    ///
    /// # Errors
    /// [`WalletError::InvalidPassword`] for an empty password.
    pub fn seal(secrets: &WalletSecrets, password: &[u8], params: KdfParams) -> Result<Self> {
        if password.is_empty() {
            return Err(WalletError::InvalidPassword(
                "the password must not be empty",
            ));
        }
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let plain = Plaintext {
            mnemonic: secrets.mnemonic.as_str().to_owned(),
            bip39_passphrase: secrets.passphrase.as_str().to_owned(),
            rsa_private_pkcs8: secrets.reader.to_pkcs8_pem()?.as_str().to_owned(),
        };
        // Pre-sized so serialisation never reallocates and leaves unzeroized copies behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(16 * 1024));
        serde_json::to_writer(&mut *buf, &plain)
            .map_err(|e| WalletError::MalformedKeystore(e.to_string()))?;
        let mut ks = Self {
            network: secrets.network,
            params,
            salt,
            nonce,
            ciphertext: Vec::new(),
        };
        let key = derive_key(password, &salt, params)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(*key));
        let aad = ks.aad();
        ks.ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: buf.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| WalletError::MalformedKeystore("encryption failed".into()))?;
        Ok(ks)
    }

    /// Decrypts the secrets.
    ///
    /// # Errors
    /// [`WalletError::WrongPassword`] if the password is wrong or any byte of the file changed.
    pub fn open(&self, password: &[u8]) -> Result<WalletSecrets> {
        let key = derive_key(password, &self.salt, self.params)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(*key));
        let aad = self.aad();
        let plain = cipher
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| WalletError::WrongPassword)?;
        let parsed: Plaintext = serde_json::from_slice(&plain)
            .map_err(|e| WalletError::MalformedKeystore(format!("secret payload: {e}")))?;
        let mnemonic = MnemonicPhrase::parse(&parsed.mnemonic)?;
        let reader = ReaderKey::from_pem(&parsed.rsa_private_pkcs8)?;
        Ok(WalletSecrets::new(
            mnemonic,
            &parsed.bip39_passphrase,
            reader,
            self.network,
        ))
    }

    /// The network recorded in the (authenticated) header.
    pub fn network(&self) -> WalletNetwork {
        self.network
    }

    /// The scrypt parameters of this file.
    pub fn kdf_params(&self) -> KdfParams {
        self.params
    }

    /// Serialises to the versioned JSON format.
    pub fn to_json(&self) -> Result<String> {
        let j = KeystoreJson {
            version: KEYSTORE_VERSION,
            network: self.network,
            kdf: KdfJson {
                name: KDF_NAME.into(),
                log_n: self.params.log_n,
                r: self.params.r,
                p: self.params.p,
                salt: hex::encode(self.salt),
            },
            cipher: CipherJson {
                name: CIPHER_NAME.into(),
                nonce: hex::encode(self.nonce),
            },
            ciphertext: hex::encode(&self.ciphertext),
        };
        serde_json::to_string_pretty(&j).map_err(|e| WalletError::MalformedKeystore(e.to_string()))
    }

    /// Parses the JSON format, checking version, algorithm names and field sizes.
    ///
    /// # Errors
    /// [`WalletError::UnsupportedKeystoreVersion`] or [`WalletError::MalformedKeystore`].
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| WalletError::MalformedKeystore(format!("not json: {e}")))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(KEYSTORE_VERSION) => {}
            Some(v) => {
                return Err(WalletError::UnsupportedKeystoreVersion(
                    u32::try_from(v).unwrap_or(u32::MAX),
                ))
            }
            None => return Err(WalletError::MalformedKeystore("missing version".into())),
        }
        let j: KeystoreJson = serde_json::from_value(value)
            .map_err(|e| WalletError::MalformedKeystore(e.to_string()))?;
        if j.kdf.name != KDF_NAME {
            return Err(WalletError::MalformedKeystore(format!(
                "unsupported kdf {:?}",
                j.kdf.name
            )));
        }
        if j.cipher.name != CIPHER_NAME {
            return Err(WalletError::MalformedKeystore(format!(
                "unsupported cipher {:?}",
                j.cipher.name
            )));
        }
        let params = KdfParams {
            log_n: j.kdf.log_n,
            r: j.kdf.r,
            p: j.kdf.p,
        };
        params.validate()?;
        Ok(Self {
            network: j.network,
            params,
            salt: hex_array(&j.kdf.salt, "salt")?,
            nonce: hex_array(&j.cipher.nonce, "nonce")?,
            ciphertext: hex::decode(&j.ciphertext)
                .map_err(|e| WalletError::MalformedKeystore(format!("ciphertext: {e}")))?,
        })
    }

    /// Writes the keystore atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsio::write_atomic(path, self.to_json()?.as_bytes())
    }

    /// Reads a keystore file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = fsio::read(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| WalletError::MalformedKeystore("not utf-8".into()))?;
        Self::from_json(text)
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(128);
        aad.extend_from_slice(AAD_DOMAIN);
        aad.extend_from_slice(&KEYSTORE_VERSION.to_be_bytes());
        aad.extend_from_slice(self.network.as_str().as_bytes());
        aad.push(0);
        aad.extend_from_slice(KDF_NAME.as_bytes());
        aad.push(self.params.log_n);
        aad.extend_from_slice(&self.params.r.to_be_bytes());
        aad.extend_from_slice(&self.params.p.to_be_bytes());
        aad.extend_from_slice(&self.salt);
        aad.extend_from_slice(CIPHER_NAME.as_bytes());
        aad
    }
}

fn derive_key(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let p = params.validate()?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &p, key.as_mut_slice())
        .map_err(|e| WalletError::Kdf(e.to_string()))?;
    Ok(key)
}

fn hex_array<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let v = hex::decode(s).map_err(|e| WalletError::MalformedKeystore(format!("{what}: {e}")))?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| {
        WalletError::MalformedKeystore(format!("{what} must be {N} bytes, found {}", v.len()))
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::test_support::shared_reader;

    const PHRASE: &str = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";

    fn secrets() -> WalletSecrets {
        WalletSecrets::new(
            MnemonicPhrase::parse(PHRASE).unwrap(),
            "extra words",
            shared_reader().clone(),
            WalletNetwork::Regtest,
        )
    }

    #[test]
    fn seal_open_round_trip_through_json_and_disk() {
        let s = secrets();
        let ks = Keystore::seal(&s, b"correct horse", KdfParams::INSECURE_FAST).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        ks.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("legal"), "mnemonic must not appear in clear");
        let back = Keystore::load(&path)
            .unwrap()
            .open(b"correct horse")
            .unwrap();
        assert_eq!(back.mnemonic().as_str(), PHRASE);
        assert_eq!(back.network(), WalletNetwork::Regtest);
        assert_eq!(back.reader().public_key(), s.reader().public_key());
        // The BIP39 passphrase survived: same addresses as the original.
        assert_eq!(
            back.hd_keys().unwrap().receiving_address(0).unwrap(),
            s.hd_keys().unwrap().receiving_address(0).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn wrong_password_is_a_clear_error() {
        let ks = Keystore::seal(&secrets(), b"right", KdfParams::INSECURE_FAST).unwrap();
        let err = ks.open(b"wrong").unwrap_err();
        assert!(matches!(err, WalletError::WrongPassword));
        assert_eq!(err.to_string(), "wrong password or corrupted keystore");
    }

    #[test]
    fn tampering_with_any_part_fails_like_a_wrong_password() {
        let ks = Keystore::seal(&secrets(), b"pw", KdfParams::INSECURE_FAST).unwrap();
        let json: serde_json::Value = serde_json::from_str(&ks.to_json().unwrap()).unwrap();

        let mut flipped = ks.clone();
        flipped.ciphertext[5] ^= 0x01;
        assert!(matches!(
            flipped.open(b"pw"),
            Err(WalletError::WrongPassword)
        ));

        let mut net = json.clone();
        net["network"] = "bitcoin".into();
        let edited = Keystore::from_json(&net.to_string()).unwrap();
        assert!(matches!(
            edited.open(b"pw"),
            Err(WalletError::WrongPassword)
        ));

        let mut salt = json.clone();
        salt["kdf"]["salt"] = hex::encode([9u8; 32]).into();
        let edited = Keystore::from_json(&salt.to_string()).unwrap();
        assert!(matches!(
            edited.open(b"pw"),
            Err(WalletError::WrongPassword)
        ));

        let mut cost = json;
        cost["kdf"]["log_n"] = 11.into();
        let edited = Keystore::from_json(&cost.to_string()).unwrap();
        assert!(matches!(
            edited.open(b"pw"),
            Err(WalletError::WrongPassword)
        ));
    }

    #[test]
    fn fresh_salt_and_nonce_every_time() {
        let s = secrets();
        let a = Keystore::seal(&s, b"pw", KdfParams::INSECURE_FAST).unwrap();
        let b = Keystore::seal(&s, b"pw", KdfParams::INSECURE_FAST).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn malformed_files_are_rejected_with_reasons() {
        let ks = Keystore::seal(&secrets(), b"pw", KdfParams::INSECURE_FAST).unwrap();
        let json: serde_json::Value = serde_json::from_str(&ks.to_json().unwrap()).unwrap();

        assert!(matches!(
            Keystore::from_json("{not json"),
            Err(WalletError::MalformedKeystore(_))
        ));
        let mut v = json.clone();
        v["version"] = 2.into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::UnsupportedKeystoreVersion(2))
        ));
        let mut v = json.clone();
        v["cipher"]["nonce"] = "00ff".into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::MalformedKeystore(_))
        ));
        let mut v = json.clone();
        v["kdf"]["log_n"] = 40.into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::MalformedKeystore(_))
        ));
        // 2^21 · 8 · 128 bytes = 2 GiB: over the memory cap.
        let mut v = json.clone();
        v["kdf"]["log_n"] = 21.into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::MalformedKeystore(_))
        ));
        let mut v = json.clone();
        v["kdf"]["name"] = "pbkdf2".into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::MalformedKeystore(_))
        ));
        let mut v = json;
        v["network"] = "dogecoin".into();
        assert!(matches!(
            Keystore::from_json(&v.to_string()),
            Err(WalletError::MalformedKeystore(_))
        ));
    }

    #[test]
    fn empty_password_is_refused() {
        assert!(matches!(
            Keystore::seal(&secrets(), b"", KdfParams::INSECURE_FAST),
            Err(WalletError::InvalidPassword(_))
        ));
    }

    #[test]
    fn default_parameters_are_the_documented_ones() {
        assert_eq!(
            KdfParams::default(),
            KdfParams {
                log_n: 15,
                r: 8,
                p: 1
            }
        );
        let ks = Keystore::seal(&secrets(), b"pw", KdfParams::default()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ks.to_json().unwrap()).unwrap();
        assert_eq!(v["kdf"]["log_n"], 15);
        assert_eq!(v["kdf"]["r"], 8);
        assert_eq!(v["kdf"]["p"], 1);
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(v["cipher"]["name"], "chacha20poly1305");
        assert!(ks.open(b"pw").is_ok());
    }
}
