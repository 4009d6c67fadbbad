//! Doctor's checks against files made here: certificates from rcgen with chosen dates
//! and names, keys with chosen modes, databases, devices, spool folders, listeners.
//! The end-to-end test (tests/tests/doctor.rs) runs the binary against Mosquitto.

use super::*;
use crate::store::{KeyedHasher, Store, StoreOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::net::TcpListener;
use time::OffsetDateTime;

const KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A valid configuration with the database in this folder, plus `extra`.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[store]\ntenant_id = \"t1\"\nstore_id = \"s1\"\ndevice_id = \"dev-1\"\n\
             [database]\npath = {:?}\n[loyalty]\nhash_key = \"{KEY}\"\n{extra}",
            self.path("store.db")
        );
        self.write("config.toml", &text)
    }

    fn options(&self, config: &Path) -> Options {
        Options {
            config: config.to_owned(),
            env_file: self.path("no-secrets.env"),
            now: SystemTime::now(),
            timeout: Duration::from_secs(2),
            ask_timedatectl: false,
        }
    }
}

fn run_on(files: &Files, config: &Path) -> Report {
    run(&files.options(config))
}

/// The findings of one area.
fn area<'a>(report: &'a Report, area: &str) -> Vec<&'a Finding> {
    report.checks.iter().filter(|f| f.area == area).collect()
}

/// The one finding of `area` whose message contains `needle`; panics with the report.
fn find<'a>(report: &'a Report, area: &str, needle: &str) -> &'a Finding {
    report
        .checks
        .iter()
        .find(|f| f.area == area && f.message.contains(needle))
        .unwrap_or_else(|| panic!("no {area} finding with {needle:?} in:\n{}", report.render()))
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf for `cn` valid from `from_days` to `to_days` around now: (cert PEM, key PEM).
fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, from_days: i64, to_days: i64) -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let now = OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A configuration whose broker is a closed port and whose TLS files are these.
fn tls_config(files: &Files, ca: &str, cert: &str, key: &str, key_mode: u32) -> PathBuf {
    let ca = files.write("ca.pem", ca);
    let cert = files.write("device.pem", cert);
    let key = files.write("device.key", key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(key_mode)).unwrap();
    let port = closed_port();
    files.config(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\n"
    ))
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_missing_configuration_fails_and_nothing_else_is_checked() {
    let files = Files::new();
    let report = run_on(&files, &files.path("absent.toml"));
    assert!(!report.ok);
    assert_eq!(report.failures, 1, "{}", report.render());
    let f = find(&report, "config", "cannot read");
    assert_eq!(f.level, Level::Fail);
    assert!(area(&report, "database").is_empty(), "{}", report.render());
}

#[test]
fn every_configuration_problem_is_a_failure_with_its_line() {
    let files = Files::new();
    let config = files.write(
        "config.toml",
        "[store]\ntenant_id = \"t1\"\nstore_id = \"s1\"\ndevice_id = \"dev 1\"\n[database]\npath = \"x.db\"\n\
         read_connections = 0\n",
    );
    let report = run_on(&files, &config);
    let fails: Vec<_> = area(&report, "config")
        .into_iter()
        .filter(|f| f.level == Level::Fail)
        .collect();
    assert!(fails.len() >= 3, "{}", report.render());
    assert!(
        fails
            .iter()
            .any(|f| f.message.contains("line 4: store.device_id")),
        "{}",
        report.render()
    );
    let key = find(&report, "config", "loyalty.hash_key");
    assert!(
        key.fix
            .as_deref()
            .unwrap()
            .contains("STORE_AGENT_LOYALTY_HASH_KEY="),
        "{key:?}"
    );
    assert_eq!(
        report.render().lines().last(),
        Some(format!("{} problems to fix, 0 warnings.", report.failures).as_str())
    );
}

