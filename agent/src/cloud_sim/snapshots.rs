//! Snapshot files: the base data the cloud starts from, and snapshots of any set
//! of streams written from the entity state after deltas.
//!
//! * The base file is the sample store (or a given snapshot) with its header
//!   rewritten to list every stream at epoch `e1`, seq 0 (a stream the source
//!   has no records of is empty there). It is served as it is while no stream
//!   has moved from there.
//! * Otherwise a snapshot of the requested streams is written from
//!   `entity_state` inside one read transaction, so its records and the header's
//!   `(epoch, seq)` per stream are one consistent state, while uplinks go on
//!   committing beside it (WAL). Rows stream from SQLite to the file: a million
//!   customers never sit in memory. Identical requests at unchanged positions
//!   reuse the last file written for them.

use super::BaseData;
use super::db::{self, Position};
use super::keys;
use crate::events::{DownlinkStream, now_ms};
use crate::sample;
use crate::store::KeyedHasher;
use crate::store::snapshot::{EndRecord, FORMAT, MAGIC, SnapshotHeader, SnapshotRecord, StreamPosition};
use crate::sync::protocol::SnapshotManifest;
use anyhow::{Context, anyhow, bail};
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// How many generated snapshots are kept for reuse; older files are deleted (a
/// download already under way keeps its open file).
const CACHED_SNAPSHOTS: usize = 16;

/// A snapshot file in the snapshot folder and what the manifest says of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SnapshotFile {
    /// File name within the snapshot folder.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// The header's streams.
    pub streams: BTreeMap<String, StreamPosition>,
}

