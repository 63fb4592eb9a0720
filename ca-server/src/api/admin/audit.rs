//! Admin API: the audit trail as JSON lines, and its chain verification (role `auditor` or
//! `admin`), calling the same functions as `ca-server audit export` and `audit verify`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::audit::{self, Verification};

/// Events per page when no limit is given, and the largest page.
const DEFAULT_LIMIT: u32 = 1_000;
const MAX_LIMIT: u32 = 10_000;

/// Query of `GET /admin/v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Only events with a greater sequence number (default 0: from the start).
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

/// `GET /admin/v1/audit?since=SEQ&limit=N`: `application/x-ndjson`, one event per line;
/// `X-Audit-Last-Seq` names the last event returned (pass it as `since` for the next page).
pub async fn export(
    State(state): State<AdminState>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let bad =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::AuditBadQuery, message);
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let (lines, last) =
        audit::export_page(state.authority.store(), query.since.unwrap_or(0), limit).await?;
    let mut response = ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response();
    if let Some(last) = last {
        response
            .headers_mut()
            .insert("x-audit-last-seq", HeaderValue::from(last));
    }
    Ok(response)
}

/// `GET /admin/v1/audit/verify`: the chain check; `200` either way, `intact` says which.
pub async fn verify(State(state): State<AdminState>) -> Result<Json<VerifyResponse>, ApiError> {
    let verification = audit::verify(
        state.authority.store(),
        &state.authority.root_der(),
        Vec::new(),
    )
    .await?;
    Ok(Json(VerifyResponse {
        intact: verification.is_intact(),
        verification,
    }))
}

/// The verification with a top-level verdict.
#[derive(Debug, serde::Serialize)]
pub struct VerifyResponse {
    pub intact: bool,
    #[serde(flatten)]
    pub verification: Verification,
}
