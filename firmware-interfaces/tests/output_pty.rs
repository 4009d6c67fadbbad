//! The output driver against real pseudo-terminals.
//!
//! Each test makes a pty pair: the driver opens the slave side (directly, or
//! through a symlink standing in for a udev `/dev/serial/by-id/…` link) as it would
//! a USB line display or receipt printer, and the test plays the device by reading
//! the master side. A symlink that does not exist yet is a device not plugged in;
//! creating the pair and the symlink is plugging it in.
//!
//! Timeouts are generous (10 s) and only bound a hang: no test asserts how fast
//! anything happens.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firmware_interfaces::drivers::output::{OutputConfig, run_output};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::escpos::{DisplayProtocol, display_two_lines, pickup_slip};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod common;
use common::Pty;

/// How long a test waits for something that should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

const DEVICE: &str = "display-1";

impl Pty {
    /// Reads exactly `len` bytes as the device would, waiting while the driver
    /// has not written them yet (blocking: call it from `spawn_blocking`).
    fn receive(mut self, len: usize) -> (Pty, Vec<u8>) {
        let deadline = Instant::now() + PATIENCE;
        let mut received = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self.master.read(&mut received[filled..]) {
                Ok(0) => {}
                Ok(n) => filled += n,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the pty master failed: {e}"),
            }
            assert!(
                filled == len || Instant::now() < deadline,
                "only {filled} of {len} bytes arrived within 10 s"
            );
        }
        (self, received)
    }

    /// Reads exactly `len` bytes off the runtime.
    async fn expect_bytes(self, len: usize) -> (Pty, Vec<u8>) {
        tokio::task::spawn_blocking(move || self.receive(len))
            .await
            .expect("the reader did not panic")
    }
}

/// A running driver, the sending end of its frames and the end of its status
/// channel.
struct Driver {
    frames: mpsc::Sender<Vec<u8>>,
    statuses: mpsc::Receiver<DeviceEvent>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Driver {
    fn start(config: OutputConfig) -> Driver {
        let (frames, frames_rx) = mpsc::channel(4);
        let (status_tx, statuses) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_output(config, frames_rx, status_tx, async {
            let _ = stopped.await;
        }));
        Driver {
            frames,
            statuses,
            stop,
            task,
        }
    }

    async fn send(&self, frame: Vec<u8>) {
        tokio::time::timeout(PATIENCE, self.frames.send(frame))
            .await
            .expect("the driver takes a frame within 10 s")
            .expect("the driver is still running");
    }

