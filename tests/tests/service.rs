//! The agent as a systemd service (`systemd/store-agent.service`, `Type=notify`):
//! what it tells the service manager, and how it stops on SIGTERM.
//!
//! The service manager is played by a datagram socket the test binds and passes in
//! `NOTIFY_SOCKET`, as systemd does; the stop test runs against a real Mosquitto over
//! TLS with the reference cloud subscribed to the presence topic.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store_agent_e2e::http::request;
use store_agent_e2e::mqtt::{CLOUD_USER, MqttClient};
use store_agent_e2e::rig::{READY_TIMEOUT, Rig, STOP_TIMEOUT, SYNC_TIMEOUT, wait_for};
use store_agent_e2e::{DEVICE_ID, TestDir, poslog_sale};

/// What the issue and the unit promise: SIGTERM to exit 0 within 5 seconds
/// (`TimeoutStopSec=` in the unit is longer, so systemd never needs SIGKILL).
const STOP_PROMISE: Duration = Duration::from_secs(5);

/// Collects the notifications sent to a socket, in a thread.
struct ServiceManager {
    messages: Arc<Mutex<Vec<String>>>,
    path: std::path::PathBuf,
}

impl ServiceManager {
    fn listen(dir: &TestDir) -> ServiceManager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test (and with it the process) ends.
            loop {
                if let Ok(n) = socket.recv(&mut buf) {
                    sink.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        ServiceManager { messages, path }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    /// The latest `STATUS=` value.
    fn status(&self) -> Option<String> {
        self.messages().iter().rev().find_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("STATUS=").map(str::to_owned))
        })
    }
}

fn with_http(config: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(config, text).unwrap();
}

#[test]
fn ready_comes_after_the_http_server_is_bound_then_watchdog_pings_and_status_lines() {
    let dir = TestDir::new();
    let config = dir.write_config();
    with_http(&config);
    let manager = ServiceManager::listen(&dir);
    // 400 ms: the agent pings every 200 ms.
    let mut agent = dir.spawn_with_env(
        ["run", "--config", &config],
        &[
            ("NOTIFY_SOCKET", manager.path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("400000")),
        ],
    );
    assert!(
        agent.wait_until(READY_TIMEOUT, |_| manager.count("READY=1") > 0),
        "no READY=1: {:?}\n{}",
        manager.messages(),
        agent.stderr_so_far()
    );
    // At READY the page a unit ordered after the agent (the kiosk) loads must answer.
    let addr = agent.http_addr();
    let ready = request(&addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let first = manager.messages()[0].clone();
    assert!(
        first.starts_with("READY=1\nSTATUS="),
        "READY is the first notification and carries a status: {first:?}"
    );
    // No [mqtt]: offline, nothing waiting.
    assert_eq!(manager.status().as_deref(), Some("offline, 0 events waiting"));

    assert!(
        agent.wait_until(READY_TIMEOUT, |_| manager.count("WATCHDOG=1") >= 3),
        "the watchdog is pinged: {:?}",
        manager.messages()
    );

    // A sale waits in the outbox: the status line says so.
    let sale = request(
        &addr,
        "POST",
        "/api/v1/pos/transactions",
        &[("Content-Type", "application/xml")],
        poslog_sale(1).as_bytes(),
    );
    assert_eq!(sale.status, 201, "{}", sale.body);
    assert!(
        agent.wait_until(READY_TIMEOUT, |_| manager.status().as_deref()
            == Some("offline, 1 event waiting")),
        "the status shows the waiting event: {:?}",
        manager.status()
    );

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
    assert_eq!(manager.count("STOPPING=1"), 1, "{:?}", manager.messages());
    assert_eq!(manager.count("READY=1"), 1, "{:?}", manager.messages());
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let manager = ServiceManager::listen(&dir);
    let mut agent = dir.spawn_with_env(
        ["run", "--config", &config],
        &[
            ("NOTIFY_SOCKET", manager.path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("200000")),
            // systemd sets WATCHDOG_PID to the main process; a child must not ping.
            ("WATCHDOG_PID", OsStr::new("1")),
        ],
    );
    assert!(agent.wait_until(READY_TIMEOUT, |_| manager.count("READY=1") > 0));
    // Long enough for several pings at the 100 ms beat, had they been sent; the
    // 5 s status beat has not come round yet either way.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(manager.count("WATCHDOG=1"), 0, "{:?}", manager.messages());
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.finish(STOP_TIMEOUT).code(), Some(0));
}

