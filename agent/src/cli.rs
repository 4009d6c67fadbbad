//! The `store-agent` command line. `main` parses it and calls [`execute`];
//! everything here returns errors instead of exiting so tests can drive it.

use crate::config::{self, Config, DEFAULT_CONFIG_PATH};
use crate::logging::{self, LogFormat};
use crate::runtime;
use crate::sample::{self, SampleSpec};
use crate::store::snapshot::ImportExpectations;
use crate::store::{self, KeyedHasher, Store};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The in-store retail edge agent.
#[derive(Debug, Parser)]
#[command(name = "store-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration file is.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, env = "STORE_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run(ConfigArg),
    /// Check configuration files.
    Config {
        /// The check.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create, upgrade or check the database.
    Db {
        /// The database command.
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Write a deterministic sample store as a snapshot file.
    SampleData(SampleDataArgs),
    /// Load a snapshot file into the database, all or nothing (agent stopped).
    Import {
        /// The snapshot file.
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what the local store holds and what waits for the cloud.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check this device (configuration, clock, database, disk, certificates, broker,
    /// devices, spool, the running agent) and say what to fix; exit 1 on any FAIL.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// The service's environment file with its secrets, read when it exists.
        #[arg(long, default_value = crate::doctor::DEFAULT_ENV_FILE)]
        env_file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the input the agent could not use (cloud messages, mostly), newest first,
    /// with where it came from and why, as JSON lines.
    DeadLetters {
        #[command(flatten)]
        config: ConfigArg,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Try the agent with sample data, nothing to install.
    Demo(DemoArgs),
    /// Barcode scans: see what a scanner's data decodes to.
    Scan {
        /// The scan command.
        #[command(subcommand)]
        command: ScanCommand,
    },
    /// Run the reference cloud (the demo's and the tests' counterpart of the
    /// retailer's cloud) until SIGINT or SIGTERM.
    CloudSim(Box<CloudSimArgs>),
}

/// `scan …`
#[derive(Debug, Subcommand)]
pub enum ScanCommand {
    /// Decode DATA as the agent would and print the result as one JSON object.
    /// DATA may hold escapes: \x1d (GS, what scanners send for FNC1), \r, \n, \t, \\.
    Decode {
        /// What the scanner sent.
        data: String,
        /// Apply this configuration's [scan] rules (default: the built-in rules).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Send DATA to the running agent as if a scanner had read it (demo mode, or
    /// `screens.scan_injection = true`). Escapes as for `decode`.
    Send {
        /// What the scanner sent.
        data: String,
        /// The running agent's configuration (for its `http.listen`).
        #[arg(long, env = "STORE_AGENT_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Which screen's scanner: `console` or `kiosk`.
        #[arg(long, default_value = "console")]
        to: String,
        /// The agent's HTTP address, when `http.listen` names port 0 (tests).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every problem in FILE with its key and line; exit 1 if there is any.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// `db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create a new database with the current schema.
    Init(ConfigArg),
    /// Apply pending schema migrations to an existing database.
    Migrate(ConfigArg),
    /// Check the database file for corruption and broken references; exit 1 if any.
    Integrity {
        #[command(flatten)]
        config: ConfigArg,
        /// Check this file instead of the configured database (no configuration needed).
        #[arg(long)]
        database: Option<PathBuf>,
    },
}

/// `sample-data …`
#[derive(Debug, Args)]
pub struct SampleDataArgs {
    /// Number of customers, each with a loyalty card.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Number of catalogue products.
    #[arg(long, default_value_t = 500)]
    pub products: u64,
    /// Seed: the same seed, sizes and reference time give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The snapshot file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Take the tenant, store, currency and hashing key from this configuration
    /// (otherwise the demo tenant and the public demo key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// "Now" for the data, Unix milliseconds (default: the current time).
    #[arg(long)]
    pub reference_time_ms: Option<i64>,
}

/// `demo …`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files here (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Customers in the sample store.
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,
    /// Products in the sample store.
    #[arg(long, default_value_t = 500)]
    pub products: u64,
    /// Generate, import and print, then exit instead of running until Ctrl-C.
    #[arg(long)]
    pub no_run: bool,
    /// Where the screens are served (loopback: this machine only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// `cloud-sim …`
#[derive(Debug, Args)]
pub struct CloudSimArgs {
    /// The MQTT broker, HOST:PORT.
    #[arg(long)]
    pub broker: String,
    /// CA file (PEM) the broker's certificate is checked against; with --cert
    /// and --key, connect over TLS (plain TCP without them).
    #[arg(long, requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// The cloud's client certificate (PEM, CN "cloud").
    #[arg(long, requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires_all = ["ca", "cert"])]
    pub key: Option<PathBuf>,
    /// The tenant served.
    #[arg(long)]
    pub tenant: String,
    /// The store served.
    #[arg(long)]
    pub store: String,
    /// The cloud's own SQLite file (reused with its state when it exists).
    #[arg(long)]
    pub db: PathBuf,
    /// Where snapshot files are written and served from.
    #[arg(long)]
    pub snapshot_dir: PathBuf,
    /// Where the HTTP server (manifest and snapshots) listens; port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: std::net::SocketAddr,
    /// Customers in the generated sample store.
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,
    /// Products in the generated sample store.
    #[arg(long, default_value_t = 500)]
    pub products: u64,
    /// Seed of the generated sample store.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hashing key (hex) of the sample's card and pickup-code hashes (default:
    /// the public demo key).
    #[arg(long)]
    pub hash_key: Option<String>,
    /// Load this snapshot file as the base data instead of a generated sample.
    #[arg(long, conflicts_with_all = ["customers", "products", "seed", "hash_key"])]
    pub base_snapshot: Option<PathBuf>,
    /// Serve only this device (repeat for more; default: any device).
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Publish a small stock or price change every N seconds.
    #[arg(long)]
    pub tick_seconds: Option<u64>,
}

impl Cli {
    /// True for the commands that run the agent until it is stopped.
    pub fn is_daemon(&self) -> bool {
        match &self.command {
            Command::Run(_) => true,
            Command::CloudSim(_) => true,
            Command::Demo(args) => !args.no_run,
            _ => false,
        }
    }
}

/// An error and its causes on one line, each message once: library errors often
/// include their cause's text in their own, and repeating it helps nobody.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(c) => run(&c.config),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Db { command } => match command {
            DbCommand::Init(c) => db_init(&c.config),
            DbCommand::Migrate(c) => db_migrate(&c.config),
            DbCommand::Integrity { config, database } => db_integrity(&config.config, database.as_deref()),
        },
        Command::SampleData(args) => sample_data(&args),
        Command::Import { file, config } => import(&file, &config.config),
        Command::Status { config, json } => status(&config.config, json),
        Command::Doctor {
            config,
            env_file,
            json,
        } => doctor(&config.config, &env_file, json),
        Command::DeadLetters { config, limit } => dead_letters(&config.config, limit),
        Command::Demo(args) => demo(&args),
        Command::Scan {
            command: ScanCommand::Decode { data, config },
        } => scan_decode(&data, config.as_deref()),
        Command::Scan {
            command:
                ScanCommand::Send {
                    data,
                    config,
                    to,
                    addr,
                },
        } => scan_send(&data, &config, &to, addr),
        Command::CloudSim(args) => cloud_sim(&args),
    }
}

/// Turns the escapes support staff type (`\x1d`, `\r`, `\n`, `\t`, `\\`) into the
/// characters a scanner sends.
pub fn unescape(data: &str) -> Result<String> {
    let mut out = String::with_capacity(data.len());
    let mut chars = data.chars().enumerate();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().map(|(_, c)| c) {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .with_context(|| format!("bad escape at position {}: \\x needs two hex digits", i + 1))?;
                out.push(char::from(byte));
            }
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => bail!("unknown escape \\{other} at position {}", i + 1),
            None => bail!("DATA ends with a lone backslash"),
        }
    }
    Ok(out)
}

fn scan_decode(data: &str, config: Option<&Path>) -> Result<ExitCode> {
    init_cli_logging();
    let rules = match config {
        Some(path) => load_config(path)?.scan,
        None => firmware_interfaces::scan::ScanConfig::default(),
    };
    let scan = firmware_interfaces::scan::decode(&unescape(data)?, &rules);
    println!("{}", serde_json::to_string(&scan)?);
    Ok(ExitCode::SUCCESS)
}

/// Logging for the short commands: warnings and errors only, as text.
fn init_cli_logging() {
    let _ = logging::init(LogFormat::Text, "warn");
}

fn load_config(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nRun `store-agent config check {}` for details.",
            path.display()
        )
    })
}

