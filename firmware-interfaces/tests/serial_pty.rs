//! The serial driver against real pseudo-terminals.
//!
//! Each test makes a pty pair: the driver opens the slave side (directly, or
//! through a symlink standing in for a udev `/dev/serial/by-id/…` link) as it would
//! a USB scanner, and the test plays the scanner by writing to the master side.
//! Closing the master is unplugging the scanner; a new pair behind the same
//! symlink is plugging it back in.
//!
//! Timeouts are generous (10 s) and only bound a hang: no test asserts how fast
//! anything happens.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firmware_interfaces::card::CardRules;
use firmware_interfaces::drivers::serial::{Framing, SerialConfig, run_serial};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::msr::{CardRead, read_card};
use firmware_interfaces::scan::{ScanConfig, ScanKind, decode};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod common;
use common::Pty;

/// How long a test waits for something that should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

const SCAN: &[u8] = b"]E04006381333931";
const SWIPE: &[u8] = b"%B4111111111111111^TEST/VISA^2812201?;4111111111111111=2812201?";

impl Pty {
    /// Writes all of `bytes` as the scanner would, waiting while the driver has
    /// not yet read what fills the pty's buffer.
    fn send(&mut self, bytes: &[u8]) {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.master.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    assert!(Instant::now() < deadline, "the driver stopped reading the pty");
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("writing to the pty master failed: {e}"),
            }
        }
        self.master.flush().expect("flush the pty master");
    }
}

/// A running driver and the end of its event channel.
struct Driver {
    events: mpsc::Receiver<DeviceEvent>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Driver {
    fn start(config: SerialConfig) -> Driver {
        let (tx, events) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_serial(config, tx, async {
            let _ = stopped.await;
        }));
        Driver { events, stop, task }
    }

    async fn next(&mut self) -> DeviceEventKind {
        let event = tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the driver is still running");
        assert_eq!(event.device_id, "scanner-1");
        event.kind
    }

    async fn expect_connected(&mut self) {
        assert_eq!(self.next().await, DeviceEventKind::Status(DeviceState::Connected));
    }

