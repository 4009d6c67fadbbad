//! The cloud sync end to end: the real agent binary, a real Mosquitto with TLS
//! client certificates and the %u ACL, and the reference cloud (in this process).
//!
//! What a broken implementation gets wrong here: events lost or doubled across a
//! broker outage or a kill -9, a downlink gap left unrepaired, a bad cloud message
//! that stops the stream or the agent.

use std::time::Duration;
use store_agent::events::{DownlinkStream, UplinkStream};
use store_agent::sync::protocol::{Op, Topics};
use store_agent_e2e::mqtt::MqttClient;
use store_agent_e2e::rig::{
    Broker, READY_TIMEOUT, Rig, STOP_TIMEOUT, SYNC_TIMEOUT, assert_exactly_once, gtin14, wait_for,
};
use store_agent_e2e::{DEVICE_ID, STORE_ID, TENANT_ID};

#[test]
fn transactions_recorded_while_the_broker_is_down_reach_the_cloud_exactly_once() {
    let Some(mut rig) = Rig::start("transactions_recorded_while_the_broker_is_down", "") else {
        return;
    };
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);

    rig.mosquitto().stop();
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.status()["sync"]["state"] == "offline"),
        "the agent notices the outage: {}",
        rig.status()
    );
    rig.drop_transactions(1, 1000);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.outbox_depth("pos_transactions") == 1000),
        "1000 transactions wait in the outbox: {}",
        rig.status()
    );
    let offline = rig.status();
    assert!(offline["sync"]["offline_since_ms"].is_i64(), "{offline}");

    rig.mosquitto().start_again();
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.outbox_depth("pos_transactions") == 0),
        "the backlog drains: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert_exactly_once(&rig.received(), 1000);
    let status = rig.status();
    assert_eq!(status["sync"]["state"], "online", "{status}");
    assert!(status["sync"]["offline_since_ms"].is_null(), "{status}");
    rig.stop_agent(agent);
}

#[test]
fn killing_the_agent_mid_drain_loses_nothing_and_duplicates_are_redeliveries() {
    // A slow drain so the kill lands in the middle of it.
    let Some(mut rig) = Rig::start("killing_the_agent_mid_drain", "drain_events_per_s = 200\n") else {
        return;
    };
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    rig.mosquitto().stop();
    rig.drop_transactions(1, 600);
    assert!(wait_for(SYNC_TIMEOUT, || rig.outbox_depth("pos_transactions") == 600));
    rig.mosquitto().start_again();
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.received().len() >= 100),
        "the drain starts: {}",
        agent.stderr_so_far()
    );
    let agent = agent;
    agent.signal(libc::SIGKILL);
    let _ = agent.finish(STOP_TIMEOUT);
    let before_restart = rig.received().len();
    assert!(
        before_restart < 600,
        "the kill came mid-drain ({before_restart} delivered)"
    );

    let agent = rig.spawn_agent();
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.outbox_depth("pos_transactions") == 0),
        "the rest drains after the restart: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    // The cloud stored each event once; whatever came twice came with the same key
    // (the cloud's unique key and unique seq would have refused anything else).
    assert_exactly_once(&rig.received(), 600);
    rig.stop_agent(agent);
}

/// The agent's on-hand count for `gtin` (14 digits).
fn local_on_hand(rig: &Rig, gtin14: &str) -> Option<i64> {
    rig.local_i64("SELECT on_hand FROM stock WHERE gtin = ?1", gtin14)
}

fn stock_entity(gtin: &str, on_hand: i64) -> serde_json::Value {
    serde_json::json!({"gtin": gtin, "on_hand": on_hand, "reserved_bopis": 0, "aisle": "7", "updated_at_ms": 1})
}

