//! The local store: SQLite with a transactional outbox.
//!
//! * One writer thread owns the write connection ([`writer`]); everything that
//!   changes the database is a job on that thread.
//! * A few read-only connections serve queries ([`ReadPool`]).
//! * Every event the store reports to the cloud is written by one of the
//!   `record_*` methods, which change the state *and* append the outbox row in one
//!   `BEGIN IMMEDIATE` transaction. The outbox insert is private to this module:
//!   there is no way to write one without the other.
//! * Rows leave the outbox only through [`Store::acknowledge`], which the sync
//!   calls when the cloud acknowledges a stream at the application level.

mod connection;
pub mod downlink;
pub mod entities;
pub mod keyed_hash;
pub mod outbox;
pub mod queries;
mod reader;
pub mod records;
pub mod schema;
pub mod snapshot;
pub mod status;
mod writer;

pub use keyed_hash::KeyedHasher;
pub use reader::ReadPool;
pub use records::Recorded;

use crate::domain::bopis::TransitionError;
use crate::domain::returns::{Decision, ReturnPolicy};
use crate::events::{Captured, UplinkStream};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;
use writer::{Writer, WriterThread};

/// What opening a store needs.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The database file; created (with its directory) when missing.
    pub path: PathBuf,
    /// How many read-only connections serve queries. The screens issue few,
    /// short queries; 4 covers a console, a kiosk and the sync.
    pub read_connections: usize,
    /// How long a connection waits for a lock held by another process (the CLI's
    /// offline commands) before failing with "database is locked".
    pub busy_timeout: Duration,
    /// Hashes card numbers and pickup codes with the tenant key.
    pub hasher: KeyedHasher,
    /// The rules BORIS returns are checked against.
    pub return_policy: ReturnPolicy,
    /// New POS input (transactions, journal receipts) is refused while the file
    /// system holding the database has less free space than this, so the disk
    /// never fills in the middle of the store's work: what is left serves
    /// checkpoints, acknowledgements and the cloud's messages.
    pub min_free_bytes: u64,
    /// How much a full snapshot load's index rebuild sorts in memory (KiB)
    /// before it writes a sorted run to a temporary file (`SQLITE_TMPDIR`, else
    /// `TMPDIR`, else `/var/tmp`). Small on purpose: SQLite sorts and merges the
    /// runs on a helper thread beside the writer, which a single in-memory run
    /// does not get, so the rebuild takes half as long
    /// ([`DEFAULT_INDEX_SORT_KIB`]; see docs/benchmarks.md).
    pub index_sort_kib: u32,
}

/// The default [`StoreOptions::index_sort_kib`]: 8 MiB.
pub const DEFAULT_INDEX_SORT_KIB: u32 = 8192;

impl StoreOptions {
    /// Options with the defaults documented in the config, for `path` and `hasher`.
    pub fn new(path: impl Into<PathBuf>, hasher: KeyedHasher) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            read_connections: 4,
            busy_timeout: Duration::from_millis(5000),
            hasher,
            return_policy: ReturnPolicy::default(),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            index_sort_kib: DEFAULT_INDEX_SORT_KIB,
        }
    }
}

/// The default of [`StoreOptions::min_free_bytes`] and `database.min_free_bytes`.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 16 << 20;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Migration(#[from] schema::MigrationError),
    /// The store is shutting down; the operation was not done.
    #[error("the store is closed")]
    Closed,
    /// The thing the operation refers to is not in the local store.
    #[error("{what} {id} is not in the local store")]
    NotFound {
        /// Kind of thing, e.g. "order".
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The input breaks a rule the store checks; nothing was written.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which field, e.g. "pos_transaction.currency".
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A BOPIS order event that the state machine does not allow.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The return policy refused the return; the decision carries the reasons.
    #[error("return refused: {}", .0.reasons_text().join(" "))]
    ReturnRefused(Box<Decision>),
    /// A snapshot file could not be imported; nothing was changed.
    #[error("{0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    /// File system trouble around the database.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// New input refused: the disk holding the database is (nearly) full.
    #[error(
        "the disk holding {} is full ({free_bytes} bytes free, {reserve_bytes} kept in reserve): \
         new POS input is refused until space is freed",
        dir.display()
    )]
    NoSpace {
        /// The database's directory.
        dir: PathBuf,
        /// Free bytes there.
        free_bytes: u64,
        /// [`StoreOptions::min_free_bytes`].
        reserve_bytes: u64,
    },
    /// A bug or a crashed helper thread.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The disk (or the file system's quota) is full: nothing was written, and
    /// the same write succeeds once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::NoSpace { .. } => true,
            StoreError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => false,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The local store: a writer thread, a read pool and the settings they share.
