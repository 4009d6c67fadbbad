//! The POSLog spool folder against the real store on a temporary directory:
//! files in, transactions and outbox rows out, files moved where they belong.
//!
//! Every test asserts outcomes (rows in the database, where files are), never
//! timings: waits poll with a generous deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use store_agent::config::SpoolConfig;
use store_agent::spool::{Spool, run_spool};
use store_agent::store::{KeyedHasher, Store, StoreOptions};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The POSLog corpus: `../shared/corpora/poslog` beside the clone, or under
/// `STORE_AGENT_CORPORA` (as in firmware-interfaces/tests/common).
fn corpus_root() -> std::path::PathBuf {
    std::env::var_os("STORE_AGENT_CORPORA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"))
        .join("poslog")
}
const RESCAN_MS: u64 = 100;
const DEADLINE: Duration = Duration::from_secs(30);

/// A temporary directory with a store and a spool folder in it.
struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    spool: PathBuf,
    store: Arc<Store>,
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let spool = root.join("spool");
        std::fs::create_dir(&spool).unwrap();
        let db = root.join("db").join("store.db");
        let store = tokio::task::spawn_blocking(move || {
            Store::open(StoreOptions::new(db, KeyedHasher::new(&[7u8; 32]).unwrap()))
        })
        .await
        .unwrap()
        .expect("store opens");
        Fixture {
            _tmp: tmp,
            root,
            spool,
            store: Arc::new(store),
        }
    }

    fn config(&self, max_file_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            path: Some(self.spool.clone()),
            rescan_ms: RESCAN_MS,
            max_file_bytes,
        }
    }

    /// Starts the spool task; send on the returned sender (or drop it) to stop it.
    fn start(&self, max_file_bytes: u64) -> (JoinHandle<anyhow::Result<()>>, oneshot::Sender<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_spool(
            Arc::clone(&self.store),
            self.config(max_file_bytes),
            "default-store".into(),
            "EUR".into(),
            async move {
                let _ = stopped.await;
            },
        ));
        (task, stop)
    }

    /// (POS transactions, their outbox rows, POS lines) in the database.
    async fn counts(&self) -> (i64, i64, i64) {
        self.store
            .reads()
            .read(|c| {
                let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
                Ok((
                    one("SELECT count(*) FROM pos_transactions")?,
                    one("SELECT count(*) FROM outbox WHERE stream = 'pos_transactions'")?,
                    one("SELECT count(*) FROM pos_lines")?,
                ))
            })
            .await
            .expect("counts")
    }

    fn processed(&self, name: &str) -> PathBuf {
        self.spool.join("processed").join(name)
    }

    fn rejected(&self, name: &str) -> PathBuf {
        self.spool.join("rejected").join(name)
    }
}

/// Polls `done` until it holds, or panics with `what` after [`DEADLINE`].
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stop(task: JoinHandle<anyhow::Result<()>>, stop: oneshot::Sender<()>) {
    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the spool task stops")
        .expect("the spool task does not panic")
        .expect("the spool task ends without error");
}

/// A one-transaction POSLog document.
fn poslog(sequence: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/">
  <Transaction>
    <BusinessUnit><UnitID>S1</UnitID></BusinessUnit>
    <WorkstationID>7</WorkstationID>
    <SequenceNumber>{sequence}</SequenceNumber>
    <BusinessDayDate>2025-03-14</BusinessDayDate>
    <CurrencyCode>EUR</CurrencyCode>
    <RetailTransaction>
      <LineItem><SequenceNumber>1</SequenceNumber>
        <Sale><ItemID>4006381333931</ItemID><ExtendedAmount>2.50</ExtendedAmount><Quantity>1</Quantity></Sale>
      </LineItem>
      <Total TotalType="TransactionGrandAmount">2.50</Total>
    </RetailTransaction>
  </Transaction>
</POSLog>
"#
    )
}

/// The corpus XML files with how many of their transactions are recordable, or
/// `None` (after a SKIP note) when the corpus is absent outside CI.
fn corpus_files() -> Option<Vec<(PathBuf, serde_json::Value)>> {
    let root = corpus_root();
    if !root.is_dir() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the POSLog corpus is missing at {}",
            root.display()
        );
        println!("SKIP: no POSLog corpus at {}", root.display());
        return None;
    }
    let mut files = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "xml") {
                let expected = f.with_extension("expected.json");
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&expected).unwrap()).expect("expected.json");
                files.push((f, json));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!files.is_empty(), "no XML in the corpus");
    Some(files)
}

