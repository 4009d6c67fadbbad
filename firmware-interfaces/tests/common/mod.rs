//! Where the shared test corpora are, for the table-driven tests.
//!
//! The corpora live outside the repository (`../shared/corpora` beside the clone;
//! never copied in). A developer's own clone may not have them: the tests then
//! print why they skip. Under `CI=true` a missing corpus is a failure, so CI can
//! never pass by skipping.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The folder `name` of the corpora (`gs1`, `msr`, `poslog`, `escpos`), or `None`
/// after printing a skip reason. `STORE_AGENT_CORPORA` overrides the location.
pub fn corpus(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("STORE_AGENT_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"));
    let dir = root.join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "corpus folder {} is missing and CI=true: CI must run every corpus test",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: corpus folder {} not found; clone the shared folder beside the repository \
         or set STORE_AGENT_CORPORA to run these tests",
        dir.display()
    );
    None
}

/// The lines of a JSON Lines corpus file, parsed.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// A pseudo-terminal pair standing in for one plugged-in serial device. Each test
/// file adds the methods it needs (writing as a scanner, reading as a display).
pub struct Pty {
    /// The device's end: the test writes here what a scanner sends, or reads what
    /// the driver wrote to a display.
    pub master: serialport::TTYPort,
    /// Kept open so the slave node stays valid for the whole test, as a device node
    /// does while the device is plugged in.
    pub _slave: serialport::TTYPort,
    /// The slave's path, e.g. `/dev/pts/7`.
    pub slave_path: PathBuf,
}

impl Pty {
    /// A new pair.
    pub fn new() -> Pty {
        use serialport::SerialPort;
        let (master, slave) = serialport::TTYPort::pair().expect("a pseudo-terminal pair");
        let slave_path = PathBuf::from(slave.name().expect("the slave of a pty pair has a name"));
        Pty {
            master,
            _slave: slave,
            slave_path,
        }
    }
}
