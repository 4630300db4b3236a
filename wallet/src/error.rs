//! The wallet's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the wallet library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The mnemonic is not a valid BIP39 English phrase (word, length or checksum).
    #[error("invalid mnemonic: {0}")]
    InvalidMnemonic(String),
    /// A freshly generated mnemonic must have 24 words.
    #[error("unsupported mnemonic length {0} (expected 12, 15, 18, 21 or 24 words)")]
    MnemonicLength(usize),
    /// BIP32 derivation failed.
    #[error("key derivation failed: {0}")]
    Derivation(String),
    /// The keystore could not be decrypted: the password is wrong or the file was altered.
    #[error("wrong password or corrupted keystore")]
    WrongPassword,
    /// The keystore file is not in a format this version understands.
    #[error("malformed keystore: {0}")]
    MalformedKeystore(String),
    /// The keystore was written by a newer (or unknown) version.
    #[error("unsupported keystore version {0}")]
    UnsupportedKeystoreVersion(u32),
    /// The password is not acceptable (empty).
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// Key stretching with scrypt failed (bad parameters).
    #[error("password key derivation failed: {0}")]
    Kdf(String),
    /// RSA key generation, encoding or decoding failed.
    #[error("rsa key error: {0}")]
    Rsa(String),
    /// A date is not a valid calendar day written as `YYYYMMDD`.
    #[error("invalid date {0:?} (expected a calendar day as YYYYMMDD)")]
    InvalidDate(String),
    /// A device record has no date to choose its pool address by.
    #[error("the record has no date (no START_TIME or DATE key part, no datetime or date column): pass --date")]
    MissingDate,
    /// A device identifier is empty, too long or contains unsupported characters.
    #[error("invalid vid {0:?} (1 to 64 printable ASCII characters, no spaces)")]
    InvalidVid(String),
    /// The device is not in the device list.
    #[error("unknown vid {0:?}: add it first with `wallet device add`")]
    UnknownVid(String),
    /// The device is already in the device list.
    #[error("vid {0:?} is already in the device list")]
    DuplicateVid(String),
    /// The requested pool size is out of range.
    #[error("invalid pool size {0} (must be between 1 and {max})", max = crate::pool::MAX_POOL_SIZE)]
    InvalidPoolSize(u32),
    /// An address pool is empty or inconsistent with its declared size.
    #[error("malformed address pool: {0}")]
    MalformedPool(String),
    /// No free hardened account index could be found for a VID.
    #[error("no free pool account for vid {0:?}")]
    AccountExhausted(String),
    /// The stored data belongs to a different Bitcoin network.
    #[error("network mismatch: wallet is on {wallet}, requested {requested}")]
    NetworkMismatch {
        /// Network the wallet was created for.
        wallet: String,
        /// Network that was asked for.
        requested: String,
    },
    /// A device list or other wallet file is malformed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which file or structure.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The wallet has not been initialised in this data directory.
    #[error("no wallet in {0}: run `wallet init` first")]
    NotInitialized(PathBuf),
    /// A wallet already exists and would be overwritten.
    #[error("a wallet already exists at {0}; refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    /// A record is malformed (bad JSON, key, format or columns).
    #[error(transparent)]
    Record(#[from] primitives::RecordError),
    /// Sealing or opening a record envelope failed.
    #[error(transparent)]
    Envelope(#[from] primitives::EnvelopeError),
    /// A file-system operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl WalletError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the wallet library.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;
