//! The screens' HTTP side against the real agent: security headers, sessions and
//! CSRF, sign-in, kiosk isolation at the API level, the live push of a scan, and
//! the POS transaction intake. (The pages themselves run in Chromium in
//! tests/tests/screens_browser.rs.)

use std::time::Duration;
use store_agent_e2e::http::{Response, request};
use store_agent_e2e::{RunningAgent, TestDir};

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
    let (snapshot, summary) = dir.sample_data(300, 200);
    let config = dir.write_config();
    dir.run_ok(["import", &snapshot, "--config", &config]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[http]\nlisten = \"127.0.0.1:0\"\n\n[screens]\nscan_injection = true\n\n[scan]\norder_code_prefixes = [\"PU-\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let agent = dir.spawn_ready(&config);
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
    // Guessing: five wrong PINs lock that associate id, even for the right PIN,
    // while another associate still signs in.
    let a1 = &a.summary["associates"][1];
    let real = a1["pin"].as_str().unwrap();
    let guess = |pin: &str| {
        let body = serde_json::json!({ "associate_id": a1["associate_id"], "pin": pin }).to_string();
        a.post_json("/api/v1/session", &cookie, &page.csrf(), &body)
    };
    for n in 0..5 {
        assert_eq!(guess(&format!("{real}{n}")).status, 401, "wrong PIN {n}");
    }
    let locked = guess(real);
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("too many wrong PINs"), "{}", locked.body);
    let (other, _) = a.sign_in(2);
    assert_eq!(a.get("/api/v1/session", Some(&other)).json()["role"], "staff");
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

#[test]
fn api_errors_are_json_even_when_the_http_layer_refuses() {
    let dir = TestDir::new();
    let a = start(&dir);
    let (cookie, csrf) = a.sign_in(0);
    let is_json_error = |res: &Response| {
        res.header("content-type") == Some("application/json")
            && res.json()["error"].as_str().is_some_and(|e| !e.is_empty())
    };
    let refused = |res: Response, status: u16| {
        assert_eq!(res.status, status, "{}", res.body);
        let ct = res.header("content-type");
        assert!(is_json_error(&res), "{ct:?} {}", res.body);
        res
    };
    // A query string that does not parse: 400 in the API's own shape.
    let res = refused(a.get("/api/v1/customers", Some(&cookie)), 400);
    let error = res.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("needs q"), "{error}");
    // Without a session the answer is about the session, whatever the query says.
    refused(a.get("/api/v1/customers", None), 401);
    // A path that is not UTF-8, and a body over the limit: refused by axum before
    // any handler runs, still answered as {"error": ...}.
    refused(a.get("/api/v1/orders/%FF%FE", Some(&cookie)), 400);
    let huge = format!(r#"{{"order_id":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    refused(a.post_json("/api/v1/returns/check", &cookie, &csrf, &huge), 413);
    // Pages keep their own error pages.
    let res = a.get("/no-such-page", None);
    assert!(!is_json_error(&res), "{}", res.body);
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

/// A delivered order of the sample whose delivery is more than `days` ago, and the
/// one delivered most recently (the sample's order WEB-0000001, three days ago).
fn delivered_older_than(snapshot: &str, days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::fs::read_to_string(snapshot)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("order").cloned())
        .find(|o| {
            o["kind"] == "delivered"
                && o["fulfilled_at_ms"]
                    .as_i64()
                    .is_some_and(|f| now - f > (days + 2) * 86_400_000)
        })
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .expect("the sample has orders outside the return window")
}

