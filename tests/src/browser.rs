//! A real browser for the screen tests: headless Chromium driven over WebDriver by chromedriver,
//! from Rust with the `fantoccini` client.
//!
//! Why a real Chromium and not an HTML parser: what the screen tests check — that a scan reaches
//! the screen, that the kiosk forgets a customer, that the page works under its
//! Content-Security-Policy, that German text fits — happens in the browser's scripts, layout and
//! security checks, and only the browser the kiosks run can prove it.
//!
//! What the harness guarantees every test:
//!
//! * **Its own browser.** [`Browser::start`] starts a [`Chromedriver`] on a free loopback port
//!   and a Chromium with a fresh profile (`--user-data-dir`) in a temporary directory of its
//!   own, so tests run in parallel and share no cookies, storage or cache.
//! * **A quiet, closed machine is fine.** Chromium's background traffic (component updates,
//!   sync, QUIC probes, first-run pages) is switched off: the test machines have no internet,
//!   and the refused connections would only fill the logs.
//! * **A chosen language.** [`BrowserOptions::lang`] sets both the UI language and the
//!   `Accept-Language` header, because the screens are tested in English and in German.
//! * **A screenshot of every failure.** [`run_in_browser`] runs a test body and, when it panics,
//!   saves what the browser showed to `target/test-screenshots/<test>.png` before the panic
//!   fails the test.
//! * **No stray processes, no stray files.** chromedriver runs in a process group of its own,
//!   which the Chromium processes it starts inherit; dropping the [`Chromedriver`] (or the
//!   [`Browser`] holding it, also when a test panics) kills that whole group with `SIGKILL` and
//!   reaps chromedriver. (Chromium's crash handlers detach into sessions of their own and exit
//!   by themselves once the browser is gone.) [`Browser::close`] ends the WebDriver session
//!   first, so that Chromium exits on its own when it can. Everything Chromium writes — profile,
//!   crash database, caches — goes into the browser's temporary directory.
//! * **Skip or fail, never pass silently.** [`browser_or_skip`]: a machine without Chromium or
//!   chromedriver skips the browser tests with a reason, except under `CI=true`, where a missing
//!   browser is a failure so CI can never pass by skipping (the policy of
//!   [`crate::mqtt::mosquitto_or_skip`]).
//!
//! The helpers of [`Browser`] take CSS selectors and panic with what they saw (the element's
//! text, the page's URL, WebDriver's error) instead of returning errors: a test reads like the
//! steps of a person at the screen, and a failure says what was on the screen.

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The element type the helpers return, re-exported so a test needs no `fantoccini` import
/// for the common case.
pub use fantoccini::elements::Element;

/// Where Debian's `chromium` package installs the browser (a launcher script that `exec`s
/// `/usr/lib/chromium/chromium`).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Where Debian's `chromium-driver` package installs chromedriver.
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long [`Browser::wait_for`] and the helpers built on it wait by default
/// ([`BrowserOptions::wait_timeout`]). Only a failure bound: a passing test waits as long as the
/// page takes, and a page of the agent answers in milliseconds.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long chromedriver may take to answer ready, and Chromium to open a session, before the
/// test fails. Generous, like every bound here: two Chromiums starting on a loaded two-core
/// machine take seconds.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long ending a session or taking a screenshot may take. A hung browser must not hang the
/// suite: after this the harness gives up on the courtesy and kills the processes.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the waiting helpers look at the page again. Each look is a WebDriver round trip
/// on loopback (about a millisecond), so polling this often costs little and keeps tests quick.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The PNG file signature, checked before a screenshot is written where people will look for
/// one.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The Chromium executable: `CHROMIUM` when set (`None` if that file does not exist), otherwise
/// [`DEFAULT_CHROMIUM`] if it exists.
pub fn chromium_binary() -> Option<&'static Path> {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| binary_from_env("CHROMIUM", DEFAULT_CHROMIUM))
        .as_deref()
}

