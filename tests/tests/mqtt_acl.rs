//! The broker's access control, against a real Mosquitto with TLS client certificates and the
//! ACL of the sync design (tests/src/mqtt.rs): what a device may read and write is decided by
//! its certificate, and nothing it sends can reach another store's data or pass as another
//! device.
//!
//! Negative checks use a sentinel, never a pause: the publisher sends the probe that must not
//! arrive, then, on the same connection, a sentinel the receiver may read. The broker keeps one
//! connection's order, so when the sentinel is in, a delivered probe would be in before it.
//! Where it matters a positive control shows the probe itself was deliverable (another device
//! entitled to it receives it), so a test cannot pass because the probe was lost.
//!
//! SUBACK proves nothing here: Mosquitto 2.0 grants a subscription to any filter and applies the
//! ACL to each message it would deliver (see `subscribe_unauthorised`), so only delivery is
//! asserted.

use rumqttc::{ConnectionError, LastWill, Publish, QoS, SubscribeReasonCode};
use rustls::AlertDescription;
use std::io::ErrorKind;
use store_agent::sync::protocol::{DeviceDownlink, DeviceUplink, DownlinkStream, Topics, UplinkStream};
use store_agent_e2e::TestDir;
use store_agent_e2e::mqtt::{
    AclDevice, CLOUD_USER, MQTT_TIMEOUT, Mosquitto, MqttClient, Pki, io_error_of, mosquitto_or_skip,
    tls_alert_of, tls_options, tls_options_without_certificate,
};

const TENANT: &str = "acme";
/// The device under watch, in store s1.
const S1_POS01: &str = "acme.s1.pos01";
/// Another device of store s1, for positive controls of store streams.
const S1_POS02: &str = "acme.s1.pos02";
/// A device of another store, s2: the would-be intruder.
const S2_POS01: &str = "acme.s2.pos01";

/// A broker with the three devices registered, and the certificates to talk to it. Fields drop
/// in order: the broker stops before its directory is removed.
struct Setup {
    broker: Mosquitto,
    pki: Pki,
    _dir: TestDir,
}

impl Setup {
    /// `None` (after printing why) when Mosquitto is not installed outside CI.
    fn start(test: &str) -> Option<Setup> {
        if !mosquitto_or_skip(test) {
            return None;
        }
        let dir = TestDir::new();
        let pki = Pki::generate(dir.path());
        let devices = [
            AclDevice::new(S1_POS01, TENANT, "s1"),
            AclDevice::new(S1_POS02, TENANT, "s1"),
            AclDevice::new(S2_POS01, TENANT, "s2"),
        ];
        let broker = Mosquitto::start(dir.path(), &pki, &devices);
        Some(Setup {
            broker,
            pki,
            _dir: dir,
        })
    }

    /// A connected client whose certificate CN and client id are `cn`.
    async fn connect(&self, cn: &str) -> MqttClient {
        MqttClient::connect_ok(self.broker.client_options(&self.pki, cn)).await
    }
}

/// The topics of a device, as the agent computes them.
fn topics(device_id: &str) -> Topics {
    let store = device_id
        .split('.')
        .nth(1)
        .expect("device ids here are tenant.store.name");
    Topics::for_parts(TENANT, store, device_id)
}

/// The topics of `messages`, for assertions that show what arrived.
fn topics_of(messages: &[Publish]) -> Vec<&str> {
    messages.iter().map(|m| m.topic.as_str()).collect()
}

/// Subscribes `client` to `filter`, which the ACL gives it no read access to. The SUBACK is not
/// asserted: Mosquitto 2.0 does not check subscriptions against an `acl_file` and grants QoS 1
/// to any filter (observed with 2.0.11, MQTT 3.1.1), applying the ACL to each message instead;
/// a broker that answers 0x80 is as good. What counts is that nothing is delivered, which the
/// tests check with a sentinel.
async fn subscribe_unauthorised(client: &mut MqttClient, filter: &str) {
    // Either answer is fine; a lost connection has already failed the test.
    client.subscribe(filter).await;
}

