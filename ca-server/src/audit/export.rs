//! `audit export`: the trail as JSON lines, one event per line, with the stored details byte
//! for byte so anyone can recompute the chain from an export: details stored as a one-line JSON
//! object (all the CA writes) appear as that object, exactly as stored; any other stored text
//! appears as a JSON string whose value is that text.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::storage::{Store, StoreError, StoredAuditEvent};

/// Events read from the database per query.
const PAGE: u32 = 1_000;

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
    let text = &stored.event.details;
    // RawValue keeps the object's bytes but not whitespace around it, and a line break inside
    // would split the line: only a one-line object with nothing around it is embedded as is.
    let embeddable = text.starts_with('{') && text.ends_with('}') && !text.contains(['\n', '\r']);
    let details = embeddable
        .then(|| serde_json::from_str::<&RawValue>(text).ok())
        .flatten()
        .map_or(Details::Text(text), Details::Json);
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

#[cfg(test)]
#[path = "tests/export.rs"]
mod tests;
