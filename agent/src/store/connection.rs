//! Opening SQLite connections with the settings every part of the agent relies on.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// The size (bytes) the WAL file is cut back to after a checkpoint restarts it.
pub(crate) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How a connection is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The single write connection, owned by the writer thread.
    Write,
    /// A query connection: SQLite refuses any write through it.
    ReadOnly,
    /// The connection that builds a new database file before it replaces the
    /// live one (`snapshot/replace.rs`): no journal and no fsync, since until
    /// the rename a failure only leaves a file to delete.
    Build,
}

/// Opens `path` with the agent's pragmas.
///
/// WAL lets readers run beside the writer; `synchronous=FULL` makes a commit
/// durable before it returns, which the outbox promise needs (NORMAL could lose the
/// last commits on power loss, and a POS transaction the agent acknowledged is
/// exactly such a commit).
pub(crate) fn open(path: &Path, access: Access, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = match access {
        Access::Write | Access::Build => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    // The build connection loads snapshot records whose lines travel inside their
    // cart or order, and copies rows that were consistent in the live file: it
    // has nothing for foreign keys to catch, and checking them costs the load a
    // parent lookup per line.
    conn.pragma_update(None, "foreign_keys", access != Access::Build)?;
    // Keep temporary b-trees (sorts, big IN lists) in memory; the data is small.
    // Not for the build connection: its index rebuilds sort millions of keys, and
    // SQLite's sorter uses its helper threads (`PRAGMA threads`) only with a
    // temporary store on files (deleted at once; they mostly stay in the page
    // cache).
    conn.pragma_update(
        None,
        "temp_store",
        if access == Access::Build { "FILE" } else { "MEMORY" },
    )?;
    // A larger statement cache: the screens' queries are few and hot.
    conn.set_prepared_statement_cache_capacity(64);
    // Map the file instead of copying pages through read(2): a lookup then costs
    // memory reads, not a system call per B-tree page. 256 MiB of address space
    // covers the hot part of a 1M-customer store and fits 32-bit ARM devices.
    conn.pragma_update(None, "mmap_size", 256i64 * 1024 * 1024)?;
    if access == Access::Build {
        set_journal_mode(&conn, "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
    }
    if access == Access::Write {
        set_journal_mode(&conn, "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Erased customers must not linger in free pages (see ARCHITECTURE.md, privacy).
        conn.pragma_update(None, "secure_delete", true)?;
        // A big transaction (a snapshot load) grows the WAL to the size of the data;
        // once checkpointed and restarted, the file is cut back to this size instead
        // of keeping hundreds of megabytes of a small device's disk.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    }
    Ok(conn)
}

/// Sets the journal mode, failing if SQLite keeps another one.
pub(crate) fn set_journal_mode(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    let got: String = conn.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))?;
    if got.eq_ignore_ascii_case(mode) {
        Ok(())
    } else {
        Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode {mode} not available (got {got}); is the database on a network file system?"
        )))
    }
}