/// Asserts that `messages` (from [`MqttClient::receive_until`]) hold only the sentinel.
fn assert_only_sentinel(who: &str, messages: &[Publish], sentinel: &str) {
    assert_eq!(
        topics_of(messages),
        [sentinel],
        "{who} received something besides the sentinel"
    );
    assert_eq!(messages[0].payload.as_ref(), b"sentinel");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_reads_its_store_and_its_downlink_and_writes_its_uplink() {
    let Some(setup) = Setup::start("device_reads_its_store_and_its_downlink_and_writes_its_uplink") else {
        return;
    };
    let s1 = topics(S1_POS01);
    // The topics the agent uses are the ones the ACL was written for.
    assert_eq!(s1.store_filter(), "sa/v1/store/acme/s1/+");
    assert_eq!(s1.device_down_filter(), "sa/v1/device/acme.s1.pos01/down/+");
    let uplink = s1.device_up(DeviceUplink::Stream(UplinkStream::PosTransactions));
    assert_eq!(uplink, "sa/v1/device/acme.s1.pos01/up/pos_transactions");

    let mut cloud = setup.connect(CLOUD_USER).await;
    cloud.subscribe_ok("sa/v1/device/+/up/+").await;
    let mut device = setup.connect(S1_POS01).await;
    assert_eq!(
        device.subscribe(&s1.store_filter()).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        device.subscribe(&s1.device_down_filter()).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // Every store stream and every device downlink kind reaches the device, in order.
    let mut sent = Vec::new();
    for stream in DownlinkStream::ALL {
        sent.push(s1.store_stream(stream));
    }
    for kind in DeviceDownlink::ALL {
        sent.push(s1.device_down(kind));
    }
    for topic in &sent {
        cloud.publish(topic, format!("to {topic}")).await;
    }
    for topic in &sent {
        let message = device.next_publish().await;
        assert_eq!(&message.topic, topic);
        assert_eq!(message.payload.as_ref(), format!("to {topic}").as_bytes());
    }

    // Every uplink kind of the device reaches the cloud.
    let mut kinds: Vec<DeviceUplink> = UplinkStream::ALL.into_iter().map(DeviceUplink::Stream).collect();
    kinds.extend([DeviceUplink::Requests, DeviceUplink::Health]);
    for kind in kinds {
        let topic = s1.device_up(kind);
        device.publish(&topic, "event").await;
        let message = cloud.next_publish().await;
        assert_eq!(message.topic, topic);
        assert_eq!(message.payload.as_ref(), b"event");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn device_cannot_read_another_stores_streams() {
    let Some(setup) = Setup::start("device_cannot_read_another_stores_streams") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    let mut control = setup.connect(S1_POS02).await;
    control.subscribe_ok(&s1.store_filter()).await;
    let mut intruder = setup.connect(S2_POS01).await;
    subscribe_unauthorised(&mut intruder, &s1.store_filter()).await;
    // A filter naming the stream exactly is no different from the wildcard.
    subscribe_unauthorised(&mut intruder, &s1.store_stream(DownlinkStream::Customers)).await;
    intruder.subscribe_ok(&s2.store_filter()).await;

    let probe = s1.store_stream(DownlinkStream::Customers);
    let sentinel = s2.store_stream(DownlinkStream::Customers);
    cloud.publish(&probe, "probe").await;
    cloud.publish(&sentinel, "sentinel").await;

    assert_only_sentinel(S2_POS01, &intruder.receive_until(&sentinel).await, &sentinel);
    let delivered = control.next_publish().await;
    assert_eq!(
        (delivered.topic.as_str(), delivered.payload.as_ref()),
        (probe.as_str(), &b"probe"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn device_cannot_read_another_devices_downlink() {
    let Some(setup) = Setup::start("device_cannot_read_another_devices_downlink") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    let mut owner = setup.connect(S1_POS01).await;
    owner.subscribe_ok(&s1.device_down_filter()).await;
    // A device of the same store has no business with it either.
    let mut neighbour = setup.connect(S1_POS02).await;
    subscribe_unauthorised(&mut neighbour, &s1.device_down_filter()).await;
    neighbour
        .subscribe_ok(&topics(S1_POS02).device_down_filter())
        .await;
    let mut intruder = setup.connect(S2_POS01).await;
    subscribe_unauthorised(&mut intruder, &s1.device_down_filter()).await;
    subscribe_unauthorised(&mut intruder, &s1.device_down(DeviceDownlink::Reply)).await;
    intruder.subscribe_ok(&s2.device_down_filter()).await;

    let probe = s1.device_down(DeviceDownlink::Reply);
    cloud.publish(&probe, "probe").await;
    let neighbour_sentinel = topics(S1_POS02).device_down(DeviceDownlink::Reply);
    let intruder_sentinel = s2.device_down(DeviceDownlink::Reply);
    cloud.publish(&neighbour_sentinel, "sentinel").await;
    cloud.publish(&intruder_sentinel, "sentinel").await;

    assert_only_sentinel(
        S2_POS01,
        &intruder.receive_until(&intruder_sentinel).await,
        &intruder_sentinel,
    );
    assert_only_sentinel(
        S1_POS02,
        &neighbour.receive_until(&neighbour_sentinel).await,
        &neighbour_sentinel,
    );
    let delivered = owner.next_publish().await;
    assert_eq!(
        (delivered.topic.as_str(), delivered.payload.as_ref()),
        (probe.as_str(), &b"probe"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn device_cannot_read_another_devices_uplink_or_presence() {
    let Some(setup) = Setup::start("device_cannot_read_another_devices_uplink_or_presence") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    let mut intruder = setup.connect(S2_POS01).await;
    let uplink = s1.device_up(DeviceUplink::Stream(UplinkStream::PosTransactions));
    subscribe_unauthorised(&mut intruder, "sa/v1/device/+/up/+").await;
    subscribe_unauthorised(&mut intruder, &uplink).await;
    subscribe_unauthorised(&mut intruder, &s1.presence()).await;
    intruder.subscribe_ok(&s2.device_down_filter()).await;

    let mut owner = setup.connect(S1_POS01).await;
    owner.publish(&uplink, "probe").await;
    owner.publish_retained(&s1.presence(), "probe").await;
    // The owner's publishes were routed before their PUBACKs, so before this sentinel.
    let sentinel = s2.device_down(DeviceDownlink::Command);
    cloud.publish(&sentinel, "sentinel").await;
    assert_only_sentinel(S2_POS01, &intruder.receive_until(&sentinel).await, &sentinel);
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_subscriptions_do_not_widen_what_a_device_reads() {
    let Some(setup) = Setup::start("wildcard_subscriptions_do_not_widen_what_a_device_reads") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    let mut intruder = setup.connect(S2_POS01).await;
    // Mosquitto 2.0 grants these filters, wider than the device's grant, and applies the ACL to
    // each message instead: whatever SUBACK says, no message may leak through them.
    for filter in ["#", "sa/v1/#", "sa/v1/store/acme/+/+", "sa/v1/device/#"] {
        subscribe_unauthorised(&mut intruder, filter).await;
    }

    let uplink = s1.device_up(DeviceUplink::Stream(UplinkStream::PosTransactions));
    for probe in [
        s1.store_stream(DownlinkStream::Customers),
        s1.device_down(DeviceDownlink::Ack),
        uplink,
        s1.presence(),
    ] {
        cloud.publish(&probe, "probe").await;
    }
    // Its own store stream is readable through the wildcards, so it is the sentinel.
    let sentinel = s2.store_stream(DownlinkStream::Products);
    cloud.publish(&sentinel, "sentinel").await;
    let received = intruder.receive_until(&sentinel).await;
    // Several of the filters match the sentinel; every copy must be the sentinel.
    assert!(
        received.iter().all(|m| m.topic == sentinel),
        "{S2_POS01} received {:?}",
        topics_of(&received)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn device_cannot_publish_as_another_device() {
    let Some(setup) = Setup::start("device_cannot_publish_as_another_device") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    cloud.subscribe_ok("sa/v1/#").await;
    let mut intruder = setup.connect(S2_POS01).await;

    let forged = s1.device_up(DeviceUplink::Stream(UplinkStream::PosTransactions));
    intruder.publish(&forged, "forged").await;
    intruder
        .publish(&s1.device_up(DeviceUplink::Requests), "forged")
        .await;
    intruder.publish_retained(&s1.presence(), "forged").await;
    let own = s2.device_up(DeviceUplink::Stream(UplinkStream::PosTransactions));
    intruder.publish(&own, "sentinel").await;

    assert_only_sentinel(CLOUD_USER, &cloud.receive_until(&own).await, &own);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_cannot_publish_what_only_the_cloud_may() {
    let Some(setup) = Setup::start("device_cannot_publish_what_only_the_cloud_may") else {
        return;
    };
    let s1 = topics(S1_POS01);
    let mut cloud = setup.connect(CLOUD_USER).await;
    cloud.subscribe_ok("sa/v1/#").await;
    let mut neighbour = setup.connect(S1_POS02).await;
    neighbour.subscribe_ok(&s1.store_filter()).await;
    let mut device = setup.connect(S1_POS01).await;

    // Its own store's stream (it may read it, not write it: a device feeding its neighbours
    // prices), and its own downlink (forging the cloud's acks to itself).
    let forged_store = s1.store_stream(DownlinkStream::Products);
    device.publish(&forged_store, "forged").await;
    device
        .publish(&s1.device_down(DeviceDownlink::Ack), "forged")
        .await;
    let own = s1.device_up(DeviceUplink::Health);
    device.publish(&own, "sentinel").await;
    assert_only_sentinel(CLOUD_USER, &cloud.receive_until(&own).await, &own);

    // The neighbour did not get the forged store message either: the cloud's next one on
    // that stream is the first it sees.
    cloud.publish(&forged_store, "genuine").await;
    let first = neighbour.next_publish().await;
    assert_eq!(
        first.payload.as_ref(),
        b"genuine",
        "{S1_POS02} got a device's store message"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identity_is_the_certificate_not_the_client_id_or_user_name() {
    let Some(setup) = Setup::start("the_identity_is_the_certificate_not_the_client_id_or_user_name") else {
        return;
    };
    let (s1, s2) = (topics(S1_POS01), topics(S2_POS01));
    let mut cloud = setup.connect(CLOUD_USER).await;
    // The certificate of s2, claiming s1's client id and the cloud's user name.
    let mut options = setup.broker.client_options(&setup.pki, S2_POS01);
    options.set_client_id(S1_POS01.to_owned());
    options.set_credentials(CLOUD_USER, "");
    let mut impostor = MqttClient::connect_ok(options).await;
    subscribe_unauthorised(&mut impostor, &s1.device_down_filter()).await;
    subscribe_unauthorised(&mut impostor, &s1.store_filter()).await;
    impostor.subscribe_ok(&s2.store_filter()).await;

    cloud
        .publish(&s1.device_down(DeviceDownlink::Command), "probe")
        .await;
    cloud
        .publish(&s1.store_stream(DownlinkStream::Config), "probe")
        .await;
    let sentinel = s2.store_stream(DownlinkStream::Config);
    cloud.publish(&sentinel, "sentinel").await;
    assert_only_sentinel(
        "the impostor",
        &impostor.receive_until(&sentinel).await,
        &sentinel,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_is_retained_and_the_last_will_reaches_the_cloud() {
    let Some(setup) = Setup::start("presence_is_retained_and_the_last_will_reaches_the_cloud") else {
        return;
    };
    let s1 = topics(S1_POS01);
    let mut options = setup.broker.client_options(&setup.pki, S1_POS01);
    options.set_last_will(LastWill::new(s1.presence(), "offline", QoS::AtLeastOnce, true));
    // Connecting with a Last Will on the presence topic is allowed: the ACL grants it.
    let mut device = MqttClient::connect_ok(options).await;
    device.publish_retained(&s1.presence(), "online").await;

    // A cloud service that starts later still learns the state from the retained message.
    let mut cloud = setup.connect(CLOUD_USER).await;
    cloud.subscribe_ok("sa/v1/device/+/presence").await;
    let online = cloud.next_publish().await;
    assert_eq!(
        (online.topic.as_str(), online.payload.as_ref()),
        (s1.presence().as_str(), &b"online"[..])
    );
    assert!(
        online.retain,
        "presence is delivered as retained to a late subscriber"
    );

    // The device vanishes without DISCONNECT: the broker publishes its will.
    drop(device);
    let offline = cloud.next_publish().await;
    assert_eq!(
        (offline.topic.as_str(), offline.payload.as_ref()),
        (s1.presence().as_str(), &b"offline"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_of_a_foreign_ca_cannot_connect() {
    let Some(setup) = Setup::start("a_certificate_of_a_foreign_ca_cannot_connect") else {
        return;
    };
    let files = setup.pki.foreign_client(S1_POS01);
    let options = tls_options(S1_POS01, setup.broker.port(), setup.pki.ca_file(), &files);
    let error = MqttClient::connect(options)
        .await
        .expect_err("a certificate of a foreign CA was accepted");
    assert_handshake_refused(
        &setup,
        &error,
        AlertDescription::UnknownCA,
        "certificate verify failed",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_a_certificate_cannot_connect() {
    let Some(setup) = Setup::start("a_client_without_a_certificate_cannot_connect") else {
        return;
    };
    let options = tls_options_without_certificate(S1_POS01, setup.broker.port(), setup.pki.ca_file());
    let error = MqttClient::connect(options)
        .await
        .expect_err("a client without a certificate was accepted");
    assert_handshake_refused(
        &setup,
        &error,
        AlertDescription::CertificateRequired,
        "peer did not return a certificate",
    );
}

/// The broker refused the TLS handshake, not the MQTT session: the client sees the broker's TLS
/// alert, and the broker logs `reason`.
///
/// Under TLS 1.3 the client's side of the handshake is complete before the broker has checked
/// the client's certificate, so the alert arrives while rumqttc reads the CONNACK. The broker
/// closes the socket right after the alert, which on a busy machine can reach the client as a
/// reset before the alert is read; that is accepted too (it is still not a CONNACK), and the
/// broker's log then tells why.
fn assert_handshake_refused(setup: &Setup, error: &ConnectionError, alert: AlertDescription, reason: &str) {
    match tls_alert_of(error) {
        Some(received) => assert_eq!(received, alert, "the broker's alert, in {error:?}"),
        None => {
            let io = io_error_of(error)
                .unwrap_or_else(|| panic!("expected the TLS handshake to fail, got {error:?}"));
            assert!(
                matches!(
                    io.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
                ),
                "expected a TLS alert or the connection closing, got {error:?}"
            );
        }
    }
    assert!(
        setup.broker.wait_for_log(reason, MQTT_TIMEOUT),
        "the broker did not log {reason:?}:\n{}",
        setup.broker.log_tail(20)
    );
}
