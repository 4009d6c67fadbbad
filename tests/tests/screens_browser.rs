//! The screens in a real browser (headless Chromium through chromedriver), against
//! the real agent, a real Mosquitto with TLS client certificates and the reference
//! cloud: what an associate and a shopper do, end to end.
//!
//! What a broken implementation gets wrong here: a hand-over confirmed without the
//! items scanned or the ID checked, a wrong item not flagged, an event that never
//! reaches the cloud or reaches it twice, a return over the offline limit taken
//! without a manager, a kiosk that keeps showing the last shopper, customer data
//! that runs as script.
//!
//! With `UPDATE_SCREENSHOTS=1` these tests also write the README's screenshots
//! (docs/screenshots/).

use std::time::Duration;
use store_agent::cloud_sim::ReceivedEvent;
use store_agent::events::{DownlinkStream, UplinkStream};
use store_agent::sample::{self, SampleSpec};
use store_agent::sync::protocol::Op;
use store_agent_e2e::browser::{Browser, browser_or_skip, run_in_browser, save_docs_screenshot};
use store_agent_e2e::rig::{Rig, SYNC_TIMEOUT, wait_for};
use store_agent_e2e::{DEVICE_ID, Pty, RunningAgent, toml_string};

/// The cloud's sample store (CloudSimConfig::new): seed 1, 200 customers, 100 products.
fn cloud_spec() -> SampleSpec {
    SampleSpec::new(1, 200, 100)
}

/// The sample's associates and pickups, as `sample-data` prints them.
fn summary() -> sample::SampleSummary {
    sample::write_snapshot(&cloud_spec(), &sample::demo_hasher(), std::io::sink()).unwrap()
}

/// The agent under test: the rig, the running agent, its HTTP address and the
/// counter's serial scanner (a pseudo-terminal).
struct Store {
    rig: Rig,
    agent: RunningAgent,
    addr: String,
    scanner: Pty,
}

/// The rig with the screens on: HTTP on a free port, a serial scanner at the
/// counter, scan injection (the kiosk's scanner and the product scans), pickup
/// codes `PU-…`, receipt codes `RCPT-…`, a short kiosk idle time.
fn start(test: &str) -> Option<Store> {
    let rig = Rig::start(test, "")?;
    let scanner = Pty::open();
    let mut text = std::fs::read_to_string(&rig.config).unwrap();
    text.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:0\"\n\n[screens]\nscan_injection = true\nkiosk_idle_s = 10\n\n\
         [scan]\norder_code_prefixes = [\"PU-\"]\nreceipt_code_prefixes = [\"RCPT-\"]\n\n\
         [[devices.scanners.serial]]\ndevice_id = \"counter-scanner\"\npath = {}\n",
        toml_string(&scanner.path)
    ));
    std::fs::write(&rig.config, text).unwrap();
    let mut agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    assert!(
        agent.wait_for_stderr("Device connected.", SYNC_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    let addr = agent.http_addr();
    Some(Store {
        rig,
        agent,
        addr,
        scanner,
    })
}

/// A scanner at `to` (`console` or `kiosk`) reads `data`.
fn scan(rig: &Rig, addr: &str, to: &str, data: &str) {
    tokio::task::block_in_place(|| {
        rig.dir.run_ok([
            "scan",
            "send",
            "--config",
            &rig.config,
            "--addr",
            addr,
            "--to",
            to,
            data,
        ]);
    });
}

async fn sign_in(b: &Browser, addr: &str, associate: &sample::SampleAssociate, shot: Option<&str>) {
    b.goto(&format!("http://{addr}/console")).await;
    b.wait_for("#signin").await;
    b.fill("#associate-id", &associate.associate_id).await;
    b.fill("#pin", &associate.pin).await;
    if let Some(name) = shot {
        save_docs_screenshot(&b.screenshot_png().await, name);
    }
    b.click("#signin button[type=submit]").await;
    b.wait_for_text("#associate", &associate.name).await;
    b.wait_for("body[data-live=up]").await;
}

/// The events the cloud stored from the agent on `stream`.
async fn received(rig: &Rig, stream: UplinkStream) -> Vec<ReceivedEvent> {
    rig.cloud.received_events(DEVICE_ID, stream).await.unwrap()
}

/// Waits until the cloud holds an event on `stream` that `matches`; returns them all.
async fn wait_received(
    rig: &Rig,
    stream: UplinkStream,
    matches: impl Fn(&ReceivedEvent) -> bool,
) -> Vec<ReceivedEvent> {
    let deadline = std::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let events = received(rig, stream).await;
        if events.iter().any(&matches) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cloud never received the event on {stream:?}; it has {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The order's lines from the cloud: (line_no, gtin, qty, unit price).
async fn order_lines(rig: &Rig, order_id: &str) -> Vec<(u64, String, u64, i64)> {
    let order = rig
        .cloud
        .entity(DownlinkStream::Orders, order_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the cloud has no order {order_id}"));
    order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line_no"].as_u64().unwrap(),
                l["gtin"].as_str().unwrap().to_string(),
                l["qty_ordered"].as_u64().unwrap(),
                l["unit_price_minor"].as_i64().unwrap(),
            )
        })
        .collect()
}

impl Store {
    fn stop(self) {
        self.rig.stop_agent(self.agent);
    }
}

/// The counter's serial scanner reads `data` (terminated by CR, the driver's default).
fn serial_scan(scanner: &mut Pty, data: &str) {
    use std::io::Write;
    scanner.master.write_all(format!("{data}\r").as_bytes()).unwrap();
}

/// Scans every unit of every line of `order_id` at the counter and waits for each
/// line to show as verified.
async fn scan_all_items(b: &Browser, rig: &Rig, addr: &str, order_id: &str) {
    for (line_no, gtin, qty, _) in order_lines(rig, order_id).await {
        for _ in 0..qty {
            scan(rig, addr, "console", &gtin);
        }
        b.wait_for(&format!(
            "#handover-lines li[data-line=\"{line_no}\"][data-state=verified]"
        ))
        .await;
    }
}

/// Waits until the cloud holds the hand-over of `order_id`, and checks it got the
/// arrival and the hand-over of that order exactly once each, in that order.
async fn assert_arrival_and_hand_over_once(rig: &Rig, order_id: &str) {
    let events = wait_received(rig, UplinkStream::OrderEvents, |e| {
        e.kind == "hand_over" && e.payload.to_string().contains(order_id)
    })
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.payload.to_string().contains(order_id))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["customer_arrived", "hand_over"], "{events:?}");
}

