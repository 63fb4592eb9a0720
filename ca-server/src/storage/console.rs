//! What the operator console keeps and reads: its sign-in sessions (only the SHA-256 of a
//! session id is stored; a session lives in the database so every replica sees it, and an idle
//! one expires on all of them at once), and the fleet history its overview charts (issuance per
//! hour, expiry per day, each station's last issuance) and a device's audit events. The
//! statements are written once here for every backend; `sql/console.rs` implements
//! [`ConsoleStore`] with them.

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::batch::push_in_list;
use super::{AuditEvent, OperatorKind, Role, StoreError, StoredAuditEvent};

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session id (the id itself is only in the browser's cookie).
    pub id_sha256: Vec<u8>,
    /// The operator's name (API key or certificate name, `bootstrap` for the init key).
    pub operator: String,
    pub kind: OperatorKind,
    pub role: Role,
    /// API key id, certificate SHA-256 fingerprint, or `bootstrap`: what re-checks the
    /// credential on every request.
    pub lookup: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Device certificates issued in one hour for one product through one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedInHour {
    /// Unix time of the hour's start.
    pub hour: i64,
    pub product: String,
    /// `station:<name>`, `token` or `renewal` (re-enrollment with the current certificate).
    pub channel: String,
    pub certificates: u64,
}

/// Valid device certificates whose `not_after` falls on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringOnDay {
    /// Unix time of the day's start (00:00 UTC).
    pub day: i64,
    pub certificates: u64,
}

/// Sessions and the console's reads.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a new session and appends its `console.signed_in` event in one transaction.
    async fn create_session(
        &self,
        session: &ConsoleSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// The session with this id hash if it was seen after `idle_since`, its `last_seen_at` moved
    /// to `now` in the same statement (so two replicas cannot revive an expired session).
    async fn touch_session(
        &self,
        id_sha256: &[u8],
        idle_since: i64,
        now: i64,
    ) -> Result<Option<ConsoleSession>, StoreError>;
    /// Deletes a session, appending `audit` (sign-out) when one was deleted; true if it existed.
    async fn delete_session(
        &self,
        id_sha256: &[u8],
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Deletes sessions last seen at or before `idle_since`; returns how many.
    async fn delete_idle_sessions(&self, idle_since: i64) -> Result<u64, StoreError>;
    /// Device certificates issued at or after `since`, per hour, product and channel.
    async fn issued_per_hour(&self, since: i64) -> Result<Vec<IssuedInHour>, StoreError>;
    /// Valid device certificates expiring in `(from, to]`, per UTC day.
    async fn expiring_per_day(&self, from: i64, to: i64) -> Result<Vec<ExpiringOnDay>, StoreError>;
    /// Each station's newest issuance (`(name, issued_at)`), for the stations that issued.
    async fn station_last_issued(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// The newest `limit` audit events about any of `objects` (e.g. `device:S`,
    /// `certificate:HEX`), newest first.
    async fn audit_events_about(
        &self,
        objects: &[String],
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError>;
}

/// The `console_sessions` columns, in [`SessionRow`] order.
const SESSION_COLUMNS: &str = "id_sha256, operator, kind, role, lookup, created_at, last_seen_at";

/// One `console_sessions` row as read.
pub(super) type SessionRow = (Vec<u8>, String, String, String, String, i64, i64);

/// One `audit_events` row as read, in [`AUDIT_COLUMNS`] order.
pub(super) type AuditRow = (i64, i64, String, String, String, String, Vec<u8>, Vec<u8>);

const AUDIT_COLUMNS: &str = "seq, at, actor, action, object, details, prev_hash, hash";

/// A row as a session; `None` for a role this release does not know (the session is refused).
pub(super) fn session(row: SessionRow) -> Option<ConsoleSession> {
    let (id_sha256, operator, kind, role, lookup, created_at, last_seen_at) = row;
    Some(ConsoleSession {
        id_sha256,
        operator,
        kind: OperatorKind::parse(&kind),
        role: Role::parse(&role)?,
        lookup,
        created_at,
        last_seen_at,
    })
}

/// A row as a stored audit event.
pub(super) fn audit_event(row: AuditRow) -> StoredAuditEvent {
    let (seq, at, actor, action, object, details, prev_hash, hash) = row;
    StoredAuditEvent {
        seq,
        event: AuditEvent {
            at,
            actor,
            action,
            object,
            details,
        },
        prev_hash,
        hash,
    }
}

/// `INSERT INTO console_sessions ...`.
pub(super) fn insert_session<'a, DB>(session: &'a ConsoleSession) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new(format!(
        "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES ("
    ));
    let mut values = query.separated(", ");
    values.push_bind(session.id_sha256.as_slice());
    values.push_bind(session.operator.as_str());
    values.push_bind(session.kind.as_str());
    values.push_bind(session.role.as_str());
    values.push_bind(session.lookup.as_str());
    values.push_bind(session.created_at);
    values.push_bind(session.last_seen_at);
    query.push(")");
    query
}

/// `UPDATE ... SET last_seen_at = now WHERE id AND last_seen_at > idle_since RETURNING ...`.
pub(super) fn touch_session<'a, DB>(
    id_sha256: &'a [u8],
    idle_since: i64,
    now: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("UPDATE console_sessions SET last_seen_at = ");
    query
        .push_bind(now)
        .push(" WHERE id_sha256 = ")
        .push_bind(id_sha256)
        .push(" AND last_seen_at > ")
        .push_bind(idle_since)
        .push(format!(" RETURNING {SESSION_COLUMNS}"));
    query
}