#[test]
fn the_service_environment_file_supplies_the_secrets() {
    let files = Files::new();
    let config = files.write(
        "config.toml",
        &format!(
            "[store]\ntenant_id = \"t1\"\nstore_id = \"s1\"\ndevice_id = \"dev-1\"\n[database]\npath = {:?}\n",
            files.path("store.db")
        ),
    );
    let mut options = files.options(&config);
    assert!(!run(&options).ok, "without the key the file is incomplete");
    options.env_file = files.write(
        "secrets.env",
        &format!("# secrets\nSTORE_AGENT_LOYALTY_HASH_KEY=\"{KEY}\"\n"),
    );
    let report = run(&options);
    find(&report, "config", "is valid");
    find(&report, "config", "read the service's secrets");
}

#[test]
fn env_files_are_read_as_systemd_reads_them() {
    let vars = parse_env_file("# c\n; c\n\nA=1\nexport B = 'two words'\nC=\"x=y\"\nbroken\n");
    assert_eq!(vars.get("A").map(String::as_str), Some("1"));
    assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
    assert_eq!(vars.get("C").map(String::as_str), Some("x=y"));
    assert_eq!(vars.len(), 3);
}

#[test]
fn a_clock_before_the_floor_fails() {
    let files = Files::new();
    let config = files.config("");
    let mut options = files.options(&config);
    options.now = UNIX_EPOCH + Duration::from_secs(1_600_000_000); // 2020
    let report = run(&options);
    let f = find(&report, "clock", "2020-09-13");
    assert_eq!(f.level, Level::Fail);
    assert!(f.fix.as_deref().unwrap().contains("timedatectl set-ntp true"));
    options.now = SystemTime::now();
    assert_eq!(area(&run(&options), "clock")[0].level, Level::Ok);
}

#[test]
fn a_missing_database_warns_and_a_sound_one_is_reported() {
    let files = Files::new();
    let config = files.config("");
    let report = run_on(&files, &config);
    assert_eq!(find(&report, "database", "does not exist yet").level, Level::Warn);
    assert!(report.ok, "a warning is not a failure:\n{}", report.render());
    let disk = area(&report, "disk");
    assert_eq!(disk.len(), 1, "{}", report.render());
    assert!(disk[0].message.contains("MiB free of"), "{:?}", disk[0]);

    let hasher = KeyedHasher::new(&[7; 32]).unwrap();
    Store::open(StoreOptions::new(files.path("store.db"), hasher))
        .unwrap()
        .close();
    let report = run_on(&files, &config);
    let f = find(&report, "database", "is sound");
    assert_eq!(f.level, Level::Ok);
    assert!(
        f.message
            .contains(&format!("schema {}", store::schema::latest_version())),
        "{f:?}"
    );
}

#[test]
fn a_file_that_is_not_a_database_fails() {
    let files = Files::new();
    let config = files.config("");
    files.write("store.db", &"this is not SQLite\n".repeat(500));
    let report = run_on(&files, &config);
    let fails: Vec<_> = area(&report, "database")
        .into_iter()
        .filter(|f| f.level == Level::Fail)
        .collect();
    assert_eq!(fails.len(), 1, "{}", report.render());
    assert!(!report.ok);
}

#[test]
fn a_database_from_a_newer_release_fails() {
    let files = Files::new();
    let config = files.config("");
    let hasher = KeyedHasher::new(&[7; 32]).unwrap();
    Store::open(StoreOptions::new(files.path("store.db"), hasher))
        .unwrap()
        .close();
    let conn = rusqlite::Connection::open(files.path("store.db")).unwrap();
    conn.pragma_update(None, "user_version", store::schema::latest_version() + 1)
        .unwrap();
    drop(conn);
    let report = run_on(&files, &config);
    assert_eq!(find(&report, "database", "newer store-agent").level, Level::Fail);
}

