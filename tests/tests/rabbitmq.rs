//! The protocol of docs/protocol.md against RabbitMQ's MQTT plugin (issue 7, "Fleet
//! scale"): the real agent binary, the reference cloud (in this process) and a RabbitMQ
//! node, plaintext on 127.0.0.1, anonymous, without an ACL.
//!
//! It runs only when `RABBITMQ_MQTT_PORT` names the node's MQTT port, which
//! `scripts/rabbitmq-check.sh` does after starting a private node; otherwise it skips.
//! CI does not run RabbitMQ, so this stays out of the suite's time budget.
//!
//! What it checks, in order: the agent bootstraps (snapshot over MQTT), its presence is a
//! retained `online`, 200 POS transactions reach the cloud exactly once and leave the
//! outbox on the cloud's acks, a price change applies, a 126 KiB message travels; kill -9
//! gives the Last Will (`offline`, `connection_lost`, retained); while the agent is down a
//! price change waits in its persistent session; after the restart the agent is `online`
//! again, gets that change, and 50 more transactions make 250 exactly once; a clean stop
//! says `offline`, `stopped`.
//!
//! What RabbitMQ's MQTT plugin does differently from the protocol's assumptions is probed
//! on topics of its own (`sa-probe/...`, which neither the agent nor the cloud uses) and
//! printed as `FINDING` lines rather than asserted, so the test states what works and
//! the output says what does not: retained messages for wildcard subscriptions, `.` in a
//! topic level (the protocol's device-id convention is `{tenant}.{store}.{name}`), shared
//! subscriptions, messages over 128 KiB.

use rumqttc::{MqttOptions, QoS};
use std::time::{Duration, Instant};
use store_agent::sync::protocol::{MAX_MESSAGE_BYTES, Topics};
use store_agent_e2e::mqtt::MqttClient;
use store_agent_e2e::rig::{
    ExternalBroker, READY_TIMEOUT, Rig, SYNC_TIMEOUT, assert_exactly_once, gtin14, wait_for,
};
use store_agent_e2e::{DEVICE_ID, STORE_ID, TENANT_ID};

/// The RabbitMQ MQTT port from the environment; `None` (after saying why) when unset.
fn port_or_skip(test: &str) -> Option<u16> {
    match std::env::var("RABBITMQ_MQTT_PORT") {
        Ok(port) => Some(
            port.trim()
                .parse()
                .unwrap_or_else(|e| panic!("RABBITMQ_MQTT_PORT={port:?} is not a port: {e}")),
        ),
        Err(_) => {
            println!(
                "SKIP {test}: RABBITMQ_MQTT_PORT is not set; run scripts/rabbitmq-check.sh \
                 (it starts a private RabbitMQ node and runs this test against it)"
            );
            None
        }
    }
}

/// Options for a plaintext, clean-session probe client of the node.
fn probe_options(client_id: &str, port: u16, max_packet: usize) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_max_packet_size(max_packet, max_packet);
    options.set_keep_alive(Duration::from_secs(10));
    options
}

/// The cloud's view of the device's presence: (state, reason).
fn presence(rig: &Rig<ExternalBroker>) -> Option<(String, Option<String>)> {
    rig.rt
        .block_on(rig.cloud.presence(DEVICE_ID))
        .unwrap()
        .map(|p| (p.state, p.reason))
}

fn presence_is(rig: &Rig<ExternalBroker>, state: &str, reason: Option<&str>) -> bool {
    presence(rig).is_some_and(|(s, r)| s == state && r.as_deref() == reason)
}

/// What a new subscriber to `filter` gets at once (within `wait`): topic, retain flag and
/// payload of the first message, if any.
fn first_message_for_new_subscriber(
    rig: &Rig<ExternalBroker>,
    client_id: &str,
    filter: &str,
    wait: Duration,
) -> Option<(String, bool, serde_json::Value)> {
    let port = rig.broker.port();
    rig.rt.block_on(async {
        let mut client = MqttClient::connect_ok(probe_options(client_id, port, MAX_MESSAGE_BYTES + 16)).await;
        client.subscribe_ok(filter).await;
        let got = tokio::time::timeout(wait, client.next_publish()).await.ok();
        client.disconnect().await;
        got.map(|p| {
            let payload = serde_json::from_slice(&p.payload)
                .unwrap_or_else(|_| serde_json::json!(String::from_utf8_lossy(&p.payload)));
            (p.topic, p.retain, payload)
        })
    })
}

