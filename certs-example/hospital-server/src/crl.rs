//! CRLs: fetched (DER, over HTTP) from the URLs the hospital copied from the certificates' CRL
//! distribution points, checked before use, held per URL, and the refresh schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::error::X509Error;
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The largest CRL accepted (a CRL of a large fleet is a few MiB at most).
const MAX_CRL_BYTES: usize = 16 << 20;
/// Refresh at least this often, whatever the nextUpdate says.
const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// After a failed refresh, try again at least this often.
const RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Never refresh more often than this (a CRL at or past its nextUpdate).
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Why one CRL URL did not yield a usable CRL. The CRL held before for that URL stays in use.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The fetched CRL is older than the one held (a replayed or rolled-back CRL).
    #[error(
        "{url}: cRLNumber went backwards ({fetched} fetched, {held} held); keeping the held CRL"
    )]
    NumberWentBackwards {
        url: String,
        held: BigUint,
        fetched: BigUint,
    },
    /// The body is not a DER CRL.
    #[error("{url}: not a DER CRL: {source}")]
    Parse {
        url: String,
        #[source]
        source: x509_parser::nom::Err<X509Error>,
    },
    /// The request failed (connection, timeout, body).
    #[error("{url}: request failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status other than 2xx.
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    /// The body is larger than any CRL should be.
    #[error("{url}: larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// rustls-webpki, which does the checking, cannot use this CRL (e.g. a delta or indirect CRL).
    #[error("{url}: not usable by rustls-webpki: {source}")]
    Unsupported {
        url: String,
        #[source]
        source: webpki::Error,
    },
}

/// One CRL as fetched, with what the schedule and the rollback check need.
#[derive(Clone)]
pub(crate) struct FetchedCrl {
    der: CertificateRevocationListDer<'static>,
    number: Option<BigUint>,
    /// Unix seconds; `None` for a CRL without nextUpdate.
    next_update: Option<i64>,
}

impl FetchedCrl {
    /// Checks that `der` is one CRL that rustls-webpki accepts and reads its number and nextUpdate.
    fn parse(url: &str, der: Vec<u8>) -> Result<FetchedCrl, CrlError> {
        webpki::BorrowedCertRevocationList::from_der(&der).map_err(|source| {
            CrlError::Unsupported {
                url: url.to_owned(),
                source,
            }
        })?;
        let (number, next_update) = {
            let (_, crl) =
                CertificateRevocationList::from_der(&der).map_err(|source| CrlError::Parse {
                    url: url.to_owned(),
                    source,
                })?;
            (
                crl.crl_number().cloned(),
                crl.next_update().map(|t| t.timestamp()),
            )
        };
        Ok(FetchedCrl {
            der: CertificateRevocationListDer::from(der),
            number,
            next_update,
        })
    }
}

/// The CRLs in use, one per URL.
#[derive(Clone, Default)]
pub(crate) struct HeldCrls {
    by_url: BTreeMap<String, FetchedCrl>,
}

impl HeldCrls {
    /// Fetches every URL into `self`; a URL that fails keeps the CRL held for it before.
    pub(crate) async fn fetch_all(
        &mut self,
        client: &reqwest::Client,
        urls: &[String],
    ) -> Vec<CrlError> {
        let mut failures = Vec::new();
        for url in urls {
            match fetch(client, url)
                .await
                .and_then(|fresh| self.install(url, fresh))
            {
                Ok(()) => {}
                Err(error) => failures.push(error),
            }
        }
        failures
    }

    /// Installs a fetched CRL unless its cRLNumber is lower than the held one's.
    fn install(&mut self, url: &str, fresh: FetchedCrl) -> Result<(), CrlError> {
        let held = self.by_url.get(url).and_then(|held| held.number.as_ref());
        match (held, &fresh.number) {
            (Some(held), Some(fetched)) if fetched < held => {
                return Err(CrlError::NumberWentBackwards {
                    url: url.to_owned(),
                    held: held.clone(),
                    fetched: fetched.clone(),
                });
            }
            _ => {}
        }
        self.by_url.insert(url.to_owned(), fresh);
        Ok(())
    }

