//! End to end through the user-facing commands, on a devnet of 4 real `agent` processes: an
//! owner's `wallet` sets a car up, the car's `device` puts the brief's records, and the wallet
//! reads them back — byte-exact, projected, by range up to `INF_MAX`, and as a day's listing,
//! every answer checked against the chain. Then a duplicate, the wallet's own data (putWalKV),
//! and an agent killed in the middle of a run of simulated cars, after which every record the
//! devices were told is stored is listed by the owner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use carchain_tests::{
    bin, run, seed_object_text, seed_record_json, seed_records, wait_until, Devnet,
};
use serde_json::Value;

const VID: &str = "LBVNU79049SB81546";

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output, what: &str) -> Value {
    let text = ok(out, what);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// A wallet with a funded owner account and `vids` set up on chain; returns the network file
/// path and the provisioning file of each car.
fn owner_with_cars(net: &Devnet, work: &Path, vids: &[&str]) -> (String, Vec<String>) {
    let netfile = net.network_file().display().to_string();
    let init = json(
        &run(
            "wallet",
            work,
            &[
                "--data-dir",
                "owner",
                "--network",
                "regtest",
                "init",
                "--json",
            ],
        ),
        "wallet init",
    );
    net.fund(init["first_address"].as_str().unwrap(), 1000);
    let network: Value =
        serde_json::from_str(&std::fs::read_to_string(net.network_file()).unwrap()).unwrap();
    let agent0 = network["agents"][0]["account"]
        .as_str()
        .unwrap()
        .to_string();
    let mut provisions = Vec::new();
    for vid in vids {
        let prov = work
            .join(format!("{vid}.device.json"))
            .display()
            .to_string();
        ok(
            &run(
                "wallet",
                work,
                &[
                    "--data-dir",
                    "owner",
                    "--network",
                    &netfile,
                    "device",
                    "setup",
                    vid,
                    "--agent",
                    &agent0,
                    "--pool-size",
                    "8",
                    "--out",
                    &prov,
                ],
            ),
            "wallet device setup",
        );
        provisions.push(prov);
    }
    (netfile, provisions)
}

/// `device --json put` of one record file.
fn device_put(work: &Path, provision: &str, netfile: &str, record: &str) -> Output {
    run(
        "device",
        work,
        &[
            "--json",
            "put",
            "--provision",
            provision,
            "--network",
            netfile,
            "--record",
            record,
        ],
    )
}

fn wallet(work: &Path, netfile: &str, args: &[&str]) -> Output {
    let mut all = vec!["--data-dir", "owner", "--network", netfile, "--json"];
    all.extend_from_slice(args);
    run("wallet", work, &all)
}

#[test]
fn a_car_puts_the_brief_s_records_and_the_owner_reads_them_back_verified() {
    let net = Devnet::start(4);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (netfile, provisions) = owner_with_cars(&net, w, &[VID]);
    let prov = &provisions[0];
    let seeds = seed_records();
    for (i, name) in [(0, "trip.json"), (1, "carvio.json")] {
        std::fs::write(w.join(name), seed_record_json(i)).unwrap();
        let put = json(&device_put(w, prov, &netfile, name), "device put");
        assert_eq!(put["outcome"], "attested", "{put}");
    }

    // Both records round-trip exactly (every column, decrypted and re-hashed to dHash).
    let trip_key = seed_object_text("key", 0);
    let got = json(
        &wallet(w, &netfile, &["get", VID, "--key", &trip_key]),
        "wallet get trip",
    );
    let rec = &got;
    assert_eq!(
        rec["key"].as_str().unwrap(),
        trip_key.replace(' ', ""),
        "the key keeps its written order"
    );
    assert_eq!(rec["columns"], seeds[0]["value"], "{got}");
    assert_eq!(rec["format"], "trip-gps");
    assert_eq!(rec["dhash_verified"], true);
    let carvio_key = seed_object_text("key", 1);
    let got = json(
        &wallet(
            w,
            &netfile,
            &["get", VID, "--key", &carvio_key, "--date", "20180310"],
        ),
        "wallet get carvio",
    );
    assert_eq!(got["columns"], seeds[1]["value"], "{got}");

    // Projection: only the columns asked for are fetched and decrypted.
    let got = json(
        &wallet(
            w,
            &netfile,
            &["get", VID, "--key", &trip_key, "--columns", "GPS,SPEED"],
        ),
        "wallet get projection",
    );
    let cols = got["columns"].as_object().unwrap();
    assert_eq!(cols.keys().collect::<Vec<_>>(), ["GPS", "SPEED"]);
    assert_eq!(cols["SPEED"], seeds[0]["value"]["SPEED"]);

    // The brief's getKVRange up to INF_MAX.
    let got = json(
        &wallet(
            w,
            &netfile,
            &[
                "range",
                VID,
                "--start",
                &seed_object_text("start", 0),
                "--end",
                &seed_object_text("end", 0),
                "--columns",
                "VEHICLE_DATA,GPS,SPEED",
            ],
        ),
        "wallet range",
    );
    let records = got["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{got}");
    assert_eq!(records[0]["columns"]["GPS"], seeds[0]["value"]["GPS"]);

    // The day's listing: one address, the attestation count proven, the trip in it (and the
    // violation too when its day drew the same pool address).
    let address_of = |date: &str| {
        json(
            &wallet(w, &netfile, &["address", VID, "--date", date]),
            "wallet address",
        )["address"]
            .clone()
    };
    let shared = address_of("20160511") == address_of("20180310");
    let day = json(
        &wallet(w, &netfile, &["trips", VID, "--date", "20160511"]),
        "wallet trips",
    );
    assert_eq!(day["complete"], true);
    let listed = day["records"].as_array().unwrap();
    assert_eq!(listed.len(), if shared { 2 } else { 1 }, "{day}");
    let compact = trip_key.replace(' ', "");
    assert!(listed
        .iter()
        .any(|r| r["key"].as_str() == Some(compact.as_str())));

    // Re-putting the same record is idempotent; other content under the same key is refused.
    let again = json(
        &device_put(w, prov, &netfile, "trip.json"),
        "device put again",
    );
    assert_eq!(again["outcome"], "already_attested", "{again}");
    std::fs::write(
        w.join("forged.json"),
        seed_record_json(0).replace("0,23,52", "9,99,99"),
    )
    .unwrap();
    let dup = run(
        "device",
        w,
        &[
            "put",
            "--provision",
            prov,
            "--network",
            &netfile,
            "--record",
            "forged.json",
        ],
    );
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr).to_lowercase();
    assert!(
        err.contains("already") || err.contains("duplicate"),
        "{err}"
    );

    // The wallet's own data (putWalKV), once only.
    let vin = &seeds[2];
    let put_args = [
        "put",
        "--format",
        "VIN_CODE",
        "--key",
        &seed_object_text("key", 2),
        "--value",
        &vin["value"].to_string(),
    ];
    ok(&wallet(w, &netfile, &put_args), "wallet put");
    assert!(!wallet(w, &netfile, &put_args).status.success());
}

