//! The chaos harness: the real agent, a real Mosquitto (TLS, client certificates,
//! ACL) and the reference cloud, while POS transactions arrive through the spool
//! folder and the HTTP intake and the cloud changes prices. Meanwhile the agent
//! is killed with SIGKILL at random moments, the broker is stopped and started
//! again, and the link between agent and broker (tests/src/link.rs) is cut for a
//! while, slowed to 500 ± 200 ms, or loses 20 % of its segments (each one then
//! arrives a retransmission timeout later, as over TCP). Then: every transaction the agent acknowledged (HTTP 201, or spool file
//! moved to `processed/`) is in the cloud exactly once, nothing else is, the
//! outbox is empty, every price change is applied, and `PRAGMA integrity_check`
//! was ok after every kill.
//!
//! At the same time an associate hands BOPIS orders over and takes returns through
//! the console's API; each must reach the cloud exactly once. The cloud publishes
//! the BOPIS orders beyond the sample's three (copies under new ids) before the
//! chaos starts.
//!
//! The POS side behaves as a real one does: an HTTP request that got no answer
//! (the agent was killed, or restarting) is sent again until it gets one; the
//! agent's natural-key de-duplication makes the resend harmless.
//!
//! Short run (in CI): `cargo test -p store-agent-e2e --test chaos -- --nocapture`.
//! Long run: `scripts/chaos.sh` (10,000 transactions, 50 kills, 10 broker restarts);
//! the sizes come from `CHAOS_TRANSACTIONS`, `CHAOS_KILLS`, `CHAOS_BROKER_RESTARTS`,
//! `CHAOS_PARTITIONS`, `CHAOS_DELAYS`, `CHAOS_LOSSY`, `CHAOS_HANDOVERS`,
//! `CHAOS_RETURNS`, `CHAOS_PACE_MS` and `CHAOS_SEED`. The report line starts with `CHAOS`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use store_agent::config::Config;
use store_agent::events::{DownlinkStream, UplinkStream};
use store_agent::sample::{self, SampleSpec};
use store_agent::sync::protocol::Op;
use store_agent_e2e::http::{Session, sign_in, staff_call, try_request};
use store_agent_e2e::link::{FaultyLink, LinkMode};
use store_agent_e2e::rig::{Rig, STOP_TIMEOUT, SYNC_TIMEOUT, assert_exactly_once, gtin14, wait_for};
use store_agent_e2e::{DEVICE_ID, Rng, RunningAgent, poslog_sale};

/// The sizes of a run.
#[derive(Debug)]
struct Plan {
    transactions: u32,
    kills: u32,
    broker_restarts: u32,
    /// Periods with the link cut (1 to 8 s: some outlast the keep-alive).
    partitions: u32,
    /// Periods with the link at 500 ± 200 ms (2 to 5 s).
    delays: u32,
    /// Periods with 20 % of the link's segments lost (2 to 5 s).
    lossy: u32,
    /// BOPIS orders handed over at the counter during the run.
    handovers: usize,
    /// Returns of online orders taken at the counter during the run.
    returns: usize,
    /// Pause between two transactions of the feed.
    pace: Duration,
    seed: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
                })
                .unwrap_or(default)
        };
        Plan {
            transactions: var("CHAOS_TRANSACTIONS", 300) as u32,
            kills: var("CHAOS_KILLS", 5) as u32,
            broker_restarts: var("CHAOS_BROKER_RESTARTS", 2) as u32,
            partitions: var("CHAOS_PARTITIONS", 2) as u32,
            delays: var("CHAOS_DELAYS", 2) as u32,
            lossy: var("CHAOS_LOSSY", 1) as u32,
            handovers: var("CHAOS_HANDOVERS", 3) as usize,
            returns: var("CHAOS_RETURNS", 4) as usize,
            pace: Duration::from_millis(var("CHAOS_PACE_MS", 20)),
            seed: var("CHAOS_SEED", 7),
        }
    }
}

/// One fault the chaos loop injects.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    BrokerRestart,
    Partition,
    Delay,
    Lossy,
}

/// What the feed did, shared with the chaos loop.
#[derive(Default)]
struct Feed {
    /// Where the agent's HTTP server is now (`None` while it is down).
    addr: Mutex<Option<String>>,
    /// Sequence numbers the HTTP intake answered 201 for.
    http_acked: Mutex<BTreeSet<u32>>,
    /// HTTP sends that got no answer, or a 5xx, and were sent again.
    http_retries: AtomicU64,
    done: AtomicBool,
}

