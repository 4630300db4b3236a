//! `dHash`: the record fingerprint attested on the chain, a Poseidon hash of the canonical
//! plaintext record (format, key, and its columns in the order given).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::poseidon::{hash_bytes, hash_elements};
use bls12_381::Scalar;

/// Domain tag of the outer record hash.
pub const DOMAIN_RECORD: u64 = 1;
/// Domain tag of the record's format string.
pub const DOMAIN_FORMAT: u64 = 2;
/// Domain tag of the record's canonical key bytes.
pub const DOMAIN_KEY: u64 = 3;
/// Domain tag of a column name.
pub const DOMAIN_COLUMN_NAME: u64 = 4;
/// Domain tag of a column's canonical value bytes.
pub const DOMAIN_COLUMN_VALUE: u64 = 5;

/// The field elements the outer record hash absorbs:
/// `[H_fmt(format), H_key(key), n_columns, H_name(name_0), H_value(value_0), …]`.
pub fn record_elements(format: &[u8], key: &[u8], columns: &[(&[u8], &[u8])]) -> Vec<Scalar> {
    let mut els = Vec::with_capacity(columns.len().saturating_mul(2).saturating_add(3));
    els.push(hash_bytes(DOMAIN_FORMAT, format));
    els.push(hash_bytes(DOMAIN_KEY, key));
    els.push(Scalar::from(columns.len() as u64));
    for (name, value) in columns {
        els.push(hash_bytes(DOMAIN_COLUMN_NAME, name));
        els.push(hash_bytes(DOMAIN_COLUMN_VALUE, value));
    }
    els
}

/// The record's dHash as a field element (see [`dhash`]).
pub fn dhash_scalar(format: &[u8], key: &[u8], columns: &[(&[u8], &[u8])]) -> Scalar {
    hash_elements(DOMAIN_RECORD, &record_elements(format, key, columns))
}

/// The record's dHash: the canonical 32-byte little-endian encoding of
/// `hash_elements(DOMAIN_RECORD, record_elements(format, key, columns))`.
///
/// Columns are hashed in the order given; callers pass them sorted by name (the canonical
/// record order), and this function does not check or impose that. Total for every input.
pub fn dhash(format: &[u8], key: &[u8], columns: &[(&[u8], &[u8])]) -> [u8; 32] {
    dhash_scalar(format, key, columns).to_bytes()
}

/// Parses a 32-byte dHash back into its field element; `None` if the bytes are not canonical.
pub fn dhash_from_bytes(bytes: &[u8; 32]) -> Option<Scalar> {
    Scalar::from_bytes(bytes).into()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn int_value(v: u64) -> Vec<u8> {
        let mut out = vec![0x03];
        out.extend_from_slice(&v.to_be_bytes());
        out
    }

    /// Cross-checked against an independent Python implementation of the same spec.
    #[test]
    fn dhash_known_answers() {
        let m = int_value(42);
        let o = int_value(120_042);
        let cols: [(&[u8], &[u8]); 2] = [(b"MILEAGE", &m), (b"ODOMETER", &o)];
        assert_eq!(
            hex::encode(dhash(b"trip-gps", b"\x01key", &cols)),
            "f1402b919de47c25a4d74708cae3c8a8fb6cf3daca91bab7468fbd9870bd1d57"
        );
        assert_eq!(
            hex::encode(dhash(b"", b"", &[])),
            "1c87429992b0e1dc25cfd300744f07755e8e5f127d3bfb5def6877205819181f"
        );
    }

    #[test]
    fn deterministic_and_round_trips() {
        let cols: [(&[u8], &[u8]); 1] = [(b"VIN", b"LBVNU79049SB81546")];
        let a = dhash(b"VIN_CODE", b"k", &cols);
        assert_eq!(a, dhash(b"VIN_CODE", b"k", &cols));
        assert_eq!(dhash_from_bytes(&a).unwrap().to_bytes(), a);
        assert!(dhash_from_bytes(&[0xff; 32]).is_none());
    }

    #[test]
    fn fields_are_domain_separated() {
        // Moving bytes between format, key, column name and value changes the hash.
        let base = dhash(b"f", b"k", &[(b"n", b"v")]);
        assert_ne!(base, dhash(b"k", b"f", &[(b"n", b"v")]));
        assert_ne!(base, dhash(b"f", b"k", &[(b"v", b"n")]));
        assert_ne!(base, dhash(b"fk", b"", &[(b"n", b"v")]));
        assert_ne!(base, dhash(b"f", b"k", &[(b"nv", b"")]));
        assert_ne!(base, dhash(b"f", b"k", &[(b"n", b"v"), (b"", b"")]));
        let order_a = dhash(b"f", b"k", &[(b"a", b"1"), (b"b", b"2")]);
        let order_b = dhash(b"f", b"k", &[(b"b", b"2"), (b"a", b"1")]);
        assert_ne!(order_a, order_b);
        assert_ne!(
            dhash(b"f", b"k", &[(b"n", b"ab")]),
            dhash(b"f", b"k", &[(b"n", b"ab\0")])
        );
    }

    proptest! {
        #[test]
        fn different_records_differ(
            f1 in proptest::collection::vec(any::<u8>(), 0..40),
            k1 in proptest::collection::vec(any::<u8>(), 0..70),
            v1 in proptest::collection::vec(any::<u8>(), 0..70),
            f2 in proptest::collection::vec(any::<u8>(), 0..40),
            k2 in proptest::collection::vec(any::<u8>(), 0..70),
            v2 in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            let a = dhash(&f1, &k1, &[(b"c", &v1)]);
            let b = dhash(&f2, &k2, &[(b"c", &v2)]);
            prop_assert_eq!(a == b, (f1, k1, v1) == (f2, k2, v2));
        }

        #[test]
        fn different_bytes_differ(a in proptest::collection::vec(any::<u8>(), 0..100),
                                  b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let ha = crate::poseidon::hash_bytes(DOMAIN_KEY, &a);
            let hb = crate::poseidon::hash_bytes(DOMAIN_KEY, &b);
            prop_assert_eq!(ha == hb, a == b);
        }
    }
}
