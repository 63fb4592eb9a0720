//! Admin API: manufacturing stations and device re-provisioning, calling the same functions as
//! `ca-server station ...` and `ca-server device reprovision`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::error::{ApiError, ErrorCode};
use crate::auth::operator::Operator;
use crate::operations::reprovision::{ReprovisionError, reprovision};
use crate::operations::stations::{self, DEFAULT_STATION_TOKEN_TTL, NewStation, StationError};
use crate::storage::{Station, StationStatus};

/// Body of `POST /admin/v1/stations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStationRequest {
    pub name: String,
    pub products: Vec<String>,
    pub rate_limit_per_hour: Option<u32>,
    pub token_ttl_seconds: Option<u64>,
}

/// A created station and its one-time enrollment token (shown once).
#[derive(Serialize)]
pub struct CreateStationResponse {
    pub name: String,
    pub token: String,
}

/// A station as listed.
#[derive(Debug, Serialize)]
pub struct StationResponse {
    pub name: String,
    pub status: &'static str,
    pub products: Vec<String>,
    pub rate_limit_per_hour: Option<u32>,
    pub created_at: i64,
}

impl From<Station> for StationResponse {
    fn from(station: Station) -> StationResponse {
        StationResponse {
            name: station.name,
            status: match station.status {
                StationStatus::Active => "active",
                StationStatus::Disabled => "disabled",
            },
            products: station.products,
            rate_limit_per_hour: station.rate_limit_per_hour,
            created_at: station.created_at,
        }
    }
}

/// Outcome of a disable or re-provisioning: the certificates it revoked.
#[derive(Debug, Serialize)]
pub struct RevokedResponse {
    pub revoked: Vec<String>,
}

/// `POST /admin/v1/stations`. The answer carries the token and is `no-store`.
pub async fn create(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    body: Result<Json<CreateStationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::RequestBadBody,
            e.body_text(),
        )
    })?;
    let new = NewStation {
        name: request.name.clone(),
        products: request.products,
        rate_limit_per_hour: request.rate_limit_per_hour,
        token_ttl: request
            .token_ttl_seconds
            .map_or(DEFAULT_STATION_TOKEN_TTL, Duration::from_secs),
    };
    if new.rate_limit_per_hour == Some(0) {
        return Err(StationError::BadRateLimit("0/h".into()).into());
    }
    let authority = &state.authority;
    let token = stations::create(
        authority.policies(),
        authority.store(),
        &new,
        &operator.actor(),
    )
    .await?;
    let response = CreateStationResponse {
        name: request.name,
        token: token.secret,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(response),
    )
        .into_response())
}

/// `GET /admin/v1/stations`.
pub async fn list(State(state): State<AdminState>) -> Result<Json<Vec<StationResponse>>, ApiError> {
    let stations = state.authority.store().stations().await?;
    Ok(Json(stations.into_iter().map(Into::into).collect()))
}

/// `POST /admin/v1/stations/{name}/disable`.
pub async fn disable(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(name): Path<String>,
) -> Result<Json<RevokedResponse>, ApiError> {
    let revoked = stations::disable(
        &state.revocation,
        state.authority.store(),
        &name,
        &operator.actor(),
    )
    .await?;
    Ok(Json(RevokedResponse { revoked }))
}

/// `POST /admin/v1/devices/{serial}/reprovision`.
pub async fn reprovision_device(
    State(state): State<AdminState>,
    Extension(operator): Extension<Operator>,
    Path(serial): Path<String>,
) -> Result<Json<RevokedResponse>, ApiError> {
    let changes = reprovision(
        &state.revocation,
        state.authority.store(),
        &serial,
        &operator.actor(),
    )
    .await
    .map_err(|error| match error {
        ReprovisionError::UnknownDevice(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::DeviceUnknown,
            error.to_string(),
        ),
        ReprovisionError::Revocation(revocation) => revocation.into(),
        ReprovisionError::Store(store) => store.into(),
    })?;
    Ok(Json(RevokedResponse {
        revoked: changes.into_iter().map(|(serial, _)| serial).collect(),
    }))
}

impl From<StationError> for ApiError {
    fn from(error: StationError) -> ApiError {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match error {
            StationError::BadName(_) => (S::BAD_REQUEST, ErrorCode::StationBadName),
            StationError::BadRateLimit(_) => (S::BAD_REQUEST, ErrorCode::StationBadRateLimit),
            StationError::NoProducts => (S::BAD_REQUEST, ErrorCode::StationNoProducts),
            StationError::UnknownProduct(_) => {
                (S::UNPROCESSABLE_ENTITY, ErrorCode::StationUnknownProduct)
            }
            StationError::ProductRefusesStations { .. } => (
                S::UNPROCESSABLE_ENTITY,
                ErrorCode::StationProductRefusesStations,
            ),
            StationError::Exists(_) => (S::CONFLICT, ErrorCode::StationExists),
            StationError::NameIsDevice(_) => (S::CONFLICT, ErrorCode::StationNameIsDevice),
            StationError::Unknown(_) => (S::NOT_FOUND, ErrorCode::StationUnknown),
            StationError::Revocation(revocation) => return revocation.into(),
            StationError::Store(store) => return store.into(),
            StationError::Random => {
                tracing::error!("station token generation failed");
                (S::INTERNAL_SERVER_ERROR, ErrorCode::ServerInternal)
            }
        };
        ApiError::new(status, code, message)
    }
}
