//! The agent's configuration: one TOML file, read at start-up.
//!
//! The structs below are data. Their doc comments are the user documentation of every key (and
//! `packaging/config.example.toml` repeats them with the defaults). Loading happens in three
//! steps, and `store-agent config check FILE` runs exactly the same code as the daemon:
//!
//! 1. **Syntax.** A TOML syntax error is reported alone, with its line: nothing after it can be
//!    trusted.
//! 2. **Shape.** Each top-level section is deserialized on its own (serde, with
//!    `deny_unknown_fields`), so an unknown key in `[mqtt]` does not hide a wrong type in
//!    `[database]`. Within a section, a bad key is set aside and the section is tried again, so
//!    every unknown or mistyped key is reported in one run.
//! 3. **Meaning.** [`Config::validate`] checks ranges, id characters, the currency code, the TLS
//!    files, the loyalty hash key and the log filter, after the environment overrides for secrets
//!    have been applied.
//!
//! Every problem carries the dotted key path and, when the key (or its section) is in the file,
//! the line number, so a person at a store device can find it.
//!
//! Invariant: a secret's value (`loyalty.hash_key`, `mqtt.password`) never appears in a message,
//! a `Debug` dump or a log line; [`Secret`] prints `[redacted]`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::devices::DevicesConfig;
use crate::logging::LogFormat;
use firmware_interfaces::scan::ScanConfig;

/// Environment variable that overrides `loyalty.hash_key`, so the key can live in a root-only
/// systemd drop-in instead of the world-readable configuration file.
pub const ENV_LOYALTY_HASH_KEY: &str = "STORE_AGENT_LOYALTY_HASH_KEY";

/// Environment variable that overrides `mqtt.password`.
pub const ENV_MQTT_PASSWORD: &str = "STORE_AGENT_MQTT_PASSWORD";

/// Where the packaged systemd unit expects the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/store-agent/config.toml";

/// The shortest loyalty hash key accepted, in bytes (decoded).
pub const MIN_HASH_KEY_BYTES: usize = 32;

/// The top-level sections the file may contain, in the order they are documented.
const SECTIONS: [&str; 11] = [
    "store", "database", "loyalty", "mqtt", "logging", "returns", "scan", "spool", "devices", "http",
    "screens",
];

/// The whole configuration of one agent, as read from its TOML file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[store]`: who this device is. Required.
    pub store: StoreConfig,
    /// `[database]`: the local SQLite copy. Optional; every key has a default.
    pub database: DatabaseConfig,
    /// `[loyalty]`: how loyalty card numbers are hashed before they are stored.
    pub loyalty: LoyaltyConfig,
    /// `[mqtt]`: the connection to the retailer's cloud. Optional; without it the agent runs
    /// store-only.
    pub mqtt: Option<MqttConfig>,
    /// `[logging]`: log format and filter. Optional.
    pub logging: LoggingConfig,
    /// `[returns]`: the in-store return policy. Optional.
    pub returns: ReturnsConfig,
    /// `[scan]`: how scans are decoded and classified (prefix/suffix stripping, GS
    /// separators, variable-measure region, loyalty-card and order/receipt code rules).
    /// Optional; the keys are those of `firmware_interfaces::scan::ScanConfig`.
    pub scan: ScanConfig,
    /// `[spool]`: the folder the POS drops POSLog files into. Optional; without
    /// `path` the agent reads no spool folder.
    pub spool: SpoolConfig,
    /// `[devices]`: scanners and card readers (`[[devices.scanners.serial]]`,
    /// `[[devices.card_readers.tcp]]`, …). Optional; the keys of each device are
    /// those of `firmware_interfaces::drivers` (`SerialConfig`, `TcpScannerConfig`).
    pub devices: DevicesConfig,
    /// `[http]`: the agent's local HTTP server (screens, API, health). Optional;
    /// without `listen` no server runs.
    pub http: HttpConfig,
    /// `[screens]`: the associate console and the customer kiosk. Optional.
    pub screens: ScreensConfig,
}

/// `[screens]`: which screens this device serves and how they behave.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreensConfig {
    /// Serve the associate console at `/console`. Default true.
    pub console: bool,
    /// Serve the customer kiosk at `/kiosk`. Default true.
    pub kiosk: bool,
    /// `"en"` or `"de"`: the language when the browser asks for neither. Default `"en"`.
    pub language: kiosk_ui::i18n::Lang,
    /// Idle seconds after which an associate is signed out. Default 900, from 60 to 86400.
    pub console_idle_s: u64,
    /// Idle seconds after which the kiosk forgets the shopper and returns to its
    /// attract screen. Default 60, from 10 to 3600.
    pub kiosk_idle_s: u64,
    /// Device ids (scanners, card readers) whose scans go to the kiosk; all other
    /// devices feed the console. Default none.
    pub kiosk_devices: Vec<String>,
    /// Allow injecting scans over HTTP (`/demo`, `store-agent scan send`). Default
    /// false; `store-agent demo` turns it on. Never turn it on at a real till: any
    /// program on the device could then scan.
    pub scan_injection: bool,
}

impl Default for ScreensConfig {
    fn default() -> Self {
        ScreensConfig {
            console: true,
            kiosk: true,
            language: kiosk_ui::i18n::Lang::En,
            console_idle_s: 900,
            kiosk_idle_s: 60,
            kiosk_devices: Vec::new(),
            scan_injection: false,
        }
    }
}

impl ScreensConfig {
    fn check(&self, devices: &DevicesConfig, problems: &mut Vec<ConfigProblem>) {
        check_range(
            problems,
            "screens.console_idle_s",
            self.console_idle_s,
            60,
            86_400,
        );
        check_range(problems, "screens.kiosk_idle_s", self.kiosk_idle_s, 10, 3_600);
        let known = devices.roles();
        for id in &self.kiosk_devices {
            if !known.contains_key(id) {
                problems.push(ConfigProblem::new(
                    "screens.kiosk_devices",
                    format!("names {id:?}, which is not a configured scanner or card reader"),
                ));
            }
        }
    }
}

/// `[http]`: where the local HTTP server listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port, e.g. `"127.0.0.1:8080"` (loopback: only this device) or
    /// `"0.0.0.0:8080"` (the store network). Default: none, no server.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[spool]`: the POSLog spool folder. The POS writes each transaction file into
