//! `GET /healthz` (the process answers) and `GET /readyz` (the CA could serve a request now),
//! on the plain-HTTP listener, with JSON bodies: 200 when alive or ready, 503 when not ready.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::operations::Health;
use crate::operations::health::rfc3339;

/// `GET /healthz`: always 200 while the process serves HTTP.
pub async fn healthz() -> Response {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Json(serde_json::json!({ "status": "alive", "checked_at": rfc3339(now) })).into_response()
}

/// `GET /readyz`: 200 with every check, or 503 naming the failing ones.
pub async fn readyz(State(health): State<Arc<Health>>) -> Response {
    let readiness = health.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}
