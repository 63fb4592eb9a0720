//! The fleet inventory behind `ca-server fleet summary`, `device list`, `token list` and
//! `token revoke`, and the admin API's `/fleet/summary`, `/devices` and `/devices/{serial}/tokens`:
//! filters parsed at the boundary, levels taken from the loaded policies, times in RFC 3339.

use std::collections::BTreeMap;
use std::sync::Arc;

use iomt_core::policy::PolicySet;
use serde::{Deserialize, Serialize};

use super::health::rfc3339;
use crate::storage::{
    AuditAction, AuditEvent, CertificateStatus, DeviceListing, DeviceQuery, DeviceStatus, Store,
    StoreError, TokenRecord,
};

/// Devices per page when no limit is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1_000;
const DAY: i64 = 86_400;

/// Why an inventory request was refused; nothing changes when it is.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("unknown device status `{0}` (use active or disabled)")]
    BadStatus(String),
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    BadLimit,
    #[error("`{0}` must be at most 128 printable characters")]
    BadText(&'static str),
    #[error("no loaded policy defines product `{0}`")]
    UnknownProduct(String),
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `device list` filters as they arrive from the CLI or a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceListParams {
    pub product: Option<String>,
    pub lot: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page (a device serial).
    pub after: Option<String>,
}

/// A device's newest certificate in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateBrief {
    pub serial: String,
    pub issuer: String,
    pub status: &'static str,
    pub not_after: String,
    /// `not_after` has passed.
    pub expired: bool,
}

/// One device of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSummary {
    pub serial: String,
    pub product: String,
    /// The product's assurance level (`basic`, `substantial`, `high`); `unknown` when no
    /// loaded policy defines the product any more.
    pub level: &'static str,
    pub lot: Option<String>,
    pub gtin: String,
    pub status: &'static str,
    pub registered_at: String,
    /// The newest certificate, whatever its status; `null` when the device never enrolled.
    pub certificate: Option<CertificateBrief>,
}

/// One page of devices; `next` is the cursor of the following page, if there may be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePage {
    pub devices: Vec<DeviceSummary>,
    pub next: Option<String>,
}

/// Devices of one product, level and registration status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceGroup {
    pub product: String,
    pub level: &'static str,
    pub status: &'static str,
    pub devices: u64,
    /// Holding a valid, unexpired certificate.
    pub enrolled: u64,
}

/// Device certificates of one product (or, in `levels` and `total`, of a level or all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CertificateTally {
    pub valid: u64,
    /// certificateHold and not expired.
    pub on_hold: u64,
    pub revoked: u64,
    /// Status valid, `not_after` passed.
    pub expired: u64,
    pub expiring_30_days: u64,
    pub expiring_90_days: u64,
}

impl CertificateTally {
    fn add(&mut self, other: &CertificateTally) {
        self.valid += other.valid;
        self.on_hold += other.on_hold;
        self.revoked += other.revoked;
        self.expired += other.expired;
        self.expiring_30_days += other.expiring_30_days;
        self.expiring_90_days += other.expiring_90_days;
    }
}

/// A tally with what it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedTally {
    /// A product id or a level name.
    pub name: String,
    #[serde(flatten)]
    pub tally: CertificateTally,
}

/// What a station issued today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StationToday {
    pub station: String,
    pub issued: u64,
}

/// `fleet summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetSummary {
    pub generated_at: String,
    pub devices: Vec<DeviceGroup>,
    pub certificates_by_product: Vec<NamedTally>,
    pub certificates_by_level: Vec<NamedTally>,
    pub certificates: CertificateTally,
    /// Since 00:00 UTC today.
    pub stations_today: Vec<StationToday>,
}

/// A token as `token list` shows it: never the token, only a public id (the first 8 octets of
/// its SHA-256, which is what the CA stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenSummary {
    pub id: String,
    /// `pending` (usable), `used`, `revoked` or `expired`.
    pub state: &'static str,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The inventory service.
#[derive(Clone)]
pub struct Inventory {
    store: Arc<dyn Store>,
    policies: Arc<PolicySet>,
}

impl Inventory {
    /// The inventory over this store and the loaded policies (for each product's level).
    pub fn new(store: Arc<dyn Store>, policies: Arc<PolicySet>) -> Inventory {
        Inventory { store, policies }
    }

