//! The `device` binary without a network: help, clear errors, and the write-ahead spool
//! surviving a put whose agents are all down (the same sealed bytes are kept for `resume`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chain::ledger::Genesis;
use gateway::network::{AgentEntry, NetworkFile};
use wallet::devices::DeviceList;
use wallet::provision::{DeviceProvision, PROVISION_VERSION};
use wallet::{user_seed, HdKeys, MnemonicPhrase, ReaderKey, Vid, WalletNetwork};

const PHRASE: &str = "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length";
const TRIP: &str = r#"{"format":"trip-gps","key":{"SESSION_ID":1,"START_TIME":20160511071428,"END_TIME":20160511094623},"value":{"len":3,"GPS":[{"lat":31.250885,"lng":121.44662},{"lat":31.251259,"lng":121.4456},{"lat":31.25419,"lng":121.485504}],"SPEED":"0,23,52","VEHICLE_DATA":1,"format":"trip-gps"}}"#;

fn device(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_device"))
        .args(args)
        .output()
        .expect("run device")
}

/// A provisioning file and a network file whose only agent does not answer.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let genesis = Genesis::example(1, 7);
    let keys = HdKeys::from_mnemonic(
        &MnemonicPhrase::parse(PHRASE).unwrap(),
        "",
        WalletNetwork::Regtest,
    )
    .unwrap();
    let vid = Vid::new("LBVNU79049SB81546").unwrap();
    let mut devices = DeviceList::new(WalletNetwork::Regtest);
    let pool = devices
        .add(&keys, vid.clone(), 8)
        .unwrap()
        .addresses
        .clone();
    let reader =
        ReaderKey::from_private(rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
            .unwrap();
    let agent = keys.receiving_address(1).unwrap().to_string();
    let provision = DeviceProvision {
        version: PROVISION_VERSION,
        vid: vid.as_str().to_owned(),
        network: "regtest".into(),
        chain_id: genesis.chain_id.clone(),
        device_secret: "11".repeat(32),
        generation: 0,
        owner: keys.receiving_address(0).unwrap().to_string(),
        owner_rsa_pem: reader.public_pem().unwrap(),
        pool,
        user_seed: user_seed(&keys, &vid).unwrap().to_hex().to_string(),
        agent: agent.clone(),
    };
    let p = dir.join("car.json");
    provision.save(&p).unwrap();
    let network = NetworkFile {
        genesis,
        agents: vec![AgentEntry {
            name: "down".into(),
            account: agent,
            gateway: "127.0.0.1:9".parse().unwrap(),
            cert_sha256: "00".repeat(32),
            http: None,
        }],
    };
    let n = dir.join("network.json");
    network.save(&n).unwrap();
    (p, n)
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn device_help_names_every_command() {
    let out = device(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["put", "resume", "simulate"] {
        assert!(text.contains(cmd), "{text}");
        let sub = device(&[cmd, "--help"]);
        assert!(sub.status.success(), "{cmd} --help");
        assert!(String::from_utf8_lossy(&sub.stdout).contains("--network"));
    }
    let sim = String::from_utf8_lossy(&device(&["simulate", "--help"]).stdout).to_string();
    for flag in [
        "--trips-per-car",
        "--date",
        "--violations-per-car",
        "--seed",
        "--concurrency",
        "--json",
    ] {
        assert!(sim.contains(flag), "{flag}");
    }
}

#[test]
fn device_put_without_a_date_fails_clearly_and_spools_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (p, n) = setup(dir.path());
    let rec = dir.path().join("r.json");
    std::fs::write(&rec, r#"{"format":"x","key":{"ID":1},"value":{"a":1}}"#).unwrap();
    let spool = dir.path().join("spool");
    let out = device(&[
        "--attempts",
        "1",
        "--timeout-ms",
        "200",
        "put",
        "--provision",
        p.to_str().unwrap(),
        "--network",
        n.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no date"), "{err}");
    assert!(spool_files(&spool).is_empty());
}

#[test]
fn device_put_with_every_agent_down_keeps_the_sealed_bytes_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (p, n) = setup(dir.path());
    let rec = dir.path().join("trip.json");
    std::fs::write(&rec, TRIP).unwrap();
    let spool = dir.path().join("spool");
    let args = [
        "--attempts",
        "2",
        "--timeout-ms",
        "200",
        "put",
        "--provision",
        p.to_str().unwrap(),
        "--network",
        n.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ];
    let out = device(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device resume"), "{err}");
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    let before = std::fs::read(&files[0]).unwrap();
    let entry: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(entry["vid"], "LBVNU79049SB81546");
    assert_eq!(entry["format"], "trip-gps");
    assert!(
        entry["metres"].as_u64().unwrap() > 0,
        "metres default to the GPS length"
    );
    // A second attempt (a new process) re-uses the spooled entry byte for byte.
    let again = device(&args);
    assert!(!again.status.success());
    assert_eq!(spool_files(&spool), files);
    assert_eq!(std::fs::read(&files[0]).unwrap(), before);
    // `resume` tries it too and leaves it in place while nothing answers.
    let resume = device(&[
        "--attempts",
        "1",
        "--timeout-ms",
        "200",
        "resume",
        "--provision",
        p.to_str().unwrap(),
        "--network",
        n.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ]);
    assert!(!resume.status.success());
    assert_eq!(std::fs::read(&files[0]).unwrap(), before);
}