/// `path` (best written under a temporary name and renamed into place); the agent
/// records it and moves it to `path/processed/`, or to `path/rejected/` with a
/// `.reason` file beside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// The folder to watch. Default: none (no spool folder).
    pub path: Option<PathBuf>,
    /// How often the folder is scanned as well, in milliseconds, in case a file
    /// system event was missed. Default 2000, from 100 to 600000.
    pub rescan_ms: u64,
    /// Larger files are rejected unread, in bytes. Default 16 MiB, at most 64 MiB.
    pub max_file_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: None,
            rescan_ms: 2000,
            max_file_bytes: 16 * 1024 * 1024,
        }
    }
}

impl SpoolConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        check_range(problems, "spool.rescan_ms", self.rescan_ms, 100, 600_000);
        check_range(
            problems,
            "spool.max_file_bytes",
            self.max_file_bytes,
            1,
            64 * 1024 * 1024,
        );
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            problems.push(ConfigProblem::new(
                "spool.path",
                "must not be empty; leave it out to disable the spool folder",
            ));
        }
    }
}

fn check_devices(devices: &DevicesConfig, problems: &mut Vec<ConfigProblem>) {
    for (key, message) in devices.problems() {
        problems.push(ConfigProblem::new(&key, message));
    }
}

fn check_scan(scan: &ScanConfig, problems: &mut Vec<ConfigProblem>) {
    if let Err(message) = scan.validate() {
        problems.push(ConfigProblem::new("scan", message));
    }
}

/// `[store]`: the identity of this device. The ids go into every event sent to the cloud, so
/// they must match what the cloud knows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The retailer (tenant) this store belongs to. Required; 1 to 64 characters from
    /// `A-Z a-z 0-9 _ . -`.
    pub tenant_id: String,
    /// The store, unique within the tenant. Required; same characters as `tenant_id`.
    pub store_id: String,
    /// This device (POS terminal, counter PC or kiosk), unique within the store. Required; same
    /// characters as `tenant_id`. Also the default MQTT client id, which must be unique on the
    /// broker and equal the CN of the device certificate (set `mqtt.client_id`, e.g.
    /// `"acme.s0001.pos01"`, when device ids repeat across stores).
    pub device_id: String,
    /// The store's currency, an ISO 4217 code of three uppercase letters. Default `"EUR"`.
    #[serde(default = "default_currency")]
    pub currency: String,
}

/// `[database]`: the local SQLite database that holds the store's copy of the business and the
/// outbox of events waiting for the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database file. Default `/var/lib/store-agent/store.db`. Its directory must be
    /// writable by the agent (SQLite keeps its WAL beside it).
    pub path: PathBuf,
    /// How many read-only connections serve the screens in parallel. Default 4, from 1 to 32.
    /// Writes always go through the one writer connection.
    pub read_connections: usize,
    /// How long a connection waits for a lock before giving up, in milliseconds. Default 5000,
    /// from 1 to 600000.
    pub busy_timeout_ms: u64,
    /// New POS input (transactions over HTTP, spool files, journal receipts) is refused
    /// while the disk holding the database has less free space than this, in bytes:
    /// HTTP answers 507 and spool files wait in the folder. Default 16777216 (16 MiB); 0
    /// turns the reserve off (SQLite's own disk-full error still refuses).
    pub min_free_bytes: u64,
}

/// `[loyalty]`: loyalty card numbers are never stored in clear; the agent keeps a keyed hash
/// (HMAC) of them, and every device of the tenant must use the same key so the hashes match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoyaltyConfig {
    /// The hash key, hex-encoded, at least 32 bytes (64 hex digits). Required, either here or,
    /// better, in the environment variable `STORE_AGENT_LOYALTY_HASH_KEY`, which wins over the
    /// file. Make one with `openssl rand -hex 32`.
    pub hash_key: Option<Secret>,
}

/// `[mqtt]`: the connection to the retailer's MQTT broker, used by the cloud sync. The section is
/// optional; without it the agent works store-only and keeps events in its outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker's host name or address. Required.
    pub host: String,
    /// The broker's port. Default 8883 (MQTT over TLS).
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// The MQTT client id. Default: `store.device_id`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, when the broker asks for one. Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, when the broker asks for one. Default: none. The environment variable
    /// `STORE_AGENT_MQTT_PASSWORD` wins over the file.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of the certificate authority that signed the broker's certificate. Required
    /// unless `allow_plaintext = true`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this device's client certificate. Required unless `allow_plaintext = true`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of this device's private key. Required unless `allow_plaintext = true`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Allow a connection without TLS client certificates (a local test broker only). Default
    /// false; when false, `ca_file`, `cert_file` and `key_file` are all required.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// MQTT keep-alive, in seconds. Default 30, from 5 to 1200.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// The agent waits a random time up to this long after start before its first
    /// connection, in milliseconds, so thousands of stores restarting at once (a power cut,
    /// a fleet upgrade) do not storm the broker. Default 30000, from 0 to 600000.
    #[serde(default = "default_boot_delay_ms")]
    pub boot_delay_max_ms: u64,
    /// First reconnect delay, in milliseconds; each failure doubles it up to `backoff_cap_ms`,
    /// and the actual wait is a random time up to it ("full jitter"). Default 1000.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// The longest reconnect delay, in milliseconds. Default 120000.
    #[serde(default = "default_backoff_cap_ms")]
    pub backoff_cap_ms: u64,
    /// Events sent and not yet acknowledged by the cloud, per uplink stream. Default 2000,
    /// from 1 to 100000.
    #[serde(default = "default_window_events")]
    pub window_events: u64,
    /// The most events sent per second while a backlog drains, so the screens stay responsive
    /// after a long outage. Default 20000, from 10 to 1000000.
    #[serde(default = "default_drain_rate")]
    pub drain_events_per_s: u64,
    /// Without an acknowledgement for this long, sent events are sent again (same
    /// idempotency keys), in milliseconds. Default 15000, from 100 to 600000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// How long a range or snapshot request waits for its reply before it is asked again,
    /// in milliseconds. Default 15000, from 100 to 600000.
    #[serde(default = "default_ack_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How often health telemetry is published, in seconds. Default 60, from 1 to 86400.
    #[serde(default = "default_health_interval_s")]
    pub health_interval_s: u64,
    /// An HTTPS endpoint that answers `GET <url>?streams=a,b` with a snapshot manifest. When
    /// set, a new device loads its first snapshot from there; otherwise it asks over MQTT.
    #[serde(default)]
    pub snapshot_manifest_url: Option<String>,
}

fn default_keep_alive_s() -> u64 {
    30
}
fn default_boot_delay_ms() -> u64 {
    30_000
}
fn default_backoff_base_ms() -> u64 {
    1000
}
fn default_backoff_cap_ms() -> u64 {
    120_000
}
fn default_window_events() -> u64 {
    2000
}
fn default_drain_rate() -> u64 {
    20_000
}
fn default_ack_timeout_ms() -> u64 {
    15_000
}
fn default_health_interval_s() -> u64 {
    60
}

