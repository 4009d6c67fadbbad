//! The task that owns the MQTT event loop.
//!
//! Architecture invariant: this is the only code that polls rumqttc's
//! `EventLoop`; everything else holds the bounded `AsyncClient` and uses its
//! non-blocking `try_*` calls, so nothing ever waits on a connection that is down.
//! What arrives is forwarded to the sync engine over a bounded channel.

use super::protocol::{Presence, Topics, VERSION};
use crate::config::MqttConfig;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the connection tells the engine.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Connected (again). `session_present`: the broker kept the subscriptions
    /// and queued messages of the persistent session.
    Connected {
        /// From the CONNACK.
        session_present: bool,
    },
    /// The connection failed or broke; the next attempt is after a backoff.
    Disconnected {
        /// Why, for status and the log.
        error: String,
    },
    /// A message on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
}

/// The largest incoming packet accepted. Larger than the protocol's limit on
/// purpose: an oversized message then reaches the engine, which keeps it as a
/// dead letter, instead of breaking the connection on every redelivery.
pub const MAX_INCOMING_PACKET: usize = 4 * super::protocol::MAX_MESSAGE_BYTES;

/// The MQTT options of this device: persistent session, Last Will, limits, TLS.
pub fn mqtt_options(cfg: &MqttConfig, client_id: &str, topics: &Topics) -> anyhow::Result<MqttOptions> {
    let mut options = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    options
        .set_keep_alive(Duration::from_secs(cfg.keep_alive_s))
        // A persistent session: the broker keeps our subscriptions and queues
        // QoS 1 messages while we are away.
        .set_clean_session(false)
        .set_max_packet_size(MAX_INCOMING_PACKET, super::protocol::MAX_MESSAGE_BYTES)
        .set_inflight(100)
        .set_last_will(LastWill::new(
            topics.presence(),
            presence_payload(client_id, PresenceState::ConnectionLost),
            QoS::AtLeastOnce,
            true,
        ));
    if let (Some(user), password) = (&cfg.username, &cfg.password) {
        options.set_credentials(
            user.clone(),
            password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        );
    }
    match (&cfg.ca_file, &cfg.cert_file, &cfg.key_file) {
        (Some(ca), Some(cert), Some(key)) => {
            options.set_transport(super::tls::mqtt_transport(ca, cert, key)?);
        }
        (Some(ca), None, None) => {
            let config = super::tls::client_config(ca, None)?;
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(config),
            ));
        }
        // Config validation allows this only with allow_plaintext = true.
        _ => {}
    }
    Ok(options)
}

/// What the retained presence message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceState {
    /// Connected (after every CONNACK).
    Online,
    /// A clean stop, published by the agent before DISCONNECT.
    Stopped,
    /// The Last Will, published by the broker when the device vanished.
    ConnectionLost,
}

/// The retained presence message.
pub fn presence_payload(device_id: &str, presence: PresenceState) -> Vec<u8> {
    let (state, reason) = match presence {
        PresenceState::Online => ("online", None),
        PresenceState::Stopped => ("offline", Some("stopped")),
        PresenceState::ConnectionLost => ("offline", Some("connection_lost")),
    };
    serde_json::to_vec(&Presence {
        v: VERSION,
        device_id: device_id.to_owned(),
        state: state.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        reason: reason.map(str::to_owned),
    })
    .unwrap_or_default()
}

/// How long to wait before reconnect attempt `attempt` (1-based): a random time
/// between zero and `base * 2^(attempt-1)`, capped ("full jitter"), so a fleet
/// that lost its broker together does not come back in lockstep.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=ms))
}

/// Polls the event loop until `stop`, reconnecting with backoff, and forwards
/// what happens to `events`.
pub async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    cfg: MqttConfig,
    client_id: String,
    topics: Topics,
    events: mpsc::Sender<ConnectionEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let explain = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Explainer::new(&cfg))
            .await
            .unwrap_or_default()
    };
    let boot_delay = Duration::from_millis(rand::random_range(0..=cfg.boot_delay_max_ms));
    if !boot_delay.is_zero() {
        tracing::info!(
            delay_ms = boot_delay.as_millis() as u64,
            "Waiting before the first connection."
        );
        tokio::select! {
            _ = tokio::time::sleep(boot_delay) => {}
            _ = stop.changed() => return,
        }
    }
    let base = Duration::from_millis(cfg.backoff_base_ms);
    let cap = Duration::from_millis(cfg.backoff_cap_ms);
    let mut attempt = 0u32;
    let mut connected = false;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stop.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                attempt = 0;
                connected = true;
                tracing::info!(session_present = ack.session_present, broker = %format!("{}:{}", cfg.host, cfg.port), "Connected to the broker.");
                if !ack.session_present {
                    // The broker did not keep our session (first connection, or it
                    // lost it): subscribe again.
                    for filter in [topics.store_filter(), topics.device_down_filter()] {
                        if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                            tracing::error!(%filter, error = %e, "Cannot queue a subscription.");
                        }
                    }
                }
                let _ = client.try_publish(
                    topics.presence(),
                    QoS::AtLeastOnce,
                    true,
                    presence_payload(&client_id, PresenceState::Online),
                );
                if events
                    .send(ConnectionEvent::Connected {
                        session_present: ack.session_present,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                use rumqttc::SubscribeReasonCode;
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        "The broker refused a subscription: check the broker's ACL for this device's \
                         store and device topics."
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = ConnectionEvent::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                };
                if events.send(message).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let delay = backoff(base, cap, attempt);
                let now_s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let error = explain.describe(&e, now_s);
                if connected || attempt == 1 {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Broker connection lost.");
                } else {
                    tracing::debug!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "Broker still unreachable.");
                }
                connected = false;
                if events
                    .send(ConnectionEvent::Disconnected { error })
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    if connected {
        say_goodbye(&mut eventloop, &client, &topics, &client_id).await;
    }
}

