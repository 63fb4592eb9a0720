//! Station administration: the operations behind `ca-server station` (and the admin API).
//! Validation happens here; SQL in storage.

use std::time::Duration;

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;

use crate::auth::token::{self, NewToken};
use crate::authority::allow_station_enrollment;
use crate::pki::STATION_CA;
use crate::revocation::{Revocation, RevocationError};
use crate::storage::{
    AuditAction, AuditEvent, Station, StationStatus, StationToken, Store, StoreError,
};

/// How long a station's enrollment token lasts unless the operator says otherwise.
pub const DEFAULT_STATION_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a station operation was refused. Nothing is written when it is.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error(
        "station name `{0}` is not allowed: use 1-64 letters, digits and `-` (e.g. plant1-line3-st07)"
    )]
    BadName(String),
    #[error("`{0}` is already a registered device serial; a station needs its own name")]
    NameIsDevice(String),
    #[error("rate limit `{0}` is not understood: write N/h, e.g. 600/h (N at least 1)")]
    BadRateLimit(String),
    #[error("give at least one product")]
    NoProducts,
    #[error("no loaded policy defines product `{0}`")]
    UnknownProduct(String),
    #[error("product `{product}` cannot be enrolled by a station: {reason}")]
    ProductRefusesStations { product: String, reason: String },
    #[error("station {0} already exists")]
    Exists(String),
    #[error("station {0} does not exist or is disabled")]
    Unknown(String),
    #[error("no randomness available for the station token")]
    Random,
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for StationError {
    fn from(error: StoreError) -> StationError {
        match error {
            StoreError::StationExists(name) => StationError::Exists(name),
            StoreError::UnknownStation(name) => StationError::Unknown(name),
            other => StationError::Store(other),
        }
    }
}

/// What `station create` asks for.
#[derive(Debug, Clone)]
pub struct NewStation {
    pub name: String,
    pub products: Vec<String>,
    pub rate_limit_per_hour: Option<u32>,
    pub token_ttl: Duration,
}

/// Parses `N/h` (or a bare `N`) into certificates per hour.
pub fn parse_rate_limit(text: &str) -> Result<u32, StationError> {
    let number = text.trim().trim_end_matches("/h").trim();
    match number.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(StationError::BadRateLimit(text.to_owned())),
    }
}

fn check_name(name: &str) -> Result<(), StationError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StationError::BadName(name.to_owned()))
    }
}

fn new_token(ttl: Duration, now: i64) -> Result<(NewToken, StationToken), StationError> {
    let created = token::generate().map_err(|_| StationError::Random)?;
    let stored = StationToken {
        hash: created.hash.clone(),
        expires_at: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        used_at: None,
    };
    Ok((created, stored))
}

/// Registers a station and returns its one-time enrollment token (shown once).
pub async fn create(
    policies: &PolicySet,
    store: &dyn Store,
    request: &NewStation,
    actor: &str,
) -> Result<NewToken, StationError> {
    check_name(&request.name)?;
    if request.products.is_empty() {
        return Err(StationError::NoProducts);
    }
    for product in &request.products {
        let policy = policies
            .product(product)
            .ok_or_else(|| StationError::UnknownProduct(product.clone()))?;
        allow_station_enrollment(policy).map_err(|e| StationError::ProductRefusesStations {
            product: product.clone(),
            reason: e.to_string(),
        })?;
    }
    if store.device(&request.name).await?.is_some() {
        return Err(StationError::NameIsDevice(request.name.clone()));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (created, stored) = new_token(request.token_ttl, now)?;
    let station = Station {
        name: request.name.clone(),
        products: request.products.clone(),
        rate_limit_per_hour: request.rate_limit_per_hour,
        status: StationStatus::Active,
        created_at: now,
        token: Some(stored),
    };
    let audit = AuditEvent {
        at: now,
        actor: actor.to_owned(),
        action: AuditAction::StationCreated.into(),
        object: format!("station:{}", request.name),
        details: serde_json::json!({
            "products": request.products,
            "rate_limit_per_hour": request.rate_limit_per_hour,
            "token_expires_at": station.token.as_ref().map(|t| t.expires_at),
        })
        .to_string(),
    };
    store.create_station(&station, &audit).await?;
    tracing::info!(station = %request.name, "station created");
    Ok(created)
}

/// Issues a new enrollment token for an active station (a new station key, e.g. at renewal).
pub async fn new_enrollment_token(
    store: &dyn Store,
    name: &str,
    ttl: Duration,
    actor: &str,
) -> Result<NewToken, StationError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (created, stored) = new_token(ttl, now)?;
    let audit = AuditEvent {
        at: now,
        actor: actor.to_owned(),
        action: AuditAction::StationTokenCreated.into(),
        object: format!("station:{name}"),
        details: serde_json::json!({ "expires_at": stored.expires_at }).to_string(),
    };
    store.set_station_token(name, &stored, &audit).await?;
    Ok(created)
}

/// A station as the console lists it.
#[derive(Debug, Clone)]
pub struct StationView {
    pub station: Station,
    /// Certificates issued in the current hourly quota window.
    pub used_this_hour: u32,
    /// When it last had a device certificate issued (Unix seconds).
    pub last_issued: Option<i64>,
}

/// Every station with its use of the current hour's quota and its last issuance.
pub async fn overview(store: &dyn Store, now: i64) -> Result<Vec<StationView>, StationError> {
    let window = crate::storage::StationQuota::window_of(now);
    let last = store.station_last_issued().await?;
    let mut views = Vec::new();
    for station in store.stations().await? {
        let used_this_hour = store.station_usage(&station.name, window).await?;
        let last_issued = last
            .iter()
            .find(|(name, _)| *name == station.name)
            .map(|(_, at)| *at);
        views.push(StationView {
            station,
            used_this_hour,
            last_issued,
        });
    }
    Ok(views)
}

/// Disables a station at once, revokes its certificates and republishes the station CA's CRL.
/// Returns the revoked certificate serials.
pub async fn disable(
    revocation: &Revocation,
    store: &dyn Store,
    name: &str,
    actor: &str,
) -> Result<Vec<String>, StationError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let audit = AuditEvent {
        at: now,
        actor: actor.to_owned(),
        action: AuditAction::StationDisabled.into(),
        object: format!("station:{name}"),
        details: serde_json::json!({ "revocation_reason": "cessationOfOperation" }).to_string(),
    };
    let revoked = store.disable_station(name, now, &audit).await?;
    revocation.publish_crl(STATION_CA).await?;
    tracing::info!(station = %name, revoked = revoked.len(), "station disabled");
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_per_hour() {
        assert_eq!(parse_rate_limit("600/h").unwrap(), 600);
        assert_eq!(parse_rate_limit("50").unwrap(), 50);
        for bad in ["0/h", "-1/h", "ten/h", "600/min", ""] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn station_names_are_certificate_friendly() {
        assert!(check_name("plant1-line3-st07").is_ok());
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
