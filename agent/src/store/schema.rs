//! The database schema and its forward-only migrations.
//!
//! The schema version lives in SQLite's `PRAGMA user_version`. Migrations run in
//! order, each in its own `BEGIN IMMEDIATE` transaction together with the version
//! bump, so a crash mid-upgrade leaves the file at the last completed version.
//! There are no down-migrations: a rollback of the agent package keeps the newer
//! file, and an older agent refuses to open it (see [`MigrationError::TooNew`]).
//!
//! **Rules for adding a migration:** append to [`MIGRATIONS`], never edit a shipped
//! one, and add the step to the tests at the bottom of this file.
//!
//! Foreign keys exist only *inside* an aggregate (a cart and its lines, an order and
//! its lines). Between aggregates that arrive on different downlink streams (a
//! loyalty card and its customer, stock and its product) there are none: the cloud
//! streams are independent and may arrive in any order.

use rusqlite::Connection;
use thiserror::Error;

/// One step of the schema history.
pub struct Migration {
    /// The `user_version` the database has after this step.
    pub version: u32,
    /// What the step is for, shown by `store-agent db migrate`.
    pub description: &'static str,
    /// The SQL, run as one batch inside the step's transaction.
    pub sql: &'static str,
}

/// Every migration, oldest first. Versions are 1, 2, 3, … without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "catalogue, store stock, customers and loyalty cards",
        sql: r#"
