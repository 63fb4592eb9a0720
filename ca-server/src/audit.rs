//! The audit trail for auditors: `audit verify` recomputes the hash chain and names every broken
//! event; `audit export` writes JSON lines. The CLI and the admin API both call these.
//!
//! Each stored event carries `hash = SHA-256(prev_hash, at, actor, action, object, details)`
//! (see [`chain_hash`]) and the previous event's hash. An edited event no longer matches its own
//! hash; a deleted event leaves its successor pointing at a hash that is not its predecessor's.
//! Deleting the newest events is invisible to the chain alone: compare the head hash `verify`
//! prints with one recorded earlier.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::storage::{Store, StoreError, StoredAuditEvent, chain_hash};

/// Events read from the database per query.
const PAGE: u32 = 1_000;

/// What is wrong with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Its content no longer matches its hash: it was edited.
    Modified,
    /// Its `prev_hash` is not the hash of the event before it: events before it were deleted
    /// (or reordered, or inserted).
    PredecessorMissing,
}

/// A broken link in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub action: String,
    pub problem: Problem,
    /// For `PredecessorMissing`: the sequence numbers absent before this event, if any.
    pub missing_seqs: Option<(i64, i64)>,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problem {
            Problem::Modified => write!(
                f,
                "event {} ({}) was modified: its content does not match its hash",
                self.seq, self.action
            ),
            Problem::PredecessorMissing => {
                write!(
                    f,
                    "event {} ({}) does not follow the event before it",
                    self.seq, self.action
                )?;
                match self.missing_seqs {
                    Some((from, to)) if from == to => write!(f, ": event {from} was deleted"),
                    Some((from, to)) => write!(f, ": events {from}..{to} were deleted"),
                    None => write!(f, ": an event before it was deleted or altered"),
                }
            }
        }
    }
}

/// The outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Events checked.
    pub events: u64,
    /// Hash of the newest event (hex): record it to detect later truncation.
    pub head_hash: Option<String>,
    /// Every break, oldest first; the first one is the first broken event.
    pub breaks: Vec<Break>,
}

impl Verification {
    /// True when the whole chain is intact.
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Recomputes the chain from the first event. Each event is checked against its own stored hash
/// and its predecessor's stored hash, so one edit or deletion is reported once, at its place.
pub async fn verify(store: &dyn Store) -> Result<Verification, StoreError> {
    let mut result = Verification {
        events: 0,
        head_hash: None,
        breaks: Vec::new(),
    };
    let mut previous: Option<(i64, Vec<u8>)> = None;
    loop {
        let after = previous.as_ref().map_or(0, |(seq, _)| *seq);
        let page = store.audit_page(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for stored in &page {
            result.events += 1;
            let (expected_prev, expected_seq) = match &previous {
                Some((seq, hash)) => (hash.as_slice(), seq + 1),
                None => (&[][..], 1),
            };
            if chain_hash(&stored.prev_hash, &stored.event) != stored.hash {
                result.breaks.push(broken(stored, Problem::Modified, None));
            }
            if stored.prev_hash != expected_prev {
                let missing = (stored.seq > expected_seq).then(|| (expected_seq, stored.seq - 1));
                result
                    .breaks
                    .push(broken(stored, Problem::PredecessorMissing, missing));
            }
            previous = Some((stored.seq, stored.hash.clone()));
        }
    }
    result.head_hash = previous.map(|(_, hash)| hex::encode(hash));
    Ok(result)
}

fn broken(stored: &StoredAuditEvent, problem: Problem, missing: Option<(i64, i64)>) -> Break {
    Break {
        seq: stored.seq,
        action: stored.event.action.clone(),
        problem,
        missing_seqs: missing,
    }
}

/// Why `serve` does not start on this audit trail.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the audit trail is broken ({} problem(s); the first: {}): refusing to serve. Inspect it with `ca-server audit verify` and `ca-server audit export`, and restore the database from a backup",
        .0.breaks.len(),
        .0.breaks.first().map(ToString::to_string).unwrap_or_default()
    )]
    Broken(Verification),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `serve` does with the trail before it answers anyone: re-creates any append-only
/// trigger someone dropped (audited as `audit.protection_restored`), then verifies the whole
/// chain and refuses to serve on a broken one.
pub async fn guard_at_start(store: &dyn Store) -> Result<Verification, GuardError> {
    let restored = store.restore_audit_protection().await?;
    let verification = verify(store).await?;
    if !verification.is_intact() {
        return Err(GuardError::Broken(verification));
    }
    if !restored.is_empty() {
        tracing::warn!(
            ?restored,
            "the audit trail's append-only triggers were missing and have been re-created"
        );
        store
            .append_audit(&[crate::storage::AuditEvent {
                at: time::OffsetDateTime::now_utc().unix_timestamp(),
                actor: "ca".to_owned(),
                action: "audit.protection_restored".to_owned(),
                object: "audit_events".to_owned(),
                details: serde_json::json!({ "triggers": restored }).to_string(),
            }])
            .await?;
    }
    Ok(verification)
}

/// One exported event. `details` is the stored JSON text, byte for byte, so the chain can be
/// recomputed from an export.
#[derive(Debug, Serialize)]
struct ExportedEvent<'a> {
    seq: i64,
    at: String,
    actor: &'a str,
    action: &'a str,
    object: &'a str,
    details: Details<'a>,
    prev_hash: String,
    hash: String,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Details<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// One event as a JSON line (without the newline).
pub fn json_line(stored: &StoredAuditEvent) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(stored.event.at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| stored.event.at.to_string());
    let details = serde_json::from_str::<&RawValue>(&stored.event.details)
        .map(Details::Json)
        .unwrap_or(Details::Text(&stored.event.details));
    let exported = ExportedEvent {
        seq: stored.seq,
        at,
        actor: &stored.event.actor,
        action: &stored.event.action,
        object: &stored.event.object,
        details,
        prev_hash: hex::encode(&stored.prev_hash),
        hash: hex::encode(&stored.hash),
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string(&exported).unwrap_or_default()
}

/// Up to `limit` events after `since` as JSON lines (each ending in a newline), and the seq of
/// the last one.
pub async fn export_page(
    store: &dyn Store,
    since: i64,
    limit: u32,
) -> Result<(String, Option<i64>), StoreError> {
    let page = store.audit_page(since, limit).await?;
    let mut text = String::new();
    for stored in &page {
        text.push_str(&json_line(stored));
        text.push('\n');
    }
    Ok((text, page.last().map(|e| e.seq)))
}

/// Writes every event after `since` as JSON lines; returns how many.
pub async fn export(
    store: &dyn Store,
    since: i64,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, ExportError> {
    let mut after = since;
    let mut count = 0;
    loop {
        let page = store.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in &page {
            writeln!(out, "{}", json_line(stored))?;
            count += 1;
        }
    }
    out.flush()?;
    Ok(count)
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}
