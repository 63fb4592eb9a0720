//! What a device's certificate must say, computed from its product policy and registration
//! record (never from the CSR): docs/PROFILE.md §2.6–§2.7.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::Regex;

use crate::policy::template::substitute;
use crate::policy::{Policy, Presence};

/// The registration record fields that feed a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device serial as on its label (X520SerialNumber).
    pub serial: String,
    /// The GTIN (UDI-DI) of the device's product variant.
    pub gtin: String,
}

/// RFC 4108 HardwareModuleName values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardwareModuleName {
    /// Dotted OID of the hardware type.
    pub hw_type: String,
    /// The module serial, ASCII bytes.
    pub hw_serial: Vec<u8>,
}

/// RFC 4043 permanentIdentifier values (a TPM's: its EK certificate digest, TCG assigner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentIdentifier {
    /// identifierValue (UTF8String).
    pub value: String,
    /// Dotted OID of the assigner.
    pub assigner: String,
}

/// What a verified TPM 2.0 key attestation establishes about the module holding the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmResidency {
    /// TCG hwSerialNum derived from the EK certificate
    /// (`<manufacturer>:<EK AKI hex>:<EK serial hex>`).
    pub hw_serial: String,
    /// SHA-256 of the EK certificate (DER).
    pub ek_certificate_sha256: Vec<u8>,
}

/// The subject and SAN values a device certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub country: String,
    pub organization: String,
    pub common_name: String,
    pub serial_number: String,
    pub hardware_module_name: Option<HardwareModuleName>,
    pub uri: Option<String>,
    /// The TPM's permanentIdentifier, for a TPM-attested key whose policy allows it.
    pub permanent_identifier: Option<PermanentIdentifier>,
    /// Optional certificatePolicies OIDs this issuance earned by verified attestation (the
    /// attestation marker, the TCG residency OIDs), asserted besides the policy's required ones.
    pub attested_policies: Vec<String>,
}

/// Why an identity cannot be built for a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("subject {attribute} `{value}` is longer than {max} characters")]
    TooLong {
        attribute: &'static str,
        value: String,
        max: usize,
    },
    #[error("subject {attribute} `{value}` does not match the policy pattern `{pattern}`")]
    PatternMismatch {
        attribute: &'static str,
        value: String,
        pattern: String,
    },
    #[error("policy `{policy}` is a level, not a product: it binds no manufacturer or device")]
    NotAProduct { policy: String },
    #[error("template `{template}` leaves `{{{variable}}}` unfilled")]
    Unfilled { template: String, variable: String },
    #[error("product URI `{uri}` uses a scheme the policy does not allow ({allowed})")]
    UriScheme { uri: String, allowed: String },
}

/// Syntax of a device serial at every level (docs/PROFILE.md §2.6).
pub const SERIAL_SYNTAX: &str = "^[A-Za-z0-9][A-Za-z0-9-]{3,63}$";

/// Checks a serial against the profile syntax and the product's own pattern.
pub fn check_serial(policy: &Policy, serial: &str) -> Result<(), IdentityError> {
    let mut patterns = vec![SERIAL_SYNTAX];
    if let Some(pattern) = &policy.subject.serial_number.pattern {
        patterns.push(pattern);
    }
    if let Some(device) = &policy.device {
        patterns.push(&device.serial_pattern);
    }
    for pattern in patterns {
        // Patterns were validated by the loader; one that does not compile matches nothing.
        let matches = compiled(pattern).is_some_and(|re| re.is_match(serial));
        if !matches {
            return Err(IdentityError::PatternMismatch {
                attribute: "serialNumber",
                value: serial.to_owned(),
                pattern: pattern.to_owned(),
            });
        }
    }
    Ok(())
}

/// The compiled form of a policy pattern. Policies hold a handful of patterns that are matched
/// on every enrollment, so each is compiled once per process (compiling costs far more than
/// matching).
/// Shared behind an `Arc`: a cloned `Regex` would start with empty match caches every time.
fn compiled(pattern: &str) -> Option<Arc<Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().ok()?;
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

