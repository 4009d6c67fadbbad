//! The harness of the end-to-end tests: it drives the real `store-agent` binary the way a
//! person or systemd does, through its command line, its files and signals.
//!
//! Why the binary and not the library: the promises these tests check — exit codes, what is
//! printed where, all-or-nothing imports surviving `SIGKILL`, a clean stop on `SIGTERM` — live in
//! the process, not in a function. A test that calls `store_agent::cli::execute` cannot be
//! killed halfway through an import and cannot receive a signal.
//!
//! What the harness guarantees every test:
//!
//! * **Its own directory.** [`TestDir`] is a fresh temporary directory (removed when the test
//!   ends) holding the test's configuration, database and snapshots, and it is the working
//!   directory of every process the test starts. Tests run in parallel and never share a file.
//! * **A clean environment.** Variables that change what the agent does
//!   (`STORE_AGENT_CONFIG`, `STORE_AGENT_LOYALTY_HASH_KEY`, `RUST_LOG`, `JOURNAL_STREAM`) are
//!   removed from every child, so a developer's shell or a CI runner cannot leak into a test.
//! * **No stray processes.** A command that hangs is killed after [`COMMAND_TIMEOUT`] and the
//!   test fails; a [`RunningAgent`] that is still running when the test ends (or panics) is
//!   killed with `SIGKILL` and reaped by its `Drop`.
//!
//! The binary is the one cargo built for this workspace (`target/debug/store-agent`); the test
//! script runs `cargo build -p store-agent` first, because cargo does not build another
//! package's binary for an integration test.

pub mod browser;
pub mod http;
pub mod link;
pub mod mqtt;
pub mod rig;

/// A small deterministic generator (xorshift64*), so a failing run can be
/// replayed from its seed. Not for anything secret.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    /// `len` random lowercase letters.
    pub fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A duration from `from` to `to` milliseconds.
    pub fn millis(&mut self, from: u64, to: u64) -> std::time::Duration {
        std::time::Duration::from_millis(from + self.next_u64() % (to - from + 1))
    }
}

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The tenant written into every test configuration: the sample data's default, so a snapshot
/// made by `sample-data` without `--config` fits the test database.
pub const TENANT_ID: &str = "demo-tenant";
/// The store of every test configuration (the sample data's default, as [`TENANT_ID`]).
pub const STORE_ID: &str = "store-001";
/// The device of every test configuration.
pub const DEVICE_ID: &str = "test-device";
/// The database file name inside a [`TestDir`].
pub const DATABASE_FILE: &str = "store.db";
/// The configuration file name inside a [`TestDir`].
pub const CONFIG_FILE: &str = "config.toml";

/// How long a short command may take before the test gives up on it. Generous on purpose:
/// tests assert behaviour, not speed (a debug build on a loaded two-core machine is slow), and
/// the limit only exists so a hanging agent fails the test instead of hanging the suite.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Environment variables that change the agent's behaviour and must not leak in from the
/// developer's shell or the CI runner:
/// * `STORE_AGENT_CONFIG` is the default of every `--config`;
/// * `STORE_AGENT_LOYALTY_HASH_KEY` overrides the configured hash key (other hashes, other
///   results);
/// * `RUST_LOG` overrides the configured log filter (a `RUST_LOG=off` would hide the
///   "Agent ready." line the tests wait for);
/// * `JOURNAL_STREAM` is set when the test runner itself runs under systemd; the agent's `auto`
///   log format looks at it.
pub const SCRUBBED_ENV: [&str; 4] = [
    "STORE_AGENT_CONFIG",
    "STORE_AGENT_LOYALTY_HASH_KEY",
    "RUST_LOG",
    "JOURNAL_STREAM",
];

/// The `store-agent` binary cargo built for this workspace.
///
/// The test executable lives in `target/<profile>/deps/`, the binary two directories up in
/// `target/<profile>/`. Panics with what to do when it has not been built.
pub fn agent_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the path of the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in target/<profile>/deps/");
        let binary = profile_dir.join(format!("store-agent{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "{} does not exist: run `cargo build -p store-agent` first \
             (cargo does not build another package's binary for these tests)",
            binary.display()
        );
        binary
    })
}

/// A `Command` for the agent binary with the environment scrubbed (see [`SCRUBBED_ENV`]) and
/// stdin closed, so a command that would wait for input fails instead of hanging.
pub fn agent_command() -> Command {
    let mut command = Command::new(agent_binary());
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command.stdin(Stdio::null());
    command
}

