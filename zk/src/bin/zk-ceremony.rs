//! `zk-ceremony`: run and check the multi-party phase-2 parameter ceremony for a CarChain
//! circuit, and export the verifying key that goes into genesis.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zk::ceremony::{contribute, contribution_hash, verify_transcript, CeremonyCircuit, Transcript};
use zk::mileage::MileageShape;
use zk::proof::{params_from_file, params_to_file, vk_to_file};
use zk::record::RecordShape;

/// Multi-party Groth16 phase-2 ceremony for CarChain's zk circuits.
///
/// Workflow: a coordinator runs `new` once; each participant in turn runs `contribute` on the
/// ceremony directory and publishes the printed contribution hash; anyone runs `verify`; the
/// coordinator runs `export-vk` and the verifying key goes into genesis. The final parameters
/// are safe if at least one contributor destroyed its secret (contribute never writes it).
#[derive(Parser)]
#[command(name = "zk-ceremony", version)]
struct Cli {
    /// Ceremony directory (holds initial.params, current.params, transcript.json).
    #[arg(long, global = true, default_value = "ceremony")]
    data_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum CircuitName {
    /// Proof of possession of a record (1 KiB shape).
    Possession,
    /// Fair exchange / contingent payment (1 KiB shape).
    FairExchange,
    /// Private cumulative mileage over N trips.
    Mileage,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a ceremony: generate the initial parameters for a circuit (the one trusted step:
    /// phase 1 comes from this machine's randomness, which is dropped on exit).
    New {
        /// Which circuit.
        #[arg(long, value_enum)]
        circuit: CircuitName,
        /// Number of trips for `mileage` (8, 32 or 128).
        #[arg(long, default_value_t = 8)]
        trips: usize,
    },
    /// Add your contribution: multiplies delta by a fresh secret and appends a proof of
    /// knowledge to the transcript.
    Contribute {
        /// Extra entropy mixed with the OS random generator (e.g. typed at random).
        #[arg(long, default_value = "")]
        entropy: String,
    },
    /// Verify the whole transcript against initial and current parameters.
    Verify,
    /// Verify, then write the final verifying key (sealed file) for genesis.
    ExportVk {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn circuit_for(name: CircuitName, trips: usize) -> Result<CeremonyCircuit> {
    Ok(match name {
        CircuitName::Possession => CeremonyCircuit::Possession(RecordShape::KIB),
        CircuitName::FairExchange => CeremonyCircuit::FairExchange(RecordShape::KIB),
        CircuitName::Mileage => {
            if !zk::mileage::TRIP_COUNTS.contains(&trips) {
                bail!(
                    "mileage parameter sets exist for {:?} trips, not {trips}",
                    zk::mileage::TRIP_COUNTS
                );
            }
            CeremonyCircuit::Mileage(MileageShape::standard(trips))
        }
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn load(dir: &Path) -> Result<(Transcript, bellman::groth16::Parameters<bls12_381::Bls12>)> {
    let t = Transcript::from_json(
        &String::from_utf8(read(&dir.join("transcript.json"))?)
            .context("transcript is not UTF-8")?,
    )?;
    let current = params_from_file(&read(&dir.join("current.params"))?, &t.circuit_id)
        .context("current.params")?;
    Ok((t, current))
}

fn verify_dir(
    dir: &Path,
) -> Result<(
    Transcript,
    bellman::groth16::Parameters<bls12_381::Bls12>,
    usize,
)> {
    let (t, current) = load(dir)?;
    let initial = params_from_file(&read(&dir.join("initial.params"))?, &t.circuit_id)
        .context("initial.params")?;
    let n = verify_transcript(&initial, &current, &t).context("transcript does not verify")?;
    Ok((t, current, n))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = &cli.data_dir;
    match cli.cmd {
        Cmd::New { circuit, trips } => {
            let circuit = circuit_for(circuit, trips)?;
            if dir.join("transcript.json").exists() {
                bail!("{} already holds a ceremony", dir.display());
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let params = circuit.initial_params(&mut rand::rngs::OsRng)?;
            let id = circuit.id();
            let file = params_to_file(&params, &id)?;
            write(&dir.join("initial.params"), &file)?;
            write(&dir.join("current.params"), &file)?;
            let t = Transcript::new(id.clone(), &params)?;
            write(&dir.join("transcript.json"), t.to_json()?.as_bytes())?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"circuit": id, "initial_digest": hex::encode(t.initial_digest),
                        "params_bytes": file.len()})
                );
            } else {
                println!(
                    "new ceremony for {id} in {} (initial digest {})",
                    dir.display(),
                    hex::encode(t.initial_digest)
                );
            }
        }
        Cmd::Contribute { entropy } => {
            let (mut t, mut params) = load(dir)?;
            let mut os = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut os);
            let seed: [u8; 32] = Sha256::new()
                .chain_update(os)
                .chain_update(entropy.as_bytes())
                .finalize()
                .into();
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
            let c = contribute(&mut params, &mut t, &mut rng)?;
            write(
                &dir.join("current.params"),
                &params_to_file(&params, &t.circuit_id)?,
            )?;
            write(&dir.join("transcript.json"), t.to_json()?.as_bytes())?;
            let hash = hex::encode(contribution_hash(&c));
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"contribution": t.contributions.len(), "hash": hash})
                );
            } else {
                println!(
                    "contribution #{} recorded; publish its hash: {hash}",
                    t.contributions.len()
                );
            }
        }
        Cmd::Verify => {
            let (t, _, n) = verify_dir(dir)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"circuit": t.circuit_id, "contributions": n, "ok": true,
                        "hashes": t.contributions.iter().map(|c| hex::encode(contribution_hash(c))).collect::<Vec<_>>()})
                );
            } else {
                println!(
                    "transcript for {} verifies: {n} contribution(s)",
                    t.circuit_id
                );
                for (i, c) in t.contributions.iter().enumerate() {
                    println!("  #{}: {}", i + 1, hex::encode(contribution_hash(c)));
                }
                if n == 0 {
                    println!("warning: no contributions yet; these parameters are not safe to use");
                }
            }
        }
        Cmd::ExportVk { out } => {
            let (t, params, n) = verify_dir(dir)?;
            if n == 0 {
                bail!("refusing to export a verifying key with no contributions");
            }
            let file = vk_to_file(&params.vk, &t.circuit_id)?;
            write(&out, &file)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"circuit": t.circuit_id, "contributions": n,
                        "vk": out.display().to_string(), "vk_sha256": hex::encode(Sha256::digest(&file))})
                );
            } else {
                println!(
                    "wrote verifying key for {} ({n} contributions) to {}",
                    t.circuit_id,
                    out.display()
                );
            }
        }
    }
    Ok(())
}
