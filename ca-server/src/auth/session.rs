//! Operator console sessions: a signed-in browser holds a random 256-bit session id in a cookie;
//! the database holds only its SHA-256 (so every replica shares the session, and a copy of the
//! database is no key to the console). A session ends at sign-out, after `idle` without a
//! request, or `max` after sign-in, whichever comes first; the idle check and the touch are one
//! statement, so no replica can revive a session another already let expire.
//!
//! Forms carry a CSRF token derived from the session id (SHA-256 over a label and the id): it is
//! unguessable without the cookie, different from what the database stores, and needs no
//! column of its own. The sign-in form, before any session exists, uses a double-submit token:
//! a random value both in a `SameSite=Strict` cookie and in the form.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

use super::operator::Operator;
use crate::storage::{AuditAction, AuditEvent, ConsoleSession, OperatorKind, Store, StoreError};

/// Random bytes in a session id and in a sign-in token.
const SECRET_BYTES: usize = 32;
/// What the CSRF token of a session is derived under (domain separation from the stored hash).
const CSRF_LABEL: &[u8] = b"iomt-console-csrf\0";

/// A random URL-safe secret (256 bits).
pub fn random_secret() -> Result<String, SessionError> {
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SessionError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

/// The CSRF token of the session whose id is `id`.
pub fn csrf_token(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(&[CSRF_LABEL, id.as_bytes()]))
}

/// Whether `presented` equals `expected`, in constant time (empty never matches).
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Why a session could not be opened, resumed or closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session found for a request.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    /// The session as stored (its role is re-checked against the credential by the caller).
    pub record: ConsoleSession,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

/// Opens, resumes and closes console sessions.
pub struct Sessions {
    store: Arc<dyn Store>,
    idle: Duration,
    max: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Sessions {
    /// Sessions in `store` ending after `idle` without a request or `max` after sign-in.
    pub fn new(store: Arc<dyn Store>, idle: Duration, max: Duration) -> Sessions {
        Sessions { store, idle, max }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// Opens a session for `operator` (its credential known by `lookup`) and audits the
    /// sign-in; returns the session id for the cookie (never stored, never logged). Sessions
    /// idle past the timeout are deleted first (housekeeping: each request checks anyway).
    pub async fn open(
        &self,
        operator: &Operator,
        lookup: &str,
        now: i64,
    ) -> Result<String, SessionError> {
        self.purge_idle(now).await?;
        let id = random_secret()?;
        let record = ConsoleSession {
            id_sha256: sha256(&[id.as_bytes()]),
            operator: operator.name.clone(),
            kind: operator.kind,
            role: operator.role,
            lookup: lookup.to_owned(),
            created_at: now,
            last_seen_at: now,
        };
        let audit = AuditEvent {
            at: now,
            actor: operator.actor(),
            action: AuditAction::ConsoleSignedIn.into(),
            object: format!("console:{}", operator.actor()),
            details: serde_json::json!({
                "role": operator.role.as_str(),
                "by": match operator.kind {
                    OperatorKind::ApiKey => "api_key",
                    OperatorKind::Certificate => "certificate",
                },
            })
            .to_string(),
        };
        self.store.create_session(&record, &audit).await?;
        tracing::info!(actor = %operator.actor(), "console sign-in");
        Ok(id)
    }

    /// The live session with this id, touched now; `None` when unknown, idle too long or past
    /// its maximum age (an expired one is deleted).
    pub async fn resume(&self, id: &str, now: i64) -> Result<Option<ActiveSession>, SessionError> {
        let hash = sha256(&[id.as_bytes()]);
        let found = self
            .store
            .touch_session(&hash, now - secs(self.idle), now)
            .await?;
        match found {
            Some(record) if record.created_at > now - secs(self.max) => Ok(Some(ActiveSession {
                record,
                csrf: csrf_token(id),
            })),
            Some(record) => {
                self.end(&record, now, "expired").await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Signs out: deletes the session and audits it.
    pub async fn close(&self, session: &ActiveSession, now: i64) -> Result<(), SessionError> {
        self.end(&session.record, now, "signed_out").await
    }

    async fn end(
        &self,
        record: &ConsoleSession,
        now: i64,
        why: &'static str,
    ) -> Result<(), SessionError> {
        let actor = Operator {
            name: record.operator.clone(),
            role: record.role,
            kind: record.kind,
        }
        .actor();
        let audit = AuditEvent {
            at: now,
            actor: actor.clone(),
            action: AuditAction::ConsoleSignedOut.into(),
            object: format!("console:{actor}"),
            details: serde_json::json!({ "why": why }).to_string(),
        };
        self.store.delete_session(&record.id_sha256, &audit).await?;
        Ok(())
    }

    /// Deletes the sessions idle past the timeout (housekeeping; each request checks anyway).
    pub async fn purge_idle(&self, now: i64) -> Result<u64, SessionError> {
        Ok(self
            .store
            .delete_idle_sessions(now - secs(self.idle))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_per_session_and_compared_exactly() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        // Not the stored hash of the id.
        assert_ne!(
            csrf_token(&a),
            URL_SAFE_NO_PAD.encode(sha256(&[a.as_bytes()]))
        );
        assert!(tokens_match(&csrf_token(&a), &csrf_token(&a)));
        assert!(!tokens_match(&csrf_token(&b), &csrf_token(&a)));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("", &csrf_token(&a)));
    }
}
