//! Serial scanners and card readers (RS-232, USB CDC-ACM, USB-serial adapters).
//!
//! [`run_serial`] owns one port: it opens it, reads messages from it, reports them
//! and the port's state as [`DeviceEvent`]s, and when the device goes away (USB
//! unplugged, adapter reset, the udev symlink removed) it reports `Disconnected` and
//! tries to reopen the configured path every [`SerialConfig::reopen_interval_ms`]
//! until the device is back.
//!
//! A port is read in one of two [`Framing`]s: `lines` (scanners and card readers:
//! messages cut at the terminator, see [`super::framing`]) or `raw` (a receipt
//! printer's stream tapped for the journal: no terminator, binary image data, so
//! every read is forwarded as it came).
//!
//! **Invariants:** one task per port. Serial reads block, so they run on a dedicated
//! std thread per open port, with a short read timeout so the thread sees the stop
//! flag and the inter-byte timeout; the thread forwards events with `blocking_send`
//! on the bounded channel and the async task only waits. Opening a port (which may
//! block on a misbehaving driver) runs on tokio's blocking pool. The port is opened
//! exclusively, so two agents never read the same scanner.

use std::future::Future;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::framing::{MAX_MESSAGE_LEN, MessageSplitter};
use super::status::{DeviceEvent, DeviceState};
// `emit` is shared by every driver; it lived here first and the wedge driver
// imports it from here.
pub(crate) use super::emit;
use super::{
    ConfigError, ReadEnd, check_terminator, default_terminator, deserialize_terminator, frame_event,
    run_reader_thread,
};

/// The parity bit of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// No parity bit (what nearly every scanner uses).
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// How the bytes read from a port become [`DeviceEvent`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Messages end at the terminator (or after the inter-byte timeout); each
    /// complete message is one `Data` event, at most
    /// [`MAX_MESSAGE_LEN`] bytes. What scanners and card readers need.
    #[default]
    Lines,
    /// Every read is one `Data` event, bytes unchanged and in order, however long
    /// the stream (a printer stream has no terminator and carries binary image
    /// data); `terminator` and `inter_byte_timeout_ms` are ignored.
    Raw,
}

/// One serial device, from the agent's configuration (`[[devices.serial]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The device's id in events and on the health screen. Required.
    pub device_id: String,
    /// The port, preferably a stable udev symlink (`/dev/serial/by-id/…` or one
    /// from the package's udev rules) so the device is found again after a replug.
    /// Required.
    pub path: PathBuf,
    /// Line speed in bits per second. Default: 9600.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Data bits per character, 5 to 8. Default: 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Parity: `none`, `odd` or `even`. Default: `none`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 or 2. Default: 1.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// What ends a message: `"\r"`, `"\n"` or `"\r\n"`. Default: `"\r"`.
    #[serde(default = "default_terminator", deserialize_with = "deserialize_terminator")]
    pub terminator: Vec<u8>,
    /// Milliseconds of silence after which bytes without a terminator are taken as
    /// a complete message (for scanners configured without a suffix); 0 = wait for
    /// the terminator forever. Default: 50.
    #[serde(default = "default_inter_byte_timeout_ms")]
    pub inter_byte_timeout_ms: u64,
    /// Milliseconds between attempts to reopen a port that is gone. Default: 1000.
    #[serde(default = "default_reopen_interval_ms")]
    pub reopen_interval_ms: u64,
    /// How the stream is cut into messages: `lines` (at the terminator) or `raw`
    /// (every read as it came, for a printer's journal tap). Default: `lines`.
    #[serde(default)]
    pub framing: Framing,
}

fn default_baud() -> u32 {
    9600
}

fn default_data_bits() -> u8 {
    8
}

fn default_stop_bits() -> u8 {
    1
}

fn default_inter_byte_timeout_ms() -> u64 {
    50
}

fn default_reopen_interval_ms() -> u64 {
    1000
}

impl SerialConfig {
    /// A configuration for `path` with every default, named `device_id`.
    pub fn new(device_id: impl Into<String>, path: impl Into<PathBuf>) -> SerialConfig {
        SerialConfig {
            device_id: device_id.into(),
            path: path.into(),
            baud: default_baud(),
            data_bits: default_data_bits(),
            parity: Parity::None,
            stop_bits: default_stop_bits(),
            terminator: default_terminator(),
            inter_byte_timeout_ms: default_inter_byte_timeout_ms(),
            reopen_interval_ms: default_reopen_interval_ms(),
            framing: Framing::Lines,
        }
    }