/// The POS: odd numbers as spool files, even numbers over HTTP (resent until
/// answered).
fn feed(plan: &Plan, spool: &Path, feed: &Feed) {
    for seq in 1..=plan.transactions {
        if seq % 2 == 1 {
            let tmp = spool.join(format!("tx-{seq}.xml.tmp"));
            std::fs::write(&tmp, poslog_sale(seq)).unwrap();
            std::fs::rename(&tmp, spool.join(format!("tx-{seq}.xml"))).unwrap();
        } else {
            loop {
                let addr = feed.addr.lock().unwrap().clone();
                let answer = addr.and_then(|a| {
                    try_request(
                        &a,
                        "POST",
                        "/api/v1/pos/transactions",
                        &[("Content-Type", "application/xml")],
                        poslog_sale(seq).as_bytes(),
                    )
                    .ok()
                });
                match answer {
                    Some(r) if r.status == 201 => {
                        feed.http_acked.lock().unwrap().insert(seq);
                        break;
                    }
                    Some(r) if r.status < 500 => panic!("transaction {seq}: {} {}", r.status, r.body),
                    _ => {
                        feed.http_retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        std::thread::sleep(plan.pace);
    }
    feed.done.store(true, Ordering::Relaxed);
}

/// What the counter did.
#[derive(Default, Debug)]
struct Counter {
    /// BOPIS orders handed over (the agent confirmed, or showed them handed over
    /// after an answer was lost).
    handed_over: Vec<String>,
    /// (order id, line) returned: confirmed 201, or shown as nothing left after a
    /// lost answer.
    returned: Vec<(String, u64)>,
}

/// Hands over `orders` and takes `returns` while the agent is killed and restarted:
/// signs in again when the session is gone, and after a lost answer looks at the
/// order before doing anything again (so nothing is done twice by the counter; the
/// agent must not record anything twice either).
fn counter(
    feed: &Feed,
    gap: Duration,
    associate: (&str, &str),
    orders: &[String],
    returns: &[(String, u64)],
) -> Counter {
    let mut done = Counter::default();
    let mut session: Option<(String, Session)> = None;
    let mut work: Vec<Result<&String, &(String, u64)>> = orders.iter().map(Ok).collect();
    work.extend(returns.iter().map(Err));
    for item in work {
        // Spread over the feed, so that the faults hit the counter's work too.
        std::thread::sleep(gap);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let Some(addr) = feed.addr.lock().unwrap().clone() else {
                continue;
            };
            // A restarted agent has forgotten every session.
            if session.as_ref().is_none_or(|(a, _)| *a != addr) {
                session = sign_in(&addr, associate.0, associate.1).map(|s| (addr.clone(), s));
            }
            let Some((_, s)) = &session else {
                continue;
            };
            let get = |path: &str| staff_call(&addr, s, "GET", path, &serde_json::Value::Null);
            match item {
                Ok(order) => {
                    let path = format!("/api/v1/orders/{order}");
                    let Some(status) = get(&path)
                        .filter(|r| r.status == 200)
                        .and_then(|r| r.json()["status"].as_str().map(str::to_owned))
                    else {
                        session = None;
                        continue;
                    };
                    match status.as_str() {
                        "ready_for_pickup" => {
                            let _ = staff_call(
                                &addr,
                                s,
                                "POST",
                                &format!("{path}/arrived"),
                                &serde_json::json!({}),
                            );
                        }
                        "customer_arrived" => {
                            let body = serde_json::json!({ "id_checked": true, "refused_lines": [] });
                            let _ = staff_call(&addr, s, "POST", &format!("{path}/handover"), &body);
                        }
                        "handed_over" => {
                            done.handed_over.push(order.clone());
                            break;
                        }
                        other => panic!("{order} went to {other}"),
                    }
                }
                Err((order, line)) => {
                    let body = serde_json::json!({
                        "order_id": order,
                        "lines": [{ "line_no": line, "qty": 1 }],
                        "reason": "wrong_size", "condition": "like_new",
                        "disposition": "restock", "refund_method": "original_tender",
                    });
                    let Some(check) = staff_call(&addr, s, "POST", "/api/v1/returns/check", &body)
                        .filter(|r| r.status == 200)
                        .map(|r| r.json())
                    else {
                        session = None;
                        continue;
                    };
                    if check["allowed"] == true {
                        match staff_call(&addr, s, "POST", "/api/v1/returns", &body) {
                            Some(r) if r.status == 201 => {
                                done.returned.push((order.clone(), *line));
                                break;
                            }
                            _ => continue,
                        }
                    }
                    // A lost answer: the return was recorded if nothing is left.
                    let codes = check["blocking"].to_string();
                    assert!(
                        codes.contains("exceeds_remaining"),
                        "{order} line {line}: {check}"
                    );
                    done.returned.push((order.clone(), *line));
                    break;
                }
            }
        }
    }
    done
}

/// BOPIS orders ready for pickup and returnable lines (within the offline refund
/// limit, so a cut link does not need a manager) of the sample store.
fn counter_work(addr: &str, session: &Session, plan: &Plan) -> (Vec<String>, Vec<(String, u64)>) {
    let queue = staff_call(addr, session, "GET", "/api/v1/pickups", &serde_json::Value::Null)
        .expect("the pickup queue")
        .json();
    let orders: Vec<String> = queue
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["status"] == "ready_for_pickup" && e["overdue"] == false)
        .filter_map(|e| e["order_id"].as_str().map(str::to_owned))
        .take(plan.handovers)
        .collect();
    let mut returns = Vec::new();
    for k in 1..=60u64 {
        if returns.len() >= plan.returns {
            break;
        }
        let id = format!("WEB-{k:07}");
        let Some(order) = staff_call(
            addr,
            session,
            "GET",
            &format!("/api/v1/orders/{id}"),
            &serde_json::Value::Null,
        )
        .filter(|r| r.status == 200)
        .map(|r| r.json()) else {
            continue;
        };
        for line in order["lines"].as_array().into_iter().flatten() {
            let (Some(no), Some(price)) = (line["line_no"].as_u64(), line["unit_price_minor"].as_i64())
            else {
                continue;
            };
            let body = serde_json::json!({
                "order_id": id, "lines": [{ "line_no": no, "qty": 1 }],
                "reason": "wrong_size", "condition": "like_new",
                "disposition": "restock", "refund_method": "original_tender",
            });
            let allowed = price <= 10_000
                && staff_call(addr, session, "POST", "/api/v1/returns/check", &body)
                    .is_some_and(|r| r.status == 200 && r.json()["allowed"] == true);
            if allowed && returns.len() < plan.returns {
                returns.push((id.clone(), no));
            }
        }
    }
    assert_eq!(
        orders.len(),
        plan.handovers,
        "enough ready pickups in the sample: {queue}"
    );
    assert_eq!(
        returns.len(),
        plan.returns,
        "enough returnable lines in the sample"
    );
    (orders, returns)
}

fn start_agent(rig: &Rig, feed: &Feed) -> RunningAgent {
    let agent = rig.spawn_agent();
    *feed.addr.lock().unwrap() = Some(agent.http_addr());
    agent
}

fn integrity_ok(rig: &Rig) {
    let out = rig.dir.run(["db", "integrity", "--config", &rig.config]);
    assert_eq!(out.code(), Some(0), "integrity check after a kill: {out}");
}

/// The cloud changes the price of sample product `n`; the new price.
fn change_price(rig: &Rig, n: u64, price: i64) -> Option<(String, i64)> {
    let gtin = store_agent::sample::product_gtin(1, n);
    let mut product = rig
        .rt
        .block_on(rig.cloud.entity(DownlinkStream::Products, &gtin))
        .ok()??;
    product["price_minor"] = serde_json::json!(price);
    let publish = rig.cloud.publish(DownlinkStream::Products, Op::Upsert, product);
    let published = rig
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), publish).await });
    matches!(published, Ok(Ok(_))).then(|| (gtin14(&gtin), price))
}

