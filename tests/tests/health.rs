//! The health endpoints of the running agent: /healthz (up), /readyz (database,
//! devices, sync, outbox) and /metrics (Prometheus text).

use std::time::Duration;
use store_agent_e2e::TestDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A GET on loopback; returns (status code as text, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let res = store_agent_e2e::http::request(addr, "GET", path, &[], b"");
    (res.status.to_string(), res.body)
}

#[test]
fn healthz_readyz_and_metrics_report_devices_and_outbox() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let missing = dir.path_str("no-such-scanner");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:0\"\n\n[[devices.scanners.serial]]\ndevice_id = \"scanner-1\"\npath = {missing:?}\n"
    ));
    std::fs::write(&config, text).unwrap();

    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    assert!(
        agent.wait_for_stderr("Device not usable.", READY_TIMEOUT),
        "the missing scanner is reported\n{}",
        agent.stderr_so_far()
    );
    let addr = agent.http_addr();

    let (status, body) = get(&addr, "/healthz");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // The device state is written by the agent's writer; poll until readyz shows it.
    let mut last = String::new();
    let shown = (0..100).any(|_| {
        let (status, body) = get(&addr, "/readyz");
        assert!(status.contains("200"), "{status}");
        last = body;
        let ok = last.contains("\"device_id\":\"scanner-1\"") && last.contains("\"state\":\"disconnected\"");
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(shown, "readyz should list the disconnected scanner: {last}");
    let json: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(json["ready"], true);
    assert_eq!(json["checks"]["database"], "ok");
    assert!(json["checks"]["outbox"].is_array(), "{json}");

    // Prometheus text: the device gauge and the HTTP counter of the requests above.
    let (status, metrics) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(
        metrics.contains("store_agent_device_connected{device=\"scanner-1\",kind=\"serial\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("store_agent_http_requests_total{route=\"/readyz\",status=\"200\"}"),
        "{metrics}"
    );
    let (status, _) = get(&addr, "/no-such-page");
    assert!(status.contains("404"), "{status}");

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
}
