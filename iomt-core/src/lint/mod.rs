//! docs/PROFILE.md §8 error rules, run on every device certificate before it leaves the CA.
//!
//! The linter re-reads the signed DER with x509-parser, independently of the code that built it,
//! and checks it against the resolved product policy, the authorised [`Identity`] and the issuing
//! CA certificate. Any [`Finding`] means the certificate must not be returned.
//!
//! Checked here: ENC-01..04, SER-01, SER-02 (length), KEY-01..03, VAL-01..04, SUB-01..05,
//! SAN-01, -02, -04, -06, -07, BC-01, KU-01..03, EKU-01, -02, KID-01, -02, POL-01..03, POL-06,
//! REV-01..03, EXT-01, -02, CHN-01 and CHN-03. Comparing the subject, HardwareModuleName,
//! permanentIdentifier and URI with the identity (built from one registration record, and for a
//! TPM-attested key from its verified EK: [`Identity::with_tpm_residency`]) also covers SUB-06
//! and SAN-03; KU-02/03 cover EKU-03; POL-02's allow-list (the policy's own OID lists) covers
//! POL-05, and an optional OID is allowed only when the identity earned it (POL-06); SUB-01 and
//! SAN-06 leave no field for the data SUB-07 forbids.
//!
//! Checked elsewhere, because they need more than the two certificates: the issuance-process
//! rules (IOMT-PRC-*), weak and cloned keys (KEY-04, KEY-05), serial sequence and uniqueness
//! (SER-02's log part, SER-03), name constraints (CHN-02, SAN-05), placeholder OIDs in
//! production (POL-04, at policy load) and the warnings (ENC-05, VAL-05, CHN-04).

mod chain;
mod curve_point;
mod extensions;
mod names;
mod structure;
#[cfg(test)]
mod tests;

use std::fmt;

use time::OffsetDateTime;
use x509_parser::asn1_rs::Oid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::X509Extension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::identity::Identity;
use crate::policy::{AllowedKey, Curve, Policy};

/// Input to the linter.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    /// The signed device certificate, DER.
    pub certificate_der: &'a [u8],
    /// The issuing CA certificate, DER.
    pub issuer_der: &'a [u8],
    /// The device's resolved product policy.
    pub policy: &'a Policy,
    /// What the subject and subjectAltName must say.
    pub identity: &'a Identity,
    /// The signing time.
    pub now: OffsetDateTime,
    /// Check the signature with the issuer's key. A verifier always does; a signer whose key
    /// was proven at load to match the issuer certificate may skip the re-verification of a
    /// signature it has just made in process (a P-256 verification costs more than the rest
    /// of the lint together).
    pub verify_signature: bool,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The docs/PROFILE.md §8 rule id, e.g. `IOMT-SUB-01`.
    pub rule: &'static str,
    /// What is wrong, for the defect log.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

/// Checks a signed device certificate against docs/PROFILE.md §8; empty means it may be returned.
///
/// A certificate or issuer that does not parse gives a single IOMT-ENC-03 finding.
pub fn lint_device_certificate(input: &LintInput<'_>) -> Vec<Finding> {
    lint_against(input, None)
}

/// Like [`lint_device_certificate`], and also checks the certificate against `baseline` (the
/// built-in level it must satisfy whatever the loaded files say), parsing it only once. A
/// finding only the baseline raises has its message prefixed with `built-in level baseline: `.
pub fn lint_device_certificate_with_baseline(
    input: &LintInput<'_>,
    baseline: &Policy,
) -> Vec<Finding> {
    lint_against(input, Some(baseline))
}

fn lint_against(input: &LintInput<'_>, baseline: Option<&Policy>) -> Vec<Finding> {
    let cert = match parse(input.certificate_der, "the certificate") {
        Ok(cert) => cert,
        Err(finding) => return vec![finding],
    };
    let issuer = match parse(input.issuer_der, "the issuer certificate") {
        Ok(issuer) => issuer,
        Err(finding) => return vec![finding],
    };
    let ctx = Context {
        cert: &cert,
        issuer: &issuer,
        policy: input.policy,
        identity: input.identity,
        now: input.now,
        verify_signature: input.verify_signature,
        key: SubjectKey::of(cert.public_key()),
    };
    let mut findings = rules(&ctx, input.certificate_der);
    if let Some(baseline) = baseline {
        // The signature does not depend on the policy: it was checked (or not) above.
        let ctx = Context {
            policy: baseline,
            verify_signature: false,
            ..ctx
        };
        let extra: Vec<Finding> = rules(&ctx, input.certificate_der)
            .into_iter()
            .filter(|finding| !findings.contains(finding))
            .map(|finding| Finding {
                message: format!("built-in level baseline: {}", finding.message),
                ..finding
            })
            .collect();
        findings.extend(extra);
    }
    findings
}

