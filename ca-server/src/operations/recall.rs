//! Recalls: hold or revoke every valid certificate of the devices a query names (a product,
//! optionally one lot and devices registered before a time), in bounded batches, each its own
//! transaction with one audit event per certificate. The recall is recorded first (with an
//! audit event naming the query and how many certificates matched); from then on the group
//! commit refuses issuance to those devices, so enrollments racing the recall cannot leave a
//! matching device with a valid certificate. Running the same recall again after an
//! interruption resumes it; the affected CRL is republished once, when it completes.

use std::collections::BTreeSet;
use std::sync::Arc;

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;

use crate::revocation::{REASON_NAMES, Reason, Revocation, RevocationError};
use crate::storage::{
    AuditAction, AuditEvent, NewRecall, RecallAction, RecallCount, RecallMatch, RecallQuery,
    RecallRecord, Store, StoreError,
};

/// Certificates changed per transaction unless the caller says otherwise.
pub const DEFAULT_BATCH: u32 = 500;

/// Why a recall could not be run, listed or released.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("no product policy `{0}` is loaded")]
    UnknownProduct(String),
    #[error("unknown reason `{0}` (use one of: {names})", names = REASON_NAMES.join(", "))]
    UnknownReason(String),
    #[error(
        "a hold recall always uses certificateHold; `{0}` is a revocation reason (use --action revoke)"
    )]
    HoldWithReason(String),
    #[error("certificateHold is not a revocation reason; use --action hold")]
    RevokeWithHold,
    #[error("no recall with id {0}")]
    UnknownRecall(i64),
    #[error("recall {id} cannot be released: {why}")]
    NotReleasable { id: i64, why: &'static str },
    #[error("batch size must be at least 1")]
    EmptyBatch,
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallRequest {
    pub query: RecallQuery,
    pub action: RecallAction,
    /// RFC 5280 reason name for a revoke (default `unspecified`); a hold takes none.
    pub reason: Option<String>,
}

/// How the work is cut: certificates per transaction, and (to test an interruption) a number
/// of batches after which the run stops as if the process had died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    pub size: u32,
    pub stop_after: Option<usize>,
}

impl Default for Batches {
    fn default() -> Batches {
        Batches {
            size: DEFAULT_BATCH,
            stop_after: None,
        }
    }
}

/// What a dry run would touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub counts: Vec<RecallCount>,
}

impl Plan {
    /// Matching certificates in all.
    pub fn certificates(&self) -> u64 {
        self.counts.iter().map(|c| c.certificates).sum()
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The recall as stored after the run.
    pub recall: RecallRecord,
    /// True when this run continued an interrupted recall.
    pub resumed: bool,
    /// Certificates this run changed.
    pub changed: u64,
    /// CRLs republished (none when the run stopped before completing).
    pub crls: Vec<String>,
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub id: i64,
    /// Certificates set valid again.
    pub certificates: u64,
    pub crls: Vec<String>,
}

/// The recall service.
pub struct Recalls {
    store: Arc<dyn Store>,
    revocation: Arc<Revocation>,
    policies: Arc<PolicySet>,
}

impl std::fmt::Debug for Recalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recalls").finish_non_exhaustive()
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn query_json(query: &RecallQuery) -> serde_json::Value {
    serde_json::json!({
        "product": query.product,
        "lot": query.lot,
        "registered_before": query.registered_before,
    })
}

impl Recalls {
    /// Recalls over this store, revocation service and policies.
    pub fn new(
        store: Arc<dyn Store>,
        revocation: Arc<Revocation>,
        policies: Arc<PolicySet>,
    ) -> Recalls {
        Recalls {
            store,
            revocation,
            policies,
        }
    }

    /// The reason each certificate gets, checked against the action.
    fn reason(request: &RecallRequest) -> Result<String, RecallError> {
        let parsed = match request.reason.as_deref() {
            None => None,
            Some(name) => {
                Some(Reason::parse(name).ok_or_else(|| RecallError::UnknownReason(name.into()))?)
            }
        };
        match (request.action, parsed) {
            (RecallAction::Hold, None) => Ok("certificateHold".to_owned()),
            (RecallAction::Hold, Some(reason)) if reason.is_hold() => Ok(reason.name().into()),
            (RecallAction::Hold, Some(reason)) => {
                Err(RecallError::HoldWithReason(reason.name().into()))
            }
            (RecallAction::Revoke, Some(reason)) if reason.is_hold() => {
                Err(RecallError::RevokeWithHold)
            }
            (RecallAction::Revoke, Some(reason)) => Ok(reason.name().into()),
            (RecallAction::Revoke, None) => Ok("unspecified".to_owned()),
        }
    }

