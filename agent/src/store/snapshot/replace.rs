//! A full snapshot is loaded into a new database file, which then replaces the
//! live one in one `rename(2)`.
//!
//! A snapshot that replaces every cached table would, loaded in place, go
//! through the WAL twice (once at the commit, once at the checkpoint) and keep
//! the writer busy for both. The new file is written without a journal, with
//! one `fsync` at the end: if anything fails or the process dies before the
//! rename, the new file is an unfinished leftover (deleted at the next start)
//! and the live database was never touched. What the agent recorded itself
//! (outbox, POS transactions, returns, journal, dead letters, settings) is
//! copied into the new file before the load, in the same writer job, so no
//! write can come in between.
//!
//! The swap: the read pool is drained (queries wait a few milliseconds), the
//! writer's checkpoint helper joined, the old WAL checkpointed to empty and
//! every connection closed. SQLite deletes `-wal` and `-shm` when the last
//! connection of any process closes; if they are still there, another process
//! (an offline CLI command, a monitoring script, `sqlite3`) has the file open.
//! Swapping then would be wrong: that process would share its `-shm`, which
//! says how big the database is, with the new file. So the agent reopens the
//! live database at once and copies the loaded tables from the new file into it
//! in one transaction instead — slower (through the WAL), with the same result.
//! Otherwise the new file is renamed over the old one, the directory synced,
//! and the connections reopened on it. A process that opened the old file in
//! the moment between the check and the rename finds no WAL to share, and sees
//! SQLite's own protection: its writes fail with `SQLITE_READONLY_DBMOVED`, and
//! its close neither checkpoints nor deletes the new file's WAL.

use super::super::connection::{self, Access};
use super::super::{ReadPool, StoreError, schema};
use super::{
    BULK_CACHE_KIB, Batch, ImportReport, SnapshotError, SnapshotHeader, clear_tables, covered_streams,
    finish_load, insert_records,
};
use crate::events::DownlinkStream;
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the swap went, when it did not fail.
enum Swap {
    /// The new file is the database now.
    Done,
    /// Another process has the live file open (the reason says how it shows):
    /// the live database is open again, unchanged.
    OthersOpen(String),
}

/// What the import needs to replace the database file.
#[derive(Clone)]
pub(crate) struct SwapTarget {
    /// The live database file.
    pub db: PathBuf,
    /// The store's read pool, drained and refilled around the swap.
    pub reads: ReadPool,
    /// The store's busy timeout, for the reopened write connection.
    pub busy_timeout: Duration,
    /// The page cache (KiB) while the indexes are rebuilt
    /// ([`StoreOptions::index_sort_kib`](super::super::StoreOptions::index_sort_kib)).
    pub index_sort_kib: u32,
}

/// Whether the snapshot replaces every table the cloud fills: then it is
/// loaded into a new file.
pub(super) fn is_full(header: &SnapshotHeader) -> bool {
    let covered = covered_streams(header);
    DownlinkStream::ALL
        .iter()
        .filter(|s| !s.tables().is_empty())
        .all(|s| covered.contains(s))
}

