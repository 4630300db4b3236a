//! Plain records and the fixed circuit shapes they are padded into.

use crate::dhash::{
    dhash, dhash_scalar, DOMAIN_COLUMN_NAME, DOMAIN_COLUMN_VALUE, DOMAIN_FORMAT, DOMAIN_KEY,
};
use crate::gadget::{dhash_from_hashes, Elem, PaddedBytes};
use crate::ZkError;
use bellman::{ConstraintSystem, SynthesisError};
use bls12_381::Scalar;

/// A plaintext record as dHash sees it: format, canonical key bytes and (name, value) columns
/// in canonical order (sorted by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The format string (e.g. `trip-gps`).
    pub format: Vec<u8>,
    /// Canonical key bytes.
    pub key: Vec<u8>,
    /// Columns as (name, canonical value bytes), in the order they are hashed.
    pub columns: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Record {
    fn column_refs(&self) -> Vec<(&[u8], &[u8])> {
        self.columns
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect()
    }

    /// The record's 32-byte dHash.
    pub fn dhash(&self) -> [u8; 32] {
        dhash(&self.format, &self.key, &self.column_refs())
    }

    /// The record's dHash as a field element.
    pub fn dhash_scalar(&self) -> Scalar {
        dhash_scalar(&self.format, &self.key, &self.column_refs())
    }
}

/// The fixed shape of a circuit's record: exact column count and byte capacities. Shorter
/// fields are zero-padded inside the circuit (the padding is constrained to zero and the real
/// length selects which sponge block is the hash), so one parameter set serves every record
/// that fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordShape {
    /// Maximum format length in bytes.
    pub format_cap: usize,
    /// Maximum key length in bytes.
    pub key_cap: usize,
    /// Exact number of columns.
    pub columns: usize,
    /// Maximum column-name length in bytes.
    pub name_cap: usize,
    /// Maximum column-value length in bytes.
    pub value_cap: usize,
}

impl RecordShape {
    /// The 1 KiB shape used for benchmarks and the default parameter set: 32 + 64 + 4·(32 + 200)
    /// = 1024 bytes of capacity.
    pub const KIB: RecordShape = RecordShape {
        format_cap: 32,
        key_cap: 64,
        columns: 4,
        name_cap: 32,
        value_cap: 200,
    };

    /// A stable identifier, written into parameter and key file headers.
    pub fn id(&self) -> String {
        format!(
            "f{}-k{}-c{}-n{}-v{}",
            self.format_cap, self.key_cap, self.columns, self.name_cap, self.value_cap
        )
    }

    /// Total byte capacity.
    pub fn capacity(&self) -> usize {
        self.format_cap.saturating_add(self.key_cap).saturating_add(
            self.columns
                .saturating_mul(self.name_cap.saturating_add(self.value_cap)),
        )
    }

    /// Checks that `record` fits this shape.
    pub fn check(&self, record: &Record) -> Result<(), ZkError> {
        let too_long = |what: &str, len: usize, cap: usize| {
            if len > cap {
                Err(ZkError::Shape(format!(
                    "{what} is {len} bytes, capacity {cap}"
                )))
            } else {
                Ok(())
            }
        };
        too_long("format", record.format.len(), self.format_cap)?;
        too_long("key", record.key.len(), self.key_cap)?;
        if record.columns.len() != self.columns {
            return Err(ZkError::Shape(format!(
                "record has {} columns, shape needs exactly {}",
                record.columns.len(),
                self.columns
            )));
        }
        for (n, v) in &record.columns {
            too_long("column name", n.len(), self.name_cap)?;
            too_long("column value", v.len(), self.value_cap)?;
        }
        Ok(())
    }

    /// Number of field elements of the padded record (the plaintext of `fair_exchange`).
    pub fn message_len(&self) -> usize {
        let f = |cap: usize| PaddedBytes::chunks_for(cap).saturating_add(1);
        f(self.format_cap)
            .saturating_add(f(self.key_cap))
            .saturating_add(
                self.columns
                    .saturating_mul(f(self.name_cap).saturating_add(f(self.value_cap))),
            )
    }
}

/// A record allocated in a circuit.
pub(crate) struct RecordVar {
    fields: Vec<PaddedBytes>,
}