/// The chromedriver executable: `CHROMEDRIVER` when set (`None` if that file does not exist),
/// otherwise [`DEFAULT_CHROMEDRIVER`] if it exists. It must match the Chromium's major version;
/// Debian's two packages always do.
pub fn chromedriver_binary() -> Option<&'static Path> {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| binary_from_env("CHROMEDRIVER", DEFAULT_CHROMEDRIVER))
        .as_deref()
}

/// `$variable` if set, else `default`, and only if the file is there. An explicit choice that
/// is not there is not silently replaced by another binary.
fn binary_from_env(variable: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    Some(path).filter(|p| p.is_file())
}

/// Whether a browser can be started here: both Chromium and chromedriver are installed.
pub fn browser_available() -> bool {
    chromium_binary().is_some() && chromedriver_binary().is_some()
}

/// How a [`Browser`] is set up. `BrowserOptions::default()` is an English desktop-sized window;
/// change single fields with struct update syntax:
///
/// `BrowserOptions { lang: "de-DE".into(), ..BrowserOptions::default() }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOptions {
    /// The language as a BCP 47 tag (`en-US`, `de-DE`): Chromium's `--lang` (the UI language
    /// and `navigator.language`) and its `intl.accept_languages` preference (the
    /// `Accept-Language` header the agent picks the screen's language from). Default `en-US`.
    pub lang: String,
    /// The viewport's size in CSS pixels, width then height: what screenshots show and what the
    /// page's media queries see. Default 1280 × 900, a counter PC's screen.
    pub window_size: (u32, u32),
    /// How long the waiting helpers wait before they fail the test. Default
    /// [`DEFAULT_WAIT_TIMEOUT`].
    pub wait_timeout: Duration,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            lang: "en-US".to_owned(),
            window_size: (1280, 900),
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }
}

/// A browser for `test` with the default options (English, 1280 × 900), or `None` after printing
/// why the test skips when Chromium or chromedriver is missing — except under `CI=true`, where it
/// panics, because CI must run every browser test and can never pass by skipping. Call it first
/// in every browser test:
///
/// `let Some(browser) = browser_or_skip("kiosk_shows_the_cart").await else { return };`
pub async fn browser_or_skip(test: &str) -> Option<Browser> {
    browser_or_skip_with(test, &BrowserOptions::default()).await
}

/// [`browser_or_skip`] with chosen options (a language, a window size).
pub async fn browser_or_skip_with(test: &str, options: &BrowserOptions) -> Option<Browser> {
    if browser_available() {
        return Some(Browser::start(options).await);
    }
    let missing = [
        (
            chromium_binary().is_none(),
            "chromium (CHROMIUM, else /usr/bin/chromium)",
        ),
        (
            chromedriver_binary().is_none(),
            "chromedriver (CHROMEDRIVER, else /usr/bin/chromedriver)",
        ),
    ]
    .iter()
    .filter(|(missing, _)| *missing)
    .map(|(_, what)| *what)
    .collect::<Vec<_>>()
    .join(" and ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: no {missing} and CI=true: CI must run every browser test (scripts/test.sh \
             installs the chromium and chromium-driver packages)"
        );
    }
    eprintln!(
        "SKIP {test}: no {missing}; install the chromium and chromium-driver packages \
         (scripts/test.sh does, as root) or point CHROMIUM and CHROMEDRIVER at them to run the \
         browser tests"
    );
    None
}