/// POSTs one sale without panicking: `Some(status)` when an answer came back,
/// `None` when the connection was refused or dropped (the agent stopping).
fn try_post_sale(addr: &str, seq: u32) -> Option<u16> {
    let body = poslog_sale(seq);
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /api/v1/pos/transactions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn sigterm_under_load_acknowledged_sales_survive_the_agent_says_offline_itself_and_no_will_fires() {
    let Some(rig) = Rig::start(
        "sigterm_under_load_acknowledged_sales_survive_the_agent_says_offline_itself_and_no_will_fires",
        "",
    ) else {
        return;
    };
    with_http(&rig.config);
    let mut agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    let addr = agent.http_addr();

    // A cloud service watching this device's presence.
    let presence_topic = store_agent::sync::protocol::Topics::for_parts(
        store_agent_e2e::TENANT_ID,
        store_agent_e2e::STORE_ID,
        DEVICE_ID,
    )
    .presence();
    let port = rig_port(&rig);
    let mut watcher = rig
        .rt
        .block_on(MqttClient::connect_ok(store_agent_e2e::mqtt::tls_options(
            "presence-watcher",
            port,
            rig.pki.ca_file(),
            &rig.pki.client(CLOUD_USER),
        )));
    rig.rt.block_on(watcher.subscribe_ok(&presence_topic));
    let online = rig.rt.block_on(watcher.next_publish());
    let online: serde_json::Value = serde_json::from_slice(&online.payload).unwrap();
    assert_eq!(online["state"], "online", "{online}");

    // A POS keeps posting sales, one after another, while the stop comes.
    let stop_posting = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let poster = {
        let (stop_posting, acknowledged, addr) = (stop_posting.clone(), acknowledged.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut seq = 1;
            let mut refused_in_a_row = 0;
            while !stop_posting.load(Ordering::Relaxed) && refused_in_a_row < 20 {
                match try_post_sale(&addr, seq) {
                    Some(201) => {
                        acknowledged.lock().unwrap().insert(seq);
                        refused_in_a_row = 0;
                    }
                    _ => refused_in_a_row += 1,
                }
                seq += 1;
            }
        })
    };
    assert!(
        wait_for(READY_TIMEOUT, || acknowledged.lock().unwrap().len() >= 20),
        "the POS is posting"
    );

    agent.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let exited = agent.wait_timeout(STOP_PROMISE + Duration::from_secs(10));
    let took = signalled.elapsed();
    stop_posting.store(true, Ordering::Relaxed);
    poster.join().unwrap();
    let output = agent.finish(STOP_TIMEOUT);
    assert!(exited.is_some(), "no exit after SIGTERM\n{output}");
    assert_eq!(output.code(), Some(0), "{output}");
    assert!(
        took < STOP_PROMISE,
        "SIGTERM to exit took {took:?}, more than the {STOP_PROMISE:?} promised\n{output}"
    );

    // The agent published "offline" (reason stopped) itself; the broker, having
    // seen DISCONNECT, drops the will: no "connection_lost" follows.
    let offline = rig.rt.block_on(watcher.next_publish());
    let offline: serde_json::Value = serde_json::from_slice(&offline.payload).unwrap();
    assert_eq!(
        (offline["state"].as_str(), offline["reason"].as_str()),
        (Some("offline"), Some("stopped")),
        "{offline}"
    );
    let more = rig.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), watcher.next_publish())
            .await
            .ok()
    });
    assert!(
        more.is_none(),
        "a second presence message after a clean stop (the Last Will fired?): {:?}\n{output}\n--- broker ---\n{}",
        more.map(|p| String::from_utf8_lossy(&p.payload).into_owned()),
        broker_log(&rig)
    );

    // Every sale the agent answered 201 reaches the cloud, once, after a restart.
    let acknowledged: Vec<i64> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .map(|&s| i64::from(s))
        .collect();
    let agent = rig.spawn_agent();
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.outbox_depth("pos_transactions") == 0),
        "the outbox drains after the restart\n{}",
        agent.stderr_so_far()
    );
    let received = rig.received();
    let mut numbers: Vec<i64> = received
        .iter()
        .map(|e| e.payload["sequence_number"].as_i64().unwrap())
        .collect();
    numbers.sort_unstable();
    let unique: BTreeSet<i64> = numbers.iter().copied().collect();
    assert_eq!(numbers.len(), unique.len(), "a sale reached the cloud twice");
    for seq in &acknowledged {
        assert!(unique.contains(seq), "acknowledged sale {seq} was lost");
    }
    rig.stop_agent(agent);
}

fn rig_port(rig: &Rig) -> u16 {
    match &rig.broker {
        store_agent_e2e::rig::Broker::Mosquitto(m) => m.port(),
        store_agent_e2e::rig::Broker::Embedded(e) => e.addr().port(),
    }
}

fn broker_log(rig: &Rig) -> String {
    match &rig.broker {
        store_agent_e2e::rig::Broker::Mosquitto(m) => m.log_tail(40),
        store_agent_e2e::rig::Broker::Embedded(_) => String::new(),
    }
}
