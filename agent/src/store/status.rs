//! What `store-agent status` (and later the health endpoint) reports about the
//! local store: how much is cached, what waits for the cloud, how fresh each
//! cloud stream is.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

/// Row counts of the cached and recorded data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Catalogue products.
    pub products: i64,
    /// Products with a stock record here.
    pub stock: i64,
    /// Customer profiles.
    pub customers: i64,
    /// Loyalty card hashes.
    pub loyalty_cards: i64,
    /// Wishlist items (present, not tombstones).
    pub wishlist_items: i64,
    /// Online carts.
    pub carts: i64,
    /// BOPIS orders waiting for pickup.
    pub open_pickups: i64,
    /// All cached online orders.
    pub orders: i64,
    /// Returns taken here.
    pub returns: i64,
    /// POS transactions recorded here.
    pub pos_transactions: i64,
    /// Associates who can sign in.
    pub associates: i64,
    /// Input kept for a person to look at.
    pub dead_letters: i64,
    /// Receipts captured by the journal tap.
    pub journal_records: i64,
}

/// One uplink stream of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// Stream name.
    pub stream: String,
    /// Events waiting for the cloud's acknowledgement.
    pub depth: i64,
    /// Capture time of the oldest waiting event.
    pub oldest_captured_at_ms: Option<i64>,
    /// Last seq written.
    pub last_seq: i64,
    /// Last seq the cloud acknowledged.
    pub acked_seq: i64,
    /// When the last acknowledgement arrived.
    pub acked_at_ms: Option<i64>,
}

/// One downlink (cloud → store) stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownlinkStatus {
    /// Stream name.
    pub stream: String,
    /// The cloud's epoch of it.
    pub epoch: String,
    /// Last seq applied here.
    pub last_seq: i64,
    /// When it was last applied (the data's age on screen).
    pub updated_at_ms: i64,
}

/// The cloud connection as the sync last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncState {
    /// `connecting`, `online` or `offline`.
    pub state: String,
    /// Since when in this state.
    pub since_ms: i64,
    /// When the store lost the cloud (kept while reconnecting; `None` once online).
    pub offline_since_ms: Option<i64>,
    /// `host:port` of the broker.
    pub broker: String,
    /// Why the last connection attempt failed.
    pub last_error: Option<String>,
}

pub(super) fn write_sync_state(conn: &mut Connection, s: &SyncState) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sync_state
         (id, state, since_ms, offline_since_ms, broker, last_error, updated_at_ms)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        s.state,
        s.since_ms,
        s.offline_since_ms,
        s.broker,
        s.last_error,
        crate::events::now_ms()
    ])?;
    Ok(())
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// `PRAGMA user_version`.
    pub schema_version: u32,
    /// Row counts.
    pub counts: Counts,
    /// Per uplink stream.
    pub outbox: Vec<OutboxStatus>,
    /// Per downlink stream.
    pub downlink: Vec<DownlinkStatus>,
    /// Every device the agent has reported on.
    pub devices: Vec<super::records::DeviceStatusRecord>,
    /// The cloud connection (`None`: the sync never ran on this database).
    pub sync: Option<SyncState>,
    /// The disk the database is on (`None` until the caller measured it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// The disk the database is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// The database's directory.
    pub dir: String,
    /// Free bytes for the agent's user (`None`: `statvfs` failed).
    pub free_bytes: Option<u64>,
    /// The file system's size in bytes.
    pub total_bytes: Option<u64>,
    /// New POS input is refused under this much free space.
    pub reserve_bytes: u64,
    /// Since when writes have failed for lack of space (Unix ms); known to the
    /// running agent only, cleared by the next write that succeeds.
    pub disk_full_since_ms: Option<i64>,
    /// `"ok"`, or `"full"`: under the reserve, or writes failing for lack of space.
    pub state: String,
}

impl Storage {
    /// Measures the disk holding the database `db` (a `statvfs`).
    pub fn measure(db: &std::path::Path, reserve_bytes: u64, disk_full_since_ms: Option<i64>) -> Storage {
        let dir = super::database_dir(db);
        let space = super::free_space(&dir);
        let under = space.is_some_and(|(free, _)| free < reserve_bytes);
        Storage {
            dir: dir.display().to_string(),
            free_bytes: space.map(|(f, _)| f),
            total_bytes: space.map(|(_, t)| t),
            reserve_bytes,
            disk_full_since_ms,
            state: if under || disk_full_since_ms.is_some() {
                "full"
            } else {
                "ok"
            }
            .into(),
        }
    }

    /// Whether new input is refused.
    pub fn is_full(&self) -> bool {
        self.state == "full"
    }
}

