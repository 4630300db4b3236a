//! `wallet`: the CarChain owner's command-line wallet.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use primitives::envelope::SealedRecord;
use primitives::record::Record;
use serde_json::json;
use wallet::keys::Chain;
use wallet::pool::AddressPool;
use wallet::reader_key::public_from_pem;
use wallet::{
    date_of, open_record, owner_of, place, seal_record, user_seed, HdKeys, KdfParams,
    MnemonicPhrase, Opened, Owner, ReaderKey, RecordDate, Vid, WalletDir, WalletError,
    WalletNetwork, WalletSecrets,
};
use zeroize::Zeroizing;

mod chain_cmd;

const PASSWORD_ENV: &str = "CARCHAIN_WALLET_PASSWORD";
const BIP39_PASSPHRASE_ENV: &str = "CARCHAIN_WALLET_BIP39_PASSPHRASE";

/// CarChain owner wallet: HD keys and Bitcoin addresses (BIP39/BIP32/BIP84), per-device
/// address pools, the RSA reader key, and sealing/opening of records.
///
/// Secrets live in an encrypted keystore (scrypt + ChaCha20-Poly1305, mode 0600) in the data
/// directory. The keystore password is read from --password-file if given, else from the
/// CARCHAIN_WALLET_PASSWORD environment variable, else prompted for when stdin is a terminal.
#[derive(Debug, Parser)]
#[command(name = "wallet", version, propagate_version = true)]
struct Cli {
    /// Directory holding keystore.json and devices.json [default: ~/.carchain/wallet].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Print machine-readable JSON (one object) instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// A Bitcoin network name (bitcoin, testnet, regtest: chosen at `init`, default bitcoin;
    /// later commands check it matches), or, for the commands that talk to the chain (device
    /// setup/reset, trips, get, range, put, balance), the network FILE that `agent devnet`
    /// writes (DIR/network.json: the genesis, which names the network, and the agents).
    #[arg(long = "network", id = "network", global = true, value_name = "NAME|FILE", value_parser = parse_network_arg)]
    network_arg: Option<NetworkArg>,

    /// The wallet network resolved from --network or the config.
    #[arg(skip)]
    network: Option<WalletNetwork>,

    /// The network file resolved from --network or the config.
    #[arg(skip)]
    network_file: Option<PathBuf>,

    /// Read the keystore password from this file (first line); overrides CARCHAIN_WALLET_PASSWORD.
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// TOML config file with defaults for `network` and `password_file`; flags override it
    /// [default: DIR/wallet.toml when present].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// What --network names: a Bitcoin network, or a network file.
#[derive(Debug, Clone)]
enum NetworkArg {
    Name(WalletNetwork),
    File(PathBuf),
}

fn parse_network_arg(s: &str) -> Result<NetworkArg, String> {
    if s.is_empty() {
        return Err("expected a network name (bitcoin, testnet, regtest) or a network file".into());
    }
    match s.parse::<WalletNetwork>() {
        Ok(n) => Ok(NetworkArg::Name(n)),
        Err(_) => Ok(NetworkArg::File(PathBuf::from(s))),
    }
}

/// Settings read from the TOML config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    network: Option<WalletNetwork>,
    password_file: Option<PathBuf>,
    /// Default network file for the commands that talk to the chain.
    network_file: Option<PathBuf>,
}

