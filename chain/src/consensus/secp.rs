//! secp256k1 ECDSA as the consensus signature scheme: validator addresses, deterministic
//! (RFC 6979) signing and verification over the SHA-256 of domain-tagged signing bytes.

use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain tag for deriving a validator address from its public key.
pub const ADDRESS_DOMAIN: &[u8] = b"carchain/consensus/address/v1";

/// A validator's address: the first 20 bytes of a domain-separated SHA-256 of its compressed
/// public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValidatorAddress(pub [u8; 20]);

impl ValidatorAddress {
    /// The address of `key`.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let digest = tagged_hash(ADDRESS_DOMAIN, &key.serialize());
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

/// SHA-256 of a length-prefixed domain tag followed by `bytes`.
pub fn tagged_hash(domain: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([u8::try_from(domain.len()).unwrap_or(u8::MAX)]);
    h.update(domain);
    h.update(bytes);
    h.finalize().into()
}

/// Domain tag of consensus signatures (the signing bytes carry their own message-kind tag).
pub const SIGNATURE_DOMAIN: &[u8] = b"carchain/consensus/sig/v1";

/// Signs `sign_bytes` (deterministic nonce: the same bytes always give the same signature).
pub fn sign(secret: &SecretKey, sign_bytes: &[u8]) -> Signature {
    let digest = Message::from_digest(tagged_hash(SIGNATURE_DOMAIN, sign_bytes));
    SECP256K1.sign_ecdsa(&digest, secret)
}

/// Verifies a signature made by [`sign`] (low-S form only).
pub fn verify(key: &PublicKey, sign_bytes: &[u8], signature: &Signature) -> bool {
    let digest = Message::from_digest(tagged_hash(SIGNATURE_DOMAIN, sign_bytes));
    SECP256K1.verify_ecdsa(&digest, signature, key).is_ok()
}