/// A unique flat name for a corpus file: `go-poslog__retoure.xml`.
fn flat_name(path: &Path) -> String {
    let dir = path.parent().unwrap().file_name().unwrap().to_string_lossy();
    format!("{dir}__{}", path.file_name().unwrap().to_string_lossy())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_files_present_at_start_are_recorded_once_and_moved() {
    let Some(files) = corpus_files() else { return };
    let fx = Fixture::new().await;
    // Expected outcome, from the corpus summaries: every file is recordable (a
    // transaction without BusinessDayDate takes its day from EndDateTime); recorded
    // rows are the distinct natural keys (two samples share one).
    let mut keys = std::collections::BTreeSet::new();
    let mut recordable = Vec::new();
    let mut without_day = 0;
    for (path, json) in &files {
        let name = flat_name(path);
        std::fs::copy(path, fx.spool.join(&name)).unwrap();
        let txs = json["transactions"].as_array().unwrap();
        assert_eq!(txs.len() as u64, json["transaction_count"].as_u64().unwrap());
        for t in txs {
            without_day += usize::from(!t["business_day"].is_string());
            keys.insert(format!(
                "{}|{}|{}|{}",
                t["store_id"], t["workstation_id"], t["business_day"], t["sequence_number"]
            ));
        }
        recordable.push(name);
    }
    assert!(without_day > 0, "the corpus has a sample without BusinessDayDate");

    let (task, stopper) = fx.start(16 * 1024 * 1024);
    wait_for("every corpus file to leave the spool folder", || {
        files.iter().all(|(p, _)| !fx.spool.join(flat_name(p)).exists())
    })
    .await;
    for name in &recordable {
        assert!(fx.processed(name).is_file(), "{name} in processed/");
    }
    let (txs, outbox, lines) = fx.counts().await;
    assert_eq!(txs, keys.len() as i64, "each transaction recorded once");
    assert_eq!(outbox, txs, "one outbox row per recorded transaction");
    assert!(lines > 0);

    // The same file dropped again: nothing new, and it still moves (with a suffix).
    let again = &recordable[0];
    std::fs::copy(fx.processed(again), fx.spool.join(again)).unwrap();
    wait_for("the re-dropped file to move", || {
        fx.processed(&format!("{again}.1")).is_file()
    })
    .await;
    assert!(!fx.spool.join(again).exists());
    assert_eq!(
        fx.counts().await,
        (txs, outbox, lines),
        "a duplicate records nothing"
    );

    stop(task, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_file_is_rejected_with_its_reason_and_records_nothing() {
    let fx = Fixture::new().await;
    let (task, stopper) = fx.start(1 << 20);
    // Broken XML.
    std::fs::write(
        fx.spool.join("broken.xml"),
        "<POSLog><Transaction><WorkstationID>1</Work",
    )
    .unwrap();
    // Well-formed, but its second transaction cannot be mapped (no business day):
    // the first, valid one must not be recorded either.
    let good = poslog(1);
    let body = |doc: &str| {
        let start = doc.find("<Transaction>").unwrap();
        let end = doc.find("</POSLog>").unwrap();
        doc[start..end].to_owned()
    };
    let bad = body(&poslog(2)).replace("<BusinessDayDate>2025-03-14</BusinessDayDate>", "");
    let two = format!("<POSLog>{}{}</POSLog>", body(&good), bad);
    std::fs::write(fx.spool.join("half-good.xml"), two).unwrap();

    wait_for("both files rejected", || {
        fx.rejected("broken.xml").is_file() && fx.rejected("half-good.xml").is_file()
    })
    .await;
    let reason = std::fs::read_to_string(fx.rejected("broken.xml.reason")).unwrap();
    assert!(
        reason.contains("broken.xml") && reason.contains("line 1"),
        "{reason}"
    );
    let reason = std::fs::read_to_string(fx.rejected("half-good.xml.reason")).unwrap();
    assert!(
        reason.contains("transaction 2 of 2") && reason.contains("business_day"),
        "{reason}"
    );
    assert_eq!(
        fx.counts().await,
        (0, 0, 0),
        "nothing from a rejected file is recorded"
    );
    assert!(!fx.processed("half-good.xml").exists());
    stop(task, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_under_a_temporary_name_waits_for_its_rename() {
    let fx = Fixture::new().await;
    let (task, stopper) = fx.start(1 << 20);
    let doc = poslog(5);
    let (first, second) = doc.split_at(doc.len() / 2);
    let tmp = fx.spool.join("t5.xml.tmp");
    std::fs::write(&tmp, first).unwrap();
    // A sentinel file dropped after the half: once it is processed, the spool has
    // scanned (more than twice) while the half file was there.
    std::fs::write(fx.spool.join("zz-sentinel.xml"), poslog(6)).unwrap();
    wait_for("the sentinel to be processed", || {
        fx.processed("zz-sentinel.xml").is_file()
    })
    .await;
    assert!(tmp.is_file(), "the temporary file is left alone");
    assert_eq!(fx.counts().await.0, 1, "only the sentinel is recorded");

    let mut f = std::fs::OpenOptions::new().append(true).open(&tmp).unwrap();
    std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
    drop(f);
    std::fs::rename(&tmp, fx.spool.join("t5.xml")).unwrap();
    wait_for("the renamed file to be processed", || {
        fx.processed("t5.xml").is_file()
    })
    .await;
    assert_eq!(fx.counts().await.0, 2);
    assert!(
        std::fs::read_dir(fx.spool.join("rejected"))
            .unwrap()
            .next()
            .is_none()
    );
    stop(task, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_size_keeps_changing_is_not_taken() {
    // Driven scan by scan, so the test does not depend on how fast anything runs:
    // each scan sees a different size until the writer stops.
    let fx = Fixture::new().await;
    let mut spool = Spool::open(
        Arc::clone(&fx.store),
        &fx.config(1 << 20),
        "default-store".into(),
        "EUR".into(),
    )
    .await
    .expect("spool opens");
    let path = fx.spool.join("growing.xml");
    let doc = poslog(9);
    let chunks: Vec<&str> = doc
        .as_bytes()
        .chunks(doc.len() / 6 + 1)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in &chunks {
        std::io::Write::write_all(&mut f, chunk.as_bytes()).unwrap();
        f.sync_all().unwrap();
        let summary = spool.scan().await;
        assert_eq!(summary.waiting_files, 1, "{summary:?}");
        assert!(path.is_file(), "a file still being written stays");
        tokio::time::sleep(Duration::from_millis(RESCAN_MS + 20)).await;
    }
    drop(f);
    // Complete now: once a scan finds it unchanged a full interval later, it is taken.
    let mut summary = spool.scan().await;
    let mut scans = 1;
    while summary.processed_files == 0 {
        assert!(scans < 5, "a stable file is taken at the next scan: {summary:?}");
        tokio::time::sleep(Duration::from_millis(RESCAN_MS + 20)).await;
        summary = spool.scan().await;
        scans += 1;
    }
    assert_eq!(summary.rejected_files, 0);
    assert!(fx.processed("growing.xml").is_file());
    assert_eq!(fx.counts().await.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_is_rejected_and_its_target_untouched() {
    let fx = Fixture::new().await;
    let outside = fx.root.join("outside.xml");
    let doc = poslog(11);
    std::fs::write(&outside, &doc).unwrap();
    std::os::unix::fs::symlink(&outside, fx.spool.join("link.xml")).unwrap();
    let (task, stopper) = fx.start(1 << 20);
    wait_for("the link to be rejected", || {
        fx.rejected("link.xml").symlink_metadata().is_ok()
    })
    .await;
    let moved = fx.rejected("link.xml").symlink_metadata().unwrap();
    assert!(
        moved.file_type().is_symlink(),
        "the link itself moved, not its target"
    );
    let reason = std::fs::read_to_string(fx.rejected("link.xml.reason")).unwrap();
    assert!(reason.contains("symbolic link"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        doc,
        "the target is untouched"
    );
    assert_eq!(fx.counts().await, (0, 0, 0));
    stop(task, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_file_is_rejected_unread() {
    let fx = Fixture::new().await;
    let doc = poslog(12);
    let (task, stopper) = fx.start(doc.len() as u64 - 1);
    std::fs::write(fx.spool.join("big.xml"), &doc).unwrap();
    wait_for("the big file to be rejected", || fx.rejected("big.xml").is_file()).await;
    let reason = std::fs::read_to_string(fx.rejected("big.xml.reason")).unwrap();
    assert!(
        reason.contains("max_file_bytes") && reason.contains("not parsed"),
        "{reason}"
    );
    assert_eq!(fx.counts().await, (0, 0, 0));
    stop(task, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_task_and_releases_the_store() {
    let fx = Fixture::new().await;
    let (task, stopper) = fx.start(1 << 20);
    std::fs::write(fx.spool.join("one.xml"), poslog(1)).unwrap();
    wait_for("a file to be processed", || fx.processed("one.xml").is_file()).await;
    assert!(fx.spool.join("processed").is_dir() && fx.spool.join("rejected").is_dir());
    stop(task, stopper).await;
    // The task let go of the store: the runtime can close it.
    let Fixture { store, _tmp, .. } = fx;
    let store = Arc::try_unwrap(store).unwrap_or_else(|_| panic!("the spool task still holds the store"));
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_path_the_spool_refuses_to_start() {
    let fx = Fixture::new().await;
    let config = SpoolConfig {
        path: None,
        ..SpoolConfig::default()
    };
    let err = run_spool(
        Arc::clone(&fx.store),
        config,
        "S".into(),
        "EUR".into(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("spool.path"), "{err}");
}
