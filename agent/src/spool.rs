//! The POSLog spool folder: POS transaction files in, recorded transactions out.
//!
//! Many POS systems log each finished transaction (or a batch) as an ARTS POSLog
//! XML file in a folder. [`run_spool`] watches that folder (`[spool] path`): it
//! reads each complete file, records every transaction in it through
//! [`Store::record_pos_transaction`] (state change and outbox row, one SQLite
//! transaction each), and then moves the file to `processed/`. A file that cannot
//! be read as POSLog, or whose transactions cannot be mapped, goes to `rejected/`
//! with `NAME.reason` beside it saying what is wrong and where, for a person to
//! look at.
//!
//! # Which files are taken
//!
//! The folder is scanned at start and then every `rescan_ms` (polling: it works
//! the same on every file system, network shares included, and a missed
//! notification cannot strand a file).
//!
//! * Only entries directly in the folder: subfolders (`processed/`, `rejected/`,
//!   anything else) are left alone.
//! * Names starting with `.` or ending in `.tmp` or `.part` are ignored: a POS that
//!   writes under a temporary name and renames the finished file into place (the
//!   recommended way) is never seen half-way.
//! * A symbolic link is never followed: it is moved (the link itself) to
//!   `rejected/` with a reason. Other non-regular entries (FIFOs, sockets, device
//!   nodes) are rejected the same way, unopened. No file outside the folder is
//!   ever touched. The file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked
//!   again after opening, so a link swapped in after the scan is not followed
//!   either.
//! * **Stability rule.** A regular file is taken only when its size,
//!   modification time and inode were the same at two consecutive scans at least
//!   `rescan_ms` apart. A POS writing straight into the final name keeps changing
//!   the size or the modification time, so its file waits. Whether another
//!   process still has the file open for writing is *not* checked (there is no
//!   portable, cheap way; scanning `/proc` would be neither): a writer that pauses
//!   for longer than `rescan_ms` in the middle of a file should use a temporary
//!   name. Files already in the folder at start are taken at the second scan.
//! * A stable file larger than `max_file_bytes` is rejected unread.
//!
//! # Invariant: commit before move
//!
//! A file leaves the folder for `processed/` only after **every** transaction in
//! it has been committed (or found already recorded). If recording fails (disk
//! full, database locked, the store closing), the file stays where it is and is
//! tried again at the next scan. Retrying is harmless: a transaction is
//! recognised as already recorded by its natural key (store, workstation,
//! business day, sequence number), so a file taken twice — after a crash between
//! commit and move, or dropped again by the POS — records each transaction once.
//!
//! A file is parsed and every transaction mapped *before* any is recorded, so a
//! malformed file records nothing.
//!
//! # Privacy
//!
//! Loyalty account numbers are never stored (only a `Customer/CustomerID` is
//! kept as the customer id); vendor-extension lines, which can carry CRM and
//! membership data, are not copied. Log lines carry file names and counts; a
//! rejection reason is logged, and written to `NAME.reason`, with long digit runs
//! masked.
//!
//! The files kept in `processed/` and `rejected/` hold no card or loyalty number
//! either: a file with one is not renamed but copied there with those digits
//! masked ([`firmware_interfaces::poslog::redact`]: same length, same XML, item
//! ids kept), and the original is removed after the copy is synced. A file too
//! large to parse is masked while it is copied. When the disk has no room for the
//! copy (its size plus 64 MiB), the file stays in the spool folder, with an error
//! in the log at every scan, until there is. Symbolic links and other
//! non-regular entries are moved unopened: they have no contents of their own.

use crate::config::SpoolConfig;
use crate::domain::money::Currency;
use crate::events::Captured;
use crate::store::records::{PosLine, PosTransaction};
use crate::store::{KeyedHasher, Recorded, Store};
use anyhow::{Context, bail};
use firmware_interfaces::poslog::{LineItem, PosLogTransaction, parse_poslog, to_minor_units};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What lands in `processed/` or `rejected/`: never a card or loyalty number.
enum Contents {
    /// The file itself, renamed: it holds nothing to mask, or it was not read
    /// because it is no regular file.
    AsIs,
    /// A copy of the file, read whole, with its card and loyalty numbers masked.
    Masked(Vec<u8>),
    /// A masked copy streamed from the file, which is too large to hold.
    MaskedStream,
}

impl Contents {
    /// What to write for a file read whole.
    fn of(bytes: Vec<u8>) -> Contents {
        let mut masked = bytes.clone();
        firmware_interfaces::poslog::redact(&mut masked);
        if masked == bytes {
            Contents::AsIs
        } else {
            Contents::Masked(masked)
        }
    }
}

/// The folder, under the spool folder, that receives recorded files.
pub const PROCESSED_DIR: &str = "processed";
/// The folder, under the spool folder, that receives refused files and their reasons.
pub const REJECTED_DIR: &str = "rejected";

