//! The sealed record envelope: how a record travels and rests outside its owner's wallet.
//!
//! A fresh 256-bit record key encrypts every column separately with AES-256-GCM (a random 96-bit
//! nonce per column), so a reader can decrypt a projection without touching the other columns.
//! Each column's associated data binds the envelope version, address, format, encoded key,
//! `dHash` and column name, so no ciphertext can be moved to another record or column. The record
//! key is wrapped with RSA-OAEP-SHA256 for each reader, with an OAEP label bound to the record's
//! address and key; adding a reader re-wraps the key and never touches the column ciphertexts.
//!
//! In the clear: address, format, encoded key, column names, `dHash` (all of which the chain's
//! index or the storage layout needs anyway). Secret: every column value.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::codec::{self, CodecError};
use crate::hash::{Domain, Hasher};
use crate::record::{decode_value, encode_value, Record, RecordError, RecordKey};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// The envelope format version written by [`seal`].
pub const ENVELOPE_VERSION: u8 = 1;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The record itself is invalid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The envelope bytes do not decode.
    #[error("malformed envelope: {0}")]
    Codec(#[from] CodecError),
    /// An envelope version this build cannot open.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// Sealing needs at least one reader.
    #[error("a sealed record needs at least one reader")]
    NoReaders,
    /// The given private key is not among the envelope's readers.
    #[error("this key is not a reader of the record (reader id {0})")]
    NotAReader(ReaderId),
    /// The wrapped key did not unwrap (wrong key, or tampered wrap or record binding).
    #[error("the record key could not be unwrapped: wrong key or tampered envelope")]
    Unwrap,
    /// A column failed authentication.
    #[error("column {0:?} failed authentication: tampered, or moved from another record")]
    ColumnAuth(String),
    /// The decrypted record does not hash to the envelope's `dHash`.
    #[error("decrypted record does not match its dHash")]
    DhashMismatch,
    /// A requested column is not in the envelope.
    #[error("unknown column {0:?}")]
    UnknownColumn(String),
    /// An RSA operation failed for a reason other than a wrong key.
    #[error("rsa: {0}")]
    Rsa(String),
}

/// Identifies a reader by the SHA-256 (domain-separated) of its RSA public key's SPKI DER.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReaderId(#[serde(with = "crate::bytes::hex32")] pub [u8; 32]);

impl ReaderId {
    /// The reader id of a public key.
    ///
    /// # Errors
    /// Only if the key cannot be DER-encoded, which a valid RSA key always can.
    pub fn of(key: &RsaPublicKey) -> Result<Self, EnvelopeError> {
        let der = key
            .to_public_key_der()
            .map_err(|e| EnvelopeError::Rsa(e.to_string()))?;
        let mut h = Hasher::new(Domain::Custom("rsa-reader"));
        h.update(der.as_bytes());
        Ok(ReaderId(h.finish()))
    }
}

impl fmt::Display for ReaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ReaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReaderId({self})")
    }
}

/// One encrypted column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedColumn {
    /// The AES-GCM nonce.
    #[serde(with = "crate::bytes::base64")]
    pub nonce: Vec<u8>,
    /// The ciphertext with its 16-byte tag.
    #[serde(with = "crate::bytes::base64")]
    pub ciphertext: Vec<u8>,
}

/// A record sealed for one or more readers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    /// The envelope format version.
    pub version: u8,
    /// The address the record is stored under (its partition).
    pub address: String,
    /// The record's format.
    pub format: String,
    /// The record's key.
    pub key: RecordKey,
    /// The record's fingerprint, as attested on chain.
    #[serde(with = "crate::bytes::hex32")]
    pub dhash: [u8; 32],
    /// The encrypted columns by name.
    pub columns: BTreeMap<String, SealedColumn>,
    /// The record key wrapped for each reader.
    pub readers: BTreeMap<ReaderId, WrappedKey>,
}

/// A record key wrapped with RSA-OAEP-SHA256 for one reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey(#[serde(with = "crate::bytes::base64")] pub Vec<u8>);

