//! Admin API: device registration (JSON or the MES CSV, all-or-nothing), device records and
//! one-time tokens, calling the same functions as `ca-server device register` and `token create`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::auth::operator::Operator;
use crate::operations::registry::{self, LineError, Registration, RegistryError};
use crate::operations::search::{self, CertificateSummary, SearchParams};

/// One device in a JSON registration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    pub serial: String,
    pub product: String,
    pub lot: Option<String>,
    pub gtin: Option<String>,
}

/// Body of `POST /admin/v1/devices` (JSON form).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub devices: Vec<DeviceRequest>,
}

/// Outcome of a registration.
#[derive(Debug, Serialize)]
pub struct RegisterResponse {
    pub registered: usize,
}

/// `POST /admin/v1/devices`: `application/json` (`{"devices": [...]}`; line N is the Nth device)
/// or `text/csv` (the MES export; line numbers count the header).
pub async fn register_devices(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rows = parse_devices(&headers, &body)?;
    let authority = &state.authority;
    let registered = registry::register(
        authority.policies(),
        authority.store(),
        &rows,
        &operator.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(RegisterResponse { registered })).into_response())
}

fn parse_devices(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(usize, Registration)>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bad = |message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::RequestBadBody, message)
    };
    if content_type.starts_with("text/csv") {
        let text = std::str::from_utf8(body).map_err(|_| bad("the CSV is not UTF-8".into()))?;
        return Ok(registry::parse_csv(text)?);
    }
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RequestContentType,
            "send application/json or text/csv",
        ));
    }
    let request: RegisterRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("JSON: {e}")))?;
    Ok(request
        .devices
        .into_iter()
        .enumerate()
        .map(|(index, d)| {
            (
                index + 1,
                Registration {
                    serial: d.serial,
                    product: d.product,
                    lot: d.lot,
                    gtin: d.gtin,
                },
            )
        })
        .collect())
}

/// A device record with its certificates.
#[derive(Debug, Serialize)]
pub struct DeviceResponse {
    pub serial: String,
    pub product: String,
    pub gtin: String,
    pub lot: Option<String>,
    pub status: &'static str,
    pub registered_at: i64,
    pub certificates: Vec<CertificateSummary>,
}

/// `GET /admin/v1/devices/{serial}`.
pub async fn device(
    State(state): State<AdminState>,
    Path(serial): Path<String>,
) -> Result<Json<DeviceResponse>, ApiError> {
    let store = state.authority.store();
    let device = store.device(&serial).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::DeviceUnknown,
            format!("device {serial} is not registered"),
        )
    })?;
    let params = SearchParams {
        device: Some(serial),
        limit: Some(search::MAX_LIMIT),
        ..SearchParams::default()
    };
    let certificates = search::search(store, params).await?.certificates;
    Ok(Json(DeviceResponse {
        status: match device.status {
            crate::storage::DeviceStatus::Active => "active",
            crate::storage::DeviceStatus::Disabled => "disabled",
        },
        serial: device.serial,
        product: device.product,
        gtin: device.gtin,
        lot: device.lot,
        registered_at: device.registered_at,
        certificates,
    }))
}

/// Body of `POST /admin/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensRequest {
    pub serials: Vec<String>,
    /// Lifetime such as `30m` or `8h`; default and maximum: the product's `max_ttl_hours`.
    pub ttl: Option<String>,
}

/// One created token (shown once).
#[derive(Serialize)]
pub struct TokenResponse {
    pub serial: String,
    pub token: String,
    pub expires_at: i64,
}

/// The created tokens.
#[derive(Serialize)]
pub struct TokensResponse {
    pub tokens: Vec<TokenResponse>,
}

/// `POST /admin/v1/tokens`: one token per serial, all or none. The answer is `no-store`.
pub async fn create_tokens(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    request: Result<Json<TokensRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::RequestBadBody,
            e.body_text(),
        )
    })?;
    let ttl: Option<Duration> = request
        .ttl
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::TokenBadTtl,
                format!("ttl: {e} (use e.g. 30m or 8h)"),
            )
        })?;
    let authority = &state.authority;
    let created = registry::create_tokens(
        authority.policies(),
        authority.store(),
        &request.serials,
        ttl,
        &operator.actor(),
    )
    .await?;
    let tokens = created
        .into_iter()
        .map(|c| TokenResponse {
            serial: c.serial,
            token: c.token.secret,
            expires_at: c.expires_at,
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokensResponse { tokens }),
    )
        .into_response())
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &error {
            RegistryError::Store(_) | RegistryError::Random => {
                return match error {
                    RegistryError::Store(store) => store.into(),
                    other => {
                        tracing::error!(error = %other, "registry operation failed");
                        ApiError::new(
                            S::INTERNAL_SERVER_ERROR,
                            ErrorCode::ServerInternal,
                            "the operation failed (see the server log); nothing was written",
                        )
                    }
                };
            }
            RegistryError::BadLines(lines) if lines.iter().all(|l| l.already_registered) => {
                (S::CONFLICT, ErrorCode::DeviceExists)
            }
            RegistryError::BadLines(_) => (S::UNPROCESSABLE_ENTITY, ErrorCode::RegistryBadLines),
            RegistryError::Csv(_) => (S::BAD_REQUEST, ErrorCode::RegistryBadCsv),
            RegistryError::Empty => (S::BAD_REQUEST, ErrorCode::RegistryEmpty),
            RegistryError::TtlTooLong { .. } => (S::BAD_REQUEST, ErrorCode::TokenTtlTooLong),
            RegistryError::TokensNotAllowed { .. } => {
                (S::FORBIDDEN, ErrorCode::PolicyTokenNotAllowed)
            }
            RegistryError::UnknownDevices(_) => (S::NOT_FOUND, ErrorCode::DeviceUnknown),
            RegistryError::DeviceDisabled(_) => (S::CONFLICT, ErrorCode::DeviceDisabled),
        };
        let message = match &error {
            RegistryError::BadLines(lines) => bad_lines_message(lines),
            other => other.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

/// Bad lines named in one line of text, the first [`NAMED_LINES`] of them.
fn bad_lines_message(lines: &[LineError]) -> String {
    let mut message = format!("{} bad line(s), nothing registered: ", lines.len());
    let named: Vec<String> = lines
        .iter()
        .take(NAMED_LINES)
        .map(ToString::to_string)
        .collect();
    message.push_str(&named.join("; "));
    if lines.len() > NAMED_LINES {
        message.push_str(&format!("; and {} more", lines.len() - NAMED_LINES));
    }
    message
}

/// Bad lines named in an error answer (a whole file of duplicates would otherwise make a
/// megabyte-long line); the CLI names them all.
const NAMED_LINES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_message_names_the_first_hundred_on_one_line() {
        let lines: Vec<LineError> = (2..=151)
            .map(|line| LineError {
                line,
                message: "device X is already registered".into(),
                already_registered: true,
            })
            .collect();
        let message = bad_lines_message(&lines);
        assert!(!message.contains('\n'));
        assert!(message.starts_with("150 bad line(s), nothing registered: line 2: device X"));
        assert!(message.contains("line 101:") && !message.contains("line 102:"));
        assert!(message.ends_with("; and 50 more"), "{message}");
    }
}