/// Picks each `<select>` of the return form by value.
async fn fill_return_codes(b: &Browser) {
    for (select, value) in [
        ("#return-reason", "wrong_size"),
        ("#return-condition", "like_new"),
        ("#return-disposition", "restock"),
        ("#return-refund-method", "original_tender"),
    ] {
        b.execute(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; return s.value;",
            vec![select.into(), value.into()],
        )
        .await;
    }
}

/// A delivered order of the cloud's sample outside the 30-day return window.
async fn order_outside_window(rig: &Rig) -> String {
    let now = store_agent::events::now_ms();
    rig.cloud
        .entities(DownlinkStream::Orders)
        .await
        .unwrap()
        .into_iter()
        .find(|o| {
            o["kind"] == "delivered"
                && o["fulfilled_at_ms"]
                    .as_i64()
                    .is_some_and(|f| now - f > 32 * 86_400_000)
                && o["lines"]
                    .as_array()
                    .is_some_and(|l| l.iter().all(|l| l["final_sale"] == false))
        })
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .expect("the sample has a delivered order outside the window")
}

#[test]
fn a_kiosk_check_in_highlights_the_order_the_hand_over_is_verified_and_a_return_needs_a_manager() {
    const TEST: &str =
        "a_kiosk_check_in_highlights_the_order_the_hand_over_is_verified_and_a_return_needs_a_manager";
    let Some(mut st) = start(TEST) else { return };
    let s = summary();
    let handle = st.rig.rt.handle().clone();
    let (rig, addr, scanner) = (&st.rig, st.addr.clone(), &mut st.scanner);
    handle.block_on(async {
        let Some(browser) = browser_or_skip(TEST).await else {
            return;
        };
        run_in_browser(browser, TEST, async |b| {
            sign_in(b, &addr, &s.associates[0], Some("console-sign-in")).await;

            // A loyalty card read by the counter's serial scanner opens the panel.
            let (customer, card) = &s.example_cards[0];
            serial_scan(scanner, card);
            b.wait_for(&format!("#panel[data-customer=\"{customer}\"]")).await;
            b.wait_for("#wishlist .item").await;
            b.wait_for("#cart").await;
            assert!(
                !b.text("#panel").await.contains(card.as_str()),
                "the card number is not shown"
            );
            save_docs_screenshot(&b.screenshot_png().await, "console-customer");

            // A product scan: price and stock here, and (online) in nearby stores,
            // asked of the cloud there and then.
            let gtin = sample::product_gtin(1, 0);
            scan(rig, &addr, "console", &gtin);
            b.wait_for("#product-name").await;
            b.wait_for("#product-nearby li[data-store]").await;
            assert!(b.text("#product-nearby").await.contains("Reference store 1"));

            // The customer checks in at the kiosk: the console highlights the order.
            let (order_id, code) = &s.example_pickups[0];
            scan(rig, &addr, "kiosk", code);
            b.wait_for(&format!("#queue li.arrived[data-order=\"{order_id}\"]"))
                .await;
            b.click("#customer-close").await;
            b.click(&format!("#queue li[data-order=\"{order_id}\"]")).await;
            b.wait_for(&format!(
                "#order[data-order-id=\"{order_id}\"][data-status=customer_arrived]"
            ))
            .await;

            // Hand-over: a product not on the order is flagged; every unit scanned
            // verifies its line; the button waits for the ID check.
            b.click("#handover-start").await;
            let on_order: Vec<String> = order_lines(rig, order_id)
                .await
                .iter()
                .map(|l| format!("{:0>14}", l.1))
                .collect();
            let wrong = (0..100)
                .map(|i| sample::product_gtin(1, i))
                .find(|g| !on_order.contains(&format!("{g:0>14}")))
                .unwrap();
            scan(rig, &addr, "console", &wrong);
            b.wait_for("#handover-wrong:not([hidden])").await;
            b.wait_for("#handover-confirm:disabled").await;
            scan_all_items(b, rig, &addr, order_id).await;
            assert_eq!(
                b.execute(
                    "return document.getElementById('handover-confirm').disabled",
                    vec![]
                )
                .await,
                serde_json::json!(true),
                "all items scanned but the ID not checked: the hand-over cannot be confirmed"
            );
            b.click("#id-checked").await;
            b.wait_for("#handover-confirm:enabled").await;
            save_docs_screenshot(&b.screenshot_png().await, "console-handover");
            b.click("#handover-confirm").await;
            b.wait_for("#handover-result[data-status=handed_over]").await;
            b.wait_for(&format!("#queue:not(:has(li[data-order=\"{order_id}\"]))"))
                .await;

            // The cloud gets the check-in and the hand-over, each once.
            assert_arrival_and_hand_over_once(rig, order_id).await;

            // A return receipt scanned at the counter opens an order delivered more
            // than 30 days ago: the policy refuses, a manager's approval lifts it.
            let old = order_outside_window(rig).await;
            serial_scan(scanner, &format!("RCPT-{old}"));
            b.wait_for(&format!("#order[data-order-id=\"{old}\"]")).await;
            b.click("#return-start").await;
            b.fill("input.return-qty[data-line=\"1\"]", "1").await;
            fill_return_codes(b).await;
            b.click("#return-check").await;
            b.wait_for("#return-decision[data-allowed=false] li[data-code=outside_window]")
                .await;
            b.wait_for("#return-override:not([hidden])").await;
            let manager = s.associates.iter().find(|a| a.role == "manager").unwrap();
            b.fill("#override-reason", "Gift, receipt checked").await;
            b.fill("#override-manager-id", &manager.associate_id).await;
            b.fill("#override-manager-pin", &manager.pin).await;
            b.click("#return-check").await;
            b.wait_for("#return-decision[data-allowed=true] li.overridden[data-code=outside_window]")
                .await;
            b.click("#return-record").await;
            let result = b.wait_for("#return-result[data-return-id]").await;
            let return_id = result.attr("data-return-id").await.unwrap().unwrap();
            let events = wait_received(rig, UplinkStream::Returns, |e| e.idempotency_key == return_id).await;
            assert_eq!(
                events.iter().filter(|e| e.idempotency_key == return_id).count(),
                1,
                "{events:?}"
            );

            // Sign-out: the console is closed to this browser until the next sign-in.
            b.click("#sign-out").await;
            b.wait_for("#signin").await;
            b.goto(&format!("http://{addr}/console")).await;
            b.wait_for("#signin").await;
        })
        .await;
    });
    st.stop();
}

