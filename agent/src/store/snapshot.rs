//! Snapshot files: the whole cached state of a store in one file, loaded all or
//! nothing.
//!
//! Format (version 1): JSON Lines, UTF-8.
//! * Line 1, the header: `{"snapshot":"store-agent","format":1,"tenant_id":…,
//!   "store_id":…,"created_at_ms":…,"key_fingerprint":…,"streams":{…}}`.
//!   `key_fingerprint` names the tenant key the card and pickup-code hashes were
//!   made with; `streams` gives, per cloud stream, the `(epoch, seq)` the snapshot
//!   is consistent at, so the sync can apply later deltas on top.
//! * Then one record per line, externally tagged: `{"product":{…}}`,
//!   `{"stock":{…}}`, `{"customer":{…}}`, `{"loyalty_card":{…}}`,
//!   `{"wishlist_item":{…}}`, `{"cart":{…}}`, `{"order":{…}}`, `{"associate":{…}}`,
//!   `{"config":{…}}` (fields in [`super::entities`]).
//! * Last, `{"end":{"records":N}}` with the number of records before it. A file
//!   without it was cut short and is refused.
//!
//! Import replaces the cached entities of the streams the header lists (all of
//! them for a full snapshot, one for the sync's reload of a single stream; never
//! the outbox, POS transactions or returns recorded here) and their stream
//! positions, in one `BEGIN IMMEDIATE` transaction: a bad record, a record of a
//! stream the header does not list, a truncated file or a killed process leaves
//! the database exactly as it was.
//! Parsing runs on its own thread and hands batches to the writer thread, so JSON
//! decoding and SQLite inserts use both cores of a small device.

use super::StoreError;
use super::entities::{
    AssociateRecord, BulkInsert, CartRecord, ConfigEntry, CustomerRecord, Entity, LoyaltyCardRecord,
    OrderRecord, Prepared, ProductRecord, StockRecord, WishlistItemRecord,
};
use crate::events::{DownlinkStream, now_ms};
use rusqlite::{Connection, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use thiserror::Error;

mod replace;
pub(crate) use replace::{SwapTarget, remove_leftovers};
#[cfg(test)]
mod tests;

/// The value of the header's `snapshot` key.
pub const MAGIC: &str = "store-agent";
/// The format version this build reads and writes.
pub const FORMAT: u32 = 1;

/// Where a stream's snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPosition {
    /// The cloud's epoch of the stream (changes when the cloud rebuilds it).
    pub epoch: String,
    /// The last seq included.
    pub seq: i64,
}

/// The first line of a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHeader {
    /// Always [`MAGIC`].
    pub snapshot: String,
    /// Always [`FORMAT`] for files this build writes.
    pub format: u32,
    /// The tenant (retailer).
    pub tenant_id: String,
    /// The store the data is for.
    pub store_id: String,
    /// When the snapshot was made.
    pub created_at_ms: i64,
    /// [`super::KeyedHasher::fingerprint`] of the key the hashes were made with.
    pub key_fingerprint: String,
    /// Per cloud stream, the position the snapshot is consistent at.
    pub streams: BTreeMap<String, StreamPosition>,
}

/// One record line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SnapshotRecord {
    /// A catalogue product.
    Product(ProductRecord),
    /// Stock here.
    Stock(StockRecord),
    /// A customer.
    Customer(CustomerRecord),
    /// A loyalty card hash.
    LoyaltyCard(LoyaltyCardRecord),
    /// A wishlist item.
    WishlistItem(WishlistItemRecord),
    /// An online cart.
    Cart(CartRecord),
    /// An online order.
    Order(OrderRecord),
    /// A store associate.
    Associate(AssociateRecord),
    /// A setting pushed by the cloud.
    Config(ConfigEntry),
    /// The trailer.
    End(EndRecord),
}

/// The trailer: proof the file is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndRecord {
    /// Records between header and trailer.
    pub records: u64,
}

