//! End-to-end tests of the `wallet` binary: real processes, real files, output asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PW: &str = "correct horse battery staple";

struct Run {
    status_ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str], password: Option<&str>, stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallet"));
    cmd.arg("--data-dir").arg(dir).args(args);
    cmd.env_remove("CARCHAIN_WALLET_PASSWORD");
    cmd.env_remove("CARCHAIN_WALLET_BIP39_PASSPHRASE");
    if let Some(pw) = password {
        cmd.env("CARCHAIN_WALLET_PASSWORD", pw);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wallet");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out: Output = child.wait_with_output().unwrap();
    let r = Run {
        status_ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    r
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.push("--json");
    let r = run(dir, &full, Some(PW), None);
    assert!(r.status_ok, "{args:?} failed: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.stdout))
}

fn fails_with(r: &Run, needle: &str) {
    assert!(!r.status_ok, "expected failure, got: {}", r.stdout);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.to_lowercase().contains(needle),
        "stderr {:?} lacks {needle:?}",
        r.stderr
    );
}

#[test]
fn help_explains_the_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(tmp.path(), &["--help"], None, None);
    assert!(r.status_ok);
    for word in [
        "seal",
        "open",
        "init",
        "show",
        "device",
        "address",
        "--data-dir",
        "--json",
        "--network",
        "CARCHAIN_WALLET_PASSWORD",
    ] {
        assert!(r.stdout.contains(word), "--help lacks {word}: {}", r.stdout);
    }
    let r = run(tmp.path(), &["device", "add", "--help"], None, None);
    assert!(r.status_ok);
    assert!(r.stdout.contains("--pool-size") && r.stdout.contains("setDup"));
    let r = run(tmp.path(), &["init", "--help"], None, None);
    assert!(r.stdout.contains("--recover"));
    // A usage error is clap's exit code 2, not a panic.
    let r = run(tmp.path(), &["device", "frobnicate"], None, None);
    assert_eq!(r.code, Some(2));
}

