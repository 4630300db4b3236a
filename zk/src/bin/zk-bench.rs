//! `zk-bench`: constraint counts, setup/prove/verify times and key sizes of CarChain's circuits,
//! with a SHA-256 `possession` baseline, as JSON lines
//! (`{"bench":…,"value":…,"unit":…}` plus `baseline`/`ratio` where there is one).

use anyhow::Result;
use bellman::groth16;
use bls12_381::Scalar;
use clap::Parser;
use serde_json::json;
use std::time::Instant;
use zk::fair_exchange::{prove_fair_exchange, verify_fair_exchange, FairExchangeCircuit};
use zk::mileage::{
    padding_trip, prove_mileage, verify_mileage, MileageCircuit, MileagePublic, MileageShape, Trip,
};
use zk::possession::{
    address_to_scalar, challenge_to_scalar, prove_possession, verify_possession, PossessionCircuit,
    PossessionPublic, Sha256PossessionCircuit,
};
use zk::proof::{count_constraints, insecure_test_setup, params_to_file, vk_to_file, Keys};
use zk::record::{Record, RecordShape};

/// Benchmark the zk circuits on this machine (release build recommended).
#[derive(Parser)]
#[command(name = "zk-bench", version)]
struct Cli {
    /// Mileage trip counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    trips: Vec<usize>,
    /// Proofs per circuit (the median time is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Skip the SHA-256 baseline (it is large).
    #[arg(long)]
    no_sha: bool,
    /// Proofs for the SHA-256 baseline (its setup dominates the run).
    #[arg(long, default_value_t = 1)]
    sha_iters: usize,
    /// Only count constraints (every circuit, mileage N = 8/32/128, SHA-256 baseline); no setup
    /// or proving.
    #[arg(long)]
    count_only: bool,
    /// Output is always JSON lines; accepted for CLI uniformity.
    #[arg(long)]
    json: bool,
}

fn emit(bench: &str, value: f64, unit: &str) {
    println!("{}", json!({"bench": bench, "value": value, "unit": unit}));
}

fn emit_ratio(bench: &str, value: f64, unit: &str, baseline: f64) {
    let ratio = if baseline > 0.0 {
        value / baseline
    } else {
        0.0
    };
    println!(
        "{}",
        json!({"bench": bench, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio})
    );
}

fn median_ms<F: FnMut() -> Result<()>>(iters: usize, mut f: F) -> Result<f64> {
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let out = f()?;
    Ok((out, t.elapsed().as_secs_f64() * 1e3))
}

fn sizes(name: &str, keys: &Keys, id: &str) -> Result<()> {
    emit(
        &format!("zk::{name}/params_bytes"),
        params_to_file(&keys.params, id)?.len() as f64,
        "bytes",
    );
    emit(
        &format!("zk::{name}/vk_bytes"),
        vk_to_file(&keys.params.vk, id)?.len() as f64,
        "bytes",
    );
    Ok(())
}

