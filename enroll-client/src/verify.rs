//! `enroll-client verify`: what a hospital wants to know about a device certificate, in one
//! glance: does it chain to our root, what level is it and where is its key (a TPM whose
//! residency the CA attested), does it conform to its level, is it revoked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iomt_core::extensions::hardware_module_name_from_other_name;
use iomt_core::identity::{HardwareModuleName, Identity, PermanentIdentifier};
use iomt_core::lint::{LintInput, lint_device_certificate};
use iomt_core::ocsp::{self, Status};
use iomt_core::oids::{
    ATTESTATION_VERIFIED_NUMBERING, TCG_CAP_VERIFIED_TPM_RESIDENCY, TCG_HW_TYPE_TPM2,
    TCG_PERMANENT_IDENTIFIER_ASSIGNER,
};
use iomt_core::policy::{Level, Policy, PolicySet, shipped_sources};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ClientError;

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
    let (ocsp_url, crl_url) = revocation_urls(&cert);
    let client = http_client(&root)?;
    let serial = cert.raw_serial().to_vec();
    let attempts: Vec<(&str, Option<String>)> = match request.revocation {
        RevocationCheck::None => {
            lines.push((
                "revocation".into(),
                "not checked (--revocation none)".into(),
            ));
            return finish(lines, Verdict::Trusted);
        }
        RevocationCheck::Ocsp => vec![("OCSP", ocsp_url)],
        RevocationCheck::Crl => vec![("CRL", crl_url)],
        RevocationCheck::Auto => vec![("OCSP", ocsp_url), ("CRL", crl_url)],
    };
    let mut problems = Vec::new();
    for (method, url) in attempts {
        let Some(url) = url else {
            problems.push(format!("{method}: the certificate names no URL"));
            continue;
        };
        let status = match method {
            "OCSP" => check_ocsp(&client, &url, issuer_der, &serial).await,
            _ => check_crl(&client, &url, &issuer, &serial).await,
        };
        match status {
            Ok(Status::Good) => {
                lines.push(("revocation".into(), format!("good ({method} {url})")));
                return finish(lines, Verdict::Trusted);
            }
            Ok(Status::Revoked { at, reason }) => {
                let when = time::OffsetDateTime::from_unix_timestamp(at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let text = format!(
                    "REVOKED since {when}, reason {} ({method} {url})",
                    reason_name(reason)
                );
                lines.push(("revocation".into(), text.clone()));
                return finish(lines, Verdict::Revoked(text));
            }
            Ok(Status::Unknown) => problems.push(format!(
                "{method} {url}: the responder does not know this certificate"
            )),
            Err(problem) => problems.push(format!("{method} {url}: {problem}")),
        }
    }
    let text = problems.join("; ");
    lines.push(("revocation".into(), format!("UNKNOWN: {text}")));
    finish(lines, Verdict::RevocationUnknown(text))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn reason_name(code: Option<u8>) -> &'static str {
    match code {
        Some(0) => "unspecified",
        Some(1) => "keyCompromise",
        Some(2) => "cACompromise",
        Some(3) => "affiliationChanged",
        Some(4) => "superseded",
        Some(5) => "cessationOfOperation",
        Some(6) => "certificateHold",
        Some(9) => "privilegeWithdrawn",
        Some(10) => "aACompromise",
        _ => "not given",
    }
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

/// Why a revocation source (OCSP responder or CRL) gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum StatusProblem {
    #[error("no randomness for the OCSP nonce")]
    NoRandomness,
    #[error("the OCSP request cannot be built: {0}")]
    Request(#[from] ocsp::OcspResponseError),
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("reading the answer: {0}")]
    Body(reqwest::Error),
    #[error(transparent)]
    Ocsp(#[from] ocsp::OcspCheckError),
    #[error("not a DER CRL: {0}")]
    NotCrl(x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the CRL is not the issuing CA's")]
    CrlIssuer,
    #[error("the CRL signature does not verify")]
    CrlSignature,
    #[error("the CRL is stale (nextUpdate has passed)")]
    CrlStale,
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

fn policy_oids(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(cp) => Some(
                cp.iter()
                    .map(|p| p.policy_id.to_id_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The certificate's OIDs that the level lists as optional (earned by attestation at issuance).
fn attested_policies(
    cp: &iomt_core::policy::CertificatePoliciesRule,
    oids: &[String],
) -> Vec<String> {
    oids.iter()
        .filter(|oid| !cp.required_oids.contains(oid))
        .cloned()
        .collect()
}

/// The names the device certificate's SAN carries.
struct DeviceNames {
    hardware_module_name: Option<HardwareModuleName>,
    permanent_identifier: Option<PermanentIdentifier>,
    uri: Option<String>,
}

fn device_names(cert: &X509Certificate<'_>) -> DeviceNames {
    let mut names = DeviceNames {
        hardware_module_name: None,
        permanent_identifier: None,
        uri: None,
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::OtherName(oid, value) if oid.to_id_string() == "1.3.6.1.5.5.7.8.4" => {
                    names.hardware_module_name = hardware_module_name_from_other_name(value).ok();
                }
                GeneralName::OtherName(oid, value) if oid.to_id_string() == "1.3.6.1.5.5.7.8.3" => {
                    names.permanent_identifier =
                        iomt_core::extensions::permanent_identifier_from_other_name(value).ok();
                }
                GeneralName::URI(u) => names.uri = Some((*u).to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// Where the certificate says its key is held, for a person deciding whether to trust the
/// device: the hardware module it names (a TPM 2.0 by its hwSerialNum and EK certificate
/// digest), and whether the CA verified the key's residency by attestation at issuance (the
/// level's attestation marker or the TCG residency OID).
fn key_protection(cert: &X509Certificate<'_>, oids: &[String]) -> String {
    let names = device_names(cert);
    let marker = format!(".{ATTESTATION_VERIFIED_NUMBERING}");
    let attested = oids
        .iter()
        .any(|oid| oid.ends_with(&marker) || oid == TCG_CAP_VERIFIED_TPM_RESIDENCY);
    let serial = |hmn: &HardwareModuleName| match std::str::from_utf8(&hmn.hw_serial) {
        Ok(text) if text.chars().all(|c| c.is_ascii_graphic()) => text.to_owned(),
        _ => hex(&hmn.hw_serial),
    };
    let mut text = match &names.hardware_module_name {
        Some(hmn) if hmn.hw_type == TCG_HW_TYPE_TPM2 => {
            format!("in a TPM 2.0 (hwSerialNum {})", serial(hmn))
        }
        Some(hmn) => format!(
            "in hardware module {} (hwSerialNum {})",
            hmn.hw_type,
            serial(hmn)
        ),
        None => "no hardware module named".to_owned(),
    };
    if let Some(id) = names
        .permanent_identifier
        .as_ref()
        .filter(|id| id.assigner == TCG_PERMANENT_IDENTIFIER_ASSIGNER)
    {
        text.push_str(&format!(", EK certificate SHA-256 {}", id.value));
    }
    text.push_str(if attested {
        "; residency verified by the CA's key attestation at issuance"
    } else {
        "; residency not attested"
    });
    text
}

/// The level's error rules, with the certificate's own identity and product-line OIDs (the
/// verifier knows the level, not the manufacturer's product policy).
fn conformance(
    base: &Policy,
    cert: &X509Certificate<'_>,
    leaf: &[u8],
    issuer: &[u8],
    oids: &[String],
) -> Vec<String> {
    let mut policy = base.clone();
    for oid in oids {
        let cp = &mut policy.extensions.certificate_policies;
        if !cp.required_oids.contains(oid) && !cp.optional_oids.contains(oid) {
            cp.optional_oids.push(oid.clone());
        }
    }
    let attribute = |oid: &str| {
        cert.subject()
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == oid)
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let DeviceNames {
        hardware_module_name,
        permanent_identifier,
        uri,
    } = device_names(cert);
    if let Some(hmn) = &hardware_module_name {
        policy
            .san
            .hardware_module_name
            .hw_type_oids
            .push(hmn.hw_type.clone());
    }
    let identity = Identity {
        country: attribute("2.5.4.6"),
        organization: attribute("2.5.4.10"),
        common_name: attribute("2.5.4.3"),
        serial_number: attribute("2.5.4.5"),
        hardware_module_name,
        uri,
        permanent_identifier,
        // The verifier judges the OIDs against the level's lists, not against how they were
        // earned: it has no record of the attestation.
        attested_policies: attested_policies(&base.extensions.certificate_policies, oids),
    };
    lint_device_certificate(&LintInput {
        certificate_der: leaf,
        issuer_der: issuer,
        policy: &policy,
        identity: &identity,
        now: time::OffsetDateTime::now_utc(),
        verify_signature: true,
    })
    .into_iter()
    // Validity length and key sunset depend on the manufacturer's product policy only through
    // narrowing, so the level's limits are the right ones here.
    .map(|finding| finding.to_string())
    .collect()
}

pub(crate) fn revocation_urls(cert: &X509Certificate<'_>) -> (Option<String>, Option<String>) {
    let mut ocsp = None;
    let mut crl = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for desc in &aia.accessdescs {
                    if desc.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1"
                        && let GeneralName::URI(u) = desc.access_location
                    {
                        ocsp = Some(u.to_owned());
                    }
                }
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(x509_parser::extensions::DistributionPointName::FullName(names)) =
                        &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(u) = name {
                                crl.get_or_insert_with(|| (*u).to_owned());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (ocsp, crl)
}

fn http_client(root: &[u8]) -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root.to_vec()))
        .map_err(|e| ClientError::Local(e.to_string()))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Local(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| ClientError::Local(e.to_string()))
}

async fn check_ocsp(
    client: &reqwest::Client,
    url: &str,
    issuer: &[u8],
    serial: &[u8],
) -> Result<Status, StatusProblem> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| StatusProblem::NoRandomness)?;
    let request = ocsp::build_request(issuer, serial, Some(&nonce))?;
    let response = client
        .post(url)
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .map_err(StatusProblem::Unreachable)?;
    let body = response.bytes().await.map_err(StatusProblem::Body)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(ocsp::check_response(
        &body,
        issuer,
        serial,
        Some(&nonce),
        now,
    )?)
}

async fn check_crl(
    client: &reqwest::Client,
    url: &str,
    issuer: &X509Certificate<'_>,
    serial: &[u8],
) -> Result<Status, StatusProblem> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(StatusProblem::Unreachable)?;
    if !response.status().is_success() {
        return Err(StatusProblem::Status(response.status()));
    }
    let body = response.bytes().await.map_err(StatusProblem::Body)?;
    let (_, crl) = x509_parser::parse_x509_crl(&body).map_err(StatusProblem::NotCrl)?;
    if crl.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(StatusProblem::CrlIssuer);
    }
    crl.verify_signature(issuer.public_key())
        .map_err(|_| StatusProblem::CrlSignature)?;
    let now = x509_parser::time::ASN1Time::now();
    if crl.next_update().is_some_and(|next| next < now) {
        return Err(StatusProblem::CrlStale);
    }
    let entry = crl
        .iter_revoked_certificates()
        .find(|r| r.raw_serial() == serial);
    Ok(match entry {
        None => Status::Good,
        Some(entry) => Status::Revoked {
            at: entry.revocation_date.timestamp(),
            reason: entry.reason_code().map(|(_, code)| code.0),
        },
    })
}
