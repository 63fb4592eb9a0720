//! Audit of refused admin API calls (bad or missing credential, role too weak), coalesced so a
//! flood of bad requests cannot grow the audit trail without bound: at most
//! [`FAILURES_PER_MINUTE`] events a minute are written; the rest are counted, and the count is
//! carried into the next event written.

use std::sync::{Arc, Mutex};

use crate::storage::{AuditAction, AuditEvent, Store};

/// Refusals audited individually per minute (per server process).
pub const FAILURES_PER_MINUTE: u32 = 30;

#[derive(Debug, Default)]
struct Window {
    minute: i64,
    written: u32,
    suppressed: u64,
}

/// One refused call, as audited.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Who it was, as far as known: `apikey:<name>`, `operator:<name>`, `key:<id>`,
    /// `certificate:<sha256>` or `anonymous`. Never a secret.
    pub actor: String,
    /// Stable reason, e.g. `bad_key`, `role_insufficient`.
    pub reason: &'static str,
    /// `METHOD /path` of the request.
    pub route: String,
    /// The capability the route needed, when the caller was known but not allowed.
    pub needed: Option<&'static str>,
}

/// Writes refusal events, coalescing floods.
pub struct FailureAudit {
    store: Arc<dyn Store>,
    window: Mutex<Window>,
}

impl FailureAudit {
    /// Audits into `store`.
    pub fn new(store: Arc<dyn Store>) -> FailureAudit {
        FailureAudit {
            store,
            window: Mutex::new(Window::default()),
        }
    }

    /// Records a refusal, or counts it when this minute's budget is spent. Storage errors are
    /// logged, not returned: the request is refused either way.
    pub async fn record(&self, refusal: Refusal) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let carried = {
            // A poisoned lock only means another request panicked mid-update; the counters are
            // still usable.
            let mut window = self
                .window
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if window.minute != now / 60 {
                window.minute = now / 60;
                window.written = 0;
            }
            if window.written >= FAILURES_PER_MINUTE {
                window.suppressed += 1;
                tracing::warn!(reason = refusal.reason, route = %refusal.route, "admin API refusal (not audited individually: rate limit)");
                return;
            }
            window.written += 1;
            std::mem::take(&mut window.suppressed)
        };
        tracing::warn!(actor = %refusal.actor, reason = refusal.reason, route = %refusal.route, "admin API call refused");
        let event = AuditEvent {
            at: now,
            actor: refusal.actor,
            action: AuditAction::AdminLoginFailed.into(),
            object: format!("route:{}", refusal.route),
            details: serde_json::json!({
                "reason": refusal.reason,
                "needed": refusal.needed,
                "suppressed_before": carried,
            })
            .to_string(),
        };
        if let Err(error) = self.store.append_audit(&[event]).await {
            tracing::error!(%error, "could not audit an admin API refusal");
        }
    }
}