    /// Waits until the driver has taken every frame sent so far off the channel.
    async fn wait_until_taken(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.frames.capacity() < self.frames.max_capacity() {
            assert!(Instant::now() < deadline, "the driver stopped taking frames");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn next(&mut self) -> DeviceState {
        let event = tokio::time::timeout(PATIENCE, self.statuses.recv())
            .await
            .expect("a status within 10 s")
            .expect("the driver is still running");
        assert_eq!(event.device_id, DEVICE);
        match event.kind {
            DeviceEventKind::Status(state) => state,
            other => panic!("an output driver reports states only, got {other:?}"),
        }
    }

    async fn expect_connected(&mut self) {
        assert_eq!(self.next().await, DeviceState::Connected);
    }

    async fn expect_disconnected(&mut self) -> String {
        match self.next().await {
            DeviceState::Disconnected { reason } => reason,
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    async fn expect_error(&mut self) -> String {
        match self.next().await {
            DeviceState::Error { reason } => reason,
            other => panic!("expected Error, got {other:?}"),
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

fn config(path: &Path) -> OutputConfig {
    let mut config = OutputConfig::new(DEVICE, path);
    config.reopen_interval_ms = 50;
    config
}

/// A fresh folder for this test's symlinks.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("output-pty-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

fn display_frame(line1: &str, line2: &str) -> Vec<u8> {
    display_two_lines(DisplayProtocol::Cd5220, line1, line2)
}

fn slip() -> Vec<u8> {
    pickup_slip(
        "BOPIS-1042",
        "Anna M.",
        &[(1, "Blue Runner 9"), (2, "Sport socks")],
        "PU-7H3K9Q",
    )
    .expect("a pickup slip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_byte_exact_and_in_order() {
    let pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;

    let display = display_frame("Blue Runner 9", "EUR 89.99");
    let slip = slip();
    driver.send(display.clone()).await;
    driver.send(slip.clone()).await;
    let (_pty, received) = pty.expect_bytes(display.len() + slip.len()).await;
    assert_eq!(&received[..display.len()], display.as_slice());
    assert_eq!(&received[display.len()..], slip.as_slice());

    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_queue_while_the_port_is_missing_and_the_latest_is_written_on_connect() {
    let dir = temp_dir("queue");
    let link = dir.join("display");
    // The default keeps one frame: the latest text is all a display needs.
    let mut driver = Driver::start(config(&link));
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("cannot open"), "{reason}");

    let stale = display_frame("Welcome", "");
    let older = display_frame("Blue Runner 9", "EUR 89.99");
    let latest = display_frame("Total", "EUR 179.98");
    driver.send(stale).await;
    driver.send(older).await;
    // The second frame pushed the first out of the one-frame queue.
    let first_drop = driver.expect_error().await;
    assert!(first_drop.contains("1 frame was dropped"), "{first_drop}");
    assert!(first_drop.contains(&link.display().to_string()), "{first_drop}");
    driver.send(latest.clone()).await;
    driver.wait_until_taken().await;

    // Plugged in: the queued frame is written and the drops since the first
    // report are summed up.
    let pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    let more = driver.expect_error().await;
    assert!(more.contains("1 more frame was dropped"), "{more}");
    // Had an older frame been written, its bytes would come first.
    let (pty, received) = pty.expect_bytes(latest.len()).await;
    assert_eq!(received, latest);

    // Connected, frames go straight through.
    let next = display_frame("Thank you", "");
    driver.send(next.clone()).await;
    let (_pty, received) = pty.expect_bytes(next.len()).await;
    assert_eq!(received, next);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_queue_keeps_the_newest_frames_in_order() {
    let dir = temp_dir("longer");
    let link = dir.join("printer");
    let mut config = config(&link);
    config.queue_while_disconnected = 2;
    let mut driver = Driver::start(config);
    driver.expect_disconnected().await;

    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|n| display_frame(&format!("Item {n}"), "EUR 1.00"))
        .collect();
    for frame in &frames {
        driver.send(frame.clone()).await;
    }
    let first_drop = driver.expect_error().await;
    assert!(first_drop.contains("1 frame was dropped"), "{first_drop}");
    assert!(
        first_drop.contains("queue_while_disconnected = 2"),
        "{first_drop}"
    );

    let pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    let expected = [frames[1].as_slice(), frames[2].as_slice()].concat();
    let (_pty, received) = pty.expect_bytes(expected.len()).await;
    assert_eq!(received, expected);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_is_reported_once_and_replug_connects_again() {
    let dir = temp_dir("replug");
    let link = dir.join("display");
    let pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    let mut driver = Driver::start(config(&link));
    driver.expect_connected().await;

    // Unplugged: udev removes the symlink and the device goes away.
    std::fs::remove_file(&link).unwrap();
    drop(pty);
    let reason = driver.expect_disconnected().await;
    assert!(!reason.is_empty());

    // Plugged back in: a new device node behind the same symlink. The next
    // status is `Connected`: the failed reopen attempts were not reported.
    let pty = Pty::new();
    std::os::unix::fs::symlink(&pty.slave_path, &link).unwrap();
    driver.expect_connected().await;
    let frame = display_frame("Blue Runner 9", "EUR 89.99");
    driver.send(frame.clone()).await;
    let (_pty, received) = pty.expect_bytes(frame.len()).await;
    assert_eq!(received, frame);

    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_driver_while_connected_and_while_disconnected() {
    let pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;
    driver.shut_down().await;

    let dir = temp_dir("shutdown");
    let mut driver = Driver::start(config(&dir.join("absent")));
    driver.expect_disconnected().await;
    driver.send(display_frame("Queued", "")).await;
    driver.shut_down().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_frame_channel_stops_the_driver() {
    let pty = Pty::new();
    let mut driver = Driver::start(config(&pty.slave_path));
    driver.expect_connected().await;
    let frame = display_frame("Closing", "");
    driver.send(frame.clone()).await;
    let Driver {
        frames, stop, task, ..
    } = driver;
    drop(frames);
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the driver stops when its frames end")
        .expect("the driver did not panic");
    drop(stop);
    // What was sent before the channel closed was written.
    let (_pty, received) = pty.expect_bytes(frame.len()).await;
    assert_eq!(received, frame);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_reported_and_the_driver_returns() {
    let mut config = config(Path::new("/dev/null"));
    config.queue_while_disconnected = 17;
    let mut driver = Driver::start(config);
    let reason = driver.expect_error().await;
    assert!(reason.contains("queue_while_disconnected"), "{reason}");
    driver.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_taking_bytes_is_a_disconnect_and_the_frame_is_sent_again() {
    let pty = Pty::new();
    let mut config = config(&pty.slave_path);
    config.write_timeout_ms = 300;
    let mut driver = Driver::start(config);
    driver.expect_connected().await;

    // Far more than the pty buffers while nobody reads the master side: the
    // write stalls, times out, and the driver takes the device as gone.
    let frame: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    driver.send(frame.clone()).await;
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("write failed"), "{reason}");

    // The device takes bytes again: the frame is written again, whole, after
    // what the failed attempt got through.
    let reader = tokio::task::spawn_blocking({
        let frame = frame.clone();
        move || {
            let mut pty = pty;
            let deadline = Instant::now() + PATIENCE;
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while !received.ends_with(&frame) {
                assert!(
                    Instant::now() < deadline,
                    "the frame did not arrive again within 10 s"
                );
                match pty.master.read(&mut buf) {
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("reading the pty master failed: {e}"),
                }
            }
            received
        }
    });
    // Reopening may race the stalled buffer once more; whatever it reports, the
    // first state after the disconnect is a reconnect.
    driver.expect_connected().await;
    let received = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the reader ends within 10 s")
        .expect("the reader did not panic");
    let partial = received.len() - frame.len();
    assert!(partial > 0, "the first attempt got some bytes through");

    driver.shut_down().await;
}
