//! `store-agent doctor` as store IT runs it, against a real Mosquitto with TLS client
//! certificates (tests/src/mqtt.rs): a healthy device passes with exit 0; an expired
//! certificate, a key others can read, a certificate the broker refuses, a CA that did not
//! sign the broker, a broker that is down and a broken configuration each fail with exit 1
//! and a line saying what to fix. The running agent refuses the same faults, and
//! `status` says why.

use std::os::unix::fs::PermissionsExt;
use store_agent_e2e::mqtt::{ClientFiles, Mosquitto, Pki, mosquitto_or_skip};
use store_agent_e2e::rig::{STOP_TIMEOUT, SYNC_TIMEOUT, tls_broker_for, wait_for};
use store_agent_e2e::{DEVICE_ID, RunOutput, TestDir, path_str, toml_string};

/// A device with its database, spool folder and TLS files, and a broker that knows it.
/// Fields drop in order: the broker stops before its directory goes.
struct Device {
    broker: Mosquitto,
    pki: Pki,
    dir: TestDir,
}

impl Device {
    fn start(test: &str) -> Option<Device> {
        Device::start_for(test, &["localhost", "127.0.0.1"])
    }

    /// With a broker whose certificate names only `names`.
    fn start_for(test: &str, names: &[&str]) -> Option<Device> {
        if !mosquitto_or_skip(test) {
            return None;
        }
        let dir = TestDir::new();
        let (pki, broker) = tls_broker_for(&dir, names);
        std::fs::create_dir_all(dir.join("spool/rejected")).unwrap();
        let device = Device { broker, pki, dir };
        let files = device.pki.client(DEVICE_ID);
        let ca = device.pki.ca_file().to_owned();
        device.write_config(&ca, &files, device.broker.port());
        device.dir.run_ok(["db", "init", "--config", &device.config()]);
        Some(device)
    }

    fn config(&self) -> String {
        self.dir.path_str("config.toml")
    }

    /// The standard configuration with an `[mqtt]` section using these files and port.
    fn write_config(&self, ca: &std::path::Path, files: &ClientFiles, port: u16) {
        self.write_config_for("localhost", ca, files, port)
    }

    fn write_config_for(&self, host: &str, ca: &std::path::Path, files: &ClientFiles, port: u16) {
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "{}\n[mqtt]\nhost = \"{host}\"\nport = {port}\n\
             boot_delay_max_ms = 0\nbackoff_base_ms = 100\nbackoff_cap_ms = 500\nca_file = {}\ncert_file = {}\nkey_file = {}\n\
             \n[spool]\npath = {}\n",
            self.dir.config_text(),
            toml_string(&path_str(ca)),
            toml_string(&path_str(&files.cert)),
            toml_string(&path_str(&files.key)),
            toml_string(&self.dir.path_str("spool")),
        );
        self.dir.write("config.toml", text);
    }

    fn doctor(&self) -> RunOutput {
        // An empty environment file: the test's secrets are in the configuration itself.
        let env_file = self.dir.write("secrets.env", "");
        self.dir
            .run(["doctor", "--config", &self.config(), "--env-file", &env_file])
    }

    fn doctor_json(&self) -> serde_json::Value {
        let env_file = self.dir.write("secrets.env", "");
        let output = self.dir.run([
            "doctor",
            "--config",
            &self.config(),
            "--env-file",
            &env_file,
            "--json",
        ]);
        serde_json::from_str(&output.stdout)
            .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{output}"))
    }
}

/// The line of `output` that starts with `level` and contains `needle`, and the fix line after it.
fn line_with(output: &RunOutput, level: &str, needle: &str) -> (String, String) {
    let lines: Vec<&str> = output.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(level) && l.contains(needle))
        .unwrap_or_else(|| panic!("no {level} line with {needle:?}:\n{output}"));
    let fix = lines
        .get(i + 1)
        .filter(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or(&"");
    (lines[i].to_owned(), fix.to_string())
}

fn assert_no_panic(output: &RunOutput) {
    assert!(!output.stderr.contains("panicked"), "{output}");
}

#[test]
fn a_healthy_device_passes() {
    let Some(device) = Device::start("doctor: a healthy device passes") else {
        return;
    };
    let output = device.doctor();
    assert_eq!(output.code(), Some(0), "{output}");
    assert!(!output.stdout.contains("FAIL"), "{output}");
    line_with(&output, "OK", "config:");
    line_with(&output, "OK", "database: ");
    line_with(
        &output,
        "OK",
        &format!(
            "device certificate {}",
            path_str(&device.pki.client(DEVICE_ID).cert)
        ),
    );
    line_with(&output, "OK", "completed TLS with this device's certificate");
    line_with(&output, "OK", "spool:");

    let json = device.doctor_json();
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["failures"], 0, "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["area"] == "broker" && c["level"] == "ok"),
        "{json:#}"
    );
}