    fn level(&self, product: &str) -> &'static str {
        self.policies
            .product(product)
            .map_or("unknown", |p| p.policy.level.as_str())
    }

    /// The fleet at `now` (Unix seconds).
    pub async fn summary(&self, now: i64) -> Result<FleetSummary, InventoryError> {
        let devices = self
            .store
            .device_counts(now)
            .await?
            .into_iter()
            .map(|group| DeviceGroup {
                level: self.level(&group.product),
                status: group.status.as_str(),
                devices: group.devices,
                enrolled: group.enrolled,
                product: group.product,
            })
            .collect();
        let mut by_product: BTreeMap<String, CertificateTally> = BTreeMap::new();
        for row in self.store.certificate_counts(now).await? {
            let tally = by_product.entry(row.product).or_default();
            match row.status {
                CertificateStatus::Valid => {
                    tally.valid += row.unexpired;
                    tally.expired += row.expired;
                    tally.expiring_30_days += row.expiring_30_days;
                    tally.expiring_90_days += row.expiring_90_days;
                }
                CertificateStatus::OnHold => tally.on_hold += row.unexpired,
                CertificateStatus::Revoked => tally.revoked += row.unexpired + row.expired,
            }
        }
        let mut by_level: BTreeMap<&'static str, CertificateTally> = BTreeMap::new();
        let mut total = CertificateTally::default();
        for (product, tally) in &by_product {
            by_level.entry(self.level(product)).or_default().add(tally);
            total.add(tally);
        }
        let day_start = now - now.rem_euclid(DAY);
        let stations_today = self
            .store
            .station_activity(day_start)
            .await?
            .into_iter()
            .map(|s| StationToday {
                station: s.station,
                issued: s.issued,
            })
            .collect();
        Ok(FleetSummary {
            generated_at: rfc3339(now),
            devices,
            certificates_by_product: named(by_product),
            certificates_by_level: named(by_level),
            certificates: total,
            stations_today,
        })
    }

    /// One page of devices.
    pub async fn devices(
        &self,
        params: DeviceListParams,
        now: i64,
    ) -> Result<DevicePage, InventoryError> {
        let query = device_query(&self.policies, params)?;
        let found = self.store.devices_page(&query).await?;
        let next = (found.len() == query.limit as usize)
            .then(|| found.last().map(|d| d.device.serial.clone()))
            .flatten();
        Ok(DevicePage {
            devices: found
                .into_iter()
                .map(|listing| self.device_summary(listing, now))
                .collect(),
            next,
        })
    }

    fn device_summary(&self, listing: DeviceListing, now: i64) -> DeviceSummary {
        let DeviceListing {
            device,
            certificate,
        } = listing;
        DeviceSummary {
            level: self.level(&device.product),
            status: device.status.as_str(),
            registered_at: rfc3339(device.registered_at),
            certificate: certificate.map(|c| CertificateBrief {
                status: c.status.as_str(),
                not_after: rfc3339(c.not_after),
                expired: c.not_after <= now,
                serial: c.serial,
                issuer: c.issuer,
            }),
            serial: device.serial,
            product: device.product,
            lot: device.lot,
            gtin: device.gtin,
        }
    }

    /// A registered device's tokens, newest first.
    pub async fn tokens(
        &self,
        serial: &str,
        now: i64,
    ) -> Result<Vec<TokenSummary>, InventoryError> {
        self.registered(serial).await?;
        Ok(self
            .store
            .device_tokens(serial)
            .await?
            .iter()
            .map(|token| token_summary(token, now))
            .collect())
    }

    /// Revokes a registered device's usable tokens (audited as `token.revoked` with the count,
    /// when there was one); returns how many.
    pub async fn revoke_tokens(
        &self,
        serial: &str,
        actor: &str,
        now: i64,
    ) -> Result<u64, InventoryError> {
        self.registered(serial).await?;
        let audit = AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: AuditAction::TokenRevoked.into(),
            object: format!("device:{serial}"),
            details: "{}".into(),
        };
        let revoked = self.store.revoke_tokens(serial, now, &audit).await?;
        tracing::info!(device = serial, tokens = revoked, %actor, "tokens revoked");
        Ok(revoked)
    }

    async fn registered(&self, serial: &str) -> Result<(), InventoryError> {
        let serial_ok = text(Some(serial.to_owned()), "serial")?;
        match serial_ok {
            Some(serial) if self.store.device(&serial).await?.is_some() => Ok(()),
            _ => Err(InventoryError::UnknownDevice(serial.to_owned())),
        }
    }
}