#[test]
fn a_downlink_gap_is_recovered_by_range_fetch_then_by_snapshot() {
    let Some(rig) = Rig::start("a_downlink_gap_is_recovered", "") else {
        return;
    };
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    let gtin = store_agent::sample::product_gtin(1, 3);
    let g14 = gtin14(&gtin);

    // Two messages never published: the third shows the gap, the range fills it.
    rig.cloud.drop_next_downlink(2);
    for on_hand in [11, 12, 13] {
        rig.rt
            .block_on(
                rig.cloud
                    .publish(DownlinkStream::Stock, Op::Upsert, stock_entity(&gtin, on_hand)),
            )
            .unwrap();
    }
    let other = store_agent::sample::product_gtin(1, 4);
    rig.rt
        .block_on(
            rig.cloud
                .publish(DownlinkStream::Stock, Op::Upsert, stock_entity(&other, 99)),
        )
        .unwrap();
    assert!(
        wait_for(SYNC_TIMEOUT, || local_on_hand(&rig, &gtin14(&other)) == Some(99)),
        "the stream caught up after the gap: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert_eq!(local_on_hand(&rig, &g14), Some(13));
    assert!(
        agent.stderr_so_far().contains("fetching the missing range"),
        "{}",
        agent.stderr_so_far()
    );

    // Now the cloud no longer holds the range: the agent reloads the stream from a snapshot.
    rig.cloud.drop_next_downlink(2);
    for on_hand in [21, 22] {
        rig.rt
            .block_on(
                rig.cloud
                    .publish(DownlinkStream::Stock, Op::Upsert, stock_entity(&gtin, on_hand)),
            )
            .unwrap();
    }
    let seq = rig
        .rt
        .block_on(rig.cloud.current_seq(DownlinkStream::Stock))
        .unwrap();
    rig.rt
        .block_on(rig.cloud.trim_log(DownlinkStream::Stock, seq))
        .unwrap();
    rig.rt
        .block_on(
            rig.cloud
                .publish(DownlinkStream::Stock, Op::Upsert, stock_entity(&other, 5)),
        )
        .unwrap();
    assert!(
        wait_for(SYNC_TIMEOUT, || local_on_hand(&rig, &g14) == Some(22)
            && local_on_hand(&rig, &gtin14(&other)) == Some(5)),
        "the snapshot and the delta after it applied: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert!(
        agent.stderr_so_far().contains("reloading from a snapshot"),
        "{}",
        agent.stderr_so_far()
    );
    // The agent's whole stock stream equals the cloud's.
    let cloud_stock = rig
        .rt
        .block_on(rig.cloud.entities(DownlinkStream::Stock))
        .unwrap();
    let db = store_agent::store::open_read_only(&rig.dir.database()).unwrap();
    for entity in &cloud_stock {
        let g = gtin14(entity["gtin"].as_str().unwrap());
        let local: i64 = db
            .query_row("SELECT on_hand FROM stock WHERE gtin = ?1", [&g], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{g} missing locally: {e}"));
        assert_eq!(Some(local), entity["on_hand"].as_i64(), "{g}");
    }
    let local_count: i64 = db
        .query_row("SELECT count(*) FROM stock", [], |r| r.get(0))
        .unwrap();
    assert_eq!(local_count as usize, cloud_stock.len());
    rig.stop_agent(agent);
}

#[test]
fn malformed_downlink_goes_to_dead_letters_and_good_messages_still_apply() {
    let Some(rig) = Rig::start("malformed_downlink_goes_to_dead_letters", "") else {
        return;
    };
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    let topics = Topics::for_parts(TENANT_ID, STORE_ID, DEVICE_ID);
    let products = topics.store_stream(DownlinkStream::Products);
    let unknown = products.replace("/products", "/coupons");
    let bad: Vec<(String, Vec<u8>)> = vec![
        (products.clone(), b"{not json".to_vec()),
        (
            products.clone(),
            br#"{"v":1,"stream":"products","epoch":"e1","items":"many"}"#.to_vec(),
        ),
        (products.clone(), vec![b' '; 126 * 1024]),
        (
            unknown,
            br#"{"v":1,"stream":"coupons","epoch":"e1","items":[]}"#.to_vec(),
        ),
    ];
    rig.rt.block_on(async {
        let Broker::Mosquitto(broker) = &rig.broker else {
            unreachable!()
        };
        let mut raw = MqttClient::connect_ok(broker.client_options(&rig.pki, "cloud")).await;
        for (topic, payload) in bad {
            raw.publish(&topic, payload).await;
        }
        raw.disconnect().await;
    });
    let gtin = store_agent::sample::product_gtin(1, 5);
    rig.publish_price(&gtin, 4242);
    let g14 = gtin14(&gtin);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.local_price(&g14) == Some(4242)),
        "the good message after the bad ones applied: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    let status = rig.status();
    assert_eq!(status["counts"]["dead_letters"], 4, "{status}");
    // A person can read them: topic, error and payload, newest first.
    let listed = rig.dir.run_ok(["dead-letters", "--config", &rig.config]);
    let letters: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 4, "{listed}");
    assert!(
        letters[0]["source"].as_str().unwrap().ends_with("/coupons"),
        "{listed}"
    );
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown downlink stream"),
        "{listed}"
    );
    // Too large: refused by the envelope limit, and only its first 64 KiB kept.
    let error = letters[1]["error"].as_str().unwrap();
    assert!(error.contains("envelope limit"), "{listed}");
    assert!(
        error.ends_with(&format!("(kept: the first 65536 of {} bytes)", 126 * 1024)),
        "{listed}"
    );
    assert_eq!(letters[1]["payload_bytes"], 64 * 1024, "{listed}");
    assert!(
        letters[3]["payload"].as_str().unwrap().starts_with("{not json"),
        "{listed}"
    );
    // Still running, still online.
    assert_eq!(status["sync"]["state"], "online", "{status}");
    rig.stop_agent(agent);
}