#[test]
fn with_the_broker_down_the_counter_keeps_working_and_the_cloud_gets_everything_once_after() {
    const TEST: &str =
        "with_the_broker_down_the_counter_keeps_working_and_the_cloud_gets_everything_once_after";
    let Some(mut st) = start(TEST) else { return };
    let s = summary();
    let spec = cloud_spec();
    let handle = st.rig.rt.handle().clone();
    let addr = st.addr.clone();
    let rig = &mut st.rig;
    handle.block_on(async {
        let Some(browser) = browser_or_skip(TEST).await else {
            return;
        };
        run_in_browser(browser, TEST, async |b| {
            sign_in(b, &addr, &s.associates[0], None).await;
            b.wait_for("#status-online[data-online=true]").await;

            // The store goes offline; the status bar says so.
            tokio::task::block_in_place(|| rig.mosquitto().stop());
            b.wait_for("#status-online[data-online=false]").await;
            b.wait_for_text("#status-online", "Offline since").await;
            scan(rig, &addr, "console", &sample::product_gtin(1, 0));
            b.wait_for_text("#product-nearby", "while the store is online")
                .await;

            // A hand-over at the counter: the customer came without the kiosk.
            let (order_id, _) = &s.example_pickups[1];
            b.click(&format!("#queue li[data-order=\"{order_id}\"]")).await;
            b.click("#order-arrived").await;
            b.wait_for(&format!(
                "#order[data-order-id=\"{order_id}\"][data-status=customer_arrived]"
            ))
            .await;
            b.click("#handover-start").await;
            scan_all_items(b, rig, &addr, order_id).await;
            b.click("#id-checked").await;
            b.click("#handover-confirm").await;
            b.wait_for("#handover-result[data-status=handed_over]").await;
            b.wait_for_text("#handover-result", "offline").await;

            // Find the customer by e-mail, open the received order from the panel.
            let web = sample::delivered_order_id(0);
            let who = sample::delivered_customer(&spec, 0);
            b.fill("#q", &sample::customer_email(who).to_uppercase()).await;
            b.click("#search button[type=submit]").await;
            b.click(&format!(
                "#results button[data-customer=\"{}\"]",
                sample::customer_id(who)
            ))
            .await;
            b.click(&format!("#recent-orders li[data-order=\"{web}\"] button"))
                .await;
            b.wait_for(&format!("#order[data-order-id=\"{web}\"]")).await;
            b.click("#customer-close").await;

            // The dearest lines together are above the offline limit (100.00).
            let mut lines = order_lines(rig, &web).await;
            lines.sort_by_key(|l| -l.3);
            let mut total = 0;
            let returned: Vec<u64> = lines
                .iter()
                .take_while(|l| {
                    let before = total;
                    total += l.3;
                    before <= 10_000
                })
                .map(|l| l.0)
                .collect();
            assert!(total > 10_000, "{lines:?}");
            b.click("#return-start").await;
            for line in &returned {
                b.fill(&format!("input.return-qty[data-line=\"{line}\"]"), "1")
                    .await;
            }
            fill_return_codes(b).await;
            b.click("#return-check").await;
            b.wait_for("#return-decision[data-allowed=false] li[data-code=offline_limit]")
                .await;
            b.wait_for("#return-override:not([hidden])").await;
            // Recording it without a manager is refused.
            b.click("#return-record").await;
            b.wait_for("#return-error:not([hidden])").await;
            assert_eq!(
                b.execute("return document.getElementById('return-result') === null", vec![])
                    .await,
                serde_json::json!(true)
            );
            // A wrong manager PIN is refused; the right one records it.
            let manager = s.associates.iter().find(|a| a.role == "manager").unwrap();
            b.fill("#override-reason", "Receipt and goods checked").await;
            b.fill("#override-manager-id", &manager.associate_id).await;
            b.fill("#override-manager-pin", &manager.pin).await;
            save_docs_screenshot(&b.screenshot_png().await, "console-return");
            b.fill("#override-manager-pin", "0000000").await;
            b.click("#return-record").await;
            b.wait_for_text("#return-error", "not right").await;
            b.fill("#override-manager-pin", &manager.pin).await;
            b.click("#return-record").await;
            let result = b.wait_for("#return-result[data-return-id]").await;
            let return_id = result.attr("data-return-id").await.unwrap().unwrap();
            b.wait_for_text("#return-result", "offline").await;
            b.wait_for("#status-waiting:not([data-count=\"0\"])").await;
            assert!(
                received(rig, UplinkStream::Returns).await.is_empty(),
                "nothing reached the cloud while the broker was down"
            );

            // The connection comes back: hand-over and return reach the cloud once.
            tokio::task::block_in_place(|| rig.mosquitto().start_again());
            b.wait_for("#status-online[data-online=true]").await;
            let events = wait_received(rig, UplinkStream::Returns, |e| e.idempotency_key == return_id).await;
            assert_eq!(
                events.iter().filter(|e| e.idempotency_key == return_id).count(),
                1,
                "{events:?}"
            );
            let payload = &events
                .iter()
                .find(|e| e.idempotency_key == return_id)
                .unwrap()
                .payload;
            assert!(
                payload.to_string().contains(&manager.associate_id),
                "the approval is recorded: {payload}"
            );
            assert_arrival_and_hand_over_once(rig, order_id).await;
            b.wait_for("#status-waiting[data-count=\"0\"]").await;
        })
        .await;
    });
    st.stop();
}

