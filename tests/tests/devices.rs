//! Devices through the whole agent: a card reader and a scanner on real
//! pseudo-terminals, the agent's real device manager, the real store.

use std::io::Write;
use std::time::Duration;
use store_agent_e2e::{Pty, TestDir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_PAN: &str = "4111111111111111";

fn pty() -> Pty {
    Pty::open()
}

/// A test directory with a configuration and a small sample store (seed 1) imported.
fn sample_store() -> (TestDir, String) {
    let dir = TestDir::new();
    let config = dir.write_config();
    let snapshot = dir.path_str("sample.jsonl");
    dir.run_ok([
        "sample-data",
        "--customers",
        "20",
        "--products",
        "10",
        "--seed",
        "1",
        "--out",
        &snapshot,
        "--config",
        &config,
    ]);
    dir.run_ok(["import", &snapshot, "--config", &config]);
    (dir, config)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn swipes_and_scans_reach_the_agent_and_no_pan_is_kept_anywhere() {
    let (dir, config) = sample_store();

    let mut msr = pty();
    let mut scanner = pty();
    let devices = format!(
        "\n[[devices.card_readers.serial]]\ndevice_id = \"msr-1\"\npath = {:?}\n\
         \n[[devices.scanners.serial]]\ndevice_id = \"scanner-1\"\npath = {:?}\n",
        msr.path, scanner.path
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&config).unwrap();
    file.write_all(devices.as_bytes()).unwrap();
    drop(file);

    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "not ready\n{}",
        agent.stderr_so_far()
    );
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |a| a
            .stderr_so_far()
            .matches("Device connected.")
            .count()
            >= 2),
        "both devices should connect\n{}",
        agent.stderr_so_far()
    );

    // A loyalty card swiped (track 2 with the number only) identifies customer 1.
    let card = store_agent::sample::card_number(1, 0);
    msr.master.write_all(format!(";{card}?\r").as_bytes()).unwrap();
    assert!(
        agent.wait_for_stderr("customer_id=C00000001", EVENT_TIMEOUT),
        "the loyalty swipe should identify the customer\n{}",
        agent.stderr_so_far()
    );
    // A product scanned.
    scanner.master.write_all(b"]E04006381333931\r").unwrap();
    assert!(
        agent.wait_for_stderr("gtin14=04006381333931", EVENT_TIMEOUT),
        "the scan should be decoded\n{}",
        agent.stderr_so_far()
    );
    // A payment card swiped at the card reader and its number scanned at the scanner.
    msr.master
        .write_all(format!("%B{TEST_PAN}^TEST/VISA^2812201?;{TEST_PAN}=2812201?\r").as_bytes())
        .unwrap();
    scanner
        .master
        .write_all(format!("{TEST_PAN}\r").as_bytes())
        .unwrap();
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |a| {
            a.stderr_so_far().matches("Payment card presented").count() >= 2
        }),
        "both payment-card reads should be rejected\n{}",
        agent.stderr_so_far()
    );

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");

    let logs = output.all_output();
    for secret in [TEST_PAN, "TEST/VISA", card.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the logs\n{logs}");
        for file in [dir.database(), dir.wal()] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(!contains(&bytes, secret), "{secret} in {}", file.display());
            }
        }
    }
    // The agent recorded the devices' state for `status`.
    let status = dir.status_json(&config);
    let devices = status["devices"].as_array().unwrap();
    assert!(devices.iter().any(|d| d["device_id"] == "msr-1"), "{status}");
    // Each read became a scan event for the cloud (kinds and ids only: the PAN and the
    // card number were checked absent from the database above).
    let scan_events = status["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "scan_events")
        .map(|s| s["depth"].clone());
    assert_eq!(scan_events, Some(serde_json::json!(4)), "{status}");
}

/// Reads what has arrived on a pty's master side until `done` says enough.
fn read_until(master: &mut std::fs::File, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: switching a descriptor we own to non-blocking mode.
    unsafe {
        let fd = master.as_raw_fd();
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline && !done(&got) {
        match master.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    got
}

#[test]
fn the_customer_display_shows_the_scanned_item_and_greets_by_first_name() {
    let (dir, config) = sample_store();
    let gtin = store_agent::sample::product_gtin(1, 0);
    let (name, price_minor, first_name): (String, i64, String) = {
        let conn = store_agent::store::open_read_only(&dir.database()).unwrap();
        let gtin14 = format!("{gtin:0>14}");
        let (name, price) = conn
            .query_row(
                "SELECT name, price_minor FROM products WHERE gtin = ?1",
                [&gtin14],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let first = conn
            .query_row(
                "SELECT first_name FROM customers WHERE customer_id = 'C00000001'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (name, price, first)
    };

    let mut msr = pty();
    let mut scanner = pty();
    let mut display = pty();
    let devices = format!(
        "\n[[devices.card_readers.serial]]\ndevice_id = \"msr-1\"\npath = {:?}\n\
         \n[[devices.scanners.serial]]\ndevice_id = \"scanner-1\"\npath = {:?}\n\
         \n[[devices.displays]]\nprotocol = \"cd5220\"\n[devices.displays.port]\ndevice_id = \"pole\"\npath = {:?}\n",
        msr.path, scanner.path, display.path
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&config).unwrap();
    file.write_all(devices.as_bytes()).unwrap();
    drop(file);

    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |a| a
            .stderr_so_far()
            .matches("Device connected.")
            .count()
            >= 2),
        "{}",
        agent.stderr_so_far()
    );

    scanner.master.write_all(format!("{gtin}\r").as_bytes()).unwrap();
    let price = format!("{}.{:02} EUR", price_minor / 100, price_minor % 100);
    let shown = read_until(&mut display.master, EVENT_TIMEOUT, |b| contains(b, &price));
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(
        shown.first(),
        Some(&0x0C),
        "CD5220 starts by clearing the display: {text:?}"
    );
    assert!(
        contains(&shown, &price),
        "price on the display: {text:?}\n{}",
        agent.stderr_so_far()
    );
    let name20: String = name.chars().take(20).collect();
    assert!(text.contains(&name20) || !name20.is_ascii(), "{text:?}");

    let card = store_agent::sample::card_number(1, 0);
    msr.master.write_all(format!(";{card}?\r").as_bytes()).unwrap();
    let shown = read_until(&mut display.master, EVENT_TIMEOUT, |b| {
        contains(b, "Welcome back")
    });
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("Welcome back"), "{text:?}");
    if first_name.is_ascii() {
        assert!(text.contains(&format!("{first_name}!")), "{text:?}");
    }
    assert!(!text.contains(&card), "no card number on the display");

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
}
