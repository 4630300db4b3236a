//! Domain-separated hashing.
//!
//! Every hash CarChain computes over bytes names its purpose, so a signature or commitment made
//! for one purpose can never be replayed as another. The construction is SHA-256 over
//! `u8 len(tag) ‖ tag ‖ message`, with `tag = "carchain/" ‖ domain`: the length prefix makes the
//! (tag, message) split unambiguous. The SNARK-friendly record hash (`dHash`) is separate: see
//! [`crate::record::Record::dhash`].

use sha2::{Digest, Sha256};

/// A 32-byte digest.
pub type Hash32 = [u8; 32];

/// The purposes CarChain hashes bytes for. Adding a variant never changes another's digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Domain {
    /// Signed transactions (the bytes a transaction signature commits to).
    Transaction,
    /// Consensus votes and proposals.
    Consensus,
    /// Block headers.
    BlockHeader,
    /// Leaves and inner nodes of the state Merkle tree.
    StateMerkle,
    /// Shard and chunk commitments in the storage cluster.
    Storage,
    /// The AEAD associated data of a sealed record column.
    EnvelopeAad,
    /// The commitment to a device's address pool.
    AddressPool,
    /// A free-form domain for tests and extensions; the string must be unique per purpose.
    Custom(&'static str),
}

impl Domain {
    /// The domain's stable name, part of every digest made under it.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Transaction => "tx",
            Domain::Consensus => "consensus",
            Domain::BlockHeader => "header",
            Domain::StateMerkle => "state-merkle",
            Domain::Storage => "storage",
            Domain::EnvelopeAad => "envelope-aad",
            Domain::AddressPool => "address-pool",
            Domain::Custom(name) => name,
        }
    }
}

/// An incremental domain-separated hasher, for messages assembled from parts.
#[derive(Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts a hash under `domain`.
    pub fn new(domain: Domain) -> Self {
        let name = domain.name().as_bytes();
        let mut h = Sha256::new();
        let tag_len = 9usize.saturating_add(name.len());
        // Domain names are short literals; clamp defensively so the prefix stays one byte.
        h.update([u8::try_from(tag_len).unwrap_or(u8::MAX)]);
        h.update(b"carchain/");
        h.update(name);
        Hasher(h)
    }

    /// Appends bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// Appends a length-prefixed byte string, so consecutive fields cannot run into each other.
    pub fn update_field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// Returns the digest.
    pub fn finish(self) -> Hash32 {
        self.0.finalize().into()
    }
}

/// Hashes `message` under `domain`.
pub fn hash(domain: Domain, message: &[u8]) -> Hash32 {
    let mut h = Hasher::new(domain);
    h.update(message);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_construction() {
        let mut manual = Sha256::new();
        manual.update([11u8]);
        manual.update(b"carchain/tx");
        manual.update(b"hello");
        let expected: Hash32 = manual.finalize().into();
        assert_eq!(hash(Domain::Transaction, b"hello"), expected);
    }

    #[test]
    fn domains_separate() {
        let msg = b"same message";
        let all = [
            Domain::Transaction,
            Domain::Consensus,
            Domain::BlockHeader,
            Domain::StateMerkle,
            Domain::Storage,
            Domain::EnvelopeAad,
            Domain::AddressPool,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(hash(*a, msg), hash(*b, msg), "{a:?} vs {b:?}");
            }
        }
        // The length prefix stops "tx" + "Xmsg" colliding with "txX" + "msg".
        assert_ne!(
            hash(Domain::Custom("txX"), b"msg"),
            hash(Domain::Custom("tx"), b"Xmsg")
        );
    }

    #[test]
    fn fields_cannot_run_together() {
        let mut a = Hasher::new(Domain::Storage);
        a.update_field(b"ab").update_field(b"c");
        let mut b = Hasher::new(Domain::Storage);
        b.update_field(b"a").update_field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
