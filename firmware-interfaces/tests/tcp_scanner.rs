//! The TCP scanner driver against a real listener on the loopback interface.
//!
//! The test plays a network scanner: a tokio `TcpListener` on `127.0.0.1:0` that
//! accepts the driver's connection and writes scan lines to it. Dropping the
//! connection or the listener is the scanner going away; binding the same port
//! again is the scanner coming back.
//!
//! Timeouts are generous (10 s) and only bound a hang: no test asserts how fast
//! anything happens.

use std::net::SocketAddr;
use std::time::Duration;

use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::drivers::tcp::{TcpScannerConfig, run_tcp};
use firmware_interfaces::scan::{ScanConfig, ScanKind, decode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

const SCAN: &[u8] = b"]E04006381333931";

/// A running driver and the end of its event channel.
struct Driver {
    events: mpsc::Receiver<DeviceEvent>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Driver {
    fn start(address: SocketAddr, terminator: &[u8]) -> Driver {
        let mut config = TcpScannerConfig::new("lane-3", address.to_string());
        config.terminator = terminator.to_vec();
        config.reconnect_interval_ms = 50;
        let (tx, events) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_tcp(config, tx, async {
            let _ = stopped.await;
        }));
        Driver { events, stop, task }
    }

    async fn next(&mut self) -> DeviceEventKind {
        let event = tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the driver is still running");
        assert_eq!(event.device_id, "lane-3");
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

async fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the driver connects within 10 s")
        .expect("accept");
    stream
}

#[tokio::test]
async fn scan_lines_arrive_and_decode() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut driver = Driver::start(listener.local_addr().unwrap(), b"\r\n");
    let mut scanner = accept(&listener).await;
    driver.expect_connected().await;

    // Two messages in one write, then one whose terminator is split across writes.
    scanner
        .write_all(b"]E04006381333931\r\n]E04006381333931\r\n]E0400638")
        .await
        .unwrap();
    scanner.flush().await.unwrap();
    assert_eq!(driver.expect_data().await, SCAN);
    assert_eq!(driver.expect_data().await, SCAN);
    tokio::time::sleep(Duration::from_millis(100)).await;
    scanner.write_all(b"1333931\r").await.unwrap();
    scanner.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    scanner.write_all(b"\n").await.unwrap();
    let message = driver.expect_data().await;
    assert_eq!(message, SCAN);

    let scan = decode(std::str::from_utf8(&message).unwrap(), &ScanConfig::default());
    assert_eq!(scan.kind, ScanKind::Product);
    assert_eq!(scan.gtin14.as_deref(), Some("04006381333931"));
    driver.shut_down().await;
}

#[tokio::test]
async fn overlong_line_is_dropped_with_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut driver = Driver::start(listener.local_addr().unwrap(), b"\r");
    let mut scanner = accept(&listener).await;
    driver.expect_connected().await;

    scanner.write_all(&[b'9'; 5000]).await.unwrap();
    scanner.write_all(b"\r]E04006381333931\r").await.unwrap();
    match driver.next().await {
        DeviceEventKind::Status(DeviceState::Error { reason }) => {
            assert!(reason.contains("4096"), "{reason}")
        }
        other => panic!("expected an Error status, got {other:?}"),
    }
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test]
async fn closed_connection_is_reported_and_the_driver_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut driver = Driver::start(listener.local_addr().unwrap(), b"\r");
    let scanner = accept(&listener).await;
    driver.expect_connected().await;

    drop(scanner);
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("closed"), "{reason}");

    let mut scanner = accept(&listener).await;
    driver.expect_connected().await;
    scanner.write_all(b"]E04006381333931\r").await.unwrap();
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test]
async fn server_restart_is_reported_once_and_the_driver_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut driver = Driver::start(address, b"\r");
    let scanner = accept(&listener).await;
    driver.expect_connected().await;

    // The scanner reboots: its listener is gone for a while and connections are
    // refused. The listener goes first, so the driver's next attempt cannot land
    // in its backlog.
    drop(listener);
    drop(scanner);
    driver.expect_disconnected().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let listener = TcpListener::bind(address)
        .await
        .expect("rebind the scanner's port");
    let mut scanner = accept(&listener).await;
    // Refused attempts while it was down were not reported again: the next event
    // is the new connection.
    driver.expect_connected().await;
    scanner.write_all(b"]E04006381333931\r").await.unwrap();
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}

#[tokio::test]
async fn scanner_not_up_yet_is_disconnected_until_it_listens() {
    // Find a free port, then leave it closed.
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut driver = Driver::start(address, b"\r");
    let reason = driver.expect_disconnected().await;
    assert!(reason.contains("cannot connect"), "{reason}");

    let listener = TcpListener::bind(address).await.expect("bind the scanner's port");
    let mut scanner = accept(&listener).await;
    driver.expect_connected().await;
    scanner.write_all(b"]E04006381333931\r").await.unwrap();
    assert_eq!(driver.expect_data().await, SCAN);
    driver.shut_down().await;
}
