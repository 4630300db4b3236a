//! The record model: `{format, key, value}` as devices and wallets produce it.
//!
//! * The **key** is an ordered list of named parts (`{"SESSION_ID":1,"START_TIME":…}` keeps its
//!   written order). [`RecordKey::encode`] maps it to bytes whose lexicographic order is the key
//!   order: integers sort numerically, strings byte-wise, and the sentinel `"INF_MAX"` after
//!   everything, so a range `start ..= end-with-INF_MAX` reads as the brief's `getKVRange`.
//! * The **value** is a set of named columns, each any JSON value. Each column has one canonical
//!   binary form ([`encode_value`]): object members sorted, numbers typed, no whitespace, so the
//!   same data always gives the same bytes and the same `dHash`.
//! * [`Record::dhash`] is the record's fingerprint: Poseidon over the BLS12-381 scalar field (see
//!   `zk::dhash`), so zk circuits can prove statements about the same record cheaply.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The key sentinel that sorts after every other key part, as in the brief's range reads.
pub const INF_MAX: &str = "INF_MAX";
/// Longest accepted format name, in bytes.
pub const MAX_FORMAT_LEN: usize = 64;
/// Longest accepted column name, in bytes.
pub const MAX_COLUMN_NAME_LEN: usize = 128;
/// Largest accepted encoded key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Most columns in one record.
pub const MAX_COLUMNS: usize = 256;
/// Largest accepted sum of canonical column bytes in one record (16 MiB).
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// Deepest accepted nesting of a column value.
pub const MAX_VALUE_DEPTH: usize = 32;

/// Why a record, key or value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The JSON text did not parse, or lacked a field.
    #[error("malformed record json: {0}")]
    Json(String),
    /// The format name is empty or too long.
    #[error("format must be 1..={MAX_FORMAT_LEN} bytes, got {0}")]
    BadFormat(usize),
    /// The key has no parts.
    #[error("a record key needs at least one part")]
    EmptyKey,
    /// A key part name is empty or repeated.
    #[error("key part name {0:?} is empty or repeated")]
    BadKeyName(String),
    /// A key part holds a type keys cannot hold.
    #[error("key part {name:?} must be an integer, a string or \"INF_MAX\", got {found}")]
    BadKeyPart {
        /// The part's name.
        name: String,
        /// What was found instead.
        found: &'static str,
    },
    /// The encoded key exceeds [`MAX_KEY_LEN`].
    #[error("encoded key is {0} bytes, more than {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    /// Encoded key bytes that are not a valid encoding.
    #[error("malformed encoded key: {0}")]
    MalformedKey(&'static str),
    /// The value has no columns.
    #[error("a record value needs at least one column")]
    EmptyValue,
    /// Too many columns.
    #[error("{0} columns, more than {MAX_COLUMNS}")]
    TooManyColumns(usize),
    /// A column name is empty or too long.
    #[error("column name must be 1..={MAX_COLUMN_NAME_LEN} bytes: {0:?}")]
    BadColumnName(String),
    /// The record's values are too large.
    #[error("record values are {0} bytes, more than {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
    /// Nesting deeper than [`MAX_VALUE_DEPTH`].
    #[error("column value nested deeper than {MAX_VALUE_DEPTH}")]
    ValueTooDeep,
    /// A `format` column that disagrees with the record's format.
    #[error("value column \"format\" is {column:?} but the record format is {record:?}")]
    FormatMismatch {
        /// The record's format.
        record: String,
        /// The column's value.
        column: String,
    },
    /// Canonical value bytes that do not decode.
    #[error("malformed canonical value: {0}")]
    MalformedValue(&'static str),
    /// A requested column is not in the record.
    #[error("unknown column {0:?}")]
    UnknownColumn(String),
}

/// One part of a record key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    /// An integer (JSON numbers without fraction or exponent), ordered numerically.
    Int(i128),
    /// A string, ordered byte-wise.
    Str(String),
    /// The `INF_MAX` sentinel, after everything.
    Max,
}

const TAG_INT: u8 = 0x10;
const TAG_STR: u8 = 0x20;
const TAG_MAX: u8 = 0xff;

