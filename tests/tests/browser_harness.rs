//! Self-tests of the browser harness (tests/src/browser.rs): that it drives a real Chromium
//! through a page under the Content-Security-Policy the screens use, that the language option
//! reaches the server, and that a failing test leaves a screenshot and the reason — and no
//! process — behind.
//!
//! The page is served from this process by a small axum app on 127.0.0.1:0, so these tests
//! need nothing but Chromium and chromedriver.

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::FutureExt;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;
use store_agent_e2e::browser::{
    BrowserOptions, PNG_SIGNATURE, browser_or_skip, browser_or_skip_with, failure_screenshot_path,
    run_in_browser,
};

/// The policy the agent's screens are served with: scripts only from the page's own origin, so
/// the inline script of [`page`] must not run.
const CSP: &str = "default-src 'self'";

/// The page: what the server received as `Accept-Language`, a name field, a button whose
/// handler comes from `/app.js`, and an inline script that the policy must block.
async fn page(headers: HeaderMap) -> impl IntoResponse {
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Browser harness</title>
<script src="/app.js" defer></script>
</head>
<body>
<p id="accept-language">{}</p>
<label>Name <input id="name" type="text"></label>
<button id="greet" type="button">Greet</button>
<p id="message">Waiting</p>
<script>document.getElementById('message').textContent = 'inline script ran';</script>
</body>
</html>
"#,
        escape_html(&accept_language)
    );
    ([(header::CONTENT_SECURITY_POLICY, CSP)], Html(html))
}

/// The page's script. The greeting appears a little after the click, so the test also proves
/// that `wait_for_text` waits; `data-ready` tells the test the handler is in place.
async fn script() -> impl IntoResponse {
    const JS: &str = r#"
document.getElementById('greet').addEventListener('click', () => {
  const name = document.getElementById('name').value || 'nobody';
  setTimeout(() => {
    document.getElementById('message').textContent = `Hello, ${name}!`;
  }, 200);
});
document.body.dataset.ready = 'yes';
"#;
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        JS,
    )
}

/// `text` safe to put between HTML tags.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page's server, stopped when dropped.
struct PageServer {
    /// Where it listens.
    addr: SocketAddr,
    /// The serving task, aborted on drop.
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start() -> PageServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port for the page");
        let addr = listener.local_addr().expect("the page's address");
        let app = Router::new().route("/", get(page)).route("/app.js", get(script));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the page server runs");
        });
        PageServer { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Width and height of a PNG image, from its header chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(&PNG_SIGNATURE), "not a PNG ({} bytes)", png.len());
    let field = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    (field(16), field(20))
}

