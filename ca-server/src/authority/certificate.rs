//! Builds a device certificate from policy + identity + verified key, and signs it.

use iomt_core::extensions::{
    authority_info_access, certificate_policies, key_identifier, masa_url, subject_alt_name_with,
};
use iomt_core::identity::Identity;
use iomt_core::policy::{Policy, Presence};
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyUsagePurpose, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime, Time};

use crate::pki::{IssuingCa, PublicUrls, issuance_serial};

/// How far notBefore is set back to tolerate a device clock that runs slow, capped by the
/// policy's `max_backdate_seconds` (one day at every level; a product may narrow it). An hour
/// covers the drift of a device that lost its time source for weeks, at a negligible cost in
/// lifetime (the lifetime counts from notBefore).
const BACKDATE: Duration = Duration::hours(1);

/// Why a certificate could not be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the policy leaves no validity: the key sunset or the issuing CA ends before now")]
    NoValidityLeft,
    #[error("subject key: {0}")]
    Key(rcgen::Error),
    #[error("signing failed: {0}")]
    Sign(rcgen::Error),
    #[error("extension encoding failed: {0}")]
    Extension(#[from] iomt_core::extensions::ExtensionError),
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
}

/// A signed certificate and the facts the registry records about it.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    pub der: Vec<u8>,
    /// Lowercase hex of the serial.
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Everything a device certificate is made from.
pub struct CertificateInputs<'a> {
    pub policy: &'a Policy,
    pub identity: &'a Identity,
    pub spki_der: &'a [u8],
    /// The subject key type's sunset (docs/PROFILE.md §2.1).
    pub sunset: time::Date,
    pub issuer: &'a IssuingCa,
    pub urls: &'a PublicUrls,
    pub now: OffsetDateTime,
}

/// Builds every field from the policy and identity; only the public key comes from the CSR.
pub fn build_and_sign(inputs: &CertificateInputs<'_>) -> Result<SignedCertificate, BuildError> {
    let CertificateInputs {
        policy,
        identity,
        issuer,
        urls,
        now,
        ..
    } = *inputs;
    let public_key = SubjectPublicKeyInfo::from_der(inputs.spki_der).map_err(BuildError::Key)?;
    let mut params = CertificateParams::default();
    let serial = issuance_serial(now, policy.serial_number.min_random_bits)?;
    let serial_hex = hex::encode(serial.as_ref());
    params.serial_number = Some(serial);

    let backdate = BACKDATE.min(Duration::seconds(i64::from(
        policy.validity.max_backdate_seconds,
    )));
    let not_before = now - backdate;
    let sunset_end = inputs
        .sunset
        .with_time(Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT))
        .assume_utc();
    let not_after = (not_before + Duration::days(i64::from(policy.validity.max_days)))
        .min(issuer.not_after)
        .min(sunset_end);
    if not_after <= now {
        return Err(BuildError::NoValidityLeft);
    }
    params.not_before = not_before;
    params.not_after = not_after;

    params.distinguished_name = subject(identity)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = policy
        .extensions
        .extended_key_usage
        .required
        .iter()
        .filter_map(|name| match name.as_str() {
            "id-kp-clientAuth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "id-kp-serverAuth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            _ => None,
        })
        .collect();
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method =
        KeyIdMethod::PreSpecified(key_identifier(&public_key_bits(inputs.spki_der)));
    let ca_name = issuer.name.as_str();
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![urls.crl(ca_name)],
    }];

    let ocsp = (policy.extensions.authority_info_access.ocsp_presence != Presence::Forbidden)
        .then(|| urls.ocsp(ca_name));
    let mut extensions = vec![
        CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            subject_alt_name_with(
                identity.hardware_module_name.as_ref(),
                identity.permanent_identifier.as_ref(),
                identity.uri.as_deref(),
            )?,
        ),
        CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            certificate_policies(&policy_oids(policy, identity))?,
        ),
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            authority_info_access(ocsp.as_deref(), &urls.ca_cert(ca_name))?,
        ),
    ];
    let masa = &policy.extensions.masa_url;
    if let (Presence::Required | Presence::Recommended, Some(value)) = (masa.presence, &masa.value)
    {
        extensions.push(CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 32],
            masa_url(value)?,
        ));
    }
    params.custom_extensions = extensions;

    let cert = params
        .signed_by(&public_key, &issuer.issuer)
        .map_err(BuildError::Sign)?;
    Ok(SignedCertificate {
        der: cert.der().to_vec(),
        serial_hex,
        not_before,
        not_after,
    })
}

/// The policy's required OIDs, then those the identity earned by attestation.
fn policy_oids(policy: &Policy, identity: &Identity) -> Vec<String> {
    let mut oids = policy.extensions.certificate_policies.required_oids.clone();
    for earned in &identity.attested_policies {
        if !oids.contains(earned) {
            oids.push(earned.clone());
        }
    }
    oids
}

fn subject(identity: &Identity) -> Result<DistinguishedName, BuildError> {
    let mut dn = DistinguishedName::new();
    let printable = |text: &str| -> Result<DnValue, BuildError> {
        Ok(DnValue::PrintableString(
            text.try_into().map_err(BuildError::Key)?,
        ))
    };
    dn.push(DnType::CountryName, printable(&identity.country)?);
    dn.push(
        DnType::OrganizationName,
        DnValue::Utf8String(identity.organization.clone()),
    );
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(identity.common_name.clone()),
    );
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        printable(&identity.serial_number)?,
    );
    Ok(dn)
}

/// The subjectPublicKey BIT STRING contents of a DER SubjectPublicKeyInfo.
pub(super) fn public_key_bits(spki_der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map(|(_, spki)| spki.subject_public_key.data.to_vec())
        .unwrap_or_default()
}
