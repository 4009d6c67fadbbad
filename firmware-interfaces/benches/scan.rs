//! Benchmarks of scanning, against the target of docs/benchmarks.md (issue 3):
//!
//! * scan latency — from the terminator byte written to a pseudo-terminal to the
//!   decoded [`Scan`] on the agent's side: the real [`run_serial`] driver reads the
//!   pty's slave side in a tokio runtime (multi-thread, 2 workers) and sends its
//!   events on a bounded channel; a consumer task decodes each message with
//!   [`decode`] and hands the `Scan` on. Target: p99 under 1 ms;
//! * decode throughput — [`decode`] over a fixed mix of scans in a tight loop on one
//!   thread: scans per second, and nanoseconds per scan for each input.
//!
//! Run: `cargo bench -p firmware-interfaces --bench scan` (about 35 s), or with
//! `-- --smoke` for fewer samples and a shorter loop over the same code paths (what
//! CI runs, to keep the benchmark working). The tail of the latency depends on what
//! else runs on the machine, so the benchmark also prints the share of CPU time
//! other processes used meanwhile.

use std::hint::black_box;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use firmware_interfaces::drivers::serial::{SerialConfig, run_serial};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::scan::{Scan, ScanConfig, ScanKind, decode};
use serialport::{SerialPort, TTYPort};
use tokio::sync::{mpsc, oneshot};

/// How long the benchmark waits for something that should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// The pause between a scan's body and its terminator, so that the driver has read
/// the body before the measured interval starts and the interval covers only what
/// the terminator sets off.
const BODY_TO_TERMINATOR: Duration = Duration::from_millis(2);

/// One scan the benchmark sends or decodes, with what it must decode to.
struct Input {
    /// What the row is called in the tables.
    name: &'static str,
    /// What the scanner sends, AIM identifier first, without terminator.
    body: &'static [u8],
    /// The kind [`decode`] must give it; every sample is checked.
    kind: ScanKind,
}

/// Realistic scans at a till: what the latency part sends, in rotation.
const SCANS: &[Input] = &[
    Input {
        name: "EAN-13",
        body: b"]E04006381333931",
        kind: ScanKind::Product,
    },
    Input {
        name: "UPC-A",
        body: b"]E00036000291452",
        kind: ScanKind::Product,
    },
    Input {
        name: "GS1-128 (GTIN, expiry, lot, GS, serial)",
        body: b"]C101095011015300031727123110LOT42\x1d21SN000123",
        kind: ScanKind::Product,
    },
    Input {
        name: "GS1 Digital Link URL (QR)",
        body: b"]Q1https://id.gs1.org/01/09501101530003/10/LOT42/21/SN000123?17=271231",
        kind: ScanKind::Product,
    },
    Input {
        name: "loyalty number (Code 128)",
        body: b"]C09412345678901234",
        kind: ScanKind::LoyaltyCard,
    },
];

/// What the throughput part decodes besides [`SCANS`]: a payment-card number and
/// scans that fail validation.
const OTHER_INPUTS: &[Input] = &[
    Input {
        name: "payment-card number (Code 128)",
        body: b"]C04111111111111111",
        kind: ScanKind::PaymentCardRejected,
    },
    Input {
        name: "invalid: UPC-A with a bad check digit",
        body: b"]E00036000291453",
        kind: ScanKind::Invalid,
    },
    Input {
        name: "invalid: GS1-128 with a bad date",
        body: b"]C1010950110153000317271341",
        kind: ScanKind::Invalid,
    },
    Input {
        name: "invalid: Digital Link with a bad GTIN",
        body: b"]Q1https://id.gs1.org/01/09501101530004",
        kind: ScanKind::Invalid,
    },
];

/// A pseudo-terminal pair standing in for a plugged-in scanner.
struct Pty {
    /// The scanner's end: what is written here, the driver reads.
    master: TTYPort,
    /// Kept open so the slave node stays valid while the driver uses it.
    _slave: TTYPort,
    /// The slave's path, e.g. `/dev/pts/7`, which the driver opens.
    slave_path: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        let (master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
        let slave_path = PathBuf::from(slave.name().expect("the slave of a pty pair has a name"));
        Pty {
            master,
            _slave: slave,
            slave_path,
        }
    }

    /// Writes all of `bytes` as the scanner would.
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
    }
}

/// What the consumer task hands to the measuring thread.
enum Report {
    /// The driver opened the port.
    Connected,
    /// A message, decoded; `decoded_at` is taken right after [`decode`] returned.
    Decoded { scan: Box<Scan>, decoded_at: Instant },
    /// Any other status, which should not happen during the benchmark.
    Unexpected(String),
}

/// Latency samples of one kind of measurement, sorted on demand.
struct Latencies {
    name: String,
    samples: Vec<Duration>,
}