/// Why a snapshot was refused. Nothing was changed.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not what the format says.
    #[error("snapshot {path}, line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The file ends before its trailer.
    #[error(
        "snapshot {path} is incomplete: it ends at line {lines} without its end record; was the copy cut short?"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Lines read.
        lines: u64,
    },
    /// The header does not fit this agent.
    #[error("snapshot {path} does not fit this agent: {message}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        message: String,
    },
}

/// What the agent expects of a snapshot besides its format.
#[derive(Debug, Clone, Default)]
pub struct ImportExpectations {
    /// When set, the header's tenant must be this one.
    pub tenant_id: Option<String>,
    /// When set, the header's store must be this one.
    pub store_id: Option<String>,
}

/// What an import loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Records per kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// All records.
    pub records: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

impl SnapshotRecord {
    fn kind(&self) -> &'static str {
        match self {
            SnapshotRecord::Product(_) => "products",
            SnapshotRecord::Stock(_) => "stock",
            SnapshotRecord::Customer(_) => "customers",
            SnapshotRecord::LoyaltyCard(_) => "loyalty_cards",
            SnapshotRecord::WishlistItem(_) => "wishlist_items",
            SnapshotRecord::Cart(_) => "carts",
            SnapshotRecord::Order(_) => "orders",
            SnapshotRecord::Associate(_) => "associates",
            SnapshotRecord::Config(_) => "config",
            SnapshotRecord::End(_) => "end",
        }
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>, now_ms: i64) -> Result<(), StoreError> {
        match self {
            SnapshotRecord::Product(r) => r.write(tx, now_ms),
            SnapshotRecord::Stock(r) => r.write(tx, now_ms),
            SnapshotRecord::Customer(r) => r.write(tx, now_ms),
            SnapshotRecord::LoyaltyCard(r) => r.write(tx, now_ms),
            SnapshotRecord::WishlistItem(r) => r.write(tx, now_ms),
            SnapshotRecord::Cart(r) => r.write(tx, now_ms),
            SnapshotRecord::Order(r) => r.write(tx, now_ms),
            SnapshotRecord::Associate(r) => r.write(tx, now_ms),
            SnapshotRecord::Config(r) => r.write(tx, now_ms),
            SnapshotRecord::End(_) => Ok(()),
        }
    }
}

impl SnapshotRecord {
    /// The downlink stream a record belongs to: a snapshot replaces the tables
    /// of the streams its header lists, and may only hold their records.
    fn stream(&self) -> Option<DownlinkStream> {
        Some(match self {
            SnapshotRecord::Product(_) => DownlinkStream::Products,
            SnapshotRecord::Stock(_) => DownlinkStream::Stock,
            SnapshotRecord::Customer(_) => DownlinkStream::Customers,
            SnapshotRecord::LoyaltyCard(_) => DownlinkStream::LoyaltyCards,
            SnapshotRecord::WishlistItem(_) => DownlinkStream::Wishlists,
            SnapshotRecord::Cart(_) => DownlinkStream::Carts,
            SnapshotRecord::Order(_) => DownlinkStream::Orders,
            SnapshotRecord::Associate(_) => DownlinkStream::Associates,
            SnapshotRecord::Config(_) => DownlinkStream::Config,
            SnapshotRecord::End(_) => return None,
        })
    }
}

/// Writes snapshot files line by line.
pub struct SnapshotWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a file with its header.
    pub fn new(mut out: W, header: &SnapshotHeader) -> std::io::Result<Self> {
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(SnapshotWriter { out, records: 0 })
    }

    /// Appends a record.
    pub fn record(&mut self, record: &SnapshotRecord) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Writes the trailer and returns the writer and the record count.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        serde_json::to_writer(
            &mut self.out,
            &SnapshotRecord::End(EndRecord {
                records: self.records,
            }),
        )?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok((self.out, self.records))
    }
}

/// How many parsed records travel to the writer thread at once.
const BATCH: usize = 2048;

type Batch = Vec<(u64, Parsed)>;

