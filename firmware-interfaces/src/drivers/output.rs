//! Output devices on serial ports: customer line displays and receipt printers.
//!
//! [`run_output`] owns one port: it opens it, writes each frame it receives (a
//! complete command sequence from [`crate::escpos::display_two_lines`],
//! [`crate::escpos::ReceiptBuilder`], [`crate::escpos::pickup_slip`] …) to it, and
//! reports the port's state as [`DeviceEvent`]s. When the device goes away (a write
//! fails, or the configured path disappears) it reports `Disconnected` and tries to
//! reopen the path every [`OutputConfig::reopen_interval_ms`] until it is back.
//!
//! **Frames that arrive while the device is away** are kept in a queue of at most
//! [`OutputConfig::queue_while_disconnected`] frames (0 to [`MAX_QUEUE`]); when the
//! queue is full the oldest frame is dropped and reported as an `Error` status. When
//! the port opens again the queue is written first, oldest first. The default, 1,
//! fits both devices: a line display only needs the latest text (every display
//! frame clears and rewrites both lines), and a printer prints at most the last
//! slip, not a backlog of slips the counter has long forgotten. Set it to 0 for a
//! printer that should print nothing that was asked for while it was away.
//!
//! **Invariants:**
//!
//! * one task per port; frames are written whole and in the order received, one
//!   at a time: the next frame is taken from the channel only when the previous
//!   one has been handed to the device, so a slow device slows its producer down
//!   (bounded channel) instead of growing memory;
//! * nothing blocks the async runtime: opening the port, every write and every
//!   check of the path run on tokio's blocking pool, and a write waits at most
//!   [`OutputConfig::write_timeout_ms`] for the device to take more bytes (a
//!   device that stops taking bytes is taken as gone);
//! * states are reported on a change, never at every retry: `Connected` each time
//!   the port opens, `Disconnected` once per outage;
//! * a frame whose write failed counts as not written: it goes back to the head of
//!   the queue (within the same limit) and is written again, whole, after the
//!   reconnect. A display is then right again; a printer may print the start of
//!   that slip twice, which beats losing it silently;
//! * dropped frames are reported without their content: an `Error` status at the
//!   first drop of an outage, and one more naming how many followed it when the
//!   port opens again, so a display updated at every scan does not flood the
//!   health screen during a long outage.
//!
//! A device that goes away while its path stays (a hung-up line behind a fixed
//! `/dev/ttyUSB0`) is noticed at the next write, when that write fails. Frames
//! still queued when the driver stops are discarded.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::ConfigError;
use super::emit;
use super::serial::Parity;
use super::status::{DeviceEvent, DeviceState};

/// The most frames [`OutputConfig::queue_while_disconnected`] may keep.
pub const MAX_QUEUE: usize = 16;

/// The most bytes handed to the port in one `write`. The port waits (up to the
/// write timeout) until the device can take more bytes, but a blocking tty write
/// larger than the room the device has left would then wait without that limit;
/// small pieces fit the room a writable tty has.
const WRITE_CHUNK: usize = 64;

/// How often an idle, open port checks that its configured path still exists: a
/// removed udev symlink means the device was unplugged.
const PATH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// One output device, from the agent's configuration (`[[devices.output]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
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
    /// Milliseconds between attempts to reopen a port that is gone. Default: 1000.
    #[serde(default = "default_reopen_interval_ms")]
    pub reopen_interval_ms: u64,
    /// Milliseconds one write may wait for the device to take more bytes before the
    /// device is taken as gone. Default: 2000.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// How many frames to keep while the device is away, 0 to [`MAX_QUEUE`]; the
    /// oldest is dropped when more arrive. Default: 1 (the latest frame only; see
    /// the module docs).
    #[serde(default = "default_queue_while_disconnected")]
    pub queue_while_disconnected: usize,
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

fn default_reopen_interval_ms() -> u64 {
    1000
}

fn default_write_timeout_ms() -> u64 {
    2000
}

