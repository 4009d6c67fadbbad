//! An MQTT broker inside the agent process, so that `store-agent demo` (and the
//! tests) need nothing installed: [rumqttd] 0.20 with one plaintext MQTT 3.1.1
//! listener on a loopback address.
//!
//! It is a stand-in for the retailer's broker, not a replacement: no TLS, no
//! authentication, no ACL, sessions only in memory. What it does honour, read
//! from rumqttd's source:
//!
//! * **Message size**: a packet whose remaining length (topic, packet id and
//!   payload) exceeds [`MAX_MESSAGE_BYTES`] gets its sender disconnected, the
//!   way the production broker refuses an oversized message. Clients must raise
//!   rumqttc's own limit (10 KiB by default) with `set_max_packet_size`.
//! * **Persistent sessions**: a client that connects with `clean_session =
//!   false` keeps its subscriptions across a disconnect, gets `session_present`
//!   in its CONNACK when it comes back, and receives what was published to its
//!   filters while it was away, from where it left off (unacknowledged QoS 1
//!   messages included). rumqttd keeps one in-memory log per subscribed filter,
//!   capped at [`SEGMENT_BYTES`] × [`SEGMENTS`]; a client away for longer than
//!   that cap of traffic silently misses the oldest part (the protocol's
//!   sequence numbers catch that as a gap). Sessions never expire and do not
//!   survive the broker.
//! * **Retained messages and Last Wills** are supported; a will is dropped on a
//!   clean DISCONNECT and published on a lost connection.
//! * Publishing to a topic nobody subscribes to is accepted (rumqttd's
//!   `dynamic_filters`; without it rumqttd disconnects such a publisher).
//! * Clients must use a keep-alive other than zero: rumqttd refuses zero.
//!
//! rumqttd logs through `tracing`, and logs an ordinary client disconnect at
//! error level; filter its target (`rumqttd=off`) where that is noise.

use crate::sync::protocol::MAX_MESSAGE_BYTES;
use anyhow::Context;
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Connections the broker accepts at once; a demo has a handful.
const MAX_CONNECTIONS: usize = 64;

/// Size of one segment of rumqttd's in-memory log per filter.
pub const SEGMENT_BYTES: usize = 1024 * 1024;

/// Segments kept per filter: the log of one filter holds at most about
/// `SEGMENT_BYTES * SEGMENTS` bytes, which bounds both the memory per topic
/// and how much a persistent session can miss while away.
pub const SEGMENTS: usize = 8;

/// How long `start` waits for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries at a free port when the caller asked for port 0 (see [`EmbeddedBroker::start`]).
const PORT_ATTEMPTS: usize = 3;