/// The parser holds loyalty cards back and sends them sorted by their hash, in
/// runs of up to this many (about 30 MB). Cards are keyed by a random hash, and a
/// run inserted in key order walks the table's B-tree from front to back instead
/// of jumping around it: in a test of 1,050,000 cards the inserts took about a
/// third less time, runs of this size getting nearly all of what one sort of
/// every card gets. The sort runs on the parser's core; the writer is the
/// import's bottleneck.
const CARD_RUN: usize = 262_144;

/// A loyalty card the parser holds back (see [`CARD_RUN`]).
struct HeldCard {
    hash: [u8; 32],
    line: u64,
    customer_id: String,
    status: &'static str,
}

/// Sends `held` in key order, as batches; returns false if the writer has
/// stopped. Equal hashes keep their file order, so the last copy still wins.
fn send_cards(
    held: &mut Vec<HeldCard>,
    tx: &mpsc::SyncSender<Result<Batch, SnapshotError>>,
    spent: &mpsc::Receiver<Batch>,
) -> bool {
    held.sort_unstable_by(|a, b| a.hash.cmp(&b.hash).then(a.line.cmp(&b.line)));
    let mut cards = held.drain(..).map(|c| {
        (
            c.line,
            Parsed::Ready(Prepared::Card {
                hash: c.hash,
                customer_id: c.customer_id,
                status: c.status,
            }),
        )
    });
    loop {
        let mut batch = reuse(spent);
        batch.extend(cards.by_ref().take(BATCH));
        if batch.is_empty() {
            return true;
        }
        if tx.send(Ok(batch)).is_err() {
            return false;
        }
    }
}

/// An empty batch: one the writer handed back (the others are freed here), or a
/// new one.
fn reuse(spent: &mpsc::Receiver<Batch>) -> Batch {
    let mut next = None;
    for mut old in spent.try_iter() {
        old.clear();
        next = Some(old);
    }
    next.unwrap_or_else(|| Vec::with_capacity(BATCH))
}

/// The two ends of the parser thread's side: batches go to the writer, and the
/// writer hands the batches it has written back, so that their strings are freed
/// on the thread that allocated them (freeing another thread's allocations was
/// about a tenth of the writer's time, and the writer is the import's bottleneck).
struct ParserEnds {
    header: mpsc::SyncSender<Result<SnapshotHeader, SnapshotError>>,
    batches: mpsc::SyncSender<Result<Batch, SnapshotError>>,
    spent: mpsc::Receiver<Batch>,
}

/// A record as the parser thread hands it over: the three entities big snapshots
/// are mostly made of arrive already checked and converted ([`Prepared`]), so the
/// writer thread, the import's bottleneck, only inserts them.
enum Parsed {
    /// Any other record, written (and checked) by the writer.
    Record(SnapshotRecord),
    /// A prepared customer, loyalty card or wishlist item.
    Ready(Prepared),
}

impl Parsed {
    fn from_record(record: SnapshotRecord) -> Result<Parsed, StoreError> {
        Ok(match record {
            SnapshotRecord::Customer(c) => Parsed::Ready(Prepared::customer(c)?),
            SnapshotRecord::LoyaltyCard(c) => Parsed::Ready(Prepared::card(c)?),
            SnapshotRecord::WishlistItem(w) => Parsed::Ready(Prepared::wish(w)?),
            other => Parsed::Record(other),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Parsed::Record(r) => r.kind(),
            Parsed::Ready(Prepared::Customer { .. }) => "customers",
            Parsed::Ready(Prepared::Card { .. }) => "loyalty_cards",
            Parsed::Ready(Prepared::Wish { .. }) => "wishlist_items",
        }
    }

    fn stream(&self) -> Option<DownlinkStream> {
        match self {
            Parsed::Record(r) => r.stream(),
            Parsed::Ready(Prepared::Customer { .. }) => Some(DownlinkStream::Customers),
            Parsed::Ready(Prepared::Card { .. }) => Some(DownlinkStream::LoyaltyCards),
            Parsed::Ready(Prepared::Wish { .. }) => Some(DownlinkStream::Wishlists),
        }
    }

    fn write(
        &self,
        tx: &rusqlite::Transaction<'_>,
        bulk: &mut BulkInsert<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Parsed::Record(r) => r.write(tx, now_ms),
            Parsed::Ready(p) => bulk.insert(p),
        }
    }
}

