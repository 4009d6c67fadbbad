//! A real Mosquitto broker for the sync tests: its own certificate authority, TLS with client
//! certificates, the access control list of the design, and rumqttc clients to talk to it.
//!
//! Why a real Mosquitto and not an embedded broker: what these tests check — that a device cannot
//! read another store's streams, cannot publish as another device, cannot connect without a
//! certificate of the store's CA — is enforced by the broker's TLS and ACL code, and only the
//! broker the stores use can prove it. Its persistence and restarts are real too, which the
//! redelivery tests need.
//!
//! * [`Pki`] makes the certificate authority, the broker's certificate and one client certificate
//!   per identity (the certificate CN is the device id), plus certificates of a foreign CA.
//! * [`acl_text`] is the access control list of the design; [`Mosquitto::start`] runs a broker
//!   with it on a free loopback port, [`Mosquitto::start_plain`] one without TLS or ACL.
//! * [`tls_options`] and [`Mosquitto::client_options`] build rumqttc options through the agent's
//!   own TLS code ([`store_agent::sync::tls`]), and [`MqttClient`] drives a connection for a test.
//! * [`mosquitto_or_skip`]: a machine without Mosquitto skips these tests with a reason, except
//!   under `CI=true`, where a missing broker is a failure so CI can never pass by skipping.
//!
//! Everything a broker writes (configuration, ACL, log, persistence) goes into the directory the
//! test gives it, normally a [`crate::TestDir`]; the process is stopped by its own pid.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use store_agent::sync::protocol::MAX_MESSAGE_BYTES;
use tokio::sync::mpsc;

/// The certificate CN (and so the ACL user name) of the cloud's services.
pub const CLOUD_USER: &str = "cloud";

/// How long a broker may take to start listening before the test fails. A bound, not an
/// expectation: Mosquitto starts in milliseconds, but a loaded CI machine can be slow.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a broker may take to exit after `SIGTERM`. Longer than [`START_TIMEOUT`] because
/// Mosquitto writes its whole persistence file on the way out, which for a queue of a hundred
/// thousand messages takes a while on a slow disk.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the [`MqttClient`] helpers wait for the broker (a CONNACK, SUBACK, PUBACK or an
/// expected message) before failing the test. Only a failure bound: no test waits this long
/// when it passes.
pub const MQTT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest MQTT packet the test brokers accept; a client sending a larger one is
/// disconnected. [`MAX_MESSAGE_BYTES`] (the protocol's limit, AWS IoT Core's 128 KiB, topic and
/// payload included) plus the fixed header, the topic length and the packet id, so that the
/// tests hold the agent and the cloud simulator to the limit the real cloud enforces instead
/// of letting an oversized message pass here and fail only in production.
pub const BROKER_MAX_PACKET_BYTES: usize = MAX_MESSAGE_BYTES + 16;

/// How many QoS 1 messages the broker queues per client beyond those in flight. Mosquitto's
/// default (1000) silently drops the rest, which would make a test of an agent that was offline
/// during 100 000 store changes fail for the broker's sake.
pub const MAX_QUEUED_MESSAGES: usize = 1_000_000;

/// The `mosquitto` executable: `MOSQUITTO` when set (`None` if that file does not exist),
/// otherwise the first found on `PATH` or in the `sbin` directories Debian installs it to (which
/// are not on an ordinary user's `PATH`).
pub fn mosquitto_binary() -> Option<&'static Path> {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("MOSQUITTO") {
                // An explicit choice that is not there is not silently replaced by another broker.
                return Some(PathBuf::from(path)).filter(|p| p.is_file());
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
                .map(|dir| dir.join("mosquitto"))
                .find(|candidate| candidate.is_file())
        })
        .as_deref()
}

/// Whether a Mosquitto broker can be started here.
pub fn mosquitto_available() -> bool {
    mosquitto_binary().is_some()
}

/// Whether the broker tests can run: true when Mosquitto is installed. Otherwise prints why
/// `test` skips and returns false — except under `CI=true`, where it panics, because CI must
/// run every broker test and can never pass by skipping. Call it first in every broker test:
///
/// `if !mosquitto_or_skip("device_reads_its_store") { return; }`
pub fn mosquitto_or_skip(test: &str) -> bool {
    if mosquitto_available() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: mosquitto is not installed and CI=true: CI must run every broker test \
             (scripts/test.sh installs the mosquitto package)"
        );
    }
    eprintln!(
        "SKIP {test}: no mosquitto executable (MOSQUITTO, else PATH and /usr/sbin); install the \
         mosquitto package (scripts/test.sh does, as root) or point MOSQUITTO at one to run the \
         broker tests"
    );
    false
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS #8).
    pub key: PathBuf,
}

