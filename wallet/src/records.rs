//! Sealing and opening records with the wallet's keys, using the shared envelope of
//! `primitives::envelope`.
//!
//! Where a record goes: a device's record lives at the pool address chosen by its VID and day
//! ([`crate::DeviceList::locate`]); data the owner uploads from the wallet itself (the brief's
//! `putWalKV`, e.g. the `VIN_CODE` record) lives at the wallet's first receiving address
//! `m/84'/coin'/0'/0/0`. The record's day comes from its key's `START_TIME` or `DATE` part, or
//! its `datetime` / `date` column (`YYYYMMDD` or `YYYYMMDDhhmmss`), unless given explicitly.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;

use primitives::envelope::{seal, SealedRecord};
use primitives::record::{KeyPart, Record, RecordKey};
use rsa::RsaPublicKey;
use serde::Serialize;
use serde_json::Value;

use crate::devices::DeviceList;
use crate::error::{Result, WalletError};
use crate::keys::{Chain, HdKeys};
use crate::pool::{RecordDate, Vid};
use crate::reader_key::ReaderKey;

/// Key parts that carry a record's time, in order of preference.
const KEY_DATE_PARTS: [&str; 3] = ["START_TIME", "DATE", "datetime"];
/// Columns that carry a record's time, in order of preference.
const COLUMN_DATE_NAMES: [&str; 3] = ["datetime", "date", "DATE"];

/// The day a record belongs to, read from its key or columns (see the module docs).
pub fn record_date(record: &Record) -> Option<RecordDate> {
    date_of(record.key(), record.columns())
}

/// The day read from a key and (possibly a projection of) the columns.
pub fn date_of(key: &RecordKey, columns: &BTreeMap<String, Value>) -> Option<RecordDate> {
    for name in KEY_DATE_PARTS {
        let part = key.parts().iter().find(|(n, _)| n == name);
        if let Some((_, KeyPart::Int(n))) = part {
            if let Ok(d) = RecordDate::from_number(*n) {
                return Some(d);
            }
        }
    }
    for name in COLUMN_DATE_NAMES {
        let Some(v) = columns.get(name) else {
            continue;
        };
        let parsed = match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|u| RecordDate::from_number(i128::from(u)).ok()),
            Value::String(s) => RecordDate::parse(s).ok(),
            _ => None,
        };
        if parsed.is_some() {
            return parsed;
        }
    }
    None
}

/// Where a record is stored and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The storage address (the KVS partition key).
    pub address: String,
    /// The BIP32 path of the address.
    pub path: String,
    /// The device, for device data; `None` for the wallet's own data.
    pub vid: Option<Vid>,
    /// The record's day, for device data.
    pub date: Option<RecordDate>,
}

/// Decides where `record` is stored: in `vid`'s pool on its day, or at the wallet's first
/// receiving address when `vid` is `None`.
///
/// # Errors
/// [`WalletError::UnknownVid`], or [`WalletError::MissingDate`] when the record has no
/// recognisable date and none is given.
pub fn place(
    keys: &HdKeys,
    devices: &DeviceList,
    record: &Record,
    vid: Option<&Vid>,
    date: Option<RecordDate>,
) -> Result<Placement> {
    match vid {
        Some(vid) => {
            devices.get(vid)?;
            let day = date
                .or_else(|| record_date(record))
                .ok_or(WalletError::MissingDate)?;
            let loc = devices.locate(keys, vid, day)?;
            Ok(Placement {
                address: loc.address,
                path: loc.path,
                vid: Some(vid.clone()),
                date: Some(day),
            })
        }
        None => Ok(Placement {
            address: keys.address(0, Chain::Receive, 0)?.to_string(),
            path: format!("m/84'/{}'/0'/0/0", keys.network().coin_type()),
            vid: None,
            date,
        }),
    }
}

/// Seals `record` at `address` for the wallet's own reader key plus `extra_readers`.
pub fn seal_record(
    record: &Record,
    address: &str,
    own: &ReaderKey,
    extra_readers: &[RsaPublicKey],
) -> Result<SealedRecord> {
    let own_public = own.public_key();
    let mut readers: Vec<&RsaPublicKey> = Vec::with_capacity(extra_readers.len().saturating_add(1));
    readers.push(&own_public);
    readers.extend(extra_readers.iter());
    Ok(seal(record, address, &readers, &mut rand::rngs::OsRng)?)
}

