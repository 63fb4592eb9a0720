//! Admin API: certificate search and revocation (revoke, hold, release), calling the same
//! functions as `ca-server certificates search`, `revoke` and `release`.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use iomt_core::serial::{CertSerial, CertSerialError};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::auth::operator::Operator;
use crate::operations::search::{self, SearchError, SearchPage, SearchParams};
use crate::revocation::{Change, REASON_NAMES, Reason, RevocationError};

/// Body of a revoke request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// RFC 5280 reason name; `unspecified` when absent.
    pub reason: Option<String>,
}

/// One certificate's outcome.
#[derive(Debug, Serialize)]
pub struct ChangeResponse {
    pub serial: String,
    pub result: &'static str,
}

/// Outcome of a revocation operation.
#[derive(Debug, Serialize)]
pub struct ChangesResponse {
    pub changes: Vec<ChangeResponse>,
}

fn parse_serial(text: &str) -> Result<CertSerial, ApiError> {
    text.parse().map_err(|e: CertSerialError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::CertificateBadSerial,
            e.to_string(),
        )
    })
}

fn parse_reason(body: Option<Json<RevokeRequest>>) -> Result<Reason, ApiError> {
    let name = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "unspecified".to_owned());
    Reason::parse(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::RevocationUnknownReason,
            format!(
                "unknown reason `{name}` (use one of: {})",
                REASON_NAMES.join(", ")
            ),
        )
    })
}

fn render(changes: Vec<(String, Change)>) -> Json<ChangesResponse> {
    Json(ChangesResponse {
        changes: changes
            .into_iter()
            .map(|(serial, change)| ChangeResponse {
                serial,
                result: match change {
                    Change::AlreadyOnHold => "already_on_hold",
                    Change::AlreadyRevoked => "already_revoked",
                    Change::Held => "held",
                    Change::Released => "released",
                    Change::Revoked => "revoked",
                },
            })
            .collect(),
    })
}

/// `POST /admin/v1/certificates/{serial}/revoke`.
pub async fn revoke_certificate(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(serial): Path<String>,
    body: Option<Json<RevokeRequest>>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let reason = parse_reason(body)?;
    let serial = parse_serial(&serial)?;
    let change = state
        .revocation
        .revoke(&serial, reason, &operator.actor())
        .await?;
    Ok(render(vec![(serial.into_string(), change)]))
}

/// `POST /admin/v1/devices/{serial}/revoke`: every certificate of the device.
pub async fn revoke_device(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(device): Path<String>,
    body: Option<Json<RevokeRequest>>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let reason = parse_reason(body)?;
    Ok(render(
        state
            .revocation
            .revoke_device(&device, reason, &operator.actor())
            .await?,
    ))
}

/// `POST /admin/v1/certificates/{serial}/release`: lift a hold.
pub async fn release_certificate(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(serial): Path<String>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let serial = parse_serial(&serial)?;
    let change = state.revocation.release(&serial, &operator.actor()).await?;
    Ok(render(vec![(serial.into_string(), change)]))
}

/// `POST /admin/v1/certificates/{serial}/hold`: revoke with `certificateHold` (reversible).
pub async fn hold_certificate(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(serial): Path<String>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let serial = parse_serial(&serial)?;
    let change = state
        .revocation
        .revoke(&serial, Reason::hold(), &operator.actor())
        .await?;
    Ok(render(vec![(serial.into_string(), change)]))
}

/// `GET /admin/v1/certificates?device=&product=&lot=&status=&expiring_within_days=&limit=&after=`.
pub async fn search(
    State(state): State<AdminState>,
    query: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchPage>, ApiError> {
    let Query(params) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::SearchBadQuery,
            e.body_text(),
        )
    })?;
    Ok(Json(search::search(state.authority.store(), params).await?))
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> ApiError {
        match error {
            SearchError::Store(store) => store.into(),
            other => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::SearchBadQuery,
                other.to_string(),
            ),
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(error: RevocationError) -> ApiError {
        let message = error.to_string();
        match error {
            RevocationError::UnknownCertificate(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::CertificateUnknown,
                message,
            ),
            RevocationError::UnknownDevice(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::DeviceUnknown, message)
            }
            RevocationError::NotOnHold { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::CertificateNotOnHold,
                message,
            ),
            RevocationError::UnknownIssuer(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::CrlUnknownIssuer, message)
            }
            RevocationError::RootSignerOffline | RevocationError::RootOffline => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::CaRootOffline, message)
            }
            RevocationError::Store(store) => store.into(),
            other => {
                tracing::error!(error = %other, "revocation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::ServerInternal,
                    "the revocation could not be completed (see the server log)",
                )
            }
        }
    }
}
