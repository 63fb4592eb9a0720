//! Admin API: the fleet inventory (summary, device listing, a device's tokens and their
//! revocation), calling the same service as `ca-server fleet summary`, `device list`,
//! `token list` and `token revoke`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::auth::operator::Operator;
use crate::operations::InventoryError;
use crate::operations::inventory::{DeviceListParams, DevicePage, FleetSummary, TokenSummary};

/// A device's tokens.
#[derive(Debug, Serialize)]
pub struct TokensResponse {
    pub tokens: Vec<TokenSummary>,
}

/// Outcome of `POST /admin/v1/devices/{serial}/tokens/revoke`.
#[derive(Debug, Serialize)]
pub struct RevokedTokensResponse {
    pub revoked: u64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /admin/v1/fleet/summary`.
pub async fn summary(State(state): State<AdminState>) -> Result<Json<FleetSummary>, ApiError> {
    Ok(Json(state.inventory.summary(now()).await?))
}

/// `GET /admin/v1/devices?product=&lot=&status=&limit=&after=`.
pub async fn list_devices(
    State(state): State<AdminState>,
    query: Result<Query<DeviceListParams>, QueryRejection>,
) -> Result<Json<DevicePage>, ApiError> {
    let Query(params) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InventoryBadQuery,
            e.body_text(),
        )
    })?;
    Ok(Json(state.inventory.devices(params, now()).await?))
}

/// `GET /admin/v1/devices/{serial}/tokens`.
pub async fn list_tokens(
    State(state): State<AdminState>,
    Path(serial): Path<String>,
) -> Result<Json<TokensResponse>, ApiError> {
    let tokens = state.inventory.tokens(&serial, now()).await?;
    Ok(Json(TokensResponse { tokens }))
}

/// `POST /admin/v1/devices/{serial}/tokens/revoke`.
pub async fn revoke_tokens(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(serial): Path<String>,
) -> Result<Json<RevokedTokensResponse>, ApiError> {
    let revoked = state
        .inventory
        .revoke_tokens(&serial, &operator.actor(), now())
        .await?;
    Ok(Json(RevokedTokensResponse { revoked }))
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> ApiError {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match error {
            InventoryError::Store(store) => return store.into(),
            InventoryError::UnknownDevice(_) => (S::NOT_FOUND, ErrorCode::DeviceUnknown),
            InventoryError::UnknownProduct(_) => {
                (S::BAD_REQUEST, ErrorCode::InventoryUnknownProduct)
            }
            InventoryError::BadLimit
            | InventoryError::BadStatus(_)
            | InventoryError::BadText(_) => (S::BAD_REQUEST, ErrorCode::InventoryBadQuery),
        };
        ApiError::new(status, code, message)
    }
}
