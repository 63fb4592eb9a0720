//! Manufacturing stations as stored: scope, one-time enrollment token, their own certificates
//! and hourly issuance counts. Every backend implements [`StationStore`].

use async_trait::async_trait;

use super::{AuditEvent, StoreError};

/// A manufacturing station (a registration authority on a production line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    /// Its name, also the CN of its certificate (`<site>-<line>-<station-id>`).
    pub name: String,
    /// Product ids whose devices it may enroll.
    pub products: Vec<String>,
    /// Certificates per hour; `None` falls back to each product policy's default.
    pub rate_limit_per_hour: Option<u32>,
    pub status: StationStatus,
    pub created_at: i64,
    /// The one-time token that lets the station enroll its own key.
    pub token: Option<StationToken>,
}

/// Whether a station may authorize enrollments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationStatus {
    Active,
    Disabled,
}

impl StationStatus {
    /// The name used in the database and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            StationStatus::Active => "active",
            StationStatus::Disabled => "disabled",
        }
    }

    pub(super) fn parse(text: &str) -> StationStatus {
        if text == "active" {
            StationStatus::Active
        } else {
            StationStatus::Disabled
        }
    }
}

/// A station's enrollment token (hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationToken {
    pub hash: Vec<u8>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A certificate the station CA issued to a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationCertificate {
    pub serial: String,
    pub station: String,
    pub not_before: i64,
    pub not_after: i64,
    pub spki_sha256: Vec<u8>,
    pub der: Vec<u8>,
    pub revoked: bool,
    pub issued_at: i64,
}

/// A station certificate with the token it consumes and its audit event, committed together.
#[derive(Debug, Clone)]
pub struct StationIssuance {
    pub certificate: StationCertificate,
    /// The station CA generation that signed it (`station`, `station-g2`, ...).
    pub issuer: String,
    pub token_hash: Vec<u8>,
    pub audit: AuditEvent,
}

/// One issuance counted against a station's hourly limit, inside the issuance transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationQuota {
    pub station: String,
    /// Start of the UTC hour the issuance counts in.
    pub window_start: i64,
    pub limit: u32,
}

impl StationQuota {
    /// The start of the UTC hour containing `at`.
    pub fn window_of(at: i64) -> i64 {
        at - at.rem_euclid(3600)
    }
}

/// Station persistence.
#[async_trait]
pub trait StationStore: Send + Sync {
    /// Stores a new station with its token; [`StoreError::StationExists`] if the name is taken.
    async fn create_station(&self, station: &Station, audit: &AuditEvent)
    -> Result<(), StoreError>;
    /// Replaces a station's enrollment token (to enroll a new station key).
    async fn set_station_token(
        &self,
        name: &str,
        token: &StationToken,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// A station by name.
    async fn station(&self, name: &str) -> Result<Option<Station>, StoreError>;
    /// Every station, by name.
    async fn stations(&self) -> Result<Vec<Station>, StoreError>;
    /// Disables a station and revokes its certificates (cessationOfOperation) in one
    /// transaction; returns the revoked certificate serials.
    async fn disable_station(
        &self,
        name: &str,
        at: i64,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError>;
    /// Stores a station certificate, consumes the station's token and appends the audit event.
    async fn commit_station_certificate(
        &self,
        issuance: &StationIssuance,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A station certificate by hex serial.
    async fn station_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<StationCertificate>, StoreError>;
    /// A station certificate by hex serial, with its station (one round trip: this is on every
    /// station-authorized request).
    async fn station_by_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<(StationCertificate, Station)>, StoreError>;
    /// How many certificates the station authorized in the hour starting at `window_start`.
    async fn station_usage(&self, station: &str, window_start: i64) -> Result<u32, StoreError>;
}

/// Products are stored comma-separated (ids never contain commas: policy ids are slugs).
pub(super) fn join_products(products: &[String]) -> String {
    products.join(",")
}

pub(super) fn split_products(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}
