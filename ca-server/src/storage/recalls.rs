//! Recalls as stored: which devices a recall names (product, lot, registered before), what it
//! does to their certificates (hold or revoke), which certificates it changed, and whether it
//! finished or was released. Every backend implements [`RecallStore`] with the statements
//! here, written once for both.
//!
//! The invariant "no matching device keeps a valid certificate" holds under concurrency
//! because an active recall is also checked by the group commit, under its write lock (see
//! `batch::admit`): an issuance committed before the recall row is found by the recall's sweep,
//! one committed after is refused.

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::batch::push_in_list;
use super::{AuditEvent, CertificateStatus, StoreError};

/// Which devices a recall names; `lot` and `registered_before` narrow the product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallQuery {
    pub product: String,
    pub lot: Option<String>,
    /// Only devices registered strictly before this Unix time.
    pub registered_before: Option<i64>,
}

/// What a recall does to the matching valid certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallAction {
    /// certificateHold: reversible with `recall release`.
    Hold,
    /// Revoked for good, with the recall's reason.
    Revoke,
}

impl RecallAction {
    /// The name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RecallAction::Hold => "hold",
            RecallAction::Revoke => "revoke",
        }
    }

    /// Parses `hold` or `revoke`.
    pub fn parse(text: &str) -> Option<RecallAction> {
        match text {
            "hold" => Some(RecallAction::Hold),
            "revoke" => Some(RecallAction::Revoke),
            _ => None,
        }
    }

    /// The certificate status the action sets.
    pub fn status(self) -> CertificateStatus {
        match self {
            RecallAction::Hold => CertificateStatus::OnHold,
            RecallAction::Revoke => CertificateStatus::Revoked,
        }
    }
}

/// A recall about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecall {
    pub query: RecallQuery,
    pub action: RecallAction,
    /// RFC 5280 reason name put on each certificate (`certificateHold` for a hold).
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
}

/// A recall as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallRecord {
    pub id: i64,
    pub query: RecallQuery,
    pub action: RecallAction,
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
    /// Set when every matching certificate was handled (`None`: interrupted or running).
    pub completed_at: Option<i64>,
    /// Set when a hold recall was lifted.
    pub released_at: Option<i64>,
    /// Certificates this recall changed.
    pub certificates: u64,
}

/// A certificate a recall touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallMatch {
    pub serial: String,
    pub issuer: String,
    pub device: String,
}

/// Matching valid certificates per issuing CA, for a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallCount {
    pub issuer: String,
    pub certificates: u64,
    pub devices: u64,
}

/// Builds the audit event of one certificate a recall changed.
pub type AuditFor<'a> = &'a (dyn Fn(&RecallMatch) -> AuditEvent + Sync);

/// Recall persistence.
#[async_trait]
pub trait RecallStore: Send + Sync {
    /// Records a recall and its audit event in one transaction; returns its id. From the commit
    /// on, the group commit refuses issuances to the devices it names.
    async fn create_recall(
        &self,
        recall: &NewRecall,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError>;
    /// Valid, unexpired certificates of the devices `query` names, by serial after `after`.
    async fn recall_matches(
        &self,
        query: &RecallQuery,
        after: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<RecallMatch>, StoreError>;
    /// How many valid, unexpired certificates (and devices) `query` names, per issuing CA.
    async fn recall_counts(
        &self,
        query: &RecallQuery,
        now: i64,
    ) -> Result<Vec<RecallCount>, StoreError>;
    /// In one transaction: sets each of `serials` that is still valid to the recall's status,
    /// records it against the recall and appends `audit_for` of it; returns those changed.
    async fn apply_recall(
        &self,
        recall: &RecallRecord,
        serials: &[String],
        at: i64,
        audit_for: AuditFor<'_>,
    ) -> Result<Vec<RecallMatch>, StoreError>;
    /// Marks a recall complete and appends its closing audit event.
    async fn complete_recall(&self, id: i64, at: i64, audit: &AuditEvent)
    -> Result<(), StoreError>;
    /// Every recall, newest first.
    async fn recalls(&self) -> Result<Vec<RecallRecord>, StoreError>;
    /// Lifts a hold recall: sets the certificates it held (and that are still on hold) valid
    /// again, appends `audit` and `audit_for` each, in one transaction. `None` when no
    /// unreleased hold recall has this id.
    async fn release_recall(
        &self,
        id: i64,
        at: i64,
        audit: &AuditEvent,
        audit_for: AuditFor<'_>,
    ) -> Result<Option<Vec<RecallMatch>>, StoreError>;
}

/// The `recalls` columns, in [`RecallRow`] order.
const RECALL_COLUMNS: &str = "id, product, lot, registered_before, action, reason, actor, \
     created_at, completed_at, released_at, certificates";

/// One `recalls` row as read.
pub(super) type RecallRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

/// A row as a record (an unknown action reads as the stricter `revoke`).
pub(super) fn record(row: RecallRow) -> RecallRecord {
    let (id, product, lot, registered_before, action, reason, actor, created_at, completed_at) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    );
    RecallRecord {
        id,
        query: RecallQuery {
            product,
            lot,
            registered_before,
        },
        action: RecallAction::parse(&action).unwrap_or(RecallAction::Revoke),
        reason,
        actor,
        created_at,
        completed_at,
        released_at: row.9,
        certificates: super::operations::count(row.10),
    }
}

/// `INSERT INTO recalls ... RETURNING id`.
pub(super) fn insert<DB>(recall: &NewRecall) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new(
        "INSERT INTO recalls (product, lot, registered_before, action, reason, actor, created_at) \
         VALUES (",
    );
    let mut values = query.separated(", ");
    values.push_bind(recall.query.product.as_str());
    values.push_bind(recall.query.lot.as_deref());
    values.push_bind(recall.query.registered_before);
    values.push_bind(recall.action.as_str());
    values.push_bind(recall.reason.as_str());
    values.push_bind(recall.actor.as_str());
    values.push_bind(recall.created_at);
    query.push(") RETURNING id");
    query
}