/// A subscriber on `filter` and a publisher on `topic` (both probes): the topic the
/// subscriber received the message under, if it received it within `wait`.
fn route(rig: &Rig<ExternalBroker>, name: &str, filter: &str, topic: &str, wait: Duration) -> Option<String> {
    let port = rig.broker.port();
    rig.rt.block_on(async {
        let mut sub = MqttClient::connect_ok(probe_options(&format!("{name}-sub"), port, 1 << 16)).await;
        sub.subscribe_ok(filter).await;
        let mut publisher =
            MqttClient::connect_ok(probe_options(&format!("{name}-pub"), port, 1 << 16)).await;
        publisher.publish(topic, b"probe".to_vec()).await;
        publisher.disconnect().await;
        let got = tokio::time::timeout(wait, sub.next_publish()).await.ok();
        sub.disconnect().await;
        got.map(|p| p.topic)
    })
}

/// Publishes `payload` at QoS 1 from a probe client and says what came back within 5 s
/// (the PUBACK, the connection closing, or nothing), and then whether a small QoS 1
/// message on the same connection still gets its PUBACK.
async fn publish_and_watch(port: u16, topic: &str, payload: Vec<u8>) -> String {
    use rumqttc::{Event, Packet};
    let options = probe_options("sa-probe-oversize", port, 4 * MAX_MESSAGE_BYTES);
    let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 4);
    let mut watch = async |what: &str| {
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => (true, format!("{what}: a PUBACK")),
            Ok(Err(e)) => (false, format!("{what}: the connection closed ({e})")),
            Err(_) => (true, format!("{what}: neither a PUBACK nor a close within 5 s")),
        }
    };
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    let (open, first) = watch("the oversized message").await;
    if !open {
        return first;
    }
    client
        .publish(
            "sa-probe/after-oversize",
            QoS::AtLeastOnce,
            false,
            b"small".to_vec(),
        )
        .await
        .unwrap();
    let (_, second) = watch("a small message after it").await;
    let _ = client.disconnect().await;
    format!("{first}; {second}")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[test]
