//! Group commit, the backend-independent part: which issuances of a batch may be written, and
//! the multi-row statements that write them. A batch is one transaction and one durable commit
//! however many certificates it carries; an issuance refused here does not hold up the others.

use std::collections::{HashMap, HashSet};

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{AuditEvent, CertificateRecord, Issuance, StoreError, chain_hash};

/// The most issuances one transaction carries (bounded so statements stay far below both
/// backends' bound-parameter limits: 13 per certificate row).
pub const MAX_BATCH: usize = 256;

/// What the database says about a batch before anything is written, read under the write lock.
pub(super) struct Claims<'a> {
    /// Token hashes that exist, are unused and unexpired.
    pub consumable_tokens: HashSet<&'a [u8]>,
    /// Certificate serials that some stored certificate already supersedes.
    pub superseded: HashSet<&'a str>,
    /// The devices holding a certificate for each requested public key (SPKI SHA-256).
    pub key_holders: HashMap<&'a [u8], Vec<&'a str>>,
    /// Devices (of the batch's initial enrollments) that hold a certificate neither revoked
    /// nor expired.
    pub holding: HashSet<&'a str>,
    /// Devices of the batch that an active (unreleased) recall names.
    pub recalled: HashSet<&'a str>,
}

/// What a batch's write statement does when one of its rows breaks a constraint. Either way the
/// batch is then rolled back and retried one issuance at a time, so each request gets its own
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnViolation {
    /// The statement fails (PostgreSQL: the transaction can then only be rolled back).
    FailStatement,
    /// The whole transaction is rolled back at once (SQLite's `OR ROLLBACK`). SQLite then keeps
    /// no statement journal for a multi-row statement (a copy of every page it is about to
    /// change, spilled to a temporary file past 64 KiB) provided the table's foreign keys are
    /// deferred, as the certificates table's are.
    RollBackTransaction,
}

impl OnViolation {
    fn insert(self) -> &'static str {
        match self {
            OnViolation::FailStatement => "INSERT",
            OnViolation::RollBackTransaction => "INSERT OR ROLLBACK",
        }
    }

    fn update(self) -> &'static str {
        match self {
            OnViolation::FailStatement => "UPDATE",
            OnViolation::RollBackTransaction => "UPDATE OR ROLLBACK",
        }
    }
}

/// The tag in the first column of a batch's claims query; each row is `(tag, hash, serial)`.
pub(super) const CONSUMABLE_TOKEN: i64 = 0;
pub(super) const SUPERSEDED: i64 = 1;
pub(super) const CHAIN_HEAD: i64 = 2;
/// `(tag, spki_sha256, device_serial)`: a device holding a certificate for a requested key.
pub(super) const KEY_HOLDER: i64 = 3;
/// `(tag, NULL, device_serial)`: a device of an initial enrollment that already holds one.
pub(super) const HOLDING: i64 = 4;
/// `(tag, NULL, device_serial)`: a device of the batch that an active recall names.
pub(super) const RECALLED: i64 = 5;

/// What the database says about a batch, read in one tagged query under the write lock.
pub(super) struct StoredClaims {
    tokens: Vec<Vec<u8>>,
    superseded: Vec<String>,
    key_holders: Vec<(Vec<u8>, String)>,
    holding: Vec<String>,
    recalled: Vec<String>,
    /// The audit chain's head (empty before the first event).
    pub chain_head: Vec<u8>,
}

