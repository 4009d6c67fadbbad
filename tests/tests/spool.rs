//! The spool folder through the running agent: a POSLog file dropped by the POS is
//! recorded with its outbox row and then moved to processed/.

use std::time::Duration;
use store_agent_e2e::{TestDir, poslog_sale};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_dropped_poslog_file_is_recorded_then_moved_and_a_bad_one_rejected() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[spool]\npath = {:?}\nrescan_ms = 200\n",
        spool.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();

    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );

    // The POS writes under a temporary name and renames into place.
    std::fs::write(spool.join("tx-4711.xml.tmp"), poslog_sale(4711)).unwrap();
    std::fs::rename(spool.join("tx-4711.xml.tmp"), spool.join("tx-4711.xml")).unwrap();
    std::fs::write(spool.join("broken.xml"), "<POSLog><Transaction>").unwrap();

    let processed = spool.join("processed/tx-4711.xml");
    let rejected = spool.join("rejected/broken.xml");
    assert!(
        agent.wait_until(EVENT_TIMEOUT, |_| processed.exists() && rejected.exists()),
        "files not handled\n{}",
        agent.stderr_so_far()
    );
    let reason = std::fs::read_to_string(spool.join("rejected/broken.xml.reason")).unwrap();
    assert!(!reason.trim().is_empty());

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");

    let status = dir.status_json(&config);
    assert_eq!(status["counts"]["pos_transactions"], 1, "{status}");
    let pos = status["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "pos_transactions")
        .cloned()
        .unwrap_or_default();
    assert_eq!(pos["depth"], 1, "one event waits for the cloud: {status}");
}
