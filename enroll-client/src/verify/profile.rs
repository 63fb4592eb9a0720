//! The level and profile step of `verify`: the level's policy OID, where the key is held, and
//! the level's lint rules applied to the certificate's own identity.

use iomt_core::extensions::hardware_module_name_from_other_name;
use iomt_core::identity::{HardwareModuleName, Identity, PermanentIdentifier};
use iomt_core::lint::{LintInput, lint_device_certificate};
use iomt_core::oids::{
    ATTESTATION_VERIFIED_NUMBERING, TCG_CAP_VERIFIED_TPM_RESIDENCY, TCG_HW_TYPE_TPM2,
    TCG_PERMANENT_IDENTIFIER_ASSIGNER,
};
use iomt_core::policy::Policy;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use super::hex;

pub(super) fn policy_oids(cert: &X509Certificate<'_>) -> Vec<String> {
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
pub(super) fn key_protection(cert: &X509Certificate<'_>, oids: &[String]) -> String {
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
pub(super) fn conformance(
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