/// Has the cloud publish BOPIS orders ready for pickup until the store has at least
/// `wanted`: copies of the sample's first one under the ids `CHAOS-00001`, …, and
/// waits until the agent has applied them.
fn add_pickups(rig: &Rig, wanted: usize) {
    let db = || store_agent::store::open_read_only(&rig.dir.database()).expect("the store");
    let ready = || {
        db().query_row(
            "SELECT count(*) FROM orders WHERE kind = 'bopis' AND status = 'ready_for_pickup'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
    };
    let have = ready();
    if have >= wanted {
        return;
    }
    let first: String = db()
        .query_row(
            "SELECT order_id FROM orders WHERE kind = 'bopis' AND status = 'ready_for_pickup' ORDER BY order_id",
            [],
            |r| r.get(0),
        )
        .expect("a sample BOPIS order");
    let template = rig
        .rt
        .block_on(rig.cloud.entity(DownlinkStream::Orders, &first))
        .unwrap()
        .expect("the cloud has the sample's order");
    for k in 1..=wanted - have {
        let mut order = template.clone();
        order["order_id"] = serde_json::json!(format!("CHAOS-{k:05}"));
        // The pickup code is unique per order; these are handed over by id check.
        order["pickup_code_hash"] = serde_json::Value::Null;
        rig.rt
            .block_on(rig.cloud.publish(DownlinkStream::Orders, Op::Upsert, order))
            .expect("the cloud publishes the order");
    }
    assert!(
        wait_for(SYNC_TIMEOUT, || ready() >= wanted),
        "{} of {wanted} pickups in the store",
        ready()
    );
}

fn files_in(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    })
}

