//! What the hospital reads from a verified client certificate: the device serial, CN, product
//! URI and level policy OID; and the accepted level OIDs, parsed at the boundary.

use std::fmt;
use std::str::FromStr;

use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_SERIALNUMBER};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::decision::RejectReason;
use crate::error::HospitalError;

/// A certificate policy OID in dotted-decimal form (`1.3.6.1.4.1.32473.7.1.3`), checked when
/// parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyOid(String);

impl PolicyOid {
    /// The dotted-decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PolicyOid {
    type Err = HospitalError;

    fn from_str(text: &str) -> Result<PolicyOid, HospitalError> {
        let arcs: Vec<&str> = text.split('.').collect();
        let arc_ok = |arc: &&str| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc.len() == 1 || !arc.starts_with('0'))
        };
        if arcs.len() >= 2 && arcs.iter().all(arc_ok) && matches!(arcs[0], "0" | "1" | "2") {
            Ok(PolicyOid(text.to_owned()))
        } else {
            Err(HospitalError::InvalidPolicyOid(text.to_owned()))
        }
    }
}

impl fmt::Display for PolicyOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of an accepted device, read from its verified leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The device serial: the subject serialNumber attribute (OID 2.5.4.5), which an asset
    /// inventory matches on. Not the certificate's serial number.
    pub serial: String,
    /// The subject common name (`<model>-<serial>`), if present.
    pub common_name: Option<String>,
    /// The product-instance URI from the subjectAltName, if present.
    pub product_uri: Option<String>,
    /// The level policy OID: the first of the certificate's policies that is in the accepted set.
    pub policy_oid: PolicyOid,
}

impl DeviceIdentity {
    /// Reads the identity from a leaf certificate that rustls has already verified, and checks
    /// that it asserts one of the `accepted` level policy OIDs.
    pub fn check(leaf_der: &[u8], accepted: &[PolicyOid]) -> Result<DeviceIdentity, RejectReason> {
        let (_, cert) = X509Certificate::from_der(leaf_der)
            .map_err(|e| RejectReason::Other(format!("unreadable client certificate: {e}")))?;
        let presented = policy_oids(&cert);
        let Some(policy_oid) = accepted
            .iter()
            .find(|oid| presented.iter().any(|p| p == oid.as_str()))
        else {
            return Err(RejectReason::WrongLevel {
                presented,
                accepted: accepted.to_vec(),
            });
        };
        let serial =
            first_attribute(&cert, &OID_X509_SERIALNUMBER).ok_or(RejectReason::NoDeviceSerial)?;
        Ok(DeviceIdentity {
            serial,
            common_name: first_attribute(&cert, &OID_X509_COMMON_NAME),
            product_uri: product_uri(&cert),
            policy_oid: policy_oid.clone(),
        })
    }
}

/// `serial=IP20000001 cn=IP200-IP20000001 product=https://… policy=1.3.6.1.4.1.32473.7.1.1`
impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serial={}", self.serial)?;
        if let Some(cn) = &self.common_name {
            write!(f, " cn={cn}")?;
        }
        if let Some(uri) = &self.product_uri {
            write!(f, " product={uri}")?;
        }
        write!(f, " policy={}", self.policy_oid)
    }
}

/// Every certificatePolicies OID of the certificate, dotted decimal (sanitised for logs).
fn policy_oids(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .filter_map(|ext| match ext.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => Some(policies),
            _ => None,
        })
        .flatten()
        .map(|policy| loggable(&policy.policy_id.to_id_string()))
        .collect()
}

fn first_attribute(cert: &X509Certificate<'_>, oid: &Oid<'_>) -> Option<String> {
    cert.subject()
        .iter_by_oid(oid)
        .find_map(|attr| attr.as_str().ok())
        .map(loggable)
}

fn product_uri(cert: &X509Certificate<'_>) -> Option<String> {
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some(loggable(uri)),
        _ => None,
    })
}

/// Certificate text goes into log lines and HTTP bodies: escape control characters so a crafted
/// name cannot forge a line.
fn loggable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    const BASIC: &str = "1.3.6.1.4.1.32473.7.1.1";
    const HIGH: &str = "1.3.6.1.4.1.32473.7.1.3";

    /// The committed example Basic device (certs-example/device-basic-IP20000001.pem).
    fn example_device() -> CertificateDer<'static> {
        let pem = include_bytes!("../../device-basic-IP20000001.pem");
        CertificateDer::from_pem_slice(pem).unwrap()
    }

    #[test]
    fn example_high_device_at_high_is_read() {
        let pem = include_bytes!("../../device-high-VT90000001.pem");
        let der = CertificateDer::from_pem_slice(pem).unwrap();
        let accepted = [HIGH.parse().unwrap()];
        let identity = DeviceIdentity::check(&der, &accepted).unwrap();
        assert_eq!(identity.serial, "VT90000001");
        assert_eq!(identity.policy_oid.as_str(), HIGH);
    }

    #[test]
    fn policy_oids_are_parsed_at_the_boundary() {
        for (text, ok) in [
            (BASIC, true),
            ("2.5", true),
            ("0.0", true),
            ("1", false),
            ("3.1", false),
            ("1..2", false),
            ("1.2.", false),
            ("1.02", false),
            ("1.2.a", false),
            (" 1.2", false),
            ("", false),
        ] {
            assert_eq!(text.parse::<PolicyOid>().is_ok(), ok, "{text:?}");
        }
    }

    #[test]
    fn example_device_at_basic_is_read() {
        let accepted = [HIGH.parse().unwrap(), BASIC.parse().unwrap()];
        let identity = DeviceIdentity::check(&example_device(), &accepted).unwrap();
        assert_eq!(identity.serial, "IP20000001");
        assert_eq!(identity.common_name.as_deref(), Some("IP200-IP20000001"));
        assert_eq!(identity.policy_oid.as_str(), BASIC);
        let uri = identity.product_uri.as_deref().unwrap();
        assert!(
            uri.starts_with("https://") && uri.ends_with("/IP20000001"),
            "{uri}"
        );
        let line = identity.to_string();
        assert!(
            line.starts_with("serial=IP20000001 cn=IP200-IP20000001 product=https://")
                && line.ends_with(" policy=1.3.6.1.4.1.32473.7.1.1"),
            "{line}"
        );
    }

    #[test]
    fn example_device_at_high_only_is_wrong_level() {
        let accepted = vec![HIGH.parse::<PolicyOid>().unwrap()];
        match DeviceIdentity::check(&example_device(), &accepted) {
            Err(RejectReason::WrongLevel {
                presented,
                accepted: listed,
            }) => {
                assert!(presented.iter().any(|p| p == BASIC), "{presented:?}");
                assert_eq!(listed, accepted);
            }
            other => panic!("expected WrongLevel, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_other() {
        let accepted = [BASIC.parse().unwrap()];
        assert!(matches!(
            DeviceIdentity::check(b"not a certificate", &accepted),
            Err(RejectReason::Other(_))
        ));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(loggable("IP2\nrejected: x"), "IP2\\nrejected: x");
        assert_eq!(loggable("IP20000001"), "IP20000001");
    }
}
