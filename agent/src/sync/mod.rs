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