/// A running embedded MQTT broker. See the [module documentation](self) for
/// what it supports.
///
/// # Dropping
///
/// rumqttd has no way to stop a broker, so this runs its pieces itself: the
/// listener and every client connection live on a tokio runtime of this
/// broker's own thread (`mqtt-broker`). Dropping an `EmbeddedBroker` stops that
/// runtime and joins the thread (a few milliseconds): the port is closed and
/// every client sees its connection drop, as with a broker that went away. A
/// new broker may then start on the same address, with no sessions. rumqttd's
/// router thread (`router-0`) cannot be stopped: it stays parked for the rest
/// of the process with the memory of its logs (bounded, see above), one per
/// broker ever started. That is fine for a demo and for tests, not for
/// starting brokers in a loop.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a broker listening for plaintext MQTT 3.1.1 on `bind`, which must
    /// be a loopback address (the broker has no authentication). Returns once the
    /// listener accepts connections.
    ///
    /// Port 0 picks a free port, reported by [`EmbeddedBroker::addr`]. rumqttd
    /// binds its listener itself and cannot tell which port it got, so this
    /// binds `bind` first to let the system choose a free port, closes that
    /// socket and hands the port to rumqttd. Another process could take the port
    /// in between; rumqttd's bind then fails and this tries again with a new
    /// port, up to 3 times. (The readiness check is a TCP connect, so such a
    /// process could in theory also fool it for a moment; on loopback with
    /// ports from the ephemeral range that is not a practical concern.)
    ///
    /// Blocks the calling thread for the few milliseconds the listener takes to
    /// come up; from async code that is tolerable once at start, or call it in
    /// `spawn_blocking`.
    pub fn start(bind: SocketAddr) -> anyhow::Result<EmbeddedBroker> {
        anyhow::ensure!(
            bind.ip().is_loopback(),
            "the embedded MQTT broker has no authentication and listens only on a loopback address, \
             not {bind}"
        );
        // Spawned once the address is known to be usable: its thread never ends.
        let mut router_tx = None;
        let attempts = if bind.port() == 0 { PORT_ATTEMPTS } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = TcpListener::bind(bind)
                .and_then(|listener| listener.local_addr())
                .with_context(|| format!("cannot listen for MQTT on {bind}"))?;
            let router_tx = router_tx.get_or_insert_with(|| Router::new(0, router_config()).spawn());
            let server = Server::new(server_settings(addr), router_tx.clone(), V4);
            match EmbeddedBroker::launch(addr, server) {
                Ok(broker) => return Ok(broker),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < attempts => {
                    tracing::debug!(%addr, "port taken before the embedded broker bound it, trying another");
                }
                Err(e) => return Err(e).with_context(|| format!("cannot start the MQTT broker on {addr}")),
            }
        }
    }

    /// The address clients connect to (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `server` (set up for `addr`) on a new thread and waits until it accepts.
    fn launch(addr: SocketAddr, mut server: Server<V4>) -> io::Result<EmbeddedBroker> {
        let (failed_tx, failed_rx) = mpsc::sync_channel::<io::Error>(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = failed_tx.send(e);
                        return;
                    }
                };
                runtime.block_on(async {
                    tokio::select! {
                        // Returns only when it cannot bind: it loops on accept.
                        result = server.start(LinkType::Remote) => {
                            if let Err(e) = result {
                                let _ = failed_tx.send(io_error(&e));
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime drops the listener and cancels every
                // connection task, which closes the clients' sockets.
                drop(runtime);
            })?;
        // From here on, an early return drops `broker`, which stops the thread.
        let broker = EmbeddedBroker {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match failed_rx.try_recv() {
                Ok(e) => return Err(e),
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the MQTT broker thread ended at start"));
                }
                Err(TryRecvError::Empty) => {}
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the MQTT broker did not accept connections on {addr} within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Err only means the thread has already ended.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Err only means the thread panicked; nothing is left to clean up.
            let _ = thread.join();
        }
    }
}

fn router_config() -> RouterConfig {
    RouterConfig {
        max_connections: MAX_CONNECTIONS,
        // Messages one read from a log hands a QoS 0 subscriber (QoS 1 and 2 go by
        // rumqttd's fixed window of 100 unacknowledged messages per connection).
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENTS,
        ..RouterConfig::default()
    }
}

fn server_settings(addr: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: "mqtt-v4".to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            // Time a client gets to send CONNECT after the TCP connect.
            connection_timeout_ms: 10_000,
            // rumqttd compares it with the packet's remaining length.
            max_payload_size: MAX_MESSAGE_BYTES,
            // Despite its name: packets read from one client in a batch.
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

/// rumqttd's server error, as an `io::Error` of the same kind when it is one.
fn io_error(error: &(dyn std::error::Error + 'static)) -> io::Error {
    let kind = std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<io::Error>())
        .map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, ConnAck, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
    use tokio::sync::mpsc::{Receiver, channel};

    const WAIT: Duration = Duration::from_secs(10);

    fn any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn options(client_id: &str, broker: SocketAddr, clean_session: bool) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        options
            .set_clean_session(clean_session)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES);
        options
    }

    /// Polls `eventloop` on a task and forwards what it receives; the task ends
    /// at the first error, e.g. when the connection closes.
    fn drive(mut eventloop: EventLoop) -> (Receiver<Packet>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = channel(64);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(packet).await.is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(_) => break,
                }
            }
        });
        (rx, task)
    }

    /// The first received packet `pick` accepts, skipping the others.
    async fn next<T>(rx: &mut Receiver<Packet>, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
        let wait = async {
            loop {
                let packet = rx.recv().await.expect("the client's connection ended");
                if let Some(found) = pick(packet) {
                    return found;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for a packet")
    }

    fn connack(packet: Packet) -> Option<ConnAck> {
        match packet {
            Packet::ConnAck(ack) => Some(ack),
            _ => None,
        }
    }

    fn suback(packet: Packet) -> Option<()> {
        matches!(packet, Packet::SubAck(_)).then_some(())
    }

    fn puback(packet: Packet) -> Option<()> {
        matches!(packet, Packet::PubAck(_)).then_some(())
    }

    fn publish(packet: Packet) -> Option<Publish> {
        match packet {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        }
    }

    /// Connects `device` (a clean or persistent session), subscribes to `topic`,
    /// and disconnects cleanly; returns the first CONNACK's `session_present`.
    async fn subscribe_and_leave(addr: SocketAddr, device: &str, clean: bool, topic: &str) -> bool {
        let (client, eventloop) = AsyncClient::new(options(device, addr, clean), 16);
        let (mut rx, task) = drive(eventloop);
        let present = next(&mut rx, connack).await.session_present;
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        next(&mut rx, suback).await;
        client.disconnect().await.unwrap();
        // The broker closes the connection once it has handled the DISCONNECT.
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the connection did not close")
            .unwrap();
        present
    }

    /// Publishes `payload` on `topic` at QoS 1 as the cloud and waits for the PUBACK;
    /// returns the cloud's client, still connected, to publish more.
    async fn publish_as_cloud(
        addr: SocketAddr,
        topic: &str,
        payload: &[u8],
    ) -> (AsyncClient, Receiver<Packet>, tokio::task::JoinHandle<()>) {
        let (cloud, eventloop) = AsyncClient::new(options("cloud", addr, true), 16);
        let (mut rx, task) = drive(eventloop);
        cloud
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        next(&mut rx, puback).await;
        (cloud, rx, task)
    }

    #[tokio::test]
    async fn relays_a_100_kib_message_at_qos_1() {
        let broker = EmbeddedBroker::start(any_port()).unwrap();
        assert_ne!(broker.addr().port(), 0);
        assert!(broker.addr().ip().is_loopback());
        let topic = "sa/v1/store/acme/s0001/products";

        let (subscriber, eventloop) = AsyncClient::new(options("acme.s0001.pos01", broker.addr(), true), 16);
        let (mut subscriber_rx, _subscriber_task) = drive(eventloop);
        subscriber.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        next(&mut subscriber_rx, suback).await;

        let (publisher, eventloop) = AsyncClient::new(options("cloud", broker.addr(), true), 16);
        let (mut publisher_rx, _publisher_task) = drive(eventloop);
        let payload: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        next(&mut publisher_rx, puback).await;

        let received = next(&mut subscriber_rx, publish).await;
        assert_eq!(received.topic, topic);
        assert_eq!(received.qos, QoS::AtLeastOnce);
        assert_eq!(received.payload.len(), payload.len());
        assert!(received.payload == payload, "the payload arrived altered");
    }

    #[tokio::test]
    async fn persistent_session_keeps_its_subscription_and_what_came_while_away() {
        let broker = EmbeddedBroker::start(any_port()).unwrap();
        let device = "acme.s0001.pos01";
        let topic = "sa/v1/device/acme.s0001.pos01/down/ack";

        // First connection: a new session, which subscribes and leaves cleanly.
        assert!(!subscribe_and_leave(broker.addr(), device, false, topic).await);
        // Published while the device is away.
        let (cloud, _cloud_rx, _cloud_task) = publish_as_cloud(broker.addr(), topic, b"while away").await;

        // Back, without subscribing again.
        let (_client, eventloop) = AsyncClient::new(options(device, broker.addr(), false), 16);
        let (mut rx, _task) = drive(eventloop);
        assert!(next(&mut rx, connack).await.session_present);
        let queued = next(&mut rx, publish).await;
        assert_eq!(queued.topic, topic);
        assert_eq!(queued.payload.as_ref(), b"while away");

        // The subscription is still there for what comes next.
        cloud
            .publish(topic, QoS::AtLeastOnce, false, b"after return".to_vec())
            .await
            .unwrap();
        let live = next(&mut rx, publish).await;
        assert_eq!(live.payload.as_ref(), b"after return");
    }

    #[tokio::test]
    async fn a_clean_session_starts_empty() {
        let broker = EmbeddedBroker::start(any_port()).unwrap();
        let topic = "sa/v1/device/acme.s0001.kiosk1/down/command";

        subscribe_and_leave(broker.addr(), "acme.s0001.kiosk1", true, topic).await;
        let _cloud = publish_as_cloud(broker.addr(), topic, b"while away").await;

        let (_client, eventloop) = AsyncClient::new(options("acme.s0001.kiosk1", broker.addr(), true), 16);
        let (mut rx, _task) = drive(eventloop);
        assert!(!next(&mut rx, connack).await.session_present);
        let nothing = tokio::time::timeout(Duration::from_millis(300), next(&mut rx, publish)).await;
        assert!(
            nothing.is_err(),
            "a clean session received a message from before it existed"
        );
    }

    #[tokio::test]
    async fn drop_closes_the_port_and_the_connections() {
        let broker = EmbeddedBroker::start(any_port()).unwrap();
        let addr = broker.addr();
        let (_client, eventloop) = AsyncClient::new(options("acme.s0001.pos02", addr, true), 16);
        let (mut rx, task) = drive(eventloop);
        next(&mut rx, connack).await;

        drop(broker);
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the client's connection survived the broker")
            .unwrap();
        assert!(
            TcpStream::connect(addr).is_err(),
            "something still listens on {addr}"
        );
    }

    #[test]
    fn refuses_a_taken_port_and_a_non_loopback_address() {
        let taken = TcpListener::bind(any_port()).unwrap();
        let error = EmbeddedBroker::start(taken.local_addr().unwrap()).unwrap_err();
        assert!(format!("{error:#}").contains("cannot listen"), "{error:#}");

        let error = EmbeddedBroker::start(SocketAddr::from(([0, 0, 0, 0], 0))).unwrap_err();
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}
