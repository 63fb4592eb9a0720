//! `Conformant`: a signed device certificate the issuance linter passed. Only [`lint`] makes
//! one, and the issuance step stores and returns nothing else, so a certificate that skipped the
//! linter cannot reach the registry or a device.

use iomt_core::identity::Identity;
use iomt_core::lint::{LintInput, lint_device_certificate_with_baseline};
use iomt_core::policy::Policy;
use time::OffsetDateTime;

use super::EnrollError;
use super::certificate::SignedCertificate;

/// A signed certificate with no lint finding against its product policy and the built-in level.
#[derive(Debug)]
pub(super) struct Conformant(SignedCertificate);

impl Conformant {
    /// The certificate, to record.
    pub(super) fn certificate(&self) -> &SignedCertificate {
        &self.0
    }

    /// The certificate, to return.
    pub(super) fn into_certificate(self) -> SignedCertificate {
        self.0
    }
}

/// What a device certificate is linted against.
pub(super) struct LintContext<'a> {
    pub issuer_der: &'a [u8],
    pub policy: &'a Policy,
    /// The built-in level (or product baseline), whatever the data directory's files say.
    pub baseline: &'a Policy,
    pub identity: &'a Identity,
    pub now: OffsetDateTime,
    /// Whether to check the issuer's signature over it.
    pub verify_signature: bool,
}

/// Lints `signed` against its policy and the baseline; a finding is an issuance defect, logged
/// and refused.
pub(super) fn lint(
    signed: SignedCertificate,
    context: &LintContext<'_>,
) -> Result<Conformant, EnrollError> {
    let input = LintInput {
        certificate_der: &signed.der,
        issuer_der: context.issuer_der,
        policy: context.policy,
        identity: context.identity,
        now: context.now,
        verify_signature: context.verify_signature,
    };
    let findings = lint_device_certificate_with_baseline(&input, context.baseline);
    if findings.is_empty() {
        return Ok(Conformant(signed));
    }
    let error = EnrollError::Defect { findings };
    tracing::error!(%error, "issuance defect: refusing to return a non-conformant certificate");
    Err(error)
}