/// Reads the header and streams parsed batches to `tx`, loyalty cards in sorted
/// runs of up to `card_run` ([`CARD_RUN`]). Stops at the first error, which it
/// sends as the last item.
fn parse_file(path: &Path, source: SnapshotSource, ends: ParserEnds, card_run: usize) {
    let ParserEnds {
        header: header_tx,
        batches: tx,
        spent,
    } = ends;
    let read_err = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    let opened: std::io::Result<Box<dyn std::io::Read + Send>> = match source {
        SnapshotSource::File(p) => {
            std::fs::File::open(p).map(|f| Box::new(f) as Box<dyn std::io::Read + Send>)
        }
        SnapshotSource::Stream(reader) => Ok(reader),
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            let _ = header_tx.send(Err(read_err(e)));
            return;
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let line_err = |n: u64, message: String| SnapshotError::Line {
        path: path.to_path_buf(),
        line: n,
        message,
    };
    match reader.read_line(&mut line) {
        Err(e) => {
            let _ = header_tx.send(Err(read_err(e)));
            return;
        }
        Ok(0) => {
            let _ = header_tx.send(Err(line_err(1, "the file is empty".into())));
            return;
        }
        Ok(_) => {}
    }
    let header = serde_json::from_str::<SnapshotHeader>(&line)
        .map_err(|e| line_err(1, format!("not a snapshot header: {e}")));
    let ok = header.is_ok();
    if header_tx.send(header).is_err() || !ok {
        return;
    }
    let mut n = 1u64;
    let mut batch = Vec::with_capacity(BATCH);
    let mut held: Vec<HeldCard> = Vec::new();
    // Records are read as bytes: serde_json checks the UTF-8 of each string as it
    // decodes it, so checking whole lines first would do it twice.
    let mut line = line.into_bytes();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Err(e) => {
                let _ = tx.send(Err(read_err(e)));
                return;
            }
            Ok(0) => break,
            Ok(_) => {}
        }
        n += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<SnapshotRecord>(&line)
            .map_err(|e| e.to_string())
            .and_then(|r| Parsed::from_record(r).map_err(|e| e.to_string()));
        match parsed {
            Ok(Parsed::Ready(Prepared::Card {
                hash,
                customer_id,
                status,
            })) => {
                held.push(HeldCard {
                    hash,
                    line: n,
                    customer_id,
                    status,
                });
                if held.len() >= card_run && !send_cards(&mut held, &tx, &spent) {
                    return;
                }
                continue;
            }
            Ok(r) => {
                // The end record goes out at once, after the cards held so far:
                // the writer must see every record in front of it, and anything
                // behind it (which it refuses) after it, as in the file.
                let end = matches!(r, Parsed::Record(SnapshotRecord::End(_)));
                if end && !send_cards(&mut held, &tx, &spent) {
                    return;
                }
                batch.push((n, r));
                // A full batch goes too, and its replacement is one the writer
                // has finished with ([`reuse`]).
                if (end || batch.len() == BATCH)
                    && tx.send(Ok(std::mem::replace(&mut batch, reuse(&spent)))).is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Ok(std::mem::take(&mut batch)));
                let _ = tx.send(Err(line_err(n, e)));
                return;
            }
        }
    }
    if send_cards(&mut held, &tx, &spent) {
        let _ = tx.send(Ok(batch));
    }
}

/// Imports `path` into the database behind `conn` (the writer's connection).
/// Where a snapshot's bytes come from.
pub enum SnapshotSource {
    /// A file.
    File(PathBuf),
    /// A stream, such as a download in progress: the import commits only after
    /// the stream ends without an error, so a download whose hash turns out wrong
    /// at its end fails the read and leaves the database as it was.
    Stream(Box<dyn std::io::Read + Send>),
}