/// The walk-through a new user does, then recovery from the mnemonic alone into a second
/// directory, which must reproduce every address.
#[test]
fn walkthrough_and_recovery_reproduce_every_address() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let a = a.as_path();
    let b = b.as_path();

    let init = ok_json(a, &["--network", "regtest", "init"]);
    let mnemonic = init["mnemonic"].as_str().unwrap().to_owned();
    assert_eq!(mnemonic.split(' ').count(), 24);
    let first = init["first_address"].as_str().unwrap().to_owned();
    assert!(first.starts_with("bcrt1q"), "{first}");
    assert_eq!(init["rsa_bits"], 3072);
    assert_eq!(init["network"], "regtest");

    let ks = std::fs::read_to_string(a.join("keystore.json")).unwrap();
    assert!(!ks.contains(&mnemonic), "mnemonic stored in clear");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.join("keystore.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let show = ok_json(a, &["show", "--count", "3"]);
    assert_eq!(show["addresses"][0]["address"], first.as_str());
    assert_eq!(show["addresses"][2]["path"], "m/84'/1'/0'/0/2");
    assert!(show["rsa_public_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let text = run(a, &["show"], Some(PW), None);
    assert!(
        text.status_ok && text.stdout.contains(&first) && text.stdout.contains("BEGIN PUBLIC KEY")
    );

    let added = ok_json(
        a,
        &["device", "add", "LBVNU79049SB81546", "--pool-size", "8"],
    );
    let pool: Vec<String> = added["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pool.len(), 8);
    ok_json(a, &["device", "add", "phone-2", "--pool-size", "3"]);
    let list = ok_json(a, &["device", "list"]);
    assert_eq!(list["devices"].as_array().unwrap().len(), 2);
    assert_eq!(list["devices"][0]["vid"], "LBVNU79049SB81546");
    assert_eq!(list["devices"][1]["pool_size"], 3);

    let mut located = Vec::new();
    for date in ["20160511", "20160512", "20180310"] {
        let loc = ok_json(a, &["address", "LBVNU79049SB81546", "--date", date]);
        let addr = loc["address"].as_str().unwrap().to_owned();
        assert!(pool.contains(&addr), "{addr} not in pool");
        assert_eq!(loc["date"], date);
        located.push(addr);
    }
    let export = ok_json(a, &["device", "export", "LBVNU79049SB81546"]);
    assert_eq!(export["user_seed"].as_str().unwrap().len(), 64);
    assert_eq!(export["addresses"].as_array().unwrap().len(), 8);

    // Recovery: the mnemonic alone gives the same wallet, pool and record addresses.
    let r = run(
        b,
        &["--network", "regtest", "init", "--recover", "--json"],
        Some("another pw"),
        Some(&format!("{mnemonic}\n")),
    );
    assert!(r.status_ok, "{}", r.stderr);
    let rec: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rec["first_address"], first.as_str());
    assert!(
        rec.get("mnemonic").is_none(),
        "a recovered mnemonic is not echoed"
    );
    let r = run(
        b,
        &[
            "device",
            "add",
            "LBVNU79049SB81546",
            "--pool-size",
            "8",
            "--json",
        ],
        Some("another pw"),
        None,
    );
    assert!(r.status_ok, "{}", r.stderr);
    let added_b: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(added_b["addresses"], added["addresses"]);
    for (date, addr) in ["20160511", "20160512", "20180310"].iter().zip(&located) {
        let r = run(
            b,
            &["address", "LBVNU79049SB81546", "--date", date, "--json"],
            Some("another pw"),
            None,
        );
        assert!(r.status_ok, "{}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["address"].as_str().unwrap(), addr);
    }
}

#[test]
fn bad_input_gives_clear_errors_and_nonzero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("w");
    let d = d.as_path();

    fails_with(&run(d, &["show"], Some(PW), None), "no wallet in");
    fails_with(
        &run(
            d,
            &["init", "--recover"],
            Some(PW),
            Some("abandon abandon abandon\n"),
        ),
        "unsupported mnemonic length",
    );
    fails_with(
        &run(
            d,
            &["init", "--recover"],
            Some(PW),
            Some("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon\n"),
        ),
        "invalid mnemonic",
    );
    fails_with(&run(d, &["init"], None, None), "no password given");
    assert!(!d.join("keystore.json").exists());

    // The BIP84 vector mnemonic, mainnet: a known first address.
    let r = run(
        d,
        &["init", "--recover", "--json"],
        Some(PW),
        Some("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"),
    );
    assert!(r.status_ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["first_address"],
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );

    fails_with(&run(d, &["init"], Some(PW), None), "already exists");
    fails_with(
        &run(d, &["show"], Some("wrong"), None),
        "wrong password or corrupted keystore",
    );
    fails_with(
        &run(d, &["--network", "testnet", "show"], Some(PW), None),
        "network mismatch",
    );
    fails_with(
        &run(
            d,
            &["address", "NOPE", "--date", "20200101"],
            Some(PW),
            None,
        ),
        "unknown vid",
    );
    fails_with(
        &run(d, &["device", "add", "bad vid"], Some(PW), None),
        "invalid vid",
    );
    fails_with(
        &run(
            d,
            &["device", "add", "car", "--pool-size", "0"],
            Some(PW),
            None,
        ),
        "invalid pool size",
    );

    let r = run(
        d,
        &["device", "add", "car", "--pool-size", "2"],
        Some(PW),
        None,
    );
    assert!(r.status_ok, "{}", r.stderr);
    fails_with(
        &run(d, &["device", "add", "car"], Some(PW), None),
        "already in the device list",
    );
    for bad in ["20230229", "2023-01-01", "20231301", "1"] {
        fails_with(
            &run(d, &["address", "car", "--date", bad], Some(PW), None),
            "invalid date",
        );
    }

    // JSON mode reports errors as JSON too.
    let r = run(d, &["show", "--json"], Some("wrong"), None);
    assert!(!r.status_ok);
    let v: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(v["error"], "wrong password or corrupted keystore");

    // Corrupted files are reported, not a panic.
    std::fs::write(d.join("devices.json"), "garbage").unwrap();
    fails_with(
        &run(d, &["device", "list"], Some(PW), None),
        "malformed device list",
    );
    let keystore = std::fs::read_to_string(d.join("keystore.json")).unwrap();
    std::fs::write(
        d.join("keystore.json"),
        keystore.replacen("\"ciphertext\": \"", "\"ciphertext\": \"00", 1),
    )
    .unwrap();
    fails_with(
        &run(d, &["show"], Some(PW), None),
        "wrong password or corrupted keystore",
    );
    std::fs::write(d.join("keystore.json"), "{\"version\": 1}").unwrap();
    fails_with(&run(d, &["show"], Some(PW), None), "malformed keystore");
}

#[test]
fn password_file_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("w");
    let pwfile = tmp.path().join("pw.txt");
    std::fs::write(&pwfile, "from a file\n").unwrap();
    let pf = pwfile.to_str().unwrap();
    let r = run(
        &d,
        &["--password-file", pf, "--network", "testnet", "init", "--recover"],
        None,
        Some("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote"),
    );
    assert!(r.status_ok, "{}", r.stderr);
    assert!(r.stdout.contains("tb1q"));
    let r = run(
        &d,
        &["--password-file", pf, "show", "--count", "1"],
        None,
        None,
    );
    assert!(r.status_ok, "{}", r.stderr);
    // The environment password alone is the wrong one here.
    fails_with(
        &run(&d, &["show"], Some("from a file!"), None),
        "wrong password",
    );
}

#[test]
fn toml_config_supplies_defaults_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("w");
    std::fs::create_dir(&d).unwrap();
    let pwfile = tmp.path().join("pw.txt");
    std::fs::write(&pwfile, "config pw\n").unwrap();
    std::fs::write(
        d.join("wallet.toml"),
        format!(
            "network = \"testnet\"\npassword_file = {:?}\n",
            pwfile.to_str().unwrap()
        ),
    )
    .unwrap();
    let r = run(
        &d,
        &["init", "--recover", "--json"],
        None,
        Some("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote"),
    );
    assert!(r.status_ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["network"], "testnet");
    // The flag overrides the config's network (and is then checked against the keystore).
    fails_with(
        &run(&d, &["--network", "regtest", "show"], None, None),
        "network mismatch",
    );
    let r = run(&d, &["show", "--count", "1"], None, None);
    assert!(r.status_ok, "{}", r.stderr);
    // An unknown key is an error, not silently ignored.
    std::fs::write(d.join("wallet.toml"), "netwrok = \"bitcoin\"\n").unwrap();
    fails_with(
        &run(&d, &["show"], Some("config pw"), None),
        "malformed config",
    );
}

