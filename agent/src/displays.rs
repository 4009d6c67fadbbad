//! Customer-facing line displays (pole displays, 2 × 20 characters): what the
//! shopper sees at the counter when an item is scanned or a loyalty card is read.
//!
//! One output-driver task owns each display's port; this module listens to the
//! device manager's [`AgentEvent`]s and turns them into display frames:
//! a product scan shows the item's name and shelf price, a recognised loyalty card
//! greets the customer by first name. Only the first name ever reaches a display.

use crate::devices::{AgentEvent, stopped};
use crate::domain::money::{Currency, Money};
use crate::store::{Store, queries, records::DeviceStatusRecord};
use firmware_interfaces::drivers::output::{OutputConfig, run_output};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::escpos::{DisplayCodePage, DisplayLines, DisplayProtocol, scanned_item, welcome};
use rusqlite::OptionalExtension;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// `[[devices.displays]]`: one customer display.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayDevice {
    /// The command set the display speaks: `cd5220` (most pole displays) or `epson`.
    pub protocol: DisplayKind,
    /// The display's character table for accented names: `pc437` (default) or `pc858`.
    #[serde(default)]
    pub code_page: DisplayPage,
    /// The serial port (`[devices.displays.port]`).
    pub port: OutputConfig,
}

/// The display command set, as the configuration spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayKind {
    /// CD5220 command set.
    Cd5220,
    /// Epson ESC/POS customer display command set.
    Epson,
}

/// The display's code page, as the configuration spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayPage {
    /// PC437 (US), the default of most displays.
    #[default]
    Pc437,
    /// PC858 (Western Europe with the euro sign).
    Pc858,
}

impl DisplayDevice {
    fn encode(&self, lines: &DisplayLines) -> Vec<u8> {
        let protocol = match self.protocol {
            DisplayKind::Cd5220 => DisplayProtocol::Cd5220,
            DisplayKind::Epson => DisplayProtocol::EpsonEscPos,
        };
        let page = match self.code_page {
            DisplayPage::Pc437 => DisplayCodePage::Pc437,
            DisplayPage::Pc858 => DisplayCodePage::Pc858,
        };
        lines.encode(protocol, page)
    }
}

/// Frames waiting for a display's port.
const FRAME_QUEUE: usize = 8;

/// Runs every display until `shutdown` flips to true.
pub async fn run(
    displays: Vec<DisplayDevice>,
    store: Arc<Store>,
    mut events: broadcast::Receiver<AgentEvent>,
    shutdown: watch::Receiver<bool>,
) {
    if displays.is_empty() {
        return;
    }
    let (status_tx, mut status_rx) = mpsc::channel::<DeviceEvent>(64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut outputs = Vec::new();
    for d in &displays {
        let (frames_tx, frames_rx) = mpsc::channel::<Vec<u8>>(FRAME_QUEUE);
        tasks.spawn(run_output(
            d.port.clone(),
            frames_rx,
            status_tx.clone(),
            stopped(shutdown.clone()),
        ));
        outputs.push((d.clone(), frames_tx));
    }
    drop(status_tx);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(lines) = lines_for(&event, &store).await {
                        for (display, frames) in &outputs {
                            // A display that cannot keep up misses a frame; the next
                            // scan replaces the text anyway.
                            let _ = frames.try_send(display.encode(&lines));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "Display updates skipped.");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(status) = status_rx.recv() => record_status(status, "display", &store).await,
            _ = stopped(shutdown.clone()) => break,
        }
    }
    drop(outputs);
    while tasks.join_next().await.is_some() {}
}

/// What the displays show for an event, if anything.
async fn lines_for(event: &AgentEvent, store: &Store) -> Option<DisplayLines> {
    match event {
        AgentEvent::Scanned { scan, .. } => {
            let gtin14 = scan.gtin14.clone()?;
            let product = store
                .reads()
                .read(move |c| queries::product_by_gtin14(c, &gtin14))
                .await
                .ok()
                .flatten()?;
            let price = Currency::new(&product.currency)
                .map(|c| Money::new(product.price_minor, c).to_string())
                .unwrap_or_default();
            Some(scanned_item(&product.name, &price))
        }
        AgentEvent::CustomerIdentified { customer_id, .. } => {
            let id = customer_id.clone();
            let first: Option<String> = store
                .reads()
                .read(move |c| {
                    Ok(
                        c.prepare_cached("SELECT first_name FROM customers WHERE customer_id = ?1")?
                            .query_row([&id], |r| r.get::<_, Option<String>>(0))
                            .optional()?
                            .flatten(),
                    )
                })
                .await
                .ok()
                .flatten();
            Some(welcome(first.as_deref().unwrap_or("")))
        }
        _ => None,
    }
}

/// Records an output device's state change (`kind`: `display`, `printer`) for
/// `status` and the screens.
pub(crate) async fn record_status(event: DeviceEvent, kind: &str, store: &Store) {
    let DeviceEventKind::Status(state) = event.kind else {
        return;
    };
    let (name, reason) = match state {
        DeviceState::Connected => ("connected", None),
        DeviceState::Disconnected { reason } => ("disconnected", Some(reason)),
        DeviceState::Error { reason } => ("error", Some(reason)),
    };
    let record = DeviceStatusRecord {
        device_id: event.device_id,
        kind: kind.into(),
        state: name.into(),
        reason,
        updated_at_ms: crate::events::now_ms(),
    };
    if let Err(e) = store.set_device_status(record).await {
        tracing::error!(error = %e, kind, "Cannot record an output device's status.");
    }
}