fn run(config_path: &Path) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    logging::init(config.logging.format, &config.logging.level)?;
    serve(config)
}

/// Runs the agent with logging already set up, until SIGTERM or SIGINT.
fn serve(config: Config) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("store-agent")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let stop = runtime::termination_signal()?;
        runtime::run(config, stop, || {}).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn config_check(file: &Path) -> Result<ExitCode> {
    let problems = config::check_file(file);
    if problems.is_empty() {
        println!("{}: ok", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        println!("{}: {p}", file.display());
    }
    eprintln!("{} problem(s) found.", problems.len());
    Ok(ExitCode::from(1))
}

fn open_store(config: &Config) -> Result<Store> {
    let options = runtime::store_options(config)?;
    let path = options.path.clone();
    Store::open(options).with_context(|| format!("cannot open the database {}", path.display()))
}

fn db_init(config_path: &Path) -> Result<ExitCode> {
    init_cli_logging();
    let config = load_config(config_path)?;
    let path = &config.database.path;
    if path.exists() {
        bail!(
            "{} already exists; use `store-agent db migrate` to upgrade it, or remove it first",
            path.display()
        );
    }
    open_store(&config)?.close();
    println!(
        "Created {} at schema version {}.",
        path.display(),
        store::schema::latest_version()
    );
    Ok(ExitCode::SUCCESS)
}

fn db_migrate(config_path: &Path) -> Result<ExitCode> {
    init_cli_logging();
    let config = load_config(config_path)?;
    let path = &config.database.path;
    if !path.exists() {
        bail!(
            "{} does not exist; create it with `store-agent db init`",
            path.display()
        );
    }
    let before = store::schema::current_version(&store::open_read_only(path)?)?;
    open_store(&config)?.close();
    let after = store::schema::latest_version();
    if before == after {
        println!("{} is up to date at schema version {after}.", path.display());
    } else {
        for m in store::schema::MIGRATIONS.iter().filter(|m| m.version > before) {
            println!("Applied migration {}: {}.", m.version, m.description);
        }
        println!(
            "{} migrated from schema version {before} to {after}.",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn db_integrity(config_path: &Path, database: Option<&Path>) -> Result<ExitCode> {
    init_cli_logging();
    let path = match database {
        Some(p) => p.to_path_buf(),
        None => load_config(config_path)?.database.path,
    };
    let conn = store::open_read_only(&path)?;
    let problems = store::integrity_problems(&conn)?;
    if problems.is_empty() {
        println!("{}: ok", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        println!("{}: {p}", path.display());
    }
    Ok(ExitCode::from(1))
}

fn sample_data(args: &SampleDataArgs) -> Result<ExitCode> {
    init_cli_logging();
    let mut spec = SampleSpec::new(args.seed, args.customers, args.products);
    if let Some(t) = args.reference_time_ms {
        spec.reference_time_ms = t;
    }
    let hasher = match &args.config {
        Some(path) => {
            let config = load_config(path)?;
            spec.tenant_id = config.store.tenant_id.clone();
            spec.store_id = config.store.store_id.clone();
            spec.currency = config.store.currency.clone();
            runtime::store_options(&config)?.hasher
        }
        None => demo_hasher(),
    };
    let file =
        std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let summary = sample::write_snapshot(&spec, &hasher, file)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}

fn demo_hasher() -> KeyedHasher {
    let key = hex::decode(sample::DEMO_HASH_KEY_HEX).expect("the demo key is hex");
    KeyedHasher::new(&key).expect("the demo key is 32 bytes")
}

fn import(file: &Path, config_path: &Path) -> Result<ExitCode> {
    init_cli_logging();
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let report = store.import_snapshot_blocking(
        file,
        ImportExpectations {
            tenant_id: Some(config.store.tenant_id.clone()),
            store_id: Some(config.store.store_id.clone()),
        },
    );
    store.close();
    let report = report?;
    let rate = store::snapshot::rate_per_second(
        report.records,
        std::time::Duration::from_millis(report.elapsed_ms),
    );
    println!(
        "Imported {} records from {} in {:.1} s ({rate} records/s):",
        report.records,
        file.display(),
        report.elapsed_ms as f64 / 1000.0
    );
    for (kind, n) in &report.counts {
        println!("  {kind:<16} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn status(config_path: &Path, json: bool) -> Result<ExitCode> {
    init_cli_logging();
    let config = load_config(config_path)?;
    let conn = store::open_read_only(&config.database.path)?;
    let mut report = store::status::report(&conn)?;
    report.storage = Some(store::status::Storage::measure(
        &config.database.path,
        config.database.min_free_bytes,
        None,
    ));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_status(&report, crate::events::now_ms()));
    Ok(ExitCode::SUCCESS)
}

fn doctor(config_path: &Path, env_file: &Path, json: bool) -> Result<ExitCode> {
    let mut options = crate::doctor::Options::new(config_path);
    options.env_file = env_file.to_owned();
    let report = crate::doctor::run(&options);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn dead_letters(config_path: &Path, limit: u32) -> Result<ExitCode> {
    init_cli_logging();
    let config = load_config(config_path)?;
    let conn = store::open_read_only(&config.database.path)?;
    for letter in store::downlink::dead_letters(&conn, limit)? {
        println!("{}", serde_json::to_string(&letter)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats a duration in milliseconds as "3 min", "2 h 5 min", "4 d".
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d", s / 86400),
    }
}

/// The text form of `store-agent status`.
pub fn render_status(r: &store::status::StatusReport, now_ms: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let c = &r.counts;
    let _ = writeln!(out, "Schema version {}", r.schema_version);
    let _ = writeln!(out, "\nCloud connection");
    match &r.sync {
        None => {
            let _ = writeln!(
                out,
                "  never connected (no [mqtt] section, or the sync has not run yet)"
            );
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "  {} to {} since {} ago",
                s.state,
                s.broker,
                age(now_ms - s.since_ms)
            );
            if let Some(t) = s.offline_since_ms {
                let _ = writeln!(out, "  offline since {} ago", age(now_ms - t));
            }
            if let Some(e) = &s.last_error {
                let _ = writeln!(out, "  last error: {e}");
            }
        }
    }
    if let Some(st) = &r.storage {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1_048_576.0);
        let _ = writeln!(out, "\nStorage ({})", st.dir);
        match (st.free_bytes, st.total_bytes) {
            (Some(free), Some(total)) => {
                let _ = writeln!(out, "  {} free of {}", mib(free), mib(total));
            }
            _ => {
                let _ = writeln!(out, "  free space unknown (statvfs failed)");
            }
        }
        if st.is_full() {
            let _ = writeln!(
                out,
                "  DISK FULL: under the reserve of {}; new POS input is refused until space is freed",
                mib(st.reserve_bytes)
            );
        }
    }
    let _ = writeln!(out, "\nLocal data");
    for (name, n) in [
        ("products", c.products),
        ("stock records", c.stock),
        ("customers", c.customers),
        ("loyalty cards", c.loyalty_cards),
        ("wishlist items", c.wishlist_items),
        ("online carts", c.carts),
        ("online orders", c.orders),
        ("open pickups", c.open_pickups),
        ("returns taken", c.returns),
        ("POS transactions", c.pos_transactions),
        ("associates", c.associates),
        ("dead letters", c.dead_letters),
        ("journal receipts", c.journal_records),
    ] {
        let _ = writeln!(out, "  {name:<18} {n:>10}");
    }
    let _ = writeln!(out, "\nOutbox (events waiting for the cloud)");
    if r.outbox.is_empty() {
        let _ = writeln!(out, "  nothing recorded yet");
    }
    for s in &r.outbox {
        let oldest = s
            .oldest_captured_at_ms
            .map_or_else(|| "-".to_string(), |t| format!("oldest {} old", age(now_ms - t)));
        let acked = s.acked_at_ms.map_or_else(
            || "never acknowledged".to_string(),
            |t| format!("last ack {} ago", age(now_ms - t)),
        );
        let _ = writeln!(
            out,
            "  {:<18} {:>6} waiting  {oldest}; seq {} written, {} acknowledged, {acked}",
            s.stream, s.depth, s.last_seq, s.acked_seq
        );
    }
    let _ = writeln!(out, "\nDevices");
    if r.devices.is_empty() {
        let _ = writeln!(out, "  none reported");
    }
    for d in &r.devices {
        let reason = d.reason.as_deref().map_or_else(String::new, |r| format!(": {r}"));
        let _ = writeln!(
            out,
            "  {:<18} {:<8} {}{reason}, since {} ago",
            d.device_id,
            d.kind,
            d.state,
            age(now_ms - d.updated_at_ms)
        );
    }
    let _ = writeln!(out, "\nCloud streams (last sync)");
    if r.downlink.is_empty() {
        let _ = writeln!(out, "  never synced");
    }
    for d in &r.downlink {
        let _ = writeln!(
            out,
            "  {:<18} epoch {} seq {}, {} ago",
            d.stream,
            d.epoch,
            d.last_seq,
            age(now_ms - d.updated_at_ms)
        );
    }
    out
}

fn demo(args: &DemoArgs) -> Result<ExitCode> {
    // The demo is for a person at a terminal: show the agent's own log lines too,
    // without the embedded broker's chatter about every client that comes and goes.
    logging::init(LogFormat::Text, "info,rumqttd=off")?;
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    println!("store-agent demo in {}", dir.display());
    // A fresh store and a fresh cloud every time: the agent loads its copy from the cloud.
    for stale in [
        "store.db",
        "store.db-wal",
        "store.db-shm",
        "cloud/cloud.db",
        "cloud/cloud.db-wal",
    ] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let spec = SampleSpec::new(1, args.customers, args.products);
    let summary = sample::write_snapshot(&spec, &demo_hasher(), std::io::sink())?;
    println!("The sample store (the cloud's data), with cards and pickup codes to try:");
    println!("{}", serde_json::to_string_pretty(&summary)?);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("store-agent")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let stop = runtime::termination_signal()?;
        let broker = crate::sync::broker::EmbeddedBroker::start(([127, 0, 0, 1], 0).into())
            .context("cannot start the embedded MQTT broker")?;
        let mut cloud_config = crate::cloud_sim::CloudSimConfig::new(
            "127.0.0.1",
            broker.addr().port(),
            spec.tenant_id.clone(),
            spec.store_id.clone(),
            &dir.join("cloud"),
        );
        cloud_config.base = crate::cloud_sim::BaseData::sample(spec.clone());
        cloud_config.tick = (!args.no_run).then_some(std::time::Duration::from_secs(5));
        let cloud = crate::cloud_sim::CloudSim::start(cloud_config)
            .await
            .context("cannot start the reference cloud")?;
        println!(
            "\nEmbedded MQTT broker on {}; reference cloud serving snapshots on http://{}",
            broker.addr(),
            cloud.http_addr()
        );
        let config_path = dir.join("config.toml");
        std::fs::write(
            &config_path,
            format!(
                "# Written by `store-agent demo`. Uses the public demo hashing key and a plaintext\n\
                 # loopback broker: never use either in a store.\n\
                 [store]\ntenant_id = {:?}\nstore_id = {:?}\ndevice_id = \"demo-counter\"\n\n\
                 [database]\npath = {:?}\n\n[loyalty]\nhash_key = \"{}\"\n\n\
                 [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nallow_plaintext = true\nboot_delay_max_ms = 0\n\
                 backoff_cap_ms = 5000\nhealth_interval_s = 10\n\n\
                 [http]\nlisten = \"{}\"\n\n[screens]\nscan_injection = true\n\n\
                 [scan]\norder_code_prefixes = [\"PU-\"]\n",
                spec.tenant_id,
                spec.store_id,
                dir.join("store.db").display().to_string(),
                sample::DEMO_HASH_KEY_HEX,
                broker.addr().port(),
                args.listen,
            ),
        )?;
        let config = load_config(&config_path)?;
        let result = if args.no_run {
            // Run until the agent holds the cloud's copy, then stop and show it.
            let db = config.database.path.clone();
            let loaded = async move {
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
                while tokio::time::Instant::now() < deadline && !synced(&db).await {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            };
            let shutdown = async move {
                tokio::select! {
                    _ = loaded => {}
                    _ = stop => {}
                }
            };
            runtime::run(config, shutdown, || {}).await
        } else {
            let base = format!("http://{}", args.listen);
            println!(
                "\nThe screens:\n  associate console  {base}/console   (sign in with an associate id and PIN above)\n  \
                 customer kiosk     {base}/kiosk\n  inject scans       {base}/demo   \
                 (or: store-agent scan send --config {} [--to kiosk] DATA)\n\n\
                 Running the agent; Ctrl-C stops it. Try: store-agent status --config {}",
                config_path.display(),
                config_path.display()
            );
            runtime::run(config, stop, || {}).await
        };
        cloud.shutdown().await;
        drop(broker);
        result?;
        if args.no_run {
            status(&config_path, false)?;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `scan send`: the same request as the demo page's scan field, made with a
/// session of the demo page (its cookie and CSRF token).
fn scan_send(
    data: &str,
    config_path: &Path,
    to: &str,
    addr: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let Some(addr) = addr.or(config.http.listen) else {
        bail!(
            "http.listen is not set in {}: the agent serves no HTTP",
            config_path.display()
        );
    };
    let screen = match to {
        "console" | "kiosk" => to,
        other => bail!("--to must be console or kiosk, not {other:?}"),
    };
    let data = unescape(data)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    crate::sync::tls::install_crypto_provider();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        let base = format!("http://{addr}");
        let page = client
            .get(format!("{base}/demo"))
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {base}: is it running?"))?;
        if !page.status().is_success() {
            bail!(
                "the agent at {base} refuses scan injection ({}): it is on in demo mode or with screens.scan_injection = true",
                page.status()
            );
        }
        let cookie = page
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
            .context("the demo page set no session cookie")?;
        let html = page.text().await.context("cannot read the demo page")?;
        let csrf = html
            .split("data-csrf=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("the demo page carries no CSRF token")?
            .to_string();
        let res = client
            .post(format!("{base}/api/v1/scans"))
            .header(reqwest::header::COOKIE, cookie)
            .header("X-CSRF-Token", csrf)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "screen": screen, "data": data }).to_string())
            .send()
            .await
            .context("cannot send the scan")?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            bail!("the agent refused the scan ({status}): {body}");
        }
        println!("Scan sent to the {screen}.");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// True once the database holds a position for every cloud stream: the agent
/// loaded its first snapshot.
async fn synced(db: &Path) -> bool {
    let db = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        store::open_read_only(&db)
            .and_then(|c| {
                Ok(c.query_row("SELECT count(*) FROM downlink_streams", [], |r| {
                    r.get::<_, i64>(0)
                })?)
            })
            .is_ok_and(|n| n as usize == crate::events::DownlinkStream::ALL.len())
    })
    .await
    .unwrap_or(false)
}

/// A fresh directory under the system temp dir for the demo's files.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("store-agent-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The configuration `cloud-sim` runs with.
fn cloud_sim_config(args: &CloudSimArgs) -> Result<crate::cloud_sim::CloudSimConfig> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().ok()?,
            ))
        })
        .filter(|(h, _)| !h.is_empty())
        .with_context(|| format!("--broker {:?} is not HOST:PORT", args.broker))?;
    let mut config = crate::cloud_sim::CloudSimConfig::new(
        host,
        port,
        args.tenant.clone(),
        args.store.clone(),
        Path::new("."),
    );
    config.tls = match (&args.ca, &args.cert, &args.key) {
        (Some(ca), Some(cert), Some(key)) => Some((ca.clone(), cert.clone(), key.clone())),
        _ => None,
    };
    config.db_path = args.db.clone();
    config.snapshot_dir = args.snapshot_dir.clone();
    config.http_addr = args.http;
    config.devices = (!args.devices.is_empty()).then(|| args.devices.clone());
    config.tick = args
        .tick_seconds
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    config.base = match &args.base_snapshot {
        Some(file) => crate::cloud_sim::BaseData::File(file.clone()),
        None => crate::cloud_sim::BaseData::Sample {
            spec: SampleSpec::new(args.seed, args.customers, args.products),
            hash_key_hex: args
                .hash_key
                .clone()
                .unwrap_or_else(|| sample::DEMO_HASH_KEY_HEX.to_string()),
        },
    };
    Ok(config)
}