fn seed_record(format: &str) -> Value {
    let all: Value =
        serde_json::from_str(include_str!("../../tests/data/seed-records.json")).unwrap();
    let mut rec = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["format"] == format && r.get("value").is_some())
        .unwrap()
        .clone();
    rec.as_object_mut().unwrap().remove("comment");
    rec
}

#[test]
fn seal_and_open_the_brief_records() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("w");
    let d = d.as_path();
    let r = run(
        d,
        &["--network", "regtest", "init", "--recover"],
        Some(PW),
        Some("hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length"),
    );
    assert!(r.status_ok, "{}", r.stderr);
    ok_json(
        d,
        &["device", "add", "LBVNU79049SB81546", "--pool-size", "8"],
    );

    for (format, vid) in [
        ("trip-gps", Some("LBVNU79049SB81546")),
        ("carvio", Some("LBVNU79049SB81546")),
        ("VIN_CODE", None),
    ] {
        let rec = seed_record(format);
        let input = tmp.path().join(format!("{format}.json"));
        let sealed = tmp.path().join(format!("{format}.sealed.json"));
        std::fs::write(&input, rec.to_string()).unwrap();
        let mut args = vec![
            "seal",
            input.to_str().unwrap(),
            "-o",
            sealed.to_str().unwrap(),
        ];
        if let Some(v) = vid {
            args.extend(["--vid", v]);
        }
        let summary = ok_json(d, &args);
        let envelope = std::fs::read_to_string(&sealed).unwrap();
        // Values are encrypted: no plaintext column content in the envelope.
        if format == "VIN_CODE" {
            assert!(!envelope.contains("LBVNU79049SB81546"));
            assert_eq!(summary["path"], "m/84'/1'/0'/0/0");
        } else {
            assert!(summary["path"].as_str().unwrap().starts_with("m/84'/1'/"));
            let day = ok_json(
                d,
                &[
                    "address",
                    "LBVNU79049SB81546",
                    "--date",
                    summary["date"].as_str().unwrap(),
                ],
            );
            assert_eq!(day["address"], summary["address"]);
        }
        let opened = ok_json(d, &["open", sealed.to_str().unwrap()]);
        assert_eq!(opened["record"], rec, "{format}");
        assert_eq!(opened["dhash_verified"], true);
        assert_eq!(opened["dhash"], summary["dhash"]);
        let kind = if vid.is_some() { "device" } else { "wallet" };
        assert_eq!(opened["owner"]["kind"], kind);
        if vid.is_some() {
            assert_eq!(opened["owner"]["date_matches"], true);
        }
    }

    // Without -o the envelope goes to stdout, and `open -` reads it from stdin.
    let trip = tmp.path().join("trip-gps.json");
    let r = run(
        d,
        &["seal", trip.to_str().unwrap(), "--vid", "LBVNU79049SB81546"],
        Some(PW),
        None,
    );
    assert!(r.status_ok, "{}", r.stderr);
    let r2 = run(
        d,
        &["open", "-", "--columns", "SPEED,len", "--json"],
        Some(PW),
        Some(&r.stdout),
    );
    assert!(r2.status_ok, "{}", r2.stderr);
    let v: Value = serde_json::from_str(&r2.stdout).unwrap();
    assert_eq!(v["dhash_verified"], false);
    assert_eq!(v["record"]["value"].as_object().unwrap().len(), 2);
    assert_eq!(v["record"]["value"]["len"], 10);
    let text = run(d, &["open", "-"], Some(PW), Some(&r.stdout));
    assert!(
        text.status_ok && text.stdout.contains("verified") && text.stdout.contains("START_TIME")
    );

    // An extra reader (an OpenSSL key) is added next to the wallet's own key.
    let key = tmp.path().join("buyer.pem");
    let pubkey = tmp.path().join("buyer.pub.pem");
    let ok = Command::new("/usr/bin/openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ])
        .status()
        .unwrap()
        .success()
        && Command::new("/usr/bin/openssl")
            .args([
                "pkey",
                "-in",
                key.to_str().unwrap(),
                "-pubout",
                "-out",
                pubkey.to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
    assert!(ok);
    let out = tmp.path().join("shared.sealed.json");
    let s = ok_json(
        d,
        &[
            "seal",
            trip.to_str().unwrap(),
            "--vid",
            "LBVNU79049SB81546",
            "--reader",
            pubkey.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(s["readers"].as_array().unwrap().len(), 2);
}

#[test]
fn seal_and_open_reject_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("w");
    let d = d.as_path();
    let other = tmp.path().join("other");
    let r = run(d, &["--network", "regtest", "init"], Some(PW), None);
    assert!(r.status_ok, "{}", r.stderr);
    ok_json(d, &["device", "add", "car", "--pool-size", "4"]);

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"format":"x","key":{}}"#).unwrap();
    fails_with(
        &run(d, &["seal", bad.to_str().unwrap()], Some(PW), None),
        "malformed record",
    );
    fails_with(
        &run(d, &["seal", "/no/such/file.json"], Some(PW), None),
        "reading",
    );
    let vin = tmp.path().join("vin.json");
    std::fs::write(&vin, seed_record("VIN_CODE").to_string()).unwrap();
    fails_with(
        &run(
            d,
            &["seal", vin.to_str().unwrap(), "--vid", "car"],
            Some(PW),
            None,
        ),
        "pass --date",
    );
    fails_with(
        &run(
            d,
            &[
                "seal",
                vin.to_str().unwrap(),
                "--vid",
                "ghost",
                "--date",
                "20200101",
            ],
            Some(PW),
            None,
        ),
        "unknown vid",
    );
    let notpem = tmp.path().join("not.pem");
    std::fs::write(&notpem, "hello").unwrap();
    fails_with(
        &run(
            d,
            &[
                "seal",
                vin.to_str().unwrap(),
                "--reader",
                notpem.to_str().unwrap(),
            ],
            Some(PW),
            None,
        ),
        "reader key",
    );

    let trip = tmp.path().join("trip.json");
    std::fs::write(&trip, seed_record("trip-gps").to_string()).unwrap();
    let sealed = tmp.path().join("trip.sealed.json");
    ok_json(
        d,
        &[
            "seal",
            trip.to_str().unwrap(),
            "--vid",
            "car",
            "-o",
            sealed.to_str().unwrap(),
        ],
    );
    let mut env: Value = serde_json::from_str(&std::fs::read_to_string(&sealed).unwrap()).unwrap();

    fails_with(
        &run(
            d,
            &["open", sealed.to_str().unwrap(), "--columns", "NOPE"],
            Some(PW),
            None,
        ),
        "unknown column",
    );

    // A flipped ciphertext byte.
    let ct = env["columns"]["SPEED"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = if ct.starts_with('A') { "B" } else { "A" };
    let flipped = format!("{first}{}", ct.get(1..).unwrap());
    env["columns"]["SPEED"]["ciphertext"] = flipped.into();
    let tampered = tmp.path().join("tampered.json");
    std::fs::write(&tampered, env.to_string()).unwrap();
    fails_with(
        &run(d, &["open", tampered.to_str().unwrap()], Some(PW), None),
        "failed authentication",
    );

    fails_with(
        &run(d, &["open", bad.to_str().unwrap()], Some(PW), None),
        "malformed sealed record",
    );

    // Another wallet is not a reader.
    let r = run(&other, &["--network", "regtest", "init"], Some(PW), None);
    assert!(r.status_ok, "{}", r.stderr);
    fails_with(
        &run(&other, &["open", sealed.to_str().unwrap()], Some(PW), None),
        "not a reader",
    );
}