impl Identity {
    /// Builds the identity of `record` under the product `policy`.
    pub fn build(policy: &Policy, record: &DeviceRecord) -> Result<Identity, IdentityError> {
        let (Some(manufacturer), Some(device)) = (&policy.manufacturer, &policy.device) else {
            return Err(IdentityError::NotAProduct {
                policy: policy.policy.id.clone(),
            });
        };
        check_serial(policy, &record.serial)?;
        let fill = |template: &str| -> Result<String, IdentityError> {
            let value = substitute(template, |name| match name {
                "manufacturer.legal_name" => Some(manufacturer.legal_name.as_str()),
                "manufacturer.country" => Some(manufacturer.country.as_str()),
                "manufacturer.id_domain" => Some(manufacturer.id_domain.as_str()),
                "device.serial" => Some(record.serial.as_str()),
                "device.model_code" => Some(device.model_code.as_str()),
                "device.gtin" => Some(record.gtin.as_str()),
                "device.hw_type_oid" => Some(device.hw_type_oid.as_str()),
                _ => None,
            });
            match crate::policy::template::variables(&value).first() {
                Some(variable) => Err(IdentityError::Unfilled {
                    template: template.to_owned(),
                    variable: (*variable).to_owned(),
                }),
                None => Ok(value),
            }
        };
        let subject = &policy.subject;
        let mut attributes = Vec::with_capacity(4);
        for (name, rule) in [
            ("C", &subject.country),
            ("O", &subject.organization),
            ("CN", &subject.common_name),
            ("serialNumber", &subject.serial_number),
        ] {
            let value = fill(&rule.value)?;
            if value.chars().count() > rule.max_length {
                return Err(IdentityError::TooLong {
                    attribute: name,
                    value,
                    max: rule.max_length,
                });
            }
            if let Some(pattern) = &rule.pattern
                && !compiled(pattern).is_some_and(|re| re.is_match(&value))
            {
                return Err(IdentityError::PatternMismatch {
                    attribute: name,
                    value,
                    pattern: pattern.clone(),
                });
            }
            attributes.push(value);
        }
        let mut attributes = attributes.into_iter();
        let mut next = || attributes.next().unwrap_or_default();
        let (country, organization, common_name, serial_number) = (next(), next(), next(), next());

        let hmn_rule = &policy.san.hardware_module_name;
        let hardware_module_name = match hmn_rule.presence {
            Presence::Forbidden => None,
            _ => Some(HardwareModuleName {
                hw_type: fill(&device.hw_type_oid)?,
                hw_serial: record.serial.as_bytes().to_vec(),
            }),
        };
        let uri_rule = &policy.san.uri;
        let uri = match uri_rule.presence {
            Presence::Forbidden => None,
            _ => {
                let uri = fill(&uri_rule.value)?;
                let scheme = uri.split(':').next().unwrap_or_default();
                if !uri_rule.allowed_schemes.iter().any(|s| s == scheme) {
                    return Err(IdentityError::UriScheme {
                        uri,
                        allowed: uri_rule.allowed_schemes.join(", "),
                    });
                }
                Some(uri)
            }
        };
        Ok(Identity {
            country,
            organization,
            common_name,
            serial_number,
            hardware_module_name,
            uri,
            permanent_identifier: None,
            attested_policies: Vec::new(),
        })
    }