/// Imports the file at `path` (see [`import_source`]).
pub(super) fn import(
    conn: &mut Connection,
    path: &Path,
    key_fingerprint: &str,
    expect: &ImportExpectations,
    swap: Option<&SwapTarget>,
) -> Result<ImportReport, StoreError> {
    import_source(
        conn,
        path,
        SnapshotSource::File(path.to_path_buf()),
        key_fingerprint,
        expect,
        swap,
    )
}

/// Imports a snapshot from `source` into the database behind `conn` (the
/// writer's connection); `path` names it in errors (a file, a URL). A snapshot
/// of every stream is loaded into a new file that replaces the database when
/// `swap` says where ([`replace`]); any other in one transaction of the live one.
pub(super) fn import_source(
    conn: &mut Connection,
    path: &Path,
    source: SnapshotSource,
    key_fingerprint: &str,
    expect: &ImportExpectations,
    swap: Option<&SwapTarget>,
) -> Result<ImportReport, StoreError> {
    let started = Instant::now();
    let (header_tx, header_rx) = mpsc::sync_channel(1);
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Result<Batch, SnapshotError>>(8);
    let (spent_tx, spent_rx) = mpsc::sync_channel::<Batch>(8);
    let parser = {
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("snapshot-parser".into())
            .spawn(move || {
                parse_file(
                    &path,
                    source,
                    ParserEnds {
                        header: header_tx,
                        batches: batch_tx,
                        spent: spent_rx,
                    },
                    CARD_RUN,
                )
            })
            .map_err(|source| StoreError::Io {
                context: "cannot start the snapshot parser thread".into(),
                source,
            })?
    };
    // Whatever happens below, the parser must not outlive the import: dropping
    // the receiver makes its next send fail and it stops.
    let result = (|| {
        let header = header_rx
            .recv()
            .map_err(|_| StoreError::Internal("snapshot parser stopped".into()))??;
        check_header(path, &header, key_fingerprint, expect)?;
        match swap {
            Some(target) if replace::is_full(&header) => {
                replace::load_into_new_file(conn, target, path, &header, batch_rx, spent_tx)
            }
            _ => load(conn, path, &header, batch_rx, spent_tx),
        }
    })();
    let _ = parser.join();
    let mut report = result?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

fn check_header(
    path: &Path,
    h: &SnapshotHeader,
    fingerprint: &str,
    expect: &ImportExpectations,
) -> Result<(), SnapshotError> {
    let mismatch = |message: String| SnapshotError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    if h.snapshot != MAGIC {
        return Err(mismatch(format!(
            "the header names {:?}, not {MAGIC:?}",
            h.snapshot
        )));
    }
    if h.format != FORMAT {
        return Err(mismatch(format!(
            "format version {} is not supported (this agent reads version {FORMAT})",
            h.format
        )));
    }
    if h.key_fingerprint != fingerprint {
        return Err(mismatch(format!(
            "its card hashes were made with the key whose fingerprint is {}, but this agent's key is {fingerprint}; \
             set loyalty.hash_key (or STORE_AGENT_LOYALTY_HASH_KEY) to the tenant's key",
            h.key_fingerprint
        )));
    }
    if let Some(unknown) = h.streams.keys().find(|s| DownlinkStream::parse(s).is_none()) {
        return Err(mismatch(format!(
            "its header lists the stream {unknown:?}, which this agent does not know"
        )));
    }
    if let Some(t) = expect.tenant_id.as_deref().filter(|t| *t != h.tenant_id) {
        return Err(mismatch(format!(
            "it is for tenant {:?}, this agent is configured for {t:?}",
            h.tenant_id
        )));
    }
    if let Some(s) = expect.store_id.as_deref().filter(|s| *s != h.store_id) {
        return Err(mismatch(format!(
            "it is for store {:?}, this agent is configured for {s:?}",
            h.store_id
        )));
    }
    Ok(())
}

/// Loads a snapshot that replaces only some streams (the sync's reload of one
/// stream) in one transaction of the live database.
fn load(
    conn: &mut Connection,
    path: &Path,
    header: &SnapshotHeader,
    batches: mpsc::Receiver<Result<Batch, SnapshotError>>,
    spent: mpsc::SyncSender<Batch>,
) -> Result<ImportReport, StoreError> {
    in_place(conn, |tx| {
        let covered = covered_streams(header);
        let indexes = clear_tables(tx, &covered)?;
        let report = insert_records(tx, path, &covered, batches, spent)?;
        finish_load(tx, path, header, &indexes)?;
        Ok(report)
    })
}

/// Runs `load` in one `BEGIN IMMEDIATE` transaction of the live database with
/// the settings of a bulk load, and commits if it succeeds.
fn in_place<R>(
    conn: &mut Connection,
    load: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    // A bigger page cache for the bulk load (256 MiB, given back afterwards):
    // loyalty card hashes arrive in random key order, and a cache that holds the
    // whole table avoids spilling and re-reading pages.
    let old_cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
    // The index rebuild at the end sorts with a helper thread (in memory: the
    // connection keeps temp_store = MEMORY).
    conn.pragma_update(None, "threads", 2)?;
    // No checkpoint at the commit: it would copy the whole load from the WAL into
    // the database file (seconds for a big store) before the import returns, and
    // hold up every write behind it. A helper thread does it after the commit
    // instead ([`checkpoint_in_background`]); readers see the data from the WAL
    // meanwhile.
    let old_autocheckpoint: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let result = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = load(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    conn.pragma_update(None, "cache_size", old_cache)?;
    conn.pragma_update(None, "threads", 0)?;
    conn.pragma_update(None, "wal_autocheckpoint", old_autocheckpoint)?;
    if result.is_ok() {
        checkpoint_in_background(conn);
    }
    result
}

/// The page cache of a bulk load, in KiB (SQLite's negative `cache_size`).
const BULK_CACHE_KIB: i64 = -262_144;

/// The streams a snapshot replaces (check_header made sure every name parses).
fn covered_streams(header: &SnapshotHeader) -> Vec<DownlinkStream> {
    header
        .streams
        .keys()
        .filter_map(|s| DownlinkStream::parse(s))
        .collect()
}

/// Empties the tables of `covered` and their stream positions, and drops their
/// secondary indexes, returning the SQL that builds them again: building an index
/// from the loaded rows (a sort) is much faster than keeping it up to date row by
/// row. [`finish_load`] builds them in the same transaction.
fn clear_tables(tx: &Connection, covered: &[DownlinkStream]) -> Result<Vec<String>, StoreError> {
    let mut indexes: Vec<String> = Vec::new();
    for stream in covered {
        for table in stream.tables() {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
            let found = tx
                .prepare(
                    "SELECT name, sql FROM sqlite_master
                     WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
                )?
                .query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            for (name, sql) in found {
                tx.execute(&format!("DROP INDEX {name}"), [])?;
                indexes.push(sql);
            }
        }
        tx.execute(
            "DELETE FROM downlink_streams WHERE stream = ?1",
            [stream.as_str()],
        )?;
    }
    Ok(indexes)
}

/// Writes every record the parser sends, checking that each belongs to a
/// `covered` stream and that the file ends with a matching end record.
fn insert_records(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    covered: &[DownlinkStream],
    batches: mpsc::Receiver<Result<Batch, SnapshotError>>,
    spent: mpsc::SyncSender<Batch>,
) -> Result<ImportReport, StoreError> {
    let now = now_ms();
    let mut bulk = BulkInsert::new(tx);
    let mut report = ImportReport::default();
    let mut ended: Option<(u64, u64)> = None;
    let mut last_line = 1;
    for batch in batches {
        let batch = batch?;
        for &(line, ref record) in &batch {
            // Loyalty cards arrive in runs sorted by hash, not in file order.
            last_line = last_line.max(line);
            if let Some((end_line, _)) = ended {
                return Err(SnapshotError::Line {
                    path: path.to_path_buf(),
                    line,
                    message: format!("a record after the end record of line {end_line}"),
                }
                .into());
            }
            if let Parsed::Record(SnapshotRecord::End(e)) = &record {
                ended = Some((line, e.records));
                continue;
            }
            if let Some(stream) = record.stream().filter(|s| !covered.contains(s)) {
                return Err(SnapshotError::Line {
                    path: path.to_path_buf(),
                    line,
                    message: format!(
                        "a record of the stream {stream}, which the header does not list among the streams \
                         this snapshot replaces"
                    ),
                }
                .into());
            }
            record
                .write(tx, &mut bulk, now)
                .map_err(|e| SnapshotError::Line {
                    path: path.to_path_buf(),
                    line,
                    message: e.to_string(),
                })?;
            *report.counts.entry(record.kind()).or_default() += 1;
            report.records += 1;
        }
        // Back to the parser to be freed there; if its queue is full (it has
        // stopped), the batch is dropped here.
        let _ = spent.try_send(batch);
    }
    match ended {
        None => Err(SnapshotError::Truncated {
            path: path.to_path_buf(),
            lines: last_line,
        }
        .into()),
        Some((line, expected)) if expected != report.records => Err(SnapshotError::Line {
            path: path.to_path_buf(),
            line,
            message: format!(
                "the end record counts {expected} records, the file holds {}",
                report.records
            ),
        }
        .into()),
        Some(_) => Ok(report),
    }
}

/// Builds the dropped indexes again and records the snapshot's stream positions.
fn finish_load(
    tx: &Connection,
    path: &Path,
    header: &SnapshotHeader,
    indexes: &[String],
) -> Result<(), StoreError> {
    for sql in indexes {
        let started = Instant::now();
        // A unique index that the loaded rows violate fails here, and the whole
        // import with it. Anything else is the device's trouble, not the file's
        // (a full temporary directory, say: the sort of a big rebuild spills).
        tx.execute_batch(sql).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::from(SnapshotError::Mismatch {
                path: path.to_path_buf(),
                message: format!("the loaded records break a rule of the database ({sql}): {e}"),
            }),
            _ => StoreError::Internal(format!(
                "cannot build an index of the loaded records ({sql}): {e} (a full snapshot's index \
                 sort writes temporary files to SQLITE_TMPDIR, else TMPDIR, else /var/tmp)"
            )),
        })?;
        tracing::debug!(index = %sql, ms = started.elapsed().as_millis() as u64, "Index built.");
    }
    let now = now_ms();
    for (stream, pos) in &header.streams {
        tx.execute(
            "INSERT INTO downlink_streams (stream, epoch, last_seq, updated_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![stream, pos.epoch, pos.seq, now],
        )?;
    }
    Ok(())
}

