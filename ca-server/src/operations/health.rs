//! Liveness and readiness. Ready means every request the CA serves could succeed now: the
//! database answers, each CA key signs, every CRL is still before its nextUpdate, and the audit
//! chain verified when the process started.

use std::sync::Arc;
use std::time::Duration;

use rcgen::SigningKey;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pki::{CaHandle, ROOT_CA};
use crate::revocation::Revocation;
use crate::storage::Store;
use crate::telemetry::Metrics;

/// How long the database ping may take before the database counts as unavailable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// What the key check signs (never published; only whether signing works matters).
const PROBE: &[u8] = b"iomt-ca readiness probe";

/// What `Application::build` learned when it verified the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditAtStart {
    /// Events checked.
    pub events: u64,
    /// Hash of the newest event (hex), if any.
    pub head_hash: Option<String>,
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, in words (never a secret).
    pub detail: String,
}

/// The `/readyz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// When the checks ran (RFC 3339, UTC).
    pub checked_at: String,
    pub checks: Vec<Check>,
}

/// Runs the readiness checks.
pub struct Health {
    store: Arc<dyn Store>,
    ca: CaHandle,
    revocation: Arc<Revocation>,
    audit: AuditAtStart,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// RFC 3339 text of a Unix time (the Unix number itself if out of range).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl Health {
    /// Checks over this process's store, keys and revocation service.
    pub fn new(
        store: Arc<dyn Store>,
        ca: impl Into<CaHandle>,
        revocation: Arc<Revocation>,
        audit: AuditAtStart,
        metrics: Arc<Metrics>,
    ) -> Health {
        Health {
            store,
            ca: ca.into(),
            revocation,
            audit,
            metrics,
        }
    }

    /// Runs every check (the database one bounded by a timeout).
    pub async fn readiness(&self) -> Readiness {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let database = self.database().await;
        let crls = if database.ok {
            self.crls(now).await
        } else {
            Check {
                name: "crls",
                ok: false,
                detail: "not checked: the database is unavailable".to_owned(),
            }
        };
        let checks = vec![database, self.keys(), crls, self.audit()];
        Readiness {
            ready: checks.iter().all(|c| c.ok),
            checked_at: rfc3339(now),
            checks,
        }
    }

    async fn database(&self) -> Check {
        let result = tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await;
        let (ok, detail) = match result {
            Ok(Ok(())) => (true, "answers queries".to_owned()),
            Ok(Err(error)) => (false, error.to_string()),
            Err(_) => (
                false,
                format!("no answer within {} s", PING_TIMEOUT.as_secs()),
            ),
        };
        if !ok {
            self.metrics.database_error("ping", 1);
        }
        self.metrics.set_database_up(ok);
        Check {
            name: "database",
            ok,
            detail,
        }
    }

    fn keys(&self) -> Check {
        let mut failed = Vec::new();
        let mut checked = Vec::new();
        let ca = self.ca.current();
        for name in ca.crl_issuers() {
            // An offline root signs nothing here; every other CA key must.
            let Some(signer) = ca.signer(&name) else {
                continue;
            };
            if let Err(error) = signer.issuer.key().sign(PROBE) {
                failed.push(format!("{name}: {error}"));
            }
            checked.push(name);
        }
        Check {
            name: "ca_keys",
            ok: failed.is_empty(),
            detail: if failed.is_empty() {
                format!("signed with {}", checked.join(", "))
            } else {
                format!("cannot sign: {}", failed.join("; "))
            },
        }
    }

    async fn crls(&self, now: i64) -> Check {
        let mut problems = Vec::new();
        let ca = self.ca.current();
        for issuer in ca.crl_issuers() {
            match self.revocation.published_crl(&issuer).await {
                Ok(Some(crl)) if crl.next_update > now => {}
                Ok(Some(crl)) => problems.push(format!(
                    "{issuer}: stale since {}",
                    rfc3339(crl.next_update)
                )),
                Ok(None) if issuer == ROOT_CA && ca.root.is_none() => {
                    problems.push(format!("{issuer}: no CRL imported from the offline root"));
                }
                Ok(None) => problems.push(format!("{issuer}: not published yet")),
                Err(error) => problems.push(format!("{issuer}: {error}")),
            }
        }
        Check {
            name: "crls",
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                "every CRL is before its nextUpdate".to_owned()
            } else {
                problems.join("; ")
            },
        }
    }

    fn audit(&self) -> Check {
        Check {
            name: "audit_chain",
            ok: true,
            detail: format!(
                "verified at start: {} events, head {}",
                self.audit.events,
                self.audit.head_hash.as_deref().unwrap_or("(empty)")
            ),
        }
    }
}