/// Watches the spool folder until `shutdown` completes.
///
/// Creates `processed/` and `rejected/` when missing, scans at once and then every
/// `config.rescan_ms`. `store_id` and `currency` (the `[store]` settings) stand in
/// for a transaction that does not name its store or currency.
///
/// Stopping is prompt: the shutdown future is polled alongside every scan. A scan
/// cut short is harmless (see the module doc): a file is moved only after its
/// transactions are committed, and a file taken again records nothing twice.
///
/// # Errors
///
/// When `config.path` is not set, the currency is not an ISO 4217 code, or the
/// folders cannot be created. Trouble with single files never ends the task.
pub async fn run_spool(
    store: Arc<Store>,
    config: SpoolConfig,
    store_id: String,
    currency: String,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut spool = tokio::select! {
        spool = Spool::open(store, &config, store_id, currency) => spool?,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(path = %spool.dir.display(), rescan_ms = config.rescan_ms, "Spool folder watched.");
    loop {
        tokio::select! {
            _ = spool.scan() => {}
            () = &mut shutdown => break,
        }
        tokio::select! {
            () = tokio::time::sleep(spool.rescan) => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!(path = %spool.dir.display(), "Spool folder no longer watched.");
    Ok(())
}

/// The spool folder's state between scans: where it is, what it records into,
/// and what each waiting file looked like at the last scan.
pub struct Spool {
    /// Where transactions are recorded.
    store: Arc<Store>,
    /// The store's keyed hasher, for the mapping. A copy, so that no blocking
    /// task ever holds the store itself (the runtime unwraps its `Arc` at shutdown).
    hasher: KeyedHasher,
    /// The spool folder.
    dir: PathBuf,
    /// `dir/processed`.
    processed: PathBuf,
    /// `dir/rejected`.
    rejected: PathBuf,
    /// The store id for transactions that name none.
    store_id: String,
    /// The currency for transactions that name none (checked at open).
    currency: String,
    /// Files above this size are rejected unread.
    max_file_bytes: u64,
    /// The scan interval, and the least time a file must stay unchanged.
    rescan: Duration,
    /// Each regular file seen at the last scan, by name: the stability rule
    /// compares the next scan with it.
    seen: HashMap<OsString, Observation>,
}

/// What a regular file looked like at a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStat {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: SystemTime,
}

/// A file's state at the scan where it was last seen changed (or first seen).
#[derive(Debug, Clone, Copy)]
struct Observation {
    stat: FileStat,
    since: Instant,
}

/// What one scan did; for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Files whose transactions were all committed and which moved to `processed/`.
    pub processed_files: usize,
    /// Files (and links, and other entries) moved to `rejected/`.
    pub rejected_files: usize,
    /// Transactions newly recorded.
    pub new_transactions: usize,
    /// Transactions found already recorded.
    pub duplicate_transactions: usize,
    /// Files seen but not taken yet (not stable, or left for a retry).
    pub waiting_files: usize,
}

/// What the folder listing found for one name.
enum Entry {
    /// A regular file and its state.
    File(FileStat),
    /// A symlink, FIFO, socket or device: rejected unopened, with this reason.
    Refused(&'static str),
}

/// What reading and checking one stable file gave.
enum FileVerdict {
    /// Every transaction mapped; record them all, then move the file aside.
    Transactions(Vec<PosTransaction>, Contents),
    /// The file is refused, for this reason.
    Rejected(String, Contents),
    /// The file changed or went away since the scan; look again next time.
    Changed,
}

impl Spool {
    /// Prepares the spool folder: checks the settings and creates `processed/` and
    /// `rejected/` when missing.
    pub async fn open(
        store: Arc<Store>,
        config: &SpoolConfig,
        store_id: String,
        currency: String,
    ) -> anyhow::Result<Spool> {
        let Some(dir) = config.path.clone() else {
            bail!("spool.path is not set: there is no spool folder to watch");
        };
        Currency::new(&currency).with_context(|| format!("store.currency {currency:?}"))?;
        let processed = dir.join(PROCESSED_DIR);
        let rejected = dir.join(REJECTED_DIR);
        let (p, r) = (processed.clone(), rejected.clone());
        blocking(move || {
            for d in [&p, &r] {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create the spool folder {}", d.display()))?;
            }
            Ok(())
        })
        .await?;
        Ok(Spool {
            hasher: store.hasher().clone(),
            store,
            dir,
            processed,
            rejected,
            store_id,
            currency,
            max_file_bytes: config.max_file_bytes,
            rescan: Duration::from_millis(config.rescan_ms),
            seen: HashMap::new(),
        })
    }

    /// Scans the folder once and takes every file that is ready (see the module
    /// doc for the rules). Problems with single files are logged and counted,
    /// never returned: one bad file must not stop the others.
    pub async fn scan(&mut self) -> ScanSummary {
        let mut summary = ScanSummary::default();
        let dir = self.dir.clone();
        let entries = match blocking(move || list(&dir)).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(
                    path = %self.dir.display(),
                    error = %format!("{e:#}"),
                    "Cannot list the spool folder."
                );
                return summary;
            }
        };
        let now = Instant::now();
        let mut seen = HashMap::with_capacity(entries.len());
        for (name, entry) in entries {
            match entry {
                Entry::Refused(reason) => {
                    self.reject(&name, reason.to_owned(), Contents::AsIs, &mut summary)
                        .await;
                }
                Entry::File(stat) => {
                    let stable = self.seen.get(&name).is_some_and(|previous| {
                        previous.stat == stat && now.duration_since(previous.since) >= self.rescan
                    });
                    if !stable {
                        // Keep the time of the first sighting of an unchanged state.
                        let since = match self.seen.get(&name) {
                            Some(previous) if previous.stat == stat => previous.since,
                            _ => now,
                        };
                        seen.insert(name, Observation { stat, since });
                        summary.waiting_files += 1;
                        continue;
                    }
                    if !self.take(&name, stat, &mut summary).await {
                        // Left in place for a retry: remember it so the next scan
                        // tries again at once if it is still unchanged.
                        let observation = self.seen[&name];
                        seen.insert(name, observation);
                        summary.waiting_files += 1;
                    }
                }
            }
        }
        self.seen = seen;
        summary
    }

    /// Reads, checks and records one stable file, then moves it. Returns whether
    /// the file left the folder.
    async fn take(&self, name: &OsStr, stat: FileStat, summary: &mut ScanSummary) -> bool {
        let file = display_name(name);
        let path = self.dir.join(name);
        let limit = self.max_file_bytes;
        let (store_id, currency) = (self.store_id.clone(), self.currency.clone());
        let hasher = self.hasher.clone();
        let verdict =
            blocking(move || Ok(read_and_map(&path, stat, limit, &store_id, &currency, &hasher))).await;
        let (transactions, contents) = match verdict {
            Ok(FileVerdict::Transactions(t, contents)) => (t, contents),
            Ok(FileVerdict::Rejected(reason, contents)) => {
                return self.reject(name, reason, contents, summary).await;
            }
            Ok(FileVerdict::Changed) => {
                tracing::debug!(file = %file, "Spool file changed while being read; it waits.");
                return false;
            }
            Err(e) => {
                tracing::warn!(
                    file = %file,
                    error = %format!("{e:#}"),
                    "Cannot read the spool file; retrying at the next scan."
                );
                return false;
            }
        };
        let count = transactions.len();
        let (mut new, mut duplicates) = (0, 0);
        for tx in transactions {
            match self.store.record_pos_transaction(Captured::now(tx)).await {
                Ok(Recorded::New { .. }) => new += 1,
                Ok(Recorded::Duplicate) => duplicates += 1,
                Err(e) => {
                    // Those recorded so far are committed; the retry finds them as
                    // duplicates by their natural key.
                    if e.is_disk_full() {
                        tracing::warn!(file = %file, error = %e, "Spool file waits: the disk is full.");
                        summary.new_transactions += new;
                        summary.duplicate_transactions += duplicates;
                        return false;
                    }
                    tracing::error!(file = %file, transactions = count, recorded = new + duplicates,
                        error = %e, "Cannot record the spool file's transactions; it stays for a retry.");
                    summary.new_transactions += new;
                    summary.duplicate_transactions += duplicates;
                    return false;
                }
            }
        }
        summary.new_transactions += new;
        summary.duplicate_transactions += duplicates;
        let (from, to_dir) = (self.dir.join(name), self.processed.clone());
        let moved_name = name.to_owned();
        match blocking(move || move_aside(&from, &to_dir, &moved_name, contents, None)).await {
            Ok(target) => {
                tracing::info!(file = %file, transactions = count, new, duplicates,
                    moved_to = %target.display(), "POSLog file recorded.");
                summary.processed_files += 1;
                true
            }
            Err(e) => {
                tracing::error!(
                    file = %file,
                    transactions = count,
                    error = %format!("{e:#}"),
                    "POSLog file recorded but not moved; it will be taken again and found recorded."
                );
                false
            }
        }
    }

    /// Moves `name` to `rejected/` with its `.reason` file. Returns whether it left
    /// the folder.
    async fn reject(
        &self,
        name: &OsStr,
        reason: String,
        contents: Contents,
        summary: &mut ScanSummary,
    ) -> bool {
        let file = display_name(name);
        let (from, to_dir, moved_name) = (self.dir.join(name), self.rejected.clone(), name.to_owned());
        // A reason may quote a value of the document.
        let logged = mask_long_digit_runs(&reason);
        let text = format!("{file}: {logged}\n");
        match blocking(move || move_aside(&from, &to_dir, &moved_name, contents, Some(&text))).await {
            Ok(target) => {
                tracing::warn!(
                    file = %file,
                    reason = %logged,
                    moved_to = %target.display(),
                    "Spool file rejected."
                );
                summary.rejected_files += 1;
                true
            }
            Err(e) => {
                tracing::error!(file = %file, reason = %logged, error = %format!("{e:#}"),
                    "Spool file refused but could not be moved to rejected/; retrying at the next scan.");
                false
            }
        }
    }
}