fn load_config(explicit: Option<&Path>, dir: &WalletDir) -> anyhow::Result<Config> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = dir.root().join("wallet.toml");
            if !p.exists() {
                return Ok(Config::default());
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("malformed config {}", path.display()))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a wallet: a new 24-word mnemonic (printed once) and a 3072-bit RSA reader key.
    ///
    /// With --recover, the mnemonic is read from stdin instead (any whitespace between
    /// words). An optional BIP39 passphrase is taken from CARCHAIN_WALLET_BIP39_PASSPHRASE.
    /// Refuses to overwrite an existing wallet.
    Init {
        /// Restore from an existing mnemonic read from stdin.
        #[arg(long)]
        recover: bool,
    },
    /// Show receiving addresses (m/84'/coin'/0'/0/i), the account zpub and the RSA public key.
    Show {
        /// How many receiving addresses to list.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
    },
    /// Manage the device list and each device's address pool.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Seal a record: encrypt each column under a fresh key wrapped for the wallet's RSA key
    /// (and any --reader), bound to the address the record is stored at.
    Seal(SealArgs),
    /// Open a sealed record with the wallet's RSA key, check its dHash, and say which of the
    /// wallet's addresses (and which device) it belongs to.
    Open(OpenArgs),
    /// Print the pool address that holds a device's records of a given day.
    Address {
        /// Device identifier (e.g. a VIN).
        vid: String,
        /// The day, as YYYYMMDD.
        #[arg(long)]
        date: String,
    },
    /// List a device's records of one day (the brief's trip display), read through an agent
    /// and verified against the chain.
    ///
    /// Recomputes the day's pool address, pays the agent for reading one address (a PayRead
    /// signed by the owner key), scans the whole address, and checks against proofs from the
    /// chain (anchored on the network file's genesis validators) that the agent returned
    /// exactly as many records as are attested there, that every record is attested with the
    /// dHash of its envelope, and (without --columns) that the decrypted plaintext re-hashes to
    /// it. Any failed check is an error: the agent is withholding or forging data.
    Trips(TripsArgs),
    /// Read one record of a device (the brief's getKV), verified against its attestation.
    ///
    /// The day (hence the pool address) comes from the key's START_TIME or DATE part unless
    /// --date is given. With --columns only those columns are fetched and decrypted; the
    /// envelope's dHash (bound into every column's authentication) is checked against the
    /// attested one.
    Get(GetArgs),
    /// Read a key range of a device's records of one day (the brief's getKVRange),
    /// start <= key < end; an end part "INF_MAX" sorts after every value.
    ///
    /// Every returned record is verified as in `trips`; completeness cannot be proven for a
    /// partial range (the chain counts whole addresses), use `trips` for that.
    Range(RangeArgs),
    /// Store the wallet's own data (the brief's putWalKV): seal it for the wallet's RSA key at
    /// its first receiving address, store it through an agent, and attest it on chain
    /// (AttestOwn, signed by the owner key). A key can be attested only once.
    Put(PutArgs),
    /// Show the owner account's balance (tokens, fee credits, nonce), proven against the chain.
    ///
    /// The owner account is the wallet's first receiving address, m/84'/coin'/0'/0/0; it
    /// signs and pays for setup, reset, reads and puts.
    Balance,
}

#[derive(Debug, Args)]
struct TripsArgs {
    /// Device identifier.
    vid: String,
    /// The day, as YYYYMMDD.
    #[arg(long)]
    date: String,
    /// Fetch and decrypt only these columns (comma-separated) and show their values.
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Device identifier.
    vid: String,
    /// The record key as JSON, e.g. '{"SESSION_ID":1,"START_TIME":20160511071428}' (the
    /// written order of the parts matters).
    #[arg(long)]
    key: String,
    /// The record's day, YYYYMMDD [default: from the key's START_TIME or DATE part].
    #[arg(long)]
    date: Option<String>,
    /// Fetch and decrypt only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
}

#[derive(Debug, Args)]
struct RangeArgs {
    /// Device identifier.
    vid: String,
    /// First key (inclusive), JSON.
    #[arg(long)]
    start: String,
    /// End key (exclusive), JSON; a part "INF_MAX" sorts after every value, e.g.
    /// '{"SESSION_ID":"INF_MAX"}'.
    #[arg(long)]
    end: String,
    /// The day, YYYYMMDD [default: from the start key's START_TIME or DATE part].
    #[arg(long)]
    date: Option<String>,
    /// Fetch and decrypt only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// The record's format (mandatory), e.g. VIN_CODE.
    #[arg(long)]
    format: String,
    /// The record key as a JSON object, e.g. '{"VEHICLE_DATA":1}'.
    #[arg(long)]
    key: String,
    /// The record value as a JSON object of columns, e.g. '{"VIN":"LBVNU79049SB81546"}'.
    #[arg(long)]
    value: String,
}