impl KeyPart {
    fn from_json(name: &str, v: &Value) -> Result<Self, RecordError> {
        let bad = |found| RecordError::BadKeyPart {
            name: name.to_owned(),
            found,
        };
        match v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok(KeyPart::Int(i128::from(u)))
                } else if let Some(i) = n.as_i64() {
                    Ok(KeyPart::Int(i128::from(i)))
                } else {
                    Err(bad("a fractional number"))
                }
            }
            Value::String(s) if s == INF_MAX => Ok(KeyPart::Max),
            Value::String(s) => Ok(KeyPart::Str(s.clone())),
            Value::Null => Err(bad("null")),
            Value::Bool(_) => Err(bad("a boolean")),
            Value::Array(_) => Err(bad("an array")),
            Value::Object(_) => Err(bad("an object")),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            KeyPart::Int(i) => u64::try_from(*i)
                .map(Value::from)
                .or_else(|_| i64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            KeyPart::Str(s) => Value::String(s.clone()),
            KeyPart::Max => Value::String(INF_MAX.to_owned()),
        }
    }
}

/// A record key: named parts in their written order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey(Vec<(String, KeyPart)>);

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Reads an escaped string up to its terminator; returns it and the rest.
fn unescape(input: &[u8]) -> Result<(Vec<u8>, &[u8]), RecordError> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        match rest {
            [0x00, 0x01, tail @ ..] => return Ok((out, tail)),
            [0x00, 0xff, tail @ ..] => {
                out.push(0);
                rest = tail;
            }
            [0x00, ..] => return Err(RecordError::MalformedKey("bad escape")),
            [b, tail @ ..] => {
                out.push(*b);
                rest = tail;
            }
            [] => return Err(RecordError::MalformedKey("unterminated string")),
        }
    }
}

impl RecordKey {
    /// Builds a key from parts in order.
    ///
    /// # Errors
    /// No parts, an empty or repeated name, or an encoding above [`MAX_KEY_LEN`].
    pub fn new(parts: Vec<(String, KeyPart)>) -> Result<Self, RecordError> {
        if parts.is_empty() {
            return Err(RecordError::EmptyKey);
        }
        for (i, (name, _)) in parts.iter().enumerate() {
            if name.is_empty() || parts.iter().take(i).any(|(n, _)| n == name) {
                return Err(RecordError::BadKeyName(name.clone()));
            }
        }
        if let Some((name, _)) = parts
            .iter()
            .find(|(_, p)| matches!(p, KeyPart::Str(s) if s == INF_MAX))
        {
            return Err(RecordError::BadKeyPart {
                name: name.clone(),
                found: "the INF_MAX sentinel as a plain string (use KeyPart::Max)",
            });
        }
        let key = RecordKey(parts);
        let len = key.encode_unchecked().len();
        if len > MAX_KEY_LEN {
            return Err(RecordError::KeyTooLong(len));
        }
        Ok(key)
    }

