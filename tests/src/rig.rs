//! A real broker, the reference cloud and an agent configuration wired together,
//! for the tests that run the agent against its cloud (sync, screens).

use crate::mqtt::{AclDevice, Mosquitto, Pki, mosquitto_or_skip};
use crate::{DEVICE_ID, RunningAgent, STORE_ID, TENANT_ID, TestDir, path_str, poslog_sale, toml_string};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use store_agent::cloud_sim::{CloudSim, CloudSimConfig};
use store_agent::events::{DownlinkStream, UplinkStream};
use store_agent::sync::broker::EmbeddedBroker;
use store_agent::sync::protocol::Op;

/// How long the agent and the cloud may take to come up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a sync step (snapshot, drain) may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the agent may take to stop on SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A GTIN-8/12/13 as its 14 digits (left-padded with zeros, as GS1 defines it).
pub fn gtin14(gtin: &str) -> String {
    format!("{gtin:0>14}")
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new PKI in `dir` and a TLS Mosquitto in `dir/broker` that knows the test device
/// ([`DEVICE_ID`] of [`STORE_ID`]). Call [`mosquitto_or_skip`] first.
pub fn tls_broker(dir: &TestDir) -> (Pki, Mosquitto) {
    tls_broker_for(dir, &["localhost", "127.0.0.1"])
}

/// [`tls_broker`] with a broker certificate for `names` only.
pub fn tls_broker_for(dir: &TestDir, names: &[&str]) -> (Pki, Mosquitto) {
    let pki = Pki::generate_for(&dir.join(""), names);
    let broker_dir = dir.join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Mosquitto::start(
        &broker_dir,
        &pki,
        &[AclDevice::new(DEVICE_ID, TENANT_ID, STORE_ID)],
    );
    (pki, broker)
}

/// A broker, the cloud and an agent configuration wired together.
///
/// `B` is the broker: [`Broker`] (Mosquitto or the embedded rumqttd, started by the rig)
/// unless said otherwise, or [`ExternalBroker`] for a broker someone else runs
/// ([`Rig::start_external`]).
pub struct Rig<B = Broker> {
    /// The test's directory (configuration, database, spool, broker and cloud files).
    pub dir: TestDir,
    /// The runtime the cloud runs on.
    pub rt: tokio::runtime::Runtime,
    /// The test's certificate authority and certificates.
    pub pki: Pki,
    /// The broker.
    pub broker: B,
    /// The reference cloud.
    pub cloud: CloudSim,
    /// The agent's configuration file.
    pub config: String,
    /// The agent's spool folder.
    pub spool: PathBuf,
}

/// The two broker implementations the agent is tested against.
pub enum Broker {
    /// Mosquitto with TLS client certificates and the ACL.
    Mosquitto(Mosquitto),
    /// The demo's embedded rumqttd, plaintext on loopback.
    Embedded(EmbeddedBroker),
}

impl Broker {
    /// The port the broker listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        match self {
            Broker::Mosquitto(m) => m.port(),
            Broker::Embedded(e) => e.addr().port(),
        }
    }
}

/// A broker the rig did not start and does not stop: plaintext MQTT on 127.0.0.1 at this
/// port, anonymous, without an ACL (RabbitMQ's MQTT plugin in `scripts/rabbitmq-check.sh`).
///
/// A type of its own rather than a third [`Broker`] variant: tests match on [`Broker`]
/// exhaustively (tests/tests/service.rs), and a new variant would break them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalBroker(pub u16);

impl ExternalBroker {
    /// The port the broker listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.0
    }
}

impl Rig {
    /// With Mosquitto (TLS, client certificates, ACL); `None` (after printing why)
    /// when Mosquitto is not installed outside CI.
    pub fn start(test: &str, extra_mqtt: &str) -> Option<Rig> {
        if !mosquitto_or_skip(test) {
            return None;
        }
        let dir = TestDir::new();
        let (pki, broker) = tls_broker(&dir);
        let cloud_files = pki.client("cloud");
        let device = pki.client(DEVICE_ID);
        let tls = format!(
            "ca_file = {}\ncert_file = {}\nkey_file = {}\n",
            toml_string(&path_str(pki.ca_file())),
            toml_string(&path_str(&device.cert)),
            toml_string(&path_str(&device.key)),
        );
        let cloud_tls = Some((
            pki.ca_file().to_owned(),
            cloud_files.cert.clone(),
            cloud_files.key.clone(),
        ));
        let port = broker.port();
        Some(Rig::assemble(
            dir,
            pki,
            Broker::Mosquitto(broker),
            port,
            cloud_tls,
            &(tls + extra_mqtt),
        ))
    }

    /// With the embedded rumqttd broker, plaintext on loopback.
    pub fn start_embedded() -> Rig {
        let dir = TestDir::new();
        let pki = Pki::generate(&dir.join(""));
        let broker = EmbeddedBroker::start(([127, 0, 0, 1], 0).into()).expect("rumqttd starts");
        let port = broker.addr().port();
        Rig::assemble(
            dir,
            pki,
            Broker::Embedded(broker),
            port,
            None,
            "allow_plaintext = true\n",
        )
    }

    pub fn mosquitto(&mut self) -> &mut Mosquitto {
        match &mut self.broker {
            Broker::Mosquitto(m) => m,
            Broker::Embedded(_) => panic!("this test needs Mosquitto"),
        }
    }
}