    /// Checks the configuration; the error names the device and the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |key, message: &str| ConfigError {
            device_id: self.device_id.clone(),
            key,
            message: message.to_owned(),
        };
        if self.device_id.trim().is_empty() {
            return Err(error("device_id", "must not be empty"));
        }
        if self.path.as_os_str().is_empty() {
            return Err(error("path", "must name the port, e.g. /dev/ttyACM0"));
        }
        if self.baud == 0 {
            return Err(error("baud", "must be more than 0, e.g. 9600"));
        }
        if !(5..=8).contains(&self.data_bits) {
            return Err(error("data_bits", "must be 5, 6, 7 or 8"));
        }
        if !matches!(self.stop_bits, 1 | 2) {
            return Err(error("stop_bits", "must be 1 or 2"));
        }
        if self.framing == Framing::Lines {
            check_terminator(&self.device_id, &self.terminator)?;
        }
        if self.reopen_interval_ms == 0 {
            return Err(error("reopen_interval_ms", "must be more than 0, e.g. 1000"));
        }
        Ok(())
    }

    /// How long one blocking read waits: short enough to honour the inter-byte
    /// timeout and to see the stop flag promptly.
    fn read_timeout(&self) -> Duration {
        let ms = match (self.framing, self.inter_byte_timeout_ms) {
            (Framing::Raw, _) | (Framing::Lines, 0) => 100,
            (Framing::Lines, t) => (t / 2).clamp(5, 100),
        };
        Duration::from_millis(ms)
    }
}