/// Starts a thread that checkpoints the WAL (PASSIVE: it waits for nobody) on its
/// own connection, so the writer thread goes on with the POS's events while the
/// load is copied into the database file. The writer joins it before its final
/// checkpoint at shutdown; a process killed meanwhile loses nothing (the WAL holds
/// the committed load, and the next open or checkpoint goes on from there).
fn checkpoint_in_background(conn: &Connection) {
    let Some(path) = conn.path().filter(|p| !p.is_empty()).map(PathBuf::from) else {
        return;
    };
    let started = std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || {
            let began = Instant::now();
            let result =
                super::connection::open(&path, super::connection::Access::Write, Duration::from_secs(5))
                    .and_then(|c| {
                        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })
                    });
            let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            match result {
                Ok((log, done)) => tracing::info!(
                    frames = log,
                    checkpointed = done,
                    ms,
                    "Snapshot checkpointed into the database file."
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "Checkpoint after the snapshot failed; the next one retries.")
                }
            }
        });
    match started {
        Ok(handle) => super::writer::keep_helper(handle),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot start the checkpoint thread; the writer checkpoints later.")
        }
    }
}

/// How long the import of `records` took, as a rate for humans.
pub fn rate_per_second(records: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        records
    } else {
        (records as f64 / secs) as u64
    }
}