/// What opening a sealed record produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// Every column decrypted and the record matched its `dHash`.
    Full(Record),
    /// Only the requested columns (each authenticated; `dHash` needs them all).
    Columns(BTreeMap<String, Value>),
}

/// Opens a sealed record with the wallet's reader key: all columns (checking `dHash`) when
/// `columns` is empty, else only those.
pub fn open_record(
    sealed: &SealedRecord,
    reader: &ReaderKey,
    columns: &[String],
) -> Result<Opened> {
    if columns.is_empty() {
        return Ok(Opened::Full(sealed.open(reader.private_key())?));
    }
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    Ok(Opened::Columns(
        sealed.open_columns(reader.private_key(), &names)?,
    ))
}

/// Whose address a sealed record sits at, from this wallet's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// The wallet's first receiving address (its own data).
    Wallet,
    /// An address of a device's pool; `date_matches` says whether the record's own date
    /// (if it has one) selects this very address, the second check the brief asks for.
    Device {
        /// The device.
        vid: Vid,
        /// Whether the record's date deduces to this address (`None`: no date in the record).
        date_matches: Option<bool>,
    },
    /// Not an address of this wallet (e.g. a record another owner shared).
    Foreign,
}

/// Finds which of the wallet's addresses holds `address`, and cross-checks the record's day
/// (from [`record_date`] or [`date_of`]) against the pool choice.
pub fn owner_of(
    keys: &HdKeys,
    devices: &DeviceList,
    address: &str,
    day: Option<RecordDate>,
) -> Result<Owner> {
    if keys.address(0, Chain::Receive, 0)?.to_string() == address {
        return Ok(Owner::Wallet);
    }
    let Some(entry) = devices
        .devices()
        .iter()
        .find(|d| d.addresses.iter().any(|a| a == address))
    else {
        return Ok(Owner::Foreign);
    };
    let date_matches = match day {
        Some(day) => Some(devices.locate(keys, &entry.vid, day)?.address == address),
        None => None,
    };
    Ok(Owner::Device {
        vid: entry.vid.clone(),
        date_matches,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::keys::{MnemonicPhrase, WalletNetwork};
    use crate::test_support::shared_reader;

    const SEEDS: &str = include_str!("../../tests/data/seed-records.json");
    const PHRASE: &str = "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length";

    fn seed_records() -> Vec<Record> {
        Record::list_from_json_str(SEEDS)
            .unwrap()
            .into_iter()
            .filter_map(std::result::Result::ok)
            .collect()
    }

    fn setup() -> (HdKeys, DeviceList, Vid) {
        let keys = HdKeys::from_mnemonic(
            &MnemonicPhrase::parse(PHRASE).unwrap(),
            "",
            WalletNetwork::Regtest,
        )
        .unwrap();
        let mut list = DeviceList::new(WalletNetwork::Regtest);
        let vid = Vid::new("LBVNU79049SB81546").unwrap();
        list.add(&keys, vid.clone(), 8).unwrap();
        (keys, list, vid)
    }

    #[test]
    fn dates_come_from_start_time_or_datetime() {
        let recs = seed_records();
        let trip = recs.iter().find(|r| r.format() == "trip-gps").unwrap();
        let vio = recs.iter().find(|r| r.format() == "carvio").unwrap();
        let vin = recs.iter().find(|r| r.format() == "VIN_CODE").unwrap();
        assert_eq!(record_date(trip).unwrap().to_string(), "20160511");
        assert_eq!(record_date(vio).unwrap().to_string(), "20180310");
        assert_eq!(record_date(vin), None);
    }

    #[test]
    fn seal_place_open_round_trip_for_the_brief_records() {
        let (keys, list, vid) = setup();
        let reader = shared_reader();
        for rec in seed_records() {
            let device_data = rec.format() != "VIN_CODE";
            let placement = place(&keys, &list, &rec, device_data.then_some(&vid), None).unwrap();
            let sealed = seal_record(&rec, &placement.address, reader, &[]).unwrap();
            assert_eq!(sealed.address, placement.address);
            assert_eq!(sealed.dhash, rec.dhash());
            // The envelope survives its JSON form.
            let json = serde_json::to_string(&sealed).unwrap();
            let back: SealedRecord = serde_json::from_str(&json).unwrap();
            match open_record(&back, reader, &[]).unwrap() {
                Opened::Full(r) => assert_eq!(r, rec),
                Opened::Columns(_) => panic!("asked for everything"),
            }
            let owner = owner_of(&keys, &list, &sealed.address, record_date(&rec)).unwrap();
            if device_data {
                assert_eq!(
                    owner,
                    Owner::Device {
                        vid: vid.clone(),
                        date_matches: Some(true)
                    }
                );
                assert_eq!(placement.date, record_date(&rec));
            } else {
                assert_eq!(owner, Owner::Wallet);
                assert_eq!(placement.path, "m/84'/1'/0'/0/0");
            }
        }
    }

    #[test]
    fn projection_opens_only_the_named_columns() {
        let (keys, list, vid) = setup();
        let trip = seed_records()
            .into_iter()
            .find(|r| r.format() == "trip-gps")
            .unwrap();
        let p = place(&keys, &list, &trip, Some(&vid), None).unwrap();
        let sealed = seal_record(&trip, &p.address, shared_reader(), &[]).unwrap();
        match open_record(&sealed, shared_reader(), &["SPEED".into()]).unwrap() {
            Opened::Columns(c) => {
                assert_eq!(c.len(), 1);
                assert_eq!(c["SPEED"], trip.columns()["SPEED"]);
            }
            Opened::Full(_) => panic!("asked for one column"),
        }
        assert!(open_record(&sealed, shared_reader(), &["NOPE".into()]).is_err());
    }

    #[test]
    fn placement_errors_and_foreign_addresses() {
        let (keys, list, vid) = setup();
        let vin = seed_records()
            .into_iter()
            .find(|r| r.format() == "VIN_CODE")
            .unwrap();
        // A device record needs a date.
        assert!(matches!(
            place(&keys, &list, &vin, Some(&vid), None),
            Err(WalletError::MissingDate)
        ));
        let d = RecordDate::parse("20200101").unwrap();
        let p = place(&keys, &list, &vin, Some(&vid), Some(d)).unwrap();
        assert_eq!(p.date, Some(d));
        assert!(matches!(
            place(
                &keys,
                &list,
                &vin,
                Some(&Vid::new("ghost").unwrap()),
                Some(d)
            ),
            Err(WalletError::UnknownVid(_))
        ));
        assert_eq!(
            owner_of(&keys, &list, "bcrt1qxxxxxxxx", None).unwrap(),
            Owner::Foreign
        );
        // A record sealed at the wrong pool address for its date is flagged.
        let trip = seed_records()
            .into_iter()
            .find(|r| r.format() == "trip-gps")
            .unwrap();
        let right = place(&keys, &list, &trip, Some(&vid), None)
            .unwrap()
            .address;
        let wrong = list
            .get(&vid)
            .unwrap()
            .addresses
            .iter()
            .find(|a| **a != right)
            .unwrap()
            .clone();
        assert_eq!(
            owner_of(&keys, &list, &wrong, record_date(&trip)).unwrap(),
            Owner::Device {
                vid,
                date_matches: Some(false)
            }
        );
    }

    #[test]
    fn other_readers_can_open_and_strangers_cannot() {
        let (keys, list, vid) = setup();
        let trip = seed_records()
            .into_iter()
            .find(|r| r.format() == "trip-gps")
            .unwrap();
        let p = place(&keys, &list, &trip, Some(&vid), None).unwrap();
        // A second reader: a 2048-bit key is enough for this test and much faster to make.
        let buyer =
            ReaderKey::from_private(rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
                .unwrap();
        let sealed =
            seal_record(&trip, &p.address, shared_reader(), &[buyer.public_key()]).unwrap();
        assert_eq!(sealed.readers.len(), 2);
        assert!(matches!(
            open_record(&sealed, &buyer, &[]).unwrap(),
            Opened::Full(r) if r == trip
        ));
        let only_owner = seal_record(&trip, &p.address, shared_reader(), &[]).unwrap();
        let err = open_record(&only_owner, &buyer, &[]).unwrap_err();
        assert!(err.to_string().contains("not a reader"), "{err}");
        // Moving the envelope to another address breaks every column.
        let mut moved = only_owner;
        moved.address = keys.receiving_address(1).unwrap().to_string();
        assert!(open_record(&moved, shared_reader(), &[]).is_err());
    }
}