#[test]
fn the_counter_hands_over_pickups_and_takes_returns_within_policy_and_the_offline_limit() {
    let dir = TestDir::new();
    let a = start(&dir);
    let (staff, csrf) = a.sign_in(0);
    let post = |path: &str, body: serde_json::Value| a.post_json(path, &staff, &csrf, &body.to_string());

    // A kiosk session reaches none of the counter's routes.
    let kiosk = a.get("/kiosk", None);
    let (kc, kt) = (kiosk.session_cookie().unwrap(), kiosk.csrf());
    for path in [
        "/api/v1/orders/BOPIS-000001/arrived",
        "/api/v1/orders/BOPIS-000001/handover",
        "/api/v1/returns/check",
        "/api/v1/returns",
    ] {
        let res = a.post_json(
            path,
            &kc,
            &kt,
            r#"{"id_checked":true,"order_id":"WEB-0000001","lines":[]}"#,
        );
        assert_eq!(res.status, 403, "{path}: {}", res.body);
    }

    // Stock in nearby stores needs the cloud: no broker here, so 503; kiosks never.
    let nearby = a.get("/api/v1/products/4006381333931/nearby", Some(&staff));
    assert_eq!(nearby.status, 503, "{}", nearby.body);
    assert!(
        nearby.body.contains("offline") || nearby.body.contains("cloud"),
        "{}",
        nearby.body
    );
    assert_eq!(
        a.get("/api/v1/products/4006381333931/nearby", Some(&kc)).status,
        403
    );

    // BOPIS: the customer is marked as arrived, then handed the order with the
    // last line refused; without the ID check nothing happens.
    let order = a.get("/api/v1/orders/BOPIS-000001", Some(&staff)).json();
    assert_eq!(order["status"], "ready_for_pickup", "{order}");
    let arrived = post("/api/v1/orders/BOPIS-000001/arrived", serde_json::json!({}));
    assert_eq!(arrived.status, 200, "{}", arrived.body);
    assert_eq!(arrived.json()["status"], "customer_arrived");
    let lines = order["lines"].as_array().unwrap();
    let last = lines.last().unwrap()["line_no"].clone();
    let no_id = post(
        "/api/v1/orders/BOPIS-000001/handover",
        serde_json::json!({ "id_checked": false, "refused_lines": [] }),
    );
    assert_eq!(no_id.status, 400, "{}", no_id.body);
    assert!(no_id.body.contains("id_checked"), "{}", no_id.body);
    assert_eq!(
        a.get("/api/v1/orders/BOPIS-000001", Some(&staff)).json()["status"],
        "customer_arrived",
        "a refused hand-over records nothing"
    );
    let done = post(
        "/api/v1/orders/BOPIS-000001/handover",
        serde_json::json!({ "id_checked": true, "refused_lines": [last] }),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let expected = if lines.len() > 1 {
        "partially_handed_over"
    } else {
        "refused"
    };
    assert_eq!(done.json()["order"]["status"], expected, "{}", done.body);
    assert_eq!(done.json()["printed"], false, "no printer configured");
    let again = post(
        "/api/v1/orders/BOPIS-000001/handover",
        serde_json::json!({ "id_checked": true }),
    );
    assert!(
        again.status >= 400 && again.status < 500,
        "a second hand-over is refused: {}",
        again.body
    );

    // BORIS, offline (no broker here): a small return is within the offline limit.
    let web1 = a.get("/api/v1/orders/WEB-0000001", Some(&staff)).json();
    let prices: Vec<i64> = web1["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["unit_price_minor"].as_i64().unwrap())
        .collect();
    let small = prices
        .iter()
        .position(|p| *p <= 10_000)
        .expect("a line under the limit")
        + 1;
    let big = prices
        .iter()
        .position(|p| *p > 10_000)
        .expect("a line over the limit")
        + 1;
    let ret = |line: usize, approval: Option<serde_json::Value>| {
        let mut b = serde_json::json!({
            "order_id": "WEB-0000001",
            "lines": [{ "line_no": line, "qty": 1 }],
            "reason": "wrong_size", "condition": "like_new",
            "disposition": "restock", "refund_method": "original_tender",
        });
        if let Some(ap) = approval {
            b["approval"] = ap;
        }
        b
    };
    let check = post("/api/v1/returns/check", ret(small, None)).json();
    assert_eq!(check["allowed"], true, "{check}");
    assert_eq!(check["refund_minor"], prices[small - 1]);
    let recorded = post("/api/v1/returns", ret(small, None));
    assert_eq!(recorded.status, 201, "{}", recorded.body);
    assert!(
        recorded.json()["return_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    // The same line again: nothing left to return.
    let twice = post("/api/v1/returns/check", ret(small, None)).json();
    assert_eq!(twice["allowed"], false, "{twice}");

    // Over the offline limit: a manager must approve.
    let check = post("/api/v1/returns/check", ret(big, None)).json();
    assert_eq!(check["allowed"], false, "{check}");
    assert_eq!(check["offline_limit_exceeded"], true, "{check}");
    assert_eq!(check["blocking"][0]["code"], "offline_limit", "{check}");
    assert_eq!(check["manager_can_approve"], true, "{check}");
    let refused = post("/api/v1/returns", ret(big, None));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.json()["check"]["blocking"][0]["code"], "offline_limit");
    // The associate cannot approve it themselves, nor with a wrong manager PIN.
    let own = serde_json::json!({ "reason": "regular customer" });
    assert_eq!(post("/api/v1/returns", ret(big, Some(own))).status, 403);
    let manager = &a.summary["associates"][2];
    assert_eq!(manager["role"], "manager");
    let wrong = serde_json::json!({ "reason": "ok", "manager_id": manager["associate_id"], "pin": "0000x" });
    assert_eq!(post("/api/v1/returns", ret(big, Some(wrong))).status, 401);
    let associate = &a.summary["associates"][1];
    let not_manager = serde_json::json!({ "reason": "ok", "manager_id": associate["associate_id"], "pin": associate["pin"] });
    assert_eq!(post("/api/v1/returns", ret(big, Some(not_manager))).status, 403);
    let approved = serde_json::json!({ "reason": "receipt checked", "manager_id": manager["associate_id"], "pin": manager["pin"] });
    let done = post("/api/v1/returns", ret(big, Some(approved)));
    assert_eq!(done.status, 201, "{}", done.body);
    assert!(
        done.json()["overridden"][0]
            .as_str()
            .is_some_and(|t| t.contains("offline limit")),
        "the approval is on the record: {}",
        done.body
    );

    // Outside the return window: blocked with the reason; bad codes are named.
    let old = delivered_older_than(&dir.path_str("sample.jsonl"), 30);
    let check = post(
        "/api/v1/returns/check",
        serde_json::json!({ "order_id": old, "lines": [{ "line_no": 1, "qty": 1 }] }),
    )
    .json();
    assert_eq!(check["allowed"], false, "{check}");
    assert!(
        check["blocking"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "outside_window"),
        "{check}"
    );
    let mut bad = ret(small, None);
    bad["refund_method"] = "cash_in_hand".into();
    let res = post("/api/v1/returns", bad);
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.body.contains("refund_method"), "{}", res.body);

    // Both returns and the hand-over wait in the outbox for the cloud.
    let status = dir.status_json(&a.config);
    assert_eq!(status["counts"]["returns"], 2, "{status}");
    a.stop();
}

#[test]
fn a_screen_left_open_does_not_hold_up_a_clean_stop() {
    use std::io::{Read, Write};
    let dir = TestDir::new();
    let a = start(&dir);
    let (staff, _) = a.sign_in(0);
    let mut stream = std::net::TcpStream::connect(&a.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nCookie: {staff}\r\nAccept: text/event-stream\r\n\r\n",
        a.addr
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("200 OK"),
        "the stream is open"
    );
    // SIGTERM with the console's stream still connected: the agent ends the
    // stream, closes the store and exits 0 (Agent::stop asserts the exit code).
    a.stop();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}