pub struct Store {
    writer: Writer,
    writer_thread: Mutex<Option<WriterThread>>,
    reads: ReadPool,
    options: StoreOptions,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, then starts the
    /// writer thread and the read pool.
    pub fn open(options: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                context: format!("cannot create the database directory {}", dir.display()),
                source,
            })?;
        }
        // A full snapshot load that was cut short (killed, power lost) left its
        // new file; the database itself was never touched.
        snapshot::remove_leftovers(&options.path)?;
        let mut conn = connection::open(&options.path, connection::Access::Write, options.busy_timeout)?;
        let applied = schema::migrate(&mut conn)?;
        if !applied.is_empty() {
            tracing::info!(path = %options.path.display(), versions = ?applied, "Database schema migrated.");
        }
        check_key_fingerprint(&conn, &options.hasher)?;
        let reads = ReadPool::open(&options.path, options.read_connections, options.busy_timeout)?;
        let (writer, thread) = Writer::start(conn).map_err(|source| StoreError::Io {
            context: "cannot start the database writer thread".into(),
            source,
        })?;
        Ok(Store {
            writer,
            writer_thread: Mutex::new(Some(thread)),
            reads,
            options,
        })
    }

    /// The read-only connections, for queries.
    pub fn reads(&self) -> &ReadPool {
        &self.reads
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Changes after every write of this process (see the sync's pump, which
    /// skips reading an outbox nothing was written to).
    pub fn write_generation(&self) -> u64 {
        self.writer.generation()
    }

    fn reserve(&self) -> Reserve {
        Reserve {
            dir: database_dir(&self.options.path),
            bytes: self.options.min_free_bytes,
        }
    }

    /// The space on the database's disk, and whether writes fail for lack of it
    /// (a `statvfs`: call off the async runtime).
    pub fn storage(&self) -> status::Storage {
        status::Storage::measure(
            &self.options.path,
            self.options.min_free_bytes,
            self.writer.disk_full_since_ms(),
        )
    }

    /// The keyed hasher of card numbers and pickup codes.
    pub fn hasher(&self) -> &KeyedHasher {
        &self.options.hasher
    }

    /// Finishes queued writes, checkpoints the WAL into the database file and
    /// closes the write connection. Later writes fail with [`StoreError::Closed`].
    /// Blocking: call it from a blocking context (`spawn_blocking`) in async code.
    pub fn close(self) {
        let Store {
            writer,
            writer_thread,
            reads,
            ..
        } = self;
        // Readers first, so the checkpoint is not held back by an open read.
        drop(reads);
        drop(writer);
        let thread = writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            t.join();
        }
    }

    /// Deletes outbox rows of `stream` up to and including `through_seq`, because
    /// the cloud has stored them durably. Returns how many rows went.
    pub async fn acknowledge(&self, stream: UplinkStream, through_seq: i64) -> Result<usize, StoreError> {
        self.writer
            .call(move |conn| outbox::acknowledge(conn, stream, through_seq, crate::events::now_ms()))
            .await
    }

    /// Records a POS transaction and its outbox row. A transaction already recorded
    /// (same idempotency key, or same store, workstation, business day and sequence
    /// number) is reported as [`Recorded::Duplicate`] and not written again.
    pub async fn record_pos_transaction(
        &self,
        tx: Captured<records::PosTransaction>,
    ) -> Result<Recorded, StoreError> {
        let reserve = self.reserve();
        self.writer
            .call(move |conn| {
                reserve.check()?;
                records::record_pos_transaction(conn, &tx)
            })
            .await
    }

    /// Applies a BOPIS order event (check-in, hand-over, expiry, cancellation)
    /// through the state machine and records it for the cloud.
    pub async fn record_order_event(
        &self,
        update: Captured<records::OrderUpdate>,
    ) -> Result<records::OrderEventOutcome, StoreError> {
        self.writer
            .call(move |conn| records::record_order_event(conn, &update))
            .await
    }

    /// Checks a BORIS return against the policy and, if allowed, records it, its
    /// effect on the order and the stock, and its outbox row. A refusal is
    /// [`StoreError::ReturnRefused`] with the decision's reasons.
    pub async fn record_return(
        &self,
        ret: Captured<records::ReturnRecord>,
    ) -> Result<records::ReturnOutcome, StoreError> {
        let policy = self.options.return_policy;
        self.writer
            .call(move |conn| records::record_return(conn, &policy, &ret))
            .await
    }

    /// Applies a wishlist edit made in the store and records it for the cloud.
    pub async fn record_wishlist_edit(
        &self,
        edit: Captured<records::WishlistEdit>,
    ) -> Result<Recorded, StoreError> {
        self.writer
            .call(move |conn| records::record_wishlist_edit(conn, &edit))
            .await
    }

    /// Records a receipt captured by the journal tap, for the cloud.
    pub async fn record_journal_receipt(
        &self,
        receipt: Captured<records::JournalReceipt>,
    ) -> Result<Recorded, StoreError> {
        let reserve = self.reserve();
        self.writer
            .call(move |conn| {
                reserve.check()?;
                records::record_journal_receipt(conn, &receipt)
            })
            .await
    }

    /// Records a scan or engagement event for the cloud (telemetry: sent last).
    pub async fn record_scan_event(
        &self,
        event: Captured<records::ScanEvent>,
    ) -> Result<Recorded, StoreError> {
        self.writer
            .call(move |conn| records::record_scan_event(conn, &event))
            .await
    }

    /// Remembers a device's state for `store-agent status` (not an event for the cloud).
    pub async fn set_device_status(&self, status: records::DeviceStatusRecord) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| records::set_device_status(conn, &status))
            .await
    }

    /// Writes (or replaces) a customer profile as the cloud sent it.
    pub async fn upsert_customer(&self, customer: entities::CustomerRecord) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| entities::upsert_customer(conn, &customer))
            .await
    }

    /// Links a loyalty card number to a customer. Only the keyed hash is stored.
    pub async fn link_loyalty_card(
        &self,
        card_number: String,
        customer_id: String,
    ) -> Result<(), StoreError> {
        let hash = self.options.hasher.card_hash(&card_number);
        drop(card_number);
        self.writer
            .call(move |conn| entities::link_card_hash(conn, &hash, &customer_id))
            .await
    }

    /// Imports a snapshot file, all or nothing (see [`snapshot`]). The writer is
    /// busy for the whole import: other writes wait until it is done.
    pub async fn import_snapshot(
        &self,
        file: &Path,
        expect: snapshot::ImportExpectations,
    ) -> Result<snapshot::ImportReport, StoreError> {
        self.writer.call(self.import_job(file, expect)).await
    }

    /// Imports a snapshot as it streams in (a download), all or nothing: the
    /// transaction commits only if `reader` ends without an error. `label` (the
    /// URL) names the source in errors.
    pub async fn import_snapshot_stream(
        &self,
        label: PathBuf,
        reader: Box<dyn std::io::Read + Send>,
        expect: snapshot::ImportExpectations,
    ) -> Result<snapshot::ImportReport, StoreError> {
        let fingerprint = self.options.hasher.fingerprint();
        let swap = self.swap_target();
        self.writer
            .call(move |conn| {
                snapshot::import_source(
                    conn,
                    &label,
                    snapshot::SnapshotSource::Stream(reader),
                    &fingerprint,
                    &expect,
                    Some(&swap),
                )
            })
            .await
    }

    /// [`Store::import_snapshot`] for callers outside the async runtime (the
    /// CLI's offline `import`, benchmarks).
    pub fn import_snapshot_blocking(
        &self,
        file: &Path,
        expect: snapshot::ImportExpectations,
    ) -> Result<snapshot::ImportReport, StoreError> {
        self.writer.call_blocking(self.import_job(file, expect))
    }

    fn import_job(
        &self,
        file: &Path,
        expect: snapshot::ImportExpectations,
    ) -> impl FnOnce(&mut Connection) -> Result<snapshot::ImportReport, StoreError> + Send + 'static {
        let file = file.to_path_buf();
        let fingerprint = self.options.hasher.fingerprint();
        let swap = self.swap_target();
        move |conn| snapshot::import(conn, &file, &fingerprint, &expect, Some(&swap))
    }

    /// Where a full snapshot's new file goes, and the connections to reopen.
    fn swap_target(&self) -> snapshot::SwapTarget {
        snapshot::SwapTarget {
            db: self.options.path.clone(),
            reads: self.reads.clone(),
            busy_timeout: self.options.busy_timeout,
            index_sort_kib: self.options.index_sort_kib,
        }
    }

    /// Applies a downlink batch received on `topic` (see [`downlink`]).
    pub async fn apply_downlink(
        &self,
        topic: String,
        stream: crate::events::DownlinkStream,
        batch: crate::sync::protocol::DownlinkBatch,
    ) -> Result<downlink::BatchOutcome, StoreError> {
        let mut outcomes = self.apply_downlink_group(vec![(topic, stream, batch)]).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Internal("no outcome for a downlink batch".into()))
    }

    /// Applies several received batches in one transaction, in order: one durable
    /// commit for everything that was waiting. One outcome per batch.
    pub async fn apply_downlink_group(
        &self,
        batches: Vec<downlink::Received>,
    ) -> Result<Vec<downlink::BatchOutcome>, StoreError> {
        self.writer
            .call(move |conn| downlink::apply_batches(conn, &batches, crate::events::now_ms()))
            .await
    }

    /// Keeps input that could not be used (a cloud message that does not parse,
    /// say) in `dead_letters`, with where it came from and why.
    pub async fn dead_letter(
        &self,
        source: String,
        payload: Vec<u8>,
        error: String,
    ) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| downlink::dead_letter(conn, &source, &payload, &error, crate::events::now_ms()))
            .await
    }

    /// Records the MQTT connection's state for `store-agent status`.
    pub async fn set_sync_state(&self, state: status::SyncState) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| status::write_sync_state(conn, &state))
            .await
    }

    /// Runs `f` on the writer thread. For this crate's tests, which need to reach
    /// under the API (fault injection, raw inspection).
    #[cfg(test)]
    pub(crate) async fn with_writer<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.writer.call(f).await
    }
}

