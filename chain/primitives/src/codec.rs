//! The canonical binary encoding of everything CarChain hashes or signs.
//!
//! Types derive `serde::Serialize`/`Deserialize` and go through [`to_vec`] / [`from_slice`]. The
//! format is not self-describing and has exactly one encoding per value, so equal values hash
//! equal and a decoder can reject anything non-canonical:
//!
//! | value | bytes |
//! |---|---|
//! | `bool` | `0x00` or `0x01` (anything else is rejected) |
//! | unsigned / signed integers | fixed width, big-endian (two's complement for signed) |
//! | `char` | its scalar value as `u32` |
//! | string, bytes | `u32` length, then the bytes (strings must be UTF-8) |
//! | `Option` | `0x00` for `None`, `0x01` then the value for `Some` |
//! | sequence, tuple, struct | `u32` count for sequences; then the elements in order (no field names) |
//! | map | `u32` count, then key/value pairs sorted by the bytes of the encoded key (no repeats) |
//! | enum | `u32` variant index, then the variant's content |
//! | unit, unit struct | nothing |
//!
//! Sorting maps by encoded key (not by the key type's own order) makes the encoding independent
//! of the map type: a `HashMap` and a `BTreeMap` with the same entries encode identically.
//! Floats are refused: no float may reach consensus. Lengths are bounded by [`Limits`] before any
//! allocation, and trailing bytes after a value are an error. Top-level messages that cross the
//! network or the disk are wrapped with [`encode_versioned`] so the format can evolve.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use serde::{ser, Deserialize, Serialize};
use std::fmt::Display;

/// The current version byte written by [`encode_versioned`].
pub const FORMAT_VERSION: u8 = 1;

/// Upper bounds a decoder enforces before trusting any length read from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_input: usize,
    /// Largest accepted element count of a single sequence or map.
    pub max_items: u32,
    /// Deepest accepted nesting of sequences, maps, structs and enums.
    pub max_depth: u16,
}

impl Limits {
    /// Limits for network and disk input: 16 MiB, 1 Mi items, depth 64.
    pub const DEFAULT: Limits = Limits {
        max_input: 16 << 20,
        max_items: 1 << 20,
        max_depth: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input: needed {needed} more bytes")]
    UnexpectedEnd {
        /// How many bytes were missing.
        needed: usize,
    },
    /// Bytes were left over after the value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean byte {0:#04x}")]
    InvalidBool(u8),
    /// An option tag other than 0 or 1.
    #[error("invalid option tag {0:#04x}")]
    InvalidOptionTag(u8),
    /// A string that is not UTF-8.
    #[error("string is not valid utf-8")]
    InvalidUtf8,
    /// A `char` that is not a Unicode scalar value.
    #[error("invalid char {0:#x}")]
    InvalidChar(u32),
    /// A length or count above the decoder's limit.
    #[error("length {len} exceeds the limit {limit}")]
    TooLong {
        /// The length read or written.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Nesting deeper than the decoder's limit.
    #[error("nesting deeper than {0}")]
    TooDeep(u16),
    /// Map keys that are not strictly increasing (unsorted or duplicated).
    #[error("map keys are not in strictly increasing canonical order")]
    NonCanonicalMap,
    /// A float, which the canonical encoding refuses.
    #[error("floating-point values are not allowed in the canonical encoding")]
    FloatNotAllowed,
    /// A type the format cannot describe (e.g. `deserialize_any`).
    #[error("unsupported by the canonical encoding: {0}")]
    Unsupported(&'static str),
    /// A sequence serialized without a known length.
    #[error("sequences and maps must have a known length")]
    UnknownLength,
    /// A version byte this build does not understand.
    #[error("unsupported format version {found} (this build reads {expected})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        expected: u8,
    },
    /// A type-specific validation error raised by a `Deserialize` impl.
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for CodecError {
    fn custom<T: Display>(msg: T) -> Self {
        CodecError::Custom(msg.to_string())
    }
}

impl de::Error for CodecError {
    fn custom<T: Display>(msg: T) -> Self {
        CodecError::Custom(msg.to_string())
    }
}

/// Encodes a value canonically.
///
/// # Errors
/// Fails for floats, sequences of unknown length, unsorted maps and lengths above `u32::MAX`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    value.serialize(&mut Encoder { out: &mut out })?;
    Ok(out)
}

/// Decodes a value from exactly `bytes`, with [`Limits::DEFAULT`].
///
/// # Errors
/// Any deviation from the canonical form, truncation, trailing bytes or a limit exceeded.
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    from_slice_with_limits(bytes, Limits::DEFAULT)
}

/// Decodes a value from exactly `bytes` with explicit limits.
///
/// # Errors
/// As [`from_slice`].
pub fn from_slice_with_limits<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    limits: Limits,
) -> Result<T, CodecError> {
    if bytes.len() > limits.max_input {
        return Err(CodecError::TooLong {
            len: bytes.len() as u64,
            limit: limits.max_input as u64,
        });
    }
    let mut d = Decoder {
        input: bytes,
        limits,
        depth: 0,
    };
    let value = T::deserialize(&mut d)?;
    if !d.input.is_empty() {
        return Err(CodecError::TrailingBytes(d.input.len()));
    }
    Ok(value)
}

