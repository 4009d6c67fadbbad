//! The writer actor: one thread owns the only write connection.
//!
//! **Invariant:** every write to the database goes through this thread. Callers
//! send a job over a bounded channel and await its result; the job runs on the
//! thread, never on the async runtime. Serialising writes here costs nothing SQLite
//! would not cost anyway (it allows one writer at a time) and removes every
//! `SQLITE_BUSY` between our own writers.

use super::StoreError;
use rusqlite::Connection;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// How many jobs may wait for the writer before senders wait in turn.
const QUEUE_DEPTH: usize = 256;

thread_local! {
    /// Helper threads a job on the writer thread started and the writer must wait
    /// for before its final checkpoint (the WAL checkpoint after a snapshot load).
    static HELPERS: RefCell<Vec<JoinHandle<()>>> = const { RefCell::new(Vec::new()) };
}

/// Called from a job running on the writer thread: the thread joins `helper`
/// before it checkpoints and closes at shutdown. Finished helpers are joined here.
pub(crate) fn keep_helper(helper: JoinHandle<()>) {
    HELPERS.with(|h| {
        let mut h = h.borrow_mut();
        let (done, running): (Vec<_>, Vec<_>) = h.drain(..).partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        *h = running;
        h.push(helper);
    });
}

/// Called from a job on the writer thread: waits for every helper it started
/// (before the database file is replaced, no helper may hold the old one open).
pub(crate) fn join_helpers() {
    for helper in HELPERS.with(|h| std::mem::take(&mut *h.borrow_mut())) {
        if helper.join().is_err() {
            tracing::error!("A helper thread of the SQLite writer panicked.");
        }
    }
}

/// A handle to the writer thread. Cloning is cheap; the thread stops when the
/// last handle is dropped or [`Writer::shutdown`] is called.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    disk_full: Arc<AtomicI64>,
    /// Jobs run so far: changes whenever anything may have been written.
    generation: Arc<AtomicU64>,
}

/// Notes what a write's result says about the disk: a disk-full failure sets
/// the time it began (kept while writes keep failing), a success clears it.
/// Other failures say nothing about space.
fn note_disk<R>(disk_full: &AtomicI64, result: &Result<R, StoreError>) {
    match result {
        Ok(_) => {
            if disk_full.swap(0, Ordering::Relaxed) != 0 {
                tracing::info!("The disk has space again: writes succeed.");
            }
        }
        Err(e) if e.is_disk_full() => {
            let now = crate::events::now_ms().max(1);
            if disk_full
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::error!(error = %e, "The disk is full: new POS input is refused until space is freed.");
            }
        }
        Err(_) => {}
    }
}

/// Joins the writer thread; held by the [`super::Store`] that started it.
pub(crate) struct WriterThread {
    handle: JoinHandle<()>,
}

impl Writer {
    /// Starts the thread with `conn` as its connection. When the job channel closes,
    /// the thread checkpoints the WAL into the main file and closes the connection.
    pub(crate) fn start(conn: Connection) -> std::io::Result<(Writer, WriterThread)> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
                join_helpers();
                // Fold the WAL back into the database so a stopped agent leaves one
                // self-contained file (backups, copies, `db integrity` from a rescue disk).
                fold_wal(&conn, "shutdown");
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %e, "Closing the write connection failed.");
                }
            })?;
        Ok((
            Writer {
                jobs,
                disk_full: Arc::new(AtomicI64::new(0)),
                generation: Arc::new(AtomicU64::new(0)),
            },
            WriterThread { handle },
        ))
    }

    /// Runs `f` on the writer thread and returns its result.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(self.job(f, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// `f` as a job for the thread: it runs, counts in the write generation and
    /// the disk-full note, and its result goes to `reply`.
    fn job<R, F>(&self, f: F, reply: oneshot::Sender<Result<R, StoreError>>) -> Job
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (disk_full, generation) = (self.disk_full.clone(), self.generation.clone());
        Box::new(move |conn| {
            let result = f(conn);
            generation.fetch_add(1, Ordering::Release);
            note_disk(&disk_full, &result);
            let _ = reply.send(result);
        })
    }

    /// A number that changes after every write job (committed or not): equal
    /// values mean this process wrote nothing in between.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Since when (Unix ms) writes fail because the disk is full; `None` while
    /// the last write that said anything about space succeeded.
    pub(crate) fn disk_full_since_ms(&self) -> Option<i64> {
        Some(self.disk_full.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Like [`Writer::call`], for callers outside the async runtime (the CLI's
    /// offline commands, benchmarks). Must not be called from an async task.
    pub(crate) fn call_blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .blocking_send(self.job(f, reply))
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

impl WriterThread {
    /// Waits for the thread to finish its queue, checkpoint and close.
    pub(crate) fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("The SQLite writer thread panicked.");
        }
    }
}

/// Folds the WAL back into the database file and truncates it (`why` goes to the
/// log). A busy reader leaves part of it in place: logged, not an error, since
/// the next checkpoint folds the rest.
pub(super) fn fold_wal(conn: &Connection, why: &str) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    }) {
        Ok((0, log, done)) => tracing::debug!(why, log, done, "WAL checkpointed."),
        Ok((busy, log, done)) => {
            tracing::warn!(
                why,
                busy,
                log,
                done,
                "WAL checkpoint incomplete: a reader was busy."
            )
        }
        Err(e) => tracing::warn!(why, error = %e, "WAL checkpoint failed."),
    }
}
