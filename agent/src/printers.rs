//! The counter's receipt printer: the BOPIS pickup slip and the BORIS return
//! receipt, encoded by `firmware_interfaces::escpos::printer` and written by one
//! output-driver task that owns the printer's serial port.
//!
//! Printing is best effort and never holds up the event it belongs to: the
//! hand-over or return is committed (with its outbox row) first, then the slip is
//! queued; a printer that is gone or full answers "not printed" at once, and the
//! screen says so.

use crate::devices::stopped;
use crate::store::Store;
use firmware_interfaces::drivers::output::{OutputConfig, run_output};
use firmware_interfaces::drivers::status::DeviceEvent;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// `[[devices.printers]]`: one receipt printer (ESC/POS, Epson TM compatible).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterDevice {
    /// The serial port (`[devices.printers.port]`).
    pub port: OutputConfig,
}

/// Slips waiting for the printer.
const SLIP_QUEUE: usize = 8;

/// Where the screens send slips. Cloning is cheap; with no printer configured
/// every print answers `false`.
#[derive(Debug, Clone, Default)]
pub struct Printer {
    slips: Option<mpsc::Sender<Vec<u8>>>,
}

impl Printer {
    /// Whether a printer is configured.
    pub fn configured(&self) -> bool {
        self.slips.is_some()
    }

    /// Queues an encoded slip; `false` when no printer is configured or its queue
    /// is full (it is disconnected or out of paper).
    pub fn print(&self, slip: Vec<u8>) -> bool {
        match &self.slips {
            Some(tx) => tx.try_send(slip).is_ok(),
            None => false,
        }
    }
}

/// The printer handle and the task that drives the first configured printer
/// until `shutdown` (none without a printer).
pub fn start(
    printers: &[PrinterDevice],
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
) -> (Printer, Option<impl Future<Output = ()> + Send + 'static>) {
    let Some(device) = printers.first().cloned() else {
        return (Printer::default(), None);
    };
    if printers.len() > 1 {
        tracing::warn!(
            device_id = %device.port.device_id,
            "Several printers are configured; the counter prints on the first."
        );
    }
    let (slips_tx, slips_rx) = mpsc::channel::<Vec<u8>>(SLIP_QUEUE);
    let task = async move {
        let (status_tx, mut status_rx) = mpsc::channel::<DeviceEvent>(16);
        let driver = tokio::spawn(run_output(
            device.port.clone(),
            slips_rx,
            status_tx,
            stopped(shutdown.clone()),
        ));
        while let Some(status) = status_rx.recv().await {
            crate::displays::record_status(status, "printer", &store).await;
        }
        let _ = driver.await;
    };
    (
        Printer {
            slips: Some(slips_tx),
        },
        Some(task),
    )
}
