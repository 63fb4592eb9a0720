//! Profile checks on CA certificates this CA did not make itself: the ones an offline root
//! signed for `ca import` (docs/PROFILE.md §3) and the audit key's. Each refusal is a
//! [`ProfileViolation`] that names the rule broken.

use iomt_core::extensions::key_identifier;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::X509Certificate;

/// The rule a certificate breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileViolation {
    #[error("an extension does not decode: {0}")]
    Unreadable(X509Error),
    #[error("the root certificate is not self-issued")]
    RootNotSelfIssued,
    #[error("the root's self-signature does not verify: {0}")]
    RootSelfSignature(X509Error),
    #[error("the root certificate is not a CA (basicConstraints cA)")]
    RootNotCa,
    #[error("the root's keyUsage lacks keyCertSign or cRLSign")]
    RootKeyUsage,
    #[error("issued by `{issuer}`, not by the given root `{root}`")]
    WrongIssuer { issuer: String, root: String },
    #[error("the signature does not verify with the root's key: {0}")]
    Signature(X509Error),
    #[error("the serial number has fewer than 64 bits")]
    ShortSerial,
    #[error("the certificate is not valid now")]
    NotValidNow,
    #[error("authorityKeyIdentifier is not the root's subjectKeyIdentifier")]
    AuthorityKeyId,
    #[error("subjectKeyIdentifier is not the RFC 7093 method 1 value from the CSR profile")]
    SubjectKeyId,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("basicConstraints must be critical, cA TRUE, pathLenConstraint 0")]
    CaBasicConstraints,
    #[error("keyUsage must be critical keyCertSign + cRLSign (no digitalSignature)")]
    CaKeyUsage,
    #[error("extendedKeyUsage must include clientAuth and never anyEKU or OCSPSigning")]
    CaExtendedKeyUsage,
    #[error("certificatePolicies lacks {0}")]
    MissingPolicy(String),
    #[error("{holder} must not be a CA")]
    MustNotBeCa { holder: &'static str },
    #[error("{holder} needs keyUsage digitalSignature")]
    NeedsDigitalSignature { holder: &'static str },
    #[error("{holder} needs extendedKeyUsage {usage}")]
    NeedsExtendedKeyUsage {
        holder: &'static str,
        usage: &'static str,
    },
}

use ProfileViolation as V;

/// A root: self-issued, self-signed, a CA with keyCertSign and cRLSign.
pub(super) fn check_root(root: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    if root.subject() != root.issuer() {
        return Err(V::RootNotSelfIssued);
    }
    root.verify_signature(None).map_err(V::RootSelfSignature)?;
    let ca = root
        .basic_constraints()
        .map_err(V::Unreadable)?
        .is_some_and(|bc| bc.value.ca);
    if !ca {
        return Err(V::RootNotCa);
    }
    let signs = root
        .key_usage()
        .map_err(V::Unreadable)?
        .is_some_and(|ku| ku.value.key_cert_sign() && ku.value.crl_sign());
    if !signs {
        return Err(V::RootKeyUsage);
    }
    Ok(())
}

/// Issued by the root: names chain, signature verifies, AKI = root SKI, serial and validity.
pub(super) fn check_issued(
    cert: &X509Certificate<'_>,
    root: &X509Certificate<'_>,
) -> Result<(), ProfileViolation> {
    if cert.issuer() != root.subject() {
        return Err(V::WrongIssuer {
            issuer: cert.issuer().to_string(),
            root: root.subject().to_string(),
        });
    }
    cert.verify_signature(Some(root.public_key()))
        .map_err(V::Signature)?;
    if cert.raw_serial().len() < 8 {
        return Err(V::ShortSerial);
    }
    if !cert.validity().is_valid() {
        return Err(V::NotValidNow);
    }
    let root_ski = subject_key_id(root);
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    if root_ski.is_some() && aki != root_ski {
        return Err(V::AuthorityKeyId);
    }
    let ski = subject_key_id(cert);
    if ski != Some(key_identifier(&cert.public_key().subject_public_key.data).as_slice()) {
        return Err(V::SubjectKeyId);
    }
    Ok(())
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
}

/// An issuing or station CA (docs/PROFILE.md §3): critical CA pathLen 0, critical keyCertSign +
/// cRLSign only, the expected policies, clientAuth and never anyEKU or OCSPSigning.
pub(super) fn check_ca(
    cert: &X509Certificate<'_>,
    expected_policies: &[String],
) -> Result<(), ProfileViolation> {
    let bc = cert
        .basic_constraints()
        .map_err(V::Unreadable)?
        .ok_or(V::Missing("basicConstraints"))?;
    if !bc.critical || !bc.value.ca || bc.value.path_len_constraint != Some(0) {
        return Err(V::CaBasicConstraints);
    }
    let ku = cert
        .key_usage()
        .map_err(V::Unreadable)?
        .ok_or(V::Missing("keyUsage"))?;
    if !ku.critical
        || !ku.value.key_cert_sign()
        || !ku.value.crl_sign()
        || ku.value.digital_signature()
    {
        return Err(V::CaKeyUsage);
    }
    let eku = cert
        .extended_key_usage()
        .map_err(V::Unreadable)?
        .ok_or(V::Missing("extendedKeyUsage"))?;
    if !eku.value.client_auth || eku.value.any || eku.value.ocsp_signing {
        return Err(V::CaExtendedKeyUsage);
    }
    let present: Vec<String> = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => Some(
                policies
                    .iter()
                    .map(|p| p.policy_id.to_id_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    if let Some(missing) = expected_policies.iter().find(|oid| !present.contains(oid)) {
        return Err(V::MissingPolicy(missing.clone()));
    }
    Ok(())
}

/// The HTTPS certificate: not a CA, serverAuth.
pub(super) fn check_tls(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    const HOLDER: &str = "the TLS certificate";
    check_not_ca(cert, HOLDER)?;
    let server = cert
        .extended_key_usage()
        .map_err(V::Unreadable)?
        .is_some_and(|eku| eku.value.server_auth);
    if !server {
        return Err(V::NeedsExtendedKeyUsage {
            holder: HOLDER,
            usage: "serverAuth",
        });
    }
    Ok(())
}

/// An end-entity certificate: basicConstraints absent or cA FALSE.
pub(super) fn check_not_ca(
    cert: &X509Certificate<'_>,
    holder: &'static str,
) -> Result<(), ProfileViolation> {
    if cert
        .basic_constraints()
        .map_err(V::Unreadable)?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(V::MustNotBeCa { holder });
    }
    Ok(())
}