/// Validates `device list` filters into a storage query (a product must be one a loaded
/// policy defines: a misspelt product is an error, not an empty fleet).
pub fn device_query(
    policies: &PolicySet,
    params: DeviceListParams,
) -> Result<DeviceQuery, InventoryError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(InventoryError::BadLimit);
    }
    let status = match text(params.status, "status")? {
        None => None,
        Some(name) => Some(match name.as_str() {
            "active" => DeviceStatus::Active,
            "disabled" => DeviceStatus::Disabled,
            _ => return Err(InventoryError::BadStatus(name)),
        }),
    };
    let product = text(params.product, "product")?;
    if let Some(product) = &product
        && policies.product(product).is_none()
    {
        return Err(InventoryError::UnknownProduct(product.clone()));
    }
    Ok(DeviceQuery {
        product,
        lot: text(params.lot, "lot")?,
        status,
        after: text(params.after, "after")?,
        limit,
    })
}

fn named<K: ToString>(tallies: BTreeMap<K, CertificateTally>) -> Vec<NamedTally> {
    tallies
        .into_iter()
        .map(|(name, tally)| NamedTally {
            name: name.to_string(),
            tally,
        })
        .collect()
}

/// A token's state at `now`, most decisive first.
pub fn token_state(token: &TokenRecord, now: i64) -> &'static str {
    if token.used_at.is_some() {
        "used"
    } else if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at <= now {
        "expired"
    } else {
        "pending"
    }
}

fn token_summary(token: &TokenRecord, now: i64) -> TokenSummary {
    TokenSummary {
        id: hex::encode(&token.token_hash[..token.token_hash.len().min(8)]),
        state: token_state(token, now),
        created_at: rfc3339(token.created_at),
        expires_at: rfc3339(token.expires_at),
        used_at: token.used_at.map(rfc3339),
        revoked_at: token.revoked_at.map(rfc3339),
    }
}

/// An optional filter: empty is none; at most 128 printable characters.
fn text(value: Option<String>, name: &'static str) -> Result<Option<String>, InventoryError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > 128 || v.chars().any(char::is_control) => {
            Err(InventoryError::BadText(name))
        }
        Some(v) => Ok(Some(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(used: Option<i64>, revoked: Option<i64>, expires_at: i64) -> TokenRecord {
        TokenRecord {
            token_hash: vec![0xab; 32],
            device_serial: "IP1".into(),
            created_at: 0,
            expires_at,
            used_at: used,
            revoked_at: revoked,
        }
    }

    #[test]
    fn token_state_names_the_most_decisive_fact() {
        for (record, state) in [
            (token(None, None, 100), "pending"),
            (token(None, None, 50), "expired"),
            (token(Some(10), None, 50), "used"),
            (token(None, Some(10), 50), "revoked"),
            (token(Some(10), Some(20), 100), "used"),
        ] {
            assert_eq!(token_state(&record, 50), state, "{record:?}");
        }
        assert_eq!(
            token_summary(&token(None, None, 100), 0).id,
            "abababababababab"
        );
    }

    #[test]
    fn device_filters_are_parsed_at_the_boundary() {
        let policies = PolicySet::from_sources(iomt_core::policy::shipped_sources()).unwrap();
        let query = device_query(
            &policies,
            DeviceListParams {
                product: Some("example-infusion-pump".into()),
                status: Some("disabled".into()),
                lot: Some(String::new()),
                ..DeviceListParams::default()
            },
        )
        .unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.status, Some(DeviceStatus::Disabled));
        assert_eq!(query.lot, None);
        for bad in [
            DeviceListParams {
                status: Some("valid".into()),
                ..DeviceListParams::default()
            },
            DeviceListParams {
                limit: Some(0),
                ..DeviceListParams::default()
            },
            DeviceListParams {
                limit: Some(MAX_LIMIT + 1),
                ..DeviceListParams::default()
            },
            DeviceListParams {
                product: Some("no-such-product".into()),
                ..DeviceListParams::default()
            },
            DeviceListParams {
                lot: Some("a\u{1b}b".into()),
                ..DeviceListParams::default()
            },
        ] {
            assert!(device_query(&policies, bad.clone()).is_err(), "{bad:?}");
        }
    }
}