#[test]
fn an_expired_certificate_and_an_open_key_fail_with_what_to_fix() {
    let Some(device) = Device::start("doctor: an expired certificate fails") else {
        return;
    };
    let expired = device.pki.expired_client(DEVICE_ID, 3);
    device.write_config(device.pki.ca_file(), &expired, device.broker.port());
    std::fs::set_permissions(&expired.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = device.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    assert_no_panic(&output);
    let (_, fix) = line_with(&output, "FAIL", "expired on");
    assert!(fix.contains("renew"), "{output}");
    let (line, fix) = line_with(&output, "FAIL", "can be read by every user (mode 0644)");
    assert!(line.contains(&path_str(&expired.key)), "{output}");
    assert!(
        fix.contains(&format!("chmod 600 {}", path_str(&expired.key))),
        "{output}"
    );
    assert!(
        output.stdout.trim_end().ends_with("warning.") || output.stdout.trim_end().ends_with("warnings.")
    );
}

#[test]
fn the_broker_refusing_the_certificate_is_a_failure() {
    let Some(device) = Device::start("doctor: the broker refuses a foreign certificate") else {
        return;
    };
    // Signed by a CA with the same name the broker does not trust: only the handshake tells.
    let foreign = device.pki.foreign_client(DEVICE_ID);
    device.write_config(device.pki.ca_file(), &foreign, device.broker.port());
    let output = device.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    line_with(&output, "WARN", "is not signed by a CA in");
    let (_, fix) = line_with(&output, "FAIL", "refused this device's certificate");
    assert!(fix.contains("trust the CA"), "{output}");
}

#[test]
fn a_ca_file_that_did_not_sign_the_broker_is_a_failure() {
    let Some(device) = Device::start("doctor: the wrong CA file") else {
        return;
    };
    let files = device.pki.client(DEVICE_ID);
    device.write_config(device.pki.foreign_ca_file(), &files, device.broker.port());
    let output = device.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    let (_, fix) = line_with(
        &output,
        "FAIL",
        "the broker's certificate is not signed by the configured CA",
    );
    assert!(fix.contains("mqtt.ca_file"), "{output}");
}

#[test]
fn a_broker_that_is_down_is_a_failure() {
    let Some(mut device) = Device::start("doctor: the broker is down") else {
        return;
    };
    device.broker.stop();
    let output = device.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    let (line, fix) = line_with(&output, "FAIL", "refuses connections");
    assert!(
        line.contains(&format!("localhost:{}", device.broker.port())),
        "{output}"
    );
    assert!(fix.contains("is the broker running"), "{output}");
    // Everything local is still checked.
    line_with(&output, "OK", "device certificate");
}

#[test]
fn a_broken_configuration_fails_without_a_panic() {
    let dir = TestDir::new();
    let config = dir.write("config.toml", "[store\ntenant_id = 3\n");
    let env_file = dir.write("secrets.env", "");
    let output = dir.run(["doctor", "--config", &config, "--env-file", &env_file]);
    assert_eq!(output.code(), Some(1), "{output}");
    assert_no_panic(&output);
    let (line, fix) = line_with(&output, "FAIL", "config:");
    assert!(line.contains(&config), "{output}");
    assert!(fix.contains("store-agent config check"), "{output}");

    let output = dir.run([
        "doctor",
        "--config",
        &dir.path_str("missing.toml"),
        "--env-file",
        &env_file,
        "--json",
    ]);
    assert_eq!(output.code(), Some(1), "{output}");
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["area"] == "config" && c["level"] == "fail" && c["fix"].is_string()),
        "{json:#}"
    );
}

/// The running agent, not only `doctor`, refuses a broker or a certificate that
/// is wrong, stays offline, and says why in `status` (JSON and text).
fn agent_refuses(device: &Device, why: &[&str]) {
    let agent = device.dir.spawn_ready(&device.config());
    let mut last = serde_json::Value::Null;
    let said = wait_for(SYNC_TIMEOUT, || {
        last = device.dir.status_json(&device.config());
        last["sync"]["last_error"]
            .as_str()
            .is_some_and(|e| why.iter().all(|w| e.contains(w)))
    });
    assert!(
        said,
        "status never said {why:?}: {last:#}\n{}",
        agent.stderr_so_far()
    );
    assert_ne!(last["sync"]["state"], "online", "{last:#}");
    let text = device.dir.run_ok(["status", "--config", &device.config()]);
    assert!(text.stdout.contains(why[0]), "{text}");
    agent.signal(libc::SIGTERM);
    let out = agent.finish(STOP_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_no_panic(&out);
}

#[test]
fn the_running_agent_refuses_bad_tls_and_status_says_why() {
    let Some(device) = Device::start("agent: TLS refusals") else {
        return;
    };
    let port = device.broker.port();
    let good = device.pki.client(DEVICE_ID);
    // The CA file did not sign the broker's certificate.
    device.write_config(device.pki.foreign_ca_file(), &good, port);
    agent_refuses(&device, &["not signed by the configured CA", "mqtt.ca_file"]);
    // This device's certificate expired, or is not valid yet.
    let expired = device.pki.expired_client(DEVICE_ID, 3);
    device.write_config(device.pki.ca_file(), &expired, port);
    agent_refuses(
        &device,
        &["refused this device's certificate", "expired on", "renew it"],
    );
    let future = device.pki.future_client(DEVICE_ID, 10);
    device.write_config(device.pki.ca_file(), &future, port);
    agent_refuses(
        &device,
        &[
            "refused this device's certificate",
            "is not valid before",
            "clock",
        ],
    );
    let output = device.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    line_with(&output, "FAIL", "is not valid before");

    // The broker's certificate is for another name than the one configured.
    let Some(other) = Device::start_for("agent: TLS refusals", &["broker.example"]) else {
        return;
    };
    let files = other.pki.client(DEVICE_ID);
    other.write_config_for("127.0.0.1", other.pki.ca_file(), &files, other.broker.port());
    agent_refuses(&other, &["not for this host name", "mqtt.host \"127.0.0.1\""]);
    let output = other.doctor();
    assert_eq!(output.code(), Some(1), "{output}");
    let (_, fix) = line_with(&output, "FAIL", "not for this host name");
    assert!(fix.contains("mqtt.host"), "{output}");
}