impl Latencies {
    fn new(name: impl Into<String>) -> Latencies {
        Latencies {
            name: name.into(),
            samples: Vec::new(),
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let i = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[i]
    }

    fn row(&self) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.name,
            self.samples.len(),
            us(self.percentile(0.50)),
            us(self.percentile(0.99)),
            us(self.percentile(0.999)),
            us(*self.samples.iter().max().expect("at least one sample")),
        )
    }
}

/// The latency figures of one run of the latency part.
struct LatencyFigures {
    /// Terminator written → `decode` returned in the consumer task.
    decoded: Latencies,
    /// Terminator written → the measuring thread received the `Scan`.
    received: Latencies,
    /// `decoded`, one row per input.
    per_input: Vec<Latencies>,
}

/// Sends `warmup + samples` scans through a pty and the real serial driver, `rate`
/// per second, and measures each from its terminator to its decoded `Scan`.
fn scan_latency(warmup: usize, samples: usize, rate: u32) -> LatencyFigures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut pty = Pty::new();
    let mut config = SerialConfig::new("scanner-1", &pty.slave_path);
    // Only the terminator ends a message: the pause before it must not.
    config.inter_byte_timeout_ms = 0;
    let (events_tx, mut events) = mpsc::channel::<DeviceEvent>(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let driver = runtime.spawn(run_serial(config, events_tx, async {
        let _ = stopped.await;
    }));
    // Unbounded, but the measuring thread takes each report before it sends the
    // next scan, so it never holds more than one.
    let (reports_tx, reports) = std_mpsc::channel::<Report>();
    let consumer = runtime.spawn(async move {
        let scan_config = ScanConfig::default();
        while let Some(event) = events.recv().await {
            let report = match event.kind {
                DeviceEventKind::Data(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let scan = decode(&text, &scan_config);
                    Report::Decoded {
                        scan: Box::new(scan),
                        decoded_at: Instant::now(),
                    }
                }
                DeviceEventKind::Status(DeviceState::Connected) => Report::Connected,
                DeviceEventKind::Status(other) => Report::Unexpected(format!("{other:?}")),
            };
            if reports_tx.send(report).is_err() {
                return;
            }
        }
    });

    match reports.recv_timeout(PATIENCE) {
        Ok(Report::Connected) => {}
        Ok(Report::Unexpected(state)) => panic!("the driver reported {state} instead of connecting"),
        Ok(Report::Decoded { .. }) => panic!("a scan before any was sent"),
        Err(e) => panic!("the driver did not connect: {e}"),
    }

    let mut figures = LatencyFigures {
        decoded: Latencies::new("terminator written → `decode` returned in the consumer task"),
        received: Latencies::new("terminator written → `Scan` received by the measuring thread"),
        per_input: SCANS
            .iter()
            .map(|input| Latencies::new(format!("{} (decoded)", input.name)))
            .collect(),
    };
    let period = Duration::from_secs(1) / rate;
    let started = Instant::now();
    for i in 0..warmup + samples {
        let next = started + period * i as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let which = i % SCANS.len();
        let input = &SCANS[which];
        pty.send(input.body);
        std::thread::sleep(BODY_TO_TERMINATOR);
        let terminator_at = Instant::now();
        pty.send(b"\r");
        let (scan, decoded_at) = match reports.recv_timeout(PATIENCE) {
            Ok(Report::Decoded { scan, decoded_at }) => (scan, decoded_at),
            Ok(Report::Connected) => panic!("the driver reconnected during the benchmark"),
            Ok(Report::Unexpected(state)) => panic!("the driver reported {state}"),
            Err(e) => panic!("scan {i} ({}) did not arrive: {e}", input.name),
        };
        let received_at = Instant::now();
        assert_eq!(scan.kind, input.kind, "{}: {scan:?}", input.name);
        assert_eq!(scan.raw.as_bytes(), input.body, "{}", input.name);
        if i >= warmup {
            let decoded = decoded_at - terminator_at;
            figures.decoded.samples.push(decoded);
            figures.per_input[which].samples.push(decoded);
            figures.received.samples.push(received_at - terminator_at);
        }
    }

    let _ = stop.send(());
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE, driver)
            .await
            .expect("the driver stops when told to")
            .expect("the driver did not panic");
        // The driver dropped its sender, so the consumer's channel closes.
        tokio::time::timeout(PATIENCE, consumer)
            .await
            .expect("the consumer stops when the driver does")
            .expect("the consumer did not panic");
    });
    runtime.shutdown_timeout(PATIENCE);
    figures
}

/// CPU time counters, in clock ticks, from Linux's `/proc`: of the whole machine
/// and of this process.
#[derive(Clone, Copy)]
struct CpuTicks {
    /// All time of all cores, busy or idle.
    machine_total: u64,
    /// Time the cores were busy (neither idle nor waiting for I/O).
    machine_busy: u64,
    /// Time this process ran (user and system).
    this_process: u64,
}

