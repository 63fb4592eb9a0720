//! The figures `/metrics` reads from the database and the CA material at each scrape: CRL age
//! and nextUpdate per CA, CA certificates' remaining life, station quota use this hour,
//! certificates expiring within 30 and 90 days, the audit head and whether the database answers.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::pki::CaHandle;
use crate::revocation::Revocation;
use crate::storage::{StationQuota, StationStatus, Store, StoreError};
use crate::telemetry::Metrics;

const DAY: i64 = 86_400;

/// Sets the scrape-time gauges of a [`Metrics`].
pub struct Gauges {
    store: Arc<dyn Store>,
    ca: CaHandle,
    revocation: Arc<Revocation>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}

impl Gauges {
    /// Gauges over this process's store, CA material and revocation service.
    pub fn new(
        store: Arc<dyn Store>,
        ca: impl Into<CaHandle>,
        revocation: Arc<Revocation>,
        metrics: Arc<Metrics>,
    ) -> Gauges {
        Gauges {
            store,
            ca: ca.into(),
            revocation,
            metrics,
        }
    }

    /// Refreshes every gauge and returns the exposition text. A database failure leaves the
    /// database-backed gauges at their last values and sets `iomt_database_up` to 0.
    pub async fn scrape(&self) -> String {
        let now = OffsetDateTime::now_utc();
        let ca = self.ca.current();
        for name in ca.crl_issuers() {
            if let Some(signer) = ca.signer(&name) {
                self.metrics
                    .set_ca_remaining(&name, (signer.not_after - now).whole_seconds());
            }
        }
        let up = match self.read_database(now.unix_timestamp()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "metrics scrape: database figures unavailable");
                self.metrics.database_error("ping", 1);
                false
            }
        };
        self.metrics.set_database_up(up);
        self.metrics.render()
    }

    async fn read_database(&self, now: i64) -> Result<(), StoreError> {
        self.store.ping().await?;
        for name in self.ca.current().crl_issuers() {
            if let Ok(Some(crl)) = self.revocation.published_crl(&name).await {
                self.metrics
                    .set_crl(&name, (now - crl.this_update) as f64, crl.next_update);
            }
        }
        let window = StationQuota::window_of(now);
        for station in self.store.stations().await? {
            if station.status != StationStatus::Active {
                continue;
            }
            let issued = self.store.station_usage(&station.name, window).await?;
            self.metrics
                .set_station_quota(&station.name, issued, station.rate_limit_per_hour);
        }
        for (label, days) in [("30d", 30), ("90d", 90)] {
            let count = self
                .store
                .count_valid_expiring(now, now + days * DAY)
                .await?;
            self.metrics.set_expiring(label, count);
        }
        self.metrics
            .set_audit_head(self.store.audit_head_seq().await?);
        Ok(())
    }
}