/// A test certificate authority with the broker's certificate, issuing client certificates on
/// demand. All files are PEM in the directory given to [`Pki::generate`].
///
/// Keys are ECDSA P-256 (rcgen's default), which is fast enough to make per test.
pub struct Pki {
    /// Where the files are written.
    dir: PathBuf,
    /// The CA certificate: the broker's `cafile` and every client's trust anchor.
    ca_file: PathBuf,
    /// The broker's certificate and key.
    server: ClientFiles,
    /// Signs client certificates.
    ca: Issuer<'static, KeyPair>,
    /// The foreign CA's certificate, for tests of a client trusting the wrong CA.
    foreign_ca_file: PathBuf,
    /// A CA the broker does not trust (see [`Pki::foreign_client`]).
    foreign_ca: Issuer<'static, KeyPair>,
    /// Client certificates already issued, by CN, so asking twice gives the same files; foreign
    /// ones under a `foreign:` prefix.
    clients: Mutex<HashMap<String, ClientFiles>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The issuers hold private keys; the paths are what a failure message needs.
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_file", &self.ca_file)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The distinguished name of the test CA, shared by the foreign CA (see [`Pki::foreign_client`]).
const CA_NAME: &str = "store-agent test CA";

impl Pki {
    /// A new CA and a broker certificate for `localhost` and `127.0.0.1` signed by it, written
    /// to `dir` (which must exist) as `ca.pem`, `server.pem` and `server-key.pem`.
    pub fn generate(dir: &Path) -> Pki {
        Pki::generate_for(dir, &["localhost", "127.0.0.1"])
    }