fn count(conn: &Connection, sql: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

/// Reads the report in one read transaction.
pub fn report(conn: &Connection) -> Result<StatusReport, StoreError> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = report_in_tx(conn);
    conn.execute_batch("COMMIT")?;
    result
}

fn report_in_tx(conn: &Connection) -> Result<StatusReport, StoreError> {
    let live = live_in_tx(conn)?;
    let counts = Counts {
        products: count(conn, "SELECT count(*) FROM products")?,
        stock: count(conn, "SELECT count(*) FROM stock")?,
        customers: count(conn, "SELECT count(*) FROM customers")?,
        loyalty_cards: count(conn, "SELECT count(*) FROM loyalty_cards")?,
        wishlist_items: count(conn, "SELECT count(*) FROM wishlist_items WHERE present = 1")?,
        carts: count(conn, "SELECT count(*) FROM carts")?,
        open_pickups: count(
            conn,
            "SELECT count(*) FROM orders WHERE kind = 'bopis' AND status IN ('ready_for_pickup', 'customer_arrived')",
        )?,
        orders: count(conn, "SELECT count(*) FROM orders")?,
        returns: count(conn, "SELECT count(*) FROM returns")?,
        pos_transactions: count(conn, "SELECT count(*) FROM pos_transactions")?,
        associates: count(conn, "SELECT count(*) FROM associates WHERE active = 1")?,
        dead_letters: live.dead_letters,
        journal_records: count(conn, "SELECT count(*) FROM journal_records")?,
    };
    Ok(StatusReport {
        sync: live.sync,
        schema_version: live.schema_version,
        counts,
        outbox: live.outbox,
        downlink: live.downlink,
        devices: live.devices,
        storage: None,
    })
}

/// What changes while the agent runs, without the row counts (which read whole
/// tables): what `/readyz` and `/metrics` need on every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveStatus {
    /// `PRAGMA user_version`.
    pub schema_version: u32,
    /// Per uplink stream.
    pub outbox: Vec<OutboxStatus>,
    /// Per downlink stream.
    pub downlink: Vec<DownlinkStatus>,
    /// Every device the agent has reported on.
    pub devices: Vec<super::records::DeviceStatusRecord>,
    /// The cloud connection (`None`: the sync never ran on this database).
    pub sync: Option<SyncState>,
    /// Rows in the dead-letter table.
    pub dead_letters: i64,
}

/// Reads the live status in one read transaction.
pub fn live(conn: &Connection) -> Result<LiveStatus, StoreError> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = live_in_tx(conn);
    conn.execute_batch("COMMIT")?;
    result
}

fn live_in_tx(conn: &Connection) -> Result<LiveStatus, StoreError> {
    let outbox = conn
        .prepare(
            "SELECT s.stream, count(o.seq), min(o.captured_at_ms), s.last_seq, s.acked_seq, s.acked_at_ms
             FROM outbox_streams s LEFT JOIN outbox o ON o.stream = s.stream
             GROUP BY s.stream ORDER BY s.stream",
        )?
        .query_map([], |r| {
            Ok(OutboxStatus {
                stream: r.get(0)?,
                depth: r.get(1)?,
                oldest_captured_at_ms: r.get(2)?,
                last_seq: r.get(3)?,
                acked_seq: r.get(4)?,
                acked_at_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let downlink = conn
        .prepare("SELECT stream, epoch, last_seq, updated_at_ms FROM downlink_streams ORDER BY stream")?
        .query_map([], |r| {
            Ok(DownlinkStatus {
                stream: r.get(0)?,
                epoch: r.get(1)?,
                last_seq: r.get(2)?,
                updated_at_ms: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let devices = conn
        .prepare(
            "SELECT device_id, kind, state, reason, updated_at_ms FROM device_status ORDER BY device_id",
        )?
        .query_map([], |r| {
            Ok(super::records::DeviceStatusRecord {
                device_id: r.get(0)?,
                kind: r.get(1)?,
                state: r.get(2)?,
                reason: r.get(3)?,
                updated_at_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let schema_version = super::schema::current_version(conn)?;
    // `status` also reads databases an older agent wrote, before the sync existed.
    let sync = if schema_version < 6 {
        None
    } else {
        conn.query_row(
            "SELECT state, since_ms, offline_since_ms, broker, last_error FROM sync_state WHERE id = 1",
            [],
            |r| {
                Ok(SyncState {
                    state: r.get(0)?,
                    since_ms: r.get(1)?,
                    offline_since_ms: r.get(2)?,
                    broker: r.get(3)?,
                    last_error: r.get(4)?,
                })
            },
        )
        .optional()?
    };
    Ok(LiveStatus {
        schema_version,
        outbox,
        downlink,
        devices,
        sync,
        dead_letters: count(conn, "SELECT count(*) FROM dead_letters")?,
    })
}