    /// The issuing CA of the product's level: every device certificate of it comes from there.
    fn issuer_of(&self, product: &str) -> Result<&'static str, RecallError> {
        self.policies
            .product(product)
            .map(|policy| policy.policy.level.as_str())
            .ok_or_else(|| RecallError::UnknownProduct(product.to_owned()))
    }

    /// What the recall would touch now (the dry run); changes nothing.
    pub async fn plan(&self, request: &RecallRequest) -> Result<Plan, RecallError> {
        self.issuer_of(&request.query.product)?;
        Self::reason(request)?;
        let counts = self.store.recall_counts(&request.query, now()).await?;
        Ok(Plan { counts })
    }

    /// Up to `limit` of the certificates the recall would change now (the dry run's sample),
    /// by serial; changes nothing.
    pub async fn sample(
        &self,
        request: &RecallRequest,
        limit: u32,
    ) -> Result<Vec<RecallMatch>, RecallError> {
        self.issuer_of(&request.query.product)?;
        Ok(self
            .store
            .recall_matches(&request.query, None, limit, now())
            .await?)
    }

    /// Records the recall (or finds the interrupted one with the same query and action) and
    /// changes every matching valid certificate, batch by batch.
    pub async fn run(
        &self,
        request: &RecallRequest,
        actor: &str,
        batches: Batches,
    ) -> Result<Outcome, RecallError> {
        if batches.size == 0 {
            return Err(RecallError::EmptyBatch);
        }
        let issuer = self.issuer_of(&request.query.product)?;
        let reason = Self::reason(request)?;
        let unfinished = self.store.recalls().await?.into_iter().find(|r| {
            r.completed_at.is_none()
                && r.released_at.is_none()
                && r.query == request.query
                && r.action == request.action
        });
        let (recall, resumed) = match unfinished {
            Some(recall) => (recall, true),
            None => (self.start(request, &reason, actor).await?, false),
        };
        let action = match recall.action {
            RecallAction::Hold => AuditAction::CertificateHeld,
            RecallAction::Revoke => AuditAction::CertificateRevoked,
        };
        let audit_for = |m: &RecallMatch| AuditEvent {
            at: now(),
            actor: actor.to_owned(),
            action: action.into(),
            object: format!("certificate:{}", m.serial),
            details: serde_json::json!({
                "reason": recall.reason,
                "device": m.device,
                "recall": recall.id,
            })
            .to_string(),
        };
        let mut changed = 0u64;
        let mut issuers = BTreeSet::from([issuer.to_owned()]);
        let mut done_batches = 0usize;
        loop {
            if batches.stop_after.is_some_and(|stop| done_batches >= stop) {
                tracing::warn!(
                    recall = recall.id,
                    changed,
                    "recall stopped before completing"
                );
                let recall = self.find(recall.id).await?;
                return Ok(Outcome {
                    recall,
                    resumed,
                    changed,
                    crls: Vec::new(),
                });
            }
            let found = self
                .store
                .recall_matches(&recall.query, None, batches.size, now())
                .await?;
            if found.is_empty() {
                break;
            }
            let serials: Vec<String> = found.into_iter().map(|m| m.serial).collect();
            let applied = self
                .store
                .apply_recall(&recall, &serials, now(), &audit_for)
                .await?;
            changed += applied.len() as u64;
            issuers.extend(applied.into_iter().map(|m| m.issuer));
            done_batches += 1;
        }
        let stored = self.find(recall.id).await?;
        let completed = AuditEvent {
            at: now(),
            actor: actor.to_owned(),
            action: AuditAction::RecallCompleted.into(),
            object: format!("recall:{}", recall.id),
            details: serde_json::json!({
                "query": query_json(&recall.query),
                "action": recall.action.as_str(),
                "certificates": stored.certificates,
            })
            .to_string(),
        };
        self.store
            .complete_recall(recall.id, now(), &completed)
            .await?;
        for issuer in &issuers {
            self.revocation.publish_crl(issuer).await?;
        }
        tracing::info!(
            recall = recall.id,
            product = %recall.query.product,
            action = recall.action.as_str(),
            certificates = stored.certificates,
            "recall completed"
        );
        Ok(Outcome {
            recall: self.find(recall.id).await?,
            resumed,
            changed,
            crls: issuers.into_iter().collect(),
        })
    }