    async fn expect_disconnected(&mut self) -> String {
        match self.next().await {
            DeviceEventKind::Status(DeviceState::Disconnected { reason }) => reason,
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    async fn expect_data(&mut self) -> Vec<u8> {
        match self.next().await {
            DeviceEventKind::Data(bytes) => bytes,
            other => panic!("expected Data, got {other:?}"),
        }
    }

    /// Stops the driver and checks that it stops (within the patience, not fast).
    async fn shut_down(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the driver stops when told to")
            .expect("the driver did not panic");
    }
}

fn config(path: &Path) -> SerialConfig {
    let mut config = SerialConfig::new("scanner-1", path);
    config.reopen_interval_ms = 50;
    config
}

/// A fresh folder for this test's symlinks.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serial-pty-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_line_arrives_and_decodes_to_a_product() {
    let mut pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;

    pty.send(b"]E04006381333931\r");
    let message = driver.expect_data().await;
    assert_eq!(message, SCAN);

    let scan = decode(std::str::from_utf8(&message).unwrap(), &ScanConfig::default());
    assert_eq!(scan.kind, ScanKind::Product);
    assert_eq!(scan.gtin14.as_deref(), Some("04006381333931"));
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminator_split_across_two_writes() {
    let mut pty = Pty::new();
    let mut config = config(&pty.slave_path);
    config.terminator = b"\r\n".to_vec();
    // No silence flush: the pause between the writes must not end the message.
    config.inter_byte_timeout_ms = 0;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;

    pty.send(b"]E04006381333931\r");
    // Give the driver time to read the first half on its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pty.send(b"\n]E04006381333931\r\n");
    assert_eq!(driver.expect_data().await, SCAN);
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_in_one_write() {
    let mut pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;

    pty.send(b"]E04006381333931\r]C1011234567890123110\r");
    assert_eq!(driver.expect_data().await, SCAN);
    assert_eq!(driver.expect_data().await, b"]C1011234567890123110");
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_without_terminator_is_flushed_after_silence() {
    let mut pty = Pty::new();
    let mut config = config(&pty.slave_path);
    config.inter_byte_timeout_ms = 50;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;

    pty.send(SCAN);
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_message_is_dropped_with_an_error_and_reading_goes_on() {
    let mut pty = Pty::new();
    let mut config = config(&pty.slave_path);
    config.inter_byte_timeout_ms = 0;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;

    // 5000 digits without a terminator: past the 4096-byte cap.
    pty.send(&[b'1'; 5000]);
    match driver.next().await {
        DeviceEventKind::Status(DeviceState::Error { reason }) => {
            assert!(reason.contains("4096"), "{reason}")
        }
        other => panic!("expected an Error status, got {other:?}"),
    }
    // The rest of the long message is thrown away, the next scan comes through.
    pty.send(b"11111\r]E04006381333931\r");
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_card_swipe_arrives_and_is_rejected() {
    let mut pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;

    let mut swipe = SWIPE.to_vec();
    swipe.push(b'\r');
    pty.send(&swipe);
    let message = driver.expect_data().await;
    assert_eq!(message, SWIPE);
    let read = read_card(std::str::from_utf8(&message).unwrap(), &CardRules::default());
    assert_eq!(read, CardRead::PaymentCardRejected);
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_master_side_is_a_disconnect() {
    let mut pty = Pty::new();
    let mut config = config(&pty.slave_path);
    // No reopen during the test: the freed /dev/pts number may be handed to a
    // pty of a test running in parallel, which this driver must not open.
    config.reopen_interval_ms = 600_000;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;
    pty.send(b"]E04006381333931\r");
    assert_eq!(driver.expect_data().await, SCAN);

    drop(pty);
    let reason = driver.expect_disconnected().await;
    assert!(!reason.is_empty());
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_and_replug_behind_a_symlink() {
    let dir = temp_dir("replug");
    let link = dir.join("scanner");
    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    let mut driver = Driver::start(config(&link));
    driver.expect_connected().await;
    pty.send(b"]E04006381333931\r");
    assert_eq!(driver.expect_data().await, SCAN);

    // Unplugged: udev removes the symlink and the device goes away.
    std::fs::remove_file(&link).unwrap();
    drop(pty);
    let reason = driver.expect_disconnected().await;
    assert!(!reason.is_empty());

    // Plugged back in: a new device node behind the same symlink.
    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    let mut swipe = SWIPE.to_vec();
    swipe.push(b'\r');
    pty.send(b"]E04006381333931\r");
    pty.send(&swipe);
    assert_eq!(driver.expect_data().await, SCAN);
    assert_eq!(driver.expect_data().await, SWIPE);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_symlink_alone_is_a_disconnect() {
    let dir = temp_dir("unlink");
    let link = dir.join("scanner");
    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    let mut driver = Driver::start(config(&link));
    driver.expect_connected().await;

    // The old node is still open, but the path the config names is gone.
    std::fs::remove_file(&link).unwrap();
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("disappeared"), "{reason}");

    // The same device comes back under the same name.
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    pty.send(b"]E04006381333931\r");
    assert_eq!(driver.expect_data().await, SCAN);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_port_reports_disconnected_then_connects_when_it_appears() {
    let dir = temp_dir("late");
    let link = dir.join("scanner");
    let mut driver = Driver::start(config(&link));
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("cannot open"), "{reason}");

    let mut pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    pty.send(b"]E04006381333931\r");
    assert_eq!(driver.expect_data().await, SCAN);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_framing_forwards_every_byte_unchanged_and_in_order() {
    let mut pty = Pty::new();
    let mut config = config(&pty.slave_path);
    config.framing = Framing::Raw;
    // Ignored in raw mode: neither may cut or hold back anything.
    config.terminator = b"\r\n".to_vec();
    config.inter_byte_timeout_ms = 0;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;

    // A printer stream: text with CR/LF, a GS command, then every byte value
    // (binary image data), then more than the 4096-byte message cap in one write.
    let mut writes: Vec<Vec<u8>> = vec![
        b"\x1b@HELLO\r\n".to_vec(),
        b"\x1dV\x00\r".to_vec(),
        b"\n\x1dv0\x00".to_vec(),
        (0..=255u8).collect(),
    ];
    writes.push((0..10_000u32).map(|i| (i % 251) as u8).collect());
    writes.push(b"\x1dV\x00end\x0d\x0a".to_vec());
    let expected: Vec<u8> = writes.concat();

    for write in &writes {
        pty.send(write);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut received = Vec::new();
    let mut chunks = 0;
    while received.len() < expected.len() {
        let chunk = driver.expect_data().await;
        assert!(!chunk.is_empty(), "an empty read was forwarded");
        received.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "the bytes changed on the way");
    assert!(chunks >= 2, "several writes arrive as several reads");
    // Nothing else was reported (no error about a too-long message).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(driver.events.try_recv().is_err());
    driver.shut_down().await;
}
