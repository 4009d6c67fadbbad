//! The device manager: one task per configured scanner, card reader or receipt
//! printer journal tap, and one consumer that turns their messages into
//! [`AgentEvent`]s for the screens and journal receipts for the store.
//!
//! **Invariants.** One task owns each device (the drivers of
//! `firmware_interfaces::drivers`); they feed one bounded channel. Decoding is pure
//! and happens here, so the payment-card guard runs before anything else sees the
//! data: a payment number becomes [`AgentEvent::PaymentCardRejected`] with no digits,
//! and no log line ever carries a scan's raw text, a card number or a customer name.
//! Device state changes are written to the store for `store-agent status`.
//!
//! **Journal taps.** A tap reads the byte stream going to a receipt printer (serial,
//! `framing = "raw"`); the consumer keeps one [`JournalTap`] per tap, feeds it every
//! chunk, and records each completed receipt (PAN-masked by the tap) with
//! [`Store::record_journal_receipt`]. On shutdown it first handles what the drivers
//! had already read, then ends every tap's stream, so a receipt without a final cut
//! is kept. Logs carry the device id and the line count, never receipt text.

use crate::events::Captured;
use crate::store::records::{DeviceStatusRecord, JournalReceipt};
use crate::store::{Store, queries};
use firmware_interfaces::card::CardRules;
use firmware_interfaces::drivers::ConfigError;
use firmware_interfaces::drivers::serial::{Framing, SerialConfig, run_serial};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::drivers::tcp::{TcpScannerConfig, run_tcp};
use firmware_interfaces::drivers::wedge::{WedgeConfig, run_wedge};
use firmware_interfaces::escpos::journal::{JournalConfig, JournalTap, Receipt};
use firmware_interfaces::msr::{CardRead, read_card};
use firmware_interfaces::scan::{Scan, ScanConfig, ScanKind, decode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// `[devices]`: the scanners, card readers and receipt-printer journal taps of this
/// device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Barcode scanners: `[[devices.scanners.serial]]`, `[[devices.scanners.tcp]]`,
    /// `[[devices.scanners.wedge]]`.
    pub scanners: DeviceList,
    /// Magnetic-stripe card readers: `[[devices.card_readers.serial]]`, ….
    pub card_readers: DeviceList,
    /// Receipt-printer journal taps: `[[devices.journal_taps]]`, each with its
    /// `[devices.journal_taps.serial]` port (which must use `framing = "raw"`) and
    /// optional `receipts` rules.
    pub journal_taps: Vec<JournalTapDevice>,
    /// Customer line displays: `[[devices.displays]]` with a `protocol`, an
    /// optional `code_page` and a `[devices.displays.port]` serial port.
    pub displays: Vec<crate::displays::DisplayDevice>,
    /// Receipt printers for the counter's slips (BOPIS pickup slip, BORIS return
    /// receipt): `[[devices.printers]]` with a `[devices.printers.port]` serial port.
    /// The first one is used.
    pub printers: Vec<crate::printers::PrinterDevice>,
}

