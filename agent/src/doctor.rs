//! `store-agent doctor`: checks an installed device the way store IT would by
//! hand, and says what to fix.
//!
//! Each check gives one or more [`Finding`]s: `OK`, `WARN` (works, but look at it)
//! or `FAIL` (the agent cannot do its job until this is fixed), with the thing
//! checked and, for the last two, the fix. The checks, in order:
//!
//! * **config**: the file parses and validates, with the secrets the service gets
//!   from its `EnvironmentFile` (`/etc/store-agent/secrets.env`) applied.
//! * **clock**: not before this release's floor date; synchronised (timedatectl).
//! * **database**: opens read-only, `PRAGMA quick_check`, schema version against
//!   this binary's, dead letters waiting, free disk space.
//! * **certificates**: the CA file and the device certificate parse, are valid now
//!   and not about to expire, the certificate's CN is the MQTT client id and it is
//!   signed by the CA; the key matches and is not readable by other users.
//! * **broker**: resolves, accepts TCP within 3 s, and completes the TLS handshake
//!   with this device's certificate. No MQTT CONNECT is sent: the broker would
//!   take the session away from the running agent (same client id).
//! * **devices**: every configured port exists, is a character device, and the
//!   service can open it.
//! * **spool**: the folder exists and is writable; files waiting in `rejected/`.
//! * **agent**: the running agent answers `/readyz` on `http.listen`.
//!
//! Nothing here panics on a broken device or changes anything: doctor only reads.

use crate::config::{Config, ConfigProblem, MqttConfig};
use crate::store;
use crate::sync::tls::{self, Refusal, utc_date};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment file the service unit reads its secrets from.
pub const DEFAULT_ENV_FILE: &str = "/etc/store-agent/secrets.env";

/// A clock before this (2026-01-01T00:00:00Z) is wrong: this release did not exist yet.
pub const CLOCK_FLOOR_UNIX: i64 = 1_767_225_600;

/// A certificate closer than this to its expiry is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Less free space than this where the database lives fails the check.
pub const DISK_FAIL_BYTES: u64 = 50 * 1024 * 1024;

/// Less free space than this (or than 10 % of the file system) is a warning.
pub const DISK_WARN_BYTES: u64 = 500 * 1024 * 1024;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but someone should look at it.
    Warn,
    /// The agent cannot do its job until this is fixed.
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious.
    pub level: Level,
    /// What part of the device: `config`, `clock`, `database`, `disk`, `certificate`,
    /// `tls`, `broker`, `device`, `spool`, `agent`.
    pub area: &'static str,
    /// What was found, naming the file, device or address.
    pub message: String,
    /// What to do about it (`None` for `OK`).
    pub fix: Option<String>,
}

/// Everything doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The configuration file checked.
    pub config: PathBuf,
    /// No `FAIL`.
    pub ok: bool,
    /// How many `FAIL`s.
    pub failures: usize,
    /// How many `WARN`s.
    pub warnings: usize,
    /// Every finding, in check order.
    pub checks: Vec<Finding>,
}

impl Report {
    /// The text form: one line per finding, its fix indented below, and a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.checks {
            out.push_str(&format!("{:<4} {}: {}\n", f.level.label(), f.area, f.message));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("     fix: {fix}\n"));
            }
        }
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        match (self.failures, self.warnings) {
            (0, 0) => out.push_str("\nAll checks passed.\n"),
            (0, w) => out.push_str(&format!("\nNo problems; {}.\n", plural(w, "warning", "warnings"))),
            (f, w) => out.push_str(&format!(
                "\n{} to fix, {}.\n",
                plural(f, "problem", "problems"),
                plural(w, "warning", "warnings")
            )),
        }
        out
    }
}

/// What doctor is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// The service's environment file (secrets), read when it exists.
    pub env_file: PathBuf,
    /// The time to judge certificates and the clock by (the system clock, except in tests).
    pub now: SystemTime,
    /// How long to wait for the broker and the agent.
    pub timeout: Duration,
    /// Whether to ask timedatectl about time synchronisation.
    pub ask_timedatectl: bool,
}

impl Options {
    /// Checks `config` now, with the service's environment file.
    pub fn new(config: impl Into<PathBuf>) -> Options {
        Options {
            config: config.into(),
            env_file: PathBuf::from(DEFAULT_ENV_FILE),
            now: SystemTime::now(),
            timeout: Duration::from_secs(3),
            ask_timedatectl: true,
        }
    }
}

