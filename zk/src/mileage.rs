//! Circuit `mileage`: "these N trip records, whose dHashes are public, drive X km in total and
//! the odometer never goes down from `first` to `last`" — without revealing the trips.
//!
//! Trip schema (fixed; the dHash of a trip is the ordinary record dHash of):
//! * format: at most 32 bytes; key: at most 64 bytes (both private, any content);
//! * exactly three columns, sorted by name:
//!   `MILEAGE` (integer: km driven in the trip), `ODOMETER` (integer: odometer at trip end),
//!   `TRIP` (opaque bytes, at most [`MileageShape::trip_cap`], e.g. a route digest or summary).
//!   Integers use the canonical encoding `0x03 ‖ u64 big-endian`.
//!
//! Public inputs, in order: `dHash_0 … dHash_{N−1}, X, first, last`, where `first` is the
//! ODOMETER of trip 0 and `last` that of trip N−1. N is fixed per parameter set
//! ([`TRIP_COUNTS`]). Fewer real trips are padded with the padding trip
//! ([`padding_trip`]: format `carchain/mileage-pad`, empty key, MILEAGE 0, ODOMETER = `last`,
//! empty TRIP), whose dHash every verifier can recompute from `last`.
//!
//! Range checks: every MILEAGE and ODOMETER is decomposed into 64 bits, and each step
//! `ODOMETER_i − ODOMETER_{i−1}` is decomposed into 64 bits, so a decrease (which would wrap
//! to a huge field element) is unsatisfiable. X is at most N·(2^64 − 1) < p, so the sum cannot wrap.

use crate::dhash::{DOMAIN_COLUMN_NAME, DOMAIN_COLUMN_VALUE, DOMAIN_FORMAT, DOMAIN_KEY};
use crate::gadget::{dhash_from_hashes, enforce_range, Elem, PaddedBytes, U64Value};
use crate::proof::{prove_encoded, verify_encoded, Keys, PROOF_LEN};
use crate::record::Record;
use crate::ZkError;
use bellman::groth16::PreparedVerifyingKey;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use ff::{Field, PrimeField};

/// The trip counts parameter sets are generated for.
pub const TRIP_COUNTS: [usize; 3] = [8, 32, 128];
/// Column names of the trip schema, in hashing order.
pub const COLUMNS: [&[u8]; 3] = [b"MILEAGE", b"ODOMETER", b"TRIP"];
/// Format of the padding trip.
pub const PADDING_FORMAT: &[u8] = b"carchain/mileage-pad";

/// Shape of a mileage circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MileageShape {
    /// Number of trips N.
    pub trips: usize,
    /// Maximum format length.
    pub format_cap: usize,
    /// Maximum key length.
    pub key_cap: usize,
    /// Maximum TRIP column length.
    pub trip_cap: usize,
}

impl MileageShape {
    /// The standard shape for `trips` trips (format 32, key 64, TRIP 128 bytes).
    pub fn standard(trips: usize) -> Self {
        MileageShape {
            trips,
            format_cap: 32,
            key_cap: 64,
            trip_cap: 128,
        }
    }

    /// Identifier used in key file headers.
    pub fn circuit_id(&self) -> String {
        format!(
            "mileage/n{}-f{}-k{}-t{}",
            self.trips, self.format_cap, self.key_cap, self.trip_cap
        )
    }
}

/// One trip in the fixed schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    /// Record format.
    pub format: Vec<u8>,
    /// Canonical key bytes.
    pub key: Vec<u8>,
    /// Km driven in this trip.
    pub mileage: u64,
    /// Odometer at the end of the trip.
    pub odometer: u64,
    /// Opaque TRIP column.
    pub trip: Vec<u8>,
}

/// The canonical encoding of an integer column value.
pub fn int_value(v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(0x03);
    out.extend_from_slice(&v.to_be_bytes());
    out
}

impl Trip {
    /// As a generic record (columns MILEAGE, ODOMETER, TRIP).
    pub fn to_record(&self) -> Record {
        Record {
            format: self.format.clone(),
            key: self.key.clone(),
            columns: vec![
                (COLUMNS[0].to_vec(), int_value(self.mileage)),
                (COLUMNS[1].to_vec(), int_value(self.odometer)),
                (COLUMNS[2].to_vec(), self.trip.clone()),
            ],
        }
    }