/// A chromedriver process listening on a free loopback port.
///
/// It runs in a process group of its own, and the Chromium processes it starts inherit it:
/// dropping the `Chromedriver` kills the whole group with `SIGKILL` and reaps chromedriver, so a
/// test that panics leaves neither a chromedriver nor an orphaned Chromium behind.
#[derive(Debug)]
pub struct Chromedriver {
    /// The process, by whose pid (also its process group id) it is stopped.
    child: Child,
    /// The loopback port it listens on.
    port: u16,
    /// Where its output goes, for failure messages.
    log: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver on a free port of 127.0.0.1 and waits until its `/status` answers
    /// ready. `dir` (which must exist) becomes its home: its output goes to `chromedriver.log`
    /// there, and the Chromium it starts keeps its crash database and caches there rather than
    /// in the user's `~/.config` and `~/.cache`. Panics (with chromedriver's output) if it is not
    /// installed, exits, or is not ready within [`START_TIMEOUT`].
    pub async fn start(dir: &Path) -> Chromedriver {
        let log = dir.join("chromedriver.log");
        let binary = chromedriver_binary().expect("chromedriver is installed (see browser_or_skip)");
        // The port is found by binding 127.0.0.1:0 and letting go, so another process (a
        // parallel test) can take it before chromedriver binds it. chromedriver then exits at
        // once, and a second try on another port almost always succeeds.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let port = free_loopback_port();
            let output = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap_or_else(|e| panic!("cannot open the chromedriver log {}: {e}", log.display()));
            let stderr = output
                .try_clone()
                .expect("a second handle on the chromedriver log");
            let child = Command::new(binary)
                .arg(format!("--port={port}"))
                // Debian's Chromium puts its crash database under XDG_CONFIG_HOME even with
                // --user-data-dir; a test writes nothing outside its own directory.
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(stderr)
                // Its own process group, inherited by the Chromium it starts, so Drop can kill
                // them all at once (see the type's documentation).
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut driver = Chromedriver {
                child,
                port,
                log: log.clone(),
            };
            match driver.wait_ready().await {
                Ok(()) => return driver,
                Err(DriverNotReady::Exited) if attempt < ATTEMPTS => continue,
                Err(reason) => panic!(
                    "chromedriver on port {port} {reason}; its output ({}):\n{}",
                    log.display(),
                    driver.log_text()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its WebDriver URL, for [`fantoccini::ClientBuilder::connect`].
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id, which is also the id of its process group (the Chromium processes it
    /// starts are in that group).
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t")
    }

    /// Everything chromedriver has printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// Polls `/status` until chromedriver says it is ready, it exits, or [`START_TIMEOUT`]
    /// passes.
    async fn wait_ready(&mut self) -> Result<(), DriverNotReady> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if status_says_ready(self.port).await {
                return Ok(());
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return Err(DriverNotReady::Exited);
            }
            if Instant::now() >= deadline {
                return Err(DriverNotReady::TimedOut);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = self.pid();
        // The group is signalled before chromedriver is reaped: until then its zombie holds the
        // pid, so the group id cannot have been reused by someone else's processes.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        // Chromium's processes are not our children; give them a moment to be gone, so the
        // profile directory the Browser removes next is no longer being written to. Bounded,
        // because an exited orphan nobody reaps yet still counts as a member of the group.
        let deadline = Instant::now() + Duration::from_secs(2);
        // SAFETY: as above; signal 0 only checks whether the group still has members.
        while unsafe { libc::kill(-group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Why chromedriver did not become ready.
#[derive(Debug)]
enum DriverNotReady {
    /// The process exited (most often: another process took the port first).
    Exited,
    /// It still ran but did not answer ready within [`START_TIMEOUT`].
    TimedOut,
}

impl std::fmt::Display for DriverNotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverNotReady::Exited => write!(f, "exited before it was ready"),
            DriverNotReady::TimedOut => write!(f, "was not ready within {START_TIMEOUT:?}"),
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether chromedriver on `port` answers `GET /status` with `"ready": true`. Any failure
/// (nothing listening yet, a partial answer) is "not yet".
async fn status_says_ready(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        let request = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        // chromedriver keeps the connection open despite `Connection: close`, so the answer
        // ends where its Content-Length says, not at the end of the stream.
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(response);
            }
            response.extend_from_slice(&buffer[..n]);
            if let Some(body) = complete_body(&response) {
                return Ok(body.to_vec());
            }
        }
    };
    let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), probe).await else {
        return false;
    };
    let body = String::from_utf8_lossy(&body);
    // From the first `{` to the last `}`: the body is one JSON object, and this also finds it
    // in what a server that closes instead of sending Content-Length left, headers and all.
    let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&body[start..=end])
        .is_ok_and(|status| status["value"]["ready"] == serde_json::Value::Bool(true))
}

/// The body of an HTTP response once all of it (as many bytes as its `Content-Length` says)
/// has arrived; `None` while the headers or the body are incomplete, or without a length.
fn complete_body(response: &[u8]) -> Option<&[u8]> {
    let end_of_headers = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let headers = String::from_utf8_lossy(&response[..end_of_headers]);
    let length: usize = headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    response.get(end_of_headers..end_of_headers + length)
}

/// A headless Chromium of one test, with its chromedriver and its own profile directory.
///
/// Dropping it kills both processes (see [`Chromedriver`]) and removes the directory; prefer
/// [`Browser::close`] (or [`run_in_browser`], which calls it), which ends the session first.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session. Declared first so it is dropped before the processes are killed.
    client: Client,
    /// How long the waiting helpers wait ([`BrowserOptions::wait_timeout`]).
    wait_timeout: Duration,
    /// The driver, and through its process group the Chromium.
    chromedriver: Chromedriver,
    /// The Chromium profile (`profile/`), its crash database and caches (`config/`, `cache/`)
    /// and chromedriver's output (`chromedriver.log`).
    /// Declared after the driver so it is removed only once the processes are gone.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium set up by `options`, and opens a session.
    /// Panics (with chromedriver's output) if either fails to start. Most tests call
    /// [`browser_or_skip`] instead, which first checks that both are installed.
    pub async fn start(options: &BrowserOptions) -> Browser {
        let chromium = chromium_binary().expect("chromium is installed (see browser_or_skip)");
        let dir = tempfile::Builder::new()
            .prefix("store-agent-browser-")
            .tempdir()
            .expect("cannot create a temporary directory for the browser");
        let profile = dir.path().join("profile");
        let chromedriver = Chromedriver::start(dir.path()).await;

        let (width, height) = options.window_size;
        let args = vec![
            // The new headless mode is the real browser without a window (the old one was a
            // separate implementation).
            "--headless=new".to_owned(),
            // The sandbox needs user namespaces, which containers and CI runners (often root)
            // do not give; the pages under test are our own.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            // Background traffic to Google's services: the machine's network is closed, and
            // every attempt would only log a refused connection.
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            // /dev/shm is small in containers; Chromium crashes when it runs out.
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--lang={}", options.lang),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                // `--lang` alone does not reach the Accept-Language header on Linux; this
                // preference does, and the agent picks the screen's language from the header.
                "prefs": { "intl.accept_languages": options.lang },
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let url = chromedriver.url();
        let client = match tokio::time::timeout(START_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "chromedriver could not start a Chromium session: {e}; its output:\n{}",
                chromedriver.log_text()
            ),
            Err(_) => panic!(
                "no Chromium session within {START_TIMEOUT:?}; chromedriver's output:\n{}",
                chromedriver.log_text()
            ),
        };
        let browser = Browser {
            client,
            wait_timeout: options.wait_timeout,
            chromedriver,
            dir,
        };
        browser.fit_viewport(width, height).await;
        browser
    }