/// The configuration every test starts from: the sample data's tenant and store, a database
/// at `database`, and the public demo hashing key (the one `sample-data` uses without
/// `--config`, so its snapshots fit). Logging keeps its default (`auto`), as in a store.
///
/// The layout is fixed (one key per line, sections in this order) so tests can compute line
/// numbers from the text; tests that need a problem in the file edit this text and search
/// it for the line.
pub fn config_text(database: &Path) -> String {
    format!(
        "# store-agent configuration written by the end-to-end test harness.\n\
         [store]\n\
         tenant_id = \"{TENANT_ID}\"\n\
         store_id = \"{STORE_ID}\"\n\
         device_id = \"{DEVICE_ID}\"\n\
         \n\
         [database]\n\
         path = {}\n\
         \n\
         [loyalty]\n\
         hash_key = \"{}\"\n",
        toml_string(&path_str(database)),
        store_agent::sample::DEMO_HASH_KEY_HEX,
    )
}

/// A POSLog file of one cash sale (a pen, 2.50 EUR) in the test store, numbered `seq` on
/// register POS-7, business day 2026-11-23.
pub fn poslog_sale(seq: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" MajorVersion="6">
  <Transaction>
    <BusinessUnit><UnitID TypeCode="RetailStore">{STORE_ID}</UnitID></BusinessUnit>
    <WorkstationID>POS-7</WorkstationID>
    <SequenceNumber>{seq}</SequenceNumber>
    <BusinessDayDate>2026-11-23</BusinessDayDate>
    <OperatorID>A001</OperatorID>
    <CurrencyCode>EUR</CurrencyCode>
    <RetailTransaction>
      <LineItem>
        <SequenceNumber>1</SequenceNumber>
        <Sale>
          <POSIdentity><POSItemID>4006381333931</POSItemID></POSIdentity>
          <Description>Pen</Description>
          <ExtendedAmount>2.50</ExtendedAmount>
          <Quantity>1</Quantity>
        </Sale>
      </LineItem>
      <LineItem>
        <SequenceNumber>2</SequenceNumber>
        <Tender TenderType="Cash"><Amount>2.50</Amount></Tender>
      </LineItem>
      <Total TotalType="TransactionGrandAmount">2.50</Total>
    </RetailTransaction>
  </Transaction>
</POSLog>
"#
    )
}

/// `s` as a TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`) are all
/// valid TOML, so serde_json does the quoting of paths with odd characters.
pub fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// `path` as UTF-8, for command lines and messages. Temporary directories are ASCII in practice;
/// a path that is not UTF-8 fails the test loudly rather than being mangled.
pub fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("test path {} is not UTF-8", path.display()))
        .to_owned()
}

/// The 1-based number of the first line of `text` that starts with `prefix` (after leading
/// spaces). Tests use it to compute the line a problem must be reported on from the text they
/// wrote, instead of hard-coding a number that silently drifts when the text changes.
pub fn line_number_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(prefix))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in\n{text}"))
}

