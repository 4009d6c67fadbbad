//! A small pool of read-only connections for queries.
//!
//! Queries run on tokio's blocking threads (async callers) or on the caller's own
//! thread (CLI, benchmarks), never on the async runtime's workers. The pool's lock
//! is held only to take or return a connection, never while a query runs and never
//! across an `.await`.

use super::StoreError;
use super::connection::{self, Access};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Read-only connections shared by every query.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    /// Queries run so far (for tests and diagnostics of idle load).
    queries: AtomicU64,
}

impl ReadPool {
    /// Opens `size` read-only connections to `path`.
    pub(crate) fn open(path: &Path, size: usize, busy_timeout: Duration) -> Result<ReadPool, StoreError> {
        let conns = (0..size.max(1))
            .map(|_| connection::open(path, Access::ReadOnly, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadPool {
            inner: Arc::new(Inner {
                idle: Mutex::new(conns),
                returned: Condvar::new(),
                queries: AtomicU64::new(0),
            }),
        })
    }

    /// How many queries the pool has run.
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Runs `f` with a connection on the current thread, waiting for one if all are
    /// busy. For callers outside the async runtime.
    pub fn with<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let conn = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = idle.pop() {
                    break c;
                }
                idle = self.inner.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            }
        };
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        let result = f(&conn);
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.inner.returned.notify_one();
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
