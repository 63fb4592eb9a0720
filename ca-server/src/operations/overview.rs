//! The fleet at a glance, as the operator console's overview shows it: certificates issued per
//! hour over the last 7 days (by product and by station), valid certificates expiring per
//! calendar month over the next 24 months, certificate status by assurance level, the CA
//! generations and their remaining life, CRL freshness, and the audit chain's state with its
//! latest signed checkpoint. Reads only.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Date, Month, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::health::AuditAtStart;
use super::inventory::{Inventory, InventoryError, NamedTally};
use crate::pki::{CaHandle, CaMaterial, GenerationId, ROOT_CA};
use crate::revocation::Revocation;
use crate::storage::GenerationStatus;
use crate::storage::{Store, StoreError};

const HOUR: i64 = 3600;
/// Hours the issuance charts cover (7 days).
pub const ISSUANCE_HOURS: usize = 7 * 24;
/// Calendar months the expiry chart covers, the current one first.
pub const EXPIRY_MONTHS: usize = 24;

/// Counts per hour for several named series over the same hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlySeries {
    /// Start of the first hour (Unix seconds); each series has [`ISSUANCE_HOURS`] values.
    pub first_hour: i64,
    /// `(name, counts per hour)`, by name.
    pub series: Vec<(String, Vec<u64>)>,
}

impl HourlySeries {
    /// Every certificate counted.
    pub fn total(&self) -> u64 {
        self.series.iter().flat_map(|(_, v)| v).sum()
    }
}

/// One CA generation in use (docs/PROFILE.md §3.7); the full list with certificate counts and
/// warnings is `operations::generations::list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaGeneration {
    /// `root`, `basic`, `substantial`, `high` or `station`.
    pub ca: String,
    /// 1 for G1.
    pub generation: u32,
    /// `active` (signing now), `retiring` or `retired`.
    pub status: &'static str,
    pub not_before: i64,
    pub not_after: i64,
}

/// How fresh one CA's latest CRL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFreshness {
    pub issuer: String,
    /// `(number, thisUpdate, nextUpdate)`; `None` when none is published.
    pub latest: Option<(i64, i64, i64)>,
}

impl CrlFreshness {
    /// Published and before its nextUpdate at `now`.
    pub fn fresh(&self, now: i64) -> bool {
        self.latest.is_some_and(|(_, _, next)| next > now)
    }
}

/// The audit trail's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditState {
    /// What the start-up guard verified (whole chain, every hash).
    pub verified_at_start: AuditAtStart,
    /// `(seq, hash hex)` of the newest event now.
    pub head: Option<(i64, String)>,
    /// `(seq, signed at)` of the latest signed checkpoint.
    pub checkpoint: Option<(i64, i64)>,
}

/// The overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub generated_at: i64,
    pub issued_by_product: HourlySeries,
    pub issued_by_station: HourlySeries,
    /// `(YYYY-MM, valid certificates whose notAfter falls in that month)`.
    pub expiring_per_month: Vec<(String, u64)>,
    /// valid / on hold / revoked / expired per level.
    pub status_by_level: Vec<NamedTally>,
    pub generations: Vec<CaGeneration>,
    pub crls: Vec<CrlFreshness>,
    pub audit: AuditState,
}

/// Why the overview could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Revocation(#[from] crate::revocation::RevocationError),
}

/// Reads the overview.
pub struct Overviews {
    store: Arc<dyn Store>,
    ca: CaHandle,
    revocation: Arc<Revocation>,
    inventory: Arc<Inventory>,
    audit_at_start: AuditAtStart,
}

impl Overviews {
    /// The overview over this CA.
    pub fn new(
        store: Arc<dyn Store>,
        ca: impl Into<CaHandle>,
        revocation: Arc<Revocation>,
        inventory: Arc<Inventory>,
        audit_at_start: AuditAtStart,
    ) -> Overviews {
        Overviews {
            store,
            ca: ca.into(),
            revocation,
            inventory,
            audit_at_start,
        }
    }

    /// The overview at `now` (Unix seconds).
    pub async fn read(&self, now: i64) -> Result<Overview, OverviewError> {
        let first_hour = now - now.rem_euclid(HOUR) - (ISSUANCE_HOURS as i64 - 1) * HOUR;
        let rows = self.store.issued_per_hour(first_hour).await?;
        let issued_by_product = hourly(
            first_hour,
            rows.iter()
                .map(|r| (r.hour, r.product.clone(), r.certificates)),
        );
        let issued_by_station = hourly(
            first_hour,
            rows.iter().map(|r| {
                let name = r
                    .channel
                    .strip_prefix("station:")
                    .map_or_else(|| format!("({})", r.channel), str::to_owned);
                (r.hour, name, r.certificates)
            }),
        );
        let months = month_starts(now, EXPIRY_MONTHS);
        let to = months.last().map_or(now, |(_, end)| *end);
        let days = self.store.expiring_per_day(now, to).await?;
        let expiring_per_month = months
            .iter()
            .map(|(start, end)| {
                let n = days
                    .iter()
                    .filter(|d| d.day >= *start && d.day < *end)
                    .map(|d| d.certificates)
                    .sum();
                (month_label(*start), n)
            })
            .collect();
        let summary = self.inventory.summary(now).await?;
        let mut crls = Vec::new();
        let ca = self.ca.current();
        for issuer in ca.crl_issuers() {
            let latest = self.revocation.published_crl(&issuer).await?;
            crls.push(CrlFreshness {
                issuer: issuer.to_owned(),
                latest: latest.map(|c| (c.number, c.this_update, c.next_update)),
            });
        }
        let head = self.store.audit_head().await?;
        let checkpoint = self.store.latest_checkpoint().await?;
        Ok(Overview {
            generated_at: now,
            issued_by_product,
            issued_by_station,
            expiring_per_month,
            status_by_level: summary.certificates_by_level,
            generations: ca_generations(&ca),
            crls,
            audit: AuditState {
                verified_at_start: self.audit_at_start.clone(),
                head: head.map(|h| (h.seq, hex::encode(h.hash))),
                checkpoint: checkpoint.map(|c| (c.seq, c.at)),
            },
        })
    }
}