    /// Parses a key from JSON text such as `{"CARVIO_ID":1}`, keeping the written order.
    ///
    /// # Errors
    /// Malformed JSON or a key [`RecordKey::new`] rejects.
    pub fn from_json_str(text: &str) -> Result<Self, RecordError> {
        serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))
    }

    /// The parts in order.
    pub fn parts(&self) -> &[(String, KeyPart)] {
        &self.0
    }

    /// The order-preserving byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_unchecked()
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, part) in &self.0 {
            escape_into(&mut out, name.as_bytes());
            match part {
                KeyPart::Int(i) => {
                    out.push(TAG_INT);
                    let flipped = (*i as u128) ^ (1u128 << 127);
                    out.extend_from_slice(&flipped.to_be_bytes());
                }
                KeyPart::Str(s) => {
                    out.push(TAG_STR);
                    escape_into(&mut out, s.as_bytes());
                }
                KeyPart::Max => out.push(TAG_MAX),
            }
        }
        out
    }

    /// Decodes bytes made by [`RecordKey::encode`].
    ///
    /// # Errors
    /// Any bytes that are not exactly such an encoding.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_KEY_LEN {
            return Err(RecordError::KeyTooLong(bytes.len()));
        }
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let (name, rest) = unescape(bytes)?;
            let name =
                String::from_utf8(name).map_err(|_| RecordError::MalformedKey("name utf-8"))?;
            let (part, rest) = match rest.split_first() {
                Some((&TAG_INT, tail)) => {
                    let (num, tail) = tail
                        .split_first_chunk::<16>()
                        .ok_or(RecordError::MalformedKey("short integer"))?;
                    let raw = u128::from_be_bytes(*num) ^ (1u128 << 127);
                    (KeyPart::Int(raw as i128), tail)
                }
                Some((&TAG_STR, tail)) => {
                    let (s, tail) = unescape(tail)?;
                    let s = String::from_utf8(s).map_err(|_| RecordError::MalformedKey("utf-8"))?;
                    if s == INF_MAX {
                        return Err(RecordError::MalformedKey("INF_MAX encoded as a string"));
                    }
                    (KeyPart::Str(s), tail)
                }
                Some((&TAG_MAX, tail)) => (KeyPart::Max, tail),
                Some(_) => return Err(RecordError::MalformedKey("unknown part tag")),
                None => return Err(RecordError::MalformedKey("missing part")),
            };
            parts.push((name, part));
            bytes = rest;
        }
        RecordKey::new(parts)
    }

    /// The key as a JSON object in its written order (as text, since JSON maps may reorder).
    pub fn to_json_string(&self) -> String {
        let mut s = String::from("{");
        for (i, (name, part)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&Value::String(name.clone()).to_string());
            s.push(':');
            s.push_str(&part.to_json().to_string());
        }
        s.push('}');
        s
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl Serialize for RecordKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if s.is_human_readable() {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (name, part) in &self.0 {
                m.serialize_entry(name, &part.to_json())?;
            }
            m.end()
        } else {
            s.serialize_bytes(&self.encode())
        }
    }
}

impl<'de> Deserialize<'de> for RecordKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = RecordKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a record key: a JSON object of integers and strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordKey, A::Error> {
                let mut parts = Vec::new();
                while let Some((name, v)) = map.next_entry::<String, Value>()? {
                    let part = KeyPart::from_json(&name, &v).map_err(serde::de::Error::custom)?;
                    parts.push((name, part));
                }
                RecordKey::new(parts).map_err(serde::de::Error::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RecordKey, E> {
                RecordKey::decode(v).map_err(E::custom)
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<RecordKey, E> {
                self.visit_bytes(v)
            }
        }
        if d.is_human_readable() {
            d.deserialize_map(KeyVisitor)
        } else {
            d.deserialize_bytes(KeyVisitor)
        }
    }
}

/// A record: its format, its key and its named columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    format: String,
    key: RecordKey,
    columns: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    format: String,
    key: RecordKey,
    value: Map<String, Value>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

impl Record {
    /// Builds and validates a record.
    ///
    /// # Errors
    /// An invalid format name or column name, no columns, values too large or too deep, or a
    /// `format` column that disagrees with `format`.
    pub fn new(
        format: impl Into<String>,
        key: RecordKey,
        columns: BTreeMap<String, Value>,
    ) -> Result<Self, RecordError> {
        let format = format.into();
        if format.is_empty() || format.len() > MAX_FORMAT_LEN {
            return Err(RecordError::BadFormat(format.len()));
        }
        if columns.is_empty() {
            return Err(RecordError::EmptyValue);
        }
        if columns.len() > MAX_COLUMNS {
            return Err(RecordError::TooManyColumns(columns.len()));
        }
        let mut total = 0usize;
        for (name, v) in &columns {
            if name.is_empty() || name.len() > MAX_COLUMN_NAME_LEN {
                return Err(RecordError::BadColumnName(name.clone()));
            }
            check_depth(v, 0)?;
            total = total.saturating_add(encode_value(v).len());
            if total > MAX_VALUE_BYTES {
                return Err(RecordError::ValueTooLarge(total));
            }
        }
        if let Some(col) = columns.get("format") {
            if col.as_str() != Some(format.as_str()) {
                return Err(RecordError::FormatMismatch {
                    record: format,
                    column: col.to_string(),
                });
            }
        }
        Ok(Record {
            format,
            key,
            columns,
        })
    }

