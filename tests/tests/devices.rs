//! Devices through the whole agent: a card reader and a scanner on real
//! pseudo-terminals, the agent's real device manager, the real store.

use std::io::Write;
use std::time::Duration;
use store_agent_e2e::http::{request, sign_in, staff_call};
use store_agent_e2e::{Pty, TestDir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_PAN: &str = "4111111111111111";

fn pty() -> Pty {
    Pty::open()
}

/// A test directory with a configuration and a small sample store (seed 1) imported,
/// and the sample's summary (cards, PINs).
fn sample_store() -> (TestDir, String, serde_json::Value) {
    let dir = TestDir::new();
    let config = dir.write_config();
    let snapshot = dir.path_str("sample.jsonl");
    let out = dir.run_ok([
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
    let summary = serde_json::from_str(&out.stdout).expect("sample-data prints its summary");
    (dir, config, summary)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A card sale in POSLog, numbered `seq`, paid with `pan` (an ARTS card tender) by
/// the holder of loyalty card `loyalty`.
fn card_sale(seq: u32, pan: &str, loyalty: &str) -> String {
    store_agent_e2e::poslog_sale(seq)
        .replace(
            r#"<Tender TenderType="Cash"><Amount>2.50</Amount></Tender>"#,
            &format!(
                r#"<Tender TenderType="CreditDebit"><Amount>2.50</Amount><CreditDebit CardType="Credit"><PrimaryAccountNumber>{pan}</PrimaryAccountNumber></CreditDebit></Tender>"#
            ),
        )
        .replace(
            "<Total ",
            &format!("<LoyaltyAccount><CustomerID>{loyalty}</CustomerID></LoyaltyAccount>\n      <Total "),
        )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Test card numbers and the sample's loyalty cards through every input path the
/// agent has — serial card reader and scanner, a network scanner, POS transactions
/// over HTTP and in the spool folder (good and refused), scans injected on both
/// screens, a console search — and then no card number and no raw loyalty number
/// in the database, its WAL, any file the agent wrote (spool folders included) or
/// the logs. (The ESC/POS journal tap has the same search in tests/tests/journal.rs.)
#[test]
fn card_numbers_through_every_input_path_are_kept_nowhere() {
    const SECOND_PAN: &str = "5500000000000004";
    const THIRD_PAN: &str = "378282246310005";
    let (dir, config, summary) = sample_store();
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let network_scanner = std::net::TcpListener::bind("127.0.0.1:0").unwrap();

    let mut msr = pty();
    let mut scanner = pty();
    let devices = format!(
        "\n[http]\nlisten = \"127.0.0.1:0\"\n\n[screens]\nscan_injection = true\n\
         \n[spool]\npath = {:?}\nrescan_ms = 200\n\
         \n[[devices.card_readers.serial]]\ndevice_id = \"msr-1\"\npath = {:?}\n\
         \n[[devices.scanners.serial]]\ndevice_id = \"scanner-1\"\npath = {:?}\n\
         \n[[devices.scanners.tcp]]\ndevice_id = \"dock-1\"\naddress = \"{}\"\n",
        spool.display().to_string(),
        msr.path,
        scanner.path,
        network_scanner.local_addr().unwrap()
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
    let card2 = store_agent::sample::card_number(1, 1);
    let card3 = store_agent::sample::card_number(1, 2);
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
    // The network scanner: a card number, a loyalty card, a card number with spaces.
    let (mut dock, _) = network_scanner.accept().unwrap();
    dock.write_all(format!("{SECOND_PAN}\r\n{card2}\r\n3782 822463 10005\r\n").as_bytes())
        .unwrap();
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |a| {
            a.stderr_so_far().matches("Payment card presented").count() >= 4
        }),
        "the four payment-card reads should be rejected\n{}",
        agent.stderr_so_far()
    );

    // POS transactions with card tenders and loyalty cards: over HTTP, in the spool
    // folder, and one of each refused (its sequence number quotes a card number).
    let addr = agent.http_addr();
    let post = |body: &str| {
        request(
            &addr,
            "POST",
            "/api/v1/pos/transactions",
            &[("Content-Type", "application/xml")],
            body.as_bytes(),
        )
    };
    let recorded = post(&card_sale(801, SECOND_PAN, &card2));
    assert_eq!(recorded.status, 201, "{}", recorded.body);
    let refused = post(&card_sale(802, TEST_PAN, &card3).replace(">802<", &format!(">{TEST_PAN}x<")));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(!refused.body.contains(TEST_PAN), "{}", refused.body);
    std::fs::write(spool.join("tx-803.xml"), card_sale(803, THIRD_PAN, &card3)).unwrap();
    std::fs::write(
        spool.join("tx-804.xml"),
        card_sale(804, THIRD_PAN, &card3).replace(">804<", &format!(">{THIRD_PAN}x<")),
    )
    .unwrap();
    let (processed, rejected) = (
        spool.join("processed/tx-803.xml"),
        spool.join("rejected/tx-804.xml"),
    );
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |_| processed.exists() && rejected.exists()),
        "the spool files should be taken\n{}",
        agent.stderr_so_far()
    );

    // Scans injected on the screens, and a search at the console, by an associate.
    let associate = &summary["associates"][0];
    let staff = sign_in(
        &addr,
        associate["associate_id"].as_str().unwrap(),
        associate["pin"].as_str().unwrap(),
    )
    .expect("the associate signs in");
    for (screen, data) in [
        ("console", TEST_PAN),
        ("kiosk", SECOND_PAN),
        ("kiosk", card3.as_str()),
    ] {
        let body = serde_json::json!({ "screen": screen, "data": data });
        let res = staff_call(&addr, &staff, "POST", "/api/v1/scans", &body).unwrap();
        assert!(res.status < 300, "{screen} {data}: {} {}", res.status, res.body);
        assert!(
            !res.body.contains(TEST_PAN) && !res.body.contains(SECOND_PAN),
            "{}",
            res.body
        );
    }
    for q in [TEST_PAN, card.as_str()] {
        let path = format!("/api/v1/customers?q={q}");
        let res = staff_call(&addr, &staff, "GET", &path, &serde_json::Value::Null).unwrap();
        assert!(res.status < 500, "{q}: {}", res.status);
    }

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");

    let secrets = [
        TEST_PAN,
        SECOND_PAN,
        THIRD_PAN,
        "3782 822463 10005",
        "TEST/VISA",
        card.as_str(),
        card2.as_str(),
        card3.as_str(),
    ];
    let logs = output.all_output();
    // Everything the agent wrote: the database and its WAL, the spool folders with
    // the masked files and reasons. The sample snapshot and the configuration are
    // the test's own input.
    let written: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| !p.ends_with("sample.jsonl") && p.as_os_str() != config.as_str())
        .collect();
    assert!(
        written.contains(&processed) && written.contains(&rejected),
        "{written:?}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} in the logs\n{logs}");
        for file in &written {
            let bytes = std::fs::read(file).unwrap();
            assert!(!contains(&bytes, secret), "{secret} in {}", file.display());
        }
    }
    // What was masked is still there for a person: the masked card, the item id.
    let kept = std::fs::read_to_string(&processed).unwrap();
    assert!(
        kept.contains("***********0005") && kept.contains("4006381333931"),
        "{kept}"
    );

    let status = dir.status_json(&config);
    let devices = status["devices"].as_array().unwrap();
    assert!(devices.iter().any(|d| d["device_id"] == "msr-1"), "{status}");
    assert!(devices.iter().any(|d| d["device_id"] == "dock-1"), "{status}");
    assert_eq!(status["counts"]["pos_transactions"], 2, "{status}");
    // Every read became a scan event for the cloud (kinds and ids only: the card
    // numbers were checked absent from the database above).
    let depth = |stream: &str| {
        status["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == stream)
            .map(|s| s["depth"].clone())
    };
    let payloads: Vec<String> = {
        let conn = store_agent::store::open_read_only(&dir.database()).unwrap();
        let mut stmt = conn
            .prepare("SELECT payload FROM outbox WHERE stream = 'scan_events' ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    // 4 serial reads, 3 network scans, 3 injected (answered before the stop, so
    // handled before the agent exits).
    assert_eq!(depth("scan_events"), Some(serde_json::json!(10)), "{payloads:#?}");
    assert_eq!(depth("pos_transactions"), Some(serde_json::json!(2)), "{status}");
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
    let (dir, config, _) = sample_store();
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