/// `DELETE FROM console_sessions WHERE id_sha256 = ...`.
pub(super) fn delete_session<'a, DB>(id_sha256: &'a [u8]) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("DELETE FROM console_sessions WHERE id_sha256 = ");
    query.push_bind(id_sha256);
    query
}

/// `DELETE FROM console_sessions WHERE last_seen_at <= idle_since`.
pub(super) fn delete_idle<DB>(idle_since: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("DELETE FROM console_sessions WHERE last_seen_at <= ");
    query.push_bind(idle_since);
    query
}

/// `(hour, product, channel, count)` of device certificates issued since `since`.
pub(super) fn select_issued_per_hour<DB>(since: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new(
        "SELECT (issued_at / 3600) * 3600 AS hour, product, \
         CASE WHEN authorized_by LIKE 'certificate:%' THEN 'renewal' ELSE authorized_by END \
         AS channel, COUNT(*) FROM certificates WHERE issued_at >= ",
    );
    query
        .push_bind(since)
        .push(" GROUP BY 1, 2, 3 ORDER BY 1, 2, 3");
    query
}

/// `(day, count)` of valid device certificates expiring in `(from, to]`.
pub(super) fn select_expiring_per_day<DB>(from: i64, to: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new(
        "SELECT (not_after / 86400) * 86400 AS day, COUNT(*) FROM certificates \
         WHERE status = 'valid' AND not_after > ",
    );
    query
        .push_bind(from)
        .push(" AND not_after <= ")
        .push_bind(to)
        .push(" GROUP BY 1 ORDER BY 1");
    query
}

/// `(authorized_by, newest issued_at)` of station-issued certificates.
pub(super) fn select_station_last_issued<DB>() -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
{
    QueryBuilder::<DB>::new(
        "SELECT authorized_by, MAX(issued_at) FROM certificates \
         WHERE authorized_by LIKE 'station:%' GROUP BY authorized_by ORDER BY authorized_by",
    )
}

/// The newest `limit` audit events whose object is one of `objects`.
pub(super) fn select_audit_about<'a, DB>(objects: &'a [String], limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new(format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE object IN "
    ));
    push_in_list(&mut query, objects.iter().map(String::as_str));
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(limit));
    query
}