/// `[logging]`: where and how much the agent logs. Logs never contain a card number, a full
/// loyalty number or a customer's contact details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `"auto"` (default), `"text"`, `"json"` or `"journald"`. `auto` writes to the journal when
    /// running under systemd, coloured text on a terminal, plain text otherwise.
    pub format: LogFormat,
    /// A `tracing` filter directive, like `"info"` or `"info,store_agent::store=debug"`. Default
    /// `"info"`. The environment variable `RUST_LOG`, when set, wins.
    pub level: String,
}

/// `[returns]`: the in-store return policy (BORIS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReturnsConfig {
    /// How many days after the purchase an item may be returned. Default 30, from 1 to 3650.
    pub window_days: u32,
    /// While the store is offline, a return whose refund is above this amount (minor
    /// units of the store currency) needs a manager's approval: the cloud cannot
    /// confirm the order's history meanwhile. Default 10000 (100.00 in a two-decimal
    /// currency); 0 asks for a manager for every offline return.
    pub offline_limit_minor: i64,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

fn default_mqtt_port() -> u16 {
    8883
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: PathBuf::from("/var/lib/store-agent/store.db"),
            read_connections: 4,
            busy_timeout_ms: 5000,
            min_free_bytes: crate::store::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::default(),
            level: "info".to_owned(),
        }
    }
}

impl Default for ReturnsConfig {
    fn default() -> Self {
        ReturnsConfig {
            window_days: 30,
            offline_limit_minor: 10_000,
        }
    }
}

/// A secret string (a key or a password). `Debug` and `Display` print `[redacted]`, so a secret
/// cannot end up in a log line or an error message by accident; [`Secret::expose`] is the one
/// way to read it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Call it only where the value is used, never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's own type errors quote the value they found ("invalid type: integer `123`"),
        // which would leak a mistyped secret; replace them with a message that does not.
        String::deserialize(deserializer)
            .map(Secret)
            .map_err(|_: D::Error| {
                serde::de::Error::custom("must be a string (the value is secret and not shown)")
            })
    }
}

impl LoyaltyConfig {
    /// The decoded hash key, or `None` when it is missing or not valid hex. Surrounding
    /// whitespace (a trailing newline from a key file) is ignored.
    pub fn hash_key_bytes(&self) -> Option<Vec<u8>> {
        self.hash_key
            .as_ref()
            .and_then(|key| hex::decode(key.expose().trim()).ok())
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key path, like `"database.read_connections"`; `""` for the whole file.
    pub key: String,
    /// The 1-based line of the key (or of its section when the key is missing), when known.
    pub line: Option<usize>,
    /// What is wrong, and what is expected.
    pub message: String,
}

impl ConfigProblem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// A configuration file that cannot be used, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that was read.
    pub path: PathBuf,
    /// Every problem, in file order (problems without a line come last).
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        if self.problems.is_empty() {
            return write!(f, "{path}: invalid configuration");
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{path}: {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the file at `path`, applies the environment overrides for secrets from the
    /// process environment, and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let error = |problems| ConfigError {
            path: path.to_owned(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(vec![ConfigProblem::new("", format!("cannot read the file: {e}"))]))?;
        let env = |name: &str| std::env::var(name).ok();
        Config::parse(&text, &env).map_err(error)
    }

    /// Parses and validates configuration text. `env` looks up environment variables (the
    /// secret overrides), so tests can pass their own. Returns every problem found.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigProblem>> {
        // toml_edit keeps byte spans, for line numbers; toml gives values serde can read.
        let document = match toml_edit::Document::parse(text) {
            Ok(document) => document,
            Err(e) => return Err(vec![syntax_problem(text, e.message(), e.span())]),
        };
        let table = match toml::from_str::<toml::Table>(text) {
            Ok(table) => table,
            Err(e) => return Err(vec![syntax_problem(text, e.message(), e.span())]),
        };

        let mut problems = Vec::new();
        for (name, value) in &table {
            if !SECTIONS.contains(&name.as_str()) {
                let what = if value.is_table() {
                    "unknown section"
                } else {
                    "unknown key"
                };
                problems.push(ConfigProblem::new(
                    name.as_str(),
                    format!(
                        "{what}; the file may contain the sections {}",
                        SECTIONS.map(|s| format!("[{s}]")).join(", ")
                    ),
                ));
            }
        }

        let store = section::<StoreConfig>(&table, "store", &mut problems);
        let database = section::<DatabaseConfig>(&table, "database", &mut problems);
        let mut loyalty = section::<LoyaltyConfig>(&table, "loyalty", &mut problems);
        let mut mqtt = if table.contains_key("mqtt") {
            section::<MqttConfig>(&table, "mqtt", &mut problems).map(Some)
        } else {
            Some(None)
        };
        let logging = section::<LoggingConfig>(&table, "logging", &mut problems);
        let returns = section::<ReturnsConfig>(&table, "returns", &mut problems);
        let scan = section::<ScanConfig>(&table, "scan", &mut problems);
        let spool = section::<SpoolConfig>(&table, "spool", &mut problems);
        let devices = section::<DevicesConfig>(&table, "devices", &mut problems);
        let http = section::<HttpConfig>(&table, "http", &mut problems);
        let screens = section::<ScreensConfig>(&table, "screens", &mut problems);

        // The environment wins over the file for secrets. An empty variable counts as unset,
        // so an `Environment=` line left blank does not wipe the file's value.
        let from_env = |name: &str| env(name).filter(|value| !value.is_empty()).map(Secret);
        let hash_key_from_env = from_env(ENV_LOYALTY_HASH_KEY);
        let hash_key_overridden = hash_key_from_env.is_some();
        if let (Some(loyalty), Some(key)) = (loyalty.as_mut(), hash_key_from_env) {
            loyalty.hash_key = Some(key);
        }
        if let (Some(Some(mqtt)), Some(password)) = (mqtt.as_mut(), from_env(ENV_MQTT_PASSWORD)) {
            mqtt.password = Some(password);
        }

        // Check the meaning of every section that could be read, even when another could not,
        // so one run reports everything. A key already reported as mistyped or missing is not
        // reported again: its value here is only a stand-in.
        let mut invalid = Vec::new();
        if let Some(store) = &store {
            store.check(&mut invalid);
        }
        if let Some(database) = &database {
            database.check(&mut invalid);
        }
        if let Some(loyalty) = &loyalty {
            loyalty.check(&mut invalid);
        }
        if let Some(Some(mqtt)) = &mqtt {
            mqtt.check(&mut invalid);
        }
        if let Some(logging) = &logging {
            logging.check(&mut invalid);
        }
        if let Some(returns) = &returns {
            returns.check(&mut invalid);
        }
        if let Some(scan) = &scan {
            check_scan(scan, &mut invalid);
        }
        if let Some(spool) = &spool {
            spool.check(&mut invalid);
        }
        if let Some(devices) = &devices {
            check_devices(devices, &mut invalid);
            if let Some(screens) = &screens {
                screens.check(devices, &mut invalid);
            }
        }
        for problem in &mut problems {
            problem.line = line_of_key(&document, text, &problem.key);
        }
        for mut problem in invalid {
            if problems.iter().any(|p| p.key == problem.key) {
                continue;
            }
            if problem.key == "loyalty.hash_key" && hash_key_overridden {
                // The file's line would point at a value that is not the one in use.
                problem
                    .message
                    .push_str(&format!(" (the key in use comes from {ENV_LOYALTY_HASH_KEY})"));
            } else {
                problem.line = line_of_key(&document, text, &problem.key);
            }
            problems.push(problem);
        }
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));

        match (
            store, database, loyalty, mqtt, logging, returns, scan, spool, devices, http, screens,
        ) {
            (
                Some(store),
                Some(database),
                Some(loyalty),
                Some(mqtt),
                Some(logging),
                Some(returns),
                Some(scan),
                Some(spool),
                Some(devices),
                Some(http),
                Some(screens),
            ) if problems.is_empty() => Ok(Config {
                store,
                database,
                loyalty,
                mqtt,
                logging,
                returns,
                scan,
                spool,
                devices,
                http,
                screens,
            }),
            _ => Err(problems),
        }
    }

    /// Checks the meaning of every value (ranges, id characters, currency, TLS files, hash key,
    /// log filter) and returns every problem, each naming its key. Line numbers are left unset;
    /// [`Config::parse`] fills them in.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        self.store.check(&mut problems);
        self.database.check(&mut problems);
        self.loyalty.check(&mut problems);
        if let Some(mqtt) = &self.mqtt {
            mqtt.check(&mut problems);
        }
        self.logging.check(&mut problems);
        self.returns.check(&mut problems);
        check_scan(&self.scan, &mut problems);
        self.spool.check(&mut problems);
        check_devices(&self.devices, &mut problems);
        self.screens.check(&self.devices, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The MQTT client id: `mqtt.client_id`, or `store.device_id` when that is unset. `None`
    /// when there is no `[mqtt]` section.
    pub fn mqtt_client_id(&self) -> Option<&str> {
        self.mqtt
            .as_ref()
            .map(|mqtt| mqtt.client_id.as_deref().unwrap_or(&self.store.device_id))
    }
}

