//! `/metrics` in the Prometheus text format: what fleet monitoring scrapes.
//!
//! Gauges come from the store's live status at scrape time (outbox depth and
//! oldest age per stream, downlink lag per stream, dead letters, devices, the cloud
//! connection); counters of scans are kept here in atomics since start. The
//! screens add their HTTP request counters. No label ever holds customer data.

use crate::store::status::LiveStatus;
use kiosk_ui::prometheus_label as label;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the scan latency histogram, in seconds.
const BUCKETS: [f64; 8] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

static SCANS: AtomicU64 = AtomicU64::new(0);
static SCAN_BUCKETS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static SCAN_MICROS: AtomicU64 = AtomicU64::new(0);

/// Counts a scan resolved for the screens and how long its lookup took.
pub fn scan_resolved(took: Duration) {
    SCANS.fetch_add(1, Ordering::Relaxed);
    SCAN_MICROS.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    let secs = took.as_secs_f64();
    for (i, bound) in BUCKETS.iter().enumerate() {
        if secs <= *bound {
            SCAN_BUCKETS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The metrics text for `report`, read at `now_ms`.
pub fn render(report: &LiveStatus, now_ms: i64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP store_agent_up The agent is running.\n# TYPE store_agent_up gauge\nstore_agent_up 1"
    );
    let _ = writeln!(
        o,
        "# HELP store_agent_scans_total Scans and card reads resolved for the screens.\n# TYPE store_agent_scans_total counter\nstore_agent_scans_total {}",
        SCANS.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "# HELP store_agent_scan_lookup_seconds From a decoded scan to its screen event (store lookup included).\n# TYPE store_agent_scan_lookup_seconds histogram"
    );
    for (i, bound) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            o,
            "store_agent_scan_lookup_seconds_bucket{{le=\"{bound}\"}} {}",
            SCAN_BUCKETS[i].load(Ordering::Relaxed)
        );
    }
    let n = SCANS.load(Ordering::Relaxed);
    let _ = writeln!(o, "store_agent_scan_lookup_seconds_bucket{{le=\"+Inf\"}} {n}");
    let _ = writeln!(
        o,
        "store_agent_scan_lookup_seconds_sum {}\nstore_agent_scan_lookup_seconds_count {n}",
        SCAN_MICROS.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "# HELP store_agent_outbox_depth Events waiting for the cloud, per stream.\n# TYPE store_agent_outbox_depth gauge"
    );
    for s in &report.outbox {
        let _ = writeln!(
            o,
            "store_agent_outbox_depth{{stream=\"{}\"}} {}",
            label(&s.stream),
            s.depth
        );
    }
    let _ = writeln!(
        o,
        "# HELP store_agent_outbox_oldest_age_seconds Age of the oldest waiting event, per stream.\n# TYPE store_agent_outbox_oldest_age_seconds gauge"
    );
    for s in &report.outbox {
        let age = s
            .oldest_captured_at_ms
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        let _ = writeln!(
            o,
            "store_agent_outbox_oldest_age_seconds{{stream=\"{}\"}} {age}",
            label(&s.stream)
        );
    }
    let _ = writeln!(
        o,
        "# HELP store_agent_downlink_lag_seconds Time since each cloud stream last changed the local copy.\n# TYPE store_agent_downlink_lag_seconds gauge"
    );
    for d in &report.downlink {
        let lag = (now_ms - d.updated_at_ms).max(0) as f64 / 1000.0;
        let _ = writeln!(
            o,
            "store_agent_downlink_lag_seconds{{stream=\"{}\"}} {lag}",
            label(&d.stream)
        );
    }
    let _ = writeln!(
        o,
        "# HELP store_agent_dead_letters Rejected inputs kept for a person.\n# TYPE store_agent_dead_letters gauge\nstore_agent_dead_letters {}",
        report.dead_letters
    );
    let _ = writeln!(
        o,
        "# HELP store_agent_device_connected 1 when the device is connected.\n# TYPE store_agent_device_connected gauge"
    );
    for d in &report.devices {
        let _ = writeln!(
            o,
            "store_agent_device_connected{{device=\"{}\",kind=\"{}\"}} {}",
            label(&d.device_id),
            label(&d.kind),
            u8::from(d.state == "connected")
        );
    }
    let online = report.sync.as_ref().is_some_and(|s| s.state == "online");
    let _ = writeln!(
        o,
        "# HELP store_agent_cloud_online 1 when the cloud connection is up.\n# TYPE store_agent_cloud_online gauge\nstore_agent_cloud_online {}",
        u8::from(online)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::status::{DownlinkStatus, OutboxStatus};

    #[test]
    fn renders_outbox_age_downlink_lag_and_scan_histogram() {
        scan_resolved(Duration::from_micros(1500));
        let report = LiveStatus {
            schema_version: 6,
            dead_letters: 3,
            outbox: vec![OutboxStatus {
                stream: "pos_transactions".into(),
                depth: 7,
                oldest_captured_at_ms: Some(10_000),
                last_seq: 9,
                acked_seq: 2,
                acked_at_ms: None,
            }],
            downlink: vec![DownlinkStatus {
                stream: "stock".into(),
                epoch: "e".into(),
                last_seq: 1,
                updated_at_ms: 40_000,
            }],
            devices: vec![],
            sync: None,
        };
        let text = render(&report, 70_000);
        assert!(
            text.contains("store_agent_outbox_depth{stream=\"pos_transactions\"} 7"),
            "{text}"
        );
        assert!(text.contains("store_agent_outbox_oldest_age_seconds{stream=\"pos_transactions\"} 60"));
        assert!(text.contains("store_agent_downlink_lag_seconds{stream=\"stock\"} 30"));
        assert!(text.contains("store_agent_dead_letters 3"));
        assert!(text.contains("store_agent_cloud_online 0"));
        // 1.5 ms is above the 1 ms bucket and inside the 2 ms one.
        let bucket = |le: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("store_agent_scan_lookup_seconds_bucket{{le=\"{le}\"}}")))
                .unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(bucket("0.002") >= 1);
    }
}
