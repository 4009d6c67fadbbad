//! Hostile input (issue 7). From the cloud's side: thousands of random and
//! malformed MQTT payloads on every downlink topic the agent reads, with good
//! messages between them; the agent must keep running and online, keep every bad
//! one in dead letters (exactly one letter each), and apply every good one. From
//! the POS's side: hostile entries in the spool folder (an XML bomb, deep
//! nesting, huge, binary, UTF-16, a name that is not UTF-8, symlinks out of the
//! folder, a FIFO), each rejected with its reason, good files between them
//! recorded, and nothing outside the folder touched.

use std::time::Duration;
use store_agent::events::DownlinkStream;
use store_agent::sync::protocol::{DeviceDownlink, MAX_PAYLOAD_BYTES, MAX_SEQ, Topics};
use store_agent_e2e::mqtt::{MqttClient, tls_options};
use store_agent_e2e::rig::{Broker, READY_TIMEOUT, Rig, STOP_TIMEOUT, SYNC_TIMEOUT, gtin14, wait_for};
use store_agent_e2e::{DEVICE_ID, Rng, STORE_ID, TENANT_ID};

/// How long the agent may take over a spool file.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many hostile payloads the test sends.
const HOSTILE: usize = 10_000;
/// A good price change goes out after every this many hostile payloads.
const GOOD_EVERY: usize = 500;