    /// [`Pki::generate`] with a broker certificate for `names` only (a broker reached
    /// by another name must be refused).
    pub fn generate_for(dir: &Path, names: &[&str]) -> Pki {
        let (ca_pem, ca) = new_ca();
        let ca_file = write_file(dir, "ca.pem", &ca_pem);
        let (foreign_pem, foreign_ca) = new_ca();
        let foreign_ca_file = write_file(dir, "foreign-ca.pem", &foreign_pem);

        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("valid subject alternative names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let server = issue(dir, "server", params, &ca);
        Pki {
            dir: dir.to_owned(),
            ca_file,
            server,
            ca,
            foreign_ca_file,
            foreign_ca,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The CA certificate file: the broker's `cafile` and the clients' trust anchor.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The broker's certificate and key files.
    pub fn server_files(&self) -> (&Path, &Path) {
        (&self.server.cert, &self.server.key)
    }

    /// A client certificate (clientAuth) with common name `cn`, signed by the CA. The broker
    /// takes the CN as the user name (`use_identity_as_username`), so this is the identity the
    /// ACL sees. Issued once per CN; later calls return the same files.
    pub fn client(&self, cn: &str) -> ClientFiles {
        self.client_of(cn, false)
    }

    /// A client certificate with common name `cn` signed by a foreign CA the broker does not
    /// trust. The foreign CA has the same name as the real one but its own key — the strongest
    /// impostor, since the broker must check the signature, not just find an issuer by name.
    pub fn foreign_client(&self, cn: &str) -> ClientFiles {
        self.client_of(cn, true)
    }

    /// The foreign CA's certificate, for a client that trusts the wrong CA.
    pub fn foreign_ca_file(&self) -> &Path {
        &self.foreign_ca_file
    }

    /// A client certificate with common name `cn` signed by the CA that expired `days_ago` days
    /// ago (valid for a year before that), for tests of what an expired device certificate does.
    /// A new one on every call.
    pub fn expired_client(&self, cn: &str, days_ago: i64) -> ClientFiles {
        let now = time::OffsetDateTime::now_utc();
        let not_after = now - time::Duration::days(days_ago);
        self.client_valid(cn, not_after - time::Duration::days(365), not_after)
    }

    /// A client certificate with common name `cn` signed by the CA that becomes valid
    /// `days_ahead` days from now (a clock or an issuing mistake). A new one on every call.
    pub fn future_client(&self, cn: &str, days_ahead: i64) -> ClientFiles {
        let not_before = time::OffsetDateTime::now_utc() + time::Duration::days(days_ahead);
        self.client_valid(cn, not_before, not_before + time::Duration::days(365))
    }

    fn client_valid(
        &self,
        cn: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> ClientFiles {
        let mut params = CertificateParams::new(Vec::new()).expect("no subject alternative names");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        params.not_before = not_before;
        params.not_after = not_after;
        static ISSUED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = ISSUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        issue(&self.dir, &format!("dated-client-{n}"), params, &self.ca)
    }

    fn client_of(&self, cn: &str, foreign: bool) -> ClientFiles {
        let key = if foreign {
            format!("foreign:{cn}")
        } else {
            cn.to_owned()
        };
        let mut clients = self.clients.lock().expect("client certificate cache");
        if let Some(files) = clients.get(&key) {
            return files.clone();
        }
        // The number keeps two CNs that sanitise to the same file name apart.
        let safe: String = cn
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let prefix = if foreign { "foreign-client" } else { "client" };
        let stem = format!("{prefix}-{}-{safe}", clients.len());
        let mut params = CertificateParams::new(Vec::new()).expect("no subject alternative names");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        let issuer = if foreign { &self.foreign_ca } else { &self.ca };
        let files = issue(&self.dir, &stem, params, issuer);
        clients.insert(key, files.clone());
        files
    }
}

/// A self-signed CA named [`CA_NAME`]: its PEM certificate and the issuer that signs with it.
fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).expect("no subject alternative names");
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    let cert = params.self_signed(&key).expect("a self-signed CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

/// Signs `params` (a leaf) with `issuer` under a fresh key and writes `<stem>.pem` and
/// `<stem>-key.pem` into `dir`.
fn issue(dir: &Path, stem: &str, mut params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> ClientFiles {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("a leaf key");
    let cert = params
        .signed_by(&key, issuer)
        .expect("a certificate signed by the CA");
    ClientFiles {
        cert: write_file(dir, &format!("{stem}.pem"), &cert.pem()),
        key: write_file(dir, &format!("{stem}-key.pem"), &key.serialize_pem()),
    }
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A device the broker knows: its certificate CN is `device_id`, and it may read the streams of
/// store `store_id` of `tenant_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDevice {
    /// The device id: client id and certificate CN.
    pub device_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its store.
    pub store_id: String,
}

impl AclDevice {
    /// A device of `tenant_id`'s store `store_id`.
    pub fn new(device_id: &str, tenant_id: &str, store_id: &str) -> AclDevice {
        AclDevice {
            device_id: device_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            store_id: store_id.to_owned(),
        }
    }
}

/// The broker's access control list for `devices`, as in the sync design: with
/// `use_identity_as_username`, `%u` is the certificate CN, which is the device id.
///
/// * Device-own topics (uplink, presence, downlink) come from `%u` patterns, which apply to
///   every user.
/// * The cloud (certificate CN [`CLOUD_USER`]) reads and writes everything under the root.
/// * A store's streams come from one `user` block per device. Mosquitto substitutes `%u` only
///   as a whole topic level, and a device id has no level that names its store
///   (`acme.s1.pos01` is one level), so no pattern can say "the store of this device": the
///   registry that knows which store a device belongs to writes the block.
///
/// Anything not granted is denied: a device cannot publish on the store streams, read another
/// device's downlink or uplink, or write another device's uplink.
pub fn acl_text(devices: &[AclDevice]) -> String {
    let root = store_agent::sync::protocol::TOPIC_ROOT;
    let mut text = format!(
        "# Written by the store-agent end-to-end test harness (tests/src/mqtt.rs).\n\
         # Patterns first: they apply to every user, %u being the certificate CN.\n\
         pattern write {root}/device/%u/up/+\n\
         pattern write {root}/device/%u/presence\n\
         pattern read {root}/device/%u/down/+\n\
         \n\
         user {CLOUD_USER}\n\
         topic readwrite {root}/#\n"
    );
    for device in devices {
        text.push_str(&format!(
            "\nuser {}\ntopic read {root}/store/{}/{}/+\n",
            device.device_id, device.tenant_id, device.store_id
        ));
    }
    text
}

/// What kind of broker a [`Mosquitto`] is, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// TLS with client certificates and the ACL.
    Tls,
    /// Plain TCP, anonymous, no ACL.
    Plain,
}

/// A Mosquitto broker process listening on a free port of 127.0.0.1 only, with its
/// configuration, log and persistence in a directory of the test.
///
/// Dropping it while it runs kills it (`SIGKILL`, by its own pid) and reaps it, so a failing
/// test never leaves a broker behind.
#[derive(Debug)]
pub struct Mosquitto {
    /// The directory holding `mosquitto.conf`, `mosquitto.acl`, `mosquitto.log` and `data/`.
    dir: PathBuf,
    /// The configuration file.
    config: PathBuf,
    /// The log file: Mosquitto's own log and anything it prints on stdout and stderr.
    log: PathBuf,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// TLS + ACL or plain.
    flavour: Flavour,
    /// The running process; `None` after [`Mosquitto::stop`] or [`Mosquitto::kill9`].
    child: Option<Child>,
}

/// How often the start-up wait looks at the port and the process.
const START_POLL: Duration = Duration::from_millis(10);

/// How many times [`Mosquitto::start`] tries a new port when another process took the free one
/// between the harness finding it and the broker binding it.
const PORT_ATTEMPTS: usize = 5;

/// The line Mosquitto logs once its listeners are open.
const RUNNING_LINE: &str = " running";

impl Mosquitto {
    /// Starts a broker with TLS (the certificates of `pki`), client certificates required, the CN
    /// as user name, and the ACL of `devices` ([`acl_text`]), writing its files into `dir` (one
    /// broker per directory; the [`Pki`] files may share it).
    /// Panics (with the broker's log) when it does not start within [`START_TIMEOUT`], and when
    /// Mosquitto is not installed — call [`mosquitto_or_skip`] first.
    pub fn start(dir: &Path, pki: &Pki, devices: &[AclDevice]) -> Mosquitto {
        let acl = write_file(dir, "mosquitto.acl", &acl_text(devices));
        let (cert, key) = pki.server_files();
        let tls = format!(
            "cafile {}\n\
             certfile {}\n\
             keyfile {}\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             acl_file {}\n",
            config_path(pki.ca_file()),
            config_path(cert),
            config_path(key),
            config_path(&acl),
        );
        Mosquitto::start_flavour(dir, Flavour::Tls, &tls)
    }

    /// Starts a broker without TLS, authentication or ACL (anonymous clients, still on 127.0.0.1
    /// only), for benchmarks that measure the agent rather than the encryption. Same limits,
    /// persistence and log as [`Mosquitto::start`].
    pub fn start_plain(dir: &Path) -> Mosquitto {
        Mosquitto::start_flavour(dir, Flavour::Plain, "allow_anonymous true\n")
    }

    fn start_flavour(dir: &Path, flavour: Flavour, listener_settings: &str) -> Mosquitto {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        let mut broker = Mosquitto {
            dir: dir.to_owned(),
            config: dir.join("mosquitto.conf"),
            log: dir.join("mosquitto.log"),
            port: 0,
            flavour,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            broker.port = free_port();
            std::fs::write(&broker.config, broker.config_text(listener_settings))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", broker.config.display()));
            match broker.spawn() {
                Ok(()) => return broker,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("Address already in use") => continue,
                Err(log) => broker.fail_start(&log),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The whole configuration: the listener, then `listener_settings` (TLS and ACL, or
    /// anonymous access), then what both flavours share.
    fn config_text(&self, listener_settings: &str) -> String {
        // Run as root (a CI container), Mosquitto would switch to the `mosquitto` user, which
        // cannot read the test's directory (mode 0700, owned by root); `user root` keeps it.
        // For any other user the setting has no effect and is left out.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let data = config_path(&self.dir.join("data"));
        format!(
            "# Written by the store-agent end-to-end test harness (tests/src/mqtt.rs).\n\
             {user}\
             per_listener_settings false\n\
             listener {port} 127.0.0.1\n\
             {listener_settings}\
             \n\
             # Durable sessions and queues survive stop() / start_again(); Mosquitto saves them on exit.\n\
             persistence true\n\
             persistence_location {data}/\n\
             max_queued_messages {MAX_QUEUED_MESSAGES}\n\
             max_inflight_messages 100\n\
             max_packet_size {BROKER_MAX_PACKET_BYTES}\n\
             set_tcp_nodelay true\n\
             \n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             log_type subscribe\n\
             log_type unsubscribe\n\
             connection_messages true\n\
             log_timestamp true\n\
             log_timestamp_format %Y-%m-%dT%H:%M:%S\n",
            port = self.port,
            log = config_path(&self.log),
        )
    }

    /// Starts the process and waits until it listens. `Err(log)` when it exits first.
    fn spawn(&mut self) -> Result<(), String> {
        let binary = mosquitto_binary()
            .expect("mosquitto is not installed: call mosquitto_or_skip() before starting a broker");
        let runs_before = self.log().matches(RUNNING_LINE).count();
        // stdout and stderr go to the log too (appending, like Mosquitto's own log), for what
        // Mosquitto prints before its log is open, such as configuration errors.
        let output = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let stderr = output.try_clone().expect("a second handle on the log file");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("waiting for mosquitto") {
                self.child = None;
                return Err(format!("mosquitto exited with {status}\n{}", self.log()));
            }
            // The "running" line proves the listener is Mosquitto's and not another process's
            // that took the port first; the connection proves it accepts. (On the TLS broker that
            // connection is the one "Client connection from 127.0.0.1 failed: ... unexpected eof"
            // line of each start in the log: it closes without a handshake.)
            if self.log().matches(RUNNING_LINE).count() > runs_before
                && TcpStream::connect_timeout(&address, START_POLL).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                self.fail_start(&format!("not listening on {address} after {START_TIMEOUT:?}"));
            }
            std::thread::sleep(START_POLL);
        }
    }

    fn fail_start(&self, why: &str) -> ! {
        panic!(
            "the {:?} mosquitto broker in {} did not start: {}\n--- mosquitto.log (tail) ---\n{}",
            self.flavour,
            self.dir.display(),
            why.lines().next().unwrap_or_default(),
            self.log_tail(40)
        );
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the broker is running")
    }

    /// The port on 127.0.0.1 it listens on (the same after [`Mosquitto::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its configuration, ACL, log and `data/` (persistence).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => {
                if child.try_wait().expect("waiting for mosquitto").is_some() {
                    self.child = None;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// Stops it cleanly: `SIGTERM`, then waits (at most [`STOP_TIMEOUT`]) while Mosquitto saves
    /// its persistence file and exits. Panics if it does not exit in time (after killing it) or
    /// is not running.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("stop(): the broker is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions. The pid is our child and not yet
        // reaped, so it cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill({pid}, SIGTERM): {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for mosquitto") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mosquitto did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// Starts it again after [`Mosquitto::stop`] or [`Mosquitto::kill9`]: same port, same
    /// configuration, same persistence directory, so durable sessions and queued messages saved
    /// by a clean stop are back. Panics if it is running or does not start.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "start_again(): the broker is still running");
        if let Err(log) = self.spawn() {
            self.fail_start(&log);
        }
    }

    /// Kills it with `SIGKILL` (no persistence is saved: what changed since the last save is
    /// lost, as in a power cut) and reaps it. Does nothing when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals this child's own pid, and only while it is unreaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything in its log so far (all runs), for assertions and failure messages.
    pub fn log(&self) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the log contains `needle` (polling the file); false if `timeout` passes first.
    /// Blocking: the log is a file, and the wait is short.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// rumqttc options for a client with certificate CN `cn` (issued by `pki`) as its client id,
    /// connecting to this broker. See [`tls_options`].
    pub fn client_options(&self, pki: &Pki, cn: &str) -> MqttOptions {
        tls_options(cn, self.port, pki.ca_file(), &pki.client(cn))
    }

    /// rumqttc options for an anonymous client of a [`Mosquitto::start_plain`] broker.
    pub fn plain_options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, Ipv4Addr::LOCALHOST.to_string(), self.port);
        options.set_max_packet_size(BROKER_MAX_PACKET_BYTES, BROKER_MAX_PACKET_BYTES);
        options
    }
}

impl Drop for Mosquitto {
    /// Kills rather than stops: nothing reads the persistence of a broker that is being dropped,
    /// and `SIGKILL` cannot hang a failing test on a broker saving a large queue.
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port on 127.0.0.1 that was free a moment ago: bind port 0, read what the kernel chose,
/// release it. Another process may take it before the broker binds it; [`Mosquitto::start`]
/// then tries another.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port on 127.0.0.1");
    listener.local_addr().expect("the bound address").port()
}

/// `path` for a Mosquitto configuration line, which ends a value at the first space.
fn config_path(path: &Path) -> String {
    let text = crate::path_str(path);
    assert!(
        !text.contains(char::is_whitespace),
        "{text} has white space, which a mosquitto.conf value cannot hold"
    );
    text
}

/// The I/O error under a rumqttc connection error, wherever rumqttc wrapped it (the TLS layer,
/// the MQTT state machine, the packet decoder).
pub fn io_error_of(error: &ConnectionError) -> Option<&std::io::Error> {
    use rumqttc::{StateError, TlsError};
    match error {
        ConnectionError::Io(io)
        | ConnectionError::Tls(TlsError::Io(io))
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(rumqttc::Error::Io(io))) => Some(io),
        _ => None,
    }
}

/// The TLS alert the peer sent, when that is what ended a rumqttc connection: how a client
/// learns that the broker refused its certificate (or the lack of one).
pub fn tls_alert_of(error: &ConnectionError) -> Option<rustls::AlertDescription> {
    let tls = match error {
        ConnectionError::Tls(rumqttc::TlsError::TLS(tls)) => Some(tls),
        // rustls reports errors on an established stream as I/O errors wrapping its own.
        _ => io_error_of(error)
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
    };
    match tls {
        Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
        _ => None,
    }
}

/// rumqttc options for client `client_id` connecting to 127.0.0.1:`port` over TLS with the
/// certificate `files`, trusting only `ca_file`: the agent's own TLS code
/// ([`store_agent::sync::tls::mqtt_transport`]), so the tests exercise what ships. The host is
/// the IP address, which the broker's certificate names, so no resolver is involved (and
/// `localhost` cannot resolve to `::1`, where nothing listens). Packet limits are
/// [`BROKER_MAX_PACKET_BYTES`] both ways, rather than rumqttc's 10 KiB default.
pub fn tls_options(client_id: &str, port: u16, ca_file: &Path, files: &ClientFiles) -> MqttOptions {
    let transport = store_agent::sync::tls::mqtt_transport(ca_file, &files.cert, &files.key)
        .unwrap_or_else(|e| panic!("TLS configuration for {client_id}: {e:#}"));
    options_with(client_id, port, transport)
}

/// rumqttc options for a TLS client that trusts `ca_file` but presents no certificate, which
/// the TLS broker must refuse.
pub fn tls_options_without_certificate(client_id: &str, port: u16, ca_file: &Path) -> MqttOptions {
    let config = store_agent::sync::tls::client_config(ca_file, None)
        .unwrap_or_else(|e| panic!("TLS configuration for {client_id}: {e:#}"));
    options_with(
        client_id,
        port,
        Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(config)),
    )
}

fn options_with(client_id: &str, port: u16, transport: Transport) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, Ipv4Addr::LOCALHOST.to_string(), port);
    options.set_transport(transport);
    options.set_max_packet_size(BROKER_MAX_PACKET_BYTES, BROKER_MAX_PACKET_BYTES);
    options
}

/// What the connection task hands the test: each packet the broker sent, or the error that
/// ended the connection (the last item).
type Incoming = Result<Packet, ConnectionError>;

/// A connected rumqttc client for a test, with its event loop on a task of its own.
///
/// One request at a time: [`MqttClient::subscribe`] and [`MqttClient::publish`] wait for their
/// SUBACK or PUBACK, so the order of a test's lines is the order the broker handled them.
/// Messages that arrive meanwhile are kept for [`MqttClient::next_publish`]. The connection is
/// not re-established after an error: the error fails the waiting call, since for these tests
/// a dropped connection is a finding, not something to paper over.
///
/// Dropping it closes the connection without a DISCONNECT, as a device losing power does
/// (the broker then publishes its Last Will); [`MqttClient::disconnect`] is the clean way.
pub struct MqttClient {
    /// The client id, for messages.
    id: String,
    /// Sends requests to the event loop.
    client: AsyncClient,
    /// Packets from the event loop (bounded: a test that stops reading holds the loop back).
    incoming: mpsc::Receiver<Incoming>,
    /// Messages received while waiting for an acknowledgement.
    received: VecDeque<Publish>,
    /// The task polling the event loop; aborted on drop.
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttClient")
            .field("id", &self.id)
            .field("received", &self.received.len())
            .finish_non_exhaustive()
    }
}