    async fn start(
        &self,
        request: &RecallRequest,
        reason: &str,
        actor: &str,
    ) -> Result<RecallRecord, RecallError> {
        let at = now();
        let plan = self.store.recall_counts(&request.query, at).await?;
        let matching: u64 = plan.iter().map(|c| c.certificates).sum();
        let recall = NewRecall {
            query: request.query.clone(),
            action: request.action,
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            created_at: at,
        };
        let audit = AuditEvent {
            at,
            actor: actor.to_owned(),
            action: AuditAction::RecallStarted.into(),
            // The store names the recall by its new id.
            object: "recall".to_owned(),
            details: serde_json::json!({
                "query": query_json(&request.query),
                "action": request.action.as_str(),
                "reason": reason,
                "matching_certificates": matching,
            })
            .to_string(),
        };
        let id = self.store.create_recall(&recall, &audit).await?;
        tracing::info!(recall = id, product = %request.query.product, action = request.action.as_str(), matching, "recall started");
        self.find(id).await
    }

    async fn find(&self, id: i64) -> Result<RecallRecord, RecallError> {
        self.store
            .recalls()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(RecallError::UnknownRecall(id))
    }

    /// Every recall, newest first.
    pub async fn list(&self) -> Result<Vec<RecallRecord>, RecallError> {
        Ok(self.store.recalls().await?)
    }

    /// Lifts a hold recall: its certificates still on hold are valid again, issuance to its
    /// devices resumes, and the affected CRLs are republished.
    pub async fn release(&self, id: i64, actor: &str) -> Result<Released, RecallError> {
        let recall = self.find(id).await?;
        if recall.action != RecallAction::Hold {
            return Err(RecallError::NotReleasable {
                id,
                why: "it revoked its certificates, which cannot be undone",
            });
        }
        let at = now();
        let audit = AuditEvent {
            at,
            actor: actor.to_owned(),
            action: AuditAction::RecallReleased.into(),
            object: format!("recall:{id}"),
            details: serde_json::json!({ "query": query_json(&recall.query) }).to_string(),
        };
        let audit_for = |m: &RecallMatch| AuditEvent {
            at,
            actor: actor.to_owned(),
            action: AuditAction::CertificateReleased.into(),
            object: format!("certificate:{}", m.serial),
            details: serde_json::json!({ "device": m.device, "recall": id }).to_string(),
        };
        let released = self
            .store
            .release_recall(id, at, &audit, &audit_for)
            .await?
            .ok_or(RecallError::NotReleasable {
                id,
                why: "it was already released",
            })?;
        let issuers: BTreeSet<String> = released.iter().map(|m| m.issuer.clone()).collect();
        for issuer in &issuers {
            self.revocation.publish_crl(issuer).await?;
        }
        tracing::info!(
            recall = id,
            certificates = released.len(),
            "recall released"
        );
        Ok(Released {
            id,
            certificates: released.len() as u64,
            crls: issuers.into_iter().collect(),
        })
    }
}

/// `released`, `completed` or `interrupted` (recorded, not finished: run it again to resume).
pub fn state(recall: &RecallRecord) -> &'static str {
    match (recall.released_at, recall.completed_at) {
        (Some(_), _) => "released",
        (None, Some(_)) => "completed",
        (None, None) => "interrupted",
    }
}

/// One recall as JSON (times in RFC 3339), as `recall list --json` and the admin API show it.
pub fn to_json(recall: &RecallRecord) -> serde_json::Value {
    use super::health::rfc3339;
    serde_json::json!({
        "id": recall.id,
        "state": state(recall),
        "product": recall.query.product,
        "lot": recall.query.lot,
        "registered_before": recall.query.registered_before.map(rfc3339),
        "action": recall.action.as_str(),
        "reason": recall.reason,
        "actor": recall.actor,
        "created_at": rfc3339(recall.created_at),
        "completed_at": recall.completed_at.map(rfc3339),
        "released_at": recall.released_at.map(rfc3339),
        "certificates": recall.certificates,
    })
}