    /// Resizes the window so that the page's viewport (what a screenshot shows, what CSS media
    /// queries see) is `width` × `height`. `--window-size` sizes the outer window, and the new
    /// headless mode keeps room for the toolbars of a headed window inside it (about 140 pixels
    /// of height), so the outer size is the wanted viewport plus what the page measures as the
    /// difference.
    async fn fit_viewport(&self, width: u32, height: u32) {
        let frame = self
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await;
        let extra = |i: usize| {
            frame[i]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_else(|| panic!("the window frame is measured in pixels: {frame}"))
        };
        let (extra_width, extra_height) = (extra(0), extra(1));
        if (extra_width, extra_height) == (0, 0) {
            return;
        }
        self.client
            .set_window_size(width + extra_width, height + extra_height)
            .await
            .unwrap_or_else(|e| panic!("cannot resize the window to a {width}x{height} viewport: {e}"));
    }

    /// The fantoccini client, for what the helpers do not cover. Its errors are returned, not
    /// turned into panics.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The chromedriver this browser runs under.
    pub fn chromedriver(&self) -> &Chromedriver {
        &self.chromedriver
    }

    /// The browser's temporary directory (profile, crash database, caches, chromedriver's log),
    /// removed on drop. Every Chromium process names it on its command line.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long the waiting helpers wait before failing the test.
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// Changes how long the waiting helpers wait, e.g. for a step known to take long.
    pub fn set_wait_timeout(&mut self, timeout: Duration) {
        self.wait_timeout = timeout;
    }

