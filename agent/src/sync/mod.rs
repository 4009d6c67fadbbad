//! Cloud sync over MQTT (docs/protocol.md).
//!
//! * [`protocol`]: the wire contract as types.
//! * [`connection`]: the one task that owns rumqttc's event loop.
//! * [`engine`]: the uplink pump (outbox → cloud, rows leave only on the cloud's
//!   ack) and the downlink (cloud → store, gap recovery, snapshots).
//! * [`fetch`]: snapshot downloads over HTTPS.
//! * [`broker`]: the embedded broker of `store-agent demo`.

pub mod broker;
pub mod connection;
pub mod engine;
pub mod fetch;
pub mod protocol;
pub mod tls;

use crate::config::Config;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// How many requests (publishes, subscriptions) may wait for the event loop. The
/// engine never waits when it is full: it tries again next turn.
const CLIENT_QUEUE: usize = 256;

/// Sets the sync up (reading the TLS files, so a bad certificate stops the agent at
/// start, where systemd and the operator see it) and returns the future that runs
/// it until `stop`: the connection task and the engine. `None` without an `[mqtt]`
/// section: the agent runs store-only and events wait in the outbox.
pub fn start(
    config: &Config,
    store: Arc<Store>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<impl Future<Output = ()> + Send + 'static>> {
    // Nobody asks for nearby stock: the sender goes at once, the engine never waits.
    let (_, lookups) = mpsc::channel(1);
    start_with_lookups(config, store, lookups, stop)
}

/// [`start`], with the screens' nearby-stock look-ups arriving on `lookups`.
pub fn start_with_lookups(
    config: &Config,
    store: Arc<Store>,
    lookups: mpsc::Receiver<engine::NearbyLookup>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<impl Future<Output = ()> + Send + 'static>> {
    let Some(mqtt) = config.mqtt.clone() else {
        tracing::info!("No [mqtt] section: running store-only, events wait in the outbox.");
        return Ok(None);
    };
    tls::install_crypto_provider();
    let identity = protocol::Identity {
        tenant_id: config.store.tenant_id.clone(),
        store_id: config.store.store_id.clone(),
        device_id: config
            .mqtt_client_id()
            .unwrap_or(&config.store.device_id)
            .to_owned(),
    };
    let topics = protocol::Topics::new(&identity);
    let options = connection::mqtt_options(&mqtt, &identity.device_id, &topics)
        .context("cannot set up the MQTT connection ([mqtt])")?;
    let (client, eventloop) = rumqttc::AsyncClient::new(options, CLIENT_QUEUE);
    let engine = engine::Engine::new(
        store,
        client.clone(),
        topics.clone(),
        engine::EngineOptions {
            mqtt: mqtt.clone(),
            device_id: identity.device_id.clone(),
            tenant_id: identity.tenant_id.clone(),
            store_id: identity.store_id.clone(),
        },
    )?;
    let (events_tx, events_rx) = mpsc::channel(256);
    let device_id = identity.device_id.clone();
    Ok(Some(async move {
        let connection = tokio::spawn(connection::run(
            eventloop,
            client,
            mqtt,
            device_id,
            topics,
            events_tx,
            stop.clone(),
        ));
        engine.run(events_rx, lookups, stop).await;
        let _ = connection.await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Captured;
    use std::time::Duration;

    /// An online agent with nothing to send does not keep reading its outbox (it
    /// used to: 60 queries a second), and an event recorded then still goes out at
    /// once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_agent_leaves_its_outbox_alone_and_still_sends_at_once() {
        let broker = broker::EmbeddedBroker::start(([127, 0, 0, 1], 0).into()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[store]\ntenant_id = \"t\"\nstore_id = \"store-001\"\ndevice_id = \"d1\"\n\n\
             [database]\npath = {:?}\n\n[loyalty]\nhash_key = \"{}\"\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nallow_plaintext = true\nboot_delay_max_ms = 0\n",
            dir.path().join("store.db"),
            crate::sample::DEMO_HASH_KEY_HEX,
            broker.addr().port(),
        );
        let config = Config::parse(&text, &|_| None).unwrap();
        let store = Arc::new(Store::open(crate::runtime::store_options(&config).unwrap()).unwrap());
        // A listener on the device's uplink, to see what goes out.
        let mut options = rumqttc::MqttOptions::new("watcher", "127.0.0.1", broker.addr().port());
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (watcher, mut events) = rumqttc::AsyncClient::new(options, 16);
        watcher
            .subscribe("sa/v1/device/d1/up/pos_transactions", rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, mut uplink) = mpsc::channel::<Vec<u8>>(16);
        tokio::spawn(async move {
            while let Ok(e) = events.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = e {
                    let _ = tx.send(p.payload.to_vec()).await;
                }
            }
        });
        let (stop, stop_rx) = watch::channel(false);
        let sync = tokio::spawn(start(&config, store.clone(), stop_rx).unwrap().unwrap());
        let online = async {
            loop {
                let state = store.reads().read(crate::store::status::live).await.unwrap();
                if state.sync.is_some_and(|s| s.state == "online") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), online)
            .await
            .expect("online");
        // Settle (the first pump, the bootstrap's reads), then watch for a while.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = store.reads().queries();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let idle_reads = store.reads().queries() - before;
        assert!(idle_reads <= 3, "{idle_reads} queries in 1.5 s of idling");
        store
            .record_pos_transaction(Captured::now(crate::store::records::example_sale(1)))
            .await
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(2), uplink.recv())
            .await
            .expect("the new event is published within the pump's idle poll")
            .unwrap();
        let batch: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(batch["events"][0]["payload"]["sequence_number"], 1, "{batch}");
        let _ = stop.send(true);
        let _ = sync.await;
    }
}