    /// The CRLs for the verifier.
    pub(crate) fn ders(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.by_url.values().map(|crl| crl.der.clone()).collect()
    }

    /// How many CRLs are held.
    pub(crate) fn len(&self) -> usize {
        self.by_url.len()
    }

    /// The earliest nextUpdate of the held CRLs (Unix seconds).
    pub(crate) fn earliest_next_update(&self) -> Option<i64> {
        self.by_url.values().filter_map(|crl| crl.next_update).min()
    }
}

/// GETs one CRL, bounded in size.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<FetchedCrl, CrlError> {
    let request = |source| CrlError::Request {
        url: url.to_owned(),
        source,
    };
    let too_large = || CrlError::TooLarge {
        url: url.to_owned(),
        limit: MAX_CRL_BYTES,
    };
    let mut response = client.get(url).send().await.map_err(request)?;
    if !response.status().is_success() {
        return Err(CrlError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_CRL_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request)? {
        if body.len() + chunk.len() > MAX_CRL_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    FetchedCrl::parse(url, body)
}

/// How long to wait before the next refresh: half the time left before the earliest nextUpdate,
/// at most [`MAX_REFRESH_INTERVAL`] (or [`RETRY_INTERVAL`] after a failure), at least
/// [`MIN_REFRESH_INTERVAL`].
pub(crate) fn refresh_delay(now: i64, earliest_next_update: Option<i64>, failed: bool) -> Duration {
    let cap = if failed {
        RETRY_INTERVAL
    } else {
        MAX_REFRESH_INTERVAL
    };
    let half = earliest_next_update.map_or(cap, |next| {
        Duration::from_secs(u64::try_from(next.saturating_sub(now) / 2).unwrap_or(0))
    });
    half.clamp(MIN_REFRESH_INTERVAL, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_delay_is_half_the_time_left_within_bounds() {
        let now = 1_000_000;
        for (next_update, failed, expected) in [
            (None, false, MAX_REFRESH_INTERVAL),
            (None, true, RETRY_INTERVAL),
            (Some(now + 4 * 24 * 3600), false, MAX_REFRESH_INTERVAL),
            (Some(now + 120), false, Duration::from_secs(60)),
            (Some(now + 120), true, RETRY_INTERVAL),
            (Some(now + 4), false, MIN_REFRESH_INTERVAL),
            (Some(now - 3600), false, MIN_REFRESH_INTERVAL),
        ] {
            assert_eq!(
                refresh_delay(now, next_update, failed),
                expected,
                "{next_update:?} {failed}"
            );
        }
    }

    #[test]
    fn committed_crl_is_read() {
        let der = include_bytes!("../../basic.crl").to_vec();
        let crl = FetchedCrl::parse("http://x/crl/basic.crl", der).unwrap();
        assert!(crl.number.is_some(), "cRLNumber");
        assert!(crl.next_update.is_some(), "nextUpdate");
    }

    #[test]
    fn older_crl_number_is_refused() {
        let der = include_bytes!("../../basic.crl").to_vec();
        let crl = FetchedCrl::parse("u", der).unwrap();
        let mut newer = crl.clone();
        newer.number = Some(crl.number.clone().unwrap() + 1u32);
        let mut held = HeldCrls::default();
        held.install("u", crl.clone()).unwrap();
        held.install("u", newer.clone()).unwrap();
        held.install("u", newer).unwrap();
        assert!(matches!(
            held.install("u", crl),
            Err(CrlError::NumberWentBackwards { .. })
        ));
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn garbage_is_not_a_crl() {
        assert!(matches!(
            FetchedCrl::parse("http://x/crl", b"<html>".to_vec()),
            Err(CrlError::Unsupported { .. })
        ));
    }
}