    /// Opens `url` and waits for the page to load (the document's `load` event).
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The URL of the page shown, for messages.
    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .map_or_else(|e| format!("(unknown URL: {e})"), |url| url.to_string())
    }

    /// The first element matching the CSS selector `css`, waiting until one exists. Panics
    /// after the wait timeout with the page's URL and WebDriver's last answer.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            let error = match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "no element matched `{css}` within {:?} on {}: {error}",
                    self.wait_timeout,
                    self.current_url().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the text of the first element matching `css` contains `needle`, and returns
    /// the whole text. The text is the rendered one (what a person sees: hidden parts are left
    /// out, CSS `text-transform` applied). Panics after the wait timeout with the element's
    /// actual text, so a failure says what the screen showed instead.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            // Found again on every look: a screen that re-renders replaces the element, and a
            // kept reference would go stale.
            let seen = match self.client.find(Locator::Css(css)).await {
                Ok(element) => match element.text().await {
                    Ok(text) if text.contains(needle) => return text,
                    Ok(text) => format!("its text is {text:?}"),
                    Err(e) => format!("its text could not be read: {e}"),
                },
                Err(e) => format!("no element matched: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "`{css}` did not contain {needle:?} within {:?} on {}: {seen}",
                    self.wait_timeout,
                    self.current_url().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Clicks the first element matching `css`, waiting until it exists and can be clicked (a
    /// button that is still disabled, covered or animating in is tried again). Panics after the
    /// wait timeout with WebDriver's last error.
    pub async fn click(&self, css: &str) {
        self.retry(css, "click", async |element| element.click().await)
            .await;
    }

    /// Replaces the value of the input matching `css` with `text`, typed as key presses (so the
    /// page's `input` handlers run), waiting until the input exists and takes keys.
    pub async fn fill(&self, css: &str, text: &str) {
        self.retry(css, "fill", async |element| {
            element.clear().await?;
            element.send_keys(text).await
        })
        .await;
    }

    /// The rendered text of the first element matching `css` (see [`Browser::wait_for_text`]),
    /// waiting until it exists.
    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("cannot read the text of `{css}`: {e}"))
    }

    /// A PNG screenshot of the window.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        self.client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take a screenshot: {e}"))
    }

    /// Writes a PNG screenshot of the window to `path`, creating its directory.
    pub async fn save_screenshot(&self, path: &Path) {
        write_png(path, &self.screenshot_png().await);
    }

    /// Runs `script` in the page as the body of a function called with `args` (in JavaScript,
    /// `arguments[0]`…) and returns what it returns, as JSON. Panics if the script throws.
    pub async fn execute(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("the script failed: {e}\n--- script ---\n{script}"))
    }

    /// Ends the WebDriver session (Chromium exits), then stops chromedriver and removes the
    /// profile. A session that cannot be ended within [`COMMAND_TIMEOUT`] is reported on stderr
    /// and its processes are killed all the same: closing is cleanup, not something a test
    /// asserts.
    pub async fn close(self) {
        let Browser {
            client,
            chromedriver,
            dir,
            ..
        } = self;
        match tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("browser harness: ending the WebDriver session failed: {e}"),
            Err(_) => {
                eprintln!("browser harness: the WebDriver session did not end within {COMMAND_TIMEOUT:?}")
            }
        }
        // In this order: the processes must be gone before their profile is removed.
        drop(chromedriver);
        drop(dir);
    }

    /// Finds `css` and applies `action` to it until it succeeds, the element being found again
    /// each time; panics after the wait timeout with the last error. `what` names the action
    /// for the message.
    async fn retry(
        &self,
        css: &str,
        what: &str,
        action: impl AsyncFn(&Element) -> Result<(), fantoccini::error::CmdError>,
    ) {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            let error = match self.client.find(Locator::Css(css)).await {
                Ok(element) => match action(&element).await {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "cannot {what} `{css}` within {:?} on {}: {error}",
                    self.wait_timeout,
                    self.current_url().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Runs a test `body` with `browser` and closes the browser afterwards. When the body panics,
/// a screenshot of the browser at that moment is saved to [`failure_screenshot_path`] and its
/// path printed, the browser is closed, and the panic continues, failing the test with its own
/// message. When the body passes, a screenshot left by an earlier failure of the same test is
/// removed, so `target/test-screenshots/` shows only the failures of the last run.
///
/// The body is an async closure that borrows the browser and may return a value:
///
/// ```ignore
/// run_in_browser(browser, "kiosk_shows_the_cart", async |b| {
///     b.goto(&url).await;
///     b.wait_for_text("#cart", "Blue runner, size 9").await;
/// })
/// .await;
/// ```
pub async fn run_in_browser<F, T>(browser: Browser, test: &str, body: F) -> T
where
    F: AsyncFnOnce(&Browser) -> T,
{
    let screenshot = failure_screenshot_path(test);
    // The browser is only lent to the body, so it is still here to photograph after a panic.
    // Unwind safety: after a panic the browser is only photographed and closed, never trusted.
    let outcome = AssertUnwindSafe(body(&browser)).catch_unwind().await;
    match outcome {
        Ok(value) => {
            let _ = std::fs::remove_file(&screenshot);
            browser.close().await;
            value
        }
        Err(panic) => {
            match tokio::time::timeout(COMMAND_TIMEOUT, browser.client.screenshot()).await {
                Ok(Ok(png)) => {
                    write_png(&screenshot, &png);
                    eprintln!("{test}: screenshot of the failure: {}", screenshot.display());
                }
                Ok(Err(e)) => eprintln!("{test}: no screenshot of the failure: {e}"),
                Err(_) => eprintln!("{test}: no screenshot of the failure within {COMMAND_TIMEOUT:?}"),
            }
            browser.close().await;
            std::panic::resume_unwind(panic)
        }
    }
}

/// Where [`run_in_browser`] saves the screenshot of `test`'s failure:
/// `target/test-screenshots/<test>.png` in the workspace (characters other than letters,
/// digits, `-` and `_` become `_`).
pub fn failure_screenshot_path(test: &str) -> PathBuf {
    workspace_root()
        .join("target")
        .join("test-screenshots")
        .join(format!("{}.png", file_stem(test)))
}

/// Writes `png` to `docs/screenshots/<name>.png` in the workspace when `UPDATE_SCREENSHOTS=1`
/// is set, and does nothing otherwise: the README's screenshots are made by the same tests that
/// check the screens, but an ordinary test run must not rewrite tracked files. Panics if `png`
/// is not a PNG, so a broken image is never committed.
pub fn save_docs_screenshot(png: &[u8], name: &str) {
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let path = workspace_root()
        .join("docs")
        .join("screenshots")
        .join(format!("{}.png", file_stem(name)));
    write_png(&path, png);
    eprintln!("updated {}", path.display());
}

/// The workspace's root directory (the parent of this crate's).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
}

/// `name` as a file name without a directory part or surprising characters.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `png` to `path`, creating its directory; panics if `png` is not a PNG or the file
/// cannot be written.
fn write_png(path: &Path, png: &[u8]) {
    assert!(
        png.starts_with(&PNG_SIGNATURE),
        "not a PNG image ({} bytes), not writing {}",
        png.len(),
        path.display()
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