CREATE TABLE agent_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- GTINs are stored in their 14-digit form so that any scan form finds them.
CREATE TABLE products (
    gtin        TEXT PRIMARY KEY CHECK (length(gtin) = 14),
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL,
    brand       TEXT,
    price_minor INTEGER NOT NULL,
    currency    TEXT NOT NULL CHECK (length(currency) = 3),
    department  TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX products_sku ON products (sku);

CREATE TABLE stock (
    gtin           TEXT PRIMARY KEY,
    on_hand        INTEGER NOT NULL,
    reserved_bopis INTEGER NOT NULL DEFAULT 0 CHECK (reserved_bopis >= 0),
    aisle          TEXT,
    bin            TEXT,
    updated_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE customers (
    customer_id  TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    first_name   TEXT,
    last_name    TEXT,
    tier         TEXT,
    points       INTEGER NOT NULL DEFAULT 0,
    preferences  TEXT NOT NULL DEFAULT '{}',
    consent      TEXT NOT NULL DEFAULT '{}',
    home_store   TEXT,
    last_seen_ms INTEGER
) WITHOUT ROWID;

-- card_hash = HMAC-SHA256(tenant key, card number). The number itself is never stored.
CREATE TABLE loyalty_cards (
    card_hash   BLOB PRIMARY KEY CHECK (length(card_hash) = 32),
    customer_id TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked'))
) WITHOUT ROWID;
CREATE INDEX loyalty_cards_customer ON loyalty_cards (customer_id);
"#,
    },
    Migration {
        version: 2,
        description: "wishlists and online carts",
        sql: r#"
-- One row per (customer, item): the last-writer-wins register of ARCHITECTURE.md.
-- present = 0 is the tombstone of a removal, kept so a late older add cannot win.
CREATE TABLE wishlist_items (
    customer_id TEXT NOT NULL,
    gtin        TEXT NOT NULL,
    present     INTEGER NOT NULL CHECK (present IN (0, 1)),
    added_at_ms INTEGER,
    channel     TEXT NOT NULL,
    op_at_ms    INTEGER NOT NULL,
    op_id       TEXT NOT NULL,
    PRIMARY KEY (customer_id, gtin)
) WITHOUT ROWID;

CREATE TABLE carts (
    customer_id   TEXT PRIMARY KEY,
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE cart_lines (
    customer_id      TEXT NOT NULL REFERENCES carts (customer_id) ON DELETE CASCADE,
    line_no          INTEGER NOT NULL,
    gtin             TEXT NOT NULL,
    qty              INTEGER NOT NULL CHECK (qty > 0),
    unit_price_minor INTEGER NOT NULL,
    PRIMARY KEY (customer_id, line_no)
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 3,
        description: "online orders, returns and POS transactions",
        sql: r#"
CREATE TABLE orders (
    order_id           TEXT PRIMARY KEY,
    customer_id        TEXT,
    kind               TEXT NOT NULL CHECK (kind IN ('bopis', 'delivered')),
    status             TEXT NOT NULL,
    currency           TEXT NOT NULL CHECK (length(currency) = 3),
    total_minor        INTEGER NOT NULL,
    placed_at_ms       INTEGER NOT NULL,
    pickup_code_hash   BLOB CHECK (pickup_code_hash IS NULL OR length(pickup_code_hash) = 32),
    pickup_deadline_ms INTEGER,
    fulfilled_at_ms    INTEGER,
    updated_at_ms      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_bopis_queue ON orders (status, pickup_deadline_ms) WHERE kind = 'bopis';
CREATE UNIQUE INDEX orders_pickup_code ON orders (pickup_code_hash) WHERE pickup_code_hash IS NOT NULL;

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no          INTEGER NOT NULL,
    gtin             TEXT NOT NULL,
    name             TEXT NOT NULL,
    qty_ordered      INTEGER NOT NULL CHECK (qty_ordered > 0),
    qty_returned     INTEGER NOT NULL DEFAULT 0 CHECK (qty_returned BETWEEN 0 AND qty_ordered),
    qty_refused      INTEGER NOT NULL DEFAULT 0 CHECK (qty_refused BETWEEN 0 AND qty_ordered),
    unit_price_minor INTEGER NOT NULL,
    final_sale       INTEGER NOT NULL DEFAULT 0 CHECK (final_sale IN (0, 1)),
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;

-- return_id is the idempotency key of the event that recorded the return.
CREATE TABLE returns (
    return_id       TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    reason          TEXT NOT NULL,
    condition       TEXT NOT NULL,
    disposition     TEXT NOT NULL CHECK (disposition IN ('restock', 'damaged')),
    refund_method   TEXT NOT NULL,
    refund_minor    INTEGER NOT NULL,
    currency        TEXT NOT NULL CHECK (length(currency) = 3),
    status          TEXT NOT NULL,
    associate_id    TEXT,
    override_by     TEXT,
    override_reason TEXT,
    created_at_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX returns_order ON returns (order_id);

CREATE TABLE return_lines (
    return_id TEXT NOT NULL REFERENCES returns (return_id) ON DELETE CASCADE,
    line_no   INTEGER NOT NULL,
    qty       INTEGER NOT NULL CHECK (qty > 0),
    PRIMARY KEY (return_id, line_no)
) WITHOUT ROWID;

-- tx_id is the idempotency key; the natural key of a POS transaction is unique too,
-- so a POSLog file dropped twice is recognised.
CREATE TABLE pos_transactions (
    tx_id           TEXT PRIMARY KEY,
    store_id        TEXT NOT NULL,
    workstation     TEXT NOT NULL,
    sequence_number INTEGER NOT NULL,
    business_day    TEXT NOT NULL,
    kind            TEXT NOT NULL,
    operator_id     TEXT,
    customer_id     TEXT,
    currency        TEXT NOT NULL CHECK (length(currency) = 3),
    total_minor     INTEGER NOT NULL,
    tax_minor       INTEGER NOT NULL DEFAULT 0,
    occurred_at_ms  INTEGER,
    recorded_at_ms  INTEGER NOT NULL,
    UNIQUE (store_id, workstation, business_day, sequence_number)
) WITHOUT ROWID;

CREATE TABLE pos_lines (
    tx_id          TEXT NOT NULL REFERENCES pos_transactions (tx_id) ON DELETE CASCADE,
    line_no        INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    gtin           TEXT,
    description    TEXT,
    quantity_milli INTEGER NOT NULL DEFAULT 1000,
    amount_minor   INTEGER NOT NULL,
    PRIMARY KEY (tx_id, line_no)
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 4,
        description: "outbox, downlink stream state, dead letters and associates",
        sql: r#"
-- Events waiting for the cloud's application-level acknowledgement. A row is
-- written in the same transaction as the state change it reports, and deleted
-- only when the cloud has acknowledged its (stream, seq).
CREATE TABLE outbox (
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    captured_at_ms  INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_ms INTEGER,
    last_error      TEXT,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;

-- Per-stream counters: seqs are never reused, even after acknowledged rows are gone.
CREATE TABLE outbox_streams (
    stream    TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    acked_seq INTEGER NOT NULL DEFAULT 0,
    acked_at_ms INTEGER
) WITHOUT ROWID;

-- Last applied position of every cloud stream, written in the same transaction
-- as the change it applied.
CREATE TABLE downlink_streams (
    stream        TEXT PRIMARY KEY,
    epoch         TEXT NOT NULL,
    last_seq      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Input that could not be used, kept for a person to look at.
CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    payload        BLOB NOT NULL,
    error          TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);

CREATE TABLE associates (
    associate_id TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('associate', 'manager', 'admin')),
    pin_hash     TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 5,
        description: "device status and receipt journal",
        sql: r#"
-- The last known state of every configured device, written by the agent when it
-- changes, so `store-agent status` (another process) can show it.
CREATE TABLE device_status (
    device_id     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('connected', 'disconnected', 'error')),
    reason        TEXT,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Receipt text captured from a printer stream (journal tap), PAN-masked.
-- journal_id is the idempotency key of the event that recorded it.
CREATE TABLE journal_records (
    journal_id     TEXT PRIMARY KEY,
    device_id      TEXT NOT NULL,
    text           TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 6,
        description: "cloud sync state and cloud-pushed settings",
        sql: r#"
-- Settings the cloud pushes on the `config` stream (JSON values).
CREATE TABLE cloud_config (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The MQTT connection as the sync last saw it, one row, so `store-agent status`
-- (another process) can show whether and since when the store is offline.
CREATE TABLE sync_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    state              TEXT NOT NULL CHECK (state IN ('connecting', 'online', 'offline')),
    since_ms           INTEGER NOT NULL,
    offline_since_ms   INTEGER,
    broker             TEXT NOT NULL,
    last_error         TEXT,
    updated_at_ms      INTEGER NOT NULL
);

-- Where dead letters come from is searchable (a topic, a spool file).
CREATE INDEX dead_letters_source ON dead_letters (source);
"#,
    },
    Migration {
        version: 7,
        description: "console search by e-mail and phone, recent purchases per customer",
        sql: r#"
-- Keyed hashes of the customer's e-mail and phone, and the phone's last four
-- digits: the console finds a customer by them without the store holding either.
ALTER TABLE customers ADD COLUMN email_hash BLOB CHECK (email_hash IS NULL OR length(email_hash) = 32);
ALTER TABLE customers ADD COLUMN phone_hash BLOB CHECK (phone_hash IS NULL OR length(phone_hash) = 32);
ALTER TABLE customers ADD COLUMN phone_last4 TEXT CHECK (phone_last4 IS NULL OR length(phone_last4) = 4);
CREATE INDEX customers_email_hash ON customers (email_hash) WHERE email_hash IS NOT NULL;
CREATE INDEX customers_phone_hash ON customers (phone_hash) WHERE phone_hash IS NOT NULL;
-- (No index on phone_last4: about one customer in 10,000 shares the four digits,
-- so the search stops at its limit early, and each index costs a snapshot load.)

-- The customer panel lists the customer's store purchases, newest first.
CREATE INDEX pos_transactions_customer ON pos_transactions (customer_id, recorded_at_ms)
    WHERE customer_id IS NOT NULL;
"#,
    },
];

/// The version a fully migrated database has.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, Error)]
pub enum MigrationError {
    /// The file was written by a newer agent; opening it could lose data.
    #[error(
        "database schema version {found} is newer than this agent supports ({supported}); \
         install the newer store-agent again or restore a backup"
    )]
    TooNew {
        /// The file's `user_version`.
        found: u32,
        /// [`latest_version`] of this build.
        supported: u32,
    },
    /// A step failed; the database stays at the version before it.
    #[error("migration to schema version {version} ({description}) failed: {source}")]
    Step {
        /// The version the step would have produced.
        version: u32,
        /// The step's description.
        description: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// Reading the version failed.
    #[error("cannot read the schema version: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Reads `PRAGMA user_version`.
pub fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies pending migrations up to `target` (inclusive) and returns the versions
/// applied. `target` exists so tests can build every earlier version.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<Vec<u32>, MigrationError> {
    let found = current_version(conn)?;
    let supported = latest_version();
    if found > supported {
        return Err(MigrationError::TooNew { found, supported });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let step = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = rusqlite::Transaction::new(conn, rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(m.sql)?;
            tx.pragma_update(None, "user_version", m.version)?;
            tx.commit()
        };
        step(conn).map_err(|source| MigrationError::Step {
            version: m.version,
            description: m.description,
            source,
        })?;
        applied.push(m.version);
    }
    Ok(applied)
}

/// Applies every pending migration.
pub fn migrate(conn: &mut Connection) -> Result<Vec<u32>, MigrationError> {
    migrate_to(conn, latest_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<(String, String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema
                 WHERE sql IS NOT NULL ORDER BY type, name",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn fresh(dir: &tempfile::TempDir, name: &str) -> Connection {
        let c = Connection::open(dir.path().join(name)).unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        c
    }

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }

    #[test]
    fn empty_file_migrates_to_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fresh(&dir, "empty.db");
        let applied = migrate(&mut c).unwrap();
        assert_eq!(applied, (1..=latest_version()).collect::<Vec<_>>());
        assert_eq!(current_version(&c).unwrap(), latest_version());
        // A second run finds nothing to do.
        assert!(migrate(&mut c).unwrap().is_empty());
    }

    /// Rows a database at each version can hold, so that every step is taken with
    /// data in it and the data must survive the later steps.
    fn seed_rows_for(version: u32, c: &Connection) {
        let sql = match version {
            1 => {
                "INSERT INTO products VALUES ('04006381333931','SKU1','Pen','Stabilo',199,'EUR','Office','{}');
                 INSERT INTO stock VALUES ('04006381333931', 5, 1, '12', 'B3', 0);
                 INSERT INTO customers (customer_id, display_name) VALUES ('c1', 'Ada L.');
                 INSERT INTO loyalty_cards VALUES (zeroblob(32), 'c1', 'active');"
            }
            2 => {
                "INSERT INTO wishlist_items VALUES ('c1','04006381333931',1,5,'web',5,'op1');
                 INSERT INTO carts VALUES ('c1','EUR',7);
                 INSERT INTO cart_lines VALUES ('c1',1,'04006381333931',2,199);"
            }
            3 => {
                "INSERT INTO orders VALUES ('o1','c1','bopis','ready_for_pickup','EUR',398,1,NULL,99,NULL,1);
                 INSERT INTO order_lines VALUES ('o1',1,'04006381333931','Pen',2,0,0,199,0);"
            }
            4 => {
                "INSERT INTO outbox_streams VALUES ('pos_transactions', 1, 0, NULL);
                 INSERT INTO dead_letters (source, payload, error, received_at_ms) VALUES ('t','x','e',1);"
            }
            5 => {
                "INSERT INTO device_status VALUES ('scanner-1', 'serial', 'connected', NULL, 1);
                 INSERT INTO journal_records VALUES ('j1', 'printer-1', 'THANK YOU', 1);"
            }
            6 => {
                "INSERT INTO cloud_config VALUES ('kiosk.idle_timeout_s', '60', 1);
                 INSERT INTO sync_state VALUES (1, 'offline', 1, 1, 'mqtt.example.com:8883', NULL, 1);"
            }
            7 => {
                "UPDATE customers SET email_hash = zeroblob(32), phone_hash = zeroblob(32), phone_last4 = '4567';"
            }
            _ => panic!("add seed rows for migration {version}"),
        };
        c.execute_batch(sql).unwrap();
    }

    #[test]
    fn every_earlier_version_migrates_to_the_same_schema_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut reference = fresh(&dir, "reference.db");
        migrate(&mut reference).unwrap();
        let expected = schema_of(&reference);

        for start in 0..=latest_version() {
            let mut c = fresh(&dir, &format!("from-{start}.db"));
            migrate_to(&mut c, start).unwrap();
            assert_eq!(current_version(&c).unwrap(), start);
            for v in 1..=start {
                seed_rows_for(v, &c);
            }
            let applied = migrate(&mut c).unwrap();
            assert_eq!(applied, (start + 1..=latest_version()).collect::<Vec<_>>());
            assert_eq!(schema_of(&c), expected, "schema after migrating from {start}");
            // Later steps seed onto what earlier ones kept.
            for v in start + 1..=latest_version() {
                seed_rows_for(v, &c);
            }
            let products: i64 = c
                .query_row("SELECT count(*) FROM products", [], |r| r.get(0))
                .unwrap();
            assert_eq!(products, 1, "rows kept when migrating from {start}");
            let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok");
            let fk_violations = c
                .prepare("PRAGMA foreign_key_check")
                .unwrap()
                .query_map([], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(fk_violations, 0);
        }
    }

    #[test]
    fn newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fresh(&dir, "newer.db");
        c.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        let err = migrate(&mut c).unwrap_err();
        assert!(matches!(err, MigrationError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this agent supports"));
    }

    #[test]
    fn failed_step_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fresh(&dir, "broken.db");
        migrate_to(&mut c, 1).unwrap();
        // A table migration 2 wants to create already exists: the step must fail whole.
        c.execute_batch("CREATE TABLE carts (x)").unwrap();
        let err = migrate(&mut c).unwrap_err();
        assert!(matches!(err, MigrationError::Step { version: 2, .. }), "{err}");
        assert_eq!(current_version(&c).unwrap(), 1);
        let wishlist_tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'wishlist_items'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(wishlist_tables, 0, "no part of the failed step stays");
    }
}
