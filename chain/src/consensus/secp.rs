//! secp256k1 ECDSA as the consensus signature scheme: validator addresses, deterministic
//! (RFC 6979) signing and verification over the [`Domain::Consensus`] hash of canonical
//! signing bytes.

use primitives::hash::{hash, Domain};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};

/// Hash domain of validator addresses.
pub const ADDRESS_DOMAIN: Domain = Domain::Custom("validator-address");

/// A validator's address: the first 20 bytes of the [`ADDRESS_DOMAIN`] hash of its compressed
/// public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValidatorAddress(pub [u8; 20]);

impl ValidatorAddress {
    /// The address of `key`.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let digest = hash(ADDRESS_DOMAIN, &key.serialize());
        let mut out = [0u8; 20];
        for (o, d) in out.iter_mut().zip(digest.iter()) {
            *o = *d;
        }
        ValidatorAddress(out)
    }
}

impl core::fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Signs `sign_bytes` (deterministic nonce: the same bytes always give the same signature).
pub fn sign(secret: &SecretKey, sign_bytes: &[u8]) -> Signature {
    let digest = Message::from_digest(hash(Domain::Consensus, sign_bytes));
    SECP256K1.sign_ecdsa(&digest, secret)
}

/// Verifies a signature made by [`sign`] (low-S form only).
pub fn verify(key: &PublicKey, sign_bytes: &[u8], signature: &Signature) -> bool {
    let digest = Message::from_digest(hash(Domain::Consensus, sign_bytes));
    SECP256K1.verify_ecdsa(&digest, signature, key).is_ok()
}
