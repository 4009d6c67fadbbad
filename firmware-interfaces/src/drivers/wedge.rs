//! Keyboard-wedge scanners: USB scanners that type their scans as a keyboard, read
//! through the Linux input subsystem (evdev).
//!
//! [`run_wedge`] owns one scanner: it finds its input device (by path, by name or by
//! USB vendor:product), opens it, grabs it exclusively (so that scans do not also
//! type into whatever window has the focus), turns its key events into messages with
//! a [`WedgeDecoder`], and reports them and the device's state as [`DeviceEvent`]s.
//! When the scanner goes away it reports `Disconnected` and looks for it again every
//! [`WedgeConfig::reopen_interval_ms`].
//!
//! **Invariants:**
//!
//! * one task per scanner; reading runs on a dedicated std thread per open device,
//!   never on the async runtime. The thread reads the device without blocking and
//!   sleeps [`POLL_INTERVAL`] when there is nothing, so that it sees the stop flag
//!   and releases its grab promptly at shutdown (evdev offers no way to wake a
//!   blocked read, and a thread stuck in one would keep the scanner grabbed). It
//!   forwards events with `blocking_send` on the bounded channel;
//! * finding and opening a device (which opens every `/dev/input/event*` when
//!   matching by name or USB id) runs on tokio's blocking pool;
//! * a scan the kernel dropped events from, or one longer than
//!   [`MAX_WEDGE_MESSAGE_LEN`](super::keymap::MAX_WEDGE_MESSAGE_LEN), is never
//!   reported as data: it becomes an `Error` status that gives its length and never
//!   its content (a status cannot carry the bytes, so they are not kept);
//! * the choice of device is a pure function ([`choose_device`]) over what the
//!   system lists, so it is tested without devices.
//!
//! **Not tested on the development machine:** it has no `/dev/input` and no
//! `/dev/uinput`, so nothing here has run against a real input device: listing the
//! devices, opening one without blocking, grabbing it, reading its events through
//! evdev, the key state after `SYN_DROPPED`, and the `ENODEV` an unplugged device
//! reads as. The tests cover the key decoding ([`super::keymap`]), the device
//! choice, the configuration, the reader loop over a scripted event source (scans,
//! dropped events, the inter-key pause, an unplugged device, stopping), and
//! [`run_wedge`] when the device is missing.

use std::future::Future;
use std::io::{self, ErrorKind};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use evdev::raw_stream::RawDevice;
use evdev::{EventType, SynchronizationCode};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::keymap::{DecoderOptions, GsCtrlKey, KeyboardLayout, WedgeDecoder, WedgeOutput, WedgeTerminator};
use super::status::{DeviceEvent, DeviceState};
use super::{ConfigError, ReadEnd, emit, run_reader_thread};

/// How long the reader thread sleeps when the device has no event. The kernel
/// buffers at least 64 events per reader of a keyboard; a USB scanner types at most
/// about three events (scan code, key, report) per millisecond, so 4 ms stays well
/// clear of the kernel dropping events, at the cost of 250 wake-ups a second of an
/// otherwise idle thread (not measured on store hardware yet).
pub const POLL_INTERVAL: Duration = Duration::from_millis(4);

/// A USB vendor and product id, written `"vvvv:pppp"` in hexadecimal as `lsusb`
/// shows it (e.g. `"0c2e:0b61"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UsbId {
    /// The USB vendor id.
    pub vendor: u16,
    /// The USB product id.
    pub product: u16,
}

impl TryFrom<String> for UsbId {
    type Error = String;

    fn try_from(text: String) -> Result<UsbId, String> {
        text.parse()
    }
}

impl std::str::FromStr for UsbId {
    type Err = String;

    fn from_str(text: &str) -> Result<UsbId, String> {
        let bad = || {
            format!("{text:?} is not a USB id; write it as \"vvvv:pppp\" in hexadecimal, as lsusb shows it")
        };
        let (vendor, product) = text.split_once(':').ok_or_else(bad)?;
        let hex = |part: &str| {
            if part.len() == 4 && part.bytes().all(|b| b.is_ascii_hexdigit()) {
                u16::from_str_radix(part, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        Ok(UsbId {
            vendor: hex(vendor)?,
            product: hex(product)?,
        })
    }
}

impl std::fmt::Display for UsbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.product)
    }
}