impl Rig<ExternalBroker> {
    /// With a broker already running on 127.0.0.1:`port` (plaintext, anonymous, no ACL),
    /// which the rig neither starts nor stops: the agent and the cloud connect to it with
    /// their usual client ids (`DEVICE_ID`, `cloud`) and persistent sessions, so use a
    /// fresh broker (or vhost) per run.
    pub fn start_external(port: u16) -> Rig<ExternalBroker> {
        let dir = TestDir::new();
        let pki = Pki::generate(&dir.join(""));
        Rig::assemble(
            dir,
            pki,
            ExternalBroker(port),
            port,
            None,
            "allow_plaintext = true\n",
        )
    }
}

impl<B> Rig<B> {
    fn assemble(
        dir: TestDir,
        pki: Pki,
        broker: B,
        port: u16,
        cloud_tls: Option<(PathBuf, PathBuf, PathBuf)>,
        extra_mqtt: &str,
    ) -> Rig<B> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cloud_dir = dir.join("cloud");
        std::fs::create_dir_all(&cloud_dir).unwrap();
        let mut cfg = CloudSimConfig::new("127.0.0.1", port, TENANT_ID, STORE_ID, &cloud_dir);
        cfg.tls = cloud_tls;
        let cloud = rt.block_on(CloudSim::start(cfg)).expect("the cloud starts");
        assert!(rt.block_on(cloud.wait_ready(READY_TIMEOUT)), "the cloud connects");

        let spool = dir.join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let config = dir.write_config();
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n\
             boot_delay_max_ms = 0\nbackoff_base_ms = 100\nbackoff_cap_ms = 1000\n\
             ack_timeout_ms = 3000\nrequest_timeout_ms = 3000\nhealth_interval_s = 1\n{extra_mqtt}\
             \n[spool]\npath = {}\nrescan_ms = 200\n",
            toml_string(&path_str(&spool)),
        ));
        std::fs::write(&config, text).unwrap();
        Rig {
            dir,
            rt,
            pki,
            broker,
            cloud,
            config,
            spool,
        }
    }

    pub fn spawn_agent(&self) -> RunningAgent {
        self.dir.spawn_ready(&self.config)
    }

    pub fn status(&self) -> serde_json::Value {
        self.dir.status_json(&self.config)
    }

    /// The agent holds a position for every downlink stream (its snapshot loaded).
    pub fn wait_bootstrapped(&self, agent: &RunningAgent) {
        let loaded = wait_for(SYNC_TIMEOUT, || {
            let s = self.status();
            s["downlink"]
                .as_array()
                .is_some_and(|d| d.len() == DownlinkStream::ALL.len())
                && s["sync"]["state"] == "online"
        });
        assert!(
            loaded,
            "no snapshot loaded: {}\n{}",
            self.status(),
            agent.stderr_so_far()
        );
    }

    pub fn outbox_depth(&self, stream: &str) -> i64 {
        self.status()["outbox"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["stream"] == stream)
                    .map(|s| s["depth"].as_i64().unwrap())
            })
            .unwrap_or(0)
    }

    /// Drops `count` POSLog files numbered from `first` into the spool folder.
    pub fn drop_transactions(&self, first: u32, count: u32) {
        for seq in first..first + count {
            let tmp = self.spool.join(format!("tx-{seq}.xml.tmp"));
            std::fs::write(&tmp, poslog_sale(seq)).unwrap();
            std::fs::rename(&tmp, self.spool.join(format!("tx-{seq}.xml"))).unwrap();
        }
    }

    pub fn received(&self) -> Vec<store_agent::cloud_sim::ReceivedEvent> {
        self.rt
            .block_on(
                self.cloud
                    .received_events(DEVICE_ID, UplinkStream::PosTransactions),
            )
            .unwrap()
    }

    /// One integer the agent's database answers `sql` with for `param`, read from the
    /// file (read-only, beside the running agent: SQLite's WAL allows it).
    pub fn local_i64(&self, sql: &str, param: &str) -> Option<i64> {
        let db = store_agent::store::open_read_only(&self.dir.database()).ok()?;
        db.query_row(sql, [param], |r| r.get(0)).ok()
    }

    /// The agent's price of `gtin14` (14 digits).
    pub fn local_price(&self, gtin14: &str) -> Option<i64> {
        self.local_i64("SELECT price_minor FROM products WHERE gtin = ?1", gtin14)
    }

    /// The cloud changes the price of sample product `gtin` and publishes it.
    pub fn publish_price(&self, gtin: &str, price_minor: i64) {
        let mut product = self
            .rt
            .block_on(self.cloud.entity(DownlinkStream::Products, gtin))
            .unwrap()
            .expect("a sample product");
        product["price_minor"] = serde_json::json!(price_minor);
        self.rt
            .block_on(self.cloud.publish(DownlinkStream::Products, Op::Upsert, product))
            .unwrap();
    }

    pub fn stop_agent(&self, agent: RunningAgent) {
        agent.signal(libc::SIGTERM);
        let output = agent.finish(STOP_TIMEOUT);
        assert_eq!(output.code(), Some(0), "{output}");
    }
}

impl<B> Drop for Rig<B> {
    fn drop(&mut self) {
        self.rt.block_on(self.cloud.shutdown());
    }
}

/// Every transaction 1..=n reached the cloud once, each under one key and one seq.
pub fn assert_exactly_once(received: &[store_agent::cloud_sim::ReceivedEvent], n: usize) {
    let mut seqs: Vec<i64> = received.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "each seq once");
    let mut keys: Vec<&str> = received.iter().map(|e| e.idempotency_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "each event under its own key");
    let mut pos_numbers: Vec<i64> = received
        .iter()
        .map(|e| {
            e.payload["sequence_number"]
                .as_i64()
                .expect("a POS sequence number")
        })
        .collect();
    pos_numbers.sort_unstable();
    assert_eq!(
        pos_numbers,
        (1..=n as i64).collect::<Vec<_>>(),
        "each POS transaction once"
    );
}