/// Seals `record` for storage at `address`, readable by each of `readers`.
///
/// # Errors
/// No readers, or an RSA failure (e.g. a key too small for OAEP-SHA256).
pub fn seal<R: RngCore + CryptoRng>(
    record: &Record,
    address: &str,
    readers: &[&RsaPublicKey],
    rng: &mut R,
) -> Result<SealedRecord, EnvelopeError> {
    if readers.is_empty() {
        return Err(EnvelopeError::NoReaders);
    }
    let mut record_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(record_key.as_mut());
    let mut sealed = SealedRecord {
        version: ENVELOPE_VERSION,
        address: address.to_owned(),
        format: record.format().to_owned(),
        key: record.key().clone(),
        dhash: record.dhash(),
        columns: BTreeMap::new(),
        readers: BTreeMap::new(),
    };
    let cipher = Aes256Gcm::new_from_slice(record_key.as_ref())
        .map_err(|_| EnvelopeError::Rsa("bad key length".into()))?;
    for (name, value) in record.columns() {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let plaintext = Zeroizing::new(encode_value(value));
        let aad = sealed.column_aad(name);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::ColumnAuth(name.clone()))?;
        sealed.columns.insert(
            name.clone(),
            SealedColumn {
                nonce: nonce.to_vec(),
                ciphertext,
            },
        );
    }
    for reader in readers {
        sealed.wrap_for(&record_key, reader, rng)?;
    }
    Ok(sealed)
}

impl SealedRecord {
    /// The associated data that binds a column's ciphertext to this record and column.
    pub fn column_aad(&self, column: &str) -> [u8; 32] {
        let mut h = Hasher::new(Domain::EnvelopeAad);
        h.update_field(&[self.version])
            .update_field(self.address.as_bytes())
            .update_field(self.format.as_bytes())
            .update_field(&self.key.encode())
            .update_field(&self.dhash)
            .update_field(column.as_bytes());
        h.finish()
    }

    fn oaep(&self) -> Oaep {
        let mut h = Hasher::new(Domain::EnvelopeAad);
        h.update_field(b"wrap")
            .update_field(&[self.version])
            .update_field(self.address.as_bytes())
            .update_field(&self.key.encode())
            .update_field(&self.dhash);
        Oaep::new_with_label::<Sha256, _>(hex::encode(h.finish()))
    }

    fn wrap_for<R: RngCore + CryptoRng>(
        &mut self,
        record_key: &[u8; 32],
        reader: &RsaPublicKey,
        rng: &mut R,
    ) -> Result<(), EnvelopeError> {
        let wrapped = reader
            .encrypt(rng, self.oaep(), record_key)
            .map_err(|e| EnvelopeError::Rsa(e.to_string()))?;
        self.readers
            .insert(ReaderId::of(reader)?, WrappedKey(wrapped));
        Ok(())
    }

