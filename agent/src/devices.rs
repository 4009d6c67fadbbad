//! The device manager: one task per configured scanner or card reader, and one
//! consumer that turns their messages into [`AgentEvent`]s for the screens.
//!
//! **Invariants.** One task owns each device (the drivers of
//! `firmware_interfaces::drivers`); they feed one bounded channel. Decoding is pure
//! and happens here, so the payment-card guard runs before anything else sees the
//! data: a payment number becomes [`AgentEvent::PaymentCardRejected`] with no digits,
//! and no log line ever carries a scan's raw text, a card number or a customer name.
//! Device state changes are written to the store for `store-agent status`.

use crate::store::{Store, queries, records::DeviceStatusRecord};
use firmware_interfaces::card::CardRules;
use firmware_interfaces::drivers::ConfigError;
use firmware_interfaces::drivers::serial::{SerialConfig, run_serial};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::drivers::tcp::{TcpScannerConfig, run_tcp};
use firmware_interfaces::drivers::wedge::{WedgeConfig, run_wedge};
use firmware_interfaces::msr::{CardRead, read_card};
use firmware_interfaces::scan::{Scan, ScanConfig, ScanKind, decode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// `[devices]`: the scanners and card readers of this device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Barcode scanners: `[[devices.scanners.serial]]`, `[[devices.scanners.tcp]]`,
    /// `[[devices.scanners.wedge]]`.
    pub scanners: DeviceList,
    /// Magnetic-stripe card readers: `[[devices.card_readers.serial]]`, ….
    pub card_readers: DeviceList,
}

/// Devices of one role, by connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceList {
    /// Serial (RS-232 or USB CDC/ACM) devices.
    pub serial: Vec<SerialConfig>,
    /// Network devices that send one message per line.
    pub tcp: Vec<TcpScannerConfig>,
    /// Keyboard-wedge devices read through evdev (grabbed, so scans do not type
    /// into the focused window).
    pub wedge: Vec<WedgeConfig>,
}

/// What a device is for, which decides how its messages are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Barcode scanner: messages go through `scan::decode`.
    Scanner,
    /// Card reader: messages go through `msr::read_card`.
    CardReader,
}

impl DevicesConfig {
    /// Every problem of every device, as `(key, message)` pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut check = |key: String, id: &str, valid: Result<(), ConfigError>| {
            if let Err(e) = valid {
                out.push((key.clone(), e.to_string()));
            }
            if let Some(other) = ids.insert(id.to_string(), key.clone()) {
                out.push((key, format!("device_id {id:?} is also used by {other}")));
            }
        };
        for (role, list) in [("scanners", &self.scanners), ("card_readers", &self.card_readers)] {
            for (i, d) in list.serial.iter().enumerate() {
                check(format!("devices.{role}.serial[{i}]"), &d.device_id, d.validate());
            }
            for (i, d) in list.tcp.iter().enumerate() {
                check(format!("devices.{role}.tcp[{i}]"), &d.device_id, d.validate());
            }
            for (i, d) in list.wedge.iter().enumerate() {
                check(format!("devices.{role}.wedge[{i}]"), &d.device_id, d.validate());
            }
        }
        out
    }

    fn roles(&self) -> HashMap<String, (Role, &'static str)> {
        let mut roles = HashMap::new();
        for (role, list) in [
            (Role::Scanner, &self.scanners),
            (Role::CardReader, &self.card_readers),
        ] {
            for s in &list.serial {
                roles.insert(s.device_id.clone(), (role, "serial"));
            }
            for t in &list.tcp {
                roles.insert(t.device_id.clone(), (role, "tcp"));
            }
            for w in &list.wedge {
                roles.insert(w.device_id.clone(), (role, "wedge"));
            }
        }
        roles
    }
}