/// Folds `(hour, name, count)` rows into one series per name over [`ISSUANCE_HOURS`] hours
/// from `first_hour`; rows outside the window are ignored.
pub fn hourly(first_hour: i64, rows: impl Iterator<Item = (i64, String, u64)>) -> HourlySeries {
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (hour, name, n) in rows {
        let index = (hour - first_hour).div_euclid(HOUR);
        let Ok(index) = usize::try_from(index) else {
            continue;
        };
        if index >= ISSUANCE_HOURS {
            continue;
        }
        series
            .entry(name)
            .or_insert_with(|| vec![0; ISSUANCE_HOURS])[index] += n;
    }
    HourlySeries {
        first_hour,
        series: series.into_iter().collect(),
    }
}

fn first_of_month(year: i32, month: Month) -> i64 {
    Date::from_calendar_date(year, month, 1)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .unwrap_or(0)
}

/// `count` calendar months (UTC) as `[start, end)`, starting with the month of `now`.
pub fn month_starts(now: i64, count: usize) -> Vec<(i64, i64)> {
    let today = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (mut year, mut month) = (today.year(), today.month());
    let mut months = Vec::with_capacity(count);
    for _ in 0..count {
        let start = first_of_month(year, month);
        if month == Month::December {
            year += 1;
        }
        month = month.next();
        months.push((start, first_of_month(year, month)));
    }
    months
}

/// `YYYY-MM` of a Unix time.
pub fn month_label(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

fn validity(der: &[u8]) -> (i64, i64) {
    X509Certificate::from_der(der).map_or((0, 0), |(_, cert)| {
        (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        )
    })
}

/// Today's CAs, each as its single generation G1 (active): the root, the issuing CAs and the
/// station CA, with their validity read from their certificates.
pub fn ca_generations(ca: &CaMaterial) -> Vec<CaGeneration> {
    let mut generations = Vec::new();
    let mut push = |name: &str, der: &[u8], status: GenerationStatus| {
        let (not_before, not_after) = validity(der);
        let id = GenerationId::parse(name);
        generations.push(CaGeneration {
            ca: id.map_or(name, |g| g.role.as_str()).to_owned(),
            generation: id.map_or(1, |g| g.number),
            status: status.as_str(),
            not_before,
            not_after,
        });
    };
    push(ROOT_CA, &ca.root_der, GenerationStatus::Active);
    for issuing in ca.issuing.values() {
        push(&issuing.name, &issuing.cert_der, GenerationStatus::Active);
    }
    push(
        &ca.station.name,
        &ca.station.cert_der,
        GenerationStatus::Active,
    );
    for earlier in &ca.earlier {
        push(&earlier.ca.name, &earlier.ca.cert_der, earlier.status);
    }
    generations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_rows_land_in_their_hour_and_outside_rows_are_dropped() {
        let first = 1_000 * HOUR;
        let rows = vec![
            (first, "a".to_owned(), 2),
            (first + HOUR, "a".to_owned(), 1),
            (first + 167 * HOUR, "b".to_owned(), 5),
            (first - HOUR, "a".to_owned(), 9),
            (first + 168 * HOUR, "a".to_owned(), 9),
        ];
        let series = hourly(first, rows.into_iter());
        assert_eq!(series.series.len(), 2);
        assert_eq!(series.series[0].0, "a");
        assert_eq!(&series.series[0].1[..3], &[2, 1, 0]);
        assert_eq!(series.series[1].1[167], 5);
        assert_eq!(series.total(), 8);
    }

    #[test]
    fn months_are_calendar_months_across_a_year_end() {
        // 2026-11-15T00:00:00Z
        let now = 1_794_700_800;
        let months = month_starts(now, 3);
        let labels: Vec<String> = months.iter().map(|(s, _)| month_label(*s)).collect();
        assert_eq!(labels, ["2026-11", "2026-12", "2027-01"]);
        assert_eq!(months[0].1, months[1].0);
        assert_eq!(months[1].1 - months[1].0, 31 * 86_400);
        assert!(months[0].0 <= now && now < months[0].1);
    }
}
