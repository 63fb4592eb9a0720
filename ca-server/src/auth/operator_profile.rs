//! The operator certificate profile: what makes a certificate an operator's and not a device's
//! or a station's. An operator certificate carries the operator policy
//! ([`iomt_core::oids::OPERATOR_POLICY`]), is an end entity, carries no device identity
//! (HardwareModuleName SAN, serialNumber in the subject) and was not issued by a device issuing
//! CA or the station CA. `operator add` and the admin API require it; EST refuses it.

use iomt_core::oids::{HARDWARE_MODULE_NAME, OPERATOR_POLICY, is_dotted};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::CaMaterial;

/// Why EST refuses an operator certificate presented as the TLS client certificate.
pub const REFUSED_ON_EST: &str = "it is an operator certificate (operator policy \
     1.3.6.1.4.1.32473.7.5.1): operators use the admin API, never EST enrollment";

/// Why a certificate is not an operator certificate, most specific reason first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileProblem {
    #[error("it does not parse as an X.509 certificate")]
    Unparsable,
    #[error(
        "it was issued by the `{ca}` device issuing CA: a device certificate is a device's \
         identity, never an operator's"
    )]
    DeviceIssuer { ca: String },
    #[error(
        "it was issued by the station CA: a station certificate identifies a manufacturing \
         station, never an operator"
    )]
    StationIssuer,
    #[error("it carries a device identity ({0}), which an operator certificate never does")]
    DeviceIdentity(&'static str),
    #[error("it is a CA certificate, not an operator's end-entity certificate")]
    Ca,
    #[error("it does not carry the operator certificate policy {OPERATOR_POLICY}")]
    NoOperatorPolicy,
}

/// The subjects of the CAs that must never issue an operator certificate: the device issuing
/// CAs and the station CA, each with its name.
#[derive(Debug, Clone)]
pub struct ForbiddenIssuers {
    subjects: Vec<(String, Vec<u8>)>,
}

impl ForbiddenIssuers {
    /// The device issuing CAs and the station CA of `ca`.
    pub fn of(ca: &CaMaterial) -> ForbiddenIssuers {
        let subjects = ca
            .issuing
            .values()
            .chain(std::iter::once(&ca.station))
            .filter_map(|issuer| {
                let (_, cert) = X509Certificate::from_der(&issuer.cert_der).ok()?;
                Some((issuer.name.clone(), cert.subject().as_raw().to_vec()))
            })
            .collect();
        ForbiddenIssuers { subjects }
    }

    /// True when `der` is one of these CAs' certificates (by subject name).
    pub fn is_one(&self, der: &[u8]) -> bool {
        X509Certificate::from_der(der).is_ok_and(|(_, cert)| {
            self.subjects
                .iter()
                .any(|(_, subject)| subject == cert.subject().as_raw())
        })
    }

    fn issuer_of(&self, cert: &X509Certificate<'_>) -> Option<&str> {
        self.subjects
            .iter()
            .find(|(_, subject)| subject == cert.issuer().as_raw())
            .map(|(name, _)| name.as_str())
    }
}

/// Refuses a certificate issued by a device issuing CA or the station CA: the first check, so
/// that a device or station certificate is named as such.
pub fn check_issuer(der: &[u8], forbidden: &ForbiddenIssuers) -> Result<(), ProfileProblem> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| ProfileProblem::Unparsable)?;
    match forbidden.issuer_of(&cert) {
        Some(crate::pki::STATION_CA) => Err(ProfileProblem::StationIssuer),
        Some(ca) => Err(ProfileProblem::DeviceIssuer { ca: ca.to_owned() }),
        None => Ok(()),
    }
}

/// Checks the rest of the operator profile of a DER certificate: no device identity, an end
/// entity, the operator policy (the chain is checked by `operator::OperatorTrust`).
pub fn check(der: &[u8]) -> Result<(), ProfileProblem> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| ProfileProblem::Unparsable)?;
    if let Some(what) = device_identity(&cert) {
        return Err(ProfileProblem::DeviceIdentity(what));
    }
    if cert.is_ca() {
        return Err(ProfileProblem::Ca);
    }
    if !is_operator_certificate(&cert) {
        return Err(ProfileProblem::NoOperatorPolicy);
    }
    Ok(())
}

/// True when the certificate carries the operator certificate policy.
pub fn is_operator_certificate(cert: &X509Certificate<'_>) -> bool {
    cert.extensions()
        .iter()
        .any(|extension| match extension.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => policies
                .iter()
                .any(|policy| is_dotted(&policy.policy_id, OPERATOR_POLICY)),
            _ => false,
        })
}

/// The device identity a certificate carries, if any.
fn device_identity(cert: &X509Certificate<'_>) -> Option<&'static str> {
    let hardware_module_name = cert.extensions().iter().any(|extension| {
        matches!(extension.parsed_extension(), ParsedExtension::SubjectAlternativeName(san)
            if san.general_names.iter().any(|name| matches!(name,
                GeneralName::OtherName(oid, _) if oid.as_bytes() == HARDWARE_MODULE_NAME.as_bytes())))
    });
    if hardware_module_name {
        return Some("a HardwareModuleName in the subjectAltName");
    }
    let serial_number = cert
        .subject()
        .iter_attributes()
        .any(|attribute| is_dotted(attribute.attr_type(), "2.5.4.5"));
    serial_number.then_some("a device serialNumber in the subject")
}

#[cfg(test)]
mod tests {
    use super::{OPERATOR_POLICY, REFUSED_ON_EST};

    #[test]
    fn the_est_refusal_names_the_operator_policy() {
        assert!(REFUSED_ON_EST.contains(OPERATOR_POLICY), "{REFUSED_ON_EST}");
    }
}