/// The file a full snapshot is loaded into, next to the database.
pub(crate) fn loading_path(db: &Path) -> PathBuf {
    suffixed(db, ".loading")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Deletes the new file of a load next to `db` and its journal files: at start
/// what an unfinished load left, after a load what it did not rename (it failed,
/// or was copied into the live database).
pub(crate) fn remove_leftovers(db: &Path) -> Result<(), StoreError> {
    let loading = loading_path(db);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let file = suffixed(&loading, suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => tracing::info!(
                file = %file.display(),
                "Removed a snapshot load's new file (left by an unfinished or failed load, or already copied)."
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("cannot remove the unfinished snapshot load {}", file.display()),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Loads a full snapshot into a new file and swaps it in (see the module
/// documentation). `conn` is the writer's connection; it is replaced by one to
/// the new file. On error the live database is as it was.
pub(super) fn load_into_new_file(
    conn: &mut Connection,
    target: &SwapTarget,
    path: &Path,
    header: &SnapshotHeader,
    batches: mpsc::Receiver<Result<Batch, SnapshotError>>,
    spent: mpsc::SyncSender<Batch>,
) -> Result<ImportReport, StoreError> {
    remove_leftovers(&target.db)?;
    let new_file = loading_path(&target.db);
    let started = Instant::now();
    let result = build(conn, target, &new_file, path, header, batches, spent).and_then(|report| {
        let built = Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match swap_in(conn, target, &new_file)? {
            Swap::Done => tracing::info!(
                file = %target.db.display(),
                build_ms = ms(built - started),
                swap_ms = ms(built.elapsed()),
                "Full snapshot loaded into a new database file, which replaced the old one."
            ),
            Swap::OthersOpen(why) => {
                tracing::warn!(
                    file = %target.db.display(),
                    why,
                    "Another process has the database open: the snapshot is copied into it in place \
                     (slower) instead of replacing the file."
                );
                copy_into_live(conn, &new_file, header)?;
                tracing::info!(
                    file = %target.db.display(),
                    build_ms = ms(built - started),
                    copy_ms = ms(built.elapsed()),
                    "Full snapshot loaded, copied into the live database."
                );
            }
        }
        Ok(report)
    });
    // Nothing is left after a swap; after a failure or a copy, the new file is.
    let cleaned = remove_leftovers(&target.db);
    match (result, cleaned) {
        (Ok(report), cleaned) => cleaned.map(|()| report),
        (Err(e), cleaned) => {
            if let Err(c) = cleaned {
                tracing::warn!(error = %c, "The unfinished snapshot load stays until the next start.");
            }
            Err(e)
        }
    }
}

/// Writes the new file: schema, the agent's own rows copied from the live
/// database, then the snapshot; fsynced, in WAL mode, closed.
fn build(
    live: &Connection,
    target: &SwapTarget,
    new_file: &Path,
    path: &Path,
    header: &SnapshotHeader,
    batches: mpsc::Receiver<Result<Batch, SnapshotError>>,
    spent: mpsc::SyncSender<Batch>,
) -> Result<ImportReport, StoreError> {
    let page_size: i64 = live.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let auto_vacuum: i64 = live.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    let mut new = connection::open(new_file, Access::Build, target.busy_timeout)?;
    // Both before the first table exists.
    new.pragma_update(None, "page_size", page_size)?;
    new.pragma_update(None, "auto_vacuum", auto_vacuum)?;
    new.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
    // Helper threads for the index rebuild's sorter (see `index_sort_kib`); the
    // parser thread has ended by then, so its core is free.
    new.pragma_update(None, "threads", 2)?;
    schema::migrate(&mut new)?;
    let covered = covered_streams(header);
    let covered_tables: Vec<&str> = covered.iter().flat_map(|s| s.tables().iter().copied()).collect();
    copy_local_rows(&mut new, &target.db, &covered_tables)?;
    let writeback = Writeback::start(new_file);
    let mut phases = Phases::start();
    let report = {
        let tx = new.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let indexes = clear_tables(&tx, &covered)?;
        let report = insert_records(&tx, path, &covered, batches, spent)?;
        phases.mark("insert_ms");
        // The sorter of an index rebuild keeps as much in memory as the page cache
        // holds before it writes a sorted run to a temporary file, and only runs
        // are sorted and merged by its helper thread: with the bulk cache, an
        // index of a million keys is one run, sorted on this thread alone while
        // the other core idles. A small cache for the rebuild halves it.
        tx.pragma_update(None, "cache_size", -i64::from(target.index_sort_kib))?;
        finish_load(&tx, path, header, &indexes)?;
        phases.mark("index_ms");
        tx.commit()?;
        phases.mark("commit_ms");
        report
    };
    // The file header says WAL from now on; closing the only connection folds
    // the (tiny) WAL of that change back and deletes it.
    connection::set_journal_mode(&new, "WAL")?;
    new.close().map_err(|(_, e)| StoreError::Sqlite(e))?;
    if let Some(file) = wal_left(new_file) {
        return Err(StoreError::Internal(format!(
            "{} is still there after the new database file was closed",
            file.display()
        )));
    }
    phases.mark("wal_ms");
    writeback.stop();
    std::fs::File::open(new_file)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::Io {
            context: format!("cannot flush the new database file {}", new_file.display()),
            source,
        })?;
    phases.mark("fsync_ms");
    tracing::debug!(phases = %phases, "New database file built.");
    Ok(report)
}

/// Starts the disk writing the new file while it is being built, so the one
/// fsync at the end waits only for the last pages: a helper thread asks the
/// kernel every [`Writeback::EVERY`] to write out the file's dirty pages
/// (`sync_file_range`, `SYNC_FILE_RANGE_WRITE`: it starts the writes, waits for
/// none). The kernel would otherwise leave them in memory (its background
/// writeback starts at 10 % of RAM dirty, or after 30 s) and the fsync would
/// write the whole file, some 600 MB for a 1M-customer store, with the load
/// waiting. Only a hint: durability is the final fsync's.
struct Writeback(Option<(mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>);

impl Writeback {
    const EVERY: Duration = Duration::from_millis(250);

    fn start(file: &Path) -> Writeback {
        // The helper runs until the sender is dropped.
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let file = file.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("snapshot-writeback".into())
            .spawn(move || {
                let written = std::fs::File::open(&file).and_then(|f| {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Writeback::EVERY) {
                        start_writing(&f)?;
                    }
                    Ok(())
                });
                if let Err(e) = written {
                    tracing::debug!(file = %file.display(), error = %e, "No early writeback.");
                }
            });
        match thread {
            Ok(thread) => Writeback(Some((stop, thread))),
            Err(e) => {
                tracing::debug!(error = %e, "No early writeback: no thread.");
                Writeback(None)
            }
        }
    }

    /// Stops the helper and waits for it (as dropping it does, when the build fails).
    fn stop(self) {}
}

impl Drop for Writeback {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.0.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// Asks the kernel to start writing `f`'s dirty pages.
#[cfg(target_os = "linux")]
fn start_writing(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor, whole-file range, flags only start writes.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writing(_f: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Milliseconds of the steps of a build, for the log.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, u128)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, (now - self.last).as_millis()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.done.iter().enumerate() {
            write!(f, "{}{name}={ms}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// Copies every row the snapshot does not replace (the tables not in
/// `replaced`, all stream positions) from the live database at `live` into
/// `new`, in one transaction.
fn copy_local_rows(new: &mut Connection, live: &Path, replaced: &[&str]) -> Result<(), StoreError> {
    with_attached(new, live, "live", |new| {
        let tx = new.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let versions: (i64, i64) = tx.query_row(
            "SELECT (SELECT user_version FROM main.pragma_user_version),
                    (SELECT user_version FROM live.pragma_user_version)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if versions.0 != versions.1 {
            return Err(StoreError::Internal(format!(
                "the live database has schema version {}, the new file {}",
                versions.1, versions.0
            )));
        }
        // In creation order, so a table comes before the tables that refer to it.
        let tables: Vec<String> = tx
            .prepare(
                "SELECT name FROM main.sqlite_schema
                 WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for table in tables.iter().filter(|t| !replaced.contains(&t.as_str())) {
            tx.execute(&format!("DELETE FROM main.\"{table}\""), [])?;
            copy_table(&tx, "live", table, "")?;
        }
        tx.commit()?;
        Ok(())
    })
}

/// Runs `f` with the database file `file` attached to `conn` as `alias`, and
/// detaches it afterwards, whatever `f` returned.
fn with_attached<R>(
    conn: &mut Connection,
    file: &Path,
    alias: &str,
    f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let name = file
        .to_str()
        .ok_or_else(|| StoreError::Internal(format!("the path {} is not UTF-8", file.display())))?;
    conn.execute(&format!("ATTACH DATABASE ?1 AS {alias}"), [name])?;
    let result = f(conn);
    let detached = conn.execute(&format!("DETACH DATABASE {alias}"), []);
    let out = result?;
    detached?;
    Ok(out)
}

/// `INSERT INTO main.table SELECT … FROM from.table` with the columns by name,
/// and `filter` (a `WHERE` clause, or empty) after it.
fn copy_table(conn: &Connection, from: &str, table: &str, filter: &str) -> Result<(), StoreError> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM main.pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |r| r.get::<_, String>(0))?
        .map(|c| c.map(|c| format!("\"{}\"", c.replace('"', "\"\""))))
        .collect::<Result<_, _>>()?;
    let columns = columns.join(", ");
    conn.execute(
        &format!(
            "INSERT INTO main.\"{table}\" ({columns}) SELECT {columns} FROM {from}.\"{table}\" {filter}"
        ),
        [],
    )?;
    Ok(())
}

/// Replaces the live database by `new_file` and reopens every connection on it.
/// Before the rename, a failure reopens the live database and is returned.
fn swap_in(conn: &mut Connection, target: &SwapTarget, new_file: &Path) -> Result<Swap, StoreError> {
    target.reads.drain();
    super::super::writer::join_helpers();
    let before_rename = (|| {
        if let Some(why) = release_live(conn, target)? {
            return Ok(Some(why));
        }
        std::fs::rename(new_file, &target.db).map_err(|source| StoreError::Io {
            context: format!(
                "cannot move the new database file {} to {}",
                new_file.display(),
                target.db.display()
            ),
            source,
        })?;
        Ok(None)
    })();
    match before_rename {
        Ok(None) => {}
        Ok(Some(why)) => {
            reopen(conn, target)?;
            return Ok(Swap::OthersOpen(why));
        }
        Err(e) => {
            return Err(match reopen(conn, target) {
                Ok(()) => e,
                Err(again) => {
                    StoreError::Internal(format!("{e}; then reopening the database failed: {again}"))
                }
            });
        }
    }
    // The rename must be on disk before anything is written to the new file.
    if let Some(dir) = target.db.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
    {
        tracing::warn!(dir = %dir.display(), error = %e, "Cannot sync the database directory after the swap.");
    }
    reopen(conn, target)?;
    Ok(Swap::Done)
}

/// Checkpoints the live WAL to empty and closes the write connection. Returns
/// how another process shows that it has the file open, if one does.
fn release_live(conn: &mut Connection, target: &SwapTarget) -> Result<Option<String>, StoreError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        return Ok(Some(
            "its WAL could not be emptied: another connection is reading".into(),
        ));
    }
    let live = std::mem::replace(conn, Connection::open_in_memory()?);
    live.close().map_err(|(_, e)| StoreError::Sqlite(e))?;
    Ok(wal_left(&target.db).map(|file| {
        format!(
            "{} is still there after the agent closed its connections",
            file.display()
        )
    }))
}

/// The `-wal` or `-shm` file of `db`, if one exists: SQLite deletes both when
/// the last connection (of any process) closes.
fn wal_left(db: &Path) -> Option<PathBuf> {
    ["-wal", "-shm"]
        .into_iter()
        .map(|suffix| suffixed(db, suffix))
        .find(|file| file.exists())
}

/// The fallback when the file cannot be replaced: copies the tables the
/// snapshot replaces, and its stream positions, from the finished `new_file`
/// into the live database, in one transaction.
fn copy_into_live(conn: &mut Connection, new_file: &Path, header: &SnapshotHeader) -> Result<(), StoreError> {
    let covered = covered_streams(header);
    with_attached(conn, new_file, "loaded", |conn| {
        super::in_place(conn, |tx| {
            let indexes = clear_tables(tx, &covered)?;
            for stream in &covered {
                // A stream's tables are listed children first; parents go in first.
                for table in stream.tables().iter().rev() {
                    copy_table(tx, "loaded", table, "")?;
                }
                let only = format!("WHERE stream = '{}'", stream.as_str());
                copy_table(tx, "loaded", "downlink_streams", &only)?;
            }
            for sql in &indexes {
                tx.execute_batch(sql)?;
            }
            Ok(())
        })
    })
}

/// Opens the write connection and the read pool on the file at the database path.
fn reopen(conn: &mut Connection, target: &SwapTarget) -> Result<(), StoreError> {
    let opened = connection::open(&target.db, Access::Write, target.busy_timeout);
    let refilled = target.reads.refill();
    *conn = opened?;
    refilled
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The early writeback is accepted by the kernel for a file being written, and
    /// its helper ends when stopped or dropped, also for a file that is not there.
    #[test]
    fn early_writeback_runs_beside_the_writes_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![7u8; 4 << 20]).unwrap();
        start_writing(&std::fs::File::open(&path).unwrap()).expect("sync_file_range takes the flags");

        let writeback = Writeback::start(&path);
        for _ in 0..3 {
            file.write_all(&vec![9u8; 1 << 20]).unwrap();
            std::thread::sleep(Writeback::EVERY);
        }
        let (_, helper) = writeback.0.as_ref().expect("a helper thread runs");
        assert!(!helper.is_finished(), "it waits for the stop");
        writeback.stop();
        file.sync_all().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 7 << 20);

        // Dropped without a stop (a failed build), and for a missing file.
        drop(Writeback::start(&path));
        let missing = Writeback::start(&dir.path().join("missing.db"));
        let (_, helper) = missing.0.as_ref().expect("a helper thread");
        let until = Instant::now() + Duration::from_secs(30);
        while !helper.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            helper.is_finished(),
            "nothing to write back: the helper ends by itself"
        );
        missing.stop();
    }
}