/// Panics unless chromedriver and every Chromium process of a browser are gone (waiting a
/// little for processes that are exiting) and then its directory is removed. `group` is
/// chromedriver's process group; `dir` the browser's directory, which every Chromium process
/// names on its command line — also the crash handlers, which leave the group.
async fn assert_browser_gone(group: libc::pid_t, dir: &Path) {
    let path = dir.to_string_lossy().into_owned();
    let mut left = Vec::new();
    for _ in 0..100 {
        left = processes_mentioning(&path);
        // SAFETY: kill(2) with signal 0 only checks that the group has members.
        let group_gone = unsafe { libc::kill(-group, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if group_gone && left.is_empty() {
            assert!(!dir.exists(), "the browser's directory is still there: {path}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("processes of the browser are still there (chromedriver's group {group}): {left:#?}");
}

/// The command lines of the running processes that contain `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_runs_the_pages_own_script_under_its_csp() {
    const TEST: &str = "a_click_runs_the_pages_own_script_under_its_csp";
    let Some(browser) = browser_or_skip(TEST).await else {
        return;
    };
    let server = PageServer::start().await;
    let group = browser.chromedriver().pid();
    let dir = browser.dir().to_owned();
    let url = server.url("/");
    run_in_browser(browser, TEST, async |b| {
        b.goto(&url).await;
        b.wait_for("body[data-ready]").await;
        // The external script ran (it set data-ready) and the inline one did not.
        assert_eq!(b.text("#message").await, "Waiting");

        b.fill("#name", "Ada").await;
        b.click("#greet").await;
        assert_eq!(b.wait_for_text("#message", "Hello").await, "Hello, Ada!");

        // English by default, in the header the agent reads and in the page's scripts.
        let accept_language = b.text("#accept-language").await;
        assert!(
            accept_language.starts_with("en-US"),
            "Accept-Language: {accept_language:?}"
        );
        let language = b.execute("return navigator.language;", vec![]).await;
        assert_eq!(language, "en-US");
        let sum = b
            .execute("return arguments[0] + arguments[1];", vec![2.into(), 3.into()])
            .await;
        assert_eq!(sum, 5);

        // The window has the default size, and a screenshot shows all of it.
        assert_eq!(png_size(&b.screenshot_png().await), (1280, 900));
    })
    .await;
    assert_browser_gone(group, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_option_reaches_the_server_and_the_page() {
    const TEST: &str = "the_language_option_reaches_the_server_and_the_page";
    let options = BrowserOptions {
        lang: "de-DE".to_owned(),
        window_size: (800, 600),
        ..BrowserOptions::default()
    };
    let Some(browser) = browser_or_skip_with(TEST, &options).await else {
        return;
    };
    let server = PageServer::start().await;
    let url = server.url("/");
    run_in_browser(browser, TEST, async |b| {
        b.goto(&url).await;
        let accept_language = b.text("#accept-language").await;
        assert!(
            accept_language.starts_with("de-DE"),
            "Accept-Language: {accept_language:?}"
        );
        let language = b.execute("return navigator.language;", vec![]).await;
        assert_eq!(language, "de-DE");
        assert_eq!(png_size(&b.screenshot_png().await), (800, 600));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_leaves_a_screenshot_and_says_what_the_screen_showed() {
    const TEST: &str = "a_failing_test_leaves_a_screenshot_and_says_what_the_screen_showed";
    // A short wait: the failure is the point, and it should not take the default ten seconds.
    let options = BrowserOptions {
        wait_timeout: Duration::from_millis(500),
        ..BrowserOptions::default()
    };
    let Some(browser) = browser_or_skip_with(TEST, &options).await else {
        return;
    };
    let server = PageServer::start().await;
    let screenshot = failure_screenshot_path(TEST);
    // Whatever an earlier run left there must not pass for this run's screenshot.
    let _ = std::fs::remove_file(&screenshot);
    let group = browser.chromedriver().pid();
    let dir = browser.dir().to_owned();
    let url = server.url("/");

    let outcome = AssertUnwindSafe(run_in_browser(browser, TEST, async |b| {
        b.goto(&url).await;
        b.wait_for("body[data-ready]").await;
        b.wait_for_text("#message", "a text the page never shows").await;
    }))
    .catch_unwind()
    .await;

    let panic = outcome.expect_err("the body waits for a text that never comes, so it must fail");
    let message = panic_message(panic.as_ref());
    assert!(
        message.contains("`#message` did not contain \"a text the page never shows\"")
            && message.contains("its text is \"Waiting\""),
        "the failure must name the element and say what it showed: {message}"
    );
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no failure screenshot at {}: {e}", screenshot.display()));
    assert_eq!(png_size(&png), (1280, 900));
    // The screenshot was this test's expected failure, not one for a person to look at.
    std::fs::remove_file(&screenshot).expect("remove the expected failure's screenshot");
    assert_browser_gone(group, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_browser_without_closing_it_leaves_no_process() {
    const TEST: &str = "dropping_a_browser_without_closing_it_leaves_no_process";
    let Some(browser) = browser_or_skip(TEST).await else {
        return;
    };
    let server = PageServer::start().await;
    // A page is open, so the renderer and network processes are running too.
    browser.goto(&server.url("/")).await;
    browser.wait_for("body[data-ready]").await;
    let group = browser.chromedriver().pid();
    let dir = browser.dir().to_owned();
    assert!(
        !processes_mentioning(&dir.to_string_lossy()).is_empty(),
        "the check below would pass vacuously: no process names {}",
        dir.display()
    );
    // What happens to a browser when a test panics outside run_in_browser.
    drop(browser);
    assert_browser_gone(group, &dir).await;
}