/// Remembers the fingerprint of the hashing key on first open and refuses a
/// different key later: every stored card hash would silently stop matching.
fn check_key_fingerprint(conn: &Connection, hasher: &KeyedHasher) -> Result<(), StoreError> {
    let ours = hasher.fingerprint();
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM agent_meta WHERE key = 'loyalty_key_fingerprint'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match stored {
        None => {
            conn.execute(
                "INSERT INTO agent_meta (key, value) VALUES ('loyalty_key_fingerprint', ?1)",
                [&ours],
            )?;
            Ok(())
        }
        Some(s) if s == ours => Ok(()),
        Some(s) => Err(StoreError::invalid(
            "loyalty.hash_key",
            format!(
                "this database was written with the key whose fingerprint is {s}, but the configured \
                 key's fingerprint is {ours}; configure the tenant's key, or start from a new database"
            ),
        )),
    }
}

/// Opens a database file read-only, without migrating it: for `db integrity` and
/// `status`, which must not change what they inspect.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound {
            what: "database file",
            id: path.display().to_string(),
        });
    }
    Ok(connection::open(
        path,
        connection::Access::ReadOnly,
        Duration::from_secs(5),
    )?)
}

/// Result of `PRAGMA integrity_check` and `PRAGMA foreign_key_check`: empty when
/// the file is sound.
pub fn integrity_problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|l| l != "ok")
        .collect();
    let mut fk = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = fk.query_map([], |r| {
        Ok(format!(
            "foreign key violation: {} row {} refers to a missing {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?.map_or("?".into(), |v| v.to_string()),
            r.get::<_, String>(2)?
        ))
    })?;
    for row in rows {
        problems.push(row?);
    }
    Ok(problems)
}

/// The directory SQLite writes the database, its WAL and its journal into.
pub fn database_dir(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The free-space check before new input, run on the writer thread.
struct Reserve {
    dir: PathBuf,
    bytes: u64,
}

impl Reserve {
    fn check(&self) -> Result<(), StoreError> {
        match free_space(&self.dir) {
            Some((free, _)) if free < self.bytes => Err(StoreError::NoSpace {
                dir: self.dir.clone(),
                free_bytes: free,
                reserve_bytes: self.bytes,
            }),
            // Unknown (statvfs failed): SQLite's own disk-full error still guards.
            _ => Ok(()),
        }
    }
}

/// Free bytes (for unprivileged users) and total bytes of the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the struct we pass; it is plain data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

#[cfg(test)]
mod tests;
