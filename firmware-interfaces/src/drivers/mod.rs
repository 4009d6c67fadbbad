//! Device drivers: scanners and card readers on serial ports, TCP sockets and
//! keyboard wedges, turned into [`status::DeviceEvent`]s.
//!
//! A driver reads bytes from one device, cuts them into messages at the configured
//! terminator ([`framing`]; a serial port in raw framing, such as a receipt-printer
//! tap, passes each read on unchanged instead) and reports each complete message, together with the
//! device's connection state, as a [`status::DeviceEvent`]. It does not decode: the
//! agent hands a message to [`crate::scan::decode`] or [`crate::msr::read_card`].
//!
//! **Invariants:**
//!
//! * one task per device: each `run_*` function owns its device for as long as it
//!   runs, reopens it when it goes away, and returns when its shutdown future
//!   completes;
//! * events go out on a bounded `tokio::sync::mpsc` channel, so a slow consumer
//!   slows the driver down (the device and the kernel buffer the bytes) instead of
//!   growing memory;
//! * nothing blocks the async runtime: blocking serial reads run on a dedicated
//!   thread per port; sockets are read with tokio;
//! * no message grows without bound: past [`framing::MAX_MESSAGE_LEN`] bytes without
//!   a terminator the message is dropped and reported as an error status.

pub mod framing;
pub mod keymap;
pub mod output;
pub mod serial;
pub mod status;
pub mod tcp;
pub mod wedge;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use framing::Frame;
use status::{DeviceEvent, DeviceState};

/// A driver configuration value that [`serial::SerialConfig::validate`] or
/// [`tcp::TcpScannerConfig::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device_id:?}: {key}: {message}")]
pub struct ConfigError {
    /// The device whose configuration is wrong.
    pub device_id: String,
    /// The bad key, e.g. `data_bits`.
    pub key: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// The terminators a device may be configured with, as the config file spells them.
const TERMINATORS: [&[u8]; 3] = [b"\r", b"\n", b"\r\n"];

/// The default message terminator: carriage return, what most scanners send.
pub(crate) fn default_terminator() -> Vec<u8> {
    b"\r".to_vec()
}

/// Checks that a terminator is one of `"\r"`, `"\n"`, `"\r\n"`.
pub(crate) fn check_terminator(device_id: &str, terminator: &[u8]) -> Result<(), ConfigError> {
    if TERMINATORS.contains(&terminator) {
        Ok(())
    } else {
        Err(ConfigError {
            device_id: device_id.to_owned(),
            key: "terminator",
            message: format!(
                "{:?} is not accepted; use \"\\r\", \"\\n\" or \"\\r\\n\"",
                String::from_utf8_lossy(terminator)
            ),
        })
    }
}

/// Reads a terminator from the config file: a string, one of `"\r"`, `"\n"`,
/// `"\r\n"`.
pub(crate) fn deserialize_terminator<'de, D>(deserializer: D) -> Result<Vec<u8>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct TerminatorVisitor;

    impl serde::de::Visitor<'_> for TerminatorVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"one of "\r", "\n", "\r\n""#)
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Vec<u8>, E> {
            if TERMINATORS.contains(&value.as_bytes()) {
                Ok(value.as_bytes().to_vec())
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Str(value), &self))
            }
        }
    }

    deserializer.deserialize_str(TerminatorVisitor)
}

/// Sends `event` unless `shutdown` completes first; false when the driver should
/// stop (shut down, or nobody listens any more).
pub(crate) async fn emit<F: Future<Output = ()>>(
    events: &mpsc::Sender<DeviceEvent>,
    event: DeviceEvent,
    shutdown: &mut Pin<&mut F>,
) -> bool {
    tokio::select! {
        () = shutdown => false,
        sent = events.send(event) => sent.is_ok(),
    }
}

/// Why a device's reader thread ended.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The device went away; the reason is for a person.
    Lost(String),
    /// The receiver of events was dropped, or the driver was stopped.
    ReceiverGone,
}

/// Runs `read` (a blocking device read loop) on its own thread named `name`, and
/// waits for it off the runtime. Returns how it ended, or `None` when `shutdown`
/// completed first: the stop flag is then set, and the thread closes the device
/// within one read timeout without anyone waiting for it.
pub(crate) async fn run_reader_thread<F: Future<Output = ()>>(
    name: String,
    read: impl FnOnce(&AtomicBool) -> ReadEnd + Send + 'static,
    shutdown: &mut Pin<&mut F>,
) -> Option<ReadEnd> {
    let stop = Arc::new(AtomicBool::new(false));
    let (end_tx, end_rx) = oneshot::channel();
    let reader = std::thread::Builder::new().name(name).spawn({
        let stop = Arc::clone(&stop);
        move || {
            let _ = end_tx.send(read(&stop));
        }
    });
    match reader {
        Ok(_) => tokio::select! {
            () = shutdown => {
                stop.store(true, Ordering::Relaxed);
                None
            }
            end = end_rx => Some(end.unwrap_or(ReadEnd::ReceiverGone)),
        },
        Err(error) => Some(ReadEnd::Lost(format!("cannot start the reader thread: {error}"))),
    }
}

/// The event that reports `frame`.
pub(crate) fn frame_event(device_id: &str, frame: Frame) -> DeviceEvent {
    match frame {
        Frame::Message(message) => DeviceEvent::data(device_id, message),
        Frame::TooLong { limit } => DeviceEvent::status(
            device_id,
            DeviceState::Error {
                reason: format!("a message longer than {limit} bytes without terminator was dropped"),
            },
        ),
    }
}