/// Counts and hashes what passes through to `inner`.
pub(super) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The writer, the byte count and the SHA-256 (lowercase hex).
    pub(super) fn finish(self) -> (W, u64, String) {
        (self.inner, self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Rewrite = Box<dyn FnMut(SnapshotHeader) -> anyhow::Result<SnapshotHeader>>;

/// Passes a snapshot through to `inner`, replacing its header line: the sample
/// generator writes its own header, and the cloud's base must say epoch `e1`.
struct HeaderRewriter<W: Write> {
    inner: W,
    /// The first line while it is incomplete; `None` once the header is written.
    pending: Option<Vec<u8>>,
    rewrite: Rewrite,
    header: Option<SnapshotHeader>,
}

impl<W: Write> HeaderRewriter<W> {
    fn new(inner: W, rewrite: Rewrite) -> Self {
        HeaderRewriter {
            inner,
            pending: Some(Vec::new()),
            rewrite,
            header: None,
        }
    }

    /// The writer and the header written, once the whole file went through.
    fn finish(mut self) -> anyhow::Result<(W, SnapshotHeader)> {
        self.inner.flush()?;
        let header = self
            .header
            .ok_or_else(|| anyhow!("the base snapshot has no complete header line"))?;
        Ok((self.inner, header))
    }
}

impl<W: Write> Write for HeaderRewriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(pending) = self.pending.as_mut() else {
            return self.inner.write(buf);
        };
        let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
            pending.extend_from_slice(buf);
            return Ok(buf.len());
        };
        pending.extend_from_slice(&buf[..newline]);
        let line = std::mem::take(pending);
        self.pending = None;
        let header: SnapshotHeader = serde_json::from_slice(&line).map_err(|e| {
            std::io::Error::other(format!("the base snapshot's first line is not a header: {e}"))
        })?;
        let header = (self.rewrite)(header).map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        serde_json::to_writer(&mut self.inner, &header)?;
        self.inner.write_all(b"\n")?;
        self.header = Some(header);
        // The rest of this buffer is records; report all of it as taken.
        self.inner.write_all(&buf[newline + 1..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The base data as this database knows it.
#[derive(Debug, Clone)]
pub(super) struct Base {
    /// The base file, while it exists.
    pub file: Option<SnapshotFile>,
    /// Fingerprint of the key its hashes were made with; every generated snapshot
    /// carries it too.
    pub key_fingerprint: String,
}

const META_TENANT: &str = "tenant_id";
const META_STORE: &str = "store_id";
const META_FINGERPRINT: &str = "key_fingerprint";
const META_BASE: &str = "base_file";

/// Loads the base data into a new database, or finds it in one that has it (a
/// restarted cloud keeps its state, its log and what it received).
pub(super) fn prepare_base(
    conn: &mut Connection,
    source: &BaseData,
    dir: &Path,
    tenant: &str,
    store: &str,
) -> anyhow::Result<Base> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the snapshot folder {}", dir.display()))?;
    if let Some(have_tenant) = db::meta_get(conn, META_TENANT)? {
        let have_store = db::meta_get(conn, META_STORE)?.unwrap_or_default();
        if have_tenant != tenant || have_store != store {
            bail!(
                "the cloud database belongs to tenant {have_tenant:?}, store {have_store:?}, not tenant {tenant:?}, \
                 store {store:?}; give it another database file"
            );
        }
        let key_fingerprint = db::meta_get(conn, META_FINGERPRINT)?.unwrap_or_default();
        let file = match db::meta_get(conn, META_BASE)? {
            Some(json) => {
                let file: SnapshotFile =
                    serde_json::from_str(&json).context("the base file record in meta")?;
                let on_disk = std::fs::metadata(dir.join(&file.file)).map(|m| m.len()).ok();
                if on_disk == Some(file.size) {
                    Some(file)
                } else {
                    tracing::warn!(
                        file = %dir.join(&file.file).display(),
                        "The base snapshot is gone or changed; every snapshot will be generated from the state."
                    );
                    None
                }
            }
            None => None,
        };
        return Ok(Base {
            file,
            key_fingerprint,
        });
    }
    let file = write_base_file(source, dir, tenant, store)?;
    let path = dir.join(&file.file);
    let loaded = load_base(conn, &path, &file, tenant, store);
    match loaded {
        Ok(key_fingerprint) => Ok(Base {
            file: Some(file),
            key_fingerprint,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Writes the base file into `dir`: the source with its header's tenant and
/// store checked and every stream at epoch `e1`, seq 0.
fn write_base_file(source: &BaseData, dir: &Path, tenant: &str, store: &str) -> anyhow::Result<SnapshotFile> {
    let name = format!("base-{}.jsonl", uuid::Uuid::now_v7().simple());
    let tmp = dir.join(format!(".{name}.tmp"));
    let created = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let (tenant_owned, store_owned) = (tenant.to_string(), store.to_string());
    let rewrite: Rewrite = Box::new(move |mut h: SnapshotHeader| {
        if h.tenant_id != tenant_owned || h.store_id != store_owned {
            bail!(
                "the base snapshot is for tenant {:?}, store {:?}; the cloud serves tenant {tenant_owned:?}, \
                 store {store_owned:?}",
                h.tenant_id,
                h.store_id
            );
        }
        // Every stream, not only those the source lists: a stream without records
        // is empty at e1/0, and a header that lists them all lets the base answer
        // an agent's first request, which asks for every stream.
        h.streams = DownlinkStream::ALL
            .iter()
            .map(|s| {
                let at = StreamPosition {
                    epoch: db::epoch_name(1),
                    seq: 0,
                };
                (s.as_str().to_string(), at)
            })
            .collect();
        Ok(h)
    });
    let mut out = HeaderRewriter::new(
        HashingWriter::new(BufWriter::with_capacity(1 << 20, created)),
        rewrite,
    );
    let written = (|| -> anyhow::Result<(SnapshotHeader, u64, String)> {
        match source {
            BaseData::Sample { spec, hash_key_hex } => {
                let key = hex::decode(hash_key_hex.trim()).context("the sample's hash key is not hex")?;
                let hasher = KeyedHasher::new(&key).ok_or_else(|| {
                    anyhow!(
                        "the sample's hash key has {} bytes; at least {} are needed",
                        key.len(),
                        crate::store::keyed_hash::MIN_KEY_LEN
                    )
                })?;
                // The sample is made for the store this cloud serves.
                let mut spec = spec.clone();
                spec.tenant_id = tenant.to_string();
                spec.store_id = store.to_string();
                sample::write_snapshot(&spec, &hasher, &mut out)
                    .context("cannot generate the sample store")?;
            }
            BaseData::File(path) => {
                let input = File::open(path)
                    .with_context(|| format!("cannot open the base snapshot {}", path.display()))?;
                std::io::copy(&mut BufReader::with_capacity(1 << 20, input), &mut out)
                    .with_context(|| format!("cannot copy the base snapshot {}", path.display()))?;
            }
        }
        let (hashing, header) = out.finish()?;
        let (buffered, size, sha256) = hashing.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        Ok((header, size, sha256))
    })();
    match written {
        Ok((header, size, sha256)) => Ok(SnapshotFile {
            file: name,
            size,
            sha256,
            streams: header.streams,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!(
                "cannot write the base snapshot {}",
                dir.join(&name).display()
            )))
        }
    }
}

/// Loads the base file into the entity state and sets the positions of its
/// streams, in one transaction. Returns the key fingerprint.
fn load_base(
    conn: &mut Connection,
    path: &Path,
    file: &SnapshotFile,
    tenant: &str,
    store: &str,
) -> anyhow::Result<String> {
    let at = |line: u64| format!("base snapshot {}, line {line}", path.display());
    let input = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, input).lines();
    let header_line = lines
        .next()
        .ok_or_else(|| anyhow!("{}: the file is empty", at(1)))?
        .with_context(|| at(1))?;
    let header: SnapshotHeader = serde_json::from_str(&header_line).with_context(|| at(1))?;
    let covered: Vec<DownlinkStream> = header
        .streams
        .keys()
        .map(|s| DownlinkStream::parse(s).ok_or_else(|| anyhow!("{}: unknown stream {s:?}", at(1))))
        .collect::<anyhow::Result<_>>()?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut records = 0u64;
    let mut ended = false;
    for (i, line) in lines.enumerate() {
        let n = i as u64 + 2;
        let line = line.with_context(|| at(n))?;
        if line.trim().is_empty() {
            continue;
        }
        if ended {
            bail!("{}: a record after the end record", at(n));
        }
        let record: SnapshotRecord = serde_json::from_str(&line).with_context(|| at(n))?;
        if let SnapshotRecord::End(end) = &record {
            if end.records != records {
                bail!(
                    "{}: the end record counts {} records, the file holds {records}",
                    at(n),
                    end.records
                );
            }
            ended = true;
            continue;
        }
        let Some((stream, key, json)) = keys::record_parts(&record, &line) else {
            continue;
        };
        if !covered.contains(&stream) {
            bail!("{}: a record of {stream}, which the header does not list", at(n));
        }
        db::insert_state(&tx, stream, &key, &json)?;
        records += 1;
    }
    if !ended {
        bail!(
            "base snapshot {} has no end record: it was cut short",
            path.display()
        );
    }
    for stream in &covered {
        tx.execute(
            "INSERT OR REPLACE INTO downlink_streams (stream, epoch_no, epoch, seq, trimmed_through)
             VALUES (?1, 1, ?2, 0, 0)",
            [stream.as_str(), &db::epoch_name(1)],
        )?;
    }
    db::meta_set(&tx, META_TENANT, tenant)?;
    db::meta_set(&tx, META_STORE, store)?;
    db::meta_set(&tx, META_FINGERPRINT, &header.key_fingerprint)?;
    db::meta_set(&tx, META_BASE, &serde_json::to_string(file)?)?;
    tx.commit()?;
    tracing::info!(file = %path.display(), records, "Base data loaded.");
    Ok(header.key_fingerprint)
}

/// Serves snapshots: the base file while it is current, generated files after.
pub(super) struct Snapshots {
    dir: PathBuf,
    db_path: PathBuf,
    tenant_id: String,
    store_id: String,
    base: Base,
    /// `http://host:port`, known once the HTTP server is bound.
    url_base: OnceLock<String>,
    /// Generated files by request key (streams and positions), oldest first.
    cache: Mutex<VecDeque<(String, SnapshotFile)>>,
}

impl Snapshots {
    pub(super) fn new(
        dir: PathBuf,
        db_path: PathBuf,
        tenant_id: String,
        store_id: String,
        base: Base,
    ) -> Self {
        Snapshots {
            dir,
            db_path,
            tenant_id,
            store_id,
            base,
            url_base: OnceLock::new(),
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// The folder the files are in.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets where the HTTP server serves `/snapshots/{file}`.
    pub(super) fn set_url_base(&self, url_base: String) {
        let _ = self.url_base.set(url_base);
    }

    /// The manifest of a snapshot of `requested` (every stream with a position
    /// when `None`). Blocking: run it off the async runtime. Each requested
    /// stream must have a position already ([`db::ensure_position`]).
    pub(super) fn manifest_blocking(
        &self,
        requested: Option<&[DownlinkStream]>,
    ) -> anyhow::Result<SnapshotManifest> {
        let url_base = self
            .url_base
            .get()
            .ok_or_else(|| anyhow!("the snapshot HTTP server is not listening yet"))?;
        let file = self.snapshot_for(requested)?;
        Ok(SnapshotManifest {
            url: format!("{url_base}/snapshots/{}", file.file),
            size: file.size,
            sha256: file.sha256,
            streams: file.streams,
        })
    }

    /// The file to serve for `requested`: the base file, a cached file, or a new one.
    pub(super) fn snapshot_for(&self, requested: Option<&[DownlinkStream]>) -> anyhow::Result<SnapshotFile> {
        let mut conn = db::open_read(&self.db_path)?;
        // One read transaction: positions and records are one state.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let positions = db::positions(&tx)?;
        let mut wanted: Vec<DownlinkStream> = match requested {
            Some(r) => r.to_vec(),
            None => positions.keys().copied().collect(),
        };
        wanted.sort();
        wanted.dedup();
        if let Some(missing) = wanted.iter().find(|s| !positions.contains_key(s)) {
            bail!("the stream {missing} has no position in the cloud database");
        }
        if let Some(base) = self
            .base
            .file
            .as_ref()
            .filter(|b| base_serves(b, &positions, &wanted))
        {
            return Ok(base.clone());
        }
        let key = wanted
            .iter()
            .map(|s| {
                let p = &positions[s];
                format!("{s}@{}:{}", p.epoch, p.seq)
            })
            .collect::<Vec<_>>()
            .join(",");
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let streams = wanted
            .iter()
            .map(|s| {
                let p = &positions[s];
                (
                    s.as_str().to_string(),
                    StreamPosition {
                        epoch: p.epoch.clone(),
                        seq: p.seq,
                    },
                )
            })
            .collect();
        let header = SnapshotHeader {
            snapshot: MAGIC.into(),
            format: FORMAT,
            tenant_id: self.tenant_id.clone(),
            store_id: self.store_id.clone(),
            created_at_ms: now_ms(),
            key_fingerprint: self.base.key_fingerprint.clone(),
            streams,
        };
        let file = write_snapshot(&tx, &self.dir, &header, &wanted)?;
        drop(tx);
        self.remember(key, file.clone());
        Ok(file)
    }

    fn cached(&self, key: &str) -> Option<SnapshotFile> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .rev()
            .find(|(k, f)| k == key && self.dir.join(&f.file).is_file())
            .map(|(_, f)| f.clone())
    }

    fn remember(&self, key: String, file: SnapshotFile) {
        let evicted: Vec<SnapshotFile> = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.push_back((key, file));
            let excess = cache.len().saturating_sub(CACHED_SNAPSHOTS);
            cache.drain(..excess).map(|(_, f)| f).collect()
        };
        for f in evicted {
            let _ = std::fs::remove_file(self.dir.join(&f.file));
        }
    }
}

/// The base file answers a request while every stream it lists is still at its
/// base position (no delta, no new epoch) and it lists every requested stream.
/// It may list more than was asked: those are at their current positions too.
fn base_serves(
    base: &SnapshotFile,
    positions: &BTreeMap<DownlinkStream, Position>,
    wanted: &[DownlinkStream],
) -> bool {
    let unchanged = base.streams.iter().all(|(name, at)| {
        DownlinkStream::parse(name)
            .and_then(|s| positions.get(&s))
            .is_some_and(|p| p.epoch == at.epoch && p.seq == at.seq)
    });
    unchanged && wanted.iter().all(|s| base.streams.contains_key(s.as_str()))
}

/// Writes a snapshot of `streams` from the entity state that `conn` reads.
/// The stored JSON goes into the record lines as it is (it was checked when it
/// was stored), so no record is parsed again; entities the agent would refuse
/// are left out with a warning.
pub(super) fn write_snapshot(
    conn: &Connection,
    dir: &Path,
    header: &SnapshotHeader,
    streams: &[DownlinkStream],
) -> anyhow::Result<SnapshotFile> {
    let name = format!("snapshot-{}.jsonl", uuid::Uuid::now_v7().simple());
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| -> anyhow::Result<(u64, String)> {
        let created = File::create(&tmp)?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, created));
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        let mut records = 0u64;
        let mut refused = conn.prepare(
            "SELECT key, error FROM entity_state WHERE stream = ?1 AND error IS NOT NULL ORDER BY key",
        )?;
        let mut fitting =
            conn.prepare("SELECT entity FROM entity_state WHERE stream = ?1 AND error IS NULL ORDER BY key")?;
        for stream in streams {
            let Some(tag) = keys::record_tag(*stream) else {
                continue;
            };
            let mut rows = refused.query([stream.as_str()])?;
            while let Some(row) = rows.next()? {
                let (key, error): (String, String) = (row.get(0)?, row.get(1)?);
                tracing::warn!(%stream, key, error, "An entity the agent would refuse is left out of the snapshot.");
            }
            let mut rows = fitting.query([stream.as_str()])?;
            while let Some(row) = rows.next()? {
                let json = row.get_ref(0)?.as_str()?;
                // `{"product":{…}}`: the format's externally tagged record line.
                out.write_all(b"{\"")?;
                out.write_all(tag.as_bytes())?;
                out.write_all(b"\":")?;
                out.write_all(json.as_bytes())?;
                out.write_all(b"}\n")?;
                records += 1;
            }
        }
        serde_json::to_writer(&mut out, &SnapshotRecord::End(EndRecord { records }))?;
        out.write_all(b"\n")?;
        let (buffered, size, sha256) = out.finish();
        buffered.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        Ok((size, sha256))
    })();
    let (size, sha256) = result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.context(format!("cannot write the snapshot {}", dir.join(&name).display()))
    })?;
    Ok(SnapshotFile {
        file: name,
        size,
        sha256,
        streams: header.streams.clone(),
    })
}
