//! The admin surface over HTTPS (JSON): revocation operations. Authenticated by the bearer
//! token `init` writes to `DIR/admin-token` (stored hashed, compared in constant time). Roles and
//! operator certificates come with the full admin API.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::auth::token;
use crate::revocation::{Change, REASON_NAMES, Reason, Revocation, RevocationError};

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub revocation: Arc<Revocation>,
    /// SHA-256 of the bearer token; `None` disables the admin API.
    pub token_sha256: Option<Vec<u8>>,
}

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

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.token_sha256 else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin.disabled",
            "the admin API is disabled: config.toml has no admin_token_sha256",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "auth.required",
                "send `Authorization: Bearer <admin token>`",
            )
        })?;
    let hash = token::hash(presented.trim());
    // Constant-time comparison of equal-length digests.
    let same = hash.len() == expected.len()
        && hash
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        tracing::warn!("admin API: bearer token refused");
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth.bad_token",
            "the admin token is not valid",
        ))
    }
}

fn parse_reason(body: Option<Json<RevokeRequest>>) -> Result<Reason, ApiError> {
    let name = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "unspecified".to_owned());
    Reason::parse(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "revocation.unknown_reason",
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
    Path(serial): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RevokeRequest>>,
) -> Result<Json<ChangesResponse>, ApiError> {
    authorize(&state, &headers)?;
    let reason = parse_reason(body)?;
    let serial = serial.replace(':', "").to_ascii_lowercase();
    let change = state
        .revocation
        .revoke(&serial, reason, "admin:api-token")
        .await?;
    Ok(render(vec![(serial, change)]))
}

/// `POST /admin/v1/devices/{serial}/revoke`: every certificate of the device.
pub async fn revoke_device(
    State(state): State<AdminState>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RevokeRequest>>,
) -> Result<Json<ChangesResponse>, ApiError> {
    authorize(&state, &headers)?;
    let reason = parse_reason(body)?;
    Ok(render(
        state
            .revocation
            .revoke_device(&device, reason, "admin:api-token")
            .await?,
    ))
}

/// `POST /admin/v1/certificates/{serial}/release`: lift a hold.
pub async fn release_certificate(
    State(state): State<AdminState>,
    Path(serial): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ChangesResponse>, ApiError> {
    authorize(&state, &headers)?;
    let serial = serial.replace(':', "").to_ascii_lowercase();
    let change = state.revocation.release(&serial, "admin:api-token").await?;
    Ok(render(vec![(serial, change)]))
}

impl From<RevocationError> for ApiError {
    fn from(error: RevocationError) -> ApiError {
        let message = error.to_string();
        match error {
            RevocationError::UnknownCertificate(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "certificate.unknown", message)
            }
            RevocationError::UnknownDevice(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "device.unknown", message)
            }
            RevocationError::NotOnHold { .. } => {
                ApiError::new(StatusCode::CONFLICT, "certificate.not_on_hold", message)
            }
            RevocationError::UnknownIssuer(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "crl.unknown_issuer", message)
            }
            RevocationError::RootSignerOffline | RevocationError::RootOffline => {
                ApiError::new(StatusCode::CONFLICT, "ca.root_offline", message)
            }
            RevocationError::Store(store) => store.into(),
            other => {
                tracing::error!(error = %other, "revocation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server.internal",
                    "the revocation could not be completed (see the server log)",
                )
            }
        }
    }
}