impl RecordVar {
    pub(crate) fn alloc<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        record: Option<&Record>,
        shape: &RecordShape,
    ) -> Result<Self, SynthesisError> {
        let mut fields = Vec::with_capacity(2 + 2 * shape.columns);
        fields.push(PaddedBytes::alloc(
            cs.namespace(|| "format"),
            record.map(|r| r.format.as_slice()),
            shape.format_cap,
        )?);
        fields.push(PaddedBytes::alloc(
            cs.namespace(|| "key"),
            record.map(|r| r.key.as_slice()),
            shape.key_cap,
        )?);
        for c in 0..shape.columns {
            let col = record.and_then(|r| r.columns.get(c));
            fields.push(PaddedBytes::alloc(
                cs.namespace(|| format!("name {c}")),
                col.map(|(n, _)| n.as_slice()),
                shape.name_cap,
            )?);
            fields.push(PaddedBytes::alloc(
                cs.namespace(|| format!("value {c}")),
                col.map(|(_, v)| v.as_slice()),
                shape.value_cap,
            )?);
        }
        Ok(RecordVar { fields })
    }

    /// In-circuit dHash.
    pub(crate) fn dhash<CS: ConstraintSystem<Scalar>>(
        &self,
        mut cs: CS,
    ) -> Result<Elem, SynthesisError> {
        let mut hashes = Vec::with_capacity(self.fields.len());
        for (i, f) in self.fields.iter().enumerate() {
            let domain = match i {
                0 => DOMAIN_FORMAT,
                1 => DOMAIN_KEY,
                i if i % 2 == 0 => DOMAIN_COLUMN_NAME,
                _ => DOMAIN_COLUMN_VALUE,
            };
            hashes.push(f.hash(cs.namespace(|| format!("field {i}")), domain)?);
        }
        let mut it = hashes.into_iter();
        let format = it.next().ok_or(SynthesisError::Unsatisfiable)?;
        let key = it.next().ok_or(SynthesisError::Unsatisfiable)?;
        let rest: Vec<Elem> = it.collect();
        let cols: Vec<(Elem, Elem)> = rest
            .chunks(2)
            .filter_map(|c| match c {
                [n, v] => Some((n.clone(), v.clone())),
                _ => None,
            })
            .collect();
        dhash_from_hashes(cs.namespace(|| "record"), format, key, &cols)
    }

    /// The padded field elements in order (format, key, then name/value per column).
    pub(crate) fn message(&self) -> Vec<Elem> {
        self.fields.iter().flat_map(|f| f.elems.clone()).collect()
    }
}

/// The padded element vector of a record (what `fair_exchange` encrypts).
pub fn record_message(record: &Record, shape: &RecordShape) -> Result<Vec<Scalar>, ZkError> {
    shape.check(record)?;
    let mut out = Vec::with_capacity(shape.message_len());
    out.extend(PaddedBytes::native_elems(&record.format, shape.format_cap));
    out.extend(PaddedBytes::native_elems(&record.key, shape.key_cap));
    for (n, v) in &record.columns {
        out.extend(PaddedBytes::native_elems(n, shape.name_cap));
        out.extend(PaddedBytes::native_elems(v, shape.value_cap));
    }
    Ok(out)
}

/// Inverse of [`record_message`]: rebuilds the record from its padded elements.
pub fn record_from_message(message: &[Scalar], shape: &RecordShape) -> Result<Record, ZkError> {
    if message.len() != shape.message_len() {
        return Err(ZkError::Shape(format!(
            "message has {} elements, shape needs {}",
            message.len(),
            shape.message_len()
        )));
    }
    let mut rest = message;
    let mut take = |cap: usize| -> Result<Vec<u8>, ZkError> {
        let n = PaddedBytes::chunks_for(cap).saturating_add(1);
        let (field, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        unpack(field, cap)
    };
    let format = take(shape.format_cap)?;
    let key = take(shape.key_cap)?;
    let mut columns = Vec::with_capacity(shape.columns);
    for _ in 0..shape.columns {
        let n = take(shape.name_cap)?;
        let v = take(shape.value_cap)?;
        columns.push((n, v));
    }
    Ok(Record {
        format,
        key,
        columns,
    })
}

fn unpack(field: &[Scalar], cap: usize) -> Result<Vec<u8>, ZkError> {
    let bad = |reason: &str| ZkError::Malformed {
        what: "record message",
        reason: reason.to_string(),
    };
    let (len_el, chunks) = field.split_first().ok_or_else(|| bad("empty field"))?;
    let len = crate::gadget::scalar_low_u64(*len_el);
    if Scalar::from(len) != *len_el || len > cap as u64 {
        return Err(bad("length out of range"));
    }
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    for (i, c) in chunks.iter().enumerate() {
        let start = i.saturating_mul(crate::poseidon::BYTES_PER_ELEMENT);
        let want = len
            .saturating_sub(start)
            .min(crate::poseidon::BYTES_PER_ELEMENT);
        let le = c.to_bytes();
        if le.iter().skip(want).any(|b| *b != 0) {
            return Err(bad("chunk wider than its length"));
        }
        out.extend(le.iter().take(want).rev());
    }
    Ok(out)
}
