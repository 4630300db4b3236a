//! The wallet's RSA reader key: devices encrypt each record's symmetric key to its public half,
//! the owner unwraps with the private half.
//!
//! Keys are 3072-bit (about 128-bit security, NIST SP 800-57), exchanged as PKCS#8 private PEM
//! and SPKI public PEM so that OpenSSL and other tools read them. Key wrapping is
//! RSA-OAEP with SHA-256 (and MGF1-SHA-256), the scheme the record envelope uses.

use std::fmt;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Result, WalletError};

/// Modulus size of generated reader keys, in bits.
pub const RSA_BITS: usize = 3072;

/// Smallest modulus accepted on import, in bits.
pub const MIN_IMPORT_BITS: usize = 2048;

/// An RSA private key used to read records sealed to this wallet.
#[derive(Clone)]
pub struct ReaderKey {
    private: RsaPrivateKey,
}

impl fmt::Debug for ReaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReaderKey({} bits, redacted)", self.bits())
    }
}

impl ReaderKey {
    /// Generates a fresh 3072-bit key from the operating system's randomness (takes a second or more).
    pub fn generate() -> Result<Self> {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
            .map_err(|e| WalletError::Rsa(e.to_string()))?;
        Ok(Self { private })
    }

    /// Wraps an existing key after checking its size and consistency.
    pub fn from_private(private: RsaPrivateKey) -> Result<Self> {
        private
            .validate()
            .map_err(|e| WalletError::Rsa(format!("invalid private key: {e}")))?;
        check_size(private.size())?;
        Ok(Self { private })
    }

    /// Imports a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    ///
    /// # Errors
    /// [`WalletError::Rsa`] if the PEM is not an RSA private key of at least 2048 bits.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let private = if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| WalletError::Rsa(format!("pkcs#1 pem: {e}")))?
        } else {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| WalletError::Rsa(format!("pkcs#8 pem: {e}")))?
        };
        Self::from_private(private)
    }

    /// The private key as PKCS#8 PEM (wiped from memory when dropped).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| WalletError::Rsa(e.to_string()))
    }

    /// The public half.
    pub fn public_key(&self) -> RsaPublicKey {
        self.private.to_public_key()
    }

    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), the form handed to devices.
    pub fn public_pem(&self) -> Result<String> {
        public_to_pem(&self.public_key())
    }

    /// The underlying `rsa` private key, for the record envelope.
    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.private
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.private.size().saturating_mul(8)
    }

    /// Recovers a symmetric key wrapped with [`wrap_key`] for this reader.
    ///
    /// # Errors
    /// [`WalletError::Rsa`] if the ciphertext was not made for this key.
    pub fn unwrap_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.private
            .decrypt(Oaep::new::<Sha256>(), wrapped)
            .map(Zeroizing::new)
            .map_err(|_| WalletError::Rsa("key unwrap failed (not sealed to this key)".into()))
    }
}

/// Encodes a public key as SPKI PEM.
pub fn public_to_pem(key: &RsaPublicKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| WalletError::Rsa(e.to_string()))
}

/// Decodes an SPKI PEM public key (`BEGIN PUBLIC KEY`) of at least 2048 bits.
pub fn public_from_pem(pem: &str) -> Result<RsaPublicKey> {
    let key = RsaPublicKey::from_public_key_pem(pem)
        .map_err(|e| WalletError::Rsa(format!("spki pem: {e}")))?;
    check_size(key.size())?;
    Ok(key)
}

/// Encrypts a short symmetric key to a reader with RSA-OAEP-SHA256.
pub fn wrap_key(reader: &RsaPublicKey, key: &[u8]) -> Result<Vec<u8>> {
    reader
        .encrypt(&mut rand::rngs::OsRng, Oaep::new::<Sha256>(), key)
        .map_err(|e| WalletError::Rsa(e.to_string()))
}

