//! PostgreSQL's group commit in four round trips, whatever the batch size: `BEGIN` with the
//! audit chain's advisory lock; every read of the batch (consumable tokens locked `FOR UPDATE`,
//! certificates already superseded, the chain head) as one tagged query; every write (tokens
//! consumed, certificates, audit events) as one statement of data-modifying CTEs; `COMMIT`.
//! The generic path took eight, and each waits for the server and for the driver's task.
//!
//! The chain head is read by a statement after the one that took the lock, so under READ
//! COMMITTED its snapshot includes whatever the previous holder committed. The decisions are
//! the shared ones in [`batch`]: the same admission, the same statements.

use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::storage::batch::{
    self, CHAIN_HEAD, CONSUMABLE_TOKEN, HOLDING, KEY_HOLDER, OnViolation, RECALLED, SUPERSEDED,
    StoredClaims, Writes,
};
use crate::storage::{Issuance, StoreError, classify};

/// A broken constraint fails the statement, and with it the transaction.
const ON_VIOLATION: OnViolation = OnViolation::FailStatement;

/// Writes a batch in one transaction (rolled back on any error: nothing of the batch is then
/// stored).
pub(in crate::storage) async fn commit(
    pool: &PgPool,
    batch: &[Issuance],
    now: i64,
    begin_with_chain_lock: &'static str,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut tx = pool
        .begin_with(begin_with_chain_lock)
        .await
        .map_err(classify)?;
    let claims = read_claims(&mut tx, batch, now).await?;
    let mut verdicts = batch::admit(batch, &claims.claims());
    // Attestation claims are only read before the quotas are taken, and written once the
    // verdicts are final, so a refused issuance consumes no challenge.
    crate::storage::attestation::check_claims::<Postgres>(&mut tx, batch, &mut verdicts, now)
        .await?;
    batch::take_station_quotas::<Postgres>(&mut tx, batch, &mut verdicts).await?;
    let admitted = batch::admitted(batch, &verdicts);
    crate::storage::attestation::write_claims::<Postgres>(&mut tx, &admitted, now).await?;
    if !admitted.is_empty() {
        let writes = Writes::of(&admitted, claims.chain_head);
        let mut query = QueryBuilder::<Postgres>::new("WITH ");
        if !writes.tokens.is_empty() {
            query.push("consumed AS (");
            batch::push_consume_tokens(&mut query, &writes.tokens, now, ON_VIOLATION);
            query.push("), ");
        }
        query.push("issued AS (");
        batch::push_insert_certificates(&mut query, &writes.certificates, ON_VIOLATION);
        query.push(") ");
        batch::push_insert_audit(&mut query, &writes.events, ON_VIOLATION);
        query.build().execute(&mut *tx).await.map_err(classify)?;
    }
    tx.commit().await.map_err(classify)?;
    Ok(verdicts)
}

/// Every read of the batch in one query; each row is tagged with the read it answers.
async fn read_claims(
    conn: &mut sqlx::PgConnection,
    batch: &[Issuance],
    now: i64,
) -> Result<StoredClaims, StoreError> {
    let mut reads = QueryBuilder::<Postgres>::new("");
    let hashes = batch::token_hashes(batch);
    if !hashes.is_empty() {
        // FOR UPDATE: another replica cannot consume these tokens before this commit.
        reads.push("WITH consumable AS (");
        batch::push_select_consumable(&mut reads, &hashes, now, " FOR UPDATE");
        reads.push(format_args!(
            ") SELECT {CONSUMABLE_TOKEN}::bigint AS kind, token_hash AS hash, NULL::text AS serial \
             FROM consumable UNION ALL "
        ));
    }
    let serials = batch::superseded_serials(batch);
    if !serials.is_empty() {
        reads.push(format_args!(
            "SELECT {SUPERSEDED}::bigint, NULL::bytea, supersedes FROM ("
        ));
        batch::push_select_superseded(&mut reads, &serials);
        reads.push(") superseded UNION ALL ");
    }
    reads.push(format_args!(
        "SELECT {KEY_HOLDER}::bigint, spki_sha256, device_serial FROM ("
    ));
    batch::push_select_key_holders(&mut reads, &batch::keys(batch));
    reads.push(") key_holders UNION ALL ");
    let devices = batch::initially_enrolled(batch);
    if !devices.is_empty() {
        reads.push(format_args!(
            "SELECT {HOLDING}::bigint, NULL::bytea, device_serial FROM ("
        ));
        batch::push_select_holding(&mut reads, &devices, now);
        reads.push(") holding UNION ALL ");
    }
    reads.push(format_args!(
        "SELECT {RECALLED}::bigint, NULL::bytea, serial FROM ("
    ));
    batch::push_select_recalled(&mut reads, &batch::devices(batch));
    reads.push(") recalled UNION ALL ");
    reads.push(format_args!(
        "(SELECT {CHAIN_HEAD}::bigint, hash, NULL::text FROM audit_events \
         ORDER BY seq DESC LIMIT 1)"
    ));
    let rows = reads
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    StoredClaims::from_rows(&rows)
}