#[test]
fn the_kiosk_shows_only_the_shopper_who_scanned_as_text_and_forgets_them() {
    const TEST: &str = "the_kiosk_shows_only_the_shopper_who_scanned_as_text_and_forgets_them";
    let Some(st) = start(TEST) else {
        return;
    };
    let s = summary();
    let handle = st.rig.rt.handle().clone();
    let (rig, addr) = (&st.rig, st.addr.clone());
    handle.block_on(async {
        // A hostile first name arrives from the cloud for customer 2.
        let hostile = "<img src=x onerror=\"document.title='pwned'\">";
        let (customer, card) = s.example_cards[1].clone();
        let mut profile = rig
            .cloud
            .entity(DownlinkStream::Customers, &customer)
            .await
            .unwrap()
            .unwrap();
        profile["first_name"] = hostile.into();
        profile["display_name"] = format!("{hostile} X.").into();
        let seq = rig
            .cloud
            .publish(DownlinkStream::Customers, Op::Upsert, profile)
            .await
            .unwrap();
        let applied = tokio::task::block_in_place(|| {
            wait_for(SYNC_TIMEOUT, || {
                rig.status()["downlink"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["stream"] == "customers" && d["last_seq"].as_i64().unwrap_or(0) >= seq)
            })
        });
        assert!(applied, "the agent applied the cloud's change: {}", rig.status());

        let Some(browser) = browser_or_skip(TEST).await else {
            return;
        };
        run_in_browser(browser, TEST, async |b| {
            b.goto(&format!("http://{addr}/kiosk")).await;
            b.wait_for("body[data-live=up]").await;
            b.wait_for("#attract:not([hidden])").await;
            save_docs_screenshot(&b.screenshot_png().await, "kiosk-attract");
            let title = b.execute("return document.title", vec![]).await;

            // A shopper scans their card: greeting and wishlist, no last name.
            let (first_customer, first_card) = &s.example_cards[0];
            scan(rig, &addr, "kiosk", first_card);
            let greeting = b.wait_for_text("#greeting", ",").await;
            let profile = rig
                .cloud
                .entity(DownlinkStream::Customers, first_customer)
                .await
                .unwrap()
                .unwrap();
            let last = profile["last_name"].as_str().unwrap();
            assert!(
                !b.text("#me").await.contains(last),
                "the kiosk never shows the last name: {greeting}"
            );
            save_docs_screenshot(&b.screenshot_png().await, "kiosk-customer");

            // Nobody touches it: after the idle time it is back at attract.
            b.wait_for("body[data-state=attract]").await;
            b.wait_for("#me[hidden]").await;
            assert!(
                !b.text("body")
                    .await
                    .contains(greeting.trim_start_matches("Hello, "))
            );
            // The next shopper's hostile name is text, never markup.
            scan(rig, &addr, "kiosk", &card);
            b.wait_for_text("#greeting", "<img").await;
            let injected = b
                .execute("return document.querySelectorAll('#me img').length", vec![])
                .await;
            assert_eq!(injected, serde_json::json!(0));
            assert_eq!(
                b.execute("return document.title", vec![]).await,
                title,
                "no script ran"
            );
            // Done ends the session; reloading shows attract, not the shopper.
            b.click("#done").await;
            b.wait_for("body[data-state=attract]").await;
            b.goto(&format!("http://{addr}/kiosk")).await;
            b.wait_for("#attract:not([hidden])").await;
            assert!(!b.text("body").await.contains("<img"));
            // The kiosk's session reaches no customer data.
            let status = b
                .execute(
                    "return fetch('/api/v1/customers/' + arguments[0]).then(r => r.status)",
                    vec![customer.clone().into()],
                )
                .await;
            assert_eq!(status, serde_json::json!(403));
        })
        .await;
    });
    st.stop();
}