/// What `store-agent config check FILE` prints: every problem in the file (with the process
/// environment's secret overrides applied). Empty when the file is fine.
pub fn check_file(path: &Path) -> Vec<ConfigProblem> {
    match Config::load(path) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems,
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks, one per section. Each pushes problems with their full key path.

impl StoreConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        for (key, value) in [
            ("store.tenant_id", &self.tenant_id),
            ("store.store_id", &self.store_id),
            ("store.device_id", &self.device_id),
        ] {
            if !is_valid_id(value) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-' \
                         (found {value:?})"
                    ),
                ));
            }
        }
        let currency = &self.currency;
        if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
            problems.push(ConfigProblem::new(
                "store.currency",
                format!(
                    "must be an ISO 4217 code of three uppercase letters, like \"EUR\" \
                     (found {currency:?})"
                ),
            ));
        }
    }
}

fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl DatabaseConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if self.path.as_os_str().is_empty() {
            problems.push(ConfigProblem::new("database.path", "must not be empty"));
        }
        check_range(
            problems,
            "database.read_connections",
            self.read_connections,
            1,
            32,
        );
        check_range(
            problems,
            "database.busy_timeout_ms",
            self.busy_timeout_ms,
            1,
            600_000,
        );
    }
}

impl LoyaltyConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        let Some(key) = &self.hash_key else {
            problems.push(ConfigProblem::new(
                "loyalty.hash_key",
                format!(
                    "missing: set loyalty.hash_key or the environment variable \
                     {ENV_LOYALTY_HASH_KEY} to a hex key of at least {MIN_HASH_KEY_BYTES} bytes \
                     (make one with `openssl rand -hex 32`)"
                ),
            ));
            return;
        };
        // Messages below describe the key's shape only, never its characters.
        match hex::decode(key.expose().trim()) {
            Err(_) => problems.push(ConfigProblem::new(
                "loyalty.hash_key",
                "must be hex-encoded (digits 0-9 and letters a-f, an even number of them); \
                 make one with `openssl rand -hex 32`",
            )),
            Ok(bytes) if bytes.len() < MIN_HASH_KEY_BYTES => problems.push(ConfigProblem::new(
                "loyalty.hash_key",
                format!(
                    "must be at least {MIN_HASH_KEY_BYTES} bytes ({} hex digits) long \
                     (found {} bytes); \
                     make one with `openssl rand -hex 32`",
                    MIN_HASH_KEY_BYTES * 2,
                    bytes.len()
                ),
            )),
            Ok(_) => {}
        }
    }
}

