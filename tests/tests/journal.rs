//! The receipt-printer journal tap through the whole agent: an ESC/POS stream on a
//! real pseudo-terminal, the agent's real device manager and serial driver in raw
//! framing, the real store. Receipts are recorded PAN-masked; no card number, in
//! either spelling, is kept in the database or written to the logs.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use store_agent_e2e::{Pty, TestDir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_PAN: &str = "4111111111111111";
const TEST_PAN_PRINTED: &str = "4111 1111 1111 1111";

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;

fn pty() -> Pty {
    Pty::open()
}

/// What the tap test needs of a pty.
trait TapPty {
    fn unread(&self) -> usize;
    fn wait_drained(&self);
    fn write_chunks(&mut self, chunks: &[Vec<u8>]);
}

impl TapPty for Pty {
    /// Bytes written to the master that nobody has read from the slave side yet.
    fn unread(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer; the descriptor is open.
        let rc = unsafe { libc::ioctl(self.slave.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "FIONREAD failed: {}", std::io::Error::last_os_error());
        usize::try_from(n).unwrap_or(0)
    }

    /// Waits until the agent has read everything written so far.
    fn wait_drained(&self) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while self.unread() > 0 {
            assert!(Instant::now() < deadline, "the agent stopped reading the tap");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `chunks` one by one with a pause between them, so the agent reads
    /// the stream in several pieces.
    fn write_chunks(&mut self, chunks: &[Vec<u8>]) {
        for chunk in chunks {
            self.master.write_all(chunk).unwrap();
            self.master.flush().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The first receipt: text lines with a card number split across two writes, a
/// `GS v 0` raster image whose data holds LF and printable bytes, then a cut.
fn first_receipt() -> Vec<Vec<u8>> {
    let mut image = vec![GS, b'v', b'0', 0, 4, 0, 2, 0];
    // 4 bytes wide, 2 dots high: 8 data bytes.
    let image_data = [b'\n', b'I', b'M', b'G', b'Q', b'Z', b'\n', b'W'];
    image.extend_from_slice(&image_data[..3]);
    let mut rest = image_data[3..].to_vec();
    rest.extend_from_slice(b"THANK YOU\n");
    rest.extend_from_slice(&[GS, b'V', 0]);
    vec![
        [&[ESC, b'@'][..], b"STORE 001\nVISA 4111 11"].concat(),
        b"11 1111 1111\nTOTAL 12.50\n".to_vec(),
        image,
        rest,
    ]
}

/// The second receipt: no cut, so only the end of the stream (the agent's stop)
/// ends it.
fn second_receipt() -> Vec<Vec<u8>> {
    vec![
        [&[ESC, b'@'][..], b"RECEIPT 2\n"].concat(),
        b"TOTAL 3.00\n".to_vec(),
    ]
}

#[test]
fn printer_stream_is_journaled_masked_and_an_uncut_receipt_is_kept_at_stop() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let mut tap = pty();
    let devices = format!(
        "\n[[devices.journal_taps]]\nreceipts = {{ split_on_cut = true }}\n\
         [devices.journal_taps.serial]\ndevice_id = \"printer-tap\"\npath = {:?}\nframing = \"raw\"\n",
        tap.path
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&config).unwrap();
    file.write_all(devices.as_bytes()).unwrap();
    drop(file);

    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "not ready\n{}",
        agent.stderr_so_far()
    );
    assert!(
        agent.wait_for_stderr("Device connected.", EVENT_TIMEOUT),
        "the tap should connect\n{}",
        agent.stderr_so_far()
    );

    tap.write_chunks(&first_receipt());
    assert!(
        agent.wait_for_stderr("Journal receipt recorded.", EVENT_TIMEOUT),
        "the cut should end and record the first receipt\n{}",
        agent.stderr_so_far()
    );
    tap.write_chunks(&second_receipt());
    tap.wait_drained();

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
    assert_eq!(
        output.stderr.matches("Journal receipt recorded.").count(),
        2,
        "the uncut receipt is recorded at the stop\n{output}"
    );

    let status = dir.status_json(&config);
    assert_eq!(status["counts"]["journal_records"], 2, "{status}");
    let outbox = status["outbox"].as_array().expect("outbox is a list");
    let journal = outbox
        .iter()
        .find(|s| s["stream"] == "journal")
        .unwrap_or_else(|| panic!("no journal stream in {status}"));
    assert_eq!(journal["depth"], 2, "{status}");
    let devices = status["devices"].as_array().expect("devices is a list");
    assert!(
        devices
            .iter()
            .any(|d| d["device_id"] == "printer-tap" && d["kind"] == "serial"),
        "{status}"
    );

    // The receipts as recorded.
    let conn = store_agent::store::open_read_only(&dir.database()).expect("open the database");
    let mut statement = conn
        .prepare("SELECT device_id, text FROM journal_records ORDER BY captured_at_ms, journal_id")
        .unwrap();
    let rows: Vec<(String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(statement);
    drop(conn);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|(device, _)| device == "printer-tap"), "{rows:?}");
    let first = &rows
        .iter()
        .find(|(_, t)| t.contains("STORE 001"))
        .expect("the first receipt")
        .1;
    let second = &rows
        .iter()
        .find(|(_, t)| t.contains("RECEIPT 2"))
        .expect("the second receipt")
        .1;
    // The card number masked to its last four digits; the image is no text.
    assert_eq!(first, "STORE 001\nVISA ************1111\nTOTAL 12.50\nTHANK YOU");
    assert_eq!(second, "RECEIPT 2\nTOTAL 3.00");
    assert!(first.contains("TOTAL 12.50"), "{first:?}");
    assert!(first.contains("THANK YOU"), "{first:?}");
    assert!(first.contains("************1111"), "{first:?}");
    assert!(!first.contains("RECEIPT 2"), "{first:?}");
    for secret in [TEST_PAN, TEST_PAN_PRINTED, "4111 11", "IMG", "QZ"] {
        assert!(!first.contains(secret), "{secret:?} in {first:?}");
    }
    assert!(
        !first.chars().any(|c| c.is_control() && c != '\n'),
        "no image or control bytes in {first:?}"
    );
    assert!(second.contains("TOTAL 3.00"), "{second:?}");
    assert!(!second.contains("STORE 001"), "{second:?}");

    // No card number in either spelling, and no receipt text, anywhere it could linger.
    let logs = output.all_output();
    assert!(!logs.contains("TOTAL 12.50"), "receipt text in the logs\n{logs}");
    for secret in [TEST_PAN, TEST_PAN_PRINTED] {
        assert!(!logs.contains(secret), "{secret} in the logs\n{logs}");
        for file in [dir.database(), dir.wal()] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(!contains(&bytes, secret), "{secret} in {}", file.display());
            }
        }
    }
}