/// Runs blocking file work on tokio's blocking threads.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a spool file task failed")?
}

/// Lists the candidate entries directly in `dir`, by name, in name order (so files
/// named by time or sequence are recorded in that order).
fn list(dir: &Path) -> anyhow::Result<Vec<(OsString, Entry)>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let item = item.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = item.file_name();
        if ignored_name(&name) {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks (lstat).
        let meta = match item.metadata() {
            Ok(m) => m,
            // Gone between the listing and the stat: nothing to do.
            Err(_) => continue,
        };
        let kind = meta.file_type();
        let entry = if kind.is_dir() {
            continue;
        } else if kind.is_symlink() {
            Entry::Refused(
                "is a symbolic link; the spool folder takes only regular files and never follows links",
            )
        } else if kind.is_file() {
            Entry::File(FileStat {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        } else {
            Entry::Refused("is not a regular file (a FIFO, socket or device); it was not opened")
        };
        out.push((name, entry));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Names a POS uses while it is still writing, and hidden files.
fn ignored_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(b".") || bytes.ends_with(b".tmp") || bytes.ends_with(b".part")
}

/// Reads a stable file (refusing it unread when too large), parses it and maps
/// every transaction. Blocking.
fn read_and_map(
    path: &Path,
    seen: FileStat,
    limit: u64,
    store_id: &str,
    currency: &str,
    hasher: &KeyedHasher,
) -> FileVerdict {
    if seen.len > limit {
        return FileVerdict::Rejected(
            format!(
                "the file is {} bytes, above spool.max_file_bytes = {limit}; it was not parsed",
                seen.len
            ),
            Contents::MaskedStream,
        );
    }
    // O_NOFOLLOW: a symlink swapped in since the scan fails to open instead of
    // being followed. O_NONBLOCK: a FIFO swapped in does not hang the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let Ok(file) = file else {
        return FileVerdict::Changed;
    };
    let Ok(meta) = file.metadata() else {
        return FileVerdict::Changed;
    };
    if !meta.file_type().is_file()
        || meta.dev() != seen.dev
        || meta.ino() != seen.ino
        || meta.len() != seen.len
    {
        return FileVerdict::Changed;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(seen.len).unwrap_or(0));
    // Never read more than the limit, whatever the file does meanwhile.
    if file.take(limit + 1).read_to_end(&mut bytes).is_err() || bytes.len() as u64 != seen.len {
        return FileVerdict::Changed;
    }
    match poslog_transactions(&bytes, store_id, currency, hasher) {
        Ok(mapped) => FileVerdict::Transactions(mapped, Contents::of(bytes)),
        Err(reason) => FileVerdict::Rejected(reason, Contents::of(bytes)),
    }
}

/// Parses a POSLog document and maps every transaction in it, all or nothing: the
/// spool folder and `POST /api/v1/pos/transactions` accept the same documents.
///
/// # Errors
///
/// Why the document cannot be used, naming the transaction (its position,
/// workstation and sequence number) and the field.
pub(crate) fn poslog_transactions(
    bytes: &[u8],
    store_id: &str,
    currency: &str,
    hasher: &KeyedHasher,
) -> Result<Vec<PosTransaction>, String> {
    let parsed = parse_poslog(bytes).map_err(|e| format!("not a valid POSLog document: {e}"))?;
    parsed
        .iter()
        .enumerate()
        .map(|(i, t)| {
            to_pos_transaction(t, store_id, currency, hasher).map_err(|e| {
                format!(
                    "transaction {} of {} (workstation {}, sequence number {}): {e}",
                    i + 1,
                    parsed.len(),
                    t.workstation_id,
                    t.sequence_number
                )
            })
        })
        .collect()
}

/// Moves `from` into `to_dir` under `name`, or `name` with a `.N` suffix when that
/// is taken, and writes `reason` (if any) to `TARGET.reason` first, so a file in
/// `rejected/` always has its reason. Returns the target path. Blocking.
///
/// With [`Contents::AsIs`] the file is renamed. Otherwise a masked copy is written
/// under a hidden name in `to_dir`, synced and renamed to the target, and only then
/// is `from` removed: a crash in between leaves the original to be taken again
/// (and found recorded), never a file with its card numbers in `to_dir`. A copy
/// that would not leave [`COPY_RESERVE_BYTES`] free is not started: the file
/// stays where it is until there is room.
///
/// Checking for a clash and then renaming is not atomic, but this task is the
/// only writer of `processed/` and `rejected/`.
fn move_aside(
    from: &Path,
    to_dir: &Path,
    name: &OsStr,
    contents: Contents,
    reason: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let with_suffix = |n: u32| {
        let mut s = name.to_owned();
        if n > 0 {
            s.push(format!(".{n}"));
        }
        s
    };
    let reason_path = |target: &Path| {
        let mut s = target.as_os_str().to_owned();
        s.push(".reason");
        PathBuf::from(s)
    };
    let mut n = 0;
    let target = loop {
        let candidate = to_dir.join(with_suffix(n));
        let taken = candidate.symlink_metadata().is_ok()
            || (reason.is_some() && reason_path(&candidate).symlink_metadata().is_ok());
        if !taken {
            break candidate;
        }
        n += 1;
        if n > 10_000 {
            bail!(
                "too many files named {} in {}",
                display_name(name),
                to_dir.display()
            );
        }
    };
    let copy = match contents {
        Contents::AsIs => None,
        Contents::Masked(bytes) => Some(Source::Bytes(bytes)),
        Contents::MaskedStream => Some(Source::File(from)),
    };
    if let Some(source) = &copy {
        let size = match source {
            Source::Bytes(b) => b.len() as u64,
            Source::File(path) => path.symlink_metadata().map(|m| m.len()).unwrap_or(0),
        };
        if let Some((free, _)) = crate::store::free_space(to_dir) {
            if free < size.saturating_add(COPY_RESERVE_BYTES) {
                bail!(
                    "no room for its masked copy in {} ({size} bytes needed, {free} free)",
                    to_dir.display()
                );
            }
        }
    }
    let reason_file = reason_path(&target);
    if let Some(text) = reason {
        std::fs::write(&reason_file, text)
            .with_context(|| format!("cannot write {}", reason_file.display()))?;
    }
    match copy {
        None => std::fs::rename(from, &target)
            .with_context(|| format!("cannot move {} to {}", from.display(), target.display()))?,
        Some(source) => {
            if let Err(e) = write_masked_copy(source, from, to_dir, name, &target) {
                if reason.is_some() {
                    let _ = std::fs::remove_file(&reason_file);
                }
                return Err(e);
            }
            std::fs::remove_file(from).with_context(|| {
                format!(
                    "masked copy written to {}, but cannot remove {}",
                    target.display(),
                    from.display()
                )
            })?;
        }
    }
    Ok(target)
}

/// Space left free on the disk by a masked copy in `processed/` or `rejected/`.
const COPY_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// Where a masked copy comes from.
enum Source<'a> {
    /// The file's bytes, read and masked already.
    Bytes(Vec<u8>),
    /// The file itself, masked while it is copied.
    File(&'a Path),
}

/// Writes the masked copy of `from` to `target` through a hidden temporary name in
/// `to_dir`, with `from`'s permissions. Blocking.
fn write_masked_copy(
    source: Source,
    from: &Path,
    to_dir: &Path,
    name: &OsStr,
    target: &Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(".masking");
    let temp = to_dir.join(temp_name);
    let result = (|| -> anyhow::Result<()> {
        let mut out =
            std::fs::File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
        match source {
            Source::Bytes(bytes) => out.write_all(&bytes)?,
            Source::File(path) => {
                let mut input = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                if !input.metadata()?.file_type().is_file() {
                    bail!("{} is no longer a regular file", path.display());
                }
                let mut buffered = std::io::BufWriter::new(&mut out);
                firmware_interfaces::poslog::redact_stream(&mut input, &mut buffered)?;
                buffered.flush()?;
            }
        }
        if let Ok(meta) = from.symlink_metadata() {
            out.set_permissions(meta.permissions())?;
        }
        out.sync_all()?;
        std::fs::rename(&temp, target)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write the masked copy {}", target.display()))
}

/// A file name for logs and reasons.
fn display_name(name: &OsStr) -> String {
    name.to_string_lossy().into_owned()
}

/// Replaces runs of 12 or more digits (the length of a card number) with `#`s in
/// text bound for the log: a parse error may quote a value from the document.
pub(crate) fn mask_long_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.extend(std::iter::repeat_n('#', run.len()));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Maps a parsed POSLog transaction to the store's [`PosTransaction`].
///
/// * store: the document's store, else `default_store_id`; currency: the
///   document's, else `default_currency`. Amounts become minor units by the
///   currency's exponent, exactly (`"26.990"` EUR is 2699; `"0.125"` EUR is an
///   error, never rounded).
/// * business day: `BusinessDayDate`, which must be `YYYY-MM-DD`. The parsed
///   transaction carries no date-time, so a transaction without it is refused.
/// * kind: a `RetailTransaction` (which must have a `TransactionGrandAmount`)
///   is a `return` when its grand total is negative, or zero with only return
///   item lines (`Return` lines or negative quantities); else a `sale` (an
///   exchange that costs the customer money is a sale). `ControlTransaction` is `control`; other bodies are their element
///   name in snake case without `Transaction` (`tender_control`).
/// * customer: `Customer/CustomerID` only. The loyalty account number is not
///   stored: `hasher` is taken so that a later version can keep its keyed hash
///   (the only form a loyalty number may be stored in); today nothing of it is
///   kept.
/// * lines: vendor-extension lines are dropped (they carry CRM and membership
///   data); a voided, cancelled or deleted line keeps its amount under the kind
///   `void_<kind>`.
///
/// # Errors
///
/// A message naming the field and what is wrong with it.
pub fn to_pos_transaction(
    t: &PosLogTransaction,
    default_store_id: &str,
    default_currency: &str,
    _hasher: &KeyedHasher,
) -> Result<PosTransaction, String> {
    let store_id = non_empty(t.store_id.as_deref())
        .unwrap_or(default_store_id)
        .to_owned();
    if store_id.trim().is_empty() {
        return Err("store_id: the transaction names no store and no default store is configured".into());
    }
    let workstation = t.workstation_id.trim().to_owned();
    if workstation.is_empty() {
        return Err("workstation: WorkstationID is empty".into());
    }
    let sequence = t.sequence_number.trim();
    if sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sequence_number: {sequence:?} is not a number of digits"));
    }
    let sequence_number: i64 = sequence
        .parse()
        .map_err(|_| format!("sequence_number: {sequence} does not fit in a 64-bit integer"))?;
    // Without BusinessDayDate, the day is the local date on which the transaction
    // ended, as the POS wrote it (the date part of EndDateTime, before any offset).
    let business_day = match non_empty(t.business_day.as_deref()) {
        Some(day) => day.trim().to_owned(),
        None => match t.end_date_time.as_deref().and_then(|d| d.trim().get(..10)) {
            Some(day) => day.to_owned(),
            None => {
                return Err(
                    "business_day: BusinessDayDate is missing, and the transaction has no \
                            EndDateTime to derive it from"
                        .into(),
                );
            }
        },
    };
    time::Date::parse(
        &business_day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("business_day: {business_day:?} is not a YYYY-MM-DD date ({e})"))?;
    let currency_code = non_empty(t.currency.as_deref())
        .unwrap_or(default_currency)
        .trim();
    let currency =
        Currency::new(currency_code).map_err(|e| format!("currency: {currency_code:?} is refused: {e}"))?;
    let exponent = currency.minor_unit_exponent();
    let minor = |field: &str, text: &str| {
        to_minor_units(text, exponent).map_err(|e| format!("{field}: {e} (currency {currency})"))
    };

    let mut lines = Vec::with_capacity(t.line_items.len());
    for (i, line) in t.line_items.iter().enumerate() {
        if let Some(l) = to_pos_line(line, &minor).map_err(|e| format!("line item {}: {e}", i + 1))? {
            lines.push(l);
        }
    }

    let body = t
        .transaction_type
        .as_deref()
        .ok_or("kind: the Transaction has no body (RetailTransaction, ControlTransaction, …)")?;
    let grand_total = match t.grand_total.as_deref() {
        Some(text) => Some(minor("total (TransactionGrandAmount)", text)?),
        None => None,
    };
    let kind = match body {
        "RetailTransaction" => {
            let total = grand_total.ok_or("total: the RetailTransaction has no TransactionGrandAmount")?;
            let items: Vec<&PosLine> = lines
                .iter()
                .filter(|l| l.kind == "sale" || l.kind == "return")
                .collect();
            let all_returns = !items.is_empty()
                && items
                    .iter()
                    .all(|l| l.kind == "return" || l.quantity_milli < 0 || l.amount_minor < 0);
            if total < 0 || (total == 0 && all_returns) {
                "return"
            } else {
                "sale"
            }
            .to_owned()
        }
        "ControlTransaction" => "control".to_owned(),
        other => snake_case(other.strip_suffix("Transaction").unwrap_or(other)),
    };
    let tax_minor = match t.total("TransactionTaxAmount") {
        Some(text) => minor("tax (TransactionTaxAmount)", text)?,
        None => {
            let mut sum = 0i64;
            for line in &t.line_items {
                for text in &line.tax_amounts {
                    sum = sum
                        .checked_add(minor("tax (line Tax/Amount)", text)?)
                        .ok_or("tax: the line taxes overflow a 64-bit sum")?;
                }
            }
            sum
        }
    };
    Ok(PosTransaction {
        store_id,
        workstation,
        sequence_number,
        business_day,
        kind,
        operator_id: non_empty(t.operator_id.as_deref()).map(|s| s.trim().to_owned()),
        customer_id: non_empty(t.customer_id.as_deref()).map(|s| s.trim().to_owned()),
        currency: currency.as_str().to_owned(),
        total_minor: grand_total.unwrap_or(0),
        tax_minor,
        occurred_at_ms: t.end_date_time.as_deref().and_then(unix_ms),
        lines,
    })
}

/// Maps one line item; `None` for a vendor-extension line, which is not kept.
fn to_pos_line(
    line: &LineItem,
    minor: &impl Fn(&str, &str) -> Result<i64, String>,
) -> Result<Option<PosLine>, String> {
    if line.kind.contains(':') {
        return Ok(None);
    }
    let base = match line.kind.as_str() {
        "Sale" => "sale".to_owned(),
        "Return" => "return".to_owned(),
        "Tender" => "tender".to_owned(),
        "TenderChange" => "tender_change".to_owned(),
        "Tax" => "tax".to_owned(),
        "LoyaltyReward" => "loyalty".to_owned(),
        "Discount" | "RetailPriceModifier" | "PriceModifier" => "discount".to_owned(),
        other => snake_case(other),
    };
    let is_item = base == "sale" || base == "return";
    let amount_minor = if let Some(text) = &line.extended_amount {
        minor("ExtendedAmount", text)?
    } else if let Some(text) = &line.tender_amount {
        minor("Amount", text)?
    } else if base == "tax" {
        let mut sum = 0i64;
        for text in &line.tax_amounts {
            sum = sum
                .checked_add(minor("Tax/Amount", text)?)
                .ok_or("Tax/Amount: the sum overflows")?;
        }
        sum
    } else {
        0
    };
    // ARTS: an item line without Quantity is one unit.
    let quantity_milli = line
        .quantity_thousandths
        .unwrap_or(if is_item { 1000 } else { 0 });
    let gtin = line.gtin.clone().or_else(|| {
        [&line.pos_item_id, &line.item_id]
            .into_iter()
            .flatten()
            .find(|id| firmware_interfaces::gtin::validate(id.trim()).is_ok())
            .map(|id| id.trim().to_owned())
    });
    let kind = if line.void || line.cancelled || line.deleted {
        format!("void_{base}")
    } else {
        base
    };
    Ok(Some(PosLine {
        kind,
        gtin: if is_item { gtin } else { None },
        description: if is_item { line.description.clone() } else { None },
        quantity_milli,
        amount_minor,
    }))
}

/// `Some(text)` unless it is missing or blank.
fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|s| !s.trim().is_empty())
}