impl MqttConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if self.host.trim().is_empty() {
            problems.push(ConfigProblem::new("mqtt.host", "must not be empty"));
        }
        if self.port == 0 {
            problems.push(ConfigProblem::new(
                "mqtt.port",
                "must be between 1 and 65535 (found 0)",
            ));
        }
        check_range(problems, "mqtt.keep_alive_s", self.keep_alive_s, 5, 1200);
        check_range(
            problems,
            "mqtt.boot_delay_max_ms",
            self.boot_delay_max_ms,
            0,
            600_000,
        );
        check_range(
            problems,
            "mqtt.backoff_base_ms",
            self.backoff_base_ms,
            10,
            600_000,
        );
        check_range(
            problems,
            "mqtt.backoff_cap_ms",
            self.backoff_cap_ms,
            self.backoff_base_ms.max(10),
            3_600_000,
        );
        check_range(problems, "mqtt.window_events", self.window_events, 1, 100_000);
        check_range(
            problems,
            "mqtt.drain_events_per_s",
            self.drain_events_per_s,
            10,
            1_000_000,
        );
        check_range(problems, "mqtt.ack_timeout_ms", self.ack_timeout_ms, 100, 600_000);
        check_range(
            problems,
            "mqtt.request_timeout_ms",
            self.request_timeout_ms,
            100,
            600_000,
        );
        check_range(
            problems,
            "mqtt.health_interval_s",
            self.health_interval_s,
            1,
            86_400,
        );
        if let Some(url) = &self.snapshot_manifest_url
            && !(url.starts_with("https://")
                || url.starts_with("http://127.0.0.1")
                || url.starts_with("http://[::1]")
                || url.starts_with("http://localhost"))
        {
            problems.push(ConfigProblem::new(
                "mqtt.snapshot_manifest_url",
                format!("must be an https:// URL (plain http only on loopback), found {url:?}"),
            ));
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            problems.push(ConfigProblem::new(
                "mqtt.client_id",
                "must not be empty; remove the key to use store.device_id",
            ));
        }
        let files = [
            ("mqtt.ca_file", &self.ca_file),
            ("mqtt.cert_file", &self.cert_file),
            ("mqtt.key_file", &self.key_file),
        ];
        for (key, file) in files {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                problems.push(ConfigProblem::new(key, "must not be empty"));
            } else if file.is_none() && !self.allow_plaintext {
                problems.push(ConfigProblem::new(
                    key,
                    "missing: the broker connection uses TLS with a client certificate, so \
                     mqtt.ca_file, mqtt.cert_file and mqtt.key_file are all required (set \
                     mqtt.allow_plaintext = true only for a local test broker)",
                ));
            }
        }
        // A client certificate is useless without its key, and the other way round.
        if self.allow_plaintext && self.cert_file.is_some() != self.key_file.is_some() {
            let missing = if self.cert_file.is_none() {
                "mqtt.cert_file"
            } else {
                "mqtt.key_file"
            };
            problems.push(ConfigProblem::new(
                missing,
                "missing: mqtt.cert_file and mqtt.key_file must be set together",
            ));
        }
    }
}

impl LoggingConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if self.level.trim().is_empty() {
            problems.push(ConfigProblem::new(
                "logging.level",
                "must not be empty; use a filter like \"info\" or \"warn,store_agent=debug\"",
            ));
        } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            problems.push(ConfigProblem::new(
                "logging.level",
                format!(
                    "is not a valid filter directive ({e}); use a filter like \"info\" or \
                     \"warn,store_agent=debug\""
                ),
            ));
        }
    }
}

impl ReturnsConfig {
    fn check(&self, problems: &mut Vec<ConfigProblem>) {
        check_range(problems, "returns.window_days", self.window_days, 1, 3650);
        check_range(
            problems,
            "returns.offline_limit_minor",
            self.offline_limit_minor,
            0,
            1_000_000_000_000,
        );
    }
}