impl MqttClient {
    /// Connects with `options` and waits for the broker's CONNACK. `Err` is the error that
    /// ended the attempt (a TLS alert, a reset connection, a refused CONNECT). Panics if
    /// neither comes within [`MQTT_TIMEOUT`].
    pub async fn connect(options: MqttOptions) -> Result<MqttClient, ConnectionError> {
        let id = options.client_id();
        let (client, mut event_loop) = AsyncClient::new(options, 16);
        let (sender, incoming) = mpsc::channel(256);
        let driver = tokio::spawn(async move {
            loop {
                let item = match event_loop.poll().await {
                    Ok(Event::Incoming(packet)) => Ok(packet),
                    Ok(Event::Outgoing(_)) => continue,
                    Err(e) => Err(e),
                };
                let last = item.is_err();
                // A closed receiver means the test dropped the client: stop polling.
                if sender.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        let mut connection = MqttClient {
            id,
            client,
            incoming,
            received: VecDeque::new(),
            driver,
        };
        match connection.next_incoming("CONNACK").await {
            Ok(Packet::ConnAck(_)) => Ok(connection),
            Ok(other) => panic!("{}: expected CONNACK, got {other:?}", connection.id),
            Err(e) => Err(e),
        }
    }

    /// Connects with `options`, panicking with the error if the broker refuses.
    pub async fn connect_ok(options: MqttOptions) -> MqttClient {
        let id = options.client_id();
        MqttClient::connect(options)
            .await
            .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rumqttc client, for requests the helpers do not cover (their acknowledgements then
    /// arrive among the packets the helpers skip over).
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The next packet from the broker (panics after [`MQTT_TIMEOUT`]); `what` names what is
    /// awaited, for the message.
    async fn next_incoming(&mut self, what: &str) -> Incoming {
        match tokio::time::timeout(MQTT_TIMEOUT, self.incoming.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => panic!("{}: the connection task ended while waiting for {what}", self.id),
            Err(_) => panic!("{}: no {what} within {MQTT_TIMEOUT:?}", self.id),
        }
    }

    /// The next packet that is not a message, keeping messages for later; panics when the
    /// connection ends.
    async fn next_control(&mut self, what: &str) -> Packet {
        loop {
            match self.next_incoming(what).await {
                Ok(Packet::Publish(message)) => self.received.push_back(message),
                Ok(packet) => return packet,
                Err(e) => panic!("{}: connection lost while waiting for {what}: {e}", self.id),
            }
        }
    }

    /// Subscribes to `filter` at QoS 1 and returns the broker's answer from the SUBACK:
    /// `Success(qos)` or `Failure` (0x80). Mosquitto 2.0 does not check subscriptions against its
    /// `acl_file` and grants any filter; its ACL acts on each message it would deliver.
    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot request a subscription: {e}", self.id));
        loop {
            if let Packet::SubAck(ack) = self.next_control("SUBACK").await {
                assert_eq!(
                    ack.return_codes.len(),
                    1,
                    "{}: one filter, one return code",
                    self.id
                );
                return ack.return_codes[0];
            }
        }
    }

    /// Subscribes to `filter` and panics unless the broker grants it.
    pub async fn subscribe_ok(&mut self, filter: &str) {
        let code = self.subscribe(filter).await;
        assert!(
            matches!(code, SubscribeReasonCode::Success(_)),
            "{}: subscription to {filter} refused: {code:?}",
            self.id
        );
    }

    /// Publishes `payload` on `topic` at QoS 1 (not retained) and waits for the PUBACK.
    /// Mosquitto routes a message to its subscribers before it acknowledges it, so once this
    /// returns, every subscriber's queue holds it (unless the ACL dropped it: under MQTT 3.1.1
    /// a denied publish is acknowledged all the same).
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_with(topic, payload, false).await;
    }

    /// [`MqttClient::publish`] with the retain flag set.
    pub async fn publish_retained(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_with(topic, payload, true).await;
    }

    async fn publish_with(&mut self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .unwrap_or_else(|e| panic!("{}: cannot request a publish on {topic}: {e}", self.id));
        loop {
            if let Packet::PubAck(_) = self.next_control("PUBACK").await {
                return;
            }
        }
    }

    /// The next message received (panics after [`MQTT_TIMEOUT`] or when the connection ends).
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            if let Some(message) = self.received.pop_front() {
                return message;
            }
            match self.next_incoming("a message").await {
                Ok(Packet::Publish(message)) => return message,
                Ok(_) => continue,
                Err(e) => panic!("{}: connection lost while waiting for a message: {e}", self.id),
            }
        }
    }

    /// Waits for the connection to end and returns why, skipping whatever arrives meanwhile
    /// (panics after [`MQTT_TIMEOUT`]): for tests where the broker must drop a client.
    pub async fn closed(&mut self) -> ConnectionError {
        loop {
            if let Err(e) = self.next_incoming("the connection to close").await {
                return e;
            }
        }
    }

    /// Every message received up to and including the first one on `topic`, in order — the
    /// sentinel technique: publish a probe that must not arrive, then a sentinel on `topic`
    /// through the same connection; the broker keeps one publisher's order, so once the
    /// sentinel is here, a delivered probe would be here too.
    pub async fn receive_until(&mut self, topic: &str) -> Vec<Publish> {
        let mut messages = Vec::new();
        loop {
            let message = self.next_publish().await;
            let done = message.topic == topic;
            messages.push(message);
            if done {
                return messages;
            }
        }
    }

    /// Sends DISCONNECT (so the broker discards the Last Will) and waits until the broker has
    /// closed the connection.
    pub async fn disconnect(mut self) {
        self.client
            .disconnect()
            .await
            .unwrap_or_else(|e| panic!("{}: cannot request a disconnect: {e}", self.id));
        // The event loop ends with an error (or the task ends) once the connection is gone.
        loop {
            match tokio::time::timeout(MQTT_TIMEOUT, self.incoming.recv()).await {
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return,
                Err(_) => panic!("{}: still connected {MQTT_TIMEOUT:?} after DISCONNECT", self.id),
            }
        }
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        // Aborting drops the event loop and with it the socket.
        self.driver.abort();
    }
}

/// Self-tests of the harness: what the sync tests rely on beyond the ACL (tests/tests/mqtt_acl.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDir;