fn cloud_sim(args: &CloudSimArgs) -> Result<ExitCode> {
    logging::init(LogFormat::Text, "info")?;
    let config = cloud_sim_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cloud-sim")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let stop = runtime::termination_signal()?;
        let cloud = crate::cloud_sim::CloudSim::start(config)
            .await
            .context("cannot start the reference cloud")?;
        // One line for people and scripts: where the agent's manifest URL points.
        println!(
            "cloud-sim HTTP on http://{} (manifest: {})",
            cloud.http_addr(),
            cloud.manifest_url()
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        stop.await;
        cloud.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let inner = anyhow::Error::new(io).context("cannot read snapshot s.jsonl: No such file");
        let outer = inner.context("import failed");
        assert_eq!(
            error_chain(&outer),
            "import failed: cannot read snapshot s.jsonl: No such file"
        );
    }

    #[test]
    fn unescape_turns_escapes_into_bytes() {
        assert_eq!(unescape(r"]C1\x1d01\r").unwrap(), "]C1\u{1d}01\r");
        assert_eq!(unescape(r"a\\b\n\t").unwrap(), "a\\b\n\t");
        assert!(unescape(r"\x1").is_err());
        assert!(unescape(r"\xzz").is_err());
        assert!(unescape(r"\q").unwrap_err().to_string().contains("position 1"));
        assert!(unescape("abc\\").is_err());
    }

    #[test]
    fn age_is_readable() {
        assert_eq!(age(5_000), "5 s");
        assert_eq!(age(125_000), "2 min");
        assert_eq!(age(3_900_000), "1 h 5 min");
        assert_eq!(age(3 * 86_400_000), "3 d");
        assert_eq!(age(-10), "0 s");
    }
}
