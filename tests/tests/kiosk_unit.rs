//! `systemd/store-kiosk.service` run for real: its `ExecStart=` command line (cage
//! running Chromium in kiosk mode), taken from the unit file, with the headless
//! wlroots backend instead of a screen, against a real agent. It must show the
//! agent's kiosk page, and it must carry the flags that keep Chromium off the
//! internet.
//!
//! Test-only changes to the command line, each for a reason of the test machine:
//! the page URL and profile folder point into the test's folder; `--no-sandbox`,
//! because Chromium's sandbox needs user namespaces, which containers and CI runners
//! often lack (the unit itself keeps the sandbox); `--remote-debugging-port=0`, to
//! ask Chromium which page it shows. cage refuses to run as root, so as root the
//! command runs as `nobody`.
//!
//! Needs cage, Xwayland and Chromium (scripts/test.sh installs them); without them
//! the test skips with the reason, except under `CI=true`, where it fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use store_agent_e2e::TestDir;
use store_agent_e2e::http::request;
use store_agent_e2e::rig::STOP_TIMEOUT;

const UNIT: &str = include_str!("../../systemd/store-kiosk.service");

/// How long Chromium may take to start and load the page on a busy 2-core machine.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags the issue asks for: kiosk mode, and no way to the internet.
const REQUIRED_FLAGS: [&str; 8] = [
    "--kiosk",
    "--ozone-platform=wayland",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];

/// The `ExecStart=` line of the unit, continuation lines joined, split into words
/// the way systemd does for the quoting this unit uses (double quotes).
fn exec_start(unit: &str) -> Vec<String> {
    let mut joined = String::new();
    let mut inside = false;
    for line in unit.lines() {
        let line = line.trim();
        if !inside {
            let Some(rest) = line.strip_prefix("ExecStart=") else {
                continue;
            };
            joined.push_str(rest);
        } else {
            joined.push(' ');
            joined.push_str(line);
        }
        inside = joined.ends_with('\\');
        if inside {
            joined.pop();
        } else {
            break;
        }
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in joined.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

fn environment_default(unit: &str, name: &str) -> Option<String> {
    unit.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Environment=")?
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(str::to_owned)
    })
}

fn missing_tools() -> Vec<&'static str> {
    ["/usr/bin/cage", "/usr/bin/chromium", "/usr/bin/Xwayland"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect()
}

#[test]
fn the_unit_file_command_line_keeps_chromium_off_the_internet() {
    let argv = exec_start(UNIT);
    assert_eq!(
        argv.first().map(String::as_str),
        Some("/usr/bin/cage"),
        "{argv:?}"
    );
    let chromium = argv.iter().position(|w| w == "/usr/bin/chromium");
    assert!(chromium.is_some(), "cage runs /usr/bin/chromium: {argv:?}");
    for flag in REQUIRED_FLAGS {
        assert!(argv.iter().any(|w| w == flag), "missing {flag} in {argv:?}");
    }
    assert_eq!(argv.last().map(String::as_str), Some("${KIOSK_URL}"), "{argv:?}");
    assert_eq!(
        environment_default(UNIT, "KIOSK_URL").as_deref(),
        Some("http://127.0.0.1:8080/kiosk"),
        "the default page is the agent's kiosk on loopback (packaging/config.example.toml)"
    );
    // The cgroup firewall: everything but loopback dropped.
    assert!(UNIT.lines().any(|l| l.trim() == "IPAddressDeny=any"));
    assert!(UNIT.lines().any(|l| l.trim() == "IPAddressAllow=localhost"));
    assert!(UNIT.lines().any(|l| l.trim() == "Restart=always"));
    assert!(
        UNIT.lines()
            .any(|l| l.trim() == "After=store-agent.service systemd-user-sessions.service")
    );
}

#[test]
fn the_kiosk_unit_command_shows_the_agents_kiosk_page() {
    let missing = missing_tools();
    if !missing.is_empty() {
        let reason = format!(
            "{} not installed (scripts/test.sh installs them)",
            missing.join(", ")
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("kiosk unit test: {reason}, and CI=true: CI must run it");
        }
        eprintln!("skipped: the_kiosk_unit_command_shows_the_agents_kiosk_page: {reason}");
        return;
    }

    let dir = TestDir::new();
    let config = dir.write_config();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text).unwrap();
    let agent = dir.spawn_ready(&config);
    let addr = agent.http_addr();
    let page = request(&addr, "GET", "/kiosk", &[], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    let title = page
        .body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(t, _)| t.trim().to_owned())
        .expect("the kiosk page has a title");
    let url = format!("http://{addr}/kiosk");

    // The folders cage and Chromium write to, owned by whoever runs them.
    let as_root = unsafe { libc::geteuid() } == 0;
    let owner = if as_root {
        65534
    } else {
        unsafe { libc::geteuid() }
    };
    let runtime = dir.join("xdg-runtime");
    let profile = dir.join("kiosk-profile");
    for d in [&runtime, &profile] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(d, Some(owner), Some(owner)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut argv: Vec<String> = exec_start(UNIT)
        .into_iter()
        .map(|w| {
            if w == "${KIOSK_URL}" {
                url.clone()
            } else if w.starts_with("--user-data-dir=") {
                format!("--user-data-dir={}", profile.display())
            } else {
                w
            }
        })
        .collect();
    let page_arg = argv.pop().unwrap();
    argv.extend([
        "--no-sandbox".to_owned(),
        "--remote-debugging-port=0".to_owned(),
        page_arg,
    ]);

    let mut command = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.args(&argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &profile)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("WLR_BACKENDS", "headless")
        .env("WLR_LIBINPUT_NO_DEVICES", "1")
        .env("WLR_RENDERER", "pixman")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("cage.log")).unwrap()));
    // Its own process group, so that stopping it stops Chromium's helpers too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut kiosk = Kiosk(command.spawn().expect("start cage"));

    // Chromium writes its debugging port here once it listens; then ask it which
    // page it shows, until the kiosk page has loaded.
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let mut last = String::new();
    let shown = loop {
        if let Some(status) = kiosk.0.try_wait().unwrap() {
            last = format!("cage exited with {status}");
            break None;
        }
        if let Ok(port_file) = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            && let Some(port) = port_file.lines().next()
        {
            let body = devtools_list(port).unwrap_or_default();
            last = body.clone();
            let pages: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let found =
                pages.as_array().into_iter().flatten().find(|p| {
                    p["type"] == "page" && p["url"] == url.as_str() && p["title"] == title.as_str()
                });
            if let Some(found) = found {
                break Some(found.clone());
            }
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    drop(kiosk);
    let log = std::fs::read_to_string(dir.join("cage.log")).unwrap_or_default();
    assert!(
        shown.is_some(),
        "Chromium under cage did not show {url} titled {title:?}; last: {last}\ncage log:\n{log}"
    );

    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
}

/// The body of Chromium's DevTools `/json/list` on `port`, or `None` while it does not
/// answer. Read by its Content-Length: the DevTools server keeps the connection open.
fn devtools_list(port: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| body.len() >= len) {
                return Some(body.to_owned());
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// cage with Chromium under it, in its own process group; dropping it (also when an
/// assertion fails) stops the whole group: SIGTERM, then SIGKILL after 10 s.
struct Kiosk(std::process::Child);

impl Drop for Kiosk {
    fn drop(&mut self) {
        let group = -(self.0.id() as libc::pid_t);
        // SAFETY: kill has no memory effects; the group is the one this test started.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}