/// What the devices tell the rest of the agent (the screens subscribe).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A barcode was scanned (product, order or receipt code, unknown or invalid).
    Scanned {
        /// Which scanner.
        device_id: String,
        /// The decoded scan.
        scan: Box<Scan>,
    },
    /// A loyalty card (scanned or swiped) identified a customer of the local store.
    CustomerIdentified {
        /// Which device.
        device_id: String,
        /// The customer.
        customer_id: String,
    },
    /// A loyalty number that no customer in the local store has.
    UnknownCard {
        /// Which device.
        device_id: String,
    },
    /// A payment card was scanned or swiped; its data was dropped.
    PaymentCardRejected {
        /// Which device.
        device_id: String,
    },
    /// A swipe that could not be read.
    UnreadableSwipe {
        /// Which device.
        device_id: String,
        /// What was wrong (no card digits).
        reason: String,
    },
}

/// How many device messages may wait for the consumer.
const EVENT_QUEUE: usize = 256;

/// Starts one task per device and the consumer; returns when `shutdown` flips to
/// true and every task has stopped.
pub async fn run(
    config: DevicesConfig,
    scan_rules: ScanConfig,
    store: Arc<Store>,
    events_out: broadcast::Sender<AgentEvent>,
    shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<DeviceEvent>(EVENT_QUEUE);
    let roles = config.roles();
    let mut tasks = tokio::task::JoinSet::new();
    for list in [&config.scanners, &config.card_readers] {
        for s in list.serial.clone() {
            tasks.spawn(run_serial(s, tx.clone(), stopped(shutdown.clone())));
        }
        for t in list.tcp.clone() {
            tasks.spawn(run_tcp(t, tx.clone(), stopped(shutdown.clone())));
        }
        for w in list.wedge.clone() {
            tasks.spawn(run_wedge(w, tx.clone(), stopped(shutdown.clone())));
        }
    }
    drop(tx);
    let card_rules = scan_rules.card_rules.clone();
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    let role = roles.get(&event.device_id).copied();
                    handle(event, role, &scan_rules, &card_rules, &store, &events_out).await;
                }
                None => break,
            },
            _ = stopped(shutdown.clone()) => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Completes when the stop flag is set (or its sender is gone).
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn handle(
    event: DeviceEvent,
    role: Option<(Role, &'static str)>,
    scan_rules: &ScanConfig,
    card_rules: &CardRules,
    store: &Store,
    out: &broadcast::Sender<AgentEvent>,
) {
    let Some((role, kind)) = role else {
        tracing::warn!(device_id = %event.device_id, "Event from an unknown device ignored.");
        return;
    };
    let device_id = event.device_id;
    match event.kind {
        DeviceEventKind::Status(state) => {
            let (name, reason) = match &state {
                DeviceState::Connected => ("connected", None),
                DeviceState::Disconnected { reason } => ("disconnected", Some(reason.clone())),
                DeviceState::Error { reason } => ("error", Some(reason.clone())),
            };
            match &reason {
                None => tracing::info!(device_id = %device_id, "Device connected."),
                Some(r) => {
                    tracing::warn!(device_id = %device_id, state = name, reason = %r, "Device not usable.")
                }
            }
            let record = DeviceStatusRecord {
                device_id,
                kind: kind.into(),
                state: name.into(),
                reason,
                updated_at_ms: crate::events::now_ms(),
            };
            if let Err(e) = store.set_device_status(record).await {
                tracing::error!(error = %e, "Cannot record the device status.");
            }
        }
        DeviceEventKind::Data(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            drop(bytes);
            let agent_event = match role {
                Role::Scanner => from_scan(device_id, decode(&text, scan_rules), store).await,
                Role::CardReader => from_swipe(device_id, read_card(&text, card_rules), store).await,
            };
            log_event(&agent_event);
            // No subscriber (no screen open) is fine: the event is just not shown.
            let _ = out.send(agent_event);
        }
    }
}

async fn from_scan(device_id: String, scan: Scan, store: &Store) -> AgentEvent {
    match scan.kind {
        ScanKind::PaymentCardRejected => AgentEvent::PaymentCardRejected { device_id },
        ScanKind::LoyaltyCard => {
            let number = scan
                .raw
                .strip_prefix(scan.symbology.as_deref().unwrap_or(""))
                .unwrap_or(&scan.raw)
                .trim()
                .to_string();
            identify(device_id, number, store).await
        }
        _ => AgentEvent::Scanned {
            device_id,
            scan: Box::new(scan),
        },
    }
}

async fn from_swipe(device_id: String, read: CardRead, store: &Store) -> AgentEvent {
    match read {
        CardRead::PaymentCardRejected => AgentEvent::PaymentCardRejected { device_id },
        CardRead::Loyalty { number } => identify(device_id, number, store).await,
        CardRead::Unrecognised => AgentEvent::UnknownCard { device_id },
        CardRead::Invalid { message, .. } => AgentEvent::UnreadableSwipe {
            device_id,
            reason: message,
        },
    }
}

/// Looks a loyalty number up by its keyed hash; the number itself goes no further.
async fn identify(device_id: String, number: String, store: &Store) -> AgentEvent {
    let hash = store.hasher().card_hash(&number);
    drop(number);
    match store
        .reads()
        .read(move |c| queries::customer_id_by_card_hash(c, &hash))
        .await
    {
        Ok(Some(customer_id)) => AgentEvent::CustomerIdentified {
            device_id,
            customer_id,
        },
        Ok(None) => AgentEvent::UnknownCard { device_id },
        Err(e) => {
            tracing::error!(error = %e, "Card lookup failed.");
            AgentEvent::UnknownCard { device_id }
        }
    }
}

/// One log line per event, with ids only.
fn log_event(event: &AgentEvent) {
    match event {
        AgentEvent::Scanned { device_id, scan } => {
            tracing::info!(device_id = %device_id, kind = ?scan.kind, gtin14 = %scan.gtin14.as_deref().unwrap_or("-"), "Scan.")
        }
        AgentEvent::CustomerIdentified {
            device_id,
            customer_id,
        } => {
            tracing::info!(device_id = %device_id, customer_id = %customer_id, "Customer identified.")
        }
        AgentEvent::UnknownCard { device_id } => {
            tracing::info!(device_id = %device_id, "Unknown loyalty card.")
        }
        AgentEvent::PaymentCardRejected { device_id } => {
            tracing::warn!(device_id = %device_id, "Payment card presented; its data was dropped.")
        }
        AgentEvent::UnreadableSwipe { device_id, reason } => {
            tracing::warn!(device_id = %device_id, reason = %reason, "Unreadable swipe.")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[store]\ntenant_id = \"t\"\nstore_id = \"s\"\ndevice_id = \"d\"\n[loyalty]\nhash_key = \"6464646464646464646464646464646464646464646464646464646464646464\"\n";

    #[test]
    fn devices_parse_by_role_and_connection_and_problems_name_the_device() {
        let text = format!(
            "{BASE}[[devices.scanners.serial]]\ndevice_id = \"scan-1\"\npath = \"/dev/ttyACM0\"\n\
             [[devices.scanners.tcp]]\ndevice_id = \"dock\"\naddress = \"127.0.0.1:9100\"\n\
             [[devices.card_readers.serial]]\ndevice_id = \"msr-1\"\npath = \"/dev/ttyUSB0\"\nbaud = 19200\n"
        );
        let config = Config::parse(&text, &|_| None).unwrap();
        assert_eq!(config.devices.scanners.serial[0].device_id, "scan-1");
        assert_eq!(config.devices.scanners.tcp[0].address, "127.0.0.1:9100");
        assert_eq!(config.devices.card_readers.serial[0].baud, 19200);

        let bad = format!(
            "{BASE}[[devices.scanners.serial]]\ndevice_id = \"same\"\npath = \"/dev/ttyACM0\"\ndata_bits = 9\n\
             [[devices.card_readers.serial]]\ndevice_id = \"same\"\npath = \"/dev/ttyUSB0\"\n"
        );
        let problems = Config::parse(&bad, &|_| None).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|p| p.contains("devices.scanners.serial[0]") && p.contains("data_bits")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.contains("also used by devices.scanners.serial[0]")),
            "{text:?}"
        );

        let unknown =
            format!("{BASE}[[devices.scanners.serial]]\ndevice_id = \"x\"\npath = \"/dev/x\"\nspeed = 1\n");
        let problems = Config::parse(&unknown, &|_| None).unwrap_err();
        assert!(problems.iter().any(|p| p.key.contains("speed")), "{problems:?}");
    }
}