fn default_queue_while_disconnected() -> usize {
    1
}

impl OutputConfig {
    /// A configuration for `path` with every default, named `device_id`.
    pub fn new(device_id: impl Into<String>, path: impl Into<PathBuf>) -> OutputConfig {
        OutputConfig {
            device_id: device_id.into(),
            path: path.into(),
            baud: default_baud(),
            data_bits: default_data_bits(),
            parity: Parity::None,
            stop_bits: default_stop_bits(),
            reopen_interval_ms: default_reopen_interval_ms(),
            write_timeout_ms: default_write_timeout_ms(),
            queue_while_disconnected: default_queue_while_disconnected(),
        }
    }

    /// Checks the configuration; the error names the device and the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |key, message: String| ConfigError {
            device_id: self.device_id.clone(),
            key,
            message,
        };
        if self.device_id.trim().is_empty() {
            return Err(error("device_id", "must not be empty".into()));
        }
        if self.path.as_os_str().is_empty() {
            return Err(error("path", "must name the port, e.g. /dev/ttyUSB0".into()));
        }
        if self.baud == 0 {
            return Err(error("baud", "must be more than 0, e.g. 9600".into()));
        }
        if !(5..=8).contains(&self.data_bits) {
            return Err(error("data_bits", "must be 5, 6, 7 or 8".into()));
        }
        if !matches!(self.stop_bits, 1 | 2) {
            return Err(error("stop_bits", "must be 1 or 2".into()));
        }
        if self.reopen_interval_ms == 0 {
            return Err(error(
                "reopen_interval_ms",
                "must be more than 0, e.g. 1000".into(),
            ));
        }
        if self.write_timeout_ms == 0 {
            return Err(error("write_timeout_ms", "must be more than 0, e.g. 2000".into()));
        }
        if self.queue_while_disconnected > MAX_QUEUE {
            return Err(error(
                "queue_while_disconnected",
                format!("must be 0 to {MAX_QUEUE}"),
            ));
        }
        Ok(())
    }
}

/// Writes the frames received on `frames` to the output device of `config` until
/// `shutdown` completes or `frames` is closed, sending the device's state changes
/// on `status`; see the module docs.
///
/// Reports `Connected` each time the port opens, `Disconnected` when it goes away
/// or cannot be opened (once, not at every retry), and `Error` when frames were
/// dropped while the device was away. Also returns when the receiver of `status`
/// is dropped. Frames still queued when it returns are discarded. The
/// configuration should have passed [`OutputConfig::validate`]; an invalid one is
/// reported as an `Error` status and the function returns.
pub async fn run_output(
    config: OutputConfig,
    mut frames: mpsc::Receiver<Vec<u8>>,
    status: mpsc::Sender<DeviceEvent>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let id = config.device_id.clone();
    if let Err(error) = config.validate() {
        let state = DeviceState::Error {
            reason: error.to_string(),
        };
        emit(&status, DeviceEvent::status(&id, state), &mut shutdown).await;
        return;
    }
    let config = Arc::new(config);
    let mut queue = Backlog::new(&config);
    // Whether `Disconnected` was the last state sent, so that a device that stays
    // away is reported once, not at every attempt to reopen it.
    let mut reported_disconnected = false;

    loop {
        let Some(port) = reconnect(
            &config,
            &mut reported_disconnected,
            &mut frames,
            &status,
            &mut queue,
            &mut shutdown,
        )
        .await
        else {
            return;
        };
        let connected = DeviceEvent::status(&id, DeviceState::Connected);
        if !emit(&status, connected, &mut shutdown).await {
            return;
        }
        if let Some(reason) = queue.end_outage()
            && !emit(&status, error_event(&id, reason), &mut shutdown).await
        {
            return;
        }
        let Some(reason) = serve(port, &config, &mut frames, &status, &mut queue, &mut shutdown).await else {
            return;
        };
        reported_disconnected = true;
        let state = DeviceState::Disconnected { reason };
        if !emit(&status, DeviceEvent::status(&id, state), &mut shutdown).await {
            return;
        }
    }
}

