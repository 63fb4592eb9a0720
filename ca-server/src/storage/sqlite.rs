//! SQLite backend: one file, WAL journal, synchronous=FULL, foreign keys on: connecting, the
//! write transactions (`BEGIN IMMEDIATE`), the group writer and checkpointer, and chunked `IN`
//! lists; the statements shared with PostgreSQL are in `sql/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
// The chunked `IN` list is the only dynamic SQL here: constant text and `?` placeholders.
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::{AuditEvent, Issuance, StoreError, batch, chain_hash, classify};

mod admin;
mod checkpoint;
mod group_write;
mod priority;

pub use priority::DriverPriority;

super::inventory::impl_inventory_store!(SqliteStore, Sqlite, begin, append_events);
super::sql::stations::impl_station_store!(SqliteStore, Sqlite, begin, append_events);
super::sql::operations::impl_operations_store!(SqliteStore, Sqlite);
super::sql::console::impl_console_store!(SqliteStore, Sqlite, begin, append_events);
super::sql::generations::impl_generation_store!(SqliteStore, Sqlite, begin, append_events);
super::sql::recalls::impl_recall_store!(SqliteStore, Sqlite, begin, append_events);
super::sql::attestation::impl_attestation_store!(SqliteStore, Sqlite, begin, append_events);

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The group-commit writer (see [`group_write`]).
    writer: group_write::GroupWriter,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let url = format!("sqlite://{}", path.display());
        SqliteStore::connect(&url).await
    }

    /// Opens a `sqlite://` URL and applies migrations.
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::connect_with_priority(url, DriverPriority::Normal).await
    }

    /// Opens a `sqlite://` URL and applies migrations, with the driver threads scheduled as
    /// `priority` says (`serve` asks for [`DriverPriority::Realtime`]).
    pub async fn connect_with_priority(
        url: &str,
        priority: DriverPriority,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(classify)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // 2 MiB of page cache per reader (SQLite's default). With time-ordered serials the
            // lookups of a batch touch few pages and the rest come from the OS cache; 8 MiB per
            // connection added ~10 MB of resident memory under load for no measured gain
            // (ca-bench enroll, 2026-12-07: 5,650 vs 5,750 certs/s, inside the run-to-run spread).
            .pragma("cache_size", "-2048")
            .busy_timeout(Duration::from_secs(5));
        priority::open_with_priority(priority, open_connections(options)).await
    }

    /// Begins a write transaction. `BEGIN IMMEDIATE` takes the write lock up front (waiting up to
    /// the busy timeout): a deferred transaction that reads first and writes later fails at once
    /// with SQLITE_BUSY when another writer committed in between.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }
}

/// Opens the readers' pool (all of its connections, so that their driver threads start here,
/// on the thread [`priority`] may have raised), applies migrations, and opens the writer.
async fn open_connections(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
    // Readers and administration share the pool; the group-commit writer has its own. Each
    // connection's driver thread is named for its job, so a profile or `ca-bench` can tell
    // where the storage's time goes. The connections are kept for the life of the process: an
    // in-process SQLite connection does not go stale, and a replaced one would lose its
    // thread's priority. Nor is each one pinged before use: that was a second hand-off to the
    // driver thread on every read batch, and a dead driver fails the query itself anyway.
    let pool = SqlitePoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_with(
            options
                .clone()
                .thread_name(|id| format!("sqlite-reader-{id}")),
        )
        .await
        .map_err(classify)?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    let mut opened = Vec::new();
    for _ in 0..READERS {
        opened.push(pool.acquire().await.map_err(classify)?);
    }
    drop(opened);
    let writer = group_write::GroupWriter::open(&options).await?;
    Ok(SqliteStore { pool, writer })
}

/// Connections of the readers' pool.
const READERS: u32 = 3;

pub(super) async fn append_events(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut prev = batch::chain_head::<Sqlite>(tx, None).await?;
    for event in events {
        let hash = chain_hash(&prev, event);
        sqlx::query(
            "INSERT INTO audit_events (at, actor, action, object, details, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.object)
        .bind(&event.details)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
        prev = hash;
    }
    Ok(())
}

impl SqliteStore {
    /// The given serials that are registered (the dialect's `IN` list).
    pub(super) async fn registered_serials_in(
        &self,
        serials: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        // Chunked to stay under SQLite's bound-parameter limit.
        for chunk in serials.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT serial FROM devices WHERE serial IN ({placeholders})");
            let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
            for serial in chunk {
                query = query.bind(serial);
            }
            found.extend(query.fetch_all(&self.pool).await.map_err(classify)?);
        }
        Ok(found)
    }

    /// Commits a batch of issuances with this backend's group commit.
    pub(super) async fn write_batch(
        &self,
        batch: &[Issuance],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.writer.commit(batch, now).await
    }
}

super::sql::records::impl_store!(SqliteStore, Sqlite, SqliteRow);