#[test]
fn good_certificates_pass() {
    let files = Files::new();
    let (ca_pem, ca) = new_ca("Store CA");
    let (cert, key) = leaf(&ca, "dev-1", -1, 365);
    let config = tls_config(&files, &ca_pem, &cert, &key, 0o600);
    let report = run_on(&files, &config);
    let certs = area(&report, "certificate");
    assert!(certs.iter().all(|f| f.level == Level::Ok), "{}", report.render());
    find(&report, "certificate", "device certificate");
    find(&report, "certificate", "CA certificate");
    find(&report, "certificate", "is private (mode 0600)");
    // The broker is a closed port: that is the one failure.
    assert_eq!(find(&report, "broker", "refuses connections").level, Level::Fail);
    assert_eq!(report.failures, 1, "{}", report.render());
}

#[test]
fn an_expired_certificate_and_a_readable_key_fail_with_the_fix() {
    let files = Files::new();
    let (ca_pem, ca) = new_ca("Store CA");
    let (cert, key) = leaf(&ca, "dev-1", -400, -5);
    let config = tls_config(&files, &ca_pem, &cert, &key, 0o644);
    let report = run_on(&files, &config);
    let expired = find(&report, "certificate", "expired on");
    assert_eq!(expired.level, Level::Fail);
    assert!(expired.fix.as_deref().unwrap().contains("renew"));
    let key = find(&report, "certificate", "can be read by every user (mode 0644)");
    assert_eq!(key.level, Level::Fail);
    assert!(key.fix.as_deref().unwrap().contains("chmod 600"), "{key:?}");
    // With the files broken, the broker is only reached over TCP (here: refused).
    find(&report, "broker", "refuses connections");
}

#[test]
fn a_certificate_near_its_end_or_not_yet_valid() {
    let files = Files::new();
    let (ca_pem, ca) = new_ca("Store CA");
    let (cert, key) = leaf(&ca, "dev-1", -300, 10);
    let config = tls_config(&files, &ca_pem, &cert, &key, 0o600);
    let report = run_on(&files, &config);
    let soon = find(&report, "certificate", "expires on");
    assert_eq!(soon.level, Level::Warn);
    assert!(
        soon.message.contains("(in 9 days)") || soon.message.contains("(in 10 days)"),
        "{soon:?}"
    );

    let (cert, key) = leaf(&ca, "dev-1", 3, 300);
    let config = tls_config(&files, &ca_pem, &cert, &key, 0o600);
    let report = run_on(&files, &config);
    assert_eq!(
        find(&report, "certificate", "is not valid before").level,
        Level::Fail
    );
}

#[test]
fn the_common_name_must_be_the_client_id_and_the_ca_must_sign() {
    let files = Files::new();
    let (ca_pem, ca) = new_ca("Store CA");
    let (other_pem, other) = new_ca("Other CA");
    let _ = other_pem;
    let (cert, key) = leaf(&other, "dev-2", -1, 365);
    let config = tls_config(&files, &ca_pem, &cert, &key, 0o600);
    let report = run_on(&files, &config);
    let cn = find(
        &report,
        "certificate",
        "its common name is \"dev-2\", but the MQTT client id is \"dev-1\"",
    );
    assert_eq!(cn.level, Level::Fail);
    assert_eq!(
        find(&report, "certificate", "is not signed by a CA in").level,
        Level::Warn
    );

    let (cert, _) = leaf(&ca, "dev-1", -1, 365);
    let (_, wrong_key) = leaf(&ca, "dev-1", -1, 365);
    let config = tls_config(&files, &ca_pem, &cert, &wrong_key, 0o600);
    let report = run_on(&files, &config);
    assert_eq!(find(&report, "certificate", "does not match").level, Level::Fail);
}

#[test]
fn a_certificate_file_that_is_not_pem_fails() {
    let files = Files::new();
    let (ca_pem, ca) = new_ca("Store CA");
    let (_, key) = leaf(&ca, "dev-1", -1, 365);
    let config = tls_config(&files, &ca_pem, "hello\n", &key, 0o600);
    let report = run_on(&files, &config);
    let f = find(&report, "certificate", "device certificate");
    assert_eq!(f.level, Level::Fail);
    assert!(f.fix.as_deref().unwrap().contains("PEM"), "{f:?}");
}