/// The frames kept while the device is away, and what was dropped from them.
#[derive(Debug)]
struct Backlog {
    frames: VecDeque<Vec<u8>>,
    limit: usize,
    /// The port, for the reports.
    path: PathBuf,
    /// Whether a drop was already reported in this outage.
    drop_reported: bool,
    /// Drops in this outage not yet reported.
    unreported: usize,
}

impl Backlog {
    fn new(config: &OutputConfig) -> Backlog {
        Backlog {
            frames: VecDeque::with_capacity(config.queue_while_disconnected),
            limit: config.queue_while_disconnected,
            path: config.path.clone(),
            drop_reported: false,
            unreported: 0,
        }
    }

    /// Adds `frame` at the back (a new frame) or the front (one whose write failed)
    /// and drops the oldest beyond the limit; returns what to report now, if
    /// anything.
    fn push(&mut self, frame: Vec<u8>, at_front: bool) -> Option<String> {
        if at_front {
            self.frames.push_front(frame);
        } else {
            self.frames.push_back(frame);
        }
        let mut dropped = 0;
        while self.frames.len() > self.limit {
            self.frames.pop_front();
            dropped += 1;
        }
        if dropped == 0 {
            return None;
        }
        if self.drop_reported {
            self.unreported += dropped;
            return None;
        }
        self.drop_reported = true;
        Some(format!(
            "{dropped} {} dropped while {} is not connected (queue_while_disconnected = {})",
            frames_word(dropped),
            self.path.display(),
            self.limit
        ))
    }

    /// The next frame to write after a reconnect, oldest first.
    fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// Ends the outage: what to report about drops not yet reported, if any.
    fn end_outage(&mut self) -> Option<String> {
        let unreported = std::mem::take(&mut self.unreported);
        self.drop_reported = false;
        (unreported > 0).then(|| {
            format!(
                "{unreported} more {} dropped while {} was not connected",
                frames_word(unreported),
                self.path.display()
            )
        })
    }
}

fn frames_word(n: usize) -> &'static str {
    if n == 1 { "frame was" } else { "frames were" }
}

fn error_event(device_id: &str, reason: String) -> DeviceEvent {
    DeviceEvent::status(device_id, DeviceState::Error { reason })
}

/// Queues `frame` while the device is away; false when the driver should stop.
async fn queue_frame<F: Future<Output = ()>>(
    queue: &mut Backlog,
    frame: Vec<u8>,
    at_front: bool,
    device_id: &str,
    status: &mpsc::Sender<DeviceEvent>,
    shutdown: &mut Pin<&mut F>,
) -> bool {
    match queue.push(frame, at_front) {
        Some(reason) => emit(status, error_event(device_id, reason), shutdown).await,
        None => true,
    }
}

