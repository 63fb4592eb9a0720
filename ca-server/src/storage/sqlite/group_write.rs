//! SQLite's group commit in two round trips to the driver's thread. A statement sent through
//! sqlx waits for that thread to be scheduled and for its answer to be polled, which on a busy
//! machine costs more than the statement itself; so a batch sends its reads (the write lock
//! taken first) as one multi-statement query and its writes with the `COMMIT` as another. The
//! writer owns its connection, so its page cache is never invalidated by another writer.
//!
//! The decisions are the shared ones in [`batch`]: the same admission, the same statements.
//!
//! The automatic WAL checkpoint is off on the writer's connection: [`super::checkpoint`] copies
//! the WAL into the database beside the commits instead of inside one of them.
//!
//! sqlx runs a multi-statement SQLite query's statements in order with the bound arguments
//! spread across them. It calls that SQLite-only behaviour deprecated; the storage suite's
//! group-commit tests run through this path and are what would catch its removal on an upgrade.

use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::Mutex;

use super::checkpoint::Checkpointer;
use crate::storage::batch::{
    self, CHAIN_HEAD, CONSUMABLE_TOKEN, HOLDING, KEY_HOLDER, OnViolation, RECALLED, SUPERSEDED,
    StoredClaims, Writes,
};
use crate::storage::{Issuance, StoreError, classify};

/// A broken constraint rolls the whole batch back at once, which spares SQLite the statement
/// journal of each multi-row write; [`GroupWriter::commit`] then finds no transaction to roll
/// back, and the batch is retried one issuance at a time as with any failure.
const ON_VIOLATION: OnViolation = OnViolation::RollBackTransaction;

/// The group-commit writer: its own connection and the checkpointer that follows its commits.
#[derive(Debug, Clone)]
pub(super) struct GroupWriter {
    conn: Arc<Mutex<SqliteConnection>>,
    checkpoints: Checkpointer,
}

impl GroupWriter {
    /// Opens the writer's connection and starts its checkpointer. The page cache is 4 MiB: a
    /// bigger one made no measurable difference to throughput (the pages a certificate dirties
    /// are random index leaves) and kept the server's resident memory above the 64 MB it is
    /// held to. Temporary files stay on disk: with `temp_store=MEMORY` a large batch's
    /// statement journal (every page its multi-row insert changes, up to a few MiB) is held in
    /// memory, and one measured run then peaked at 70 MB.
    pub(super) async fn open(options: &SqliteConnectOptions) -> Result<GroupWriter, StoreError> {
        let conn = SqliteConnection::connect_with(
            &options
                .clone()
                .pragma("cache_size", "-4096")
                .pragma("wal_autocheckpoint", "0")
                .thread_name(|_| "sqlite-writer".to_owned()),
        )
        .await
        .map_err(classify)?;
        let conn = Arc::new(Mutex::new(conn));
        let checkpoints = Checkpointer::start(options, conn.clone()).await?;
        Ok(GroupWriter { conn, checkpoints })
    }

    /// Writes a batch in one transaction; on any error the transaction is rolled back and
    /// nothing of the batch is stored.
    pub(super) async fn commit(
        &self,
        batch: &[Issuance],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut conn = self.conn.lock().await;
        let outcome = commit_in_transaction(&mut conn, batch, now).await;
        match outcome {
            Ok(_) => self.checkpoints.after_commit(),
            Err(_) => {
                // The transaction may be open (a write failed) or not (BEGIN failed): ROLLBACK
                // either ends it or is refused harmlessly.
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            }
        }
        outcome
    }
}

async fn commit_in_transaction(
    conn: &mut SqliteConnection,
    batch: &[Issuance],
    now: i64,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let claims = read_claims(conn, batch, now).await?;
    let mut verdicts = batch::admit(batch, &claims.claims());
    // Attestation claims are only read before the quotas are taken, and written once the
    // verdicts are final, so a refused issuance consumes no challenge.
    crate::storage::attestation::check_claims::<Sqlite>(conn, batch, &mut verdicts, now).await?;
    batch::take_station_quotas::<Sqlite>(conn, batch, &mut verdicts).await?;
    let admitted = batch::admitted(batch, &verdicts);
    crate::storage::attestation::write_claims::<Sqlite>(conn, &admitted, now).await?;
    let mut query = QueryBuilder::<Sqlite>::new("");
    if !admitted.is_empty() {
        let writes = Writes::of(&admitted, claims.chain_head);
        if !writes.tokens.is_empty() {
            batch::push_consume_tokens(&mut query, &writes.tokens, now, ON_VIOLATION);
            query.push("; ");
        }
        batch::push_insert_certificates(&mut query, &writes.certificates, ON_VIOLATION);
        query.push("; ");
        batch::push_insert_audit(&mut query, &writes.events, ON_VIOLATION);
        query.push("; ");
    }
    query.push("COMMIT");
    query.build().execute(&mut *conn).await.map_err(classify)?;
    Ok(verdicts)
}

/// `BEGIN IMMEDIATE` and every read of the batch, in one round trip; each row is tagged with
/// the read it answers.
async fn read_claims(
    conn: &mut SqliteConnection,
    batch: &[Issuance],
    now: i64,
) -> Result<StoredClaims, StoreError> {
    let mut reads = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
    let hashes = batch::token_hashes(batch);
    if !hashes.is_empty() {
        reads.push(format_args!(
            "SELECT {CONSUMABLE_TOKEN}, token_hash, NULL FROM ("
        ));
        batch::push_select_consumable(&mut reads, &hashes, now, "");
        reads.push("); ");
    }
    let serials = batch::superseded_serials(batch);
    if !serials.is_empty() {
        reads.push(format_args!("SELECT {SUPERSEDED}, NULL, supersedes FROM ("));
        batch::push_select_superseded(&mut reads, &serials);
        reads.push("); ");
    }
    reads.push(format_args!(
        "SELECT {KEY_HOLDER}, spki_sha256, device_serial FROM ("
    ));
    batch::push_select_key_holders(&mut reads, &batch::keys(batch));
    reads.push("); ");
    let devices = batch::initially_enrolled(batch);
    if !devices.is_empty() {
        reads.push(format_args!("SELECT {HOLDING}, NULL, device_serial FROM ("));
        batch::push_select_holding(&mut reads, &devices, now);
        reads.push("); ");
    }
    reads.push(format_args!("SELECT {RECALLED}, NULL, serial FROM ("));
    batch::push_select_recalled(&mut reads, &batch::devices(batch));
    reads.push("); ");
    reads.push(format_args!(
        "SELECT {CHAIN_HEAD}, hash, NULL FROM audit_events ORDER BY seq DESC LIMIT 1"
    ));
    let rows = reads
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    StoredClaims::from_rows(&rows)
}