#[test]
fn a_plain_broker_that_listens_passes_and_plaintext_is_a_warning() {
    let files = Files::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = files.config(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nallow_plaintext = true\n"
    ));
    let report = run_on(&files, &config);
    assert_eq!(
        find(&report, "broker", "accepts TCP connections (plain MQTT)").level,
        Level::Ok
    );
    assert_eq!(area(&report, "tls")[0].level, Level::Warn);
    drop(listener);
    let report = run_on(&files, &config);
    assert_eq!(find(&report, "broker", "refuses connections").level, Level::Fail);
}

#[test]
fn devices_missing_not_devices_and_usable() {
    let files = Files::new();
    let not_device = files.write("plain-file", "");
    let config = files.config(&format!(
        "[[devices.scanners.serial]]\ndevice_id = \"gone\"\npath = {:?}\n\
         [[devices.scanners.serial]]\ndevice_id = \"file\"\npath = {not_device:?}\n\
         [[devices.card_readers.serial]]\ndevice_id = \"null\"\npath = \"/dev/null\"\n",
        files.path("ttyUSB9")
    ));
    let report = run_on(&files, &config);
    let gone = find(&report, "device", "gone:");
    assert_eq!(gone.level, Level::Warn);
    assert!(gone.fix.as_deref().unwrap().contains("udev"), "{gone:?}");
    assert_eq!(find(&report, "device", "file:").level, Level::Fail);
    // /dev/null is a character device everyone may read and write.
    assert_eq!(find(&report, "device", "null: /dev/null").level, Level::Ok);
}

#[test]
fn the_spool_folder_and_its_rejected_files() {
    let files = Files::new();
    let spool = files.path("spool");
    let config = files.config(&format!("[spool]\npath = {spool:?}\n"));
    let report = run_on(&files, &config);
    let missing = find(&report, "spool", "spool");
    assert_eq!(missing.level, Level::Fail);
    assert!(
        missing.fix.as_deref().unwrap().contains("mkdir -p"),
        "{missing:?}"
    );

    std::fs::create_dir_all(spool.join("rejected")).unwrap();
    assert_eq!(area(&run_on(&files, &config), "spool")[0].level, Level::Ok);
    std::fs::write(spool.join("rejected/a.xml"), "x").unwrap();
    std::fs::write(spool.join("rejected/a.xml.reason"), "line 1: not POSLog").unwrap();
    std::fs::write(spool.join("rejected/b.xml"), "x").unwrap();
    std::fs::write(spool.join("rejected/b.xml.reason"), "line 1: not POSLog").unwrap();
    let report = run_on(&files, &config);
    assert_eq!(find(&report, "spool", "2 POS files wait").level, Level::Warn);
}

/// Answers one HTTP request on a free port with `status_line`; returns the port.
fn one_answer(status_line: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(format!("{status_line}\r\ncontent-length: 0\r\n\r\n").as_bytes());
        }
    });
    port
}

#[test]
fn the_running_agent_is_asked_on_its_http_address() {
    let files = Files::new();
    let port = one_answer("HTTP/1.1 200 OK");
    let report = run_on(
        &files,
        &files.config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")),
    );
    assert_eq!(find(&report, "agent", "runs and is ready").level, Level::Ok);

    let port = one_answer("HTTP/1.1 503 Service Unavailable");
    let report = run_on(
        &files,
        &files.config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")),
    );
    assert_eq!(find(&report, "agent", "answered 503").level, Level::Warn);

    let port = closed_port();
    let report = run_on(
        &files,
        &files.config(&format!("[http]\nlisten = \"0.0.0.0:{port}\"\n")),
    );
    assert_eq!(find(&report, "agent", "not running").level, Level::Warn);
}

#[test]
fn the_json_form_names_levels_and_fixes() {
    let files = Files::new();
    let report = run_on(&files, &files.path("absent.toml"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["failures"], 1);
    assert_eq!(json["checks"][0]["level"], "fail");
    assert_eq!(json["checks"][0]["area"], "config");
    assert!(json["checks"][0]["fix"].is_string());
}
