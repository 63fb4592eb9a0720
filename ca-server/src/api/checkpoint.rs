//! `GET /audit/checkpoint` (plain HTTP, no authentication): the newest signed checkpoint of the
//! audit trail, for anyone who keeps copies (`audit verify --checkpoint FILE` checks them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use crate::audit::checkpoint;
use crate::storage::Store;

/// The newest checkpoint as its JSON file; 404 `audit.no_checkpoint` before the first.
pub async fn latest(State(store): State<Arc<dyn Store>>) -> Result<Response, ApiError> {
    let latest = store.latest_checkpoint().await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::AuditNoCheckpoint,
            "no audit checkpoint has been signed yet",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        checkpoint::to_json(&latest),
    )
        .into_response())
}