fn check_range<T: PartialOrd + fmt::Display>(
    problems: &mut Vec<ConfigProblem>,
    key: &str,
    value: T,
    min: T,
    max: T,
) {
    if value < min || value > max {
        problems.push(ConfigProblem::new(
            key,
            format!("must be between {min} and {max} (found {value})"),
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one section with serde, reporting every bad key.

/// Deserializes the section `name` of `table` (an absent section reads as an empty table, so
/// its required keys are reported as missing). Returns `None` when it cannot be read; every
/// problem found is pushed to `problems`.
///
/// serde stops at the first error, so to report every bad key in one run the offending key is
/// set aside (an unknown or mistyped key is removed so its default applies, a missing key gets
/// a stand-in) and the section is read again. The value read after stand-ins is still checked
/// for meaning, which finds problems in the other keys of the section; the caller then drops
/// it, since the section had problems.
fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    let mut value = table
        .get(name)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    let mut set_aside: Vec<String> = Vec::new();
    // Each round sets one distinct key aside, so this ends; the bound is only a safeguard.
    for _ in 0..256 {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(section) => return Some(section),
            Err(error) => error,
        };
        let mut path: Vec<String> = Vec::new();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => path.push(key.clone()),
                serde_path_to_error::Segment::Seq { index } => path.push(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => path.push(variant.clone()),
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        let raw = error.into_inner().message().to_owned();
        // toml appends "\nin `key`"; the key path is reported separately.
        let raw = raw.split("\nin `").next().unwrap_or_default().trim().to_owned();

        let (relative, message, fix) = if let Some(field) = quoted_after(&raw, "missing field `") {
            path.push(field.to_owned());
            (path, "required key is missing".to_owned(), Fix::StandIn)
        } else if let Some(rest) = raw.strip_prefix("unknown field `") {
            // The path already ends with the unknown key.
            let expected = rest.split_once("`, expected ").map(|(_, e)| e).unwrap_or("");
            let message = if expected.is_empty() {
                "unknown key".to_owned()
            } else {
                format!("unknown key; expected {expected}")
            };
            (path, message, Fix::Remove)
        } else {
            (path, friendlier_types(&raw), Fix::Remove)
        };

        let key = std::iter::once(name.to_owned())
            .chain(relative.iter().cloned())
            .collect::<Vec<_>>()
            .join(".");
        if set_aside.contains(&key) {
            // Setting it aside did not help (the stand-in had the wrong type): give up on the
            // section; its problem is already reported.
            return None;
        }
        problems.push(ConfigProblem::new(key.clone(), message));
        set_aside.push(key);
        if relative.is_empty() || !fix.apply(&mut value, &relative) {
            return None;
        }
    }
    None
}

/// How a bad key is set aside so the rest of its section can be read.
enum Fix {
    /// Remove the key, so its default applies.
    Remove,
    /// Insert an empty string for a missing required key.
    StandIn,
}

impl Fix {
    fn apply(&self, value: &mut toml::Value, path: &[String]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut current = value;
        for key in parents {
            match current.as_table_mut().and_then(|t| t.get_mut(key)) {
                Some(next) => current = next,
                None => return false,
            }
        }
        let Some(table) = current.as_table_mut() else {
            return false;
        };
        match self {
            Fix::Remove => table.remove(last).is_some(),
            Fix::StandIn => {
                table.insert(last.clone(), toml::Value::String(String::new()));
                true
            }
        }
    }
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// serde names Rust types ("expected u16"); a person editing a file wants to know the range.
fn friendlier_types(message: &str) -> String {
    let replacements = [
        ("expected u16", "expected a whole number from 1 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected a boolean", "expected true or false"),
    ];
    for (from, to) in replacements {
        if let Some(start) = message.rfind(from)
            && start + from.len() == message.len()
        {
            return format!("{}{to}", &message[..start]);
        }
    }
    message.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Line numbers.

fn syntax_problem(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> ConfigProblem {
    ConfigProblem {
        key: String::new(),
        line: span.map(|s| line_at(text, s.start)),
        message: format!("TOML syntax error: {}", message.trim().replace('\n', "; ")),
    }
}

/// The 1-based line of `key` (dotted) in the document; for a key that is not there, the line of
/// the deepest part of its path that is (usually the section header). `None` when no part of
/// it is in the file.
fn line_of_key(document: &toml_edit::Document<&str>, text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let mut table: &dyn toml_edit::TableLike = document.as_table();
    let mut span = None;
    for part in key.split('.') {
        let Some((found_key, item)) = table.get_key_value(part) else {
            break;
        };
        if let Some(found) = found_key.span().or_else(|| item.span()) {
            span = Some(found);
        }
        match item.as_table_like() {
            Some(inner) => table = inner,
            None => break,
        }
    }
    span.map(|s| line_at(text, s.start))
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../packaging/config.example.toml");
    const KEY_64_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn minimal() -> String {
        format!(
            "[store]\ntenant_id = \"acme\"\nstore_id = \"berlin-01\"\ndevice_id = \"pos-1\"\n\n\
             [loyalty]\nhash_key = \"{KEY_64_HEX}\"\n"
        )
    }

    /// Parses `text` expecting failure, and returns the problems.
    fn problems(text: &str) -> Vec<ConfigProblem> {
        match Config::parse(text, &no_env) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(problems) => problems,
        }
    }

    /// The one problem reported for `key`, failing when there is not exactly one.
    fn problem_for<'a>(problems: &'a [ConfigProblem], key: &str) -> &'a ConfigProblem {
        let found: Vec<_> = problems.iter().filter(|p| p.key == key).collect();
        assert_eq!(found.len(), 1, "one problem for {key} expected in {problems:#?}");
        found[0]
    }

    #[test]
    fn example_file_parses_cleanly() {
        let env = env_with(&[(ENV_LOYALTY_HASH_KEY, KEY_64_HEX)]);
        let config = Config::parse(EXAMPLE, &env).unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(config.database.path, Path::new("/var/lib/store-agent/store.db"));
        assert!(config.mqtt.is_some(), "the example documents [mqtt]");
        assert_eq!(config.mqtt_client_id(), Some(config.store.device_id.as_str()));
        // systemd/store-kiosk.service opens http://127.0.0.1:8080/kiosk.
        assert_eq!(config.http.listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn example_file_leaves_the_hash_key_to_the_environment() {
        let problems = problems(EXAMPLE);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].key, "loyalty.hash_key");
        assert!(problems[0].message.contains(ENV_LOYALTY_HASH_KEY));
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = Config::parse(&minimal(), &no_env).unwrap();
        assert_eq!(config.store.tenant_id, "acme");
        assert_eq!(config.store.currency, "EUR");
        assert_eq!(config.database.path, Path::new("/var/lib/store-agent/store.db"));
        assert_eq!(config.database.read_connections, 4);
        assert_eq!(config.database.busy_timeout_ms, 5000);
        assert!(config.mqtt.is_none());
        assert_eq!(config.mqtt_client_id(), None);
        assert_eq!(config.logging.format, LogFormat::Auto);
        assert_eq!(config.logging.level, "info");
        assert_eq!(config.returns.window_days, 30);
        assert_eq!(config.loyalty.hash_key_bytes().unwrap().len(), 32);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn mqtt_defaults_and_client_id() {
        let text = format!(
            "{}\n[mqtt]\nhost = \"broker.example\"\nallow_plaintext = true\n",
            minimal()
        );
        let config = Config::parse(&text, &no_env).unwrap();
        let mqtt = config.mqtt.as_ref().unwrap();
        assert_eq!(mqtt.port, 8883);
        assert!(mqtt.password.is_none());
        assert_eq!(config.mqtt_client_id(), Some("pos-1"));

        let text = text.replace("host =", "client_id = \"custom\"\nhost =");
        let config = Config::parse(&text, &no_env).unwrap();
        assert_eq!(config.mqtt_client_id(), Some("custom"));
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        const ENV_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
        let text = format!(
            "{}\n[mqtt]\nhost = \"broker.example\"\npassword = \"from-file\"\nallow_plaintext = true\n",
            minimal()
        );
        let env = env_with(&[(ENV_LOYALTY_HASH_KEY, ENV_KEY), (ENV_MQTT_PASSWORD, "from-env")]);
        let config = Config::parse(&text, &env).unwrap();
        assert_eq!(config.loyalty.hash_key.as_ref().unwrap().expose(), ENV_KEY);
        assert_eq!(config.mqtt.unwrap().password.unwrap().expose(), "from-env");

        // Without the environment, the file's values are used; an empty variable is unset.
        let env = env_with(&[(ENV_LOYALTY_HASH_KEY, ""), (ENV_MQTT_PASSWORD, "")]);
        let config = Config::parse(&text, &env).unwrap();
        assert_eq!(config.loyalty.hash_key.as_ref().unwrap().expose(), KEY_64_HEX);
        assert_eq!(config.mqtt.unwrap().password.unwrap().expose(), "from-file");
    }

    #[test]
    fn hash_key_from_the_environment_alone_is_enough() {
        let text = "[store]\ntenant_id = \"a\"\nstore_id = \"b\"\ndevice_id = \"c\"\n";
        let env = env_with(&[(ENV_LOYALTY_HASH_KEY, KEY_64_HEX)]);
        let config = Config::parse(text, &env).unwrap();
        assert_eq!(config.loyalty.hash_key_bytes().unwrap()[0], 0x00);
    }

    #[test]
    fn bad_environment_hash_key_is_blamed_on_the_environment() {
        let env = env_with(&[(ENV_LOYALTY_HASH_KEY, "abcd")]);
        let problems = Config::parse(&minimal(), &env).unwrap_err();
        let problem = problem_for(&problems, "loyalty.hash_key");
        assert_eq!(problem.line, None);
        assert!(problem.message.contains(ENV_LOYALTY_HASH_KEY), "{problem}");
    }

    /// Each validation rule: (text to add or replace in the minimal config, key, line, words
    /// the message must contain).
    #[test]
    fn each_validation_rule_names_its_key_and_line() {
        let base = minimal();
        let store = |line: &str| base.replace("device_id = \"pos-1\"", line);
        let with = |section: &str| format!("{base}{section}");
        let tls =
            "[mqtt]\nhost = \"b\"\nca_file = \"/ca.pem\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n";
        let cases: Vec<(String, &str, usize, &str)> = vec![
            (
                store("device_id = \"pos 1\""),
                "store.device_id",
                4,
                "1 to 64 characters",
            ),
            (
                store("device_id = \"\""),
                "store.device_id",
                4,
                "1 to 64 characters",
            ),
            (
                store(&format!("device_id = \"{}\"", "x".repeat(65))),
                "store.device_id",
                4,
                "64",
            ),
            (
                store("device_id = \"p\"\ncurrency = \"eur\""),
                "store.currency",
                5,
                "ISO 4217",
            ),
            (
                store("device_id = \"p\"\ncurrency = \"EURO\""),
                "store.currency",
                5,
                "ISO 4217",
            ),
            (
                with("[database]\nread_connections = 0\n"),
                "database.read_connections",
                9,
                "between 1 and 32 (found 0)",
            ),
            (
                with("[database]\nread_connections = 33\n"),
                "database.read_connections",
                9,
                "(found 33)",
            ),
            (
                with("[database]\nbusy_timeout_ms = 0\n"),
                "database.busy_timeout_ms",
                9,
                "between 1 and 600000",
            ),
            (with("[database]\npath = \"\"\n"), "database.path", 9, "empty"),
            (
                with("[returns]\nwindow_days = 0\n"),
                "returns.window_days",
                9,
                "between 1 and 3650",
            ),
            (
                with("[returns]\nwindow_days = 3651\n"),
                "returns.window_days",
                9,
                "(found 3651)",
            ),
            (
                with("[logging]\nlevel = \"info,foo=loud\"\n"),
                "logging.level",
                9,
                "not a valid filter",
            ),
            (with("[logging]\nlevel = \"\"\n"), "logging.level", 9, "empty"),
            (
                with(&tls.replace("ca_file = \"/ca.pem\"\n", "")),
                "mqtt.ca_file",
                8,
                "allow_plaintext",
            ),
            (
                with(&tls.replace("cert_file = \"/c.pem\"\n", "")),
                "mqtt.cert_file",
                8,
                "required",
            ),
            (
                with(&tls.replace("key_file = \"/k.pem\"\n", "")),
                "mqtt.key_file",
                8,
                "required",
            ),
            (
                with(&tls.replace("host = \"b\"", "host = \"\"")),
                "mqtt.host",
                9,
                "empty",
            ),
            (
                with(&format!("{tls}port = 0\n")),
                "mqtt.port",
                13,
                "between 1 and 65535",
            ),
            (
                with(&format!("{tls}client_id = \"\"\n")),
                "mqtt.client_id",
                13,
                "device_id",
            ),
            (
                with("[mqtt]\nhost = \"b\"\nallow_plaintext = true\ncert_file = \"/c.pem\"\n"),
                "mqtt.key_file",
                8,
                "together",
            ),
            (
                base.replace(KEY_64_HEX, "not hex at all"),
                "loyalty.hash_key",
                7,
                "hex",
            ),
            (
                base.replace(KEY_64_HEX, "abcdef"),
                "loyalty.hash_key",
                7,
                "at least 32 bytes",
            ),
            (
                base.replace(&format!("hash_key = \"{KEY_64_HEX}\""), ""),
                "loyalty.hash_key",
                6,
                ENV_LOYALTY_HASH_KEY,
            ),
        ];
        for (text, key, line, words) in cases {
            let problems = problems(&text);
            let problem = problem_for(&problems, key);
            assert_eq!(
                problem.line,
                Some(line),
                "line of {key} in\n{text}\n{problems:#?}"
            );
            assert!(problem.message.contains(words), "{problem} should say {words:?}");
            assert_eq!(problems.len(), 1, "only {key} is wrong in\n{text}\n{problems:#?}");
        }
    }

    #[test]
    fn problem_display_has_line_key_and_message() {
        let problem = ConfigProblem {
            key: "database.read_connections".into(),
            line: Some(12),
            message: "must be between 1 and 32 (found 0)".into(),
        };
        assert_eq!(
            problem.to_string(),
            "line 12: database.read_connections: must be between 1 and 32 (found 0)"
        );
        let problem = ConfigProblem {
            line: None,
            ..problem
        };
        assert_eq!(
            problem.to_string(),
            "database.read_connections: must be between 1 and 32 (found 0)"
        );
        let error = ConfigError {
            path: PathBuf::from("/etc/store-agent/config.toml"),
            problems: vec![
                problem.clone(),
                ConfigProblem {
                    key: "".into(),
                    line: Some(3),
                    message: "x".into(),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "/etc/store-agent/config.toml: database.read_connections: must be between 1 and 32 (found 0)\n\
             /etc/store-agent/config.toml: line 3: x"
        );
    }

    #[test]
    fn problems_in_two_sections_are_reported_in_one_call() {
        let text = format!(
            "{}\n[database]\nread_connections = \"four\"\n\n[returns]\nwindow_days = 0\n",
            minimal()
        );
        let problems = problems(&text);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        let database = problem_for(&problems, "database.read_connections");
        assert_eq!(database.line, Some(10));
        assert!(database.message.contains("invalid type"), "{database}");
        assert!(database.message.contains("whole number"), "{database}");
        assert_eq!(problem_for(&problems, "returns.window_days").line, Some(13));
    }

    #[test]
    fn every_bad_key_in_one_section_is_reported() {
        let text = format!(
            "{}\n[database]\nread_conections = 4\nbusy_timeout_ms = -1\nread_connections = 99\n",
            minimal()
        );
        let problems = problems(&text);
        assert_eq!(problem_for(&problems, "database.read_conections").line, Some(10));
        assert_eq!(problem_for(&problems, "database.busy_timeout_ms").line, Some(11));
        assert_eq!(problem_for(&problems, "database.read_connections").line, Some(12));
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }

    #[test]
    fn unknown_key_in_a_section_is_reported_with_key_and_line() {
        let text = format!("{}\n[returns]\nwindow_days = 30\nwindow = 14\n", minimal());
        let problems = problems(&text);
        let problem = problem_for(&problems, "returns.window");
        assert_eq!(problem.line, Some(11));
        assert!(problem.message.starts_with("unknown key"), "{problem}");
        assert!(
            problem.message.contains("window_days"),
            "lists the known keys: {problem}"
        );
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn unknown_section_is_reported_with_key_and_line() {
        let text = format!("{}\n[return]\nwindow_days = 30\n", minimal());
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].key, "return");
        assert_eq!(problems[0].line, Some(9));
        assert!(problems[0].message.contains("[returns]"), "{}", problems[0]);

        let problems = self::problems(&format!("verbose = true\n{}", minimal()));
        assert_eq!(problem_for(&problems, "verbose").line, Some(1));
    }

    #[test]
    fn syntax_error_is_reported_alone_with_its_line() {
        let text = format!("{}\n[database]\nread_connections = 0\npath = \"/x\n", minimal());
        let problems = problems(&text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].key, "");
        assert_eq!(problems[0].line, Some(11));
        assert!(
            problems[0].message.starts_with("TOML syntax error"),
            "{}",
            problems[0]
        );

        let problems = self::problems("[store]\ntenant_id = \"a\"\ntenant_id = \"b\"\n");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].line, Some(3), "duplicate key: {}", problems[0]);
    }

    #[test]
    fn missing_required_ids_are_each_reported() {
        let text = format!("[store]\ntenant_id = \"acme\"\n\n[loyalty]\nhash_key = \"{KEY_64_HEX}\"\n");
        let problems = problems(&text);
        for key in ["store.store_id", "store.device_id"] {
            let problem = problem_for(&problems, key);
            assert_eq!(problem.line, Some(1), "the [store] header");
            assert!(problem.message.contains("missing"), "{problem}");
        }
        assert_eq!(problems.len(), 2, "{problems:#?}");

        // Without a [store] section at all there is no line to point at.
        let problems = self::problems(&format!("[loyalty]\nhash_key = \"{KEY_64_HEX}\"\n"));
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems
                .iter()
                .all(|p| p.key.starts_with("store.") && p.line.is_none())
        );
    }

    #[test]
    fn tls_files_are_all_required_unless_plaintext_is_allowed() {
        let text = format!("{}\n[mqtt]\nhost = \"b\"\n", minimal());
        let problems = problems(&text);
        for key in ["mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"] {
            assert_eq!(problem_for(&problems, key).line, Some(9));
        }
        assert_eq!(problems.len(), 3, "{problems:#?}");

        let text = text.replace("host = \"b\"", "host = \"b\"\nallow_plaintext = true");
        assert!(
            Config::parse(&text, &no_env)
                .unwrap()
                .mqtt
                .unwrap()
                .ca_file
                .is_none()
        );
    }

    #[test]
    fn missing_mqtt_host_is_reported() {
        let text = format!("{}\n[mqtt]\nallow_plaintext = true\n", minimal());
        let problems = problems(&text);
        assert_eq!(problem_for(&problems, "mqtt.host").line, Some(9));
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }

    #[test]
    fn wrong_types_are_reported_for_enums_and_sections() {
        let text = format!("{}\n[logging]\nformat = \"xml\"\n", minimal());
        let problems = problems(&text);
        let problem = problem_for(&problems, "logging.format");
        assert_eq!(problem.line, Some(10));
        assert!(
            problem.message.contains("journald"),
            "lists the formats: {problem}"
        );

        let problems = self::problems(&format!("returns = 5\n{}", minimal()));
        assert_eq!(problem_for(&problems, "returns").line, Some(1));
    }

    #[test]
    fn secret_values_never_appear_in_messages() {
        let text = minimal().replace(&format!("\"{KEY_64_HEX}\""), "123456789");
        let problems = problems(&text);
        let problem = problem_for(&problems, "loyalty.hash_key");
        assert_eq!(problem.line, Some(7));
        assert!(!problem.to_string().contains("123456789"), "{problem}");

        let secret_hex = "zz".repeat(40);
        let problems = self::problems(&minimal().replace(KEY_64_HEX, &secret_hex));
        let shown = format!("{problems:?} {}", problems[0]);
        assert!(!shown.contains("zz"), "{shown}");
    }

    #[test]
    fn secret_debug_and_display_do_not_leak() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");

        let text = format!(
            "{}\n[mqtt]\nhost = \"b\"\npassword = \"hunter2\"\nallow_plaintext = true\n",
            minimal()
        );
        let config = Config::parse(&text, &no_env).unwrap();
        let dump = format!("{config:?}");
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(!dump.contains(KEY_64_HEX), "{dump}");
    }

    #[test]
    fn hash_key_bytes_decodes_hex() {
        let loyalty = LoyaltyConfig {
            hash_key: Some(Secret::new(format!("{KEY_64_HEX}\n"))),
        };
        assert_eq!(loyalty.hash_key_bytes().unwrap()[1], 0x11);
        assert_eq!(
            LoyaltyConfig {
                hash_key: Some(Secret::new("xyz"))
            }
            .hash_key_bytes(),
            None
        );
        assert_eq!(LoyaltyConfig::default().hash_key_bytes(), None);
    }

    #[test]
    fn load_reports_the_path_and_an_unreadable_file() {
        let path = Path::new("/nonexistent/store-agent/config.toml");
        let error = Config::load(path).unwrap_err();
        assert_eq!(error.path, path);
        assert_eq!(error.problems.len(), 1);
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/store-agent/config.toml: cannot read")
        );
        assert_eq!(check_file(path), error.problems);
    }

    #[test]
    fn load_and_check_file_read_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("{}\n[returns]\nwindow_days = 0\n", minimal())).unwrap();
        let error = Config::load(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("line 10: returns.window_days: must be between 1 and 3650 (found 0)"),
            "{error}"
        );
        assert_eq!(check_file(&path), error.problems);

        std::fs::write(&path, minimal()).unwrap();
        // The process environment may hold an override; either way the file is valid.
        assert!(check_file(&path).is_empty() || std::env::var(ENV_LOYALTY_HASH_KEY).is_ok());
    }

    #[test]
    fn ids_accept_the_documented_characters() {
        assert!(is_valid_id("Store_01.berlin-mitte"));
        assert!(is_valid_id(&"a".repeat(64)));
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = include_str!("../../packaging/config.example.toml");

    proptest! {
        /// Arbitrary text is answered with problems, never a panic, and every
        /// problem with a line number points inside the file.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(problems) = Config::parse(&text, &|_| None) {
                let lines = text.lines().count().max(1);
                for p in problems {
                    prop_assert!(p.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{p} in {lines} lines");
                }
            }
        }

        /// The example with one line replaced by garbage: same guarantees.
        #[test]
        fn damaged_example_never_panics(line in 0usize..120, junk in "[ -~]{0,40}") {
            let mut lines: Vec<&str> = EXAMPLE.lines().collect();
            if line < lines.len() {
                lines[line] = &junk;
            }
            let text = lines.join("\n");
            let _ = Config::parse(&text, &|_| Some("ab".repeat(32)));
        }
    }
}