    /// The trip's dHash as a field element.
    pub fn dhash_scalar(&self) -> Scalar {
        self.to_record().dhash_scalar()
    }
}

/// The padding trip for a claim ending at odometer `last`.
pub fn padding_trip(last: u64) -> Trip {
    Trip {
        format: PADDING_FORMAT.to_vec(),
        key: Vec::new(),
        mileage: 0,
        odometer: last,
        trip: Vec::new(),
    }
}

/// The public statement of a mileage proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MileagePublic {
    /// dHashes of the N trips (padding included), in order.
    pub dhashes: Vec<Scalar>,
    /// Claimed total km X.
    pub total: u128,
    /// ODOMETER of the first trip.
    pub first: u64,
    /// ODOMETER of the last trip.
    pub last: u64,
}

impl MileagePublic {
    /// The statement for `real` trip dHashes padded to `shape.trips` with [`padding_trip`].
    pub fn padded(
        shape: &MileageShape,
        real: &[Scalar],
        total: u128,
        first: u64,
        last: u64,
    ) -> Result<Self, ZkError> {
        if real.len() > shape.trips {
            return Err(ZkError::Shape(format!(
                "{} trips, circuit takes at most {}",
                real.len(),
                shape.trips
            )));
        }
        let mut dhashes = real.to_vec();
        dhashes.resize(shape.trips, padding_trip(last).dhash_scalar());
        Ok(MileagePublic {
            dhashes,
            total,
            first,
            last,
        })
    }

    /// Public inputs in circuit order.
    pub fn inputs(&self) -> Vec<Scalar> {
        let mut v = self.dhashes.clone();
        v.push(Scalar::from_u128(self.total));
        v.push(Scalar::from(self.first));
        v.push(Scalar::from(self.last));
        v
    }
}

/// The mileage circuit.
#[derive(Clone, Debug)]
pub struct MileageCircuit<'a> {
    /// The shape.
    pub shape: MileageShape,
    /// The N trips (witness); `None` during setup.
    pub trips: Option<&'a [Trip]>,
    /// The statement; `None` during setup.
    pub public: Option<&'a MileagePublic>,
}

impl MileageCircuit<'_> {
    /// The circuit without witness, for parameter generation.
    pub fn blank(shape: MileageShape) -> Self {
        MileageCircuit {
            shape,
            trips: None,
            public: None,
        }
    }
}

