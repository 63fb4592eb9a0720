//! Checkpoints on a schedule: one at start (after the trail is verified), one every
//! `[audit] checkpoint_interval_secs` while the head moves, and one at shutdown once the
//! listeners have drained, so the last events a process wrote are covered.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::checkpoint;
use crate::pki::CaMaterial;
use crate::storage::Store;

/// Signs checkpoints for one server process.
pub struct Checkpointer {
    store: Arc<dyn Store>,
    ca: Arc<CaMaterial>,
    interval: Duration,
}

impl Checkpointer {
    /// A checkpointer, or `None` (with a warning) when the CA has no audit key.
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<CaMaterial>,
        interval: Duration,
    ) -> Option<Checkpointer> {
        if ca.audit.is_none() {
            tracing::warn!(
                "this data directory has no audit key (ca/audit.crt.pem): the audit trail is not checkpointed; it gets one with a new CA hierarchy"
            );
            return None;
        }
        Some(Checkpointer {
            store,
            ca,
            interval,
        })
    }

    /// Signs a checkpoint of the current head if none covers it yet; failures are logged (the
    /// next attempt comes at the next interval).
    pub async fn checkpoint_now(&self) {
        let Some(signer) = self.ca.audit.as_ref() else {
            return;
        };
        match checkpoint::take(self.store.as_ref(), signer, OffsetDateTime::now_utc()).await {
            Ok(Some(latest)) => {
                tracing::debug!(seq = latest.seq, "audit checkpoint");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "audit checkpoint failed; retrying at the next interval")
            }
        }
    }

    /// Checkpoints every interval until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the start-up checkpoint was already taken.
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => self.checkpoint_now().await,
                () = crate::listener::stopped(&mut stop) => break,
            }
        }
    }
}