fn metric(http: &str, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn devices_fail_over_when_an_agent_dies_and_no_acknowledged_record_is_lost() {
    let net = Devnet::start(4);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cars = ["LSGBL5334HF000001", "LSGBL5334HF000002"];
    let (netfile, provisions) = owner_with_cars(&net, w, &cars);
    let network: Value =
        serde_json::from_str(&std::fs::read_to_string(net.network_file()).unwrap()).unwrap();
    let http0 = network["agents"][0]["http"].as_str().unwrap().to_string();
    let trips = 8;
    let mut args = vec![
        "--json".to_string(),
        "simulate".into(),
        "--network".into(),
        netfile.clone(),
        "--trips-per-car".into(),
        trips.to_string(),
        "--violations-per-car".into(),
        "1".into(),
        "--date".into(),
        "20160511".into(),
        "--seed".into(),
        "5".into(),
    ];
    for p in &provisions {
        args.push("--provision".into());
        args.push(p.clone());
    }
    let sim = Command::new(bin("device"))
        .current_dir(w)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Agent 0 is the devices' agent: kill it once it has stored some of their records.
    wait_until("agent 0 to store records", Duration::from_secs(120), || {
        metric(&http0, "carchain_gateway_records_put_total").is_some_and(|n| n >= 2)
    });
    net.kill(0);
    let out = sim.wait_with_output().unwrap();
    let text = ok(&out, "device simulate");
    let mut ok_puts = None;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["bench"] == "device.put.ok" {
            ok_puts = v["value"].as_u64();
        }
        if v["bench"] == "device.put.failed" {
            assert_eq!(v["value"], 0, "{text}");
        }
    }
    let per_car = trips + 1;
    assert_eq!(ok_puts, Some(2 * per_car), "{text}");

    // The owner lists each car's day through the surviving agents: every acknowledged record
    // is there, counted by the chain.
    for vid in cars {
        let day = json(
            &wallet(w, &netfile, &["trips", vid, "--date", "20160511"]),
            "trips",
        );
        assert_eq!(day["complete"], true);
        assert_eq!(
            day["records"].as_array().unwrap().len() as u64,
            per_car,
            "{vid}: {day}"
        );
    }
}