/// How to find the scanner's input device. In the config file exactly one of
/// `device = { path = "…" }`, `device = { name = "…" }`, `device = { usb = "vvvv:pppp" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceMatch {
    /// The event device itself, best a stable `/dev/input/by-id/…-event-kbd` link.
    Path(PathBuf),
    /// The device name the kernel reports (`/proc/bus/input/devices`, `N: Name=`),
    /// matched exactly.
    Name(String),
    /// The USB vendor and product id.
    Usb(UsbId),
}

impl std::fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceMatch::Path(path) => write!(f, "path {}", path.display()),
            DeviceMatch::Name(name) => write!(f, "name {name:?}"),
            DeviceMatch::Usb(id) => write!(f, "USB id {id}"),
        }
    }
}

/// One keyboard-wedge scanner, from the agent's configuration (`[[devices.wedge]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WedgeConfig {
    /// The device's id in events and on the health screen. Required.
    pub device_id: String,
    /// How to find the input device. Required.
    pub device: DeviceMatch,
    /// The keyboard layout the scanner was configured to type for: `us`, `de` or `fr`.
    /// It must match the scanner's setting, or characters come out wrong.
    /// Default: `us`.
    #[serde(default)]
    pub layout: KeyboardLayout,
    /// Whether to grab the device exclusively, so that scans do not also type into
    /// the focused window. Turn off only to diagnose. Default: true.
    #[serde(default = "default_grab")]
    pub grab: bool,
    /// The key that types GS (the GS1 separator) when pressed with Ctrl:
    /// `"right_brace"`, `"digit5"` or `{ code = N }`. Alt+0029 on the keypad is
    /// always understood too. Default: `digit5` on `de`, `right_brace` otherwise.
    #[serde(default)]
    pub gs_key: Option<GsCtrlKey>,
    /// The key that ends a scan: `enter` or `tab`. Default: `enter`.
    #[serde(default)]
    pub terminator: WedgeTerminator,
    /// Milliseconds between attempts to find a device that is gone. Default: 1000.
    #[serde(default = "default_reopen_interval_ms")]
    pub reopen_interval_ms: u64,
    /// Milliseconds without a key press after which a scan without terminator is
    /// taken as complete (for scanners configured without a suffix); 0 = wait for
    /// the terminator forever. Keep it above the scanner's inter-character delay.
    /// Default: 0.
    #[serde(default)]
    pub inter_key_timeout_ms: u64,
}

fn default_grab() -> bool {
    true
}

fn default_reopen_interval_ms() -> u64 {
    1000
}

impl WedgeConfig {
    /// A configuration for the device found by `device`, with every default, named
    /// `device_id`.
    pub fn new(device_id: impl Into<String>, device: DeviceMatch) -> WedgeConfig {
        WedgeConfig {
            device_id: device_id.into(),
            device,
            layout: KeyboardLayout::default(),
            grab: default_grab(),
            gs_key: None,
            terminator: WedgeTerminator::default(),
            reopen_interval_ms: default_reopen_interval_ms(),
            inter_key_timeout_ms: 0,
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
        match &self.device {
            DeviceMatch::Path(path) if !path.is_absolute() => {
                return Err(error(
                    "device.path",
                    format!(
                        "{} is not an absolute path; use /dev/input/by-id/…",
                        path.display()
                    ),
                ));
            }
            DeviceMatch::Name(name) if name.trim().is_empty() => {
                return Err(error("device.name", "must not be empty".into()));
            }
            _ => {}
        }
        if let Some(GsCtrlKey::Code(code)) = self.gs_key
            && !(1..=0x2ff).contains(&code)
        {
            return Err(error(
                "gs_key.code",
                format!("{code} is not a Linux key code (1 to 767)"),
            ));
        }
        if self.inter_key_timeout_ms > 10_000 {
            return Err(error(
                "inter_key_timeout_ms",
                format!(
                    "{} is out of range; use 0 (off) to 10000",
                    self.inter_key_timeout_ms
                ),
            ));
        }
        if !(10..=60_000).contains(&self.reopen_interval_ms) {
            return Err(error(
                "reopen_interval_ms",
                format!("{} is out of range; use 10 to 60000", self.reopen_interval_ms),
            ));
        }
        Ok(())
    }

    fn decoder_options(&self) -> DecoderOptions {
        DecoderOptions {
            layout: self.layout,
            terminator: self.terminator,
            gs_ctrl_key: self.gs_key,
        }
    }
}

/// What the system tells about one input device, for [`choose_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDeviceInfo {
    /// The event device, e.g. `/dev/input/event3`.
    pub path: PathBuf,
    /// The name the kernel reports, if any.
    pub name: Option<String>,
    /// The vendor id (the USB vendor id for USB devices).
    pub vendor: u16,
    /// The product id.
    pub product: u16,
    /// Whether the device has digit keys and Enter: a scanner's other interfaces
    /// (consumer control, system control) share its name and USB id but cannot type.
    pub types_text: bool,
}