/// Runs every check. Never panics on what it finds; a check that cannot run says why.
pub fn run(options: &Options) -> Report {
    let mut d = Doctor {
        findings: Vec::new(),
        now_s: options
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        options,
    };
    let config = d.check_config();
    d.check_clock();
    if let Some(config) = &config {
        d.check_database(&config.database.path);
        if let Some(mqtt) = &config.mqtt {
            let client_id = config
                .mqtt_client_id()
                .unwrap_or(&config.store.device_id)
                .to_owned();
            let tls = d.check_certificates(mqtt, &client_id);
            d.check_broker(mqtt, tls);
        }
        d.check_devices(config);
        if let Some(spool) = &config.spool.path {
            d.check_spool(spool);
        }
        if let Some(listen) = config.http.listen {
            d.check_agent(listen);
        }
    }
    let failures = d.findings.iter().filter(|f| f.level == Level::Fail).count();
    let warnings = d.findings.iter().filter(|f| f.level == Level::Warn).count();
    Report {
        config: options.config.clone(),
        ok: failures == 0,
        failures,
        warnings,
        checks: d.findings,
    }
}

struct Doctor<'a> {
    findings: Vec<Finding>,
    now_s: i64,
    options: &'a Options,
}

impl Doctor<'_> {
    fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.push(Level::Ok, area, message.into(), None);
    }

    fn warn(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Warn, area, message.into(), Some(fix.into()));
    }

    fn fail(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Fail, area, message.into(), Some(fix.into()));
    }

    fn push(&mut self, level: Level, area: &'static str, message: String, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            area,
            message,
            fix,
        });
    }

    // --- config ---------------------------------------------------------------------------

    fn check_config(&mut self) -> Option<Config> {
        let path = self.options.config.clone();
        let shown = path.display().to_string();
        let env_file = self.options.env_file.clone();
        let file_env = match std::fs::read_to_string(&env_file) {
            Ok(text) => {
                self.ok(
                    "config",
                    format!("read the service's secrets from {}", env_file.display()),
                );
                parse_env_file(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                self.warn(
                    "config",
                    format!(
                        "cannot read {}: {e}; checking without the secrets it holds",
                        env_file.display()
                    ),
                    "run doctor as root (sudo store-agent doctor) so it sees what the service sees",
                );
                HashMap::new()
            }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.fail(
                    "config",
                    format!("cannot read {shown}: {e}"),
                    format!(
                        "install the package's example (apt-get install --reinstall store-agent) or pass \
                         --config FILE; doctor needs read access to {shown}"
                    ),
                );
                return None;
            }
        };
        // The service's environment file wins over the shell's, as systemd's does.
        let env = |name: &str| file_env.get(name).cloned().or_else(|| std::env::var(name).ok());
        match Config::parse(&text, &env) {
            Ok(config) => {
                self.ok("config", format!("{shown} is valid"));
                Some(config)
            }
            Err(problems) => {
                for problem in problems {
                    let fix = config_fix(&problem, &shown, &env_file);
                    self.fail("config", format!("{shown}: {problem}"), fix);
                }
                None
            }
        }
    }

    // --- clock ----------------------------------------------------------------------------

    fn check_clock(&mut self) {
        let now = date_time(self.now_s);
        if self.now_s < CLOCK_FLOOR_UNIX {
            self.fail(
                "clock",
                format!("the system clock says {now}, before this release was made"),
                "set the time and turn on synchronisation: timedatectl set-ntp true (certificates and \
                 event times depend on the clock)",
            );
            return;
        }
        if !self.options.ask_timedatectl {
            self.ok("clock", now);
            return;
        }
        let synced = std::process::Command::new("timedatectl")
            .args(["show", "--property=NTPSynchronized", "--value"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        match synced.as_deref() {
            Some("yes") => self.ok("clock", format!("{now}, synchronised with a time server")),
            Some("no") => self.warn(
                "clock",
                format!("{now}, not synchronised with a time server"),
                "timedatectl set-ntp true; the store network must let NTP (UDP 123) out, or set the \
                 retailer's NTP server in /etc/systemd/timesyncd.conf",
            ),
            _ => self.ok(
                "clock",
                format!("{now} (whether it is synchronised is unknown: timedatectl did not answer)"),
            ),
        }
    }

    // --- database and disk ----------------------------------------------------------------

    fn check_database(&mut self, path: &Path) {
        let shown = path.display().to_string();
        if !path.exists() {
            self.warn(
                "database",
                format!("{shown} does not exist yet"),
                "the agent creates it when it first starts; to create it now: \
                 sudo -u store-agent store-agent db init",
            );
        } else {
            match store::open_read_only(path) {
                Err(e) => self.fail(
                    "database",
                    format!("cannot open {shown}: {e}"),
                    format!(
                        "the file and its folder belong to the service: chown -R store-agent:store-agent {}",
                        path.parent().unwrap_or(Path::new("/")).display()
                    ),
                ),
                Ok(conn) => self.inspect_database(&conn, &shown),
            }
        }
        self.check_disk(path);
    }

    fn inspect_database(&mut self, conn: &rusqlite::Connection, shown: &str) {
        let quick = conn.prepare("PRAGMA quick_check").and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        });
        match quick {
            Ok(lines) if lines == ["ok"] => {}
            Ok(lines) => {
                self.fail(
                    "database",
                    format!(
                        "{shown} is damaged: {}",
                        lines.first().map_or("no answer from quick_check", String::as_str)
                    ),
                    "stop the agent, copy the file aside for support, and run \
                     `store-agent db integrity` (docs/operations.md, Troubleshooting)",
                );
                return;
            }
            Err(e) => {
                self.fail(
                    "database",
                    format!("cannot check {shown}: {e}"),
                    "run `store-agent db integrity`; if the file is not a database, restore it",
                );
                return;
            }
        }
        let latest = store::schema::latest_version();
        match store::schema::current_version(conn) {
            Ok(v) if v == latest => {}
            Ok(v) if v < latest => self.warn(
                "database",
                format!("{shown} has schema version {v}; this store-agent uses {latest}"),
                "the agent migrates it when it starts (or: sudo -u store-agent store-agent db migrate)",
            ),
            Ok(v) => {
                self.fail(
                    "database",
                    format!(
                        "{shown} was written by a newer store-agent (schema {v}; this one knows {latest})"
                    ),
                    "install the newer package again: a downgrade cannot read this database \
                     (docs/operations.md, Upgrade and rollback)",
                );
                return;
            }
            Err(e) => {
                self.fail(
                    "database",
                    format!("cannot read the schema version of {shown}: {e}"),
                    "run `store-agent db integrity`",
                );
                return;
            }
        }
        match store::status::report(conn) {
            Ok(report) => {
                let waiting: i64 = report.outbox.iter().map(|o| o.depth).sum();
                self.ok(
                    "database",
                    format!(
                        "{shown} is sound (schema {latest}, {} customers, {} products, {waiting} events waiting for the cloud)",
                        report.counts.customers, report.counts.products
                    ),
                );
                if report.counts.dead_letters > 0 {
                    self.warn(
                        "database",
                        format!("{} messages could not be used and wait in the dead-letter table", report.counts.dead_letters),
                        "store-agent dead-letters shows each with its source and reason; send them to the cloud team",
                    );
                }
            }
            Err(e) => self.fail(
                "database",
                format!("cannot read {shown}: {e}"),
                "run `store-agent db integrity`",
            ),
        }
    }

    fn check_disk(&mut self, db: &Path) {
        let Some(dir) = existing_ancestor(db) else {
            return;
        };
        let shown = dir.display();
        let Some((free, total)) = store::free_space(&dir) else {
            self.warn(
                "disk",
                format!("cannot tell the free space of {shown}"),
                "check with df -h",
            );
            return;
        };
        let mib = |b: u64| b / (1024 * 1024);
        let text = format!(
            "{} MiB free of {} MiB where the database lives ({shown})",
            mib(free),
            mib(total)
        );
        if free < DISK_FAIL_BYTES {
            self.fail(
                "disk",
                text,
                "free space now: the agent refuses new POS input when the disk is full \
                 (journalctl --vacuum-size=100M, remove old files)",
            );
        } else if free < DISK_WARN_BYTES || free.saturating_mul(10) < total {
            self.warn(
                "disk",
                text,
                "free some space before the disk fills (journalctl --vacuum-size=100M)",
            );
        } else {
            self.ok("disk", text);
        }
    }

    // --- certificates ---------------------------------------------------------------------

    /// Checks the TLS files and returns the client configuration for the broker check when
    /// they are usable.
    fn check_certificates(
        &mut self,
        mqtt: &MqttConfig,
        client_id: &str,
    ) -> Option<Arc<rustls::ClientConfig>> {
        let (Some(ca_file), Some(cert_file), Some(key_file)) =
            (&mqtt.ca_file, &mqtt.cert_file, &mqtt.key_file)
        else {
            if mqtt.allow_plaintext {
                self.warn(
                    "tls",
                    "the broker connection is not encrypted and the device not authenticated (mqtt.allow_plaintext = true)",
                    "use TLS with a device certificate in a store (docs/operations.md, Provisioning a device certificate)",
                );
            }
            return None;
        };
        let cas = self.check_certificate_file("CA certificate", ca_file, None);
        let leaf = self.check_certificate_file("device certificate", cert_file, Some(client_id));
        let key_ok = self.check_key_file(key_file);
        if let (Some(cas), Some(leaf)) = (&cas, &leaf) {
            self.check_signed_by(cert_file, &leaf[0], ca_file, cas);
        }
        if cas.is_none() || leaf.is_none() || !key_ok {
            return None;
        }
        match tls::client_config(ca_file, Some((cert_file, key_file))) {
            Ok(config) => Some(config),
            Err(e) => {
                self.fail(
                    "certificate",
                    format!("{e:#}"),
                    "the key must be the one the certificate was issued for: install the pair together",
                );
                None
            }
        }
    }

    /// Reads and judges every certificate in `path`; `cn` is the common name the first one
    /// must have. Returns the DER of the certificates when the file is readable PEM.
    fn check_certificate_file(&mut self, what: &str, path: &Path, cn: Option<&str>) -> Option<Vec<Vec<u8>>> {
        let shown = path.display().to_string();
        let ders: Vec<Vec<u8>> = match tls::read_certificates(path) {
            Ok(certs) => certs.into_iter().map(|c| c.as_ref().to_vec()).collect(),
            Err(e) => {
                let fix = if is_permission_denied(&e) {
                    format!(
                        "run doctor as root, or let the service read it: chown root:store-agent {shown}; chmod 640 {shown}"
                    )
                } else {
                    "install the PEM file (-----BEGIN CERTIFICATE-----) from your PKI (docs/operations.md, \
                     Provisioning a device certificate)"
                        .to_owned()
                };
                self.fail("certificate", format!("{what} {shown}: {e:#}"), fix);
                return None;
            }
        };
        for (i, der) in ders.iter().enumerate() {
            let cert = match x509_parser::parse_x509_certificate(der) {
                Ok((_, cert)) => cert,
                Err(e) => {
                    self.fail(
                        "certificate",
                        format!("{what} {shown}: certificate {} cannot be read: {e}", i + 1),
                        "replace the file with the one your PKI issued",
                    );
                    return None;
                }
            };
            let subject = common_name(&cert).unwrap_or_else(|| cert.subject().to_string());
            let label = format!("{what} {shown} ({subject})");
            let not_before = cert.validity().not_before.timestamp();
            let not_after = cert.validity().not_after.timestamp();
            let renew = "renew it (docs/operations.md, Provisioning a device certificate); the broker refuses \
                         an expired certificate";
            if self.now_s < not_before {
                self.fail(
                    "certificate",
                    format!("{label} is not valid before {}", utc_date(not_before)),
                    "check the clock first (see the clock line); otherwise the certificate was issued with a wrong date",
                );
            } else if self.now_s > not_after {
                self.fail(
                    "certificate",
                    format!("{label} expired on {}", utc_date(not_after)),
                    renew,
                );
            } else {
                let days = (not_after - self.now_s) / 86_400;
                if days < EXPIRY_WARNING_DAYS {
                    self.warn(
                        "certificate",
                        format!("{label} expires on {} (in {days} days)", utc_date(not_after)),
                        renew,
                    );
                } else {
                    self.ok(
                        "certificate",
                        format!("{label} is valid until {} ({days} days)", utc_date(not_after)),
                    );
                }
            }
            if i == 0
                && let Some(cn) = cn
                && common_name(&cert).as_deref() != Some(cn)
            {
                self.fail(
                    "certificate",
                    format!(
                        "{label}: its common name is {:?}, but the MQTT client id is {cn:?}",
                        common_name(&cert).unwrap_or_default()
                    ),
                    "the broker's ACL keys on the certificate's CN: issue the certificate for CN = store.device_id \
                     (or set mqtt.client_id to match)",
                );
            }
        }
        Some(ders)
    }

    fn check_signed_by(&mut self, cert_file: &Path, leaf: &[u8], ca_file: &Path, cas: &[Vec<u8>]) {
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf) else {
            return;
        };
        let signed = cas.iter().any(|ca| {
            x509_parser::parse_x509_certificate(ca)
                .is_ok_and(|(_, ca)| leaf.verify_signature(Some(ca.public_key())).is_ok())
        });
        if !signed {
            self.warn(
                "certificate",
                format!(
                    "{} is not signed by a CA in {} (its issuer is {})",
                    cert_file.display(),
                    ca_file.display(),
                    leaf.issuer()
                ),
                "the broker must trust the device certificate's issuer; with one store CA for both, install \
                 the certificate that CA issued",
            );
        }
    }

    /// The key's mode and readability. False when it cannot be used.
    fn check_key_file(&mut self, path: &Path) -> bool {
        let shown = path.display().to_string();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.fail(
                    "certificate",
                    format!("device key {shown}: {e}"),
                    "install the device's private key there (docs/operations.md, Provisioning a device certificate)",
                );
                return false;
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        let secure = format!("chown store-agent:store-agent {shown}; chmod 600 {shown}");
        if mode & 0o007 != 0 {
            self.fail(
                "certificate",
                format!("device key {shown} can be read by every user (mode {mode:04o})"),
                format!(
                    "{secure} — and since others could read it, consider the key leaked and issue a new one"
                ),
            );
        } else if mode & 0o020 != 0 {
            self.warn(
                "certificate",
                format!("device key {shown} is writable by its group (mode {mode:04o})"),
                secure.clone(),
            );
        }
        match std::fs::File::open(path) {
            Ok(_) => {
                if mode & 0o007 == 0 {
                    self.ok(
                        "certificate",
                        format!("device key {shown} is private (mode {mode:04o})"),
                    );
                }
                true
            }
            Err(e) => {
                self.fail(
                    "certificate",
                    format!("device key {shown} cannot be read by this user: {e}"),
                    format!("run doctor as root or as store-agent; the service needs it: {secure}"),
                );
                false
            }
        }
    }

    // --- broker ---------------------------------------------------------------------------

    fn check_broker(&mut self, mqtt: &MqttConfig, tls: Option<Arc<rustls::ClientConfig>>) {
        let target = format!("{}:{}", mqtt.host, mqtt.port);
        let addrs: Vec<SocketAddr> = match (mqtt.host.as_str(), mqtt.port).to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                self.fail(
                    "broker",
                    format!("cannot resolve {}: {e}", mqtt.host),
                    "check mqtt.host and the device's DNS (/etc/resolv.conf)",
                );
                return;
            }
        };
        let mut last_error = None;
        let mut socket = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, self.options.timeout) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(mut socket) = socket else {
            let (message, fix) = match last_error {
                Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
                    format!("{target} refuses connections"),
                    "nothing listens there: is the broker running, and are mqtt.host and mqtt.port right?",
                ),
                Some(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    (
                        format!(
                            "{target} does not answer within {} s",
                            self.options.timeout.as_secs()
                        ),
                        "a firewall drops the traffic, or mqtt.host is wrong; the store network must let TCP to the broker out",
                    )
                }
                Some(e) => (
                    format!("cannot connect to {target}: {e}"),
                    "check the network and mqtt.host",
                ),
                None => (
                    format!("{} resolves to no address", mqtt.host),
                    "check mqtt.host and DNS",
                ),
            };
            self.fail("broker", message, fix);
            return;
        };
        let Some(tls) = tls else {
            if mqtt.ca_file.is_none() {
                self.ok("broker", format!("{target} accepts TCP connections (plain MQTT)"));
            } else {
                self.warn(
                    "broker",
                    format!("{target} accepts TCP connections; TLS not tried because the certificate files have problems"),
                    "fix the certificate findings above, then run doctor again",
                );
            }
            return;
        };
        match tls_handshake(&mut socket, &mqtt.host, tls, self.options.timeout) {
            Ok(()) => self.ok(
                "broker",
                format!(
                    "{target} completed TLS with this device's certificate (no MQTT session opened, so a running agent is not disturbed)"
                ),
            ),
            Err(TlsProblem::Refusal(r)) => self.fail("broker", format!("{target}: {r}"), r.fix()),
            Err(TlsProblem::Other(e)) => self.fail(
                "broker",
                format!("{target}: TLS failed: {e}"),
                "is this the broker's TLS port (usually 8883)?",
            ),
        }
    }

    // --- devices --------------------------------------------------------------------------

    fn check_devices(&mut self, config: &Config) {
        use firmware_interfaces::drivers::wedge::{self, DeviceMatch};
        let d = &config.devices;
        let mut ports: Vec<(&str, PathBuf, bool)> = Vec::new();
        for s in d.scanners.serial.iter().chain(&d.card_readers.serial) {
            ports.push((&s.device_id, s.path.clone(), true));
        }
        for t in &d.journal_taps {
            ports.push((&t.serial.device_id, t.serial.path.clone(), true));
        }
        for o in d
            .displays
            .iter()
            .map(|x| &x.port)
            .chain(d.printers.iter().map(|x| &x.port))
        {
            ports.push((&o.device_id, o.path.clone(), true));
        }
        let wedges: Vec<_> = d.scanners.wedge.iter().chain(&d.card_readers.wedge).collect();
        let mut inputs = None;
        for w in &wedges {
            match &w.device {
                DeviceMatch::Path(path) => ports.push((&w.device_id, path.clone(), false)),
                other => {
                    let list = inputs.get_or_insert_with(wedge::list_input_devices);
                    match wedge::choose_device(other, list) {
                        Ok(found) => ports.push((&w.device_id, found.path.clone(), false)),
                        Err(e) => self.warn(
                            "device",
                            format!("{}: {e}", w.device_id),
                            "plug the scanner in, and check its name or USB id with `cat /proc/bus/input/devices`",
                        ),
                    }
                }
            }
        }
        for (id, path, write) in ports {
            self.check_device(id, &path, write);
        }
    }

    fn check_device(&mut self, id: &str, path: &Path, write: bool) {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.warn(
                    "device",
                    format!("{id}: {shown} is not there ({e})"),
                    "plug the device in; for a /dev/store-* name, check its udev rule \
                     (docs/operations.md, Device names; `udevadm info --attribute-walk` shows its ids)",
                );
                return;
            }
        };
        if !meta.file_type().is_char_device() {
            self.fail(
                "device",
                format!("{id}: {shown} is not a device"),
                "point the configuration at the device node (/dev/ttyUSB0, /dev/store-scanner-…)",
            );
            return;
        }
        let group = group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
        let mode = meta.permissions().mode() & 0o777;
        let need = if write { "read and write" } else { "read" };
        let fix = "the service runs in the groups dialout and input: give the device one of them in a udev rule \
                   (GROUP=\"dialout\", MODE=\"0660\"; docs/operations.md, Device names)";
        let root = is_root();
        let (allowed, who) = if root {
            // Root may open anything; judge what the service's groups would get.
            let group_bits = if write { 0o060 } else { 0o040 };
            let other_bits = if write { 0o006 } else { 0o004 };
            let service_group = ["dialout", "input", "store-agent"].contains(&group.as_str());
            let allowed =
                (service_group && mode & group_bits == group_bits) || mode & other_bits == other_bits;
            (allowed, "the service")
        } else {
            let flags = if write {
                libc::R_OK | libc::W_OK
            } else {
                libc::R_OK
            };
            (access(path, flags), "this user")
        };
        let detail = format!("{shown} (group {group}, mode {mode:04o})");
        if allowed {
            self.ok("device", format!("{id}: {detail}"));
        } else {
            self.fail("device", format!("{id}: {who} cannot {need} {detail}"), fix);
        }
    }

    // --- spool ----------------------------------------------------------------------------

    fn check_spool(&mut self, path: &Path) {
        let shown = path.display();
        let fix = format!(
            "mkdir -p {shown}; chown store-agent:store-agent {shown}; chmod 2770 {shown} \
             (the POS writes its files there)"
        );
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                self.fail("spool", format!("{shown} is not a folder"), fix);
                return;
            }
            Err(e) => {
                self.fail("spool", format!("{shown}: {e}"), fix);
                return;
            }
        }
        let root = is_root();
        if !root && !access(path, libc::W_OK | libc::X_OK) {
            self.fail("spool", format!("this user cannot write to {shown}"), fix);
            return;
        }
        let rejected = path.join(crate::spool::REJECTED_DIR);
        let count = std::fs::read_dir(&rejected)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    // Each rejected file has its NAME.reason beside it.
                    .filter(|e| e.path().extension().is_none_or(|x| x != "reason"))
                    .count()
            })
            .unwrap_or(0);
        if count > 0 {
            self.warn(
                "spool",
                format!(
                    "{count} POS files wait in {} (each with a .reason file)",
                    rejected.display()
                ),
                "read the reasons, fix the files or the POS export, and move them back into the spool folder",
            );
        } else {
            self.ok("spool", format!("{shown} is writable, nothing rejected"));
        }
    }

    // --- the running agent ----------------------------------------------------------------

    fn check_agent(&mut self, listen: SocketAddr) {
        if listen.port() == 0 {
            return;
        }
        let mut addr = listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        match http_status(addr, "/readyz", self.options.timeout) {
            Ok(200) => self.ok("agent", format!("the agent runs and is ready on {addr}")),
            Ok(code) => self.warn(
                "agent",
                format!("the agent runs on {addr} but is not ready (/readyz answered {code})"),
                "store-agent status and journalctl -u store-agent say why",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => self.warn(
                "agent",
                format!("the agent is not running (nothing listens on {addr})"),
                "systemctl start store-agent; journalctl -u store-agent -b shows why it stopped",
            ),
            Err(e) => self.warn(
                "agent",
                format!("cannot ask the agent on {addr}: {e}"),
                "systemctl status store-agent",
            ),
        }
    }
}