/// Appends the device filter of `query` (devices aliased `d`).
fn push_device_filter<DB>(builder: &mut QueryBuilder<DB>, query: &RecallQuery)
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    builder
        .push("d.product = ")
        .push_bind(query.product.as_str());
    if let Some(lot) = query.lot.as_deref() {
        builder.push(" AND d.lot = ").push_bind(lot);
    }
    if let Some(before) = query.registered_before {
        builder.push(" AND d.registered_at < ").push_bind(before);
    }
}

/// The valid, unexpired certificates a query names: `(serial, issuer, device_serial)`.
pub(super) fn select_matches<DB>(
    query: &RecallQuery,
    after: Option<&str>,
    limit: u32,
    now: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new(
        "SELECT c.serial, c.issuer, c.device_serial FROM certificates c \
         JOIN devices d ON d.serial = c.device_serial WHERE ",
    );
    push_device_filter(&mut builder, query);
    builder
        .push(" AND c.status = 'valid' AND c.not_after > ")
        .push_bind(now);
    if let Some(after) = after {
        builder.push(" AND c.serial > ").push_bind(after);
    }
    builder
        .push(" ORDER BY c.serial LIMIT ")
        .push_bind(i64::from(limit));
    builder
}

/// Matching certificates and devices per issuer: `(issuer, certificates, devices)`.
pub(super) fn select_counts<DB>(query: &RecallQuery, now: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new(
        "SELECT c.issuer, COUNT(*), COUNT(DISTINCT c.device_serial) FROM certificates c \
         JOIN devices d ON d.serial = c.device_serial WHERE ",
    );
    push_device_filter(&mut builder, query);
    builder
        .push(" AND c.status = 'valid' AND c.not_after > ")
        .push_bind(now);
    builder.push(" GROUP BY c.issuer ORDER BY c.issuer");
    builder
}

/// Sets those of `serials` still valid to `status`: returns `(serial, issuer, device_serial)`.
pub(super) fn update_still_valid<DB>(
    serials: &[String],
    status: CertificateStatus,
    reason: &str,
    at: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new("UPDATE certificates SET status = ");
    builder
        .push_bind(status.as_str())
        .push(", revocation_reason = ")
        .push_bind(reason)
        .push(", revoked_at = ")
        .push_bind(at)
        .push(" WHERE status = 'valid' AND serial IN ");
    push_in_list(&mut builder, serials.iter().map(String::as_str));
    builder.push(" RETURNING serial, issuer, device_serial");
    builder
}

/// Records which certificates a recall changed and adds them to its count.
pub(super) fn insert_items<DB>(recall: i64, changed: &[RecallMatch]) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder =
        QueryBuilder::<DB>::new("INSERT INTO recall_certificates (recall_id, serial) ");
    builder.push_values(changed, |mut row, item| {
        row.push_bind(recall).push_bind(item.serial.as_str());
    });
    builder
}

/// `UPDATE recalls SET certificates = certificates + n`.
pub(super) fn add_to_count<DB>(recall: i64, n: usize) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new("UPDATE recalls SET certificates = certificates + ");
    builder
        .push_bind(i64::try_from(n).unwrap_or(i64::MAX))
        .push(" WHERE id = ")
        .push_bind(recall);
    builder
}

/// `UPDATE recalls SET completed_at = at` (once).
pub(super) fn complete<DB>(recall: i64, at: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new("UPDATE recalls SET completed_at = ");
    builder
        .push_bind(at)
        .push(" WHERE completed_at IS NULL AND id = ")
        .push_bind(recall);
    builder
}

/// Every recall, newest first.
pub(super) fn select_all<DB>() -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
{
    QueryBuilder::<DB>::new(format!(
        "SELECT {RECALL_COLUMNS} FROM recalls ORDER BY id DESC"
    ))
}

/// Marks an unreleased hold recall released: returns its id when there was one.
pub(super) fn mark_released<DB>(recall: i64, at: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new("UPDATE recalls SET released_at = ");
    builder
        .push_bind(at)
        .push(" WHERE released_at IS NULL AND action = 'hold' AND id = ")
        .push_bind(recall)
        .push(" RETURNING id");
    builder
}

/// Sets the certificates a recall held, and still on hold, valid again.
pub(super) fn unhold<DB>(recall: i64) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::<DB>::new(
        "UPDATE certificates SET status = 'valid', revocation_reason = NULL, revoked_at = NULL \
         WHERE status = 'on_hold' AND serial IN \
         (SELECT serial FROM recall_certificates WHERE recall_id = ",
    );
    builder
        .push_bind(recall)
        .push(") RETURNING serial, issuer, device_serial");
    builder
}

/// `(serial, issuer, device_serial)` rows as matches.
pub(super) fn matches(rows: Vec<(String, String, String)>) -> Vec<RecallMatch> {
    rows.into_iter()
        .map(|(serial, issuer, device)| RecallMatch {
            serial,
            issuer,
            device,
        })
        .collect()
}