impl Circuit<Scalar> for MileageCircuit<'_> {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let n = self.shape.trips;
        let mut dhashes = Vec::with_capacity(n);
        for i in 0..n {
            let v = self.public.and_then(|p| p.dhashes.get(i).copied());
            dhashes.push(Elem::input(cs.namespace(|| format!("dhash {i}")), v)?);
        }
        let total = Elem::input(
            cs.namespace(|| "total"),
            self.public.map(|p| Scalar::from_u128(p.total)),
        )?;
        let first = Elem::input(
            cs.namespace(|| "first"),
            self.public.map(|p| Scalar::from(p.first)),
        )?;
        let last = Elem::input(
            cs.namespace(|| "last"),
            self.public.map(|p| Scalar::from(p.last)),
        )?;
        let names: Vec<PaddedBytes> = COLUMNS.iter().map(|c| PaddedBytes::constant(c)).collect();
        let mut sum = Elem::constant(Scalar::ZERO);
        let mut prev_odo: Option<Elem> = None;
        for (i, expected) in dhashes.iter().enumerate() {
            let mut cs = cs.namespace(|| format!("trip {i}"));
            let trip = self.trips.and_then(|t| t.get(i));
            let format = PaddedBytes::alloc(
                cs.namespace(|| "format"),
                trip.map(|t| t.format.as_slice()),
                self.shape.format_cap,
            )?;
            let key = PaddedBytes::alloc(
                cs.namespace(|| "key"),
                trip.map(|t| t.key.as_slice()),
                self.shape.key_cap,
            )?;
            let mileage = U64Value::alloc(cs.namespace(|| "mileage"), trip.map(|t| t.mileage))?;
            let odo = U64Value::alloc(cs.namespace(|| "odometer"), trip.map(|t| t.odometer))?;
            let opaque = PaddedBytes::alloc(
                cs.namespace(|| "trip"),
                trip.map(|t| t.trip.as_slice()),
                self.shape.trip_cap,
            )?;
            let mut cols = Vec::with_capacity(3);
            for (c, name) in names.iter().enumerate() {
                let nh = name.hash(cs.namespace(|| format!("name {c}")), DOMAIN_COLUMN_NAME)?;
                let vh = match c {
                    0 => mileage.hash(cs.namespace(|| "mileage hash"), DOMAIN_COLUMN_VALUE)?,
                    1 => odo.hash(cs.namespace(|| "odometer hash"), DOMAIN_COLUMN_VALUE)?,
                    _ => opaque.hash(cs.namespace(|| "trip hash"), DOMAIN_COLUMN_VALUE)?,
                };
                cols.push((nh, vh));
            }
            let fh = format.hash(cs.namespace(|| "format hash"), DOMAIN_FORMAT)?;
            let kh = key.hash(cs.namespace(|| "key hash"), DOMAIN_KEY)?;
            dhash_from_hashes(cs.namespace(|| "dhash"), fh, kh, &cols)?
                .enforce_equal(cs.namespace(|| "dhash matches"), expected);
            sum = sum.add(&mileage.value);
            match &prev_odo {
                None => odo
                    .value
                    .enforce_equal(cs.namespace(|| "first odometer"), &first),
                Some(p) => enforce_range(
                    cs.namespace(|| "odometer never decreases"),
                    &odo.value.sub(p),
                    64,
                )?,
            }
            prev_odo = Some(odo.value.clone());
        }
        let final_odo = prev_odo.ok_or(SynthesisError::Unsatisfiable)?;
        final_odo.enforce_equal(cs.namespace(|| "last odometer"), &last);
        sum.enforce_equal(cs.namespace(|| "sum equals total"), &total);
        Ok(())
    }
}

/// Checks natively what the circuit enforces, so that proving a false claim is an error.
pub fn check_claim(
    shape: &MileageShape,
    trips: &[Trip],
    public: &MileagePublic,
) -> Result<(), ZkError> {
    let bad = |m: String| Err(ZkError::Shape(m));
    if trips.len() != shape.trips || public.dhashes.len() != shape.trips {
        return bad(format!("need exactly {} trips and dHashes", shape.trips));
    }
    let mut total: u128 = 0;
    for (i, (t, d)) in trips.iter().zip(&public.dhashes).enumerate() {
        if t.format.len() > shape.format_cap
            || t.key.len() > shape.key_cap
            || t.trip.len() > shape.trip_cap
        {
            return bad(format!("trip {i} exceeds the shape's capacities"));
        }
        if t.dhash_scalar() != *d {
            return bad(format!("trip {i} does not hash to its dHash"));
        }
        total = total.saturating_add(u128::from(t.mileage));
    }
    if total != public.total {
        return bad(format!(
            "trips sum to {total} km, claim is {}",
            public.total
        ));
    }
    if trips.windows(2).any(|w| match w {
        [a, b] => b.odometer < a.odometer,
        _ => false,
    }) {
        return bad("odometer decreases".into());
    }
    if trips.first().map(|t| t.odometer) != Some(public.first)
        || trips.last().map(|t| t.odometer) != Some(public.last)
    {
        return bad("first/last odometer do not match the trips".into());
    }
    Ok(())
}

/// Proves a mileage claim over exactly `shape.trips` trips (pad with [`padding_trip`]).
pub fn prove_mileage(
    keys: &Keys,
    shape: &MileageShape,
    trips: &[Trip],
    public: &MileagePublic,
) -> Result<[u8; PROOF_LEN], ZkError> {
    check_claim(shape, trips, public)?;
    prove_encoded(
        &keys.params,
        MileageCircuit {
            shape: *shape,
            trips: Some(trips),
            public: Some(public),
        },
    )
}

