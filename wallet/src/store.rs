//! The wallet's data directory: `keystore.json` (encrypted secrets) and `devices.json`
//! (the device list). Both are written atomically with mode 0600; the directory is 0700.

use std::path::{Path, PathBuf};

use crate::devices::DeviceList;
use crate::error::{Result, WalletError};
use crate::fsio;
use crate::keys::WalletNetwork;
use crate::keystore::{KdfParams, Keystore, WalletSecrets};

/// File name of the encrypted keystore inside the data directory.
pub const KEYSTORE_FILE: &str = "keystore.json";
/// File name of the device list inside the data directory.
pub const DEVICES_FILE: &str = "devices.json";

/// A wallet data directory.
#[derive(Debug, Clone)]
pub struct WalletDir {
    root: PathBuf,
}

impl WalletDir {
    /// Refers to `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the keystore file.
    pub fn keystore_path(&self) -> PathBuf {
        self.root.join(KEYSTORE_FILE)
    }

    /// Path of the device list.
    pub fn devices_path(&self) -> PathBuf {
        self.root.join(DEVICES_FILE)
    }

    /// Whether a keystore exists here.
    pub fn is_initialized(&self) -> bool {
        self.keystore_path().exists()
    }

    /// Creates the directory and writes a new keystore; refuses to overwrite an existing one.
    pub fn create(
        &self,
        secrets: &WalletSecrets,
        password: &[u8],
        params: KdfParams,
    ) -> Result<()> {
        if self.is_initialized() {
            return Err(WalletError::AlreadyInitialized(self.keystore_path()));
        }
        fsio::ensure_private_dir(&self.root)?;
        Keystore::seal(secrets, password, params)?.save(&self.keystore_path())
    }

    /// Reads the keystore header (no password needed).
    pub fn keystore(&self) -> Result<Keystore> {
        if !self.is_initialized() {
            return Err(WalletError::NotInitialized(self.root.clone()));
        }
        Keystore::load(&self.keystore_path())
    }

    /// Decrypts the keystore.
    ///
    /// # Errors
    /// [`WalletError::NotInitialized`], [`WalletError::WrongPassword`], and file errors.
    pub fn unlock(&self, password: &[u8]) -> Result<WalletSecrets> {
        self.keystore()?.open(password)
    }

    /// The device list (empty if none was saved yet).
    pub fn devices(&self, network: WalletNetwork) -> Result<DeviceList> {
        DeviceList::load_or_new(&self.devices_path(), network)
    }

    /// Saves the device list atomically.
    pub fn save_devices(&self, list: &DeviceList) -> Result<()> {
        fsio::ensure_private_dir(&self.root)?;
        list.save(&self.devices_path())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::keys::MnemonicPhrase;
    use crate::pool::Vid;
    use crate::test_support::shared_reader;

    #[test]
    fn create_unlock_and_refuse_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WalletDir::new(tmp.path().join("w"));
        assert!(matches!(
            dir.unlock(b"pw"),
            Err(WalletError::NotInitialized(_))
        ));
        let secrets = WalletSecrets::new(
            MnemonicPhrase::generate().unwrap(),
            "",
            shared_reader().clone(),
            WalletNetwork::Regtest,
        );
        dir.create(&secrets, b"pw", KdfParams::INSECURE_FAST)
            .unwrap();
        assert!(matches!(
            dir.create(&secrets, b"pw", KdfParams::INSECURE_FAST),
            Err(WalletError::AlreadyInitialized(_))
        ));
        let back = dir.unlock(b"pw").unwrap();
        assert_eq!(back.mnemonic().as_str(), secrets.mnemonic().as_str());
        assert!(matches!(
            dir.unlock(b"nope"),
            Err(WalletError::WrongPassword)
        ));

        let keys = back.hd_keys().unwrap();
        let mut list = dir.devices(WalletNetwork::Regtest).unwrap();
        list.add(&keys, Vid::new("car").unwrap(), 4).unwrap();
        dir.save_devices(&list).unwrap();
        assert_eq!(dir.devices(WalletNetwork::Regtest).unwrap(), list);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }
}