/// Every rule family on a parsed certificate.
fn rules(ctx: &Context<'_>, certificate_der: &[u8]) -> Vec<Finding> {
    let input_der = certificate_der;
    let mut out = Findings::default();
    structure::encoding(ctx, input_der, &mut out);
    structure::serial(ctx, &mut out);
    structure::subject_key(ctx, &mut out);
    structure::validity(ctx, &mut out);
    names::subject(ctx, &mut out);
    names::subject_alt_name(ctx, &mut out);
    extensions::basic_constraints(ctx, &mut out);
    extensions::key_usage(ctx, &mut out);
    extensions::extended_key_usage(ctx, &mut out);
    extensions::key_identifiers(ctx, &mut out);
    extensions::certificate_policies(ctx, &mut out);
    extensions::revocation_pointers(ctx, &mut out);
    extensions::other_extensions(ctx, &mut out);
    chain::issuer(ctx, &mut out);
    chain::signature(ctx, &mut out);
    out.0
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Finding> {
    let message = match X509Certificate::from_der(der) {
        Ok(([], cert)) => return Ok(cert),
        Ok((rest, _)) => format!("{what} is followed by {} stray bytes", rest.len()),
        Err(err) => format!("{what} is not an X.509 certificate in DER: {err}"),
    };
    Err(Finding {
        rule: "IOMT-ENC-03",
        message,
    })
}

/// Everything a rule may look at.
struct Context<'a> {
    cert: &'a X509Certificate<'a>,
    issuer: &'a X509Certificate<'a>,
    policy: &'a Policy,
    identity: &'a Identity,
    now: OffsetDateTime,
    verify_signature: bool,
    key: SubjectKey,
}

/// The findings collected so far.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn push(&mut self, rule: &'static str, message: impl Into<String>) {
        self.0.push(Finding {
            rule,
            message: message.into(),
        });
    }
}

/// Dotted OIDs the rules refer to.
mod oid {
    pub const BASIC_CONSTRAINTS: &str = "2.5.29.19";
    pub const KEY_USAGE: &str = "2.5.29.15";
    pub const EXTENDED_KEY_USAGE: &str = "2.5.29.37";
    pub const SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";
    pub const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
    pub const SUBJECT_ALT_NAME: &str = "2.5.29.17";
    pub const CERTIFICATE_POLICIES: &str = "2.5.29.32";
    pub const CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
    pub const AUTHORITY_INFO_ACCESS: &str = "1.3.6.1.5.5.7.1.1";
    pub const MASA_URL: &str = "1.3.6.1.5.5.7.1.32";
    pub const ANY_POLICY: &str = "2.5.29.32.0";
    pub const AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
    pub const AD_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";
    pub const HARDWARE_MODULE_NAME: &str = "1.3.6.1.5.5.7.8.4";
    pub const PERMANENT_IDENTIFIER: &str = "1.3.6.1.5.5.7.8.3";
    pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    pub const SECP256R1: &str = "1.2.840.10045.3.1.7";
    pub const SECP384R1: &str = "1.3.132.0.34";
    pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
}

/// The extension with this dotted OID; the first one if duplicated (IOMT-ENC-03 reports that).
fn extension<'c, 'a>(cert: &'c X509Certificate<'a>, dotted: &str) -> Option<&'c X509Extension<'a>> {
    cert.extensions()
        .iter()
        .find(|ext| crate::oids::is_dotted(&ext.oid, dotted))
}

/// True for a `http://` URI, the only scheme allowed for revocation and AIA pointers.
fn is_http(uri: &str) -> bool {
    uri.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
        && uri.len() > 7
}

/// The kind and size of a subject public key, as far as the profile cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubjectKey {
    /// id-ecPublicKey; `None` when the curve is not one the profile knows.
    Ec(Option<Curve>),
    /// rsaEncryption with this modulus length in bits.
    Rsa(u32),
    /// Any other algorithm, by dotted OID.
    Other(String),
}

impl SubjectKey {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> SubjectKey {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        match algorithm.as_str() {
            oid::EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|params| Oid::try_from(params).ok())
                    .and_then(|curve| match curve.to_id_string().as_str() {
                        oid::SECP256R1 => Some(Curve::P256),
                        oid::SECP384R1 => Some(Curve::P384),
                        _ => None,
                    });
                SubjectKey::Ec(curve)
            }
            oid::RSA_ENCRYPTION => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => SubjectKey::Rsa(bit_length(rsa.modulus)),
                _ => SubjectKey::Rsa(0),
            },
            _ => SubjectKey::Other(algorithm),
        }
    }

    /// True when `entry` of `[[keys.allowed]]` covers this key.
    fn allowed_by(&self, entry: &AllowedKey) -> bool {
        match self {
            SubjectKey::Ec(Some(curve)) => entry.allows_curve(*curve),
            SubjectKey::Rsa(bits) => entry.allows_rsa(*bits),
            SubjectKey::Ec(None) | SubjectKey::Other(_) => false,
        }
    }
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectKey::Ec(Some(curve)) => write!(f, "ECDSA {}", curve.as_str()),
            SubjectKey::Ec(None) => f.write_str("EC key on an unknown curve"),
            SubjectKey::Rsa(bits) => write!(f, "RSA-{bits}"),
            SubjectKey::Other(algorithm) => write!(f, "key of algorithm {algorithm}"),
        }
    }
}

/// Bit length of a big-endian unsigned integer (leading zero bytes and bits ignored).
fn bit_length(bytes: &[u8]) -> u32 {
    let significant: &[u8] = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    let leading = significant.first().map_or(0, |b| b.leading_zeros());
    u32::try_from(significant.len() * 8).unwrap_or(u32::MAX) - leading
}