fn the_protocol_runs_on_rabbitmq_mqtt() {
    let test = "the_protocol_runs_on_rabbitmq_mqtt";
    let Some(port) = port_or_skip(test) else {
        return;
    };
    let version = std::env::var("RABBITMQ_VERSION").unwrap_or_else(|_| "unknown".into());
    println!("RABBITMQ node on 127.0.0.1:{port}, version {version}");
    let mut results: Vec<String> = Vec::new();
    let mut findings: Vec<String> = Vec::new();
    let topics = Topics::for_parts(TENANT_ID, STORE_ID, DEVICE_ID);

    let rig = Rig::start_external(port);
    assert!(
        rig.rt.block_on(rig.cloud.wait_ready(READY_TIMEOUT)),
        "the cloud is connected and subscribed"
    );

    // 1. Bootstrap: the snapshot request and its reply travel over RabbitMQ.
    let started = Instant::now();
    let agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    results.push(format!(
        "bootstrap (start to every stream loaded): {}",
        secs(started.elapsed())
    ));
    assert!(
        agent.stderr_so_far().contains("session_present=false"),
        "a first connection has no session: {}",
        agent.stderr_so_far()
    );

    // 2. Presence: `online`, seen by the cloud and kept as the retained message.
    assert!(
        wait_for(READY_TIMEOUT, || presence_is(&rig, "online", None)),
        "presence online: {:?}\n{}",
        presence(&rig),
        agent.stderr_so_far()
    );
    let retained = first_message_for_new_subscriber(
        &rig,
        "sa-probe-presence-exact",
        &topics.presence(),
        Duration::from_secs(5),
    );
    let (topic, flag, payload) =
        retained.expect("a new subscriber to the presence topic gets the retained presence");
    assert_eq!(topic, topics.presence());
    assert!(flag, "delivered as a retained message");
    assert_eq!(payload["state"], "online", "{payload}");
    results.push("retained presence `online`, for a subscriber to the exact topic: yes".into());
    let wildcard = "sa/v1/device/+/presence";
    match first_message_for_new_subscriber(&rig, "sa-probe-presence-wild", wildcard, Duration::from_secs(3)) {
        Some((topic, flag, _)) => results.push(format!(
            "retained presence for a subscriber to {wildcard}: yes ({topic}, retain={flag})"
        )),
        None => findings.push(format!(
            "a new subscriber to the wildcard filter {wildcard} gets NO retained presence \
             (RabbitMQ looks retained messages up by the exact filter); the exact topic works"
        )),
    }

    // 3. Uplink: 200 transactions, QoS 1, leave the outbox only on the cloud's acks.
    let started = Instant::now();
    rig.drop_transactions(1, 200);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.received().len() == 200
            && rig.outbox_depth("pos_transactions") == 0),
        "200 transactions reach the cloud and the outbox drains: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert_exactly_once(&rig.received(), 200);
    results.push(format!(
        "200 transactions spooled to all stored once and acked (outbox 0): {}",
        secs(started.elapsed())
    ));

    // 4. Downlink: a price change on the store stream applies.
    let gtin = store_agent::sample::product_gtin(1, 7);
    let g14 = gtin14(&gtin);
    let started = Instant::now();
    rig.publish_price(&gtin, 4242);
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.local_price(&g14) == Some(4242)),
        "the price change applies: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    results.push(format!(
        "price change published to applied: {}",
        secs(started.elapsed())
    ));

    // 5. Size: a 126 KiB message (just under MAX_MESSAGE_BYTES with its topic) reaches the
    //    agent, which keeps it as a dead letter (it is over MAX_PAYLOAD_BYTES).
    let products = topics.store_stream(store_agent::events::DownlinkStream::Products);
    let dead_letters =
        |rig: &Rig<ExternalBroker>| rig.status()["counts"]["dead_letters"].as_i64().unwrap_or(-1);
    rig.rt.block_on(async {
        let mut raw =
            MqttClient::connect_ok(probe_options("sa-probe-size", port, 4 * MAX_MESSAGE_BYTES)).await;
        raw.publish(&products, vec![b' '; 126 * 1024]).await;
        raw.disconnect().await;
    });
    assert!(
        wait_for(SYNC_TIMEOUT, || dead_letters(&rig) == 1),
        "the 126 KiB message reaches the agent: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    results.push("a 126 KiB message (129,024-byte payload) travels to the agent: yes".into());
    // Over the protocol's 128 KiB: does the broker refuse it (as Mosquitto's max_packet_size
    // and AWS IoT Core do) or pass it on?
    let oversized = MAX_MESSAGE_BYTES + 64 * 1024;
    let publisher_saw = rig
        .rt
        .block_on(publish_and_watch(port, &products, vec![b' '; oversized]));
    let passed_on = wait_for(Duration::from_secs(5), || dead_letters(&rig) == 2);
    let oversize = format!(
        "a {oversized}-byte message (over MAX_MESSAGE_BYTES): the publisher saw {publisher_saw}; \
         delivered to the agent: {}",
        if passed_on { "yes" } else { "no" }
    );
    if passed_on {
        findings.push(format!(
            "the broker does not enforce the protocol's 128 KiB limit: {oversize}"
        ));
    } else if !publisher_saw.contains("after it: a PUBACK") {
        findings.push(format!(
            "the broker drops a message over its max_message_size, and the publisher's \
             connection then acknowledges no QoS 1 publish at all, without closing: {oversize}"
        ));
    } else {
        results.push(oversize);
    }

    // 6. kill -9: the broker publishes the Last Will, retained.
    agent.signal(libc::SIGKILL);
    let killed = Instant::now();
    let _ = agent.finish(Duration::from_secs(15));
    assert!(
        wait_for(READY_TIMEOUT, || presence_is(
            &rig,
            "offline",
            Some("connection_lost")
        )),
        "the Last Will makes presence offline/connection_lost: {:?}",
        presence(&rig)
    );
    results.push(format!(
        "kill -9 to the Last Will (offline, connection_lost) at the cloud: {}",
        secs(killed.elapsed())
    ));
    let will =
        first_message_for_new_subscriber(&rig, "sa-probe-will", &topics.presence(), Duration::from_secs(5));
    match will {
        Some((_, true, payload))
            if payload["state"] == "offline" && payload["reason"] == "connection_lost" =>
        {
            results.push("the Last Will is kept as the retained presence: yes".into())
        }
        other => findings.push(format!(
            "the Last Will was published but is not the retained presence: a new subscriber got {other:?}"
        )),
    }

    // 7. While the agent is down: a price change waits in its persistent session (the
    //    agent asks for nothing on reconnect, so only the broker's queue can bring it),
    //    and 50 more sales wait in the spool.
    rig.publish_price(&gtin, 4343);
    rig.drop_transactions(201, 50);

    // 8. Restart: session present, online again, the queued change, 250 exactly once.
    let restarted = Instant::now();
    let agent = rig.spawn_agent();
    assert!(
        wait_for(READY_TIMEOUT, || presence_is(&rig, "online", None)),
        "presence online again: {:?}\n{}",
        presence(&rig),
        agent.stderr_so_far()
    );
    results.push(format!(
        "restart to presence `online`: {}",
        secs(restarted.elapsed())
    ));
    let log = agent.stderr_so_far();
    if log.contains("session_present=true") {
        results.push("persistent session kept across the kill (session_present=true): yes".into());
    } else {
        findings.push(format!(
            "the broker did not keep the agent's session across the kill: {}",
            log.lines()
                .filter(|l| l.contains("session_present"))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.local_price(&g14) == Some(4343)),
        "the change published while the agent was down arrives from its session: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    results.push(format!(
        "price change queued while the agent was down, applied after the restart: {}",
        secs(restarted.elapsed())
    ));
    assert!(
        wait_for(SYNC_TIMEOUT, || rig.received().len() == 250
            && rig.outbox_depth("pos_transactions") == 0),
        "250 transactions in all: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    assert_exactly_once(&rig.received(), 250);
    results.push(format!(
        "restart to 250 transactions stored once and acked: {}",
        secs(restarted.elapsed())
    ));

    // 9. Broker behaviours the protocol's recommendations rely on, on probe topics.
    // A `.` inside a topic level: RabbitMQ maps `/` to `.` for its topic exchange.
    let dotted = "sa-probe/acme.s0001.pos01/up";
    match route(
        &rig,
        "sa-probe-dot-wild",
        "sa-probe/+/up",
        dotted,
        Duration::from_secs(3),
    ) {
        Some(t) if t == dotted => {
            results.push(format!("`.` in a level, wildcard subscriber: delivered as {t}"))
        }
        other => findings.push(format!(
            "a message on {dotted} does not reach a subscriber to sa-probe/+/up (got {other:?}): \
             a `.` in a topic level is a level separator inside RabbitMQ"
        )),
    }
    match route(&rig, "sa-probe-dot-exact", dotted, dotted, Duration::from_secs(3)) {
        Some(t) if t == dotted => results.push(format!("`.` in a level, exact subscriber: delivered as {t}")),
        other => findings.push(format!(
            "a message on {dotted} reaches a subscriber to that exact topic as {other:?}, \
             not under its own topic: RabbitMQ turns every `.` back into `/` on delivery"
        )),
    }
    // A shared subscription, as the protocol recommends for the cloud's workers.
    let shared = "$share/ingest/sa-probe/+/share";
    match route(
        &rig,
        "sa-probe-share",
        shared,
        "sa-probe/d1/share",
        Duration::from_secs(3),
    ) {
        Some(t) => results.push(format!("shared subscription {shared}: delivered ({t})")),
        None => findings.push(format!(
            "shared subscription {shared} is granted but receives nothing: no shared \
             subscriptions (the filter is taken literally)"
        )),
    }

    // 10. A clean stop: the agent says offline itself, with reason "stopped".
    rig.stop_agent(agent);
    assert!(
        wait_for(READY_TIMEOUT, || presence_is(&rig, "offline", Some("stopped"))),
        "a clean stop: offline/stopped: {:?}",
        presence(&rig)
    );
    results.push("clean stop: presence offline, reason stopped: yes".into());

    for line in &results {
        println!("RABBITMQ RESULT {line}");
    }
    for line in &findings {
        println!("RABBITMQ FINDING {line}");
    }
}