fn check_size(bytes: usize) -> Result<()> {
    let bits = bytes.saturating_mul(8);
    if bits < MIN_IMPORT_BITS {
        return Err(WalletError::Rsa(format!(
            "{bits}-bit key is too small (minimum {MIN_IMPORT_BITS})"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::process::Command;

    fn shared_key() -> &'static ReaderKey {
        crate::test_support::shared_reader()
    }

    fn openssl(args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/openssl")
            .args(args)
            .output()
            .expect("openssl runs")
    }

    #[test]
    fn generated_key_is_3072_bits_and_round_trips_pem() {
        let k = shared_key();
        assert_eq!(k.bits(), 3072);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = ReaderKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let pubpem = k.public_pem().unwrap();
        assert!(pubpem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(public_from_pem(&pubpem).unwrap(), k.public_key());
    }

    #[test]
    fn openssl_reads_our_private_and_public_pem() {
        let k = shared_key();
        let dir = tempfile::tempdir().unwrap();
        let priv_path = dir.path().join("reader.pem");
        let pub_path = dir.path().join("reader.pub.pem");
        std::fs::write(&priv_path, k.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        std::fs::write(&pub_path, k.public_pem().unwrap()).unwrap();

        let out = openssl(&[
            "pkey",
            "-in",
            priv_path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("3072 bit"), "{text}");

        let out = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            pub_path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("3072 bit"));

        // OpenSSL derives the same public key from our private key.
        let out = openssl(&["pkey", "-in", priv_path.to_str().unwrap(), "-pubout"]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            k.public_pem().unwrap()
        );
    }

    #[test]
    fn openssl_generated_key_imports_and_unwraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ossl.pem");
        let out = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read_to_string(&path).unwrap();
        let k = ReaderKey::from_pem(&pem).unwrap();
        assert_eq!(k.bits(), 2048);

        // Public key extracted by OpenSSL matches ours.
        let out = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout"]);
        assert!(out.status.success());
        let ossl_pub = public_from_pem(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(ossl_pub, k.public_key());

        // And OpenSSL's OAEP-SHA256 encryption unwraps with the imported key.
        let secret = [7u8; 32];
        let plain = dir.path().join("plain.bin");
        let wrapped = dir.path().join("wrapped.bin");
        std::fs::write(&plain, secret).unwrap();
        let out = openssl(&[
            "pkeyutl",
            "-encrypt",
            "-inkey",
            path.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
            plain.to_str().unwrap(),
            "-out",
            wrapped.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ct = std::fs::read(&wrapped).unwrap();
        assert_eq!(k.unwrap_key(&ct).unwrap().as_slice(), &secret);
    }

    #[test]
    fn pkcs1_private_pem_imports() {
        let dir = tempfile::tempdir().unwrap();
        let p8 = dir.path().join("k8.pem");
        let p1 = dir.path().join("k1.pem");
        std::fs::write(&p8, shared_key().to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let out = openssl(&[
            "pkey",
            "-in",
            p8.to_str().unwrap(),
            "-traditional",
            "-out",
            p1.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read_to_string(&p1).unwrap();
        assert!(pem.contains("BEGIN RSA PRIVATE KEY"));
        assert_eq!(
            ReaderKey::from_pem(&pem).unwrap().public_key(),
            shared_key().public_key()
        );
    }

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_key_fails() {
        let k = shared_key();
        let key = [42u8; 32];
        let w1 = wrap_key(&k.public_key(), &key).unwrap();
        let w2 = wrap_key(&k.public_key(), &key).unwrap();
        assert_eq!(w1.len(), 384);
        assert_ne!(w1, w2, "oaep is randomised");
        assert_eq!(k.unwrap_key(&w1).unwrap().as_slice(), &key);
        let mut bad = w1.clone();
        if let Some(b) = bad.get_mut(100) {
            *b ^= 1;
        }
        assert!(matches!(k.unwrap_key(&bad), Err(WalletError::Rsa(_))));
    }

    #[test]
    fn garbage_and_small_keys_are_rejected() {
        assert!(matches!(
            ReaderKey::from_pem("not a key"),
            Err(WalletError::Rsa(_))
        ));
        assert!(matches!(
            public_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(WalletError::Rsa(_))
        ));
        let small = RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        assert!(matches!(
            ReaderKey::from_private(small),
            Err(WalletError::Rsa(_))
        ));
    }

    #[test]
    fn debug_redacts() {
        let d = format!("{:?}", shared_key());
        assert_eq!(d, "ReaderKey(3072 bits, redacted)");
    }
}