/// One journal tap: a serial port that sees the bytes going to a receipt printer,
/// and how its stream is split into receipts.
///
/// ```toml
/// [[devices.journal_taps]]
/// receipts = { split_on_cut = true }   # optional; also start_patterns, end_patterns
/// [devices.journal_taps.serial]
/// device_id = "printer-tap"
/// path = "/dev/store-printer-tap"
/// framing = "raw"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalTapDevice {
    /// The port, with the keys of any serial device; `framing` must be `"raw"`.
    /// Required.
    pub serial: SerialConfig,
    /// How the stream is split into receipts: `split_on_cut` (default true),
    /// `start_patterns`, `end_patterns` (default none). Optional.
    #[serde(default)]
    pub receipts: JournalConfig,
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
    /// Receipt-printer journal tap: the raw stream goes through `escpos::JournalTap`.
    Journal,
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
        // A journal tap reads a printer stream, which has no line terminator.
        let mut framing = Vec::new();
        for (i, tap) in self.journal_taps.iter().enumerate() {
            let d = &tap.serial;
            let key = format!("devices.journal_taps[{i}].serial");
            let valid = d.validate();
            if valid.is_ok() && d.framing != Framing::Raw {
                let error = ConfigError {
                    device_id: d.device_id.clone(),
                    key: "framing",
                    message: "must be \"raw\" for a journal tap (a printer stream has no line terminator)"
                        .into(),
                };
                framing.push((format!("{key}.framing"), error.to_string()));
            }
            check(key, &d.device_id, valid);
        }
        for (i, display) in self.displays.iter().enumerate() {
            let d = &display.port;
            check(format!("devices.displays[{i}].port"), &d.device_id, d.validate());
        }
        for (i, printer) in self.printers.iter().enumerate() {
            let d = &printer.port;
            check(format!("devices.printers[{i}].port"), &d.device_id, d.validate());
        }
        out.extend(framing);
        out
    }

    pub(crate) fn roles(&self) -> HashMap<String, (Role, &'static str)> {
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
        for tap in &self.journal_taps {
            roles.insert(tap.serial.device_id.clone(), (Role::Journal, "serial"));
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

/// How long, after a stop, the consumer keeps handling what the drivers had
/// already read (their reader threads end within one read timeout, 100 ms).
const DRAIN_DEADLINE: Duration = Duration::from_millis(500);

/// Starts one task per device and the consumer; returns when `shutdown` flips to
/// true and every task has stopped.
pub async fn run(
    config: DevicesConfig,
    scan_rules: ScanConfig,
    store: Arc<Store>,
    events_out: broadcast::Sender<AgentEvent>,
    shutdown: watch::Receiver<bool>,
    mut injected: Option<mpsc::Receiver<crate::screens::Injected>>,
) {
    let (tx, mut rx) = mpsc::channel::<DeviceEvent>(EVENT_QUEUE);
    let mut roles = config.roles();
    if injected.is_some() {
        // Injected scans (demo mode) go through the same decoding as a real scanner's.
        for id in [crate::screens::INJECT_CONSOLE, crate::screens::INJECT_KIOSK] {
            roles.insert(id.to_string(), (Role::Scanner, "virtual"));
        }
    }
    let mut taps: HashMap<String, JournalTap> = config
        .journal_taps
        .iter()
        .map(|t| (t.serial.device_id.clone(), JournalTap::new(t.receipts.clone())))
        .collect();
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
    for tap in &config.journal_taps {
        tasks.spawn(run_serial(
            tap.serial.clone(),
            tx.clone(),
            stopped(shutdown.clone()),
        ));
    }
    drop(tx);
    let card_rules = scan_rules.card_rules.clone();
    let mut consumer = Consumer {
        roles,
        scan_rules: &scan_rules,
        card_rules: &card_rules,
        store: &store,
        out: &events_out,
        taps: &mut taps,
    };
    // With no device configured the driver channel closes at once; injected scans
    // (demo mode) still flow until the stop.
    let mut drivers_open = true;
    loop {
        tokio::select! {
            event = rx.recv(), if drivers_open => match event {
                Some(event) => consumer.handle(event).await,
                None if injected.is_some() => drivers_open = false,
                None => break,
            },
            Some((device_id, data)) = next_injected(&mut injected) => {
                consumer.handle(DeviceEvent { device_id, kind: DeviceEventKind::Data(data.into_bytes()) }).await;
            }
            _ = stopped(shutdown.clone()) => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    // The drivers have stopped; their reader threads hand over what they had read
    // and drop their senders within one read timeout. Handle those bytes, so the
    // end of a printer stream just before the stop reaches the journal.
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        // Injected scans already answered over HTTP, then the drivers' last bytes.
        if let Some(injected) = injected.as_mut() {
            while let Ok((device_id, data)) = injected.try_recv() {
                let kind = DeviceEventKind::Data(data.into_bytes());
                consumer.handle(DeviceEvent { device_id, kind }).await;
            }
        }
        while let Some(event) = rx.recv().await {
            consumer.handle(event).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("Device events still arriving at the drain deadline were dropped.");
    }
    // The printer streams end here: an open receipt (no cut yet) is kept.
    for (device_id, tap) in consumer.taps.iter_mut() {
        for receipt in tap.finish() {
            record_receipt(device_id, receipt, &store).await;
        }
    }
}

/// The next injected scan; never completes when injection is off.
async fn next_injected(
    rx: &mut Option<mpsc::Receiver<crate::screens::Injected>>,
) -> Option<crate::screens::Injected> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the consumer needs to handle one device event.
struct Consumer<'a> {
    roles: HashMap<String, (Role, &'static str)>,
    scan_rules: &'a ScanConfig,
    card_rules: &'a CardRules,
    store: &'a Store,
    out: &'a broadcast::Sender<AgentEvent>,
    /// One journal interpreter per tap device id.
    taps: &'a mut HashMap<String, JournalTap>,
}

impl Consumer<'_> {
    async fn handle(&mut self, event: DeviceEvent) {
        let role = self.roles.get(&event.device_id).copied();
        if let (Some((Role::Journal, _)), DeviceEventKind::Data(bytes)) = (role, &event.kind) {
            let Some(tap) = self.taps.get_mut(&event.device_id) else {
                return;
            };
            let receipts = tap.push(bytes);
            for receipt in receipts {
                record_receipt(&event.device_id, receipt, self.store).await;
            }
            return;
        }
        handle(
            event,
            role,
            self.scan_rules,
            self.card_rules,
            self.store,
            self.out,
        )
        .await;
    }
}

/// Records one receipt of a journal tap; logs its device and line count only.
async fn record_receipt(device_id: &str, receipt: Receipt, store: &Store) {
    let lines = receipt.lines.len();
    let record = JournalReceipt {
        device_id: device_id.to_string(),
        text: receipt.lines.join("\n"),
    };
    drop(receipt);
    match store.record_journal_receipt(Captured::now(record)).await {
        Ok(_) => tracing::info!(device_id = %device_id, lines, "Journal receipt recorded."),
        Err(e) => {
            tracing::error!(device_id = %device_id, lines, error = %e, "Cannot record a journal receipt.")
        }
    }
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
                // Journal data is handled by the consumer's taps, never decoded here.
                Role::Journal => return,
            };
            log_event(&agent_event);
            let telemetry = scan_event(&agent_event);
            // No subscriber (no screen open) is fine: the event is just not shown.
            let _ = out.send(agent_event);
            // After the screens got it: the commit must not delay what the associate sees.
            if let Some(e) = telemetry
                && let Err(err) = store.record_scan_event(Captured::now(e)).await
            {
                tracing::warn!(error = %err, "Cannot record a scan event for the cloud.");
            }
        }
    }
}

