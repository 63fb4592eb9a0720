//! One request, one answer: a request the CA already committed, repeated by the same party for
//! the same device and the same public key, gets the certificate it was issued (the answer was
//! lost to a crash, a timeout or a client that choked on it). And a request that lost a race at
//! commit is decided again from what the winner committed, so it gets the answer the second of
//! two sequential requests would.

use std::future::Future;

use iomt_core::identity::IdentityError;
use iomt_core::policy::Level;
use time::OffsetDateTime;

use super::csr::{CsrError, KeyNotAllowed};
use super::{Authority, EnrollError, Issued, SignedCertificate};
use crate::storage::{
    AuditAction, AuditEvent, CertificateRecord, CertificateStatus, Device, StoreError,
};

/// How long a station's or a re-enrollment's answer may be sent again.
const RESEND_WINDOW_SECS: i64 = 24 * 3600;

/// The issuance range of a station's or a re-enrollment's repeat: the last 24 hours.
pub(super) fn last_day(now: OffsetDateTime) -> (i64, i64) {
    (
        now.unix_timestamp() - RESEND_WINDOW_SECS,
        now.unix_timestamp(),
    )
}

/// What a repeated request must match to be answered with the certificate already issued.
pub(super) struct Repeat<'a> {
    pub device: &'a Device,
    pub spki_sha256: &'a [u8],
    /// The certificate's `authorized_by`: `token`, `station:<name>` or `certificate:<serial>`.
    pub authorized_by: &'a str,
    /// The certificate must have been issued within this range (Unix seconds, inclusive).
    pub issued_between: (i64, i64),
    /// Who is asking, for the audit trail.
    pub actor: &'a str,
}

/// How one attempt at an enrollment route ended without a certificate.
pub(super) enum Attempt {
    /// Refused by a check: the final answer.
    Refused(EnrollError),
    /// Refused at commit because a concurrent request committed first: decide again.
    LostRace(EnrollError),
}

impl From<EnrollError> for Attempt {
    fn from(error: EnrollError) -> Attempt {
        Attempt::Refused(error)
    }
}

impl From<StoreError> for Attempt {
    fn from(error: StoreError) -> Attempt {
        Attempt::Refused(error.into())
    }
}

impl From<CsrError> for Attempt {
    fn from(error: CsrError) -> Attempt {
        Attempt::Refused(error.into())
    }
}

impl From<KeyNotAllowed> for Attempt {
    fn from(error: KeyNotAllowed) -> Attempt {
        Attempt::Refused(error.into())
    }
}

impl From<IdentityError> for Attempt {
    fn from(error: IdentityError) -> Attempt {
        Attempt::Refused(error.into())
    }
}

/// Runs a route; if it lost a race at commit, runs it once more on the committed state (which
/// then answers with a resend, or with the refusal a sequential request gets).
pub(super) async fn settle<F, Fut>(attempt: F) -> Result<Issued, EnrollError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Issued, Attempt>>,
{
    match attempt().await {
        Ok(issued) => Ok(issued),
        Err(Attempt::Refused(error)) => Err(error),
        Err(Attempt::LostRace(error)) => {
            tracing::debug!(%error, "lost a race at commit; deciding again");
            match attempt().await {
                Ok(issued) => Ok(issued),
                Err(Attempt::Refused(error) | Attempt::LostRace(error)) => Err(error),
            }
        }
    }
}

impl Authority {
    /// The certificate already issued for this exact request: the device's, carrying the
    /// requested key, authorized the same way within the range, valid, unexpired and not
    /// renewed since. The resend is audited (`certificate.resent`).
    pub(super) async fn resend(
        &self,
        repeat: Repeat<'_>,
        now: OffsetDateTime,
    ) -> Result<Option<Issued>, EnrollError> {
        let certificates = self
            .store
            .certificates_for_device(&repeat.device.serial)
            .await?;
        let (from, to) = repeat.issued_between;
        let same_request = |record: &&CertificateRecord| {
            record.spki_sha256 == repeat.spki_sha256
                && record.authorized_by == repeat.authorized_by
                && record.status == CertificateStatus::Valid
                && (from..=to).contains(&record.issued_at)
                && record.not_after > now.unix_timestamp()
        };
        let Some(record) = certificates.iter().find(same_request) else {
            return Ok(None);
        };
        // Only the device's current certificate is sent again, never one already renewed.
        if certificates
            .iter()
            .any(|c| c.supersedes.as_deref() == Some(record.serial.as_str()))
        {
            return Ok(None);
        }
        let stored = (
            Level::parse(&record.issuer),
            OffsetDateTime::from_unix_timestamp(record.not_before),
            OffsetDateTime::from_unix_timestamp(record.not_after),
        );
        let (Some(level), Ok(not_before), Ok(not_after)) = stored else {
            return Ok(None);
        };
        let certificate = SignedCertificate {
            not_before,
            not_after,
            serial_hex: record.serial.clone(),
            der: record.der.clone(),
        };
        self.store
            .append_audit(&[AuditEvent {
                at: now.unix_timestamp(),
                actor: repeat.actor.to_owned(),
                action: AuditAction::CertificateResent.into(),
                object: format!("certificate:{}", record.serial),
                details: serde_json::json!({
                    "device": repeat.device.serial,
                    "authorized_by": record.authorized_by,
                    "issued_at": record.issued_at,
                })
                .to_string(),
            }])
            .await?;
        tracing::info!(certificate = %record.serial, device = %repeat.device.serial, "repeated request: certificate sent again");
        let ca = self.ca.current();
        let issuer = ca
            .signer(&record.issuer)
            .unwrap_or_else(|| ca.issuing(level));
        Ok(Some(Issued {
            certificate,
            issuer_der: issuer.cert_der.clone(),
            issuer: issuer.name.clone(),
            product: record.product.clone(),
        }))
    }
}