    #[test]
    fn the_acl_is_the_one_of_the_design() {
        let text = acl_text(&[AclDevice::new("acme.s0001.pos01", "acme", "s0001")]);
        let rules: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            rules,
            [
                "pattern write sa/v1/device/%u/up/+",
                "pattern write sa/v1/device/%u/presence",
                "pattern read sa/v1/device/%u/down/+",
                "user cloud",
                "topic readwrite sa/v1/#",
                "user acme.s0001.pos01",
                "topic read sa/v1/store/acme/s0001/+",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_durable_session_survives_a_clean_restart_on_the_same_port() {
        if !mosquitto_or_skip("a_durable_session_survives_a_clean_restart_on_the_same_port") {
            return;
        }
        let dir = TestDir::new();
        let pki = Pki::generate(dir.path());
        let devices = [AclDevice::new("acme.s1.pos01", "acme", "s1")];
        let mut broker = Mosquitto::start(dir.path(), &pki, &devices);
        let port = broker.port();
        let durable = || {
            let mut options = tls_options("acme.s1.pos01", port, pki.ca_file(), &pki.client("acme.s1.pos01"));
            options.set_clean_session(false);
            options
        };
        let mut device = MqttClient::connect_ok(durable()).await;
        device.subscribe_ok("sa/v1/store/acme/s1/+").await;
        device.disconnect().await;

        // Queued for the offline session, saved by the clean stop, back after the restart.
        let mut cloud = MqttClient::connect_ok(broker.client_options(&pki, CLOUD_USER)).await;
        cloud
            .publish("sa/v1/store/acme/s1/products", "while offline")
            .await;
        drop(cloud);
        assert!(broker.stop().success(), "{}", broker.log_tail(20));
        assert!(!broker.is_running());
        broker.start_again();
        assert_eq!(broker.port(), port);

        let mut device = MqttClient::connect_ok(durable()).await;
        let message = device.next_publish().await;
        assert_eq!(message.topic, "sa/v1/store/acme/s1/products");
        assert_eq!(message.payload.as_ref(), b"while offline");

        // A broker killed with SIGKILL starts again too (with what it saved last).
        drop(device);
        broker.kill9();
        assert!(broker.pid().is_none());
        broker.start_again();
        MqttClient::connect_ok(broker.client_options(&pki, CLOUD_USER)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_plain_broker_takes_anonymous_clients() {
        if !mosquitto_or_skip("a_plain_broker_takes_anonymous_clients") {
            return;
        }
        let dir = TestDir::new();
        let broker = Mosquitto::start_plain(dir.path());
        let mut subscriber = MqttClient::connect_ok(broker.plain_options("bench-sub")).await;
        subscriber.subscribe_ok("bench/#").await;
        let mut publisher = MqttClient::connect_ok(broker.plain_options("bench-pub")).await;
        // A message of the protocol's largest size passes the broker's packet limit.
        let topic = "bench/large";
        let payload = vec![b'x'; MAX_MESSAGE_BYTES - topic.len()];
        publisher.publish(topic, payload.clone()).await;
        let message = subscriber.next_publish().await;
        assert_eq!(message.payload.as_ref(), payload.as_slice());

        // A larger one costs the sender its connection and reaches no one.
        let mut options = broker.plain_options("oversize");
        options.set_max_packet_size(2 * BROKER_MAX_PACKET_BYTES, 2 * BROKER_MAX_PACKET_BYTES);
        let mut oversize = MqttClient::connect_ok(options).await;
        oversize
            .client()
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                vec![b'x'; BROKER_MAX_PACKET_BYTES],
            )
            .await
            .expect("the request is queued");
        oversize.closed().await;
        publisher.publish("bench/sentinel", "sentinel").await;
        let received = subscriber.receive_until("bench/sentinel").await;
        assert_eq!(received.len(), 1, "the oversized message was delivered");
    }
}