async fn from_scan(device_id: String, scan: Scan, store: &Store) -> AgentEvent {
    match scan.kind {
        ScanKind::PaymentCardRejected => AgentEvent::PaymentCardRejected { device_id },
        ScanKind::LoyaltyCard => {
            let number = scan.data().to_string();
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

/// The cloud's copy of an event: kinds and ids, never a card number.
fn scan_event(event: &AgentEvent) -> Option<crate::store::records::ScanEvent> {
    let (device_id, kind, gtin14, customer_id) = match event {
        AgentEvent::Scanned { device_id, scan } => {
            let kind = serde_json::to_value(scan.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            (device_id, kind, scan.gtin14.clone(), None)
        }
        AgentEvent::CustomerIdentified {
            device_id,
            customer_id,
        } => (
            device_id,
            "customer_identified".into(),
            None,
            Some(customer_id.clone()),
        ),
        AgentEvent::UnknownCard { device_id } => (device_id, "unknown_card".into(), None, None),
        AgentEvent::PaymentCardRejected { device_id } => {
            (device_id, "payment_card_rejected".into(), None, None)
        }
        AgentEvent::UnreadableSwipe { .. } => return None,
    };
    Some(crate::store::records::ScanEvent {
        device_id: device_id.clone(),
        kind,
        gtin14,
        customer_id,
    })
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

    #[test]
    fn journal_taps_parse_and_must_be_raw_with_ids_unique_across_roles() {
        use firmware_interfaces::drivers::serial::Framing;

        let text = format!(
            "{BASE}[[devices.journal_taps]]\nreceipts = {{ split_on_cut = false, end_patterns = [\"THANK YOU\"] }}\n\
             [devices.journal_taps.serial]\ndevice_id = \"printer-tap\"\npath = \"/dev/store-printer-tap\"\n\
             framing = \"raw\"\nbaud = 38400\n\
             [[devices.journal_taps]]\n[devices.journal_taps.serial]\ndevice_id = \"tap-2\"\npath = \"/dev/x\"\n\
             framing = \"raw\"\n"
        );
        let config = Config::parse(&text, &|_| None).unwrap();
        let taps = &config.devices.journal_taps;
        assert_eq!(taps.len(), 2);
        assert_eq!(taps[0].serial.device_id, "printer-tap");
        assert_eq!(taps[0].serial.framing, Framing::Raw);
        assert_eq!(taps[0].serial.baud, 38400);
        assert!(!taps[0].receipts.split_on_cut);
        assert_eq!(taps[0].receipts.end_patterns, vec!["THANK YOU".to_string()]);
        assert!(taps[1].receipts.split_on_cut, "receipts defaults to split on cut");
        let roles = config.devices.roles();
        assert_eq!(roles["printer-tap"], (super::Role::Journal, "serial"));

        // Line framing (the default) is refused, naming the key.
        let lines = format!(
            "{BASE}[[devices.journal_taps]]\n[devices.journal_taps.serial]\ndevice_id = \"tap\"\npath = \"/dev/x\"\n"
        );
        let problems = Config::parse(&lines, &|_| None).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.key == "devices.journal_taps[0].serial.framing" && p.to_string().contains("raw")),
            "{problems:?}"
        );

        // Ids are unique together with scanners and card readers.
        let same = format!(
            "{BASE}[[devices.scanners.serial]]\ndevice_id = \"same\"\npath = \"/dev/ttyACM0\"\n\
             [[devices.journal_taps]]\n[devices.journal_taps.serial]\ndevice_id = \"same\"\npath = \"/dev/x\"\n\
             framing = \"raw\"\n"
        );
        let problems = Config::parse(&same, &|_| None).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter().any(|p| p.contains("devices.journal_taps[0].serial")
                && p.contains("also used by devices.scanners.serial[0]")),
            "{text:?}"
        );

        // Unknown keys in the tap or its receipts are refused.
        let unknown = format!(
            "{BASE}[[devices.journal_taps]]\nreceipts = {{ split_on_cuts = true }}\n\
             [devices.journal_taps.serial]\ndevice_id = \"tap\"\npath = \"/dev/x\"\nframing = \"raw\"\n"
        );
        let problems = Config::parse(&unknown, &|_| None).unwrap_err();
        assert!(
            problems.iter().any(|p| p.to_string().contains("split_on_cuts")),
            "{problems:?}"
        );
    }
}