/// The fix for one configuration problem.
fn config_fix(problem: &ConfigProblem, shown: &str, env_file: &Path) -> String {
    if problem.key == "loyalty.hash_key" {
        return format!(
            "put {}=<64 hex digits> in {} (root:root, mode 0600), where the service reads it",
            crate::config::ENV_LOYALTY_HASH_KEY,
            env_file.display()
        );
    }
    format!("edit {shown}; `store-agent config check {shown}` lists every problem with its line")
}

/// `KEY=VALUE` lines as systemd's `EnvironmentFile=` reads them (comments, blank lines,
/// optional `export`, single or double quotes around the value).
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.trim().to_owned(), value.to_owned());
    }
    vars
}

enum TlsProblem {
    /// A refusal, by us (the broker's certificate) or by the broker (ours).
    Refusal(Refusal),
    /// Anything else: not TLS, closed, timed out.
    Other(String),
}

/// A TLS handshake with the client certificate, then a short read: under TLS 1.3 the
/// broker judges the client certificate after the handshake and answers a refusal with
/// an alert on the next record.
fn tls_handshake(
    socket: &mut TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(), TlsProblem> {
    let other = |e: &dyn std::fmt::Display| TlsProblem::Other(e.to_string());
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| other(&e))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| other(&e))?;
    socket.set_read_timeout(Some(timeout)).map_err(|e| other(&e))?;
    socket.set_write_timeout(Some(timeout)).map_err(|e| other(&e))?;
    let classify = |e: std::io::Error| -> TlsProblem {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(r) => Refusal::of(r).map_or_else(|| TlsProblem::Other(r.to_string()), TlsProblem::Refusal),
            None => TlsProblem::Other(e.to_string()),
        }
    };
    while conn.is_handshaking() {
        conn.complete_io(socket).map_err(classify)?;
    }
    // Give the broker a moment to refuse the certificate; silence means it took it.
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .map_err(|e| other(&e))?;
    let mut buf = [0u8; 64];
    let result = rustls::Stream::new(&mut conn, socket).read(&mut buf);
    let outcome = match result {
        Ok(0) => Err(TlsProblem::Refusal(Refusal::DeviceRefused(
            "the broker closed the connection after the handshake".into(),
        ))),
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(classify(e)),
    };
    conn.send_close_notify();
    let _ = conn.complete_io(socket);
    outcome
}

/// The status code of `GET path` over plain HTTP/1.0.
fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}

fn common_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
}

fn date_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| unix.to_string())
}

fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn access(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// The name of group `gid` from /etc/group.
fn group_name(gid: u32) -> Option<String> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == gid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests;
