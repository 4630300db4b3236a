//! A sealed record as KVS cells: one cell per encrypted column, named as the column, plus a
//! header cell (named [`HEADER_COLUMN`], the empty string, which no record column can be) with
//! everything else of the envelope — address, format, key, `dHash` and the wrapped record keys.
//! A projection reads the header cell and the wanted columns only, so the storage cluster
//! moves no more ciphertext than the reader asked for.

use std::collections::BTreeMap;

use primitives::codec;
use primitives::envelope::{ReaderId, SealedColumn, SealedRecord, WrappedKey};
use primitives::RecordKey;
use serde::{Deserialize, Serialize};

use crate::proto::{Blob, Cells};

/// Name of the header cell.
pub const HEADER_COLUMN: &str = "";

/// Why cells are not a sealed record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CellsError {
    /// The header cell is missing.
    #[error("the record has no header cell")]
    NoHeader,
    /// A cell does not decode.
    #[error("cell {column:?} is malformed: {reason}")]
    Malformed {
        /// The cell.
        column: String,
        /// Why.
        reason: String,
    },
    /// The record could not be encoded.
    #[error("encoding: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u8,
    address: String,
    format: String,
    key: RecordKey,
    dhash: [u8; 32],
    readers: BTreeMap<ReaderId, WrappedKey>,
}

/// The cells of `sealed`.
///
/// # Errors
/// [`CellsError::Encode`] if a part does not encode.
pub fn to_cells(sealed: &SealedRecord) -> Result<Cells, CellsError> {
    let enc = |e: codec::CodecError| CellsError::Encode(e.to_string());
    let header = Header {
        version: sealed.version,
        address: sealed.address.clone(),
        format: sealed.format.clone(),
        key: sealed.key.clone(),
        dhash: sealed.dhash,
        readers: sealed.readers.clone(),
    };
    let mut cells = Cells::new();
    cells.insert(
        HEADER_COLUMN.to_owned(),
        Blob(codec::to_vec(&header).map_err(enc)?),
    );
    for (name, col) in &sealed.columns {
        cells.insert(name.clone(), Blob(codec::to_vec(col).map_err(enc)?));
    }
    Ok(cells)
}

/// The sealed record (or the projection) these cells hold.
///
/// # Errors
/// [`CellsError`] if the header is missing or a cell is malformed.
pub fn from_cells(cells: &Cells) -> Result<SealedRecord, CellsError> {
    let malformed = |column: &str| {
        let column = column.to_owned();
        move |e: codec::CodecError| CellsError::Malformed {
            column,
            reason: e.to_string(),
        }
    };
    let header: Header =
        codec::from_slice(&cells.get(HEADER_COLUMN).ok_or(CellsError::NoHeader)?.0)
            .map_err(malformed(HEADER_COLUMN))?;
    let mut columns = BTreeMap::new();
    for (name, cell) in cells.iter().filter(|(n, _)| n.as_str() != HEADER_COLUMN) {
        let col: SealedColumn = codec::from_slice(&cell.0).map_err(malformed(name))?;
        columns.insert(name.clone(), col);
    }
    Ok(SealedRecord {
        version: header.version,
        address: header.address,
        format: header.format,
        key: header.key,
        dhash: header.dhash,
        columns,
        readers: header.readers,
    })
}

/// The cells to fetch for a projection onto `columns` (the header cell plus those).
pub fn projection(columns: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(columns.len().saturating_add(1));
    out.push(HEADER_COLUMN.to_owned());
    out.extend(columns.iter().filter(|c| !c.is_empty()).cloned());
    out
}

/// Total bytes of `cells` (what the chain attests as the stored size).
pub fn stored_size(cells: &Cells) -> u64 {
    cells
        .iter()
        .map(|(n, c)| (n.len() as u64).saturating_add(c.0.len() as u64))
        .fold(0, u64::saturating_add)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use primitives::record::Record;

    fn rng() -> rand::rngs::ThreadRng {
        rand::thread_rng()
    }

    #[test]
    fn a_sealed_record_survives_the_cells_and_a_projection_opens() {
        let key = rsa::RsaPrivateKey::new(&mut rng(), 2048).unwrap();
        let public = key.to_public_key();
        let rec = Record::from_json_str(
            r#"{"format":"trip-gps","key":{"SESSION_ID":1},"value":{"GPS":[{"lat":1.5,"lng":2.5}],"SPEED":"0,23","VEHICLE_DATA":1}}"#,
        )
        .unwrap();
        let sealed = primitives::envelope::seal(&rec, "bc1qaddr", &[&public], &mut rng()).unwrap();
        let cells = to_cells(&sealed).unwrap();
        assert_eq!(cells.len(), 4);
        assert_eq!(from_cells(&cells).unwrap(), sealed);
        let want = projection(&["SPEED".to_owned()]);
        let part: Cells = cells
            .iter()
            .filter(|(n, _)| want.contains(n))
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        let opened = from_cells(&part)
            .unwrap()
            .open_columns(&key, &["SPEED"])
            .unwrap();
        assert_eq!(opened["SPEED"], serde_json::json!("0,23"));
        let mut no_header = cells.clone();
        no_header.remove(HEADER_COLUMN);
        assert!(matches!(from_cells(&no_header), Err(CellsError::NoHeader)));
        let mut bad = cells;
        bad.insert("GPS".into(), Blob(vec![1, 2, 3]));
        assert!(matches!(
            from_cells(&bad),
            Err(CellsError::Malformed { .. })
        ));
    }
}