/// Verifies a mileage proof for `public`.
pub fn verify_mileage(
    pvk: &PreparedVerifyingKey<Bls12>,
    public: &MileagePublic,
    proof: &[u8],
) -> Result<(), ZkError> {
    verify_encoded(pvk, proof, &public.inputs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::insecure_test_setup;
    use bellman::gadgets::test::TestConstraintSystem;

    const TINY: MileageShape = MileageShape {
        trips: 3,
        format_cap: 4,
        key_cap: 16,
        trip_cap: 8,
    };

    fn trips() -> Vec<Trip> {
        [(12u64, 100_012u64), (30, 100_042), (0, 100_042)]
            .iter()
            .enumerate()
            .map(|(i, (m, o))| Trip {
                format: b"trip".to_vec(),
                key: format!("{{\"SESSION_ID\":{i}}}").into_bytes(),
                mileage: *m,
                odometer: *o,
                trip: vec![i as u8; 5 + i],
            })
            .collect()
    }

    fn public_for(trips: &[Trip], total: u128) -> MileagePublic {
        MileagePublic {
            dhashes: trips.iter().map(Trip::dhash_scalar).collect(),
            total,
            first: trips[0].odometer,
            last: trips[trips.len() - 1].odometer,
        }
    }

    fn satisfied(trips: &[Trip], public: &MileagePublic) -> bool {
        let mut cs = TestConstraintSystem::<Scalar>::new();
        MileageCircuit {
            shape: TINY,
            trips: Some(trips),
            public: Some(public),
        }
        .synthesize(&mut cs)
        .unwrap();
        cs.is_satisfied()
    }

    #[test]
    fn honest_claim_is_satisfied_and_false_claims_are_not() {
        let t = trips();
        assert!(satisfied(&t, &public_for(&t, 42)));
        // wrong sum
        assert!(!satisfied(&t, &public_for(&t, 43)));
        assert!(matches!(
            check_claim(&TINY, &t, &public_for(&t, 43)),
            Err(ZkError::Shape(_))
        ));
        // decreasing odometer (records hash correctly, but 100_042 → 100_041)
        let mut dec = t.clone();
        dec[2].odometer = 100_041;
        assert!(!satisfied(&dec, &public_for(&dec, 42)));
        assert!(check_claim(&TINY, &dec, &public_for(&dec, 42)).is_err());
        // wrong record for a dHash
        let mut other = t.clone();
        other[1].mileage = 31;
        assert!(!satisfied(&other, &public_for(&t, 42)));
        // first/last odometer that do not match the trips
        let mut p = public_for(&t, 42);
        p.first = 100_000;
        assert!(!satisfied(&t, &p));
    }

    #[test]
    fn padding_trip_is_recomputable() {
        let t = trips();
        let p = MileagePublic::padded(
            &MileageShape { trips: 5, ..TINY },
            &t.iter().map(Trip::dhash_scalar).collect::<Vec<_>>(),
            42,
            100_012,
            100_042,
        )
        .unwrap();
        assert_eq!(p.dhashes.len(), 5);
        assert_eq!(p.dhashes[4], padding_trip(100_042).dhash_scalar());
        assert!(MileagePublic::padded(&TINY, &[Scalar::ONE; 4], 0, 0, 0).is_err());
    }

    #[test]
    fn mileage_proof_verifies_and_rejects_other_claims() {
        let keys = insecure_test_setup(MileageCircuit::blank(TINY), 4).unwrap();
        let t = trips();
        let public = public_for(&t, 42);
        let proof = prove_mileage(&keys, &TINY, &t, &public).unwrap();
        verify_mileage(&keys.pvk, &public, &proof).unwrap();
        for tweak in [
            MileagePublic {
                total: 43,
                ..public.clone()
            },
            MileagePublic {
                last: 100_043,
                ..public.clone()
            },
            MileagePublic {
                first: 100_011,
                ..public.clone()
            },
        ] {
            assert!(matches!(
                verify_mileage(&keys.pvk, &tweak, &proof),
                Err(ZkError::Rejected)
            ));
        }
        // the API refuses to prove a false sum
        assert!(prove_mileage(&keys, &TINY, &t, &public_for(&t, 41)).is_err());
    }
}