/// Reads the serial device of `config` until `shutdown` completes, sending its
/// messages and state changes on `events`; see the module docs.
///
/// Reports `Connected` each time the port opens, `Disconnected` when it goes away
/// or cannot be opened (once, not at every retry), and `Error` when a message
/// longer than [`MAX_MESSAGE_LEN`] bytes was dropped (in [`Framing::Lines`]; in
/// [`Framing::Raw`] every read is sent as one `Data` event and nothing is dropped). Returns when `shutdown`
/// completes or when the receiver of `events` is dropped. The configuration should
/// have passed [`SerialConfig::validate`]; an invalid one is reported as an `Error`
/// status and the function returns.
pub async fn run_serial(
    config: SerialConfig,
    events: mpsc::Sender<DeviceEvent>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let id = config.device_id.clone();
    if let Err(error) = config.validate() {
        let state = DeviceState::Error {
            reason: error.to_string(),
        };
        emit(&events, DeviceEvent::status(&id, state), &mut shutdown).await;
        return;
    }
    let config = Arc::new(config);
    let reopen_interval = Duration::from_millis(config.reopen_interval_ms);
    // Whether `Disconnected` was the last state sent, so that a device that stays
    // away is reported once, not at every attempt to reopen it.
    let mut reported_disconnected = false;

    loop {
        let opening = tokio::task::spawn_blocking({
            let config = Arc::clone(&config);
            move || open_port(&config)
        });
        let opened = tokio::select! {
            () = &mut shutdown => return,
            opened = opening => opened,
        };
        match opened {
            Ok(Ok(port)) => {
                let connected = DeviceEvent::status(&id, DeviceState::Connected);
                if !emit(&events, connected, &mut shutdown).await {
                    return;
                }
                let read = {
                    let (config, events) = (Arc::clone(&config), events.clone());
                    move |stop: &AtomicBool| read_port(port, &config, &events, stop)
                };
                // On shutdown the thread sees the flag within one read timeout and
                // closes the port. (A thread blocked on a full channel ends when its
                // receiver is dropped.)
                let Some(end) = run_reader_thread(format!("serial {id}"), read, &mut shutdown).await else {
                    return;
                };
                // From here on the last state sent is `Disconnected`.
                match end {
                    ReadEnd::ReceiverGone => return,
                    ReadEnd::Lost(reason) => {
                        reported_disconnected = true;
                        let state = DeviceState::Disconnected { reason };
                        if !emit(&events, DeviceEvent::status(&id, state), &mut shutdown).await {
                            return;
                        }
                    }
                }
            }
            Ok(Err(error)) if !reported_disconnected => {
                reported_disconnected = true;
                let reason = format!("cannot open {}: {error}", config.path.display());
                let state = DeviceState::Disconnected { reason };
                if !emit(&events, DeviceEvent::status(&id, state), &mut shutdown).await {
                    return;
                }
            }
            Ok(Err(_)) => {}
            Err(join_error) => {
                let reason = format!("opening the port failed: {join_error}");
                let state = DeviceState::Error { reason };
                if !emit(&events, DeviceEvent::status(&id, state), &mut shutdown).await {
                    return;
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(reopen_interval) => {}
        }
    }
}

/// Opens the port with the configured line settings (blocking).
fn open_port(config: &SerialConfig) -> serialport::Result<serialport::TTYPort> {
    open_line(
        &config.path,
        LineSettings {
            baud: config.baud,
            data_bits: config.data_bits,
            parity: config.parity,
            stop_bits: config.stop_bits,
        },
        config.read_timeout(),
    )
}

/// The line settings of a serial port, shared by the input and output drivers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineSettings {
    pub(crate) baud: u32,
    pub(crate) data_bits: u8,
    pub(crate) parity: Parity,
    pub(crate) stop_bits: u8,
}

/// Opens `path` exclusively with `line` settings, no flow control, and `timeout`
/// for each read or write.
pub(crate) fn open_line(
    path: &std::path::Path,
    line: LineSettings,
    timeout: Duration,
) -> serialport::Result<serialport::TTYPort> {
    let parity = match line.parity {
        Parity::None => serialport::Parity::None,
        Parity::Odd => serialport::Parity::Odd,
        Parity::Even => serialport::Parity::Even,
    };
    let data_bits = match line.data_bits {
        5 => serialport::DataBits::Five,
        6 => serialport::DataBits::Six,
        7 => serialport::DataBits::Seven,
        _ => serialport::DataBits::Eight,
    };
    let stop_bits = match line.stop_bits {
        2 => serialport::StopBits::Two,
        _ => serialport::StopBits::One,
    };
    serialport::new(path.to_string_lossy(), line.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(serialport::FlowControl::None)
        .timeout(timeout)
        .open_native()
}

/// How many reads in a row may return no byte and no error before the device is
/// taken as gone (a hung-up line reads as end of file).
const MAX_EMPTY_READS: u32 = 3;

/// How often the reader checks that the configured path still exists: a removed
/// udev symlink means the device was unplugged even if the old descriptor still
/// reads nothing.
const PATH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Reads `port` until the device goes away, the stop flag is set or nobody listens
/// (blocking: runs on the port's own thread).
fn read_port(
    port: serialport::TTYPort,
    config: &SerialConfig,
    events: &mpsc::Sender<DeviceEvent>,
    stop: &AtomicBool,
) -> ReadEnd {
    match config.framing {
        Framing::Lines => read_lines(port, config, events, stop),
        Framing::Raw => read_raw(port, config, events, stop),
    }
}

/// [`read_port`] in [`Framing::Raw`]: every non-empty read is forwarded as it came.
fn read_raw(
    mut port: serialport::TTYPort,
    config: &SerialConfig,
    events: &mpsc::Sender<DeviceEvent>,
    stop: &AtomicBool,
) -> ReadEnd {
    let id = config.device_id.as_str();
    let mut buf = vec![0u8; RAW_READ_LEN];
    let mut empty_reads = 0;
    let mut path_checked_at = Instant::now();

    while !stop.load(Ordering::Relaxed) {
        match port.read(&mut buf) {
            Ok(0) => {
                empty_reads += 1;
                if empty_reads >= MAX_EMPTY_READS {
                    return ReadEnd::Lost("the device stopped answering (end of file)".into());
                }
            }
            Ok(n) => {
                empty_reads = 0;
                if events
                    .blocking_send(DeviceEvent::data(id, buf[..n].to_vec()))
                    .is_err()
                {
                    return ReadEnd::ReceiverGone;
                }
            }
            Err(error) if is_transient(error.kind()) => {}
            Err(error) => return ReadEnd::Lost(format!("read failed: {error}")),
        }
        if path_checked_at.elapsed() >= PATH_CHECK_INTERVAL {
            path_checked_at = Instant::now();
            if let Some(reason) = path_gone(&config.path) {
                return ReadEnd::Lost(reason);
            }
        }
    }
    ReadEnd::ReceiverGone
}

/// The largest chunk one raw read hands over (a printer stream's image data comes
/// in large writes; fewer, larger events keep the channel short).
const RAW_READ_LEN: usize = 4096;

/// [`read_port`] in [`Framing::Lines`]: messages cut at the terminator.
fn read_lines(
    mut port: serialport::TTYPort,
    config: &SerialConfig,
    events: &mpsc::Sender<DeviceEvent>,
    stop: &AtomicBool,
) -> ReadEnd {
    let id = config.device_id.as_str();
    let inter_byte_timeout = match config.inter_byte_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let mut splitter = MessageSplitter::new(&config.terminator, MAX_MESSAGE_LEN);
    let mut frames = Vec::new();
    let mut buf = [0u8; 1024];
    let mut empty_reads = 0;
    let mut last_byte_at = Instant::now();
    let mut path_checked_at = Instant::now();

    while !stop.load(Ordering::Relaxed) {
        match port.read(&mut buf) {
            Ok(0) => {
                empty_reads += 1;
                if empty_reads >= MAX_EMPTY_READS {
                    return ReadEnd::Lost("the device stopped answering (end of file)".into());
                }
            }
            Ok(n) => {
                empty_reads = 0;
                last_byte_at = Instant::now();
                splitter.push(&buf[..n], &mut frames);
            }
            Err(error) if is_transient(error.kind()) => {}
            Err(error) => return ReadEnd::Lost(format!("read failed: {error}")),
        }
        if let Some(timeout) = inter_byte_timeout
            && splitter.has_pending()
            && last_byte_at.elapsed() >= timeout
        {
            frames.extend(splitter.flush());
        }
        for frame in frames.drain(..) {
            if events.blocking_send(frame_event(id, frame)).is_err() {
                return ReadEnd::ReceiverGone;
            }
        }
        if path_checked_at.elapsed() >= PATH_CHECK_INTERVAL {
            path_checked_at = Instant::now();
            if let Some(reason) = path_gone(&config.path) {
                return ReadEnd::Lost(reason);
            }
        }
    }
    ReadEnd::ReceiverGone
}

/// Errors after which the next read may well succeed.
fn is_transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
    )
}