#[test]
fn nothing_acknowledged_is_lost_or_doubled_through_kills_restarts_and_a_bad_link() {
    let plan = Plan::from_env();
    let Some(mut rig) = Rig::start("chaos", "") else {
        return;
    };
    // The agent reaches the broker through the faulty link, with a short
    // keep-alive so that a cut link is noticed within seconds; the cloud connects
    // directly.
    let broker_port = rig.mosquitto().port();
    let link = FaultyLink::start(([127, 0, 0, 1], broker_port).into());
    let config = std::fs::read_to_string(&rig.config).unwrap();
    let through_link = config.replacen(
        &format!("port = {broker_port}\n"),
        &format!("port = {}\nkeep_alive_s = 5\n", link.addr().port()),
        1,
    );
    assert_ne!(through_link, config, "the [mqtt] port is in the configuration");
    std::fs::write(&rig.config, through_link + "\n[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let started = Instant::now();
    let mut rng = Rng(plan.seed.max(1));
    let state = Feed::default();
    let agent = start_agent(&rig, &state);
    rig.wait_bootstrapped(&agent);
    // The counter's work, chosen before the chaos starts; the sample's associate A001.
    let config =
        Config::parse(&std::fs::read_to_string(&rig.config).unwrap(), &|_| None).expect("the config");
    let hasher = store_agent::runtime::store_options(&config).unwrap().hasher;
    let staff = sample::write_snapshot(&SampleSpec::new(1, 200, 100), &hasher, std::io::sink())
        .unwrap()
        .associates
        .into_iter()
        .find(|a| a.role == "associate")
        .expect("a sample associate");
    let addr = state.addr.lock().unwrap().clone().unwrap();
    add_pickups(&rig, plan.handovers);
    let session = sign_in(&addr, &staff.associate_id, &staff.pin).expect("the associate signs in");
    let (orders, returns) = counter_work(&addr, &session, &plan);

    let (mut kills, mut restarts, mut partitions, mut delays, mut lossy) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut prices: Vec<(String, i64)> = Vec::new();
    let spool = rig.spool.clone();
    let (agent, at_counter) = std::thread::scope(|s| {
        s.spawn(|| feed(&plan, &spool, &state));
        let items = (orders.len() + returns.len()).max(1) as u32;
        let gap = plan.pace * plan.transactions / items;
        let associate = (staff.associate_id.as_str(), staff.pin.as_str());
        let (state, orders, returns) = (&state, &orders, &returns);
        let at_counter = s.spawn(move || counter(state, gap, associate, orders, returns));
        let mut agent = agent;
        let mut step = 0u64;
        loop {
            // What is left to do, kills twice as likely as the rest.
            let mut left = Vec::new();
            if kills < plan.kills {
                left.extend([Fault::Kill, Fault::Kill]);
            }
            if restarts < plan.broker_restarts {
                left.push(Fault::BrokerRestart);
            }
            if partitions < plan.partitions {
                left.push(Fault::Partition);
            }
            if delays < plan.delays {
                left.push(Fault::Delay);
            }
            if lossy < plan.lossy {
                left.push(Fault::Lossy);
            }
            if left.is_empty() && state.done.load(Ordering::Relaxed) && at_counter.is_finished() {
                break;
            }
            std::thread::sleep(rng.millis(200, 1500));
            step += 1;
            if let Some(change) = change_price(&rig, 1 + step % 20, 100 + step as i64) {
                prices.retain(|(g, _)| *g != change.0);
                prices.push(change);
            }
            if left.is_empty() {
                continue;
            }
            match *rng.pick(&left) {
                Fault::Kill => {
                    *state.addr.lock().unwrap() = None;
                    agent.signal(libc::SIGKILL);
                    let _ = agent.finish(STOP_TIMEOUT);
                    kills += 1;
                    integrity_ok(&rig);
                    std::thread::sleep(rng.millis(0, 500));
                    agent = start_agent(&rig, state);
                }
                Fault::BrokerRestart => {
                    rig.mosquitto().stop();
                    std::thread::sleep(rng.millis(200, 2000));
                    rig.mosquitto().start_again();
                    restarts += 1;
                }
                Fault::Partition => {
                    link.set(LinkMode::Partitioned);
                    std::thread::sleep(rng.millis(1000, 8000));
                    link.set(LinkMode::Up);
                    partitions += 1;
                }
                Fault::Delay => {
                    link.set(LinkMode::Delay {
                        base: Duration::from_millis(500),
                        jitter: Duration::from_millis(200),
                    });
                    std::thread::sleep(rng.millis(2000, 5000));
                    link.set(LinkMode::Up);
                    delays += 1;
                }
                Fault::Lossy => {
                    link.set(LinkMode::Lossy { percent: 20 });
                    std::thread::sleep(rng.millis(2000, 5000));
                    link.set(LinkMode::Up);
                    lossy += 1;
                }
            }
        }
        (agent, at_counter.join().expect("the counter"))
    });

    // Everything settles: every spool file taken, the outbox drained.
    let n = plan.transactions as usize;
    let settle = SYNC_TIMEOUT.max(Duration::from_millis(50) * plan.transactions);
    assert!(
        wait_for(settle, || files_in(&rig.spool, ".xml") == 0
            && rig.received().len() == n
            && rig.status()["outbox"]
                .as_array()
                .is_some_and(|o| o.iter().all(|s| s["depth"] == 0))),
        "not settled: {} files waiting, {} of {n} in the cloud\n{}\n{}",
        files_in(&rig.spool, ".xml"),
        rig.received().len(),
        rig.status(),
        agent.stderr_so_far()
    );
    // Acknowledged: every HTTP transaction (the POS resends until answered) and
    // every spool file, now in processed/; nothing rejected.
    let http_acked = state.http_acked.lock().unwrap().clone();
    assert_eq!(
        http_acked,
        (2..=plan.transactions).step_by(2).collect::<BTreeSet<_>>()
    );
    let processed = files_in(&rig.spool.join("processed"), ".xml");
    assert_eq!(processed, n.div_ceil(2), "every spool file in processed/");
    assert_eq!(files_in(&rig.spool.join("rejected"), ""), 0, "nothing rejected");
    // In the cloud exactly once each, and nothing else.
    assert_exactly_once(&rig.received(), n);
    // The counter's hand-overs and returns: each in the cloud exactly once.
    assert_eq!(at_counter.handed_over, orders);
    assert_eq!(at_counter.returned, returns);
    let events = |stream| {
        rig.rt
            .block_on(rig.cloud.received_events(DEVICE_ID, stream))
            .unwrap()
    };
    let order_events = events(UplinkStream::OrderEvents);
    for order in &orders {
        for to in ["customer_arrived", "handed_over"] {
            let n = order_events
                .iter()
                .filter(|e| e.payload["order_id"] == order.as_str() && e.payload["to"] == to)
                .count();
            assert_eq!(n, 1, "{order} {to} in the cloud: {order_events:?}");
        }
    }
    let return_events = events(UplinkStream::Returns);
    assert_eq!(return_events.len(), returns.len(), "{return_events:?}");
    for (order, line) in &returns {
        let n = return_events
            .iter()
            .filter(|e| e.payload["order_id"] == order.as_str() && e.payload["lines"][0]["line_no"] == *line)
            .count();
        assert_eq!(
            n, 1,
            "return of {order} line {line} in the cloud: {return_events:?}"
        );
    }
    // Every price change applied.
    for (g14, price) in &prices {
        assert!(
            wait_for(SYNC_TIMEOUT, || rig.local_price(g14) == Some(*price)),
            "price of {g14}: local {:?}, cloud {price}",
            rig.local_price(g14)
        );
    }
    let duplicates = rig.cloud.duplicates_seen();
    rig.stop_agent(agent);
    integrity_ok(&rig);
    println!(
        "CHAOS transactions={n} spool={} http={} kills={kills} broker_restarts={restarts} \
         partitions={partitions} delays={delays} lossy={lossy} handovers={} returns={} broker_connections={} price_changes={} lost=0 doubled=0 \
         duplicates_before_dedup={duplicates} http_resends={} seconds={}",
        processed,
        http_acked.len(),
        orders.len(),
        returns.len(),
        link.connections(),
        prices.len(),
        state.http_retries.load(Ordering::Relaxed),
        started.elapsed().as_secs()
    );
    assert_eq!(kills, plan.kills);
    assert_eq!(restarts, plan.broker_restarts);
    assert_eq!(
        (partitions, delays, lossy),
        (plan.partitions, plan.delays, plan.lossy)
    );
}
