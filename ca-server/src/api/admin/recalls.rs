//! Admin API: recalls (admin role only), calling the same service as `ca-server recall`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::auth::operator::Operator;
use crate::operations::recall::{self as service, DEFAULT_BATCH};
use crate::operations::{Batches, RecallError, RecallRequest};
use crate::storage::{RecallAction, RecallQuery};

/// Body of `POST /admin/v1/recalls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallBody {
    pub product: String,
    pub lot: Option<String>,
    /// RFC 3339.
    pub registered_before: Option<String>,
    /// `hold` or `revoke`.
    pub action: String,
    pub reason: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

fn bad(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn request(body: RecallBody) -> Result<RecallRequest, ApiError> {
    let action = RecallAction::parse(&body.action).ok_or_else(|| {
        bad(
            ErrorCode::RecallBadAction,
            format!("action must be hold or revoke, not `{}`", body.action),
        )
    })?;
    let registered_before = match body.registered_before.as_deref() {
        None => None,
        Some(text) => Some(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(ErrorCode::RecallBadTime, format!("registered_before: {e}")))?
                .unix_timestamp(),
        ),
    };
    Ok(RecallRequest {
        query: RecallQuery {
            product: body.product,
            lot: body.lot,
            registered_before,
        },
        action,
        reason: body.reason,
    })
}

/// `POST /admin/v1/recalls`: the plan with `dry_run`, else the recall run to completion.
pub async fn start(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    body: Result<Json<RecallBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|e| bad(ErrorCode::RequestBadBody, e.body_text()))?;
    let dry_run = body.dry_run;
    let request = request(body)?;
    let plan = state.recalls.plan(&request).await?;
    let matching = serde_json::json!({
        "certificates": plan.certificates(),
        "per_ca": plan.counts.iter().map(|c| serde_json::json!({
            "ca": c.issuer, "certificates": c.certificates, "devices": c.devices,
        })).collect::<Vec<_>>(),
    });
    if dry_run {
        return Ok(Json(
            serde_json::json!({ "dry_run": true, "matching": matching }),
        ));
    }
    let batches = Batches {
        size: DEFAULT_BATCH,
        stop_after: None,
    };
    let outcome = state
        .recalls
        .run(&request, &operator.actor(), batches)
        .await?;
    Ok(Json(serde_json::json!({
        "dry_run": false,
        "matching": matching,
        "recall": service::to_json(&outcome.recall),
        "resumed": outcome.resumed,
        "changed": outcome.changed,
        "crls": outcome.crls,
    })))
}

/// `GET /admin/v1/recalls`: every recall, newest first.
pub async fn list(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let recalls = state.recalls.list().await?;
    Ok(Json(serde_json::json!({
        "recalls": recalls.iter().map(service::to_json).collect::<Vec<_>>(),
    })))
}

/// `POST /admin/v1/recalls/{id}/release`.
pub async fn release(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let released = state.recalls.release(id, &operator.actor()).await?;
    Ok(Json(serde_json::json!({
        "id": released.id,
        "certificates": released.certificates,
        "crls": released.crls,
    })))
}

impl From<RecallError> for ApiError {
    fn from(error: RecallError) -> ApiError {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match &error {
            RecallError::Store(_) | RecallError::Revocation(_) => {
                return match error {
                    RecallError::Store(store) => store.into(),
                    other => {
                        tracing::error!(error = %other, "recall failed");
                        ApiError::new(
                            S::INTERNAL_SERVER_ERROR,
                            ErrorCode::ServerInternal,
                            "the recall could not be completed; run it again to resume (see the server log)",
                        )
                    }
                };
            }
            RecallError::UnknownProduct(_) => (S::BAD_REQUEST, ErrorCode::RecallUnknownProduct),
            RecallError::UnknownReason(_)
            | RecallError::HoldWithReason(_)
            | RecallError::RevokeWithHold => (S::BAD_REQUEST, ErrorCode::RecallBadReason),
            RecallError::EmptyBatch => (S::BAD_REQUEST, ErrorCode::RecallBadBatch),
            RecallError::UnknownRecall(_) => (S::NOT_FOUND, ErrorCode::RecallUnknown),
            RecallError::NotReleasable { .. } => (S::CONFLICT, ErrorCode::RecallNotReleasable),
        };
        ApiError::new(status, code, message)
    }
}