#[derive(Debug, Args)]
struct SealArgs {
    /// Record JSON file, {"format":…,"key":{…},"value":{…}}; `-` reads stdin.
    record: PathBuf,
    /// Device whose address pool receives the record (the brief's putIotKV). Without it the
    /// record is the wallet's own data (putWalKV), stored at its first receiving address.
    #[arg(long)]
    vid: Option<String>,
    /// The record's day, YYYYMMDD [default: from the key's START_TIME or DATE, or the
    /// datetime column].
    #[arg(long)]
    date: Option<String>,
    /// Another reader's RSA public key (SPKI PEM file); repeatable. The wallet's own reader key
    /// is always included.
    #[arg(long = "reader", value_name = "PEM")]
    readers: Vec<PathBuf>,
    /// Write the sealed envelope to this file (atomically) and print a summary, instead of
    /// printing the envelope.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct OpenArgs {
    /// Sealed envelope JSON file made by `wallet seal`; `-` reads stdin.
    sealed: PathBuf,
    /// Decrypt only these columns (comma-separated). Without it every column is decrypted and
    /// the record is checked against its dHash.
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Add a device with a pool of N addresses (the brief's setDup).
    ///
    /// The pool is m/84'/coin'/account'/0/0..N where the hardened account is derived from the
    /// wallet seed and the VID, so it can be recovered from the mnemonic alone.
    Add {
        /// Device identifier (1-64 printable ASCII characters, e.g. a VIN).
        vid: String,
        /// Number of addresses in the pool (1-10000).
        #[arg(long, default_value_t = 16)]
        pool_size: u32,
    },
    /// List the devices and their pools.
    List,
    /// Print what a device needs to report data: its pool, user seed and the RSA public key.
    ///
    /// The output contains the device's user seed, a secret shared only with that device.
    Export {
        /// Device identifier.
        vid: String,
    },
    /// Set a device up on the chain (the brief's setup + setDup) and write its provisioning
    /// file.
    ///
    /// Adds the device to the device list if it is not there, derives its generation-0
    /// secp256k1 key from the wallet seed and the VID (HKDF; recoverable from the mnemonic),
    /// and sends, signed by the owner key (m/84'/coin'/0'/0/0): Setup (VID, the wallet's RSA
    /// public key, the device key, the agent) and SetDup (a salted commitment to the pool
    /// addresses, never the addresses). Waits for both to be in blocks; steps the chain
    /// already has are skipped, so an interrupted setup can be rerun. The provisioning file
    /// holds the device key and user seed (mode 0600): move it to the device.
    Setup {
        /// Device identifier (1-64 printable ASCII characters, e.g. a VIN).
        vid: String,
        /// The agent the device reports through (its bech32 account).
        #[arg(long)]
        agent: String,
        /// Pool size if the device is not in the device list yet (1-10000) [default: 16].
        #[arg(long)]
        pool_size: Option<u32>,
        /// Last chain height at which the device may attest under this pool [default:
        /// unlimited].
        #[arg(long, value_name = "HEIGHT")]
        valid_until: Option<u64>,
        /// Provisioning file to write [default: DATA_DIR/devices/VID.device.json].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Rotate a device's key on the chain (the brief's reset) and rewrite its provisioning
    /// file.
    ///
    /// The new key is the next generation (the chain's proven reset count + 1) derived from
    /// the wallet seed; the Reset is signed by the owner key. The old key can no longer attest.
    Reset {
        /// Device identifier.
        vid: String,
        /// Move the device to this agent (bech32 account) [default: keep the current one].
        #[arg(long)]
        agent: Option<String>,
        /// Provisioning file to write [default: DATA_DIR/devices/VID.device.json].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_mode = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            if json_mode {
                eprintln!("{}", json!({ "error": msg }));
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<()> {
    let dir = WalletDir::new(data_dir(cli.data_dir.as_deref())?);
    let config = load_config(cli.config.as_deref(), &dir)?;
    match cli.network_arg.take() {
        Some(NetworkArg::Name(n)) => cli.network = Some(n),
        Some(NetworkArg::File(f)) => cli.network_file = Some(f),
        None => {}
    }
    cli.network = cli.network.or(config.network);
    cli.network_file = cli.network_file.take().or(config.network_file);
    if let (None, Some(file), Command::Init { .. }) = (cli.network, &cli.network_file, &cli.command)
    {
        // `init --network FILE`: a wallet for the network the file's genesis names.
        let name = gateway::NetworkFile::load(file)?.genesis.network;
        cli.network = Some(name.parse().map_err(|_| {
            anyhow!("the network file names network {name:?}, which the wallet does not support")
        })?);
    }
    cli.password_file = cli.password_file.take().or(config.password_file);
    match &cli.command {
        Command::Init { recover } => init(&cli, &dir, *recover),
        Command::Show { count } => show(&cli, &dir, *count),
        Command::Device(DeviceCommand::Add { vid, pool_size }) => {
            device_add(&cli, &dir, vid, *pool_size)
        }
        Command::Device(DeviceCommand::List) => device_list(&cli, &dir),
        Command::Device(DeviceCommand::Export { vid }) => device_export(&cli, &dir, vid),
        Command::Device(DeviceCommand::Setup {
            vid,
            agent,
            pool_size,
            valid_until,
            out,
        }) => chain_cmd::device_setup(
            &cli,
            &dir,
            vid,
            agent,
            *pool_size,
            *valid_until,
            out.as_deref(),
        ),
        Command::Device(DeviceCommand::Reset { vid, agent, out }) => {
            chain_cmd::device_reset(&cli, &dir, vid, agent.as_deref(), out.as_deref())
        }
        Command::Trips(a) => chain_cmd::trips(&cli, &dir, a),
        Command::Get(a) => chain_cmd::get(&cli, &dir, a),
        Command::Range(a) => chain_cmd::range(&cli, &dir, a),
        Command::Put(a) => chain_cmd::put(&cli, &dir, a),
        Command::Balance => chain_cmd::balance(&cli, &dir),
        Command::Address { vid, date } => address(&cli, &dir, vid, date),
        Command::Seal(args) => seal(&cli, &dir, args),
        Command::Open(args) => open(&cli, &dir, args),
    }
}

fn data_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; pass --data-dir"))?;
    Ok(PathBuf::from(home).join(".carchain").join("wallet"))
}

/// Reads the keystore password: --password-file, then the env var, then a terminal prompt.
fn password(cli: &Cli, prompt: &str, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(path) = &cli.password_file {
        let raw = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading password file {}", path.display()))?,
        );
        let first = raw.lines().next().unwrap_or("");
        return non_empty(Zeroizing::new(first.to_owned()));
    }
    if let Some(v) = std::env::var_os(PASSWORD_ENV) {
        let s = v
            .into_string()
            .map_err(|_| anyhow!("{PASSWORD_ENV} is not valid utf-8"))?;
        return non_empty(Zeroizing::new(s));
    }
    if std::io::stdin().is_terminal() {
        let first = prompt_hidden(prompt)?;
        if confirm {
            let again = prompt_hidden("repeat the password")?;
            if *again != *first {
                bail!("the two passwords differ");
            }
        }
        return non_empty(first);
    }
    bail!("no password given: set {PASSWORD_ENV}, pass --password-file, or run in a terminal")
}

/// Prompts on stderr and reads one line from the terminal with echo turned off (via `stty`,
/// so no extra dependency; if `stty` is unavailable the input is echoed).
fn prompt_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    eprint!("{prompt}: ");
    std::io::stderr().flush().ok();
    let hidden = stty("-echo");
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

fn stty(arg: &str) -> bool {
    std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

fn non_empty(p: Zeroizing<String>) -> anyhow::Result<Zeroizing<String>> {
    if p.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(p)
}

/// Unlocks the keystore and checks --network against it.
fn unlock(cli: &Cli, dir: &WalletDir) -> anyhow::Result<WalletSecrets> {
    let ks = dir.keystore()?;
    if let Some(n) = cli.network {
        if n != ks.network() {
            return Err(WalletError::NetworkMismatch {
                wallet: ks.network().to_string(),
                requested: n.to_string(),
            }
            .into());
        }
    }
    let pw = password(cli, "keystore password", false)?;
    Ok(ks.open(pw.as_bytes())?)
}

fn emit(cli: &Cli, value: serde_json::Value, text: impl FnOnce() -> String) {
    if cli.json {
        println!("{value}");
    } else {
        print!("{}", text());
    }
}

fn init(cli: &Cli, dir: &WalletDir, recover: bool) -> anyhow::Result<()> {
    if dir.is_initialized() {
        return Err(WalletError::AlreadyInitialized(dir.keystore_path()).into());
    }
    let network = cli.network.unwrap_or(WalletNetwork::Bitcoin);
    let mnemonic = if recover {
        read_mnemonic()?
    } else {
        MnemonicPhrase::generate()?
    };
    let passphrase = match std::env::var_os(BIP39_PASSPHRASE_ENV) {
        Some(v) => Zeroizing::new(
            v.into_string()
                .map_err(|_| anyhow!("{BIP39_PASSPHRASE_ENV} is not valid utf-8"))?,
        ),
        None => Zeroizing::new(String::new()),
    };
    let pw = password(cli, "new keystore password", true)?;
    let reader = ReaderKey::generate()?;
    let secrets = WalletSecrets::new(mnemonic, &passphrase, reader, network);
    let keys = secrets.hd_keys()?;
    let first = keys.receiving_address(0)?.to_string();
    let zpub = keys.account_zpub(0)?;
    dir.create(&secrets, pw.as_bytes(), KdfParams::default())?;

    let mut value = json!({
        "data_dir": dir.root().display().to_string(),
        "network": network.as_str(),
        "recovered": recover,
        "bip39_passphrase": !passphrase.is_empty(),
        "first_address": first,
        "account_zpub": zpub,
        "rsa_bits": secrets.reader().bits(),
    });
    if !recover {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("mnemonic".into(), secrets.mnemonic().as_str().into());
        }
    }
    emit(cli, value, || {
        let mut s = format!(
            "Wallet created in {} (network {network}).\n",
            dir.root().display()
        );
        if !recover {
            s.push_str(
                "\nWrite down these 24 words and keep them offline. They are shown only once\n\
                 and are the only way to recover the wallet and every device pool:\n\n",
            );
            s.push_str(&format!("    {}\n\n", secrets.mnemonic().as_str()));
        } else {
            s.push_str("Recovered from the mnemonic.\n");
        }
        s.push_str(&format!("First receiving address: {first}\n"));
        s.push_str(&format!("Account public key:      {zpub}\n"));
        s
    });
    Ok(())
}

/// Reads a mnemonic from stdin (prompting if it is a terminal).
fn read_mnemonic() -> anyhow::Result<MnemonicPhrase> {
    let stdin = std::io::stdin();
    let mut text = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        eprint!("mnemonic: ");
        std::io::stderr().flush().ok();
        stdin.lock().read_line(&mut text)?;
    } else {
        // A mnemonic is at most 24 words of at most 8 letters; cap the read well above that.
        stdin.lock().take(8 * 1024).read_to_string(&mut text)?;
    }
    Ok(MnemonicPhrase::parse(&text)?)
}

fn show(cli: &Cli, dir: &WalletDir, count: u32) -> anyhow::Result<()> {
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let network = keys.network();
    let addrs = (0..count)
        .map(|i| {
            Ok((
                format!("m/84'/{}'/0'/0/{i}", network.coin_type()),
                keys.address(0, Chain::Receive, i)?.to_string(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let zpub = keys.account_zpub(0)?;
    let pem = secrets.reader().public_pem()?;
    let value = json!({
        "network": network.as_str(),
        "account_zpub": zpub,
        "addresses": addrs.iter().enumerate().map(|(i, (p, a))| json!({"index": i, "path": p, "address": a})).collect::<Vec<_>>(),
        "rsa_bits": secrets.reader().bits(),
        "rsa_public_pem": pem,
    });
    emit(cli, value, || {
        let mut s = format!(
            "Network:            {network}\nAccount public key: {zpub}\n\nReceiving addresses:\n"
        );
        for (p, a) in &addrs {
            s.push_str(&format!("  {p:<22} {a}\n"));
        }
        s.push_str(&format!(
            "\nRSA reader public key ({} bits):\n{pem}",
            secrets.reader().bits()
        ));
        s
    });
    Ok(())
}

fn device_add(cli: &Cli, dir: &WalletDir, vid: &str, pool_size: u32) -> anyhow::Result<()> {
    let vid = Vid::new(vid)?;
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let mut list = dir.devices(keys.network())?;
    let entry = list.add(&keys, vid, pool_size)?.clone();
    dir.save_devices(&list)?;
    let path = pool_path(&keys, entry.account);
    let value = json!({
        "vid": entry.vid.as_str(),
        "account": entry.account,
        "path": path,
        "pool_size": entry.addresses.len(),
        "addresses": entry.addresses,
    });
    emit(cli, value, || {
        let mut s = format!(
            "Added {} with a pool of {} addresses at {path}:\n",
            entry.vid,
            entry.addresses.len()
        );
        for (i, a) in entry.addresses.iter().enumerate() {
            s.push_str(&format!("  {i:>5} {a}\n"));
        }
        s
    });
    Ok(())
}

fn pool_path(keys: &HdKeys, account: u32) -> String {
    format!("m/84'/{}'/{account}'/0/*", keys.network().coin_type())
}

fn device_list(cli: &Cli, dir: &WalletDir) -> anyhow::Result<()> {
    let ks = dir.keystore()?;
    let network = ks.network();
    if let Some(n) = cli.network {
        if n != network {
            return Err(WalletError::NetworkMismatch {
                wallet: network.to_string(),
                requested: n.to_string(),
            }
            .into());
        }
    }
    let list = dir.devices(network)?;
    let rows: Vec<_> = list
        .devices()
        .iter()
        .map(|d| {
            json!({
                "vid": d.vid.as_str(),
                "account": d.account,
                "path": format!("m/84'/{}'/{}'/0/*", network.coin_type(), d.account),
                "pool_size": d.addresses.len(),
            })
        })
        .collect();
    let value = json!({ "network": network.as_str(), "devices": rows });
    emit(cli, value, || {
        if list.devices().is_empty() {
            return "No devices yet; add one with `wallet device add VID --pool-size N`.\n".into();
        }
        let mut s = format!("{:<24} {:>9}  pool path\n", "vid", "pool size");
        for d in list.devices() {
            s.push_str(&format!(
                "{:<24} {:>9}  m/84'/{}'/{}'/0/*\n",
                d.vid.as_str(),
                d.addresses.len(),
                network.coin_type(),
                d.account
            ));
        }
        s
    });
    Ok(())
}

fn device_export(cli: &Cli, dir: &WalletDir, vid: &str) -> anyhow::Result<()> {
    let vid = Vid::new(vid)?;
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let list = dir.devices(keys.network())?;
    let entry = list.get(&vid)?;
    // Re-derive the pool from the keys rather than trusting the file.
    let size = u32::try_from(entry.addresses.len()).context("pool too large")?;
    let pool = AddressPool::derive(&keys, &vid, entry.account, size)?;
    let derived: Vec<String> = pool.addresses.iter().map(ToString::to_string).collect();
    if derived != entry.addresses {
        bail!("device list entry for {vid} does not match this wallet's keys");
    }
    let seed = user_seed(&keys, &vid)?;
    let value = json!({
        "vid": vid.as_str(),
        "network": keys.network().as_str(),
        "user_seed": seed.to_hex().as_str(),
        "rsa_public_pem": secrets.reader().public_pem()?,
        "addresses": derived,
    });
    // The bundle is always JSON: it is meant to be copied to the device.
    println!("{}", serde_json::to_string_pretty(&value)?);
    if !cli.json {
        eprintln!("note: the user_seed above is secret; give it only to device {vid}");
    }
    Ok(())
}

fn address(cli: &Cli, dir: &WalletDir, vid: &str, date: &str) -> anyhow::Result<()> {
    let vid = Vid::new(vid)?;
    let date = RecordDate::parse(date)?;
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let list = dir.devices(keys.network())?;
    let loc = list.locate(&keys, &vid, date)?;
    let value = serde_json::to_value(&loc)?;
    emit(cli, value, || {
        format!(
            "{}\n(vid {}, date {}, pool index {}, path {})\n",
            loc.address, loc.vid, loc.date, loc.index, loc.path
        )
    });
    Ok(())
}

/// Reads a whole input file, or stdin for `-`, capped at 64 MiB.
fn read_input(path: &Path) -> anyhow::Result<String> {
    const CAP: u64 = 64 << 20;
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(CAP)
            .read_to_string(&mut text)?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .take(CAP)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(text)
}

fn seal(cli: &Cli, dir: &WalletDir, args: &SealArgs) -> anyhow::Result<()> {
    let record = Record::from_json_str(&read_input(&args.record)?)
        .with_context(|| format!("malformed record {}", args.record.display()))?;
    let vid = args.vid.as_deref().map(Vid::new).transpose()?;
    let date = args.date.as_deref().map(RecordDate::parse).transpose()?;
    let extra = args
        .readers
        .iter()
        .map(|p| {
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("reading reader key {}", p.display()))?;
            public_from_pem(&pem).with_context(|| format!("reader key {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let devices = dir.devices(keys.network())?;
    let placement = place(&keys, &devices, &record, vid.as_ref(), date)?;
    let sealed = seal_record(&record, &placement.address, secrets.reader(), &extra)?;
    let envelope = serde_json::to_string_pretty(&sealed)?;
    let Some(out) = &args.out else {
        println!("{envelope}");
        return Ok(());
    };
    wallet::fsio::write_atomic(out, format!("{envelope}\n").as_bytes())?;
    let readers: Vec<String> = sealed.readers.keys().map(ToString::to_string).collect();
    let value = json!({
        "file": out.display().to_string(),
        "address": placement.address,
        "path": placement.path,
        "vid": placement.vid.as_ref().map(Vid::as_str),
        "date": placement.date.map(|d| d.to_string()),
        "format": sealed.format,
        "dhash": hex::encode(sealed.dhash),
        "columns": sealed.columns.keys().collect::<Vec<_>>(),
        "readers": readers,
        "ciphertext_bytes": sealed.ciphertext_len(),
    });
    emit(cli, value, || {
        let owner = match (&placement.vid, placement.date) {
            (Some(v), Some(d)) => format!("device {v}, day {d}"),
            _ => "the wallet's own data".to_owned(),
        };
        format!(
            "Sealed {} record ({} columns, {} reader(s)) to {}\n  address {} ({owner}, {})\n  dHash   {}\n",
            sealed.format,
            sealed.columns.len(),
            sealed.readers.len(),
            out.display(),
            placement.address,
            placement.path,
            hex::encode(sealed.dhash)
        )
    });
    Ok(())
}

fn open(cli: &Cli, dir: &WalletDir, args: &OpenArgs) -> anyhow::Result<()> {
    let sealed: SealedRecord = serde_json::from_str(&read_input(&args.sealed)?)
        .with_context(|| format!("malformed sealed record {}", args.sealed.display()))?;
    let secrets = unlock(cli, dir)?;
    let keys = secrets.hd_keys()?;
    let devices = dir.devices(keys.network())?;
    let opened = open_record(&sealed, secrets.reader(), &args.columns)?;
    let (columns, full) = match &opened {
        Opened::Full(r) => (r.columns().clone(), Some(r)),
        Opened::Columns(c) => (c.clone(), None),
    };
    let day = date_of(&sealed.key, &columns);
    let owner = owner_of(&keys, &devices, &sealed.address, day)?;
    let columns = serde_json::Value::Object(columns.into_iter().collect());
    // Built by hand so the key keeps its written order (it defines the storage order).
    let record_json = format!(
        "{{\"format\":{},\"key\":{},\"value\":{}}}",
        serde_json::Value::String(sealed.format.clone()),
        sealed.key.to_json_string(),
        columns
    );
    if cli.json {
        let head = json!({
            "address": sealed.address,
            "dhash": hex::encode(sealed.dhash),
            "dhash_verified": full.is_some(),
            "owner": owner,
        })
        .to_string();
        let head = head.strip_suffix('}').unwrap_or(&head);
        println!("{head},\"record\":{record_json}}}");
        return Ok(());
    }
    {
        let mut s = format!(
            "format  {}\nkey     {}\nvalue   {}\n",
            sealed.format,
            sealed.key.to_json_string(),
            serde_json::to_string_pretty(&columns)?.replace('\n', "\n        ")
        );
        s.push_str(&match full {
            Some(_) => format!("dHash {} verified\n", hex::encode(sealed.dhash)),
            None => "projection: columns authenticated one by one (dHash needs every column)\n"
                .to_owned(),
        });
        s.push_str(&match &owner {
            Owner::Wallet => format!("address {}: this wallet's own data\n", sealed.address),
            Owner::Device {
                vid,
                date_matches: Some(true),
            } => format!(
                "address {}: pool of {vid}, the right address for the record's day\n",
                sealed.address
            ),
            Owner::Device {
                vid,
                date_matches: Some(false),
            } => format!(
                "address {}: pool of {vid}, but NOT the address its day deduces to\n",
                sealed.address
            ),
            Owner::Device {
                vid,
                date_matches: None,
            } => format!("address {}: pool of {vid}\n", sealed.address),
            Owner::Foreign => format!(
                "address {}: not one of this wallet's addresses\n",
                sealed.address
            ),
        });
        print!("{s}");
    }
    Ok(())
}