/// Encodes `value` preceded by the [`FORMAT_VERSION`] byte.
///
/// # Errors
/// As [`to_vec`].
pub fn encode_versioned<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    value.serialize(&mut Encoder { out: &mut out })?;
    Ok(out)
}

/// Decodes a value written by [`encode_versioned`].
///
/// # Errors
/// An unknown version byte, or anything [`from_slice`] rejects.
pub fn decode_versioned<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::UnexpectedEnd { needed: 1 }),
        Some((&FORMAT_VERSION, rest)) => from_slice(rest),
        Some((&found, _)) => Err(CodecError::UnsupportedVersion {
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

fn len_u32(len: usize) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| CodecError::TooLong {
        len: len as u64,
        limit: u64::from(u32::MAX),
    })
}

struct Encoder<'o> {
    out: &'o mut Vec<u8>,
}

impl Encoder<'_> {
    fn put_len(&mut self, len: usize) -> Result<(), CodecError> {
        self.out.extend_from_slice(&len_u32(len)?.to_be_bytes());
        Ok(())
    }
}

macro_rules! ser_int {
    ($method:ident, $ty:ty) => {
        fn $method(self, v: $ty) -> Result<(), CodecError> {
            self.out.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
    };
}

impl<'a, 'o> ser::Serializer for &'a mut Encoder<'o> {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = MapEncoder<'a, 'o>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), CodecError> {
        self.out.push(u8::from(v));
        Ok(())
    }
    ser_int!(serialize_i8, i8);
    ser_int!(serialize_i16, i16);
    ser_int!(serialize_i32, i32);
    ser_int!(serialize_i64, i64);
    ser_int!(serialize_i128, i128);
    ser_int!(serialize_u8, u8);
    ser_int!(serialize_u16, u16);
    ser_int!(serialize_u32, u32);
    ser_int!(serialize_u64, u64);
    ser_int!(serialize_u128, u128);
    fn serialize_f32(self, _: f32) -> Result<(), CodecError> {
        Err(CodecError::FloatNotAllowed)
    }
    fn serialize_f64(self, _: f64) -> Result<(), CodecError> {
        Err(CodecError::FloatNotAllowed)
    }
    fn serialize_char(self, v: char) -> Result<(), CodecError> {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_str(self, v: &str) -> Result<(), CodecError> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CodecError> {
        self.put_len(v.len())?;
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CodecError> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CodecError> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CodecError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CodecError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), CodecError> {
        self.serialize_u32(index)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        self.serialize_u32(index)?;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, CodecError> {
        self.put_len(len.ok_or(CodecError::UnknownLength)?)?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CodecError> {
        self.serialize_u32(index)?;
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapEncoder<'a, 'o>, CodecError> {
        self.put_len(len.ok_or(CodecError::UnknownLength)?)?;
        Ok(MapEncoder {
            enc: self,
            entries: Vec::new(),
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CodecError> {
        self.serialize_u32(index)?;
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl ser::$trait for &mut Encoder<'_> {
            type Ok = ();
            type Error = CodecError;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<(), CodecError> {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), CodecError> {
                Ok(())
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, key);
compound!(SerializeStructVariant, serialize_field, key);

/// Buffers map entries, then writes them sorted by their encoded keys.
#[doc(hidden)]
pub struct MapEncoder<'a, 'o> {
    enc: &'a mut Encoder<'o>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ser::SerializeMap for MapEncoder<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        self.entries.push((to_vec(key)?, Vec::new()));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        let slot = self
            .entries
            .last_mut()
            .ok_or(CodecError::Unsupported("map value without a key"))?;
        slot.1 = to_vec(value)?;
        Ok(())
    }
    fn end(mut self) -> Result<(), CodecError> {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        if self
            .entries
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.0 == b.0))
        {
            return Err(CodecError::NonCanonicalMap);
        }
        for (k, v) in self.entries {
            self.enc.out.extend_from_slice(&k);
            self.enc.out.extend_from_slice(&v);
        }
        Ok(())
    }
}

struct Decoder<'de> {
    input: &'de [u8],
    limits: Limits,
    depth: u16,
}

impl<'de> Decoder<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], CodecError> {
        if self.input.len() < n {
            return Err(CodecError::UnexpectedEnd {
                needed: n.saturating_sub(self.input.len()),
            });
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    fn len(&mut self) -> Result<usize, CodecError> {
        let len = u32::from_be_bytes(self.array::<4>()?);
        if len > self.limits.max_items {
            return Err(CodecError::TooLong {
                len: u64::from(len),
                limit: u64::from(self.limits.max_items),
            });
        }
        Ok(len as usize)
    }

    fn byte_len(&mut self) -> Result<usize, CodecError> {
        let len = u32::from_be_bytes(self.array::<4>()?) as usize;
        if len > self.input.len() {
            return Err(CodecError::UnexpectedEnd {
                needed: len.saturating_sub(self.input.len()),
            });
        }
        Ok(len)
    }

    fn enter(&mut self) -> Result<(), CodecError> {
        if self.depth >= self.limits.max_depth {
            return Err(CodecError::TooDeep(self.limits.max_depth));
        }
        self.depth = self.depth.saturating_add(1);
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

macro_rules! de_int {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
            visitor.$visit(<$ty>::from_be_bytes(self.array()?))
        }
    };
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::Unsupported("self-describing values"))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => Err(CodecError::InvalidBool(b)),
        }
    }
    de_int!(deserialize_i8, visit_i8, i8);
    de_int!(deserialize_i16, visit_i16, i16);
    de_int!(deserialize_i32, visit_i32, i32);
    de_int!(deserialize_i64, visit_i64, i64);
    de_int!(deserialize_i128, visit_i128, i128);
    de_int!(deserialize_u8, visit_u8, u8);
    de_int!(deserialize_u16, visit_u16, u16);
    de_int!(deserialize_u32, visit_u32, u32);
    de_int!(deserialize_u64, visit_u64, u64);
    de_int!(deserialize_u128, visit_u128, u128);
    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::FloatNotAllowed)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::FloatNotAllowed)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let raw = u32::from_be_bytes(self.array()?);
        visitor.visit_char(char::from_u32(raw).ok_or(CodecError::InvalidChar(raw))?)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.byte_len()?;
        let bytes = self.take(len)?;
        visitor.visit_borrowed_str(std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8)?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.byte_len()?;
        visitor.visit_borrowed_bytes(self.take(len)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_bytes(visitor)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => {
                self.enter()?;
                let v = visitor.visit_some(&mut *self);
                self.leave();
                v
            }
            b => Err(CodecError::InvalidOptionTag(b)),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.enter()?;
        let v = visitor.visit_newtype_struct(&mut *self);
        self.leave();
        v
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.len()?;
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.enter()?;
        let v = visitor.visit_seq(Elements {
            de: &mut *self,
            remaining: len,
        });
        self.leave();
        v
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.len()?;
        self.enter()?;
        let v = visitor.visit_map(Entries {
            de: &mut *self,
            remaining: len,
            last_key: None,
        });
        self.leave();
        v
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(fields.len(), visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.enter()?;
        let v = visitor.visit_enum(&mut *self);
        self.leave();
        v
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::Unsupported("identifiers"))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::Unsupported("ignored values"))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Decoder<'de>,
    remaining: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = CodecError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, CodecError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining = self.remaining.saturating_sub(1);
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never let a hostile count drive a large pre-allocation.
        Some(self.remaining.min(4096))
    }
}