/// `TenderControl` → `tender_control`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// An ISO 8601 / RFC 3339 date-time as Unix milliseconds; `None` when it is not one.
fn unix_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The POSLog corpus: `../shared/corpora/poslog` beside the clone, or under
    /// `STORE_AGENT_CORPORA` (as in firmware-interfaces/tests/common).
    fn corpus_root() -> std::path::PathBuf {
        std::env::var_os("STORE_AGENT_CORPORA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"))
            .join("poslog")
    }

    fn hasher() -> KeyedHasher {
        KeyedHasher::new(&[7u8; 32]).expect("a 32-byte key")
    }

    /// Parses and maps a corpus file; `None` (after a SKIP note) when the corpus
    /// is not there outside CI.
    fn corpus(file: &str) -> Option<Vec<Result<PosTransaction, String>>> {
        let path = corpus_root().join(file);
        let Ok(bytes) = std::fs::read(&path) else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "the POSLog corpus is missing at {}",
                path.display()
            );
            eprintln!("SKIP: no POSLog corpus at {}", path.display());
            return None;
        };
        let parsed = parse_poslog(&bytes).expect("corpus files parse");
        Some(
            parsed
                .iter()
                .map(|t| to_pos_transaction(t, "default-store", "EUR", &hasher()))
                .collect(),
        )
    }

    #[test]
    fn maps_a_sale_with_customer_without_the_loyalty_account() {
        let Some(txs) = corpus("go-poslog/sale_with_customer.xml") else {
            return;
        };
        let t = txs[0].as_ref().expect("maps");
        assert_eq!(t.store_id, "100");
        assert_eq!(t.workstation, "10001");
        assert_eq!(t.sequence_number, 2);
        assert_eq!(t.business_day, "2024-07-31");
        assert_eq!(t.kind, "sale");
        assert_eq!(t.operator_id.as_deref(), Some("0"));
        assert_eq!(t.customer_id.as_deref(), Some("22000129"));
        assert_eq!(t.currency, "EUR");
        assert_eq!(t.total_minor, 2699);
        assert_eq!(t.tax_minor, 431);
        assert_eq!(t.lines.len(), 2);
        assert_eq!(t.lines[0].kind, "sale");
        assert_eq!(t.lines[0].gtin.as_deref(), Some("8718824914497"));
        assert_eq!(t.lines[0].quantity_milli, 1000);
        assert_eq!(t.lines[0].amount_minor, 2699);
        assert_eq!(t.lines[1].kind, "tender");
        assert_eq!(t.lines[1].amount_minor, 2699);
        // The loyalty card number is nowhere in what is stored.
        let json = serde_json::to_string(t).unwrap();
        assert!(!json.contains("T220001293"), "{json}");
    }

    #[test]
    fn a_negative_total_is_a_return() {
        let Some(txs) = corpus("go-poslog/retoure.xml") else {
            return;
        };
        let t = txs[0].as_ref().expect("maps");
        assert_eq!(t.kind, "return");
        assert_eq!(t.total_minor, -299);
        assert_eq!(t.tax_minor, -48);
        assert_eq!(t.lines[0].quantity_milli, -1000);
    }

    #[test]
    fn ncr_control_and_weighed_sale_drop_vendor_lines() {
        let Some(txs) = corpus("kjbreil-poslog/SMALL.xml") else {
            return;
        };
        let control = txs[0].as_ref().expect("maps");
        assert_eq!(control.kind, "control");
        assert_eq!(control.store_id, "9");
        assert_eq!(control.currency, "USD");
        assert_eq!(control.total_minor, 0);
        let sale = txs[1].as_ref().expect("maps");
        assert_eq!(sale.kind, "sale");
        assert_eq!(sale.total_minor, 107);
        // 6 loyalty rewards, 1 sale, 1 tender; the 15 acs: lines are not kept.
        assert_eq!(sale.lines.len(), 8);
        assert!(sale.lines.iter().all(|l| !l.kind.contains(':')));
    }

    #[test]
    fn a_missing_business_day_is_taken_from_the_end_date_time() {
        let Some(txs) = corpus("PosLogStreaming/PosLog.xml") else {
            return;
        };
        let t = txs[0].as_ref().expect("EndDateTime gives the day");
        assert_eq!(t.business_day, "2017-06-21");
        // 2017-06-21T13:39:11+02:00, the last EndDateTime.
        assert_eq!(t.occurred_at_ms, Some(1_498_045_151_000));
    }

    #[test]
    fn a_transaction_without_any_date_is_refused_by_name() {
        let xml = br#"<POSLog><Transaction><WorkstationID>3</WorkstationID><SequenceNumber>1</SequenceNumber>
            <RetailTransaction><LineItem><Sale><ItemID>4006381333931</ItemID><ExtendedAmount>1.50</ExtendedAmount></Sale></LineItem>
            <Total TotalType="TransactionGrandAmount">1.50</Total></RetailTransaction></Transaction></POSLog>"#;
        let t = parse_poslog(xml).expect("parses").remove(0);
        let err = to_pos_transaction(&t, "s", "EUR", &hasher()).expect_err("no date");
        assert!(err.starts_with("business_day:"), "{err}");
    }

    #[test]
    fn every_corpus_file_with_a_business_day_maps() {
        for file in [
            "go-poslog/retoure_with_link.xml",
            "go-poslog/sale_floatprice.xml",
            "go-poslog/sale_with_posStorno.xml",
            "go-poslog/sale_with_tenderChange.xml",
        ] {
            let Some(txs) = corpus(file) else { return };
            for t in txs {
                t.unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
    }

    fn minimal() -> PosLogTransaction {
        let xml = br#"<POSLog><Transaction><WorkstationID>3</WorkstationID><SequenceNumber>0042</SequenceNumber>
            <BusinessDayDate>2025-01-02</BusinessDayDate><RetailTransaction>
            <LineItem><Sale><ItemID>4006381333931</ItemID><ExtendedAmount>1.50</ExtendedAmount></Sale></LineItem>
            <Total TotalType="TransactionGrandAmount">1.50</Total></RetailTransaction></Transaction></POSLog>"#;
        parse_poslog(xml).expect("parses").remove(0)
    }

    #[test]
    fn defaults_fill_store_and_currency_and_exponents_apply() {
        let t = to_pos_transaction(&minimal(), "S1", "JPY", &hasher());
        let err = t.expect_err("1.50 JPY has a fraction");
        assert!(err.starts_with("line item 1: ExtendedAmount:"), "{err}");
        let t = to_pos_transaction(&minimal(), "S1", "KWD", &hasher()).expect("maps");
        assert_eq!(t.store_id, "S1");
        assert_eq!(t.currency, "KWD");
        assert_eq!(t.sequence_number, 42);
        assert_eq!(t.total_minor, 1500);
        assert_eq!(t.lines[0].gtin.as_deref(), Some("4006381333931"));
        assert_eq!(t.lines[0].quantity_milli, 1000);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut p = minimal();
        p.business_day = Some("02.01.2025".into());
        assert!(
            to_pos_transaction(&p, "S", "EUR", &hasher())
                .unwrap_err()
                .starts_with("business_day:")
        );
        let mut p = minimal();
        p.currency = Some("euro".into());
        assert!(
            to_pos_transaction(&p, "S", "EUR", &hasher())
                .unwrap_err()
                .starts_with("currency:")
        );
        let mut p = minimal();
        p.sequence_number = "99999999999999999999".into();
        assert!(
            to_pos_transaction(&p, "S", "EUR", &hasher())
                .unwrap_err()
                .starts_with("sequence_number:")
        );
        let mut p = minimal();
        p.grand_total = None;
        assert!(
            to_pos_transaction(&p, "S", "EUR", &hasher())
                .unwrap_err()
                .starts_with("total:")
        );
        let mut p = minimal();
        p.transaction_type = None;
        assert!(
            to_pos_transaction(&p, "S", "EUR", &hasher())
                .unwrap_err()
                .starts_with("kind:")
        );
    }

    #[test]
    fn loyalty_account_ids_are_not_stored() {
        let mut p = minimal();
        p.loyalty_account_id = Some("9988776655".into());
        let t = to_pos_transaction(&p, "S", "EUR", &hasher()).expect("maps");
        assert_eq!(t.customer_id, None);
        assert!(!serde_json::to_string(&t).unwrap().contains("9988776655"));
    }

    #[test]
    fn voided_lines_are_marked_and_vendor_kinds_snake_cased() {
        let mut p = minimal();
        p.line_items[0].void = true;
        let t = to_pos_transaction(&p, "S", "EUR", &hasher()).expect("maps");
        assert_eq!(t.lines[0].kind, "void_sale");
        assert_eq!(snake_case("TenderControl"), "tender_control");
    }

    #[test]
    fn names_a_pos_is_still_writing_are_ignored() {
        for name in [".hidden.xml", "a.xml.tmp", "a.xml.part"] {
            assert!(ignored_name(OsStr::new(name)), "{name}");
        }
        assert!(!ignored_name(OsStr::new("a.xml")));
    }

    #[test]
    fn long_digit_runs_are_masked_in_logs() {
        assert_eq!(
            mask_long_digit_runs("line 12: value \"4111111111111111\" bad"),
            "line 12: value \"################\" bad"
        );
    }

    /// A store and a spool folder (rescanned every 100 ms) in a temporary folder.
    async fn test_spool(max_file_bytes: u64) -> (tempfile::TempDir, Arc<Store>, Spool, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("store.db");
        let store =
            tokio::task::spawn_blocking(move || Store::open(crate::store::StoreOptions::new(db, hasher())))
                .await
                .unwrap()
                .unwrap();
        let store = Arc::new(store);
        let dir = tmp.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        let config = SpoolConfig {
            path: Some(dir.clone()),
            rescan_ms: 100,
            max_file_bytes,
        };
        let spool = Spool::open(Arc::clone(&store), &config, "S".into(), "EUR".into())
            .await
            .unwrap();
        (tmp, store, spool, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_failure_leaves_the_file_for_a_retry() {
        let (_tmp, store, mut spool, dir) = test_spool(1 << 20).await;
        let doc = r#"<POSLog><Transaction><WorkstationID>3</WorkstationID><SequenceNumber>1</SequenceNumber>
            <BusinessDayDate>2025-01-02</BusinessDayDate><RetailTransaction>
            <Total TotalType="TransactionGrandAmount">1.50</Total></RetailTransaction></Transaction>
            <Transaction><WorkstationID>3</WorkstationID><SequenceNumber>2</SequenceNumber>
            <BusinessDayDate>2025-01-02</BusinessDayDate><RetailTransaction>
            <Total TotalType="TransactionGrandAmount">2.50</Total></RetailTransaction></Transaction></POSLog>"#;
        std::fs::write(dir.join("two.xml"), doc).unwrap();
        // The disk is "full" for the second transaction only: the first commits.
        store
            .with_writer(|c| {
                c.execute_batch(
                    "CREATE TRIGGER disk_full BEFORE INSERT ON pos_transactions WHEN NEW.sequence_number = 2
                     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(spool.scan().await.waiting_files, 1, "first sighting");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let summary = spool.scan().await;
        assert_eq!(
            (
                summary.processed_files,
                summary.new_transactions,
                summary.waiting_files
            ),
            (0, 1, 1)
        );
        assert!(
            dir.join("two.xml").is_file(),
            "the file stays until all is committed"
        );

        store
            .with_writer(|c| {
                c.execute_batch("DROP TRIGGER disk_full")?;
                Ok(())
            })
            .await
            .unwrap();
        // Still unchanged since it was taken: retried at the very next scan.
        let summary = spool.scan().await;
        assert_eq!(
            (
                summary.processed_files,
                summary.new_transactions,
                summary.duplicate_transactions
            ),
            (1, 1, 1)
        );
        assert!(dir.join(PROCESSED_DIR).join("two.xml").is_file());
        let count: i64 = store
            .reads()
            .read(|c| Ok(c.query_row("SELECT count(*) FROM pos_transactions", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, 2);
    }

    /// A sale paid by card, with the card number and a loyalty card in it, numbered `seq`.
    fn card_sale(seq: u32, amount: &str) -> String {
        format!(
            r#"<POSLog><Transaction><WorkstationID>3</WorkstationID><SequenceNumber>{seq}</SequenceNumber>
            <BusinessDayDate>2025-01-02</BusinessDayDate><RetailTransaction>
            <LineItem><Sale><POSIdentity><POSItemID>4006381333931</POSItemID></POSIdentity>
            <ExtendedAmount>{amount}</ExtendedAmount></Sale></LineItem>
            <LineItem><Tender TenderType="CreditDebit"><Amount>{amount}</Amount>
            <CreditDebit><PrimaryAccountNumber>4111111111111111</PrimaryAccountNumber></CreditDebit></Tender></LineItem>
            <LoyaltyAccount><CustomerID>7012345678</CustomerID></LoyaltyAccount>
            <Total TotalType="TransactionGrandAmount">{amount}</Total></RetailTransaction></Transaction></POSLog>"#
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processed_and_rejected_files_keep_no_card_or_loyalty_number() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, _store, mut spool, dir) = test_spool(4096).await;
        let good = card_sale(1, "1.50");
        std::fs::write(dir.join("card.xml"), &good).unwrap();
        std::fs::set_permissions(dir.join("card.xml"), std::fs::Permissions::from_mode(0o640)).unwrap();
        // Refused for its amount, which the reason quotes.
        std::fs::write(dir.join("bad.xml"), card_sale(2, "4111111111111111.001")).unwrap();
        // Refused unread: too large.
        let mut big = card_sale(3, "2.50");
        while big.len() <= 4096 {
            big.push_str("<!-- padding -->\n");
        }
        std::fs::write(dir.join("big.xml"), &big).unwrap();
        // Nothing to mask: renamed, the same file.
        std::fs::write(
            dir.join("cash.xml"),
            good.replace("4111111111111111", "").replace("7012345678", ""),
        )
        .unwrap();
        let cash_inode = std::fs::metadata(dir.join("cash.xml")).unwrap().ino();

        spool.scan().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let summary = spool.scan().await;
        assert_eq!(
            (summary.processed_files, summary.rejected_files),
            (2, 2),
            "{summary:?}"
        );

        let processed = std::fs::read_to_string(dir.join(PROCESSED_DIR).join("card.xml")).unwrap();
        assert_eq!(processed.len(), good.len());
        assert!(processed.contains("<PrimaryAccountNumber>************1111</PrimaryAccountNumber>"));
        assert!(processed.contains("<CustomerID>******5678</CustomerID>"));
        assert!(
            processed.contains("<POSItemID>4006381333931</POSItemID>"),
            "item ids stay"
        );
        let mode = std::fs::metadata(dir.join(PROCESSED_DIR).join("card.xml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "the copy keeps the file's permissions");
        let cash = std::fs::metadata(dir.join(PROCESSED_DIR).join("cash.xml")).unwrap();
        assert_eq!(
            cash.ino(),
            cash_inode,
            "a file with nothing to mask is only renamed"
        );

        let mut left = Vec::new();
        for sub in [PROCESSED_DIR, REJECTED_DIR] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains("4111111111111111"), "{}: {text}", path.display());
                assert!(!text.contains("7012345678"), "{}: {text}", path.display());
                left.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        left.sort();
        assert_eq!(
            left,
            [
                "bad.xml",
                "bad.xml.reason",
                "big.xml",
                "big.xml.reason",
                "card.xml",
                "cash.xml"
            ],
            "no temporary file is left behind"
        );
        let big_copy = std::fs::read_to_string(dir.join(REJECTED_DIR).join("big.xml")).unwrap();
        assert_eq!(big_copy.len(), big.len());
        assert!(big_copy.contains("************1111"));
        let reason = std::fs::read_to_string(dir.join(REJECTED_DIR).join("bad.xml.reason")).unwrap();
        assert!(reason.contains("################"), "{reason}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "only the two folders stay"
        );
    }

    #[test]
    fn a_name_clash_gets_a_suffix_and_reasons_sit_beside() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("rejected");
        std::fs::create_dir(&to).unwrap();
        for _ in 0..2 {
            let from = dir.path().join("a.xml");
            std::fs::write(&from, "x").unwrap();
            move_aside(&from, &to, OsStr::new("a.xml"), Contents::AsIs, Some("why")).unwrap();
        }
        assert!(to.join("a.xml").exists() && to.join("a.xml.reason").exists());
        assert!(to.join("a.xml.1").exists() && to.join("a.xml.1.reason").exists());
    }
}