#[test]
fn the_same_loop_runs_on_the_embedded_rumqttd_broker() {
    let rig = Rig::start_embedded();
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);

    // Uplink: transactions reach the cloud once and leave the outbox on its ack.
    rig.drop_transactions(1, 50);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.received().len() == 50
            && rig.outbox_depth("pos_transactions") == 0),
        "{}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert_exactly_once(&rig.received(), 50);

    // Downlink: a price change applies.
    let gtin = store_agent::sample::product_gtin(1, 7);
    rig.publish_price(&gtin, 777);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.local_price(&gtin14(&gtin)) == Some(777)),
        "{}",
        agent.stderr_so_far()
    );

    // Erasure: the customer is gone here, and the confirmation reaches the cloud.
    let customer = store_agent::sample::customer_id(0);
    rig.rt
        .block_on(rig.cloud.publish(
            DownlinkStream::Erasure,
            Op::Upsert,
            serde_json::json!({"request_id": "gdpr-1", "customer_id": customer}),
        ))
        .unwrap();
    let confirmed = || {
        rig.rt
            .block_on(rig.cloud.received_events(DEVICE_ID, UplinkStream::Erasures))
            .unwrap()
            .iter()
            .any(|e| e.payload["request_id"] == "gdpr-1")
    };
    assert!(
        wait_for(SYNC_TIMEOUT, confirmed),
        "{}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    let db = store_agent::store::open_read_only(&rig.dir.database()).unwrap();
    for table in ["customers", "loyalty_cards", "wishlist_items", "carts", "orders"] {
        let n: i64 = db
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE customer_id = ?1"),
                [&customer],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table} still holds the erased customer");
    }
    let presence = rig.rt.block_on(rig.cloud.presence(DEVICE_ID)).unwrap();
    assert_eq!(presence.map(|p| p.state).as_deref(), Some("online"));
    rig.stop_agent(agent);
}

#[test]
fn after_a_broker_loses_its_sessions_the_agent_subscribes_again() {
    let Some(mut rig) = Rig::start("after_a_broker_loses_its_sessions", "") else {
        return;
    };
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    // kill -9: Mosquitto saves its persistence only on a clean exit (or every 30
    // minutes), so it comes back without anyone's session or subscriptions.
    rig.mosquitto().kill9();
    rig.mosquitto().start_again();
    assert!(
        wait_for(SYNC_TIMEOUT, || agent
            .stderr_so_far()
            .matches("session_present=false")
            .count()
            >= 2),
        "the agent reconnects to a broker without its session: {}",
        agent.stderr_so_far()
    );
    assert!(
        rig.rt.block_on(rig.cloud.wait_ready(READY_TIMEOUT)),
        "the cloud is back"
    );
    let gtin = store_agent::sample::product_gtin(1, 9);
    let g14 = gtin14(&gtin);
    // The agent only gets this if it subscribed again.
    let publish_until_applied = wait_for(SYNC_TIMEOUT, || {
        rig.rt
            .block_on(
                rig.cloud
                    .publish(DownlinkStream::Stock, Op::Upsert, stock_entity(&gtin, 77)),
            )
            .unwrap();
        wait_for(Duration::from_secs(2), || local_on_hand(&rig, &g14) == Some(77))
    });
    assert!(
        publish_until_applied,
        "{}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    rig.stop_agent(agent);
}
