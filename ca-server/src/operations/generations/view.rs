//! One generation as `ca list` and the console show it: validity, status, the certificates it
//! still vouches for, its planned rollover date and the warnings that come before it.

use std::path::Path;

use iomt_core::policy::PolicySet;
use time::OffsetDateTime;

use super::{DAY, GenerationError, adopt};
use crate::config::CaLifecycle;
use crate::pki::{CaRole, GenerationId};
use crate::storage::{GenerationRecord, GenerationStatus, IssuerCount, Store};

/// Margin the default planned rollover date leaves before an issuing CA stops covering a full
/// certificate lifetime.
const DEFAULT_MARGIN_DAYS: i64 = 180;

/// One generation as `ca list` and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GenerationView {
    /// `basic`, `basic-g2`, ...
    pub name: String,
    /// The CA (`root`, `basic`, ..., `tls`).
    pub ca: String,
    /// `G1`, `G2`, ...
    pub generation: String,
    pub status: String,
    /// Where its key is: `data-dir` (made by `init`), `sealed` or `pkcs11` (made by `ca
    /// rollover`, referenced from the database).
    pub custody: String,
    /// Validity of its certificate (Unix seconds); absent while pending.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Certificates it issued that are unexpired and not revoked (issuing and station CAs).
    pub valid_certificates: Option<u64>,
    /// When the last certificate it issued expires (issuing and station CAs with any left).
    pub last_certificate_expires: Option<i64>,
    /// The planned rollover date: notAfter − `rollover_before_days` (active generations).
    pub planned_rollover: Option<i64>,
    /// The last moment a certificate of full lifetime fits before notAfter (issuing and
    /// station CAs); later ones are capped at notAfter.
    pub full_lifetime_until: Option<i64>,
    /// What the operator must know or do, in sentences.
    pub warnings: Vec<String>,
}

/// The longest certificate a CA issues, in days: its level's and products' `validity.max_days`,
/// a station certificate's year, the longest subordinate CA lifetime for the root.
fn longest_issued_days(role: CaRole, policies: &PolicySet, lifecycle: &CaLifecycle) -> i64 {
    match role {
        CaRole::Issuing(level) => policies
            .products()
            .filter(|p| p.policy.level == level)
            .chain(std::iter::once(policies.level(level)))
            .map(|p| i64::from(p.validity.max_days))
            .max()
            .unwrap_or(0),
        CaRole::Station => crate::authority::STATION_VALIDITY.whole_days(),
        CaRole::Root => ["basic", "substantial", "high", "station"]
            .iter()
            .filter_map(|name| lifecycle.lifetime(name).ok())
            .map(|d| d.whole_days())
            .max()
            .unwrap_or(0),
        CaRole::Tls => 0,
    }
}

/// The planned rollover lead of a CA, in days (configured, or longest issued + 180).
pub fn rollover_before_days(role: CaRole, policies: &PolicySet, lifecycle: &CaLifecycle) -> i64 {
    lifecycle
        .of(role.as_str())
        .and_then(|s| s.rollover_before_days)
        .map(i64::from)
        .unwrap_or_else(|| longest_issued_days(role, policies, lifecycle) + DEFAULT_MARGIN_DAYS)
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// The view of one generation at `now`, with its warnings.
pub fn assess(
    record: &GenerationRecord,
    counts: &[IssuerCount],
    policies: &PolicySet,
    lifecycle: &CaLifecycle,
    now: i64,
) -> GenerationView {
    let id = GenerationId::parse(&record.name);
    let role = id.map(|g| g.role);
    let subordinate = role.is_some_and(CaRole::is_subordinate_ca);
    let count = counts.iter().find(|c| c.issuer == record.name);
    let mut view = GenerationView {
        name: record.name.clone(),
        ca: record.ca.clone(),
        generation: id.map(GenerationId::label).unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        custody: record.custody.as_str().to_owned(),
        not_before: record.not_before,
        not_after: record.not_after,
        valid_certificates: subordinate.then(|| count.map_or(0, |c| c.valid)),
        last_certificate_expires: count.filter(|_| subordinate).map(|c| c.last_not_after),
        planned_rollover: None,
        full_lifetime_until: None,
        warnings: Vec::new(),
    };
    let (Some(role), Some(not_after)) = (role, record.not_after) else {
        if record.status == GenerationStatus::Pending {
            view.warnings.push(format!(
                "pending: have the offline root sign {}/{}.csr.pem, then `ca-server ca import`",
                crate::pki::ROLLOVER_DIR,
                record.name
            ));
        }
        return view;
    };
    let flag = role.as_str();
    if not_after <= now {
        view.warnings
            .push(format!("expired on {}", date(not_after)));
    }
    match record.status {
        GenerationStatus::Active => {
            let lead = rollover_before_days(role, policies, lifecycle);
            let planned = not_after - lead * DAY;
            view.planned_rollover = Some(planned);
            let longest = longest_issued_days(role, policies, lifecycle);
            if subordinate {
                let full = not_after - longest * DAY;
                view.full_lifetime_until = Some(full);
                if now >= full && not_after > now {
                    view.warnings.push(format!(
                        "can no longer cover a full certificate lifetime ({longest} days): new \
                         certificates end at its notAfter {}; roll over now: `ca-server ca \
                         rollover --ca {flag}`",
                        date(not_after)
                    ));
                }
            }
            if now >= planned && not_after > now {
                view.warnings.push(format!(
                    "planned rollover date {} reached ({lead} days before notAfter {}): `ca-server \
                     ca rollover --ca {flag}`",
                    date(planned),
                    date(not_after)
                ));
            }
        }
        GenerationStatus::Retiring if role == CaRole::Root => {
            view.warnings.push(format!(
                "retiring root: signs only its CRL and OCSP answers over the CA certificates it \
                 issued; its link certificates carry devices to the next root until its notAfter \
                 {}; each issuing CA moves under the new root with its own `ca-server ca \
                 rollover --ca <name>`",
                date(not_after)
            ));
        }
        GenerationStatus::Retiring => {
            let until = count.map(|c| c.last_not_after).unwrap_or(now);
            view.warnings.push(format!(
                "retiring: issues nothing; keeps its CRL and OCSP until its last certificate \
                 expires ({})",
                date(until)
            ));
        }
        GenerationStatus::Retired | GenerationStatus::Pending => {}
    }
    view
}

/// Every generation (adopting G1 first), assessed at `now`.
pub async fn list(
    store: &dyn Store,
    dir: &Path,
    policies: &PolicySet,
    lifecycle: &CaLifecycle,
    now: i64,
) -> Result<Vec<GenerationView>, GenerationError> {
    adopt(store, dir).await?;
    let records = store.generations().await?;
    let counts = store.valid_by_issuer(now).await?;
    let mut views: Vec<GenerationView> = records
        .iter()
        .map(|r| assess(r, &counts, policies, lifecycle, now))
        .collect();
    let order = |v: &GenerationView| {
        let id = GenerationId::parse(&v.name);
        (
            id.map(|g| CaRole::ALL.iter().position(|r| *r == g.role)),
            id.map(|g| g.number),
        )
    };
    views.sort_by_key(order);
    Ok(views)
}

#[cfg(test)]
mod tests;
