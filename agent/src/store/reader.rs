//! A small pool of read-only connections for queries.
//!
//! Queries run on tokio's blocking threads (async callers) or on the caller's own
//! thread (CLI, benchmarks), never on the async runtime's workers. The pool's lock
//! is held only to take or return a connection, never while a query runs and never
//! across an `.await`.

use super::StoreError;
use super::connection::{self, Access};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Read-only connections shared by every query.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Idle>,
    /// Signalled when a connection comes back or the pool is refilled. Waiters
    /// are of two kinds (queries waiting for a connection, a drain waiting for
    /// all of them), so every change wakes all of them.
    returned: Condvar,
    /// Queries run so far (for tests and diagnostics of idle load).
    queries: AtomicU64,
    path: PathBuf,
    size: usize,
    busy_timeout: Duration,
}

struct Idle {
    conns: Vec<Connection>,
    /// Set by [`ReadPool::drain`] until [`ReadPool::refill`]: queries wait.
    paused: bool,
    /// Why the connections could not be reopened after a file swap; queries fail.
    broken: Option<String>,
}

impl ReadPool {
    /// Opens `size` read-only connections to `path`.
    pub(crate) fn open(path: &Path, size: usize, busy_timeout: Duration) -> Result<ReadPool, StoreError> {
        let size = size.max(1);
        let conns = open_all(path, size, busy_timeout)?;
        Ok(ReadPool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Idle {
                    conns,
                    paused: false,
                    broken: None,
                }),
                returned: Condvar::new(),
                queries: AtomicU64::new(0),
                path: path.to_path_buf(),
                size,
                busy_timeout,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every connection is back, then closes them all; queries wait
    /// until [`ReadPool::refill`]. For replacing the database file: no connection
    /// may keep the old file open. Called on the writer thread, which no query
    /// waits for, so the wait ends when the running queries end.
    pub(crate) fn drain(&self) {
        let conns = {
            let mut idle = self.lock();
            idle.paused = true;
            while idle.broken.is_none() && idle.conns.len() < self.inner.size {
                idle = self.inner.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut idle.conns)
        };
        // Closed outside the lock.
        drop(conns);
    }

    /// Opens the connections again (to the file now at the pool's path) and
    /// lets the waiting queries go on. If they cannot be opened, queries fail
    /// with the reason from now on.
    pub(crate) fn refill(&self) -> Result<(), StoreError> {
        let opened = open_all(&self.inner.path, self.inner.size, self.inner.busy_timeout);
        let mut idle = self.lock();
        idle.paused = false;
        let result = match opened {
            Ok(conns) => {
                idle.conns = conns;
                idle.broken = None;
                Ok(())
            }
            Err(e) => {
                idle.broken = Some(format!(
                    "the read connections to {} could not be reopened: {e}",
                    self.inner.path.display()
                ));
                Err(e)
            }
        };
        drop(idle);
        self.inner.returned.notify_all();
        result
    }

    /// How many queries the pool has run.
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Runs `f` with a connection on the current thread, waiting for one if all are
    /// busy. For callers outside the async runtime.
    pub fn with<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let conn = {
            let mut idle = self.lock();
            loop {
                if !idle.paused {
                    if let Some(c) = idle.conns.pop() {
                        break c;
                    }
                    if let Some(why) = &idle.broken {
                        return Err(StoreError::Internal(why.clone()));
                    }
                }
                idle = self.inner.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            }
        };
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        let result = f(&conn);
        self.lock().conns.push(conn);
        self.inner.returned.notify_all();
        result
    }

    /// Runs `f` on a blocking thread and awaits its result.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| StoreError::Internal(format!("query task failed: {e}")))?
    }
}

fn open_all(path: &Path, size: usize, busy_timeout: Duration) -> Result<Vec<Connection>, StoreError> {
    Ok((0..size)
        .map(|_| connection::open(path, Access::ReadOnly, busy_timeout))
        .collect::<Result<Vec<_>, _>>()?)
}
