//! `policy.changed`: at every `serve` start, each policy file whose content differs from what the
//! audit trail last recorded for it (`policy.loaded` at `init`, or an earlier `policy.changed`)
//! becomes an audit event with the old and new SHA-256 and the keys that changed.
//!
//! Files are matched by file name. Each event also records the new text, so that the next change
//! can be summarised key by key; for a file recorded without its text, the text shipped with the
//! program is used when its hash matches, else the summary says the old text is unknown.

use std::collections::BTreeMap;
use std::path::Path;

use iomt_core::policy::{PolicySet, SHIPPED_POLICIES, changed_keys};
use serde_json::{Value, json};

use crate::storage::{AuditAction, AuditEvent, Store, StoreError};

/// The actor of the events this module writes.
const ACTOR: &str = "ca-server:serve";

/// At most this many changed keys are listed in one event (the count is always given).
const MAX_LISTED: usize = 20;

/// What the trail says a file held when it was last recorded.
struct Recorded {
    /// `None` once the file was recorded as removed.
    sha256: Option<String>,
    text: Option<String>,
}

/// Compares the loaded files with the audit trail and appends one `policy.changed` event per
/// file added, removed or changed since it was last recorded; returns the events written.
#[tracing::instrument(skip_all)]
pub async fn record(
    policies: &PolicySet,
    store: &dyn Store,
) -> Result<Vec<AuditEvent>, StoreError> {
    let recorded = last_recorded(store).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut events = Vec::new();
    let mut present = Vec::new();
    for file in policies.files() {
        let name = file_name(&file.name);
        present.push(name.clone());
        let previous = recorded.get(&name);
        let old_sha256 = previous.and_then(|r| r.sha256.as_deref());
        if old_sha256 == Some(file.sha256.as_str()) {
            continue;
        }
        let summary = match (previous, old_sha256) {
            (Some(previous), Some(old_sha256)) => {
                match previous
                    .text
                    .as_deref()
                    .or_else(|| shipped_text(old_sha256))
                {
                    Some(old_text) => Summary::Keys(changed_keys(old_text, &file.text)),
                    None => Summary::OldTextUnknown,
                }
            }
            _ => Summary::Added,
        };
        events.push(event(
            now,
            &file.name,
            old_sha256,
            Some(&file.sha256),
            summary,
            Some(&file.text),
        ));
    }
    for (name, previous) in &recorded {
        if let Some(old_sha256) = &previous.sha256
            && !present.contains(name)
        {
            events.push(event(
                now,
                name,
                Some(old_sha256),
                None,
                Summary::Removed,
                None,
            ));
        }
    }
    for event in &events {
        // The log line says what changed; the file's whole text stays in the audit event.
        let mut details: Value = serde_json::from_str(&event.details).unwrap_or(Value::Null);
        if let Some(fields) = details.as_object_mut() {
            fields.remove("text");
        }
        tracing::warn!(file = %event.object, %details, "policy file changed since it was last recorded");
    }
    if !events.is_empty() {
        store.append_audit(&events).await?;
    }
    Ok(events)
}

/// How a file changed.
enum Summary {
    Added,
    Keys(Vec<String>),
    OldTextUnknown,
    Removed,
}

fn event(
    at: i64,
    file: &str,
    old_sha256: Option<&str>,
    new_sha256: Option<&str>,
    summary: Summary,
    text: Option<&str>,
) -> AuditEvent {
    let (change, changed): (String, Value) = match summary {
        Summary::Added => ("added".into(), Value::Null),
        Summary::Removed => ("removed".into(), Value::Null),
        Summary::OldTextUnknown => (
            "edited; the previous text was not recorded".into(),
            Value::Null,
        ),
        Summary::Keys(keys) => {
            let change = match keys.len() {
                0 => "edited; comments or layout only".to_owned(),
                n if n > MAX_LISTED => format!("{n} keys changed, the first {MAX_LISTED} listed"),
                n => format!("{n} keys changed"),
            };
            (
                change,
                json!(keys.iter().take(MAX_LISTED).collect::<Vec<_>>()),
            )
        }
    };
    AuditEvent {
        at,
        actor: ACTOR.into(),
        action: AuditAction::PolicyChanged.into(),
        object: format!("policy:{file}"),
        details: json!({
            "file": file,
            "old_sha256": old_sha256,
            "new_sha256": new_sha256,
            "change": change,
            "changed": changed,
            "text": text,
        })
        .to_string(),
    }
}

/// The latest recorded state of each file, by file name.
async fn last_recorded(store: &dyn Store) -> Result<BTreeMap<String, Recorded>, StoreError> {
    let mut recorded = BTreeMap::new();
    for stored in store.policy_events().await? {
        let event = stored.event;
        let Some(path) = event.object.strip_prefix("policy:") else {
            continue;
        };
        let details: Value = serde_json::from_str(&event.details).unwrap_or(Value::Null);
        let sha_key = if event.action == "policy.changed" {
            "new_sha256"
        } else {
            "sha256"
        };
        let text = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_owned);
        recorded.insert(
            file_name(path),
            Recorded {
                sha256: text(sha_key),
                text: text("text"),
            },
        );
    }
    Ok(recorded)
}

/// The text shipped with this program whose SHA-256 is `sha256`, if any.
fn shipped_text(sha256: &str) -> Option<&'static str> {
    SHIPPED_POLICIES.iter().map(|(_, text)| *text).find(|text| {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes())) == sha256
    })
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().map_or_else(
        || path.to_owned(),
        |name| name.to_string_lossy().into_owned(),
    )
}