impl StoredClaims {
    /// Sorts the rows of a claims query by their tag.
    pub(super) fn from_rows<R: sqlx::Row>(rows: &[R]) -> Result<StoredClaims, StoreError>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
        for<'r> String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut claims = StoredClaims {
            tokens: Vec::new(),
            superseded: Vec::new(),
            key_holders: Vec::new(),
            holding: Vec::new(),
            recalled: Vec::new(),
            chain_head: Vec::new(),
        };
        for row in rows {
            let hash = || row.try_get::<Vec<u8>, _>(1).map_err(super::classify);
            let serial = || row.try_get::<String, _>(2).map_err(super::classify);
            match row.try_get::<i64, _>(0).map_err(super::classify)? {
                CONSUMABLE_TOKEN => claims.tokens.push(hash()?),
                SUPERSEDED => claims.superseded.push(serial()?),
                KEY_HOLDER => claims.key_holders.push((hash()?, serial()?)),
                HOLDING => claims.holding.push(serial()?),
                RECALLED => claims.recalled.push(serial()?),
                _ => claims.chain_head = hash()?,
            }
        }
        Ok(claims)
    }

    /// The claims as admission reads them.
    pub(super) fn claims(&self) -> Claims<'_> {
        Claims {
            consumable_tokens: self.tokens.iter().map(Vec::as_slice).collect(),
            superseded: self.superseded.iter().map(String::as_str).collect(),
            key_holders: self.key_holders.iter().fold(
                HashMap::new(),
                |mut holders: HashMap<&[u8], Vec<&str>>, (key, device)| {
                    holders.entry(key.as_slice()).or_default().push(device);
                    holders
                },
            ),
            holding: self.holding.iter().map(String::as_str).collect(),
            recalled: self.recalled.iter().map(String::as_str).collect(),
        }
    }
}

/// One verdict per issuance, in order: `Ok` when it may be written. The CA's invariants are
/// decided here, under the write lock and against everything committed before, so no
/// interleaving of requests (or replicas) slips past them:
/// - a token is consumed and a certificate superseded at most once;
/// - a public key certifies one device only (a re-enrollment may repeat its own device's key;
///   an initial enrollment may not repeat any key);
/// - an initial enrollment (token or station) is refused for a device that holds a certificate
///   neither revoked nor expired (read under the lock at the batch's time);
/// - no certificate is issued to a device an active recall names, so a recall racing
///   enrollments never leaves a matching device with a valid certificate.
///
/// Within the batch the first request wins.
pub(super) fn admit(batch: &[Issuance], claims: &Claims<'_>) -> Vec<Result<(), StoreError>> {
    let mut tokens_taken = HashSet::new();
    let mut supersedes_taken = HashSet::new();
    let mut keys_taken: HashMap<&[u8], &str> = HashMap::new();
    let mut devices_taken = HashSet::new();
    batch
        .iter()
        .map(|issuance| {
            let certificate = &issuance.certificate;
            let device = certificate.device_serial.as_str();
            let initial = issuance.initial;
            if claims.recalled.contains(device) {
                return Err(StoreError::DeviceRecalled(device.to_owned()));
            }
            if let Some(hash) = issuance.consume_token.as_deref()
                && (!claims.consumable_tokens.contains(hash) || tokens_taken.contains(hash))
            {
                return Err(StoreError::TokenNotConsumable);
            }
            if let Some(old) = certificate.supersedes.as_deref()
                && (claims.superseded.contains(old) || supersedes_taken.contains(old))
            {
                return Err(StoreError::AlreadySuperseded(old.to_owned()));
            }
            let key = certificate.spki_sha256.as_slice();
            let stored = claims.key_holders.get(key).into_iter().flatten().copied();
            if let Some(holder) = stored
                .chain(keys_taken.get(key).copied())
                .find(|holder| initial || *holder != device)
            {
                return Err(StoreError::KeyHeld {
                    holder: holder.to_owned(),
                });
            }
            if initial && (claims.holding.contains(device) || devices_taken.contains(device)) {
                return Err(StoreError::DeviceHoldsCertificate(device.to_owned()));
            }
            if let Some(hash) = issuance.consume_token.as_deref() {
                tokens_taken.insert(hash);
            }
            if let Some(old) = certificate.supersedes.as_deref() {
                supersedes_taken.insert(old);
            }
            keys_taken.insert(key, device);
            if initial {
                devices_taken.insert(device);
            }
            Ok(())
        })
        .collect()
}

/// Every device a batch issues to.
pub(super) fn devices(batch: &[Issuance]) -> Vec<&str> {
    batch
        .iter()
        .map(|i| i.certificate.device_serial.as_str())
        .collect()
}

/// Appends `SELECT serial FROM devices WHERE serial IN (...)` restricted to the devices an
/// active (unreleased) recall names.
pub(super) fn push_select_recalled<'a, DB>(query: &mut QueryBuilder<DB>, devices: &[&'a str])
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "SELECT d.serial FROM devices d WHERE EXISTS (SELECT 1 FROM recalls r \
         WHERE r.released_at IS NULL AND r.product = d.product \
         AND (r.lot IS NULL OR r.lot = d.lot) \
         AND (r.registered_before IS NULL OR d.registered_at < r.registered_before)) \
         AND d.serial IN ",
    );
    push_in_list(query, devices.iter().copied());
}