fn kib_record() -> Record {
    let shape = RecordShape::KIB;
    Record {
        format: vec![b'f'; shape.format_cap],
        key: vec![b'k'; shape.key_cap],
        columns: (0..shape.columns)
            .map(|i| {
                let mut name = vec![b'a' + i as u8; shape.name_cap];
                name[0] = b'A' + i as u8;
                (name, vec![i as u8; shape.value_cap])
            })
            .collect(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let shape = RecordShape::KIB;
    let record = kib_record();

    if cli.count_only {
        let pos = count_constraints(PossessionCircuit::blank(shape))?.constraints as f64;
        emit("zk::possession/constraints", pos, "constraints");
        let sha = count_constraints(Sha256PossessionCircuit {
            len: shape.capacity(),
            bytes: None,
            binding: None,
        })?
        .constraints as f64;
        emit_ratio("zk::possession_sha256/constraints", sha, "constraints", pos);
        let fe = count_constraints(FairExchangeCircuit::blank(shape))?.constraints as f64;
        emit("zk::fair_exchange/constraints", fe, "constraints");
        for n in zk::mileage::TRIP_COUNTS {
            let c = count_constraints(MileageCircuit::blank(MileageShape::standard(n)))?;
            emit(
                &format!("zk::mileage/n={n}/constraints"),
                c.constraints as f64,
                "constraints",
            );
        }
        return Ok(());
    }

    // native hash throughput
    let kib = vec![0xa5u8; 1024];
    let ns = median_ms(5, || {
        for _ in 0..20 {
            std::hint::black_box(zk::hash_bytes(1, std::hint::black_box(&kib)));
        }
        Ok(())
    })? * 1e6
        / 20.0;
    emit("zk::hash_bytes/size=1KiB", ns / 1e3, "us");
    let mut s = [Scalar::one(), Scalar::one(), Scalar::one()];
    let t = Instant::now();
    for _ in 0..1000 {
        zk::poseidon::permute(&mut s);
    }
    emit(
        "zk::poseidon/permutation",
        t.elapsed().as_secs_f64() * 1e6 / 1000.0,
        "us",
    );
    emit(
        "zk::poseidon/constraints_per_permutation",
        zk::gadget::CONSTRAINTS_PER_PERMUTATION as f64,
        "constraints",
    );

    // possession (Poseidon)
    let pos_c = count_constraints(PossessionCircuit::blank(shape))?.constraints as f64;
    emit("zk::possession/constraints", pos_c, "constraints");
    let (keys, setup) = timed(|| Ok(insecure_test_setup(PossessionCircuit::blank(shape), 1)?))?;
    emit("zk::possession/setup", setup, "ms");
    sizes("possession", &keys, &zk::possession::circuit_id(&shape))?;
    let public = PossessionPublic {
        dhash: record.dhash_scalar(),
        challenge: challenge_to_scalar(b"bench"),
        prover: address_to_scalar("bc1qbench"),
    };
    let mut proof = [0u8; 192];
    let pos_prove = median_ms(cli.iters, || {
        proof = prove_possession(&keys, &shape, &record, &public)?;
        Ok(())
    })?;
    emit("zk::possession/prove", pos_prove, "ms");
    let pos_verify = median_ms(cli.iters.max(5), || {
        Ok(verify_possession(&keys.pvk, &public, &proof)?)
    })?;
    emit("zk::possession/verify", pos_verify, "ms");
    emit("zk::possession/proof_bytes", proof.len() as f64, "bytes");

    // fair exchange
    let fe_c = count_constraints(FairExchangeCircuit::blank(shape))?.constraints as f64;
    emit("zk::fair_exchange/constraints", fe_c, "constraints");
    let (keys, setup) = timed(|| Ok(insecure_test_setup(FairExchangeCircuit::blank(shape), 3)?))?;
    emit("zk::fair_exchange/setup", setup, "ms");
    sizes(
        "fair_exchange",
        &keys,
        &zk::fair_exchange::circuit_id(&shape),
    )?;
    let k = Scalar::from(0x5eed_u64);
    let mut out = None;
    let fe_prove = median_ms(cli.iters, || {
        out = Some(prove_fair_exchange(&keys, &shape, &record, &k)?);
        Ok(())
    })?;
    emit("zk::fair_exchange/prove", fe_prove, "ms");
    let (ct, fpub, fproof) = out.ok_or_else(|| anyhow::anyhow!("no proof"))?;
    let fe_verify = median_ms(cli.iters.max(5), || {
        Ok(verify_fair_exchange(&keys.pvk, &fpub, &ct, &fproof)?)
    })?;
    emit("zk::fair_exchange/verify", fe_verify, "ms");

    // mileage
    for &n in &cli.trips {
        let mshape = MileageShape::standard(n);
        let name = format!("mileage/n={n}");
        let mc = count_constraints(MileageCircuit::blank(mshape))?.constraints as f64;
        emit(&format!("zk::{name}/constraints"), mc, "constraints");
        let (keys, setup) = timed(|| Ok(insecure_test_setup(MileageCircuit::blank(mshape), 4)?))?;
        emit(&format!("zk::{name}/setup"), setup, "ms");
        sizes(&name, &keys, &mshape.circuit_id())?;
        let mut odo = 50_000u64;
        let mut trips: Vec<Trip> = (0..n.saturating_sub(1))
            .map(|i| {
                odo += 17 + i as u64;
                Trip {
                    format: b"trip-gps".to_vec(),
                    key: format!("{{\"SESSION_ID\":{i}}}").into_bytes(),
                    mileage: 17 + i as u64,
                    odometer: odo,
                    trip: vec![i as u8; 100],
                }
            })
            .collect();
        trips.push(padding_trip(odo));
        let total: u128 = trips.iter().map(|t| u128::from(t.mileage)).sum();
        let public = MileagePublic {
            dhashes: trips.iter().map(Trip::dhash_scalar).collect(),
            total,
            first: trips[0].odometer,
            last: odo,
        };
        let mut proof = [0u8; 192];
        let prove = median_ms(cli.iters, || {
            proof = prove_mileage(&keys, &mshape, &trips, &public)?;
            Ok(())
        })?;
        emit(&format!("zk::{name}/prove"), prove, "ms");
        let verify = median_ms(cli.iters.max(5), || {
            Ok(verify_mileage(&keys.pvk, &public, &proof)?)
        })?;
        emit(&format!("zk::{name}/verify"), verify, "ms");
    }
    // SHA-256 possession baseline over the same 1 KiB of bytes (last: by far the slowest)
    if !cli.no_sha {
        let bytes: Vec<u8> = std::iter::once(&record.format)
            .chain(std::iter::once(&record.key))
            .chain(record.columns.iter().flat_map(|(n, v)| [n, v]))
            .flatten()
            .copied()
            .collect();
        let blank = Sha256PossessionCircuit {
            len: bytes.len(),
            bytes: None,
            binding: None,
        };
        let sha_c = count_constraints(blank.clone())?.constraints as f64;
        emit_ratio(
            "zk::possession_sha256/constraints",
            sha_c,
            "constraints",
            pos_c,
        );
        let (params, setup) = timed(|| {
            let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(2);
            Ok(
                groth16::generate_random_parameters::<bls12_381::Bls12, _, _>(
                    blank.clone(),
                    &mut rng,
                )?,
            )
        })?;
        emit("zk::possession_sha256/setup", setup, "ms");
        let pvk = groth16::prepare_verifying_key(&params.vk);
        let inputs =
            Sha256PossessionCircuit::public_inputs(&bytes, public.challenge, public.prover);
        let mut sha_proof = None;
        let sha_prove = median_ms(cli.sha_iters, || {
            let c = Sha256PossessionCircuit {
                len: bytes.len(),
                bytes: Some(bytes.clone()),
                binding: Some((public.challenge, public.prover)),
            };
            sha_proof = Some(groth16::create_random_proof(
                c,
                &params,
                &mut rand::rngs::OsRng,
            )?);
            Ok(())
        })?;
        emit_ratio("zk::possession_sha256/prove", sha_prove, "ms", pos_prove);
        let sp = sha_proof.ok_or_else(|| anyhow::anyhow!("no proof"))?;
        let sha_verify = median_ms(5, || {
            groth16::verify_proof(&pvk, &sp, &inputs)
                .map_err(|e| anyhow::anyhow!("sha256 baseline proof rejected: {e:?}"))
        })?;
        emit_ratio("zk::possession_sha256/verify", sha_verify, "ms", pos_verify);
    }

    Ok(())
}