/// How long a clean goodbye may take: inside the runtime's stop deadline, so
/// the process still exits within the five seconds systemd is promised.
const GOODBYE: Duration = Duration::from_secs(2);

/// A clean goodbye: retained "offline" (the broker does not send the Last Will
/// after a DISCONNECT), then DISCONNECT. Both are queued with waiting sends while
/// the event loop is driven, because the request queue may be full of uplink
/// publishes at this moment: a `try_` send would fail and the broker would then
/// see the socket drop and publish the Last Will for a clean stop.
async fn say_goodbye(eventloop: &mut EventLoop, client: &AsyncClient, topics: &Topics, client_id: &str) {
    let sender = client.clone();
    let topic = topics.presence();
    let payload = presence_payload(client_id, PresenceState::Stopped);
    let enqueue = async move {
        if sender
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .is_ok()
        {
            let _ = sender.disconnect().await;
        }
    };
    let sent = std::sync::atomic::AtomicBool::new(false);
    let drive = async {
        loop {
            match eventloop.poll().await {
                // The DISCONNECT is flushed; keep reading until the broker
                // closes its side. Closing ours with unread bytes (a PUBACK,
                // a late downlink message) would send a TCP reset, and the
                // broker may drop the DISCONNECT still in its buffer and
                // fire the Last Will after all.
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    sent.store(true, std::sync::atomic::Ordering::Relaxed)
                }
                Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let closed = tokio::time::timeout(GOODBYE, async { tokio::join!(enqueue, drive) })
        .await
        .is_ok();
    match (sent.load(std::sync::atomic::Ordering::Relaxed), closed) {
        (true, true) => tracing::info!("Disconnected from the broker."),
        (true, false) => tracing::info!(
            timeout_ms = GOODBYE.as_millis() as u64,
            "Disconnected from the broker; it did not close its side in time."
        ),
        (false, true) => tracing::warn!("The broker connection ended before the goodbye was sent."),
        (false, false) => tracing::warn!(
            timeout_ms = GOODBYE.as_millis() as u64,
            "The goodbye to the broker did not go out in time; the broker will publish the Last Will."
        ),
    }
}

/// What the connection knows to explain a failure in store IT's terms: the
/// configured host and files, and the validity of this device's certificate
/// (read once, when the connection is set up).
#[derive(Debug, Clone, Default)]
pub struct Explainer {
    host: String,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    cert_validity: Option<(i64, i64)>,
}

impl Explainer {
    /// Reads the device certificate's dates (a file read: off the runtime).
    pub fn new(cfg: &MqttConfig) -> Explainer {
        Explainer {
            host: cfg.host.clone(),
            ca_file: cfg.ca_file.clone(),
            cert_file: cfg.cert_file.clone(),
            cert_validity: cfg
                .cert_file
                .as_deref()
                .and_then(super::tls::certificate_validity),
        }
    }

    /// Why the connection failed, with the fix when it is a TLS refusal. A
    /// refusal by the broker is checked against this device's certificate dates,
    /// since the alert alone does not say which check failed.
    pub fn describe(&self, e: &ConnectionError, now_s: i64) -> String {
        use super::tls::{Refusal, utc_date};
        let shown = |p: &Option<PathBuf>| p.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        match Refusal::find(e) {
            Some(r @ Refusal::DeviceRefused(_)) => {
                let cert = shown(&self.cert_file);
                match self.cert_validity {
                    Some((_, not_after)) if now_s > not_after => format!(
                        "{r}: the device certificate {cert} expired on {}; renew it",
                        utc_date(not_after)
                    ),
                    Some((not_before, _)) if now_s < not_before => format!(
                        "{r}: the device certificate {cert} is not valid before {}; check this \
                         device's clock, otherwise reissue the certificate",
                        utc_date(not_before)
                    ),
                    _ => format!("{r}: {}", r.fix()),
                }
            }
            Some(r @ Refusal::UntrustedBroker(_)) => {
                format!(
                    "{r}: mqtt.ca_file {} must hold the CA that signed it",
                    shown(&self.ca_file)
                )
            }
            Some(r @ Refusal::WrongHostName(_)) => {
                format!("{r}: mqtt.host {:?} must be a name it is issued for", self.host)
            }
            Some(r) => format!("{r}: {}", r.fix()),
            None => match e {
                ConnectionError::ConnectionRefused(code) => {
                    format!("the broker refused the connection: {code:?}")
                }
                other => other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_stop_and_the_last_will_say_different_reasons() {
        let read =
            |p: PresenceState| -> Presence { serde_json::from_slice(&presence_payload("d1", p)).unwrap() };
        let online = read(PresenceState::Online);
        assert_eq!((online.state.as_str(), online.reason), ("online", None));
        let stopped = read(PresenceState::Stopped);
        assert_eq!(
            (stopped.state.as_str(), stopped.reason.as_deref()),
            ("offline", Some("stopped"))
        );
        let lost = read(PresenceState::ConnectionLost);
        assert_eq!(
            (lost.state.as_str(), lost.reason.as_deref()),
            ("offline", Some("connection_lost"))
        );
        assert_eq!(lost.device_id, "d1");
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_below_it() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(120);
        for attempt in 1..40 {
            let ceiling = (base * 2u32.pow((attempt - 1).min(20))).min(cap);
            for _ in 0..50 {
                assert!(backoff(base, cap, attempt) <= ceiling);
            }
        }
        // Full jitter: the waits of one attempt spread over the range.
        let waits: Vec<Duration> = (0..200).map(|_| backoff(base, cap, 10)).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_secs(30)));
        assert!(waits.iter().any(|w| *w > Duration::from_secs(90)));
    }
}
