//! # wallet — the owner's wallet
//!
//! Job: BIP39/BIP32 HD keys and BIP84 Bitcoin addresses, the per-device address pools and user
//! seed, RSA reader keys, the encrypted keystore file, and the `wallet` command-line tool.
//!
//! May depend on: `primitives`, and later `chain` (light client) and `kvs` (reads).
//!
//! Layout:
//! * [`keys`]: mnemonic → seed → BIP32 → BIP84 P2WPKH addresses (`m/84'/coin'/account'/chain/i`).
//! * [`reader_key`]: the 3072-bit RSA reader key, PKCS#8/SPKI PEM, OAEP-SHA256 key wrapping.
//! * [`keystore`]: scrypt + ChaCha20-Poly1305 encrypted, versioned keystore file.
//! * [`pool`]: per-device address pools, user seeds and the date-keyed address choice.
//! * [`devices`]: the persisted device list.
//! * [`records`]: sealing and opening records (the `primitives` envelope) at the right address.
//! * [`store`]: the data directory that holds both files.
//! * [`provision`]: the file the wallet hands a device at setup.
//! * [`online`]: the owner's chain key, device keys, pool commitments, and verified reads and
//!   writes through an agent's gateway.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod device;
pub mod devices;
pub mod error;
pub mod fsio;
pub mod keys;
pub mod keystore;
pub mod online;
pub mod pool;
pub mod provision;
pub mod reader_key;
pub mod records;
pub mod store;

pub use devices::{DeviceEntry, DeviceList, RecordLocation};
pub use error::{Result, WalletError};
pub use keys::{Chain, HdKeys, MnemonicPhrase, WalletNetwork};
pub use keystore::{KdfParams, Keystore, WalletSecrets};
pub use pool::{
    deduct_address, deduct_index, pool_account, user_seed, AddressPool, RecordDate, UserSeed, Vid,
};
pub use reader_key::ReaderKey;
pub use records::{
    date_of, open_record, owner_of, place, record_date, seal_record, Opened, Owner, Placement,
};
pub use store::WalletDir;

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::OnceLock;

    use crate::reader_key::ReaderKey;

    /// One 3072-bit reader key per test binary (generation takes seconds).
    #[allow(clippy::expect_used)]
    pub(crate) fn shared_reader() -> &'static ReaderKey {
        static KEY: OnceLock<ReaderKey> = OnceLock::new();
        KEY.get_or_init(|| ReaderKey::generate().expect("rsa key generation"))
    }
}
