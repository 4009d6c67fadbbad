//! The screens' HTTP side against the real agent: security headers, sessions and
//! CSRF, sign-in, kiosk isolation at the API level, the live push of a scan, and
//! the POS transaction intake. (The pages themselves run in Chromium in
//! tests/tests/screens_browser.rs.)

use std::time::Duration;
use store_agent_e2e::http::{Response, request};
use store_agent_e2e::{RunningAgent, TestDir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct Agent {
    agent: RunningAgent,
    addr: String,
    summary: serde_json::Value,
    config: String,
}

/// A sample store imported, the agent running with the screens on a free port and
/// scan injection on; returns it with the sample summary (cards, PINs, pickups).
fn start(dir: &TestDir) -> Agent {
    let snapshot = dir.path_str("sample.jsonl");
    let out = dir.run_ok([
        "sample-data",
        "--customers",
        "300",
        "--products",
        "200",
        "--out",
        &snapshot,
    ]);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let config = dir.write_config();
    dir.run_ok(["import", &snapshot, "--config", &config]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[http]\nlisten = \"127.0.0.1:0\"\n\n[screens]\nscan_injection = true\n\n[scan]\norder_code_prefixes = [\"PU-\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    let addr = agent.http_addr();
    Agent {
        agent,
        addr,
        summary,
        config,
    }
}

impl Agent {
    fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut h = vec![];
        if let Some(c) = cookie {
            h.push(("Cookie", c));
        }
        request(&self.addr, "GET", path, &h, b"")
    }

    fn post_json(&self, path: &str, cookie: &str, csrf: &str, body: &str) -> Response {
        request(
            &self.addr,
            "POST",
            path,
            &[
                ("Cookie", cookie),
                ("X-CSRF-Token", csrf),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// A signed-in associate session: (cookie, csrf).
    fn sign_in(&self, associate: usize) -> (String, String) {
        let page = self.get("/console/sign-in", None);
        let (cookie, csrf) = (page.session_cookie().unwrap(), page.csrf());
        let a = &self.summary["associates"][associate];
        let res = self.post_json(
            "/api/v1/session",
            &cookie,
            &csrf,
            &serde_json::json!({ "associate_id": a["associate_id"], "pin": a["pin"] }).to_string(),
        );
        assert_eq!(res.status, 200, "{}", res.body);
        let staff_cookie = res.session_cookie().expect("sign-in issues a new session");
        assert_ne!(staff_cookie, cookie, "the session id changes at sign-in");
        let console = self.get("/console", Some(&staff_cookie));
        assert_eq!(console.status, 200);
        (staff_cookie, console.csrf())
    }

    fn stop(self) {
        self.agent.signal(libc::SIGTERM);
        let out = self.agent.finish(STOP_TIMEOUT);
        assert_eq!(out.code(), Some(0), "{out}");
    }
}

#[test]
fn pages_carry_security_headers_and_state_changes_need_the_csrf_token() {
    let dir = TestDir::new();
    let a = start(&dir);
    for path in [
        "/console/sign-in",
        "/kiosk",
        "/api/v1/openapi.json",
        "/healthz",
        "/assets/app.js",
    ] {
        let res = a.get(path, None);
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        let csp = res.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let page = a.get("/console/sign-in", None);
    let set_cookie = page.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!page.body.contains("<script>"), "no inline script in the page");
    let cookie = page.session_cookie().unwrap();
    let a0 = &a.summary["associates"][0];
    let body = serde_json::json!({ "associate_id": a0["associate_id"], "pin": a0["pin"] }).to_string();
    // Right PIN, no token: refused before the PIN is even checked.
    let res = request(
        &a.addr,
        "POST",
        "/api/v1/session",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(res.status, 403, "{}", res.body);
    // Right token from another origin: refused.
    let res = request(
        &a.addr,
        "POST",
        "/api/v1/session",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &page.csrf()),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(res.status, 403, "{}", res.body);
    // Wrong PIN: 401; the right one then works.
    let wrong = serde_json::json!({ "associate_id": a0["associate_id"], "pin": "no" }).to_string();
    assert_eq!(
        a.post_json("/api/v1/session", &cookie, &page.csrf(), &wrong)
            .status,
        401
    );
    let (staff, csrf) = a.sign_in(0);
    assert_eq!(a.get("/api/v1/session", Some(&staff)).json()["role"], "staff");
    // Sign-out ends the session: its cookie no longer opens the console API.
    let out = request(
        &a.addr,
        "DELETE",
        "/api/v1/session",
        &[("Cookie", &staff), ("X-CSRF-Token", &csrf)],
        b"",
    );
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(a.get("/api/v1/pickups", Some(&staff)).status, 401);
    a.stop();
}

#[test]
fn a_kiosk_reaches_neither_staff_routes_nor_other_customers() {
    let dir = TestDir::new();
    let a = start(&dir);
    let kiosk = a.get("/kiosk", None);
    let (cookie, csrf) = (kiosk.session_cookie().unwrap(), kiosk.csrf());
    let customer = a.summary["example_cards"][0][0].as_str().unwrap().to_string();
    for path in [
        format!("/api/v1/customers/{customer}"),
        "/api/v1/customers?q=Ma".to_string(),
        "/api/v1/pickups".to_string(),
        "/api/v1/orders/BOPIS-000001".to_string(),
    ] {
        let res = a.get(&path, Some(&cookie));
        assert_eq!(res.status, 403, "{path}: {}", res.body);
    }
    // Nobody identified yet: no customer at all.
    assert_eq!(a.get("/api/v1/kiosk/me", Some(&cookie)).status, 404);
    let res = a.post_json(
        "/api/v1/kiosk/wishlist",
        &cookie,
        &csrf,
        r#"{"gtin":"04006550757667"}"#,
    );
    assert_eq!(res.status, 404, "{}", res.body);
    // The kiosk cannot sign in as staff with its own session either.
    let a0 = &a.summary["associates"][0];
    let body = serde_json::json!({ "associate_id": a0["associate_id"], "pin": a0["pin"] }).to_string();
    let res = a.post_json("/api/v1/session", &cookie, &csrf, &body);
    assert_eq!(
        res.status, 200,
        "signing in replaces the kiosk session: {}",
        res.body
    );
    assert_eq!(
        a.get("/api/v1/pickups", Some(&cookie)).status,
        401,
        "the kiosk's own cookie is dead after that"
    );
    // Without any session: the console API asks to sign in.
    assert_eq!(a.get("/api/v1/pickups", None).status, 401);
    a.stop();
}

/// Reads the SSE stream of `cookie` until `needle` appears or the deadline.
fn sse_until(addr: &str, cookie: &str, needle: &str, trigger: impl FnOnce()) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut trigger = Some(trigger);
    while std::time::Instant::now() < deadline {
        if let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if seen.contains("\"hello\"")
            && let Some(t) = trigger.take()
        {
            t();
        }
        if seen.contains(needle) {
            return seen;
        }
    }
    panic!("{needle} did not arrive on the live stream; got:\n{seen}");
}

#[test]
fn a_card_scan_reaches_the_console_stream_and_a_kiosk_check_in_highlights_the_order() {
    let dir = TestDir::new();
    let a = start(&dir);
    let (staff, _) = a.sign_in(0);
    let card = a.summary["example_cards"][0][1].as_str().unwrap().to_string();
    let customer = a.summary["example_cards"][0][0].as_str().unwrap().to_string();
    let config = a.config.clone();
    let addr = a.addr.clone();
    let seen = sse_until(
        &a.addr,
        &staff,
        &format!("\"customer_id\":\"{customer}\""),
        || {
            dir.run_ok(["scan", "send", "--config", &config, "--addr", &addr, &card]);
        },
    );
    assert!(seen.contains("\"kind\":\"customer\""), "{seen}");
    assert!(
        !seen.contains(&card),
        "the card number never travels to the screen"
    );

    let (order, code) = (
        a.summary["example_pickups"][0][0].as_str().unwrap().to_string(),
        a.summary["example_pickups"][0][1].as_str().unwrap().to_string(),
    );
    let seen = sse_until(&a.addr, &staff, "\"customer_arrived\"", || {
        dir.run_ok([
            "scan", "send", "--config", &config, "--addr", &addr, "--to", "kiosk", &code,
        ]);
    });
    assert!(seen.contains(&format!("\"order_id\":\"{order}\"")), "{seen}");
    let queue = a.get("/api/v1/pickups", Some(&staff)).json();
    let entry = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["order_id"] == order.as_str())
        .unwrap();
    assert_eq!(entry["status"], "customer_arrived");
    assert_eq!(
        queue[0]["order_id"],
        order.as_str(),
        "arrived customers come first"
    );
    a.stop();
}

#[test]
fn pos_transactions_over_http_are_recorded_once_and_bad_ones_are_kept() {
    let dir = TestDir::new();
    let a = start(&dir);
    let xml = store_agent_e2e::poslog_sale(41);
    let post = |body: &[u8], ct: &str| {
        request(
            &a.addr,
            "POST",
            "/api/v1/pos/transactions",
            &[("Content-Type", ct)],
            body,
        )
    };
    let first = post(xml.as_bytes(), "application/xml");
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json()["recorded"][0]["result"], "new");
    let again = post(xml.as_bytes(), "application/xml");
    assert_eq!(
        again.json()["recorded"][0]["result"],
        "duplicate",
        "a retry is not a second sale"
    );
    let bad = post(b"<POSLog><Transaction>", "application/xml");
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"].as_str().unwrap().contains("POSLog"),
        "{}",
        bad.body
    );
    assert_eq!(post(b"x", "text/plain").status, 415);
    let status = dir.status_json(&a.config);
    assert_eq!(status["counts"]["pos_transactions"], 1, "{status}");
    assert_eq!(status["counts"]["dead_letters"], 1, "{status}");
    a.stop();
}