/// Why the configured path no longer leads to a device, if it does not.
fn path_gone(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(_) => None,
        Err(error) if error.kind() == ErrorKind::NotFound => Some(format!("{} disappeared", path.display())),
        // Anything else (a permission change, say) is not proof the device is gone.
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_like_json: &str) -> Result<SerialConfig, serde_json::Error> {
        serde_json::from_str(toml_like_json)
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let config = parse(r#"{"device_id": "s1", "path": "/dev/ttyACM0"}"#).unwrap();
        assert_eq!(config, SerialConfig::new("s1", "/dev/ttyACM0"));
        assert_eq!(config.baud, 9600);
        assert_eq!(config.terminator, b"\r");
        assert_eq!(config.inter_byte_timeout_ms, 50);
        assert_eq!(config.framing, Framing::Lines);
        config.validate().unwrap();
    }

    #[test]
    fn raw_framing_is_read_and_ignores_the_terminator() {
        let config = parse(r#"{"device_id": "p1", "path": "/dev/x", "framing": "raw"}"#).unwrap();
        assert_eq!(config.framing, Framing::Raw);
        config.validate().unwrap();
        let mut spoiled = config.clone();
        spoiled.terminator = b";".to_vec();
        spoiled.validate().unwrap();
        let error = parse(r#"{"device_id": "p1", "path": "/dev/x", "framing": "bytes"}"#).unwrap_err();
        assert!(error.to_string().contains("raw"), "{error}");
    }

    #[test]
    fn terminators_and_parity_are_read() {
        let config = parse(
            r#"{"device_id": "s1", "path": "/dev/x", "terminator": "\r\n", "parity": "even",
                "data_bits": 7, "stop_bits": 2}"#,
        )
        .unwrap();
        assert_eq!(config.terminator, b"\r\n");
        assert_eq!(config.parity, Parity::Even);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_terminators_are_refused() {
        let error = parse(r#"{"device_id": "s1", "path": "/dev/x", "bauds": 1}"#).unwrap_err();
        assert!(error.to_string().contains("bauds"), "{error}");
        let error = parse(r#"{"device_id": "s1", "path": "/dev/x", "terminator": "\t"}"#).unwrap_err();
        assert!(error.to_string().contains(r#"one of "\r""#), "{error}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        /// Makes one key of a valid configuration invalid.
        type Spoil = fn(&mut SerialConfig);

        let cases: [(&str, Spoil); 7] = [
            ("device_id", |c| c.device_id.clear()),
            ("path", |c| c.path = PathBuf::new()),
            ("baud", |c| c.baud = 0),
            ("data_bits", |c| c.data_bits = 9),
            ("stop_bits", |c| c.stop_bits = 3),
            ("terminator", |c| c.terminator = b";".to_vec()),
            ("reopen_interval_ms", |c| c.reopen_interval_ms = 0),
        ];
        for (key, spoil) in cases {
            let mut config = SerialConfig::new("s1", "/dev/x");
            spoil(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
    }

    #[tokio::test]
    async fn missing_port_is_reported_disconnected_once_and_shutdown_stops() {
        let mut config = SerialConfig::new("s1", "/nonexistent/serial-port");
        config.reopen_interval_ms = 10;
        let (tx, mut rx) = mpsc::channel(8);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(run_serial(config, tx, async {
            let _ = stop_rx.await;
        }));
        let first = rx.recv().await.unwrap();
        assert!(
            matches!(&first.kind, super::super::status::DeviceEventKind::Status(DeviceState::Disconnected { reason })
                if reason.contains("/nonexistent/serial-port")),
            "{first:?}"
        );
        // Several reopen attempts later, nothing more was reported.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
        stop_tx.send(()).unwrap();
        driver.await.unwrap();
    }
}
