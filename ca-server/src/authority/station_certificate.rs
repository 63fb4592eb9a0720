//! Builds a manufacturing station's certificate (docs/PROFILE.md §3.4) from the station record and a
//! verified key, signed by the station CA.

use iomt_core::extensions::{authority_info_access, certificate_policies, key_identifier};
use iomt_core::identity::Identity;
use iomt_core::policy::SerialNumberRules;
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyUsagePurpose, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certificate::{BuildError, SignedCertificate, public_key_bits};
use crate::pki::{IssuingCa, PublicUrls, STATION_POLICY_OID, issuance_serial};

/// A station certificate lives at most a year (docs/PROFILE.md §3.4).
pub const STATION_VALIDITY: Duration = Duration::days(365);

/// How far notBefore is set back to tolerate station clock skew.
const BACKDATE: Duration = Duration::minutes(5);

/// The subject a station certificate carries: C and O of the station CA, CN = station name.
/// As an [`Identity`] so the CSR check shared with devices applies (serialNumber may repeat the
/// name, as the enrollment client writes it).
pub fn station_identity(station_ca: &IssuingCa, name: &str) -> Identity {
    let (country, organization) = X509Certificate::from_der(&station_ca.cert_der)
        .map(|(_, ca)| {
            let first = |values: Vec<String>| values.into_iter().next().unwrap_or_default();
            (
                first(
                    ca.subject()
                        .iter_country()
                        .filter_map(|a| a.as_str().ok().map(str::to_owned))
                        .collect(),
                ),
                first(
                    ca.subject()
                        .iter_organization()
                        .filter_map(|a| a.as_str().ok().map(str::to_owned))
                        .collect(),
                ),
            )
        })
        .unwrap_or_default();
    Identity {
        country,
        organization,
        common_name: name.to_owned(),
        serial_number: name.to_owned(),
        hardware_module_name: None,
        uri: None,
        permanent_identifier: None,
        attested_policies: Vec::new(),
    }
}

/// Signs a station certificate for `spki_der` (already verified by the caller).
pub fn build_station_certificate(
    identity: &Identity,
    spki_der: &[u8],
    station_ca: &IssuingCa,
    urls: &PublicUrls,
    now: OffsetDateTime,
) -> Result<SignedCertificate, BuildError> {
    let public_key = SubjectPublicKeyInfo::from_der(spki_der).map_err(BuildError::Key)?;
    let mut params = CertificateParams::default();
    let serial = issuance_serial(now, SerialNumberRules::FLOOR_RANDOM_BITS)?;
    let serial_hex = hex::encode(serial.as_ref());
    params.serial_number = Some(serial);
    let not_before = now - BACKDATE;
    let not_after = (now + STATION_VALIDITY).min(station_ca.not_after);
    if not_after <= now {
        return Err(BuildError::NoValidityLeft);
    }
    params.not_before = not_before;
    params.not_after = not_after;

    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CountryName,
        DnValue::PrintableString(
            identity
                .country
                .as_str()
                .try_into()
                .map_err(BuildError::Key)?,
        ),
    );
    dn.push(
        DnType::OrganizationName,
        DnValue::Utf8String(identity.organization.clone()),
    );
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(identity.common_name.clone()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method =
        KeyIdMethod::PreSpecified(key_identifier(&public_key_bits(spki_der)));
    let ca_name = station_ca.name.as_str();
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![urls.crl(ca_name)],
    }];
    params.custom_extensions = vec![
        CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            certificate_policies(&[STATION_POLICY_OID.to_owned()])?,
        ),
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            authority_info_access(None, &urls.ca_cert(ca_name))?,
        ),
    ];
    let cert = params
        .signed_by(&public_key, &station_ca.issuer)
        .map_err(BuildError::Sign)?;
    Ok(SignedCertificate {
        der: cert.der().to_vec(),
        serial_hex,
        not_before,
        not_after,
    })
}
