//! Certificate search: the one implementation behind `ca-server certificates search` and
//! `GET /admin/v1/certificates`. Parses the filters at the boundary, pages by serial.

use iomt_core::serial::CertSerial;
use serde::Serialize;

use crate::storage::{CertificateQuery, CertificateRecord, CertificateStatus, Store, StoreError};

/// Results per page when no limit is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1_000;
/// The longest "expiring within" window, in days.
const MAX_DAYS: u32 = 3_650;

/// Filters as they arrive from the CLI or a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub device: Option<String>,
    pub product: Option<String>,
    pub lot: Option<String>,
    /// `valid`, `on_hold` or `revoked`.
    pub status: Option<String>,
    /// Certificates that are unexpired and expire within this many days.
    pub expiring_within_days: Option<u32>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// Why a search was refused.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("unknown status `{0}` (use valid, on_hold or revoked)")]
    BadStatus(String),
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    BadLimit,
    #[error("expiring_within_days must be at most {MAX_DAYS}")]
    BadDays,
    #[error("`{0}` must be at most 128 printable characters")]
    BadText(&'static str),
    #[error("`after` is the last certificate serial of the previous page: {0}")]
    BadCursor(#[from] iomt_core::serial::CertSerialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One certificate in a search result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateSummary {
    pub serial: String,
    pub issuer: String,
    pub device: String,
    pub product: String,
    pub status: &'static str,
    pub not_before: String,
    pub not_after: String,
    pub issued_at: String,
    pub authorized_by: String,
    pub supersedes: Option<String>,
}

/// One page of results; `next` is the cursor for the following page, if there may be one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchPage {
    pub certificates: Vec<CertificateSummary>,
    pub next: Option<String>,
}

fn text(value: Option<String>, name: &'static str) -> Result<Option<String>, SearchError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > 128 || v.chars().any(char::is_control) => {
            Err(SearchError::BadText(name))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// The page cursor: the last certificate serial of the previous page.
fn cursor(value: Option<String>) -> Result<Option<String>, SearchError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<CertSerial>()
            .map(|serial| Some(serial.into_string()))
            .map_err(SearchError::BadCursor),
    }
}

/// Validates the filters into a storage query (`now` anchors "expiring within").
pub fn query(params: SearchParams, now: i64) -> Result<CertificateQuery, SearchError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(SearchError::BadLimit);
    }
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            CertificateStatus::from_name(name)
                .ok_or_else(|| SearchError::BadStatus(name.to_owned()))?,
        ),
    };
    let not_after_within = match params.expiring_within_days {
        None => None,
        Some(days) if days > MAX_DAYS => return Err(SearchError::BadDays),
        Some(days) => Some((now, now + i64::from(days) * 86_400)),
    };
    Ok(CertificateQuery {
        device: text(params.device, "device")?,
        product: text(params.product, "product")?,
        lot: text(params.lot, "lot")?,
        status,
        not_after_within,
        after: cursor(params.after)?,
        limit,
    })
}

fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

fn summary(record: CertificateRecord) -> CertificateSummary {
    CertificateSummary {
        status: record.status.as_str(),
        not_before: rfc3339(record.not_before),
        not_after: rfc3339(record.not_after),
        issued_at: rfc3339(record.issued_at),
        serial: record.serial,
        issuer: record.issuer,
        device: record.device_serial,
        product: record.product,
        authorized_by: record.authorized_by,
        supersedes: record.supersedes,
    }
}

/// Runs a search.
pub async fn search(store: &dyn Store, params: SearchParams) -> Result<SearchPage, SearchError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let query = query(params, now)?;
    let found = store.search_certificates(&query).await?;
    let next = (found.len() == query.limit as usize)
        .then(|| found.last().map(|c| c.serial.clone()))
        .flatten();
    Ok(SearchPage {
        certificates: found.into_iter().map(summary).collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rejects_bad_filters_and_fills_defaults() {
        let ok = query(
            SearchParams {
                status: Some("on_hold".into()),
                expiring_within_days: Some(30),
                after: Some("0A:FF".into()),
                ..SearchParams::default()
            },
            1_000,
        )
        .unwrap();
        assert_eq!(ok.limit, DEFAULT_LIMIT);
        assert_eq!(ok.status, Some(CertificateStatus::OnHold));
        assert_eq!(ok.not_after_within, Some((1_000, 1_000 + 30 * 86_400)));
        assert_eq!(ok.after.as_deref(), Some("0aff"));
        for bad in [
            SearchParams {
                status: Some("good".into()),
                ..SearchParams::default()
            },
            SearchParams {
                limit: Some(0),
                ..SearchParams::default()
            },
            SearchParams {
                limit: Some(MAX_LIMIT + 1),
                ..SearchParams::default()
            },
            SearchParams {
                expiring_within_days: Some(MAX_DAYS + 1),
                ..SearchParams::default()
            },
            SearchParams {
                lot: Some("a\nb".into()),
                ..SearchParams::default()
            },
        ] {
            assert!(query(bad.clone(), 0).is_err(), "{bad:?}");
        }
    }
}