/// Picks the device `wanted` names among `devices`.
///
/// For a name or USB id, only devices that can type text count; when several do,
/// the one with the lowest event number wins (the order the kernel created them).
/// A path is taken as it is: it is opened directly, whatever the list holds. The
/// error says what was looked for and what is there.
pub fn choose_device<'a>(
    wanted: &DeviceMatch,
    devices: &'a [InputDeviceInfo],
) -> Result<&'a InputDeviceInfo, String> {
    let matches = |device: &InputDeviceInfo| match wanted {
        DeviceMatch::Path(path) => device.path == *path,
        DeviceMatch::Name(name) => device.name.as_deref() == Some(name.as_str()),
        DeviceMatch::Usb(id) => device.vendor == id.vendor && device.product == id.product,
    };
    let typing = |device: &&InputDeviceInfo| device.types_text || matches!(wanted, DeviceMatch::Path(_));
    let found = devices
        .iter()
        .filter(|device| matches(device))
        .filter(typing)
        .min_by_key(|device| (event_number(&device.path), device.path.clone()));
    found.ok_or_else(|| {
        if devices.iter().any(matches) {
            return format!(
                "the input device with {wanted} has no digit keys; it is not the scanner's keyboard"
            );
        }
        if devices.is_empty() {
            return format!(
                "no input device with {wanted}: no input devices could be opened (is /dev/input there, \
                 and may the agent's user read it?)"
            );
        }
        let seen: Vec<String> = devices
            .iter()
            .map(|d| {
                format!(
                    "{:?} {:04x}:{:04x}",
                    d.name.as_deref().unwrap_or("?"),
                    d.vendor,
                    d.product
                )
            })
            .collect();
        format!("no input device with {wanted}; there are {}", seen.join(", "))
    })
}