/// A temporary directory owned by one test, removed when it is dropped. Every file the test
/// makes goes in here, and every process it starts runs in here.
#[derive(Debug)]
pub struct TestDir {
    /// Kept for its `Drop`, which removes the directory and everything in it.
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl TestDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("store-agent-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory for the test");
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` inside the directory, as a string for a command line.
    pub fn path_str(&self, name: impl AsRef<Path>) -> String {
        path_str(&self.join(name))
    }

    /// Writes `contents` to `name` inside the directory and returns its path as a string.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> String {
        let path = self.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path_str(&path)
    }

    /// The database file the standard configuration points at.
    pub fn database(&self) -> PathBuf {
        self.join(DATABASE_FILE)
    }

    /// SQLite's write-ahead log beside [`TestDir::database`].
    pub fn wal(&self) -> PathBuf {
        self.join(format!("{DATABASE_FILE}-wal"))
    }

    /// The standard configuration text ([`config_text`]) for this directory's database.
    pub fn config_text(&self) -> String {
        config_text(&self.database())
    }

    /// Writes the standard configuration to `config.toml` and returns its path.
    pub fn write_config(&self) -> String {
        self.write(CONFIG_FILE, self.config_text())
    }

    /// Runs the agent with `args` in this directory, waits for it (at most
    /// [`COMMAND_TIMEOUT`]) and returns what it printed.
    pub fn run<I, S>(&self, args: I) -> RunOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn(args).finish(COMMAND_TIMEOUT)
    }

    /// Runs the agent with `args` and panics with everything it printed unless it exits 0.
    pub fn run_ok<I, S>(&self, args: I) -> RunOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown = describe_args(&args);
        let output = self.run(args);
        assert!(output.success(), "`store-agent {shown}` failed:\n{output}");
        output
    }

    /// Starts the agent with `args` in this directory as a child process, with stdout and
    /// stderr captured by reader threads (so a chatty child never blocks on a full pipe).
    pub fn spawn<I, S>(&self, args: I) -> RunningAgent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_with_env(args, &[])
    }

    /// As [`TestDir::spawn`], with extra environment variables (`NOTIFY_SOCKET`, say).
    pub fn spawn_with_env<I, S>(&self, args: I, env: &[(&str, &OsStr)]) -> RunningAgent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let description = describe_args(&args);
        let mut command = agent_command();
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .args(&args)
            .current_dir(self.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `store-agent {description}`: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            read_into(child.stdout.take().expect("stdout is piped"), Arc::clone(&stdout)),
            read_into(child.stderr.take().expect("stderr is piped"), Arc::clone(&stderr)),
        ];
        RunningAgent {
            child,
            description,
            exited: None,
            stdout,
            stderr,
            readers,
        }
    }

    /// `store-agent run --config CONFIG`, once it has logged "Agent ready." (within
    /// [`rig::READY_TIMEOUT`]); panics with what it printed otherwise.
    pub fn spawn_ready(&self, config: &str) -> RunningAgent {
        let mut agent = self.spawn(["run", "--config", config]);
        assert!(
            agent.wait_for_stderr("Agent ready.", rig::READY_TIMEOUT),
            "{}",
            agent.stderr_so_far()
        );
        agent
    }

    /// `store-agent sample-data` with `customers` and `products` into `sample.jsonl`:
    /// the snapshot's path and the summary it printed (cards, PINs, pickups).
    pub fn sample_data(&self, customers: u64, products: u64) -> (String, serde_json::Value) {
        let snapshot = self.path_str("sample.jsonl");
        let (c, p) = (customers.to_string(), products.to_string());
        let out = self.run_ok([
            "sample-data",
            "--customers",
            &c,
            "--products",
            &p,
            "--out",
            &snapshot,
        ]);
        let summary = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("sample-data printed no JSON summary ({e}):\n{out}"));
        (snapshot, summary)
    }

    /// `store-agent status --config CONFIG --json`, parsed. Panics unless it succeeds.
    pub fn status_json(&self, config: &str) -> serde_json::Value {
        let output = self.run_ok(["status", "--config", config, "--json"]);
        serde_json::from_str(&output.stdout)
            .unwrap_or_else(|e| panic!("status --json printed something that is not JSON ({e}):\n{output}"))
    }
}

/// The arguments of a command line, for messages.
fn describe_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Copies everything `source` produces into `sink`, on its own thread. Invalid UTF-8 is
/// replaced rather than dropped, so a test sees that something odd was printed.
fn read_into(mut source: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        // Bytes of a UTF-8 character split across two reads wait here for the rest.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match source.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pending.extend_from_slice(&buffer[..n]);
                    let valid = match std::str::from_utf8(&pending) {
                        Ok(_) => pending.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(_) => pending.len(),
                    };
                    let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                    pending.drain(..valid);
                    sink.lock().expect("output buffer").push_str(&text);
                }
            }
        }
        if !pending.is_empty() {
            sink.lock()
                .expect("output buffer")
                .push_str(&String::from_utf8_lossy(&pending));
        }
    })
}

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The command line, for failure messages.
    pub command: String,
    /// How the process ended (an exit code, or the signal that killed it).
    pub status: ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl RunOutput {
    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether the process exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The signal that ended the process, if one did.
    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }

    /// stdout and stderr together, for assertions that only care that something was said.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The whole output, so a failed assertion shows what the agent said.
impl std::fmt::Display for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ store-agent {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// An agent process a test started and is talking to.
///
/// Dropping it while the process runs kills it with `SIGKILL` and reaps it, so a failing
/// assertion never leaves an agent running (or a zombie) behind.
#[derive(Debug)]
pub struct RunningAgent {
    /// The process.
    child: Child,
    /// Its command line, for messages.
    description: String,
    /// How it ended, once reaped.
    exited: Option<ExitStatus>,
    /// Everything it printed on stdout so far (filled by a reader thread).
    stdout: Arc<Mutex<String>>,
    /// Everything it printed on stderr so far (filled by a reader thread).
    stderr: Arc<Mutex<String>>,
    /// The two reader threads, joined once the process has exited.
    readers: Vec<JoinHandle<()>>,
}

/// How often the waiting helpers look at the process and its output. Short, because the
/// `SIGKILL` test must notice a write-ahead log growing before the import commits.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

impl RunningAgent {
    /// The process id, for signals.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t")
    }

    /// Sends `signal` (like `libc::SIGTERM`) to the process.
    ///
    /// Safe to call until the process is reaped: an exited but unreaped child stays a zombie
    /// holding its pid, so the signal cannot reach a different process that reused the pid.
    pub fn signal(&self, signal: libc::c_int) {
        assert!(
            self.exited.is_none(),
            "`store-agent {}` was already reaped; not sending signal {signal}",
            self.description
        );
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            result,
            0,
            "kill({}, {signal}) failed: {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Everything printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// How the process ended, if it has (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot wait for `store-agent {}`: {e}", self.description));
        }
        self.exited
    }

    /// The address the agent's HTTP server listens on, from its "HTTP server listening."
    /// log line (the tests configure port 0). Panics with the log when there is none.
    pub fn http_addr(&self) -> String {
        let log = self.stderr_so_far();
        log.lines()
            .find(|l| l.contains("HTTP server listening."))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no listening address in the log\n{log}"))
    }

    /// Waits until stderr contains `needle`. Returns false if `timeout` passes first or the
    /// process exits without printing it.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |agent| agent.stderr_so_far().contains(needle))
    }

    /// Polls `condition` every `POLL_INTERVAL` until it holds (true), `timeout` passes or the
    /// process exits (false; the condition is checked once more after the exit, so output
    /// printed just before it is not missed).
    pub fn wait_until(&mut self, timeout: Duration, mut condition: impl FnMut(&mut Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if self.try_status().is_some() {
                self.join_readers();
                return condition(self);
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its output. If it does not
    /// exit in time it is killed and the test fails with what it printed.
    pub fn finish(mut self, timeout: Duration) -> RunOutput {
        let Some(status) = self.wait_timeout(timeout) else {
            self.kill_and_reap();
            panic!(
                "`store-agent {}` did not exit within {timeout:?}; killed it.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.description,
                self.stdout.lock().expect("stdout buffer"),
                self.stderr_so_far()
            );
        };
        self.join_readers();
        RunOutput {
            command: self.description.clone(),
            status,
            stdout: self.stdout.lock().expect("stdout buffer").clone(),
            stderr: self.stderr_so_far(),
        }
    }

    /// Waits for the reader threads: once the process has exited they reach the end of their
    /// pipes, and then every byte the process printed is in the buffers. (A grandchild holding
    /// the pipes open would keep them waiting; the agent starts none.)
    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Kills the process with `SIGKILL` if it still runs, and reaps it.
    fn kill_and_reap(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// The processor's model name from /proc/cpuinfo, for the benchmarks' machine line.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A pseudo-terminal pair standing in for a serial device: the test writes to
/// `master` (the scanner, card reader or POS printer port), the agent opens `path`.
pub struct Pty {
    /// The side the test writes to (and reads from, for output devices).
    pub master: std::fs::File,
    /// Kept open so the pty stays up between the agent's opens, and to see how many
    /// written bytes the agent has not read yet.
    pub slave: std::os::fd::OwnedFd,
    /// The slave's device path, for the agent's configuration.
    pub path: String,
}

impl Pty {
    /// Opens a new pair.
    pub fn open() -> Pty {
        use std::os::fd::FromRawFd;
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        // SAFETY: openpty writes two descriptors into the out-pointers; the name,
        // termios and window-size arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
        // SAFETY: ttyname returns a pointer to a static buffer for a valid tty descriptor.
        let name = unsafe { libc::ttyname(slave) };
        assert!(!name.is_null(), "ttyname failed");
        // SAFETY: a NUL-terminated string from ttyname, copied at once.
        let path = unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        Pty {
            // SAFETY: both descriptors were just opened by openpty and are owned here.
            master: unsafe { std::fs::File::from_raw_fd(master) },
            slave: unsafe { std::os::fd::OwnedFd::from_raw_fd(slave) },
            path,
        }
    }
}
