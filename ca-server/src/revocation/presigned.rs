//! The offline root's pre-signed OCSP responses over the CA certificates (`DIR/ca/root-ocsp/`,
//! checked by `ca import` or `ca install-root-ocsp`): the server cannot sign for the root, so it
//! serves these exactly as the root signed them, for a request whose CertID is the one they
//! answer. Like RFC 5019 responders, it echoes no nonce (the bytes are fixed).

use iomt_core::ocsp::{CertIdKey, Query, read_answers};
use time::{Duration, OffsetDateTime};

/// Warn at start when a pre-signed response has less than this left before its nextUpdate.
pub const RENEW_WARNING: Duration = Duration::days(30);

/// One pre-signed response.
struct Entry {
    /// The certificate it answers for (`basic`, `station`, ...).
    name: String,
    cert_id: CertIdKey,
    next_update: Option<i64>,
    der: Vec<u8>,
}

/// What the pre-signed responses hold for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The response to send, byte for byte.
    Found(&'a [u8]),
    /// No response answers exactly this request (or it asks about several certificates).
    Missing,
    /// The response for this certificate is past its nextUpdate: the ceremony must renew it.
    Stale(&'a str),
}

/// Every pre-signed response, by the CertID it answers.
#[derive(Default)]
pub struct Presigned {
    entries: Vec<Entry>,
}

impl Presigned {
    /// Reads `(name, DER)` pairs; a response that does not parse is logged and left out.
    pub fn new(files: &[(String, Vec<u8>)], now: OffsetDateTime) -> Presigned {
        let mut entries = Vec::new();
        for (name, der) in files {
            match read_answers(der) {
                Ok(answers) => {
                    for answer in answers {
                        entries.push(Entry {
                            name: name.clone(),
                            cert_id: answer.cert_id,
                            next_update: answer.next_update,
                            der: der.clone(),
                        });
                    }
                }
                Err(error) => {
                    tracing::error!(certificate = %name, %error, "unreadable pre-signed root OCSP response; not served");
                }
            }
        }
        let presigned = Presigned { entries };
        presigned.warn_expiry(now);
        presigned
    }

    /// Logs a warning for every response that expires within [`RENEW_WARNING`].
    pub fn warn_expiry(&self, now: OffsetDateTime) {
        for entry in &self.entries {
            let Some(next) = entry.next_update else {
                continue;
            };
            let left = Duration::seconds(next - now.unix_timestamp());
            if left <= Duration::ZERO {
                tracing::error!(
                    certificate = %entry.name,
                    "the offline root's OCSP response has expired; relying parties that check the CA \
                     certificates by OCSP (nginx ssl_ocsp on) now refuse every device: renew it at the \
                     root ceremony and run `ca-server ca install-root-ocsp`"
                );
            } else if left < RENEW_WARNING {
                tracing::warn!(
                    certificate = %entry.name,
                    days_left = left.whole_days(),
                    "the offline root's OCSP response expires soon: renew it at the root ceremony and \
                     run `ca-server ca install-root-ocsp`"
                );
            }
        }
    }

    /// The response for a request, matched on its whole CertID (hash algorithm, issuer hashes,
    /// serial). Only single-certificate requests can be answered by a fixed response.
    pub fn lookup(&self, queries: &[Query], now: i64) -> Lookup<'_> {
        let [query] = queries else {
            return Lookup::Missing;
        };
        let wanted = query.key();
        match self.entries.iter().find(|e| e.cert_id == wanted) {
            None => Lookup::Missing,
            Some(entry) if entry.next_update.is_some_and(|next| next < now) => {
                Lookup::Stale(&entry.name)
            }
            Some(entry) => Lookup::Found(&entry.der),
        }
    }

    /// True when no response was installed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