/// What the agent last applied of `stream`: its epoch and seq.
fn position(rig: &Rig, stream: DownlinkStream) -> (String, i64) {
    let db = store_agent::store::open_read_only(&rig.dir.database()).unwrap();
    db.query_row(
        "SELECT epoch, last_seq FROM downlink_streams WHERE stream = ?1",
        [stream.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// The payload generator. Envelope-level faults go to any stream topic; faults
/// inside one entity go to the config and carts streams with the next seq, so that
/// each one reaches the entity check (an old seq would be ignored as a redelivery,
/// not dead-lettered). The good messages use the products stream, whose seqs the
/// cloud keeps.
struct Hostile {
    rng: Rng,
    topics: Topics,
    config: (String, i64),
    carts: (String, i64),
    /// How many payloads of each kind were made.
    made: std::collections::BTreeMap<&'static str, usize>,
}

impl Hostile {
    fn valid_envelope(&mut self, stream: &str) -> String {
        let seq = 1 + self.rng.below(1_000_000);
        format!(
            r#"{{"v":1,"stream":"{stream}","epoch":"e-{}","items":[{{"seq":{seq},"op":"upsert","entity":{{"key":"k","value":1}}}}]}}"#,
            self.rng.word(6)
        )
    }

    fn store_topic(&mut self) -> (String, &'static str) {
        let stream = *self.rng.pick(&DownlinkStream::ALL);
        (self.topics.store_stream(stream), stream.as_str())
    }

    /// One hostile message: its topic, its payload and its kind's name.
    fn next(&mut self) -> (String, Vec<u8>, &'static str) {
        let (topic, stream) = self.store_topic();
        let (topic, payload, kind): (String, Vec<u8>, &'static str) = match self.rng.below(13) {
            0 => {
                let len = self.rng.below(400);
                (topic, self.rng.bytes(len), "random bytes")
            }
            1 => {
                let whole = self.valid_envelope(stream);
                let cut = self.rng.below(whole.len());
                (topic, whole.as_bytes()[..cut].to_vec(), "truncated JSON")
            }
            2 => {
                let templates = [
                    r#"{"v":"1","stream":"S","epoch":"e1","items":[]}"#,
                    r#"{"v":1,"stream":"S","epoch":7,"items":[]}"#,
                    r#"{"v":1,"stream":"S","epoch":"e1","items":{}}"#,
                    r#"{"v":1,"stream":"S","epoch":"e1","items":[{"seq":"1","op":"upsert","entity":{}}]}"#,
                    r#"{"v":1,"stream":"S","epoch":"e1","items":[{"seq":1,"op":"explode","entity":{}}]}"#,
                    r#"{"v":1,"stream":["S"],"epoch":"e1","items":[]}"#,
                    r#"{"v":null,"stream":"S","epoch":"e1","items":[]}"#,
                    r#"[1,2,3]"#,
                    r#""a string""#,
                    r#"{"v":1,"stream":"S","epoch":"e1"}"#,
                ];
                let t = self.rng.pick(&templates).replace('S', stream);
                (topic, t.into_bytes(), "wrong types")
            }
            3 => {
                let seqs = [
                    "18446744073709551616".to_owned(),
                    "9223372036854775808".to_owned(),
                    "-9223372036854775809".to_owned(),
                    (MAX_SEQ + 1).to_string(),
                    i64::MAX.to_string(),
                    "-1".to_owned(),
                    "0".to_owned(),
                    "1e300".to_owned(),
                    "1.5".to_owned(),
                ];
                let seq = self.rng.pick(&seqs).clone();
                let (epoch, _) = if stream == "config" {
                    self.config.clone()
                } else {
                    self.carts.clone()
                };
                let p = format!(
                    r#"{{"v":1,"stream":"{stream}","epoch":"{epoch}","items":[{{"seq":{seq},"op":"delete","entity":{{}}}}]}}"#
                );
                (topic, p.into_bytes(), "seq overflow")
            }
            4 => {
                let depth = 129 + self.rng.below(20_000);
                let p = if self.rng.below(2) == 0 {
                    nested("[", "]", depth, "1")
                } else {
                    let entity = nested(r#"{"a":"#, "}", depth, "1");
                    format!(
                        r#"{{"v":1,"stream":"{stream}","epoch":"e1","items":[{{"seq":1,"op":"upsert","entity":{entity}}}]}}"#
                    )
                };
                (topic, p.into_bytes(), "deep nesting")
            }
            5 => {
                let len = 129 + self.rng.below(100_000);
                let p = format!(
                    r#"{{"v":1,"stream":"{stream}","epoch":"{}","items":[]}}"#,
                    "e".repeat(len)
                );
                (topic, p.into_bytes(), "huge epoch")
            }
            6 => {
                let len = 1 + self.rng.below(30);
                let mut name = self.rng.word(len);
                while DownlinkStream::parse(&name).is_some() {
                    name.push('x');
                }
                let payload = self.valid_envelope(&name);
                let topic = self.topics.store_stream(DownlinkStream::Products);
                let topic = format!("{}/{name}", topic.rsplit_once('/').unwrap().0);
                (topic, payload.into_bytes(), "unknown stream")
            }
            7 => {
                let other = self.rng.pick(&DownlinkStream::ALL).as_str();
                let other = if other == stream { "coupons" } else { other };
                (topic, self.valid_envelope(other).into_bytes(), "stream mismatch")
            }
            8 => {
                let p = if self.rng.below(2) == 0 {
                    self.valid_envelope(stream).replacen("\"v\":1", "\"v\":2", 1)
                } else {
                    self.valid_envelope(stream).replacen("{", r#"{"extra":true,"#, 1)
                };
                (topic, p.into_bytes(), "version or unknown field")
            }
            9 => {
                let kind = *self.rng.pick(&DeviceDownlink::ALL);
                let bodies = [
                    r#"{"v":1,"stream":"pos_transactions","acked_through":"all"}"#,
                    r#"{"v":1,"kind":"range","request_id":5}"#,
                    r#"{"command_id":"c1","body":{"kind":"self_destruct"}}"#,
                    r#"{}"#,
                    "\u{0}\u{1}\u{2}",
                ];
                let body = self.rng.pick(&bodies).as_bytes().to_vec();
                if self.rng.below(4) == 0 {
                    let filter = self.topics.device_down_filter();
                    let topic = filter.replace('+', &self.rng.word(8));
                    (topic, body, "unknown device topic")
                } else {
                    (self.topics.device_down(kind), body, "device downlink garbage")
                }
            }
            10 if self.made.get("oversized").copied().unwrap_or(0) < 20 => {
                let len = MAX_PAYLOAD_BYTES + 1 + self.rng.below(2000);
                (topic, vec![b'{'; len], "oversized")
            }
            10 | 11 => self.bad_entity(DownlinkStream::Config),
            _ => self.bad_entity(DownlinkStream::Carts),
        };
        *self.made.entry(kind).or_default() += 1;
        (topic, payload, kind)
    }

    /// A well-formed envelope at the stream's next seq whose one entity breaks
    /// the entity rules.
    fn bad_entity(&mut self, stream: DownlinkStream) -> (String, Vec<u8>, &'static str) {
        let long = "x".repeat(4097 + self.rng.below(60_000));
        let deep = nested("[", "]", 9 + self.rng.below(100), "0");
        let (op, entity, kind) = match (stream, self.rng.below(6)) {
            (DownlinkStream::Config, 0) => (
                "upsert",
                r#"{"key":42,"value":1}"#.to_owned(),
                "entity wrong type",
            ),
            (DownlinkStream::Config, 1) => {
                ("upsert", r#"{"key":"","value":1}"#.to_owned(), "entity empty key")
            }
            (DownlinkStream::Config, 2) => (
                "upsert",
                r#"{"key":"k","value":1,"extra":true}"#.to_owned(),
                "entity unknown field",
            ),
            (DownlinkStream::Config, 3) => (
                "upsert",
                format!(r#"{{"key":"k","value":"{long}"}}"#),
                "entity huge string",
            ),
            (DownlinkStream::Config, 4) => (
                "upsert",
                format!(r#"{{"key":"k","value":{deep}}}"#),
                "entity deep nesting",
            ),
            (DownlinkStream::Config, _) => ("delete", "{}".to_owned(), "delete without key"),
            (_, 0) => (
                "upsert",
                format!(r#"{{"customer_id":"{long}","lines":[]}}"#),
                "entity huge string",
            ),
            (_, 1) => ("delete", r#"{"gtin":"1"}"#.to_owned(), "delete without key"),
            (_, _) => (
                "upsert",
                r#"{"customer_id":[],"lines":7}"#.to_owned(),
                "entity wrong type",
            ),
        };
        let position = match stream {
            DownlinkStream::Config => &mut self.config,
            _ => &mut self.carts,
        };
        position.1 += 1;
        let payload = format!(
            r#"{{"v":1,"stream":"{}","epoch":"{}","items":[{{"seq":{},"op":"{op}","entity":{entity}}}]}}"#,
            stream.as_str(),
            position.0,
            position.1
        );
        (self.topics.store_stream(stream), payload.into_bytes(), kind)
    }
}

#[test]
fn ten_thousand_hostile_downlink_payloads_are_dead_lettered_and_good_ones_apply() {
    let Some(rig) = Rig::start("ten_thousand_hostile_downlink_payloads", "") else {
        return;
    };
    let mut agent = rig.spawn_agent();
    rig.wait_bootstrapped(&agent);
    let before = rig.status()["counts"]["dead_letters"].as_i64().unwrap();
    assert_eq!(before, 0, "{}", rig.status());

    let mut hostile = Hostile {
        rng: Rng(0x5eed_0fba_0d1d_ea00),
        topics: Topics::for_parts(TENANT_ID, STORE_ID, DEVICE_ID),
        config: position(&rig, DownlinkStream::Config),
        carts: position(&rig, DownlinkStream::Carts),
        made: Default::default(),
    };
    let mut good = Vec::new();
    let Broker::Mosquitto(broker) = &rig.broker else {
        unreachable!()
    };
    // With the cloud's certificate (the ACL lets its CN write downlink) but a
    // client id of its own, so that it does not take over the cloud's session.
    let options = tls_options(
        "hostile-cloud",
        broker.port(),
        rig.pki.ca_file(),
        &rig.pki.client("cloud"),
    );
    let mut raw = rig.rt.block_on(MqttClient::connect_ok(options));
    for i in 0..HOSTILE {
        let (topic, payload, kind) = hostile.next();
        if std::env::var_os("HOSTILE_TRACE").is_some() {
            eprintln!("{i} {kind} {topic} {} bytes", payload.len());
        }
        rig.rt.block_on(raw.publish(&topic, payload));
        if (i + 1) % GOOD_EVERY == 0 {
            let gtin = store_agent::sample::product_gtin(1, 1 + good.len() as u64);
            let price = 10_000 + i as i64;
            rig.publish_price(&gtin, price);
            good.push((gtin14(&gtin), price));
        }
    }
    rig.rt.block_on(raw.disconnect());
    eprintln!("hostile payloads by kind: {:?}", hostile.made);

    // The last good message went out after the last hostile one: once it is in,
    // everything before it has been handled.
    let (last_gtin, last_price) = good.last().unwrap().clone();
    assert!(
        wait_for(SYNC_TIMEOUT * 2, || rig.local_price(&last_gtin)
            == Some(last_price)),
        "the last good message applied: {}\n{}",
        rig.status(),
        agent.stderr_so_far()
    );
    for (gtin, price) in &good {
        assert_eq!(
            rig.local_price(gtin),
            Some(*price),
            "good message for {gtin} applied"
        );
    }
    assert!(
        wait_for(Duration::from_secs(30), || rig.status()["counts"]["dead_letters"]
            == HOSTILE as i64),
        "one dead letter per hostile payload: {}",
        rig.status()
    );
    std::thread::sleep(Duration::from_secs(1));
    let status = rig.status();
    assert_eq!(status["counts"]["dead_letters"], HOSTILE as i64, "{status}");
    assert_eq!(status["sync"]["state"], "online", "{status}");
    assert!(agent.try_status().is_none(), "the agent is still running");
    // The entity faults were judged per item: their seqs count as applied, so
    // the streams stand exactly where the last hostile item left them.
    assert_eq!(position(&rig, DownlinkStream::Config), hostile.config);
    assert_eq!(position(&rig, DownlinkStream::Carts), hostile.carts);
    // Every letter says what was wrong and where it came from.
    let db = store_agent::store::open_read_only(&rig.dir.database()).unwrap();
    let unexplained: i64 = db
        .query_row(
            "SELECT count(*) FROM dead_letters WHERE error = '' OR source NOT LIKE 'sa/v1/%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unexplained, 0);
    for needle in [
        "does not parse",
        "outside 1..=",
        "more than the limit of 4096",
        "nested more than 8 levels deep",
        "unknown downlink stream",
        "protocol version 2",
        "envelope limit",
        "a topic this agent does not use",
    ] {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM dead_letters WHERE instr(error, ?1) > 0",
                [needle],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n > 0, "some dead letter says {needle:?}");
    }
    drop(db);
    let output = rig.dir.run_ok(["db", "integrity", "--config", &rig.config]);
    assert!(output.stdout.trim_end().ends_with(": ok"), "{output}");
    rig.stop_agent(agent);
}

/// Everything in `dir` (recursively): relative path → (size, modification time,
/// content hash), so that a test can show nothing there changed.
fn fingerprint(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if meta.is_file() {
                std::fs::read(&path).unwrap().hash(&mut h);
            }
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, meta.len(), meta.modified().unwrap(), h.finish()));
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_spool_files_are_rejected_with_reasons_and_nothing_outside_is_touched() {
    use std::os::unix::ffi::OsStrExt;
    use store_agent_e2e::{TestDir, poslog_sale};
    let dir = TestDir::new();
    let config = dir.write_config();
    let spool = dir.join("spool");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret.xml"), poslog_sale(9001)).unwrap();
    std::fs::write(outside.join("sub/other.xml"), poslog_sale(9002)).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[spool]\npath = {:?}\nrescan_ms = 200\nmax_file_bytes = 1048576\n",
        spool.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let before = fingerprint(&outside);

    // Hostile entries, each with the words its reason must contain.
    let mut rng = Rng(0x00ba_d0f1_1e5e_ed00);
    let mut bomb = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE POSLog [\n<!ENTITY l0 \"lol\">\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "<!ENTITY l{i} \"{}\">\n",
            format!("&l{};", i - 1).repeat(10)
        ));
    }
    bomb.push_str("]>\n<POSLog>&l9;</POSLog>\n");
    let deep = format!(
        "<POSLog>{}{}</POSLog>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let huge = format!("<POSLog>{}</POSLog>", " ".repeat(3 << 20));
    let files: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"bomb.xml".to_vec(), bomb.into_bytes()),
        (b"deep.xml".to_vec(), deep.into_bytes()),
        (b"huge.xml".to_vec(), huge.into_bytes()),
        (b"binary.xml".to_vec(), rng.bytes(64 * 1024)),
        (b"empty.xml".to_vec(), Vec::new()),
        (
            b"utf16.xml".to_vec(),
            "\u{feff}<POSLog/>"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
        (
            b"not-utf8-\xff\xfe.xml".to_vec(),
            b"<POSLog><Transaction>".to_vec(),
        ),
    ];
    let mut agent = dir.spawn(["run", "--config", &config]);
    assert!(
        agent.wait_for_stderr("Agent ready.", READY_TIMEOUT),
        "{}",
        agent.stderr_so_far()
    );
    for (i, (name, content)) in files.iter().enumerate() {
        let name = std::ffi::OsStr::from_bytes(name);
        std::fs::write(spool.join(name), content).unwrap();
        // Good files between the hostile ones.
        std::fs::write(spool.join(format!("good-{i}.xml")), poslog_sale(100 + i as u32)).unwrap();
    }
    std::os::unix::fs::symlink(outside.join("secret.xml"), spool.join("link-file.xml")).unwrap();
    std::os::unix::fs::symlink(&outside, spool.join("link-dir.xml")).unwrap();
    std::os::unix::fs::symlink("../outside/sub/other.xml", spool.join("link-relative.xml")).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere.xml"), spool.join("dangling.xml")).unwrap();
    let fifo = std::ffi::CString::new(spool.join("fifo.xml").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");

    let mut hostile: Vec<(std::ffi::OsString, &str)> = files
        .iter()
        .map(|(n, _)| (std::ffi::OsStr::from_bytes(n).to_owned(), ""))
        .collect();
    for (name, why) in [
        ("link-file.xml", "symbolic link"),
        ("link-dir.xml", "symbolic link"),
        ("link-relative.xml", "symbolic link"),
        ("dangling.xml", "symbolic link"),
        ("fifo.xml", "not a regular file"),
    ] {
        hostile.push((name.into(), why));
    }
    hostile[2].1 = "max_file_bytes";
    let rejected = spool.join("rejected");
    let processed = spool.join("processed");
    let all_handled = |_: &mut _| {
        hostile
            .iter()
            .all(|(n, _)| std::fs::symlink_metadata(rejected.join(n)).is_ok())
            && (0..files.len()).all(|i| processed.join(format!("good-{i}.xml")).exists())
    };
    assert!(
        agent.wait_until(EVENT_TIMEOUT, all_handled),
        "not all handled: spool {:?}, rejected {:?}\n{}",
        std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        std::fs::read_dir(&rejected)
            .ok()
            .map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>()),
        agent.stderr_so_far()
    );
    for (name, why) in &hostile {
        let mut reason_name = name.clone();
        reason_name.push(".reason");
        let reason = std::fs::read_to_string(rejected.join(&reason_name))
            .unwrap_or_else(|e| panic!("{name:?} has a reason file: {e}"));
        assert!(!reason.trim().is_empty(), "{name:?}");
        assert!(reason.contains(why), "{name:?}: {reason}");
    }
    // The links were moved, not followed: they are still links, their targets
    // are where they were, unchanged, and nothing of them was recorded.
    assert!(
        std::fs::symlink_metadata(rejected.join("link-file.xml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fingerprint(&outside), before, "nothing outside the spool changed");
    assert!(agent.try_status().is_none(), "the agent is still running");
    agent.signal(libc::SIGTERM);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(output.code(), Some(0), "{output}");
    let status = dir.status_json(&config);
    assert_eq!(
        status["counts"]["pos_transactions"],
        files.len() as i64,
        "only the good files were recorded: {status}"
    );
}