    fn unwrap_key(&self, reader: &RsaPrivateKey) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.version));
        }
        let id = ReaderId::of(&reader.to_public_key())?;
        let wrapped = self.readers.get(&id).ok_or(EnvelopeError::NotAReader(id))?;
        let key = Zeroizing::new(
            reader
                .decrypt(self.oaep(), &wrapped.0)
                .map_err(|_| EnvelopeError::Unwrap)?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if key.len() != out.len() {
            return Err(EnvelopeError::Unwrap);
        }
        out.copy_from_slice(&key);
        Ok(out)
    }

    fn decrypt_column(&self, cipher: &Aes256Gcm, name: &str) -> Result<Value, EnvelopeError> {
        let col = self
            .columns
            .get(name)
            .ok_or_else(|| EnvelopeError::UnknownColumn(name.to_owned()))?;
        if col.nonce.len() != 12 {
            return Err(EnvelopeError::ColumnAuth(name.to_owned()));
        }
        let aad = self.column_aad(name);
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&col.nonce),
                    Payload {
                        msg: &col.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| EnvelopeError::ColumnAuth(name.to_owned()))?,
        );
        Ok(decode_value(&plaintext)?)
    }

    fn cipher(&self, reader: &RsaPrivateKey) -> Result<Aes256Gcm, EnvelopeError> {
        let key = self.unwrap_key(reader)?;
        Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| EnvelopeError::Unwrap)
    }

    /// Opens every column, rebuilds the record and checks it against the envelope's `dHash`.
    ///
    /// # Errors
    /// Not a reader, a wrong or tampered wrap, a tampered column, or a `dHash` mismatch.
    pub fn open(&self, reader: &RsaPrivateKey) -> Result<Record, EnvelopeError> {
        let cipher = self.cipher(reader)?;
        let mut columns = BTreeMap::new();
        for name in self.columns.keys() {
            columns.insert(name.clone(), self.decrypt_column(&cipher, name)?);
        }
        let record = Record::new(self.format.clone(), self.key.clone(), columns)?;
        if record.dhash() != self.dhash {
            return Err(EnvelopeError::DhashMismatch);
        }
        Ok(record)
    }

    /// Opens only the named columns. Each is authenticated on its own; the record-wide `dHash`
    /// needs every column, so use [`SealedRecord::open`] when the whole record must be checked.
    ///
    /// # Errors
    /// As [`SealedRecord::open`], or an unknown column name.
    pub fn open_columns(
        &self,
        reader: &RsaPrivateKey,
        columns: &[&str],
    ) -> Result<BTreeMap<String, Value>, EnvelopeError> {
        if let Some(missing) = columns.iter().find(|c| !self.columns.contains_key(**c)) {
            return Err(EnvelopeError::UnknownColumn((*missing).to_owned()));
        }
        let cipher = self.cipher(reader)?;
        columns
            .iter()
            .map(|name| Ok(((*name).to_owned(), self.decrypt_column(&cipher, name)?)))
            .collect()
    }

    /// Lets `new_reader` open the record too, using an existing reader's key. Column
    /// ciphertexts are untouched, so a storage node need only update the wrapped keys.
    ///
    /// # Errors
    /// If `reader` cannot unwrap the record key.
    pub fn add_reader<R: RngCore + CryptoRng>(
        &mut self,
        reader: &RsaPrivateKey,
        new_reader: &RsaPublicKey,
        rng: &mut R,
    ) -> Result<ReaderId, EnvelopeError> {
        let key = self.unwrap_key(reader)?;
        self.wrap_for(&key, new_reader, rng)?;
        ReaderId::of(new_reader)
    }

    /// Removes a reader's wrapped key; returns whether it was present. (A reader who already
    /// unwrapped the key keeps what it learned: revocation needs a re-seal under a new key.)
    pub fn remove_reader(&mut self, id: &ReaderId) -> bool {
        self.readers.remove(id).is_some()
    }

    /// The canonical, versioned bytes of the envelope.
    ///
    /// # Errors
    /// Only for lengths beyond the canonical encoding's limits.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(codec::encode_versioned(self)?)
    }

    /// Decodes bytes made by [`SealedRecord::to_bytes`].
    ///
    /// # Errors
    /// Malformed or non-canonical bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let sealed: SealedRecord = codec::decode_versioned(bytes)?;
        if sealed.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(sealed.version));
        }
        Ok(sealed)
    }

    /// Total ciphertext bytes over all columns.
    pub fn ciphertext_len(&self) -> usize {
        self.columns
            .values()
            .fold(0usize, |acc, c| acc.saturating_add(c.ciphertext.len()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::tests::seed_records;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::sync::OnceLock;

    const ADDR: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";

    /// Two reader keys, generated once per test binary (RSA key generation is slow).
    fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
        static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = StdRng::seed_from_u64(7);
            (
                RsaPrivateKey::new(&mut rng, 2048).unwrap(),
                RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            )
        })
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    #[test]
    fn seed_records_seal_and_open_byte_exact() {
        let (owner, _) = keys();
        for record in seed_records() {
            let sealed = seal(&record, ADDR, &[&owner.to_public_key()], &mut rng()).unwrap();
            let bytes = sealed.to_bytes().unwrap();
            let back = SealedRecord::from_bytes(&bytes).unwrap();
            assert_eq!(back, sealed);
            let opened = back.open(owner).unwrap();
            assert_eq!(opened, record);
            assert_eq!(opened.canonical_columns(), record.canonical_columns());
            assert_eq!(opened.to_json_string(), record.to_json_string());
            // No column plaintext appears in the envelope bytes.
            for (_, plain) in record.canonical_columns() {
                if plain.len() >= 12 {
                    assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_slice()));
                }
            }
        }
    }

    #[test]
    fn projection_decrypts_only_named_columns() {
        let (owner, _) = keys();
        let trip = &seed_records()[0];
        let mut sealed = seal(trip, ADDR, &[&owner.to_public_key()], &mut rng()).unwrap();
        // Corrupt a column that the projection does not name: the projection still succeeds.
        sealed.columns.get_mut("len").unwrap().ciphertext[0] ^= 1;
        let got = sealed.open_columns(owner, &["GPS", "SPEED"]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["SPEED"], trip.columns()["SPEED"]);
        assert_eq!(got["GPS"], trip.columns()["GPS"]);
        assert!(matches!(
            sealed.open_columns(owner, &["NOPE"]),
            Err(EnvelopeError::UnknownColumn(c)) if c == "NOPE"
        ));
        // The full open notices the corrupted column.
        assert!(matches!(sealed.open(owner), Err(EnvelopeError::ColumnAuth(c)) if c == "len"));
    }

    #[test]
    fn other_keys_cannot_open_and_rewrap_adds_a_reader() {
        let (owner, buyer) = keys();
        let record = &seed_records()[1];
        let mut sealed = seal(record, ADDR, &[&owner.to_public_key()], &mut rng()).unwrap();
        assert!(matches!(
            sealed.open(buyer),
            Err(EnvelopeError::NotAReader(_))
        ));
        let columns_before = sealed.columns.clone();
        sealed
            .add_reader(owner, &buyer.to_public_key(), &mut rng())
            .unwrap();
        assert_eq!(
            sealed.columns, columns_before,
            "re-wrap must not touch ciphertexts"
        );
        assert_eq!(sealed.open(buyer).unwrap(), *record);
        assert!(sealed.remove_reader(&ReaderId::of(&buyer.to_public_key()).unwrap()));
        assert!(matches!(
            sealed.open(buyer),
            Err(EnvelopeError::NotAReader(_))
        ));
        // A non-reader cannot add readers.
        assert!(sealed
            .add_reader(buyer, &buyer.to_public_key(), &mut rng())
            .is_err());
    }

    #[test]
    fn swapped_columns_and_records_are_detected() {
        let (owner, _) = keys();
        let recs = seed_records();
        let pk = owner.to_public_key();
        let a = seal(&recs[1], ADDR, &[&pk], &mut rng()).unwrap();
        // Swap two columns inside one record.
        let mut swapped = a.clone();
        let price = swapped.columns["price"].clone();
        let point = swapped.columns["point"].clone();
        swapped.columns.insert("price".into(), point);
        swapped.columns.insert("point".into(), price);
        assert!(matches!(
            swapped.open(owner),
            Err(EnvelopeError::ColumnAuth(_))
        ));
        // Move the record to another address: the wrap label and every AAD change.
        let mut moved = a.clone();
        moved.address = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g".into();
        assert!(matches!(moved.open(owner), Err(EnvelopeError::Unwrap)));
        // Change the claimed dHash.
        let mut forged = a.clone();
        forged.dhash[0] ^= 1;
        assert!(matches!(forged.open(owner), Err(EnvelopeError::Unwrap)));
        // Tamper with the wrapped key.
        let mut bad_wrap = a.clone();
        bad_wrap.readers.values_mut().next().unwrap().0[10] ^= 1;
        assert!(matches!(bad_wrap.open(owner), Err(EnvelopeError::Unwrap)));
        // Transplant a column from another record sealed under the same reader.
        let b = seal(&recs[0], ADDR, &[&pk], &mut rng()).unwrap();
        let mut transplanted = b.clone();
        transplanted
            .columns
            .insert("VEHICLE_DATA".into(), a.columns["VEHICLE_DATA"].clone());
        assert!(matches!(
            transplanted.open(owner),
            Err(EnvelopeError::ColumnAuth(_))
        ));
    }

    #[test]
    fn nonces_are_unique_and_fresh_per_seal() {
        let (owner, _) = keys();
        let trip = &seed_records()[0];
        let mut r = rng();
        let a = seal(trip, ADDR, &[&owner.to_public_key()], &mut r).unwrap();
        let b = seal(trip, ADDR, &[&owner.to_public_key()], &mut r).unwrap();
        let mut nonces: Vec<&Vec<u8>> = a.columns.values().map(|c| &c.nonce).collect();
        nonces.extend(b.columns.values().map(|c| &c.nonce));
        let n = nonces.len();
        nonces.sort();
        nonces.dedup();
        assert_eq!(nonces.len(), n);
        assert_ne!(a.columns, b.columns);
        assert_eq!(a.dhash, b.dhash);
    }

    #[test]
    fn envelope_json_is_readable_and_round_trips() {
        let (owner, _) = keys();
        let sealed = seal(
            &seed_records()[2],
            ADDR,
            &[&owner.to_public_key()],
            &mut rng(),
        )
        .unwrap();
        let json = serde_json::to_string_pretty(&sealed).unwrap();
        assert!(json.contains("\"VEHICLE_DATA\": 1"), "{json}");
        let back: SealedRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        assert!(matches!(
            seal(&seed_records()[2], ADDR, &[], &mut rng()),
            Err(EnvelopeError::NoReaders)
        ));
    }

    #[test]
    fn malformed_envelope_bytes_are_errors() {
        let (owner, _) = keys();
        let sealed = seal(
            &seed_records()[1],
            ADDR,
            &[&owner.to_public_key()],
            &mut rng(),
        )
        .unwrap();
        let bytes = sealed.to_bytes().unwrap();
        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(SealedRecord::from_bytes(&bytes[..cut]).is_err());
        }
        let mut future = bytes.clone();
        future[0] = 2;
        assert!(SealedRecord::from_bytes(&future).is_err());
    }
}