/// The number of `/dev/input/eventN`, for ordering; other names sort last.
fn event_number(path: &Path) -> u32 {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("event"))
        .and_then(|number| number.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Reads one keyboard-wedge scanner until `shutdown` completes.
///
/// Reports `Connected` each time the device is opened (and grabbed), one `Data` per
/// scan (the terminator removed), `Disconnected` when the device goes away or
/// cannot be found or opened (once, not at every retry), and `Error` when a scan was
/// dropped. Returns when `shutdown` completes or when the receiver of `events` is
/// dropped. An invalid configuration is reported as an `Error` status and the
/// function returns.
pub async fn run_wedge(
    config: WedgeConfig,
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
    // Whether `Disconnected` was the last state sent, so that a scanner that stays
    // away is reported once, not at every attempt to find it.
    let mut reported_disconnected = false;

    loop {
        let opening = tokio::task::spawn_blocking({
            let config = Arc::clone(&config);
            move || open_device(&config)
        });
        let opened = tokio::select! {
            () = &mut shutdown => return,
            opened = opening => opened,
        };
        match opened {
            Ok(Ok((device, path))) => {
                let connected = DeviceEvent::status(&id, DeviceState::Connected);
                if !emit(&events, connected, &mut shutdown).await {
                    return;
                }
                let read = {
                    let (config, events) = (Arc::clone(&config), events.clone());
                    move |stop: &AtomicBool| read_device(device, &path, &config, &events, stop)
                };
                // On shutdown the thread sees the flag within one poll interval,
                // releases the grab and closes the device.
                let Some(end) = run_reader_thread(format!("wedge {id}"), read, &mut shutdown).await else {
                    return;
                };
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
            Ok(Err(reason)) if !reported_disconnected => {
                reported_disconnected = true;
                let state = DeviceState::Disconnected { reason };
                if !emit(&events, DeviceEvent::status(&id, state), &mut shutdown).await {
                    return;
                }
            }
            Ok(Err(_)) => {}
            Err(join_error) => {
                let reason = format!("opening the input device failed: {join_error}");
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

/// Finds, opens and (when configured) grabs the scanner's device (blocking). The
/// error is the reason for a `Disconnected` status.
fn open_device(config: &WedgeConfig) -> Result<(RawDevice, PathBuf), String> {
    let path = match &config.device {
        DeviceMatch::Path(path) => path.clone(),
        wanted => {
            let devices = list_input_devices();
            choose_device(wanted, &devices)?.path.clone()
        }
    };
    let mut device =
        open_nonblocking(&path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    if config.grab {
        device.grab().map_err(|error| {
            format!(
                "cannot grab {} exclusively: {error} (another program, or another agent, holds it)",
                path.display()
            )
        })?;
    }
    Ok((device, path))
}

/// Every input device that can be opened, as [`choose_device`] sees them.
pub fn list_input_devices() -> Vec<InputDeviceInfo> {
    evdev::enumerate()
        .map(|(path, device)| {
            let types_text = device.supported_keys().is_some_and(|keys| {
                keys.contains(evdev::KeyCode::KEY_1) && keys.contains(evdev::KeyCode::KEY_ENTER)
            });
            let id = device.input_id();
            InputDeviceInfo {
                path,
                name: device.name().map(str::to_owned),
                vendor: id.vendor(),
                product: id.product(),
                types_text,
            }
        })
        .collect()
}

/// Opens an event device for reads that do not block.
///
/// evdev's `RawDevice` (which passes `SYN_DROPPED` through, unlike `Device`, which
/// silently resynchronises) has no way to set `O_NONBLOCK`; `Device` has. The flag
/// belongs to the open file description, so a duplicate of `Device`'s descriptor
/// shares it.
fn open_nonblocking(path: &Path) -> io::Result<RawDevice> {
    let device = evdev::Device::open(path)?;
    device.set_nonblocking(true)?;
    let fd = device.as_fd().try_clone_to_owned()?;
    drop(device);
    RawDevice::from_fd(fd)
}

/// One input event as the reader needs it: type, code, value.
type RawEvent = (u16, u16, i32);

/// Where the reader thread gets its input events: the evdev device, or a script in
/// the tests (this machine has no input device to test with).
trait InputSource {
    /// Appends the events available now; fails with `WouldBlock` when there are none.
    fn fetch(&mut self, into: &mut Vec<RawEvent>) -> io::Result<()>;
    /// The codes of the keys held down now.
    fn held_keys(&self) -> io::Result<Vec<u16>>;
    /// Releases the exclusive grab, if any.
    fn release(&mut self);
}

impl InputSource for RawDevice {
    fn fetch(&mut self, into: &mut Vec<RawEvent>) -> io::Result<()> {
        into.extend(
            self.fetch_events()?
                .map(|event| (event.event_type().0, event.code(), event.value())),
        );
        Ok(())
    }

    fn held_keys(&self) -> io::Result<Vec<u16>> {
        Ok(self.get_key_state()?.iter().map(|key| key.code()).collect())
    }

    fn release(&mut self) {
        // Closing the descriptor releases the grab too; releasing it first says so.
        let _ = self.ungrab();
    }
}

/// Reads `source` until it goes away, the stop flag is set or nobody listens
/// (blocking: runs on the device's own thread). Releases the grab before returning.
fn read_device(
    mut source: impl InputSource,
    path: &Path,
    config: &WedgeConfig,
    events: &mpsc::Sender<DeviceEvent>,
    stop: &AtomicBool,
) -> ReadEnd {
    let id = config.device_id.as_str();
    let mut decoder = WedgeDecoder::new(config.decoder_options());
    // A modifier may be down already (the scanner opened mid-scan).
    if let Ok(held) = source.held_keys() {
        decoder.resync_held_keys(held);
    }
    let inter_key_timeout = match config.inter_key_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let mut last_key_at = Instant::now();
    let mut batch = Vec::new();
    let mut outputs = Vec::new();
    let end = 'reading: loop {
        if stop.load(Ordering::Relaxed) {
            break ReadEnd::ReceiverGone;
        }
        let mut dropped = false;
        batch.clear();
        match source.fetch(&mut batch) {
            Ok(()) => {
                for &(kind, code, value) in &batch {
                    if kind == EventType::KEY.0 {
                        last_key_at = Instant::now();
                        outputs.extend(decoder.key(code, value));
                    } else if kind == EventType::SYNCHRONIZATION.0
                        && code == SynchronizationCode::SYN_DROPPED.0
                    {
                        dropped = true;
                        decoder.events_dropped();
                    }
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL_INTERVAL),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            // An unplugged device reads as ENODEV.
            Err(error) => break ReadEnd::Lost(format!("reading {} failed: {error}", path.display())),
        }
        if dropped && let Ok(held) = source.held_keys() {
            decoder.resync_held_keys(held);
        }
        if let Some(timeout) = inter_key_timeout
            && decoder.has_pending()
            && last_key_at.elapsed() >= timeout
        {
            outputs.extend(decoder.end_scan());
        }
        for output in outputs.drain(..) {
            if events.blocking_send(output_event(id, output)).is_err() {
                break 'reading ReadEnd::ReceiverGone;
            }
        }
    };
    source.release();
    end
}

/// The event that reports one finished scan.
fn output_event(id: &str, output: WedgeOutput) -> DeviceEvent {
    match output {
        WedgeOutput::Message(message) => DeviceEvent::data(id, message),
        WedgeOutput::Rejected { reason, data } => {
            let reason = format!("a scan was dropped after {} bytes: {reason}", data.len());
            DeviceEvent::status(id, DeviceState::Error { reason })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::keymap::WedgeRejection;
    use crate::drivers::status::DeviceEventKind;

    fn info(path: &str, name: &str, vendor: u16, product: u16, types_text: bool) -> InputDeviceInfo {
        InputDeviceInfo {
            path: path.into(),
            name: Some(name.into()),
            vendor,
            product,
            types_text,
        }
    }

    fn system() -> Vec<InputDeviceInfo> {
        vec![
            info("/dev/input/event0", "Power Button", 0, 1, false),
            info(
                "/dev/input/event11",
                "Honeywell Imaging Keyboard",
                0x0c2e,
                0x0b61,
                true,
            ),
            info(
                "/dev/input/event10",
                "Honeywell Imaging Consumer Control",
                0x0c2e,
                0x0b61,
                false,
            ),
            info("/dev/input/event3", "AT Translated Set 2 keyboard", 1, 1, true),
            info(
                "/dev/input/event12",
                "Honeywell Imaging Keyboard",
                0x0c2e,
                0x0b61,
                true,
            ),
        ]
    }

    /// An input source that plays a script of fetch results, then reports the device
    /// gone.
    struct Script {
        steps: std::collections::VecDeque<io::Result<Vec<RawEvent>>>,
        held: Vec<u16>,
        released: Arc<AtomicBool>,
    }

    impl Script {
        fn new(steps: Vec<io::Result<Vec<RawEvent>>>, held: Vec<u16>) -> (Script, Arc<AtomicBool>) {
            let released = Arc::new(AtomicBool::new(false));
            let script = Script {
                steps: steps.into(),
                held,
                released: Arc::clone(&released),
            };
            (script, released)
        }
    }

    impl InputSource for Script {
        fn fetch(&mut self, into: &mut Vec<RawEvent>) -> io::Result<()> {
            match self.steps.pop_front() {
                Some(step) => into.extend(step?),
                None => return Err(io::Error::from_raw_os_error(19)), // ENODEV
            }
            Ok(())
        }

        fn held_keys(&self) -> io::Result<Vec<u16>> {
            Ok(self.held.clone())
        }

        fn release(&mut self) {
            self.released.store(true, Ordering::Relaxed);
        }
    }

    const KEY: u16 = EventType::KEY.0;
    const SYN: u16 = EventType::SYNCHRONIZATION.0;

    /// Key events typing `keys` (press, release, report).
    fn typed(keys: &[u16]) -> Vec<RawEvent> {
        keys.iter()
            .flat_map(|&key| [(KEY, key, 1), (SYN, 0, 0), (KEY, key, 0), (SYN, 0, 0)])
            .collect()
    }

    fn would_block() -> io::Result<Vec<RawEvent>> {
        Err(ErrorKind::WouldBlock.into())
    }

    /// Runs the reader over `source` to its end; returns how it ended and what it sent.
    fn read_script(source: Script, config: &WedgeConfig) -> (ReadEnd, Vec<DeviceEvent>) {
        let (tx, mut rx) = mpsc::channel(64);
        let end = read_device(
            source,
            Path::new("/dev/input/event7"),
            config,
            &tx,
            &AtomicBool::new(false),
        );
        drop(tx);
        let mut sent = Vec::new();
        while let Some(event) = rx.blocking_recv() {
            sent.push(event);
        }
        (end, sent)
    }

    const KEY_A: u16 = 30;
    const KEY_1: u16 = 2;
    const KEY_ENTER: u16 = 28;
    const KEY_LEFTSHIFT: u16 = 42;

    #[test]
    fn the_reader_sends_each_scan_and_reports_an_unplugged_device() {
        let config = WedgeConfig::new("w", DeviceMatch::Name("S".into()));
        let (source, released) = Script::new(
            vec![Ok(typed(&[KEY_A, KEY_1])), would_block(), Ok(typed(&[KEY_ENTER]))],
            vec![],
        );
        let (end, sent) = read_script(source, &config);
        assert_eq!(sent, vec![DeviceEvent::data("w", b"a1".to_vec())]);
        let ReadEnd::Lost(reason) = end else {
            panic!("{end:?}")
        };
        assert!(
            reason.contains("/dev/input/event7") && reason.contains("os error 19"),
            "{reason}"
        );
        assert!(released.load(Ordering::Relaxed), "the grab is released");
    }

    #[test]
    fn dropped_events_turn_the_scan_into_an_error_and_resync_the_modifiers() {
        let config = WedgeConfig::new("w", DeviceMatch::Name("S".into()));
        let mut first = typed(&[KEY_A]);
        first.push((SYN, SynchronizationCode::SYN_DROPPED.0, 0));
        // Shift is held (the device says so after the drop).
        let steps = vec![Ok(first), Ok(typed(&[KEY_ENTER])), Ok(typed(&[KEY_A, KEY_ENTER]))];
        let (source, _) = Script::new(steps, vec![KEY_LEFTSHIFT]);
        let (_, sent) = read_script(source, &config);
        assert_eq!(sent.len(), 2, "{sent:?}");
        let DeviceEventKind::Status(DeviceState::Error { reason }) = &sent[0].kind else {
            panic!("{sent:?}")
        };
        assert!(reason.contains("dropped key events"), "{reason}");
        assert_eq!(sent[1], DeviceEvent::data("w", b"A".to_vec()));
    }

    #[test]
    fn a_pause_ends_a_scan_without_terminator_when_configured() {
        let config = WedgeConfig {
            inter_key_timeout_ms: 10,
            ..WedgeConfig::new("w", DeviceMatch::Name("S".into()))
        };
        let mut steps = vec![Ok(typed(&[KEY_A, KEY_1]))];
        // 20 empty polls of 4 ms: well past the 10 ms pause.
        steps.extend((0..20).map(|_| would_block()));
        let (source, _) = Script::new(steps, vec![]);
        let (_, sent) = read_script(source, &config);
        // Sleeps only add time, so the pause is at least 80 ms whatever the load.
        assert_eq!(sent, vec![DeviceEvent::data("w", b"a1".to_vec())]);

        let without_timeout = WedgeConfig::new("w", DeviceMatch::Name("S".into()));
        let (source, _) = Script::new(
            vec![Ok(typed(&[KEY_A])), would_block(), would_block(), would_block()],
            vec![],
        );
        assert_eq!(read_script(source, &without_timeout).1, vec![]);
    }

    #[test]
    fn the_reader_stops_on_the_stop_flag_and_when_nobody_listens() {
        let config = WedgeConfig::new("w", DeviceMatch::Name("S".into()));
        let (tx, rx) = mpsc::channel(4);
        let (source, released) = Script::new(vec![Ok(typed(&[KEY_A, KEY_ENTER]))], vec![]);
        let end = read_device(
            source,
            Path::new("/dev/input/event7"),
            &config,
            &tx,
            &AtomicBool::new(true),
        );
        assert!(matches!(end, ReadEnd::ReceiverGone), "{end:?}");
        assert!(released.load(Ordering::Relaxed));

        drop(rx);
        let (source, _) = Script::new(vec![Ok(typed(&[KEY_A, KEY_ENTER]))], vec![]);
        let end = read_device(
            source,
            Path::new("/dev/input/event7"),
            &config,
            &tx,
            &AtomicBool::new(false),
        );
        assert!(matches!(end, ReadEnd::ReceiverGone), "{end:?}");
    }

    #[test]
    fn usb_ids_parse_as_lsusb_shows_them() {
        assert_eq!(
            "0c2e:0B61".parse::<UsbId>(),
            Ok(UsbId {
                vendor: 0x0c2e,
                product: 0x0b61
            })
        );
        assert_eq!(
            UsbId {
                vendor: 0x0c2e,
                product: 0x0b61
            }
            .to_string(),
            "0c2e:0b61"
        );
        for bad in [
            "0c2e",
            "0c2e:",
            "c2e:0b61",
            "0c2e:0b61:1",
            "zzzz:0000",
            "+c2e:0b61",
            "",
        ] {
            let error = bad.parse::<UsbId>().unwrap_err();
            assert!(error.contains("vvvv:pppp"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_usb_id_picks_the_typing_interface_with_the_lowest_event_number() {
        let devices = system();
        let wanted = DeviceMatch::Usb(UsbId {
            vendor: 0x0c2e,
            product: 0x0b61,
        });
        assert_eq!(
            choose_device(&wanted, &devices).unwrap().path,
            Path::new("/dev/input/event11")
        );
    }

    #[test]
    fn a_name_matches_exactly() {
        let devices = system();
        let wanted = DeviceMatch::Name("Honeywell Imaging Keyboard".into());
        assert_eq!(
            choose_device(&wanted, &devices).unwrap().path,
            Path::new("/dev/input/event11")
        );
        let error = choose_device(&DeviceMatch::Name("Honeywell".into()), &devices).unwrap_err();
        assert!(
            error.contains("no input device with name \"Honeywell\""),
            "{error}"
        );
        assert!(
            error.contains("\"Honeywell Imaging Keyboard\" 0c2e:0b61"),
            "{error}"
        );
    }

    #[test]
    fn a_device_that_cannot_type_is_refused_with_a_reason() {
        let devices = system();
        let error = choose_device(&DeviceMatch::Name("Power Button".into()), &devices).unwrap_err();
        assert!(error.contains("no digit keys"), "{error}");
    }

    #[test]
    fn an_empty_system_says_where_to_look() {
        let error = choose_device(
            &DeviceMatch::Usb(UsbId {
                vendor: 1,
                product: 2,
            }),
            &[],
        )
        .unwrap_err();
        assert!(error.contains("/dev/input"), "{error}");
    }

    #[test]
    fn a_path_is_taken_whatever_the_device_can_do() {
        let devices = system();
        let wanted = DeviceMatch::Path("/dev/input/event0".into());
        assert_eq!(
            choose_device(&wanted, &devices).unwrap().name.as_deref(),
            Some("Power Button")
        );
    }

    #[test]
    fn event_numbers_sort_numerically() {
        assert_eq!(event_number(Path::new("/dev/input/event12")), 12);
        assert_eq!(
            event_number(Path::new("/dev/input/by-id/usb-x-event-kbd")),
            u32::MAX
        );
    }

    #[test]
    fn rejected_scans_become_errors_without_their_content() {
        let output = WedgeOutput::Rejected {
            reason: WedgeRejection::EventsDropped,
            data: b"4111111111111111".to_vec(),
        };
        let event = output_event("wedge", output);
        let DeviceEventKind::Status(DeviceState::Error { reason }) = &event.kind else {
            panic!("{event:?}");
        };
        assert!(reason.contains("16 bytes"), "{reason}");
        assert!(!reason.contains("4111"), "{reason}");
    }
}