    /// This identity for a key whose residency in a TPM 2.0 was verified (docs/PROFILE.md
    /// §2.7, §2.9), as far as `policy` allows: where the HardwareModuleName allow-list names
    /// the TPM 2.0 hwType `2.23.133.1.2`, the HardwareModuleName names the TPM (hwSerialNum from
    /// the EK certificate) and, unless the policy forbids it, a permanentIdentifier carries the
    /// EK certificate's SHA-256 (hex) with the TCG assigner `2.23.133.12.1`. Each of the
    /// attestation marker (`<arc>.7.2.10`) and the TCG residency OIDs `2.23.133.11.1.1`/`.2`
    /// that the policy lists as optional is asserted as well.
    pub fn with_tpm_residency(mut self, policy: &Policy, tpm: &TpmResidency) -> Identity {
        use crate::oids;
        let hmn = &policy.san.hardware_module_name;
        let tpm_hw_type = hmn.presence != Presence::Forbidden
            && hmn.hw_type_oids.iter().any(|o| o == oids::TCG_HW_TYPE_TPM2);
        if tpm_hw_type {
            self.hardware_module_name = Some(HardwareModuleName {
                hw_type: oids::TCG_HW_TYPE_TPM2.to_owned(),
                hw_serial: tpm.hw_serial.as_bytes().to_vec(),
            });
            if policy.san.permanent_identifier.presence != Presence::Forbidden {
                self.permanent_identifier = Some(PermanentIdentifier {
                    value: hex::encode(&tpm.ek_certificate_sha256),
                    assigner: oids::TCG_PERMANENT_IDENTIFIER_ASSIGNER.to_owned(),
                });
            }
        }
        let cp = &policy.extensions.certificate_policies;
        for oid in attestation_policies(&policy.policy.certificate_policy_oid) {
            if cp.optional_oids.contains(&oid)
                && !cp.required_oids.contains(&oid)
                && !self.attested_policies.contains(&oid)
            {
                self.attested_policies.push(oid);
            }
        }
        self
    }
}

/// The policy OIDs a verified TPM attestation earns under the level `level_oid`: the marker
/// `<arc>.7.2.10` and the TCG residency OIDs (IOMT-POL-06).
pub fn attestation_policies(level_oid: &str) -> Vec<String> {
    use crate::oids;
    let marker =
        level_arc(level_oid).map(|arc| format!("{arc}.{}", oids::ATTESTATION_VERIFIED_NUMBERING));
    marker
        .into_iter()
        .chain([
            oids::TCG_CAP_VERIFIED_TPM_RESIDENCY.to_owned(),
            oids::TCG_CAP_VERIFIED_TPM_FIXED.to_owned(),
        ])
        .collect()
}

/// The arc of a level OID `<arc>.7.1.N` (the numbering every level file keeps).
fn level_arc(level_oid: &str) -> Option<&str> {
    let (rest, level) = level_oid.rsplit_once('.')?;
    level.parse::<u32>().ok()?;
    rest.strip_suffix(".7.1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySet, shipped_sources};

    fn pump() -> Policy {
        let set = PolicySet::from_sources(shipped_sources()).expect("policies");
        set.product("example-infusion-pump").expect("pump").clone()
    }

    fn record(serial: &str) -> DeviceRecord {
        DeviceRecord {
            serial: serial.into(),
            gtin: "00850000000017".into(),
        }
    }

    #[test]
    fn build_fills_subject_and_san_from_the_record() {
        let identity = Identity::build(&pump(), &record("IP20000042")).expect("identity");
        assert_eq!(identity.country, "US");
        assert_eq!(identity.organization, "Example Medical Devices, Inc.");
        assert_eq!(identity.common_name, "IP200-IP20000042");
        assert_eq!(identity.serial_number, "IP20000042");
        let hmn = identity.hardware_module_name.expect("hmn");
        assert_eq!(hmn.hw_type, "1.3.6.1.4.1.32473.98.4.1");
        assert_eq!(hmn.hw_serial, b"IP20000042");
        assert_eq!(
            identity.uri.as_deref(),
            Some("https://id.example-medical.example/01/00850000000017/21/IP20000042")
        );
    }

    #[test]
    fn serial_outside_the_product_pattern_is_rejected() {
        for serial in ["FG50001234", "IP2", "-IP20000042", "IP2000004x"] {
            let err = Identity::build(&pump(), &record(serial)).expect_err(serial);
            assert!(
                matches!(err, IdentityError::PatternMismatch { .. }),
                "{serial}: {err}"
            );
        }
    }
}