impl CpuTicks {
    /// The counters now; `None` where `/proc` cannot be read.
    fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let machine_total: u64 = cpu.iter().sum();
        // user nice system idle iowait irq softirq steal …
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime are the 14th and 15th fields of the line.
        let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let this_process = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTicks {
            machine_total,
            machine_busy: machine_total - idle,
            this_process,
        })
    }

    /// The share of the machine's CPU time that other processes used between
    /// `self` and `later`, in percent.
    fn others_percent(self, later: CpuTicks) -> f64 {
        let total = later.machine_total.saturating_sub(self.machine_total).max(1);
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let own = later.this_process.saturating_sub(self.this_process);
        busy.saturating_sub(own) as f64 * 100.0 / total as f64
    }
}

/// Decodes the whole mix over and over for `budget`; returns how many scans it
/// decoded and how long that took.
fn decode_mix(inputs: &[(&Input, &str)], config: &ScanConfig, budget: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let mut scans = 0u64;
    while started.elapsed() < budget {
        for (_, text) in inputs {
            black_box(decode(black_box(text), config));
        }
        scans += inputs.len() as u64;
    }
    (scans, started.elapsed())
}

/// Nanoseconds per [`decode`] of `text`, decoding it repeatedly for `budget`.
fn decode_one(text: &str, config: &ScanConfig, budget: Duration) -> f64 {
    const BATCH: u64 = 256;
    let started = Instant::now();
    let mut scans = 0u64;
    while started.elapsed() < budget {
        for _ in 0..BATCH {
            black_box(decode(black_box(text), config));
        }
        scans += BATCH;
    }
    started.elapsed().as_secs_f64() * 1e9 / scans as f64
}

/// Checks that every input decodes to its kind before anything is measured, and
/// names all that do not.
fn check_inputs() {
    let config = ScanConfig::default();
    let wrong: Vec<String> = SCANS
        .iter()
        .chain(OTHER_INPUTS)
        .filter_map(|input| {
            let scan = decode(&String::from_utf8_lossy(input.body), &config);
            (scan.kind != input.kind)
                .then(|| format!("{}: expected {:?}, got {scan:?}", input.name, input.kind))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "inputs that decode to another kind:\n{}",
        wrong.join("\n")
    );
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    check_inputs();
    let (warmup, samples) = if smoke { (50, 300) } else { (500, 5000) };
    let rate = 200;
    let mix_budget = Duration::from_millis(if smoke { 200 } else { 2000 });
    let per_input_budget = Duration::from_millis(if smoke { 20 } else { 250 });

    println!("## scan benchmark");
    println!();
    println!(
        "machine: {} cores ({})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH,
    );
    println!();

    let cpu_before = CpuTicks::now();
    let figures = scan_latency(warmup, samples, rate);
    // The tail of the latency depends on what else runs on the machine's cores.
    let others = cpu_before
        .zip(CpuTicks::now())
        .map(|(before, after)| before.others_percent(after));
    println!(
        "scan latency: {samples} scans at {rate}/s (after {warmup} unmeasured), the real serial \
         driver on a pty, tokio multi-thread runtime with 2 workers"
    );
    match others {
        Some(percent) => {
            println!("CPU time other processes used during the latency run: {percent:.0} % of the machine's")
        }
        None => println!("CPU time other processes used during the latency run: unknown (no /proc)"),
    }
    println!();
    println!("| scan latency | n | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---|---|---|---|---|---|");
    println!("{}", figures.decoded.row());
    println!("{}", figures.received.row());
    for input in &figures.per_input {
        println!("{}", input.row());
    }
    println!();
    let p99 = figures.decoded.percentile(0.99);
    let target = Duration::from_millis(1);
    let over = figures.decoded.samples.iter().filter(|&&d| d >= target).count();
    println!(
        "target: p99 < 1000 µs — {} (p99 {:.1} µs; {over} of {} scans took 1 ms or more)",
        if p99 < target { "met" } else { "NOT met" },
        p99.as_secs_f64() * 1e6,
        figures.decoded.samples.len(),
    );
    println!();

    let config = ScanConfig::default();
    let inputs: Vec<(&Input, &str)> = SCANS
        .iter()
        .chain(OTHER_INPUTS)
        .map(|input| {
            (
                input,
                std::str::from_utf8(input.body).expect("the inputs are UTF-8"),
            )
        })
        .collect();
    // Warm the caches and the branch predictors on a separate pass.
    decode_mix(&inputs, &config, mix_budget / 10);
    let (scans, elapsed) = decode_mix(&inputs, &config, mix_budget);
    println!("| decode throughput, one thread | scans | seconds | scans/s | ns/scan |");
    println!("|---|---|---|---|---|");
    println!(
        "| mix of the {} inputs below, in turn | {scans} | {:.2} | {:.0} | {:.0} |",
        inputs.len(),
        elapsed.as_secs_f64(),
        scans as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e9 / scans as f64,
    );
    println!();
    println!("| input | kind | ns/scan |");
    println!("|---|---|---|");
    for (input, text) in &inputs {
        let ns = decode_one(text, &config, per_input_budget);
        println!("| {} | {:?} | {ns:.0} |", input.name, input.kind);
    }
}
