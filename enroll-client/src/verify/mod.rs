//! `enroll-client verify`: what a hospital wants to know about a device certificate, in one
//! glance: does it chain to our root, what level is it and where is its key (a TPM whose
//! residency the CA attested), does it conform to its level, is it revoked.

use std::path::{Path, PathBuf};

use iomt_core::policy::{Level, PolicySet, shipped_sources};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ClientError;

mod profile;
mod revocation;

use profile::{conformance, key_protection, policy_oids};
pub(crate) use revocation::{reason_name, revocation_urls};

/// How to check revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RevocationCheck {
    /// OCSP when the certificate names a responder, else the CRL; falls back to the CRL.
    Auto,
    Ocsp,
    Crl,
    None,
}

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    /// Issuing CA (and optionally root), PEM; defaults to the extra certificates in `cert`.
    pub chain: Option<PathBuf>,
    pub require_level: Option<Level>,
    pub revocation: RevocationCheck,
}

/// The outcome, most serious first. Exit codes: 0, 20, 21, 22, 23.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    Untrusted(String),
    NonConformant(String),
    Revoked(String),
    RevocationUnknown(String),
}

impl Verdict {
    /// Exit status for scripts.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Trusted => 0,
            Verdict::Untrusted(_) => 20,
            Verdict::NonConformant(_) => 21,
            Verdict::Revoked(_) => 22,
            Verdict::RevocationUnknown(_) => 23,
        }
    }
}

/// The report: labelled lines for a person, and the verdict.
#[derive(Debug, Clone)]
pub struct Report {
    pub lines: Vec<(String, String)>,
    pub verdict: Verdict,
}

fn read_pems(path: &Path) -> Result<Vec<Vec<u8>>, ClientError> {
    let text = std::fs::read(path).map_err(ClientError::io(path))?;
    let blocks = pem::parse_many(text)
        .map_err(|e| ClientError::Local(format!("{}: {e}", path.display())))?;
    if blocks.is_empty() {
        return Err(ClientError::Local(format!(
            "{}: no PEM certificate",
            path.display()
        )));
    }
    Ok(blocks.into_iter().map(|b| b.into_contents()).collect())
}

/// Runs every check and returns the report.
pub async fn verify(request: &VerifyRequest) -> Result<Report, ClientError> {
    let root = read_pems(&request.ca_cert)?.remove(0);
    let mut leaf_file = read_pems(&request.cert)?;
    let leaf = leaf_file.remove(0);
    let others = match &request.chain {
        Some(path) => read_pems(path)?,
        None => leaf_file,
    };
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| ClientError::Local(format!("certificate: {e}")))?;
    let mut lines = vec![(
        "certificate".to_owned(),
        format!("{} (serial {})", cert.subject(), hex(cert.raw_serial())),
    )];
    let finish = |lines, verdict| Ok(Report { lines, verdict });

    // 1. Chain.
    let Some(issuer_der) = others.iter().find(|c| {
        X509Certificate::from_der(c)
            .is_ok_and(|(_, i)| i.subject().as_raw() == cert.issuer().as_raw())
    }) else {
        return finish(
            lines,
            Verdict::Untrusted("the issuing CA certificate was not given (--chain)".into()),
        );
    };
    if let Err(problem) = chain_ok(&leaf, issuer_der, &root) {
        let reason = problem.to_string();
        lines.push(("chain".into(), format!("FAILED: {reason}")));
        return finish(lines, Verdict::Untrusted(reason));
    }
    let (_, issuer) = X509Certificate::from_der(issuer_der)
        .map_err(|e| ClientError::Local(format!("issuing CA: {e}")))?;
    lines.push((
        "chain".into(),
        format!("OK, issued by {} under the given root", issuer.subject()),
    ));

    // 2. Level and profile conformance.
    let policies = PolicySet::from_sources(shipped_sources())
        .map_err(|e| ClientError::Local(e.to_string()))?;
    let oids = policy_oids(&cert);
    let levels: Vec<Level> = Level::ALL
        .into_iter()
        .filter(|l| oids.contains(&policies.level(*l).policy.certificate_policy_oid))
        .collect();
    let [level] = levels.as_slice() else {
        let reason = format!(
            "expected exactly one IoMT level policy OID, found {}",
            levels.len()
        );
        lines.push(("level".into(), reason.clone()));
        return finish(lines, Verdict::NonConformant(reason));
    };
    let base = policies.level(*level);
    lines.push((
        "level".into(),
        format!(
            "{} ({})",
            level.as_str(),
            base.policy.certificate_policy_oid
        ),
    ));
    lines.push(("key".into(), key_protection(&cert, &oids)));
    if let Some(required) = request.require_level
        && required != *level
    {
        let reason = format!(
            "the certificate is {} but {} is required",
            level.as_str(),
            required.as_str()
        );
        return finish(lines, Verdict::NonConformant(reason));
    }
    let findings = conformance(base, &cert, &leaf, issuer_der, &oids);
    if !findings.is_empty() {
        lines.push((
            "profile".into(),
            format!("{} finding(s): {}", findings.len(), findings.join("; ")),
        ));
        return finish(lines, Verdict::NonConformant(findings.join("; ")));
    }
    lines.push((
        "profile".into(),
        format!(
            "conforms to IoMT-{} (docs/PROFILE.md §8 lint rules)",
            level.as_str()
        ),
    ));

    // 3. Revocation.
    let (line, verdict) =
        revocation::check(request.revocation, &cert, issuer_der, &issuer, &root).await?;
    lines.push(("revocation".into(), line));
    finish(lines, verdict)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the chain from the device certificate to the given root does not verify; webpki's
/// error is kept as it is so the report names the failed check (`UnknownIssuer`, `CertExpired`).
#[derive(Debug, thiserror::Error)]
enum ChainProblem {
    #[error("the device certificate is not a well-formed end-entity certificate ({0:?})")]
    Leaf(webpki::Error),
    #[error("the root cannot serve as a trust anchor ({0:?})")]
    Anchor(webpki::Error),
    #[error("{0:?}")]
    Path(webpki::Error),
}

fn chain_ok(leaf: &[u8], issuer: &[u8], root: &[u8]) -> Result<(), ChainProblem> {
    let leaf = CertificateDer::from(leaf.to_vec());
    let root = CertificateDer::from(root.to_vec());
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(ChainProblem::Leaf)?;
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(ChainProblem::Anchor)?;
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[CertificateDer::from(issuer.to_vec())],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(ChainProblem::Path)
}