/// The token hashes a batch wants to consume.
pub(super) fn token_hashes(batch: &[Issuance]) -> Vec<&[u8]> {
    batch
        .iter()
        .filter_map(|i| i.consume_token.as_deref())
        .collect()
}

/// The certificate serials a batch wants to supersede.
pub(super) fn superseded_serials(batch: &[Issuance]) -> Vec<&str> {
    batch
        .iter()
        .filter_map(|i| i.certificate.supersedes.as_deref())
        .collect()
}

/// The public keys a batch certifies.
pub(super) fn keys(batch: &[Issuance]) -> Vec<&[u8]> {
    batch
        .iter()
        .map(|i| i.certificate.spki_sha256.as_slice())
        .collect()
}

/// The devices of a batch's initial enrollments.
pub(super) fn initially_enrolled(batch: &[Issuance]) -> Vec<&str> {
    batch
        .iter()
        .filter(|i| i.initial)
        .map(|i| i.certificate.device_serial.as_str())
        .collect()
}

/// Appends `SELECT DISTINCT spki_sha256, device_serial FROM certificates WHERE spki_sha256 IN
/// (...)`: every device holding a certificate (in any state) for one of the keys.
pub(super) fn push_select_key_holders<'a, DB>(query: &mut QueryBuilder<DB>, keys: &[&'a [u8]])
where
    DB: Database,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    query
        .push("SELECT DISTINCT spki_sha256, device_serial FROM certificates WHERE spki_sha256 IN ");
    push_in_list(query, keys.iter().copied());
}

/// Appends `SELECT DISTINCT device_serial FROM certificates WHERE device_serial IN (...)` for
/// certificates neither revoked nor expired at `now`.
pub(super) fn push_select_holding<'a, DB>(
    query: &mut QueryBuilder<DB>,
    devices: &[&'a str],
    now: i64,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "SELECT DISTINCT device_serial FROM certificates WHERE status <> 'revoked' AND not_after > ",
    );
    query.push_bind(now).push(" AND device_serial IN ");
    push_in_list(query, devices.iter().copied());
}

/// Appends `(?, ?, …)`: one bound parameter per item.
pub(super) fn push_in_list<'a, DB, T>(
    query: &mut QueryBuilder<DB>,
    items: impl IntoIterator<Item = T>,
) where
    DB: Database,
    T: Encode<'a, DB> + Type<DB>,
{
    query.push("(");
    let mut list = query.separated(", ");
    for item in items {
        list.push_bind(item);
    }
    query.push(")");
}

/// Appends `SELECT token_hash FROM enrollment_tokens WHERE <unused, unrevoked, unexpired> AND token_hash
/// IN (...)`, with `suffix` appended (PostgreSQL adds `FOR UPDATE`).
pub(super) fn push_select_consumable<'a, DB>(
    query: &mut QueryBuilder<DB>,
    hashes: &[&'a [u8]],
    now: i64,
    suffix: &str,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "SELECT token_hash FROM enrollment_tokens \
         WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ",
    );
    query.push_bind(now).push(" AND token_hash IN ");
    push_in_list(query, hashes.iter().copied());
    query.push(suffix);
}

/// Appends `SELECT supersedes FROM certificates WHERE supersedes IN (...)`.
pub(super) fn push_select_superseded<'a, DB>(query: &mut QueryBuilder<DB>, serials: &[&'a str])
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push("SELECT supersedes FROM certificates WHERE supersedes IN ");
    push_in_list(query, serials.iter().copied());
}

/// Appends the statement that marks the admitted issuances' tokens used.
pub(super) fn push_consume_tokens<'a, DB>(
    query: &mut QueryBuilder<DB>,
    hashes: &[&'a [u8]],
    now: i64,
    on_violation: OnViolation,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    query.push(on_violation.update());
    query.push(" enrollment_tokens SET used_at = ");
    query.push_bind(now).push(" WHERE token_hash IN ");
    push_in_list(query, hashes.iter().copied());
}

