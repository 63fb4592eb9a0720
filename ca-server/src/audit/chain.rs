//! `audit verify`: recomputes the hash chain and compares it with signed checkpoints.
//!
//! Each stored event carries `hash = SHA-256(prev_hash, at, actor, action, object, details)`
//! (see [`chain_hash`]) and the previous event's hash. An edited event no longer matches its own
//! hash; a deleted event leaves its successor pointing at a hash that is not its predecessor's.
//! Deleting the newest events, or rewriting the chain from an edit onwards, is invisible to the
//! chain alone: a checkpoint signed earlier (stored, or a copy kept elsewhere) names both.

use std::collections::BTreeMap;

use serde::Serialize;

use super::checkpoint::{self, Witness};
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

/// How a checkpoint compares with the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckpointOutcome {
    /// The trail still holds the event the checkpoint signed, with the same hash.
    Consistent,
    /// Its signature or its signer's certificate does not check out against this CA's root.
    NotAuthentic { reason: String },
    /// The trail ends before the signed event: the newest events were deleted.
    Truncated { trail_ends_at: Option<i64> },
    /// The signed event is gone from the middle of the trail or hashes differently: the trail
    /// was rewritten.
    Rewritten,
}

/// One checkpoint compared with the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointCheck {
    /// `stored` or the file it was read from.
    pub source: String,
    pub seq: i64,
    /// When it was signed (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub outcome: CheckpointOutcome,
}

impl CheckpointCheck {
    fn new(witness: &Witness, outcome: CheckpointOutcome) -> CheckpointCheck {
        CheckpointCheck {
            source: witness.source.clone(),
            seq: witness.checkpoint.seq,
            at: checkpoint::rfc3339(witness.checkpoint.at),
            outcome,
        }
    }

    /// True when the trail agrees with the checkpoint.
    pub fn is_consistent(&self) -> bool {
        self.outcome == CheckpointOutcome::Consistent
    }
}

impl std::fmt::Display for CheckpointCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (source, seq, at) = (&self.source, self.seq, &self.at);
        write!(f, "checkpoint {source} (event {seq}, signed {at})")?;
        match &self.outcome {
            CheckpointOutcome::Consistent => write!(f, " matches the trail"),
            CheckpointOutcome::NotAuthentic { reason } => write!(f, " is not authentic: {reason}"),
            CheckpointOutcome::Truncated {
                trail_ends_at: Some(last),
            } => write!(
                f,
                ": the newest events were deleted: the trail ends at event {last}, events {}..{seq} are missing",
                last + 1
            ),
            CheckpointOutcome::Truncated {
                trail_ends_at: None,
            } => write!(f, ": every event was deleted: the trail is empty"),
            CheckpointOutcome::Rewritten => write!(
                f,
                ": event {seq} no longer has the signed hash: the trail was rewritten or that event deleted"
            ),
        }
    }
}

/// The outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Events checked.
    pub events: u64,
    /// Sequence number of the newest event.
    pub head_seq: Option<i64>,
    /// Hash of the newest event (hex): record it, or keep a checkpoint, to detect truncation.
    pub head_hash: Option<String>,
    /// Every break, oldest first; the first one is the first broken event.
    pub breaks: Vec<Break>,
    /// Every checkpoint compared with the trail.
    pub checkpoints: Vec<CheckpointCheck>,
}

impl Verification {
    /// True when the whole chain is intact and agrees with every checkpoint.
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty() && self.checkpoints.iter().all(CheckpointCheck::is_consistent)
    }

    /// Every problem found, as sentences: broken events first, then checkpoints.
    pub fn problems(&self) -> Vec<String> {
        self.breaks
            .iter()
            .map(ToString::to_string)
            .chain(
                self.checkpoints
                    .iter()
                    .filter(|c| !c.is_consistent())
                    .map(ToString::to_string),
            )
            .collect()
    }
}

/// Recomputes the whole chain and compares it with every stored checkpoint and with `given`
/// (copies kept elsewhere), each authenticated against `root_der` first.
pub async fn verify(
    store: &dyn Store,
    root_der: &[u8],
    given: Vec<Witness>,
) -> Result<Verification, StoreError> {
    let mut witnesses: Vec<Witness> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(Witness::stored)
        .collect();
    witnesses.extend(given);
    walk(store, root_der, witnesses).await
}

/// What `serve` checks at start: the whole chain, compared with the newest stored checkpoint.
/// The whole chain, not only the events after that checkpoint: a checkpoint vouches for the
/// head hash, and an event edited without recomputing hashes keeps that hash intact; only
/// recomputing it finds the edit.
pub async fn verify_at_start(
    store: &dyn Store,
    root_der: &[u8],
) -> Result<Verification, StoreError> {
    let latest = store.latest_checkpoint().await?;
    walk(
        store,
        root_der,
        latest.into_iter().map(Witness::stored).collect(),
    )
    .await
}

/// Recomputes the chain from the first event. Each event is checked against its own stored
/// hash and its predecessor's, so one edit or deletion is reported once, at its place; each
/// authentic witness is compared with the event it signed.
async fn walk(
    store: &dyn Store,
    root_der: &[u8],
    witnesses: Vec<Witness>,
) -> Result<Verification, StoreError> {
    let mut result = Verification {
        events: 0,
        head_seq: None,
        head_hash: None,
        breaks: Vec::new(),
        checkpoints: Vec::new(),
    };
    let mut outcomes: Vec<Option<CheckpointOutcome>> = vec![None; witnesses.len()];
    let mut pending: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, witness) in witnesses.iter().enumerate() {
        match checkpoint::authenticate(&witness.checkpoint, root_der) {
            Ok(()) => pending
                .entry(witness.checkpoint.seq)
                .or_default()
                .push(index),
            Err(error) => {
                outcomes[index] = Some(CheckpointOutcome::NotAuthentic {
                    reason: error.to_string(),
                })
            }
        }
    }
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
            for index in pending.remove(&stored.seq).unwrap_or_default() {
                outcomes[index] = Some(if witnesses[index].checkpoint.head_hash == stored.hash {
                    CheckpointOutcome::Consistent
                } else {
                    CheckpointOutcome::Rewritten
                });
            }
            previous = Some((stored.seq, stored.hash.clone()));
        }
    }
    let last = previous.as_ref().map(|(seq, _)| *seq);
    for (seq, indices) in pending {
        let outcome = match last {
            Some(last) if seq <= last => CheckpointOutcome::Rewritten,
            _ => CheckpointOutcome::Truncated {
                trail_ends_at: last,
            },
        };
        for index in indices {
            outcomes[index] = Some(outcome.clone());
        }
    }
    result.checkpoints = witnesses
        .iter()
        .zip(outcomes)
        .map(|(witness, outcome)| {
            CheckpointCheck::new(witness, outcome.unwrap_or(CheckpointOutcome::Rewritten))
        })
        .collect();
    result.head_seq = last;
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
