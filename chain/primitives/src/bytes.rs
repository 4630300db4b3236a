//! Serde adapters for byte fields: text (hex or base64) in human-readable formats such as JSON,
//! raw length-prefixed bytes in the canonical binary encoding.

/// `Vec<u8>` as base64 text in JSON and as a byte string in binary formats.
pub mod base64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    struct BytesVisitor;
    impl Visitor<'_> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes, or a base64 string")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            STANDARD.decode(v).map_err(E::custom)
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }

    /// Deserializes bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BytesVisitor)
        } else {
            d.deserialize_bytes(BytesVisitor)
        }
    }
}

/// `[u8; 32]` as hex text in JSON and as 32 raw bytes (no length prefix) in binary formats.
pub mod hex32 {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes a 32-byte array.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(v))
        } else {
            let mut t = s.serialize_tuple(32)?;
            for b in v {
                t.serialize_element(b)?;
            }
            t.end()
        }
    }

    struct ArrayVisitor;
    impl<'de> Visitor<'de> for ArrayVisitor {
        type Value = [u8; 32];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("32 bytes, or 64 hex digits")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<[u8; 32], E> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v, &mut out).map_err(E::custom)?;
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 32], A::Error> {
            let mut out = [0u8; 32];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }

    /// Deserializes a 32-byte array.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(ArrayVisitor)
        } else {
            d.deserialize_tuple(32, ArrayVisitor)
        }
    }
}

/// `Vec<Vec<u8>>` as a sequence of byte strings, each as [`base64`] writes one. In the
/// canonical encoding this is byte-for-byte what a plain `Vec<Vec<u8>>` encodes to (a length,
/// then per element a length and its bytes), but each element is copied whole instead of
/// being visited byte by byte.
pub mod base64_seq {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Ref<'a>(&'a [u8]);
    impl Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::base64::serialize(self.0, s)
        }
    }

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Owned(#[serde(with = "super::base64")] Vec<u8>);

    /// Serializes the byte strings.
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&Ref(x))?;
        }
        seq.end()
    }

    /// Deserializes the byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<Owned>::deserialize(d)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fast(#[serde(with = "super::base64_seq")] Vec<Vec<u8>>);

    proptest! {
        #[test]
        fn byte_string_sequences_encode_as_plain_nested_vectors(
            v in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)
        ) {
            let plain = crate::codec::to_vec(&v).unwrap();
            let fast = crate::codec::to_vec(&Fast(v.clone())).unwrap();
            prop_assert_eq!(&plain, &fast);
            prop_assert_eq!(crate::codec::from_slice::<Fast>(&plain).unwrap(), Fast(v.clone()));
            let json = serde_json::to_string(&Fast(v.clone())).unwrap();
            prop_assert_eq!(serde_json::from_str::<Fast>(&json).unwrap(), Fast(v));
        }
    }
}
