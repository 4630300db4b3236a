//! The `wallet` commands that talk to the chain through an agent's gateway: `device setup`,
//! `device reset`, `trips`, `get`, `range`, `put` and `balance`. The work is in
//! [`wallet::online`]; this module parses arguments and prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use gateway::NetworkFile;
use primitives::record::Record;
use primitives::RecordKey;
use serde_json::{json, Value};
use wallet::online::{self, Online, ProvisionReport, ReadRange, ReadRecord, ReadReport};
use wallet::{date_of, HdKeys, RecordDate, Vid, WalletDir, WalletError, WalletSecrets};

use crate::{emit, unlock, Cli, GetArgs, PutArgs, RangeArgs, TripsArgs};

/// How long a transaction may wait for its block.
const WAIT: Duration = Duration::from_secs(60);

fn network_file(cli: &Cli) -> anyhow::Result<NetworkFile> {
    let path = cli.network_file.as_deref().ok_or_else(|| {
        anyhow!(
            "this command talks to the chain: pass --network FILE (the network file `agent devnet` writes, DIR/network.json)"
        )
    })?;
    Ok(NetworkFile::load(path)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// What every chain command needs: the network file, the unlocked wallet and a runtime.
struct Session {
    network: NetworkFile,
    secrets: WalletSecrets,
    keys: HdKeys,
    rt: tokio::runtime::Runtime,
}

impl Session {
    fn open(cli: &Cli, dir: &WalletDir) -> anyhow::Result<Self> {
        let network = network_file(cli)?;
        let secrets = unlock(cli, dir)?;
        let keys = secrets.hd_keys()?;
        Ok(Session {
            network,
            secrets,
            keys,
            rt: runtime()?,
        })
    }

    /// Connects (inside the runtime: the QUIC endpoint needs it).
    fn connect(&self) -> anyhow::Result<Online> {
        let _guard = self.rt.enter();
        Ok(Online::connect(self.network.clone(), &self.keys, WAIT)?)
    }
}

fn default_out(dir: &WalletDir, vid: &Vid, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => dir
            .root()
            .join("devices")
            .join(format!("{}.device.json", vid.as_str())),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(path)
}

fn provision_text(verb: &str, r: &ProvisionReport) -> String {
    let mut s = format!("Device {} {verb} on chain {}\n", r.vid, r.chain_id);
    s.push_str(&format!("  owner       {}\n", r.owner));
    s.push_str(&format!(
        "  device key  {} (generation {})\n",
        r.device_account, r.generation
    ));
    s.push_str(&format!("  agent       {}\n", r.agent));
    match &r.commitment {
        Some(c) => s.push_str(&format!(
            "  pool        {} addresses, commitment {c}\n",
            r.pool_size
        )),
        None => s.push_str(&format!("  pool        {} addresses\n", r.pool_size)),
    }
    for t in &r.transactions {
        s.push_str(&format!(
            "  {:<11} tx {} in block {}\n",
            t.call, t.tx, t.height
        ));
    }
    for k in &r.skipped {
        s.push_str(&format!("  {k:<11} already on chain, skipped\n"));
    }
    s.push_str(&format!(
        "Provisioning file: {}\n  It holds the device key and the user seed: move it to the device and delete it here.\n",
        r.file
    ));
    s
}

pub(crate) fn device_setup(
    cli: &Cli,
    dir: &WalletDir,
    vid: &str,
    agent: &str,
    pool_size: Option<u32>,
    valid_until: Option<u64>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let vid = Vid::new(vid)?;
    let out = default_out(dir, &vid, out)?;
    let ss = Session::open(cli, dir)?;
    let mut list = dir.devices(ss.keys.network())?;
    match list.get(&vid) {
        Ok(entry) => {
            if let Some(n) = pool_size {
                if usize::try_from(n).ok() != Some(entry.addresses.len()) {
                    bail!(
                        "{vid} is already in the device list with a pool of {} addresses, not {n}",
                        entry.addresses.len()
                    );
                }
            }
        }
        Err(WalletError::UnknownVid(_)) => {
            list.add(&ss.keys, vid.clone(), pool_size.unwrap_or(16))?;
            dir.save_devices(&list)?;
        }
        Err(e) => return Err(e.into()),
    }
    let params = online::SetupParams {
        vid: &vid,
        agent,
        valid_until: valid_until.unwrap_or(u64::MAX),
        out: &out,
    };
    let mut conn = ss.connect()?;
    let report = ss.rt.block_on(online::setup(
        &mut conn,
        &ss.keys,
        ss.secrets.reader(),
        &list,
        &params,
    ))?;
    emit(cli, serde_json::to_value(&report)?, || {
        provision_text("set up", &report)
    });
    Ok(())
}

pub(crate) fn device_reset(
    cli: &Cli,
    dir: &WalletDir,
    vid: &str,
    agent: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let vid = Vid::new(vid)?;
    let out = default_out(dir, &vid, out)?;
    let ss = Session::open(cli, dir)?;
    let mut conn = ss.connect()?;
    let report = ss.rt.block_on(async {
        let list = dir.devices(ss.keys.network())?;
        anyhow::Ok(
            online::reset(
                &mut conn,
                &ss.keys,
                ss.secrets.reader(),
                &list,
                &vid,
                agent,
                &out,
            )
            .await?,
        )
    })?;
    emit(cli, serde_json::to_value(&report)?, || {
        provision_text("reset", &report)
    });
    Ok(())
}

fn parse_key(what: &str, text: &str) -> anyhow::Result<RecordKey> {
    RecordKey::from_json_str(text).with_context(|| format!("malformed {what} key {text:?}"))
}

/// Shortens `s` to at most `n` characters.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn rows_text(report: &ReadReport, columns: &[String]) -> String {
    let mut s = format!(
        "{} on {} at {} ({}): {} record(s), {}, proofs checked at height {}\n",
        report.vid,
        report.date,
        report.address,
        report.path,
        report.records.len(),
        if report.complete {
            "the complete set attested on chain"
        } else {
            "each attested on chain"
        },
        report.proven_height
    );
    if report.records.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "{:<44} {:>15} {:>15} {:>8} {:>7}  {}\n",
        "key",
        "start",
        "end",
        "size",
        "height",
        if columns.is_empty() {
            "columns"
        } else {
            "values"
        }
    ));
    for r in &report.records {
        let cols = if columns.is_empty() {
            r.columns.keys().cloned().collect::<Vec<_>>().join(",")
        } else {
            columns
                .iter()
                .map(|c| format!("{c}={}", clip(&cell(r.columns.get(c)), 32)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        s.push_str(&format!(
            "{:<44} {:>15} {:>15} {:>8} {:>7}  {}\n",
            clip(&r.key, 44),
            cell(r.start_time.as_ref()),
            cell(r.end_time.as_ref()),
            r.size,
            r.height,
            cols
        ));
    }
    s
}

fn record_text(report: &ReadReport) -> anyhow::Result<String> {
    let mut s = String::new();
    for r in &report.records {
        s.push_str(&record_one(r)?);
    }
    s.push_str(&format!(
        "address {} ({}, {} {}), proofs checked at height {}\n",
        report.address, report.path, report.vid, report.date, report.proven_height
    ));
    Ok(s)
}

fn record_one(r: &ReadRecord) -> anyhow::Result<String> {
    let value = serde_json::to_string_pretty(&r.columns)?.replace('\n', "\n        ");
    let check = if r.dhash_verified {
        format!(
            "dHash {} verified against the plaintext and the chain",
            r.dhash
        )
    } else {
        format!(
            "projection: dHash {} matches the chain; columns authenticated one by one",
            r.dhash
        )
    };
    Ok(format!(
        "format  {}\nkey     {}\nvalue   {value}\n{check}\nattested at height {} by {} ({} bytes stored)\n",
        r.format, r.key, r.height, r.writer, r.size
    ))
}

/// Opens the wallet, connects to the chain and reads `range` of `vid` on `date`, verified.
fn read_report(
    cli: &Cli,
    dir: &WalletDir,
    vid: &Vid,
    date: RecordDate,
    range: ReadRange,
    columns: &[String],
) -> anyhow::Result<online::ReadReport> {
    let ss = Session::open(cli, dir)?;
    let mut conn = ss.connect()?;
    let list = dir.devices(ss.keys.network())?;
    Ok(ss.rt.block_on(online::read(
        &mut conn,
        &ss.keys,
        ss.secrets.reader(),
        &list,
        vid,
        date,
        &range,
        columns,
    ))?)
}

pub(crate) fn trips(cli: &Cli, dir: &WalletDir, a: &TripsArgs) -> anyhow::Result<()> {
    let vid = Vid::new(&a.vid)?;
    let date = RecordDate::parse(&a.date)?;
    let report = read_report(cli, dir, &vid, date, ReadRange::All, &a.columns)?;
    emit(cli, serde_json::to_value(&report)?, || {
        rows_text(&report, &a.columns)
    });
    Ok(())
}

pub(crate) fn get(cli: &Cli, dir: &WalletDir, a: &GetArgs) -> anyhow::Result<()> {
    let vid = Vid::new(&a.vid)?;
    let key = parse_key("record", &a.key)?;
    let date = match &a.date {
        Some(d) => RecordDate::parse(d)?,
        None => date_of(&key, &Default::default()).ok_or(WalletError::MissingDate)?,
    };
    let report = read_report(cli, dir, &vid, date, ReadRange::One(key), &a.columns)?;
    if cli.json {
        let r = report
            .records
            .first()
            .ok_or_else(|| anyhow!("no record returned"))?;
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("vid".into(), json!(report.vid));
            o.insert("date".into(), json!(report.date));
            o.insert("address".into(), json!(report.address));
            o.insert("proven_height".into(), json!(report.proven_height));
        }
        println!("{v}");
        return Ok(());
    }
    print!("{}", record_text(&report)?);
    Ok(())
}

pub(crate) fn range(cli: &Cli, dir: &WalletDir, a: &RangeArgs) -> anyhow::Result<()> {
    let vid = Vid::new(&a.vid)?;
    let start = parse_key("start", &a.start)?;
    let end = parse_key("end", &a.end)?;
    let date = match &a.date {
        Some(d) => RecordDate::parse(d)?,
        None => date_of(&start, &Default::default()).ok_or(WalletError::MissingDate)?,
    };
    let report = read_report(
        cli,
        dir,
        &vid,
        date,
        ReadRange::Range(start, end),
        &a.columns,
    )?;
    emit(cli, serde_json::to_value(&report)?, || {
        rows_text(&report, &a.columns)
    });
    Ok(())
}

/// Builds a record from the three JSON pieces, keeping the key's written order.
pub(crate) fn record_from_parts(format: &str, key: &str, value: &str) -> anyhow::Result<Record> {
    // Each piece must be a JSON object on its own, so that joining them cannot change the
    // structure of the whole.
    for (what, text) in [("key", key), ("value", value)] {
        let v: Value =
            serde_json::from_str(text).with_context(|| format!("--{what} is not valid JSON"))?;
        if !v.is_object() {
            bail!("--{what} must be a JSON object");
        }
    }
    if format.is_empty() {
        bail!("--format must not be empty");
    }
    let text = format!(
        "{{\"format\":{},\"key\":{key},\"value\":{value}}}",
        Value::String(format.to_owned())
    );
    Record::from_json_str(&text).context("malformed record")
}

pub(crate) fn put(cli: &Cli, dir: &WalletDir, a: &PutArgs) -> anyhow::Result<()> {
    let record = record_from_parts(&a.format, &a.key, &a.value)?;
    let ss = Session::open(cli, dir)?;
    let mut conn = ss.connect()?;
    let report = ss.rt.block_on(online::put_own(
        &mut conn,
        &ss.keys,
        ss.secrets.reader(),
        &record,
    ))?;
    emit(cli, serde_json::to_value(&report)?, || {
        format!(
            "Stored {} record {} at {} (the wallet's own address)\n  dHash      {}\n  size       {} bytes, placement {} ({} shards durable, {} missing)\n  attested   tx {} in block {}\n",
            report.format,
            report.key,
            report.address,
            report.dhash,
            report.size,
            report.placement,
            report.durable,
            report.missing,
            report.attested.tx,
            report.attested.height
        )
    });
    Ok(())
}

pub(crate) fn balance(cli: &Cli, dir: &WalletDir) -> anyhow::Result<()> {
    let ss = Session::open(cli, dir)?;
    let mut conn = ss.connect()?;
    let report = ss.rt.block_on(online::balance(&mut conn, &ss.keys))?;
    emit(cli, serde_json::to_value(&report)?, || {
        format!(
            "account  {}\ntokens   {}\ncredits  {} (fee credits: pay fees only)\nnonce    {}\n(proven at height {})\n",
            report.account, report.tokens, report.credits, report.nonce, report.height
        )
    });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn put_pieces_keep_the_key_order_and_refuse_injection() {
        let r = record_from_parts("VIN_CODE", r#"{"B":1,"A":2}"#, r#"{"VIN":"X"}"#).unwrap();
        assert_eq!(r.key().to_json_string(), r#"{"B":1,"A":2}"#);
        assert!(record_from_parts("F", r#"{"A":1},"value":{"x":1}"#, r#"{}"#).is_err());
        assert!(record_from_parts("F", "[1]", r#"{"a":1}"#).is_err());
        assert!(record_from_parts("", r#"{"A":1}"#, r#"{"a":1}"#).is_err());
    }

    #[test]
    fn clip_is_char_safe() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