/// Opens the port, retrying every reopen interval and queueing the frames that
/// arrive meanwhile; `None` when the driver should stop. `reported_disconnected`
/// says whether `Disconnected` was already sent for this outage; a failed open
/// sends it otherwise, once.
async fn reconnect<F: Future<Output = ()>>(
    config: &Arc<OutputConfig>,
    reported_disconnected: &mut bool,
    frames: &mut mpsc::Receiver<Vec<u8>>,
    status: &mpsc::Sender<DeviceEvent>,
    queue: &mut Backlog,
    shutdown: &mut Pin<&mut F>,
) -> Option<serialport::TTYPort> {
    let id = config.device_id.as_str();
    let reopen_interval = Duration::from_millis(config.reopen_interval_ms);
    loop {
        let mut opening = tokio::task::spawn_blocking({
            let config = Arc::clone(config);
            move || open_port(&config)
        });
        let opened = loop {
            tokio::select! {
                () = &mut *shutdown => return None,
                opened = &mut opening => break opened,
                frame = frames.recv() => {
                    let frame = frame?;
                    if !queue_frame(queue, frame, false, id, status, shutdown).await {
                        return None;
                    }
                }
            }
        };
        match opened {
            Ok(Ok(port)) => return Some(port),
            Ok(Err(error)) => {
                if !*reported_disconnected {
                    *reported_disconnected = true;
                    let reason = format!("cannot open {}: {error}", config.path.display());
                    let state = DeviceState::Disconnected { reason };
                    if !emit(status, DeviceEvent::status(id, state), shutdown).await {
                        return None;
                    }
                }
            }
            Err(join_error) => {
                let reason = format!("opening the port failed: {join_error}");
                if !emit(status, error_event(id, reason), shutdown).await {
                    return None;
                }
            }
        }
        let sleep = tokio::time::sleep(reopen_interval);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut *shutdown => return None,
                () = &mut sleep => break,
                frame = frames.recv() => {
                    let frame = frame?;
                    if !queue_frame(queue, frame, false, id, status, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Writes frames to the open `port`, the queued ones first, until the device goes
/// away (`Some(reason)`) or the driver should stop (`None`).
async fn serve<F: Future<Output = ()>>(
    mut port: serialport::TTYPort,
    config: &OutputConfig,
    frames: &mut mpsc::Receiver<Vec<u8>>,
    status: &mpsc::Sender<DeviceEvent>,
    queue: &mut Backlog,
    shutdown: &mut Pin<&mut F>,
) -> Option<String> {
    let id = config.device_id.as_str();
    let mut path_check = tokio::time::interval(PATH_CHECK_INTERVAL);
    path_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = match queue.pop() {
            Some(frame) => frame,
            None => tokio::select! {
                () = &mut *shutdown => return close(port),
                frame = frames.recv() => match frame {
                    Some(frame) => frame,
                    None => return close(port),
                },
                _ = path_check.tick() => {
                    if let Some(reason) = path_gone(&config.path).await {
                        return lost(port, reason);
                    }
                    continue;
                }
            },
        };
        let writing = tokio::task::spawn_blocking(move || {
            let written = write_frame(&mut port, &frame).map_err(|error| error.to_string());
            (port, frame, written)
        });
        let (returned, frame, written) = tokio::select! {
            // The blocking pool finishes the frame (each piece waits at most the
            // write timeout), so the device never gets a command cut in half,
            // then closes the port; nobody needs to wait for that.
            () = &mut *shutdown => return None,
            joined = writing => match joined {
                Ok(outcome) => outcome,
                Err(join_error) => return Some(format!("writing to the port failed: {join_error}")),
            },
        };
        port = returned;
        if let Err(error) = written {
            if !queue_frame(queue, frame, true, id, status, shutdown).await {
                close(port);
                return None;
            }
            return lost(port, format!("write failed: {error}"));
        }
    }
}

/// Writes all of `frame` to `port` (blocking), in pieces of at most
/// [`WRITE_CHUNK`] bytes, each waiting at most the port's timeout for room.
fn write_frame(port: &mut serialport::TTYPort, frame: &[u8]) -> std::io::Result<()> {
    for chunk in frame.chunks(WRITE_CHUNK) {
        port.write_all(chunk)?;
    }
    Ok(())
}

/// Closes `port` on the blocking pool (closing a tty may wait for its output to
/// drain) and tells the caller to stop.
fn close(port: serialport::TTYPort) -> Option<String> {
    drop(tokio::task::spawn_blocking(move || drop(port)));
    None
}

/// Closes `port` on the blocking pool and reports it lost for `reason`.
fn lost(port: serialport::TTYPort, reason: String) -> Option<String> {
    close(port);
    Some(reason)
}

/// Opens the port with the configured line settings (blocking).
fn open_port(config: &OutputConfig) -> serialport::Result<serialport::TTYPort> {
    super::serial::open_line(
        &config.path,
        super::serial::LineSettings {
            baud: config.baud,
            data_bits: config.data_bits,
            parity: config.parity,
            stop_bits: config.stop_bits,
        },
        Duration::from_millis(config.write_timeout_ms),
    )
}

/// Why the configured path no longer leads to a device, if it does not (the
/// lookup runs on the blocking pool).
async fn path_gone(path: &Path) -> Option<String> {
    let path = path.to_owned();
    let looked_up = tokio::task::spawn_blocking({
        let path = path.clone();
        move || std::fs::metadata(path)
    });
    match looked_up.await {
        Ok(Err(error)) if error.kind() == ErrorKind::NotFound => {
            Some(format!("{} disappeared", path.display()))
        }
        // Anything else (a permission change, say) is not proof the device is gone.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<OutputConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let config = parse(r#"{"device_id": "pole", "path": "/dev/ttyUSB0"}"#).unwrap();
        assert_eq!(config, OutputConfig::new("pole", "/dev/ttyUSB0"));
        assert_eq!(config.baud, 9600);
        assert_eq!(config.reopen_interval_ms, 1000);
        assert_eq!(config.write_timeout_ms, 2000);
        assert_eq!(config.queue_while_disconnected, 1);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = parse(r#"{"device_id": "p", "path": "/dev/x", "terminator": "\r"}"#).unwrap_err();
        assert!(error.to_string().contains("terminator"), "{error}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        /// Makes one key of a valid configuration invalid.
        type Spoil = fn(&mut OutputConfig);

        let cases: [(&str, Spoil); 8] = [
            ("device_id", |c| c.device_id.clear()),
            ("path", |c| c.path = PathBuf::new()),
            ("baud", |c| c.baud = 0),
            ("data_bits", |c| c.data_bits = 4),
            ("stop_bits", |c| c.stop_bits = 0),
            ("reopen_interval_ms", |c| c.reopen_interval_ms = 0),
            ("write_timeout_ms", |c| c.write_timeout_ms = 0),
            ("queue_while_disconnected", |c| {
                c.queue_while_disconnected = MAX_QUEUE + 1
            }),
        ];
        for (key, spoil) in cases {
            let mut config = OutputConfig::new("p", "/dev/x");
            spoil(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
        let mut config = OutputConfig::new("p", "/dev/x");
        config.queue_while_disconnected = 0;
        config.validate().unwrap();
    }

    #[test]
    fn backlog_keeps_the_newest_and_reports_drops_once_per_outage() {
        let mut config = OutputConfig::new("p", "/dev/x");
        config.queue_while_disconnected = 2;
        let mut backlog = Backlog::new(&config);
        assert_eq!(backlog.push(vec![1], false), None);
        assert_eq!(backlog.push(vec![2], false), None);
        let first = backlog.push(vec![3], false).unwrap();
        assert!(first.starts_with("1 frame was dropped"), "{first}");
        assert_eq!(backlog.push(vec![4], false), None);
        assert_eq!(backlog.push(vec![5], false), None);
        let rest = backlog.end_outage().unwrap();
        assert!(rest.starts_with("2 more frames were dropped"), "{rest}");
        assert_eq!(backlog.pop(), Some(vec![4]));
        assert_eq!(backlog.pop(), Some(vec![5]));
        assert_eq!(backlog.pop(), None);
        assert_eq!(backlog.end_outage(), None);
    }

    #[test]
    fn a_failed_frame_goes_back_to_the_head_within_the_limit() {
        let mut config = OutputConfig::new("p", "/dev/x");
        config.queue_while_disconnected = 0;
        let mut backlog = Backlog::new(&config);
        assert!(backlog.push(vec![1], true).is_some());
        assert_eq!(backlog.pop(), None);

        config.queue_while_disconnected = 2;
        let mut backlog = Backlog::new(&config);
        backlog.push(vec![2], false);
        backlog.push(vec![1], true);
        assert_eq!(backlog.pop(), Some(vec![1]));
        assert_eq!(backlog.pop(), Some(vec![2]));
    }
}