    /// Parses `{"format":…,"key":{…},"value":{…}}` (an optional `"comment"` is ignored).
    ///
    /// # Errors
    /// Malformed JSON, missing or unknown fields, or anything [`Record::new`] rejects.
    pub fn from_json_str(text: &str) -> Result<Self, RecordError> {
        let raw: RecordJson =
            serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))?;
        Record::new(raw.format, raw.key, raw.value.into_iter().collect())
    }

    /// Parses a JSON array of records, each entry on its own: the outer error is for text that
    /// is not a JSON array, the inner ones say why a given entry is not a valid record.
    ///
    /// # Errors
    /// Text that is not a JSON array.
    pub fn list_from_json_str(text: &str) -> Result<Vec<Result<Record, RecordError>>, RecordError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Record(RecordJson),
            Other(Value),
        }
        let entries: Vec<Entry> =
            serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))?;
        Ok(entries
            .into_iter()
            .map(|e| match e {
                Entry::Record(r) => Record::new(r.format, r.key, r.value.into_iter().collect()),
                Entry::Other(v) => match serde_json::from_value::<RecordJson>(v) {
                    Ok(r) => Record::new(r.format, r.key, r.value.into_iter().collect()),
                    Err(e) => Err(RecordError::Json(e.to_string())),
                },
            })
            .collect())
    }

    /// The record as JSON text, the key in its written order and columns sorted by name.
    pub fn to_json_string(&self) -> String {
        let value = Value::Object(self.columns.clone().into_iter().collect());
        format!(
            "{{\"format\":{},\"key\":{},\"value\":{}}}",
            Value::String(self.format.clone()),
            self.key.to_json_string(),
            value
        )
    }

    /// The format name.
    pub fn format(&self) -> &str {
        &self.format
    }

    /// The key.
    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    /// The columns by name.
    pub fn columns(&self) -> &BTreeMap<String, Value> {
        &self.columns
    }

    /// The canonical bytes of each column, sorted by name.
    pub fn canonical_columns(&self) -> Vec<(String, Vec<u8>)> {
        self.columns
            .iter()
            .map(|(n, v)| (n.clone(), encode_value(v)))
            .collect()
    }

    /// The record's fingerprint `dHash`: `zk::dhash(format, encoded key, canonical columns)`.
    pub fn dhash(&self) -> [u8; 32] {
        let key = self.key.encode();
        let cols = self.canonical_columns();
        let refs: Vec<(&[u8], &[u8])> = cols
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_slice()))
            .collect();
        zk::dhash(self.format.as_bytes(), &key, &refs)
    }
}

fn check_depth(v: &Value, depth: usize) -> Result<(), RecordError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(RecordError::ValueTooDeep);
    }
    let next = depth.saturating_add(1);
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| check_depth(x, next)),
        Value::Object(o) => o.values().try_for_each(|x| check_depth(x, next)),
        _ => Ok(()),
    }
}

const V_NULL: u8 = 0x00;
const V_FALSE: u8 = 0x01;
const V_TRUE: u8 = 0x02;
const V_UINT: u8 = 0x03;
const V_NEG: u8 = 0x04;
const V_FLOAT: u8 = 0x05;
const V_STR: u8 = 0x06;
const V_ARRAY: u8 = 0x07;
const V_OBJECT: u8 = 0x08;

/// The canonical binary form of a column value.
///
/// Tags: `00` null, `01` false, `02` true, `03`+u64 a non-negative integer, `04`+i64 a negative
/// integer, `05`+f64 bits any other number, `06`+u32 length+UTF-8 a string, `07`+u32 count an
/// array, `08`+u32 count an object with members sorted by name (each name u32-length-prefixed).
/// All integers big-endian. A non-negative integer is thus exactly 9 bytes, which the mileage
/// circuit relies on.
pub fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value_into(&mut out, v);
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths above u32 cannot occur: records are bounded far below 4 GiB before encoding.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn encode_value_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(V_NULL),
        Value::Bool(false) => out.push(V_FALSE),
        Value::Bool(true) => out.push(V_TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(V_UINT);
                out.extend_from_slice(&u.to_be_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(V_NEG);
                out.extend_from_slice(&i.to_be_bytes());
            } else {
                out.push(V_FLOAT);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_be_bytes());
            }
        }
        Value::String(s) => {
            out.push(V_STR);
            put_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(a) => {
            out.push(V_ARRAY);
            put_len(out, a.len());
            for x in a {
                encode_value_into(out, x);
            }
        }
        Value::Object(o) => {
            out.push(V_OBJECT);
            put_len(out, o.len());
            let mut members: Vec<(&String, &Value)> = o.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (k, x) in members {
                put_len(out, k.len());
                out.extend_from_slice(k.as_bytes());
                encode_value_into(out, x);
            }
        }
    }
}