/// Appends one multi-row INSERT for the admitted certificates.
pub(super) fn push_insert_certificates<'a, DB>(
    query: &mut QueryBuilder<DB>,
    records: &[&'a CertificateRecord],
    on_violation: OnViolation,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    query.push(format_args!(
        "{} INTO certificates ({}) ",
        on_violation.insert(),
        super::CERTIFICATE_COLUMNS
    ));
    query.push_values(records.iter().copied(), |mut row, cert| {
        row.push_bind(cert.serial.as_str())
            .push_bind(cert.issuer.as_str())
            .push_bind(cert.device_serial.as_str())
            .push_bind(cert.product.as_str())
            .push_bind(cert.policy_oid.as_str())
            .push_bind(cert.not_before)
            .push_bind(cert.not_after)
            .push_bind(cert.spki_sha256.as_slice())
            .push_bind(cert.der.as_slice())
            .push_bind(cert.status.as_str())
            .push_bind(cert.authorized_by.as_str())
            .push_bind(cert.supersedes.as_deref())
            .push_bind(cert.issued_at);
    });
}

/// An audit event with its place in the chain.
pub(super) struct ChainedEvent<'a> {
    pub event: &'a AuditEvent,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Chains events after `prev_hash`, in order.
pub(super) fn chain<'a>(
    mut prev_hash: Vec<u8>,
    events: impl Iterator<Item = &'a AuditEvent>,
) -> Vec<ChainedEvent<'a>> {
    events
        .map(|event| {
            let hash = chain_hash(&prev_hash, event);
            ChainedEvent {
                event,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            }
        })
        .collect()
}

/// What a batch writes for its admitted issuances: the tokens to mark used, the certificates,
/// and the audit events chained after the head read under the lock. Each backend assembles the
/// statements in its own shape.
pub(super) struct Writes<'a> {
    pub tokens: Vec<&'a [u8]>,
    pub certificates: Vec<&'a CertificateRecord>,
    pub events: Vec<ChainedEvent<'a>>,
}

impl<'a> Writes<'a> {
    pub(super) fn of(admitted: &[&'a Issuance], chain_head: Vec<u8>) -> Writes<'a> {
        Writes {
            tokens: admitted
                .iter()
                .filter_map(|i| i.consume_token.as_deref())
                .collect(),
            certificates: admitted.iter().map(|i| &i.certificate).collect(),
            events: chain(chain_head, admitted.iter().map(|i| &i.audit)),
        }
    }
}

/// Appends one multi-row INSERT for chained audit events.
pub(super) fn push_insert_audit<'a, DB>(
    query: &mut QueryBuilder<DB>,
    events: &'a [ChainedEvent<'a>],
    on_violation: OnViolation,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    query.push(format_args!(
        "{} INTO audit_events (at, actor, action, object, details, prev_hash, hash) ",
        on_violation.insert()
    ));
    query.push_values(events.iter(), |mut row, chained| {
        row.push_bind(chained.event.at)
            .push_bind(chained.event.actor.as_str())
            .push_bind(chained.event.action.as_str())
            .push_bind(chained.event.object.as_str())
            .push_bind(chained.event.details.as_str())
            .push_bind(chained.prev_hash.as_slice())
            .push_bind(chained.hash.as_slice());
    });
}

/// The admitted issuances of a batch.
pub(super) fn admitted<'a>(
    batch: &'a [Issuance],
    verdicts: &[Result<(), StoreError>],
) -> Vec<&'a Issuance> {
    batch
        .iter()
        .zip(verdicts)
        .filter_map(|(issuance, verdict)| verdict.is_ok().then_some(issuance))
        .collect()
}

/// Revokes (or holds) many certificates with one statement per chunk of serials.
pub(super) async fn change_status_many<DB>(
    conn: &mut DB::Connection,
    serials: &[String],
    status: super::CertificateStatus,
    reason: Option<&str>,
    at: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    let revoked_at = (status != super::CertificateStatus::Valid).then_some(at);
    for chunk in serials.chunks(MAX_BATCH * 4) {
        let mut query = QueryBuilder::<DB>::new("UPDATE certificates SET status = ");
        query
            .push_bind(status.as_str())
            .push(", revocation_reason = ")
            .push_bind(reason)
            .push(", revoked_at = ")
            .push_bind(revoked_at)
            .push(" WHERE serial IN ");
        push_in_list(&mut query, chunk.iter().map(String::as_str));
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(super::classify)?;
    }
    Ok(())
}