struct Entries<'a, 'de> {
    de: &'a mut Decoder<'de>,
    remaining: usize,
    last_key: Option<&'de [u8]>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = CodecError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining = self.remaining.saturating_sub(1);
        let before = self.de.input;
        let key = seed.deserialize(&mut *self.de)?;
        let used = before.len().saturating_sub(self.de.input.len());
        let encoded = before.get(..used).unwrap_or_default();
        if let Some(last) = self.last_key {
            if encoded <= last {
                return Err(CodecError::NonCanonicalMap);
            }
        }
        self.last_key = Some(encoded);
        Ok(Some(key))
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, CodecError> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining.min(4096))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = CodecError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), CodecError> {
        let index = u32::from_be_bytes(self.array()?);
        let value = seed.deserialize(index.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = CodecError;
    fn unit_variant(self) -> Result<(), CodecError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, CodecError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        New(u64),
        Tuple(u8, String),
        Struct { a: bool, b: Option<i32> },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u32,
        name: String,
        #[serde(with = "serde_bytes_compat")]
        blob: Vec<u8>,
        tags: Vec<String>,
        map: BTreeMap<String, u64>,
        kind: Kind,
        opt: Option<Box<Sample>>,
        pair: (i64, char),
        big: u128,
    }

    /// Serializes `Vec<u8>` as one byte string instead of a sequence of u8.
    mod serde_bytes_compat {
        use serde::{Deserializer, Serializer};
        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
            }
            d.deserialize_bytes(V)
        }
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Unit),
            any::<u64>().prop_map(Kind::New),
            (any::<u8>(), ".{0,8}").prop_map(|(a, b)| Kind::Tuple(a, b)),
            (any::<bool>(), any::<Option<i32>>()).prop_map(|(a, b)| Kind::Struct { a, b }),
        ]
    }

    fn sample() -> impl Strategy<Value = Sample> {
        let leaf = (
            any::<u32>(),
            ".{0,16}",
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(".{0,4}", 0..4),
            proptest::collection::btree_map(".{0,6}", any::<u64>(), 0..5),
            kind(),
            (any::<i64>(), any::<char>()),
            any::<u128>(),
        )
            .prop_map(|(id, name, blob, tags, map, kind, pair, big)| Sample {
                id,
                name,
                blob,
                tags,
                map,
                kind,
                opt: None,
                pair,
                big,
            });
        leaf.prop_recursive(3, 8, 1, |inner| {
            (inner.clone(), inner).prop_map(|(mut outer, child)| {
                outer.opt = Some(Box::new(child));
                outer
            })
        })
    }

    proptest! {
        #[test]
        fn round_trips(s in sample()) {
            let bytes = to_vec(&s).unwrap();
            let back: Sample = from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &s);
            // Canonical: re-encoding the decoded value gives the same bytes.
            prop_assert_eq!(to_vec(&back).unwrap(), bytes);
        }

        #[test]
        fn truncation_is_an_error_never_a_panic(s in sample(), cut in any::<prop::sample::Index>()) {
            let bytes = to_vec(&s).unwrap();
            let cut = cut.index(bytes.len().max(1));
            if cut < bytes.len() {
                prop_assert!(from_slice::<Sample>(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = from_slice::<Sample>(&bytes);
            let _ = from_slice::<Vec<BTreeMap<String, Vec<u8>>>>(&bytes);
        }
    }

    #[test]
    fn layout_is_fixed_big_endian_with_length_prefixes() {
        let v = (1u16, "ab", Some(7u8), vec![true, false]);
        assert_eq!(
            to_vec(&v).unwrap(),
            vec![0, 1, 0, 0, 0, 2, b'a', b'b', 1, 7, 0, 0, 0, 2, 1, 0]
        );
        assert_eq!(
            to_vec(&Kind::New(5)).unwrap(),
            vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = to_vec(&42u32).unwrap();
        bytes.push(0);
        assert_eq!(from_slice::<u32>(&bytes), Err(CodecError::TrailingBytes(1)));
    }

    #[test]
    fn non_canonical_bool_and_option_are_rejected() {
        assert_eq!(from_slice::<bool>(&[2]), Err(CodecError::InvalidBool(2)));
        assert_eq!(
            from_slice::<Option<u8>>(&[3, 0]),
            Err(CodecError::InvalidOptionTag(3))
        );
    }

    #[test]
    fn floats_are_refused_both_ways() {
        assert_eq!(to_vec(&1.5f64), Err(CodecError::FloatNotAllowed));
        assert_eq!(
            from_slice::<f32>(&[0, 0, 0, 0]),
            Err(CodecError::FloatNotAllowed)
        );
    }

    #[test]
    fn maps_must_be_sorted_and_unique() {
        // A map with keys 2 then 1: hand-built, since BTreeMap always sorts.
        let bad = [0, 0, 0, 2, 2, 9, 1, 9];
        assert_eq!(
            from_slice::<BTreeMap<u8, u8>>(&bad),
            Err(CodecError::NonCanonicalMap)
        );
        let dup = [0, 0, 0, 2, 1, 9, 1, 8];
        assert_eq!(
            from_slice::<BTreeMap<u8, u8>>(&dup),
            Err(CodecError::NonCanonicalMap)
        );
        // Maps encode sorted by encoded key, whatever the map type or its own key order.
        let words = ["b", "aa", "ccc", "", "ab"];
        let hm: HashMap<String, u8> = words.iter().map(|w| (w.to_string(), 1)).collect();
        let bm: BTreeMap<String, u8> = words.iter().map(|w| (w.to_string(), 1)).collect();
        let bytes = to_vec(&hm).unwrap();
        assert_eq!(bytes, to_vec(&bm).unwrap());
        assert_eq!(from_slice::<BTreeMap<String, u8>>(&bytes).unwrap(), bm);
        // Shorter strings first (length prefix), so "" then "b" then "aa".
        assert_eq!(&bytes[4..9], &[0, 0, 0, 0, 1]);
        assert_eq!(&bytes[9..15], &[0, 0, 0, 1, b'b', 1]);
    }

    #[test]
    fn hostile_lengths_do_not_allocate_or_panic() {
        // A sequence claiming u32::MAX elements of u64 in a 4-byte input.
        let bytes = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            from_slice::<Vec<u64>>(&bytes),
            Err(CodecError::TooLong { .. })
        ));
        assert!(matches!(
            from_slice::<String>(&bytes),
            Err(CodecError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let limits = Limits {
            max_depth: 4,
            ..Limits::DEFAULT
        };
        let v = vec![vec![vec![vec![vec![1u8]]]]];
        let bytes = to_vec(&v).unwrap();
        assert_eq!(
            from_slice_with_limits::<Vec<Vec<Vec<Vec<Vec<u8>>>>>>(&bytes, limits),
            Err(CodecError::TooDeep(4))
        );
        assert!(from_slice::<Vec<Vec<Vec<Vec<Vec<u8>>>>>>(&bytes).is_ok());
    }

    #[test]
    fn versioned_envelope_checks_the_version() {
        let bytes = encode_versioned(&7u64).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode_versioned::<u64>(&bytes).unwrap(), 7);
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(
            decode_versioned::<u64>(&future),
            Err(CodecError::UnsupportedVersion {
                found: 9,
                expected: FORMAT_VERSION
            })
        );
        assert_eq!(
            decode_versioned::<u64>(&[]),
            Err(CodecError::UnexpectedEnd { needed: 1 })
        );
    }
}