/// Decodes bytes made by [`encode_value`], rejecting any non-canonical form.
///
/// # Errors
/// Truncated or trailing bytes, unknown tags, unsorted or repeated object members, a negative
/// tag on a non-negative integer, a non-finite float, invalid UTF-8, or nesting too deep.
pub fn decode_value(bytes: &[u8]) -> Result<Value, RecordError> {
    let (v, rest) = decode_at(bytes, 0)?;
    if !rest.is_empty() {
        return Err(RecordError::MalformedValue("trailing bytes"));
    }
    Ok(v)
}

fn take_len(input: &[u8]) -> Result<(usize, &[u8]), RecordError> {
    let (len, rest) = input
        .split_first_chunk::<4>()
        .ok_or(RecordError::MalformedValue("short length"))?;
    Ok((u32::from_be_bytes(*len) as usize, rest))
}

fn take_bytes(input: &[u8], n: usize) -> Result<(&[u8], &[u8]), RecordError> {
    if input.len() < n {
        return Err(RecordError::MalformedValue("truncated"));
    }
    Ok(input.split_at(n))
}

fn decode_at(input: &[u8], depth: usize) -> Result<(Value, &[u8]), RecordError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(RecordError::ValueTooDeep);
    }
    let next = depth.saturating_add(1);
    let (&tag, rest) = input
        .split_first()
        .ok_or(RecordError::MalformedValue("empty"))?;
    match tag {
        V_NULL => Ok((Value::Null, rest)),
        V_FALSE => Ok((Value::Bool(false), rest)),
        V_TRUE => Ok((Value::Bool(true), rest)),
        V_UINT => {
            let (n, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(RecordError::MalformedValue("short integer"))?;
            Ok((Value::from(u64::from_be_bytes(*n)), rest))
        }
        V_NEG => {
            let (n, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(RecordError::MalformedValue("short integer"))?;
            let i = i64::from_be_bytes(*n);
            if i >= 0 {
                return Err(RecordError::MalformedValue(
                    "non-negative integer with negative tag",
                ));
            }
            Ok((Value::from(i), rest))
        }
        V_FLOAT => {
            let (n, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(RecordError::MalformedValue("short float"))?;
            let f = f64::from_bits(u64::from_be_bytes(*n));
            let num = Number::from_f64(f).ok_or(RecordError::MalformedValue("non-finite float"))?;
            // A float that serde_json would read back as an integer is not canonical.
            if num.is_u64() || num.is_i64() {
                return Err(RecordError::MalformedValue("integer encoded as float"));
            }
            Ok((Value::Number(num), rest))
        }
        V_STR => {
            let (len, rest) = take_len(rest)?;
            let (s, rest) = take_bytes(rest, len)?;
            let s = std::str::from_utf8(s).map_err(|_| RecordError::MalformedValue("utf-8"))?;
            Ok((Value::String(s.to_owned()), rest))
        }
        V_ARRAY => {
            let (count, mut rest) = take_len(rest)?;
            if count > rest.len() {
                return Err(RecordError::MalformedValue("array count exceeds input"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let (v, r) = decode_at(rest, next)?;
                items.push(v);
                rest = r;
            }
            Ok((Value::Array(items), rest))
        }
        V_OBJECT => {
            let (count, mut rest) = take_len(rest)?;
            if count > rest.len() {
                return Err(RecordError::MalformedValue("object count exceeds input"));
            }
            let mut map = Map::new();
            let mut last: Option<&[u8]> = None;
            for _ in 0..count {
                let (len, r) = take_len(rest)?;
                let (name, r) = take_bytes(r, len)?;
                if last.is_some_and(|l| name <= l) {
                    return Err(RecordError::MalformedValue("object members not sorted"));
                }
                last = Some(name);
                let name =
                    std::str::from_utf8(name).map_err(|_| RecordError::MalformedValue("utf-8"))?;
                let (v, r) = decode_at(r, next)?;
                map.insert(name.to_owned(), v);
                rest = r;
            }
            Ok((Value::Object(map), rest))
        }
        _ => Err(RecordError::MalformedValue("unknown tag")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The brief's example records, parsed from the shared seed file's text.
    pub(crate) fn seed_records() -> Vec<Record> {
        let text = include_str!("../../../tests/data/seed-records.json");
        let entries = Record::list_from_json_str(text).unwrap();
        assert_eq!(entries.len(), 4);
        // The fourth entry is the range example, not a record.
        assert!(entries[3].is_err());
        entries.into_iter().filter_map(Result::ok).collect()
    }

    #[test]
    fn seed_copy_matches_the_shared_brief() {
        // The repository keeps an exact copy so that tests never depend on files outside it;
        // where the brief's own file sits beside the clone, the copy must not have drifted.
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/seed-records.json");
        if let Ok(original) = std::fs::read_to_string(&shared) {
            assert_eq!(
                original,
                include_str!("../../../tests/data/seed-records.json"),
                "tests/data/seed-records.json differs from {}",
                shared.display()
            );
        }
    }

    #[test]
    fn seed_records_parse_and_keep_key_order() {
        let recs = seed_records();
        assert_eq!(recs.len(), 3);
        let trip = &recs[0];
        assert_eq!(trip.format(), "trip-gps");
        let names: Vec<&str> = trip.key().parts().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["SESSION_ID", "START_TIME", "END_TIME"]);
        assert_eq!(trip.columns()["GPS"].as_array().unwrap().len(), 10);
        assert_eq!(recs[1].key().to_json_string(), r#"{"CARVIO_ID":1}"#);
        assert_eq!(recs[2].columns()["VIN"], "LBVNU79049SB81546");
    }

    #[test]
    fn range_bounds_from_the_brief_enclose_the_trip() {
        let start = RecordKey::from_json_str(
            r#"{"SESSION_ID":1,"START_TIME":20160511071428,"END_TIME":20160511094623}"#,
        )
        .unwrap();
        let end = RecordKey::from_json_str(
            r#"{"SESSION_ID":1,"START_TIME":20160511071428,"END_TIME":"INF_MAX"}"#,
        )
        .unwrap();
        let later = RecordKey::from_json_str(
            r#"{"SESSION_ID":1,"START_TIME":20160511071428,"END_TIME":20991231000000}"#,
        )
        .unwrap();
        let next_session =
            RecordKey::from_json_str(r#"{"SESSION_ID":2,"START_TIME":0,"END_TIME":0}"#).unwrap();
        let trip = seed_records()[0].key().encode();
        assert_eq!(trip, start.encode());
        assert!(start.encode() <= trip && trip <= end.encode());
        assert!(later.encode() < end.encode());
        assert!(next_session.encode() > end.encode());
    }

    #[test]
    fn malformed_records_get_clear_errors() {
        let cases = [
            ("{", "malformed record json"),
            (
                r#"{"format":"x","key":{},"value":{"a":1}}"#,
                "at least one part",
            ),
            (
                r#"{"format":"x","key":{"a":1.5},"value":{"a":1}}"#,
                "fractional",
            ),
            (
                r#"{"format":"x","key":{"a":[1]},"value":{"a":1}}"#,
                "an array",
            ),
            (
                r#"{"format":"","key":{"a":1},"value":{"a":1}}"#,
                "format must be",
            ),
            (
                r#"{"format":"x","key":{"a":1},"value":{}}"#,
                "at least one column",
            ),
            (
                r#"{"format":"x","key":{"a":1},"value":{"format":"y"}}"#,
                "record format is",
            ),
            (
                r#"{"format":"x","key":{"a":1},"value":{"a":1},"extra":1}"#,
                "unknown field",
            ),
            (r#"{"format":"x","value":{"a":1}}"#, "missing field"),
            (
                r#"{"format":"x","key":{"a":1,"a":2},"value":{"a":1}}"#,
                "empty or repeated",
            ),
        ];
        for (text, needle) in cases {
            let err = Record::from_json_str(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn dhash_is_stable_and_sensitive() {
        let recs = seed_records();
        let a = recs[1].clone();
        assert_eq!(
            a.dhash(),
            Record::from_json_str(&a.to_json_string()).unwrap().dhash()
        );
        let mut cols = a.columns().clone();
        cols.insert("price".into(), Value::from(201));
        let b = Record::new(a.format(), a.key().clone(), cols).unwrap();
        assert_ne!(a.dhash(), b.dhash());
        let c = Record::new(
            a.format(),
            RecordKey::from_json_str(r#"{"CARVIO_ID":2}"#).unwrap(),
            a.columns().clone(),
        )
        .unwrap();
        assert_ne!(a.dhash(), c.dhash());
        // Member order inside a nested object does not change the canonical bytes.
        let x = Record::from_json_str(
            r#"{"format":"f","key":{"k":1},"value":{"loc":{"lat":1,"lng":2}}}"#,
        )
        .unwrap();
        let y = Record::from_json_str(
            r#"{"format":"f","key":{"k":1},"value":{"loc":{"lng":2,"lat":1}}}"#,
        )
        .unwrap();
        assert_eq!(x.dhash(), y.dhash());
    }

    #[test]
    fn value_encoding_of_an_integer_is_nine_bytes() {
        assert_eq!(
            encode_value(&Value::from(200u64)),
            [3, 0, 0, 0, 0, 0, 0, 0, 200]
        );
    }

    #[test]
    fn seed_values_round_trip_byte_exact() {
        for r in seed_records() {
            for (name, bytes) in r.canonical_columns() {
                let back = decode_value(&bytes).unwrap();
                assert_eq!(back, r.columns()[&name]);
                assert_eq!(encode_value(&back), bytes);
                // The JSON text of the decoded value equals the original column's JSON text.
                assert_eq!(back.to_string(), r.columns()[&name].to_string());
            }
        }
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn key_part() -> impl Strategy<Value = KeyPart> {
        prop_oneof![
            any::<i64>().prop_map(|i| KeyPart::Int(i128::from(i))),
            any::<u64>().prop_map(|i| KeyPart::Int(i128::from(i))),
            "[a-z\\x00]{0,6}".prop_map(KeyPart::Str),
            Just(KeyPart::Max),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip(v in json_value()) {
            let bytes = encode_value(&v);
            let back = decode_value(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(encode_value(&back), bytes);
        }

        #[test]
        fn value_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(v) = decode_value(&bytes) {
                // Anything accepted is canonical.
                prop_assert_eq!(encode_value(&v), bytes);
            }
        }

        #[test]
        fn keys_round_trip(parts in proptest::collection::vec(key_part(), 1..4)) {
            let named: Vec<(String, KeyPart)> =
                parts.into_iter().enumerate().map(|(i, p)| (format!("K{i}"), p)).collect();
            let key = RecordKey::new(named).unwrap();
            let back = RecordKey::decode(&key.encode()).unwrap();
            prop_assert_eq!(&back, &key);
            let json = RecordKey::from_json_str(&key.to_json_string()).unwrap();
            prop_assert_eq!(json, key);
        }

        #[test]
        fn key_encoding_preserves_order(a in key_part(), b in key_part(), c in key_part(), d in key_part()) {
            let ka = RecordKey::new(vec![("A".into(), a.clone()), ("B".into(), c.clone())]).unwrap();
            let kb = RecordKey::new(vec![("A".into(), b.clone()), ("B".into(), d.clone())]).unwrap();
            prop_assert_eq!(ka.encode().cmp(&kb.encode()), (a, c).cmp(&(b, d)));
        }

        #[test]
        fn key_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(k) = RecordKey::decode(&bytes) {
                prop_assert_eq!(k.encode(), bytes);
            }
        }
    }
}