/// Counts one issuance against its station's hour, or refuses it when the hour is full (the
/// row is only updated below the limit; `RETURNING` tells which happened on both backends).
pub(super) async fn take_station_quota<DB>(
    conn: &mut DB::Connection,
    quota: &super::StationQuota,
) -> Result<(), StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB> + sqlx::Decode<'a, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut query = QueryBuilder::<DB>::new(
        "INSERT INTO station_usage (station, window_start, issued) VALUES (",
    );
    query
        .push_bind(quota.station.as_str())
        .push(", ")
        .push_bind(quota.window_start)
        .push(
            ", 1) ON CONFLICT (station, window_start) DO UPDATE \
             SET issued = station_usage.issued + 1 WHERE station_usage.issued < ",
        )
        .push_bind(i64::from(quota.limit))
        .push(" RETURNING issued");
    let counted = query
        .build_query_scalar::<i64>()
        .fetch_optional(&mut *conn)
        .await
        .map_err(super::classify)?;
    match counted {
        Some(_) => Ok(()),
        None => Err(StoreError::StationRateLimited {
            station: quota.station.clone(),
        }),
    }
}

/// Counts each issuance admitted so far against its station's hour, in batch order; one that
/// finds the hour full is refused and the others go on.
pub(super) async fn take_station_quotas<DB>(
    conn: &mut DB::Connection,
    batch: &[Issuance],
    verdicts: &mut [Result<(), StoreError>],
) -> Result<(), StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB> + sqlx::Decode<'a, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    for (issuance, verdict) in batch.iter().zip(verdicts.iter_mut()) {
        if let (Ok(()), Some(quota)) = (&verdict, &issuance.station_quota) {
            match take_station_quota::<DB>(conn, quota).await {
                Err(refused @ StoreError::StationRateLimited { .. }) => *verdict = Err(refused),
                other => other?,
            }
        }
    }
    Ok(())
}

/// The hash at the head of the audit chain (empty before the first event), after running
/// `lock` if given (PostgreSQL: the advisory lock that makes replicas append in turn).
pub(super) async fn chain_head<DB>(
    conn: &mut DB::Connection,
    lock: Option<&'static str>,
) -> Result<Vec<u8>, StoreError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    (Vec<u8>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    if let Some(lock) = lock {
        sqlx::query::<DB>(lock)
            .execute(&mut *conn)
            .await
            .map_err(super::classify)?;
    }
    Ok(
        sqlx::query_scalar::<DB, Vec<u8>>(
            "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(super::classify)?
        .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, QueryBuilder, Sqlite};

    use super::*;

    /// SQLite's writes roll the transaction back on a broken constraint (and so keep no
    /// statement journal); PostgreSQL's keep the standard statement failure.
    #[test]
    fn write_statements_carry_the_backends_violation_policy() {
        let hashes: [&[u8]; 1] = [&[1; 32]];
        let mut sqlite = QueryBuilder::<Sqlite>::new("");
        push_consume_tokens(&mut sqlite, &hashes, 1, OnViolation::RollBackTransaction);
        sqlite.push("; ");
        let event = AuditEvent {
            at: 1,
            actor: "ca".into(),
            action: crate::storage::AuditAction::CertificateIssued.into(),
            object: "c1".into(),
            details: "{}".into(),
        };
        let events = chain(Vec::new(), std::iter::once(&event));
        push_insert_audit(&mut sqlite, &events, OnViolation::RollBackTransaction);
        let sql = sqlite.sql().as_str().to_owned();
        assert!(
            sql.starts_with("UPDATE OR ROLLBACK enrollment_tokens"),
            "{sql}"
        );
        assert!(
            sql.contains("; INSERT OR ROLLBACK INTO audit_events"),
            "{sql}"
        );

        let mut postgres = QueryBuilder::<Postgres>::new("");
        push_consume_tokens(&mut postgres, &hashes, 1, OnViolation::FailStatement);
        let sql = postgres.sql().as_str().to_owned();
        assert!(sql.starts_with("UPDATE enrollment_tokens"), "{sql}");
    }
}
