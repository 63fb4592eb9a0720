//! Creates the root, the issuing CAs, the station CA and the TLS certificate; or, under an
//! external root, their keys and the CSRs the offline root signs.

use std::path::Path;

use iomt_core::extensions::{authority_info_access, certificate_policies, key_identifier};
use iomt_core::files::{PUBLIC, write_new};
use iomt_core::policy::{Level, PolicySet};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

use super::audit_signer::{self, AUDIT_SIGNER};
use super::error::PkiError;
use super::external::CsrSet;
use super::keystore::KeyStore;
use super::serial::random_serial;
use super::signer::CaKey;
use super::{PublicUrls, ROOT_CA, STATION_CA, STATION_POLICY_OID, TLS_CERT, issuing_ca_name};

/// What `init` needs to build the hierarchy.
#[derive(Debug, Clone)]
pub struct HierarchyParams {
    /// Operator organization for the CA subjects.
    pub organization: String,
    /// ISO 3166 country of the operator.
    pub country: String,
    /// Marks every CA name as an evaluation CA (placeholder OIDs).
    pub evaluation: bool,
    /// Extra DNS names or IP addresses for the HTTPS listener's certificate.
    pub tls_names: Vec<String>,
    /// Public HTTP base that CRL and AIA URLs point at.
    pub public_url: String,
    /// Leave the root out: write CSRs for an offline root to sign (`ca-server ca import`).
    pub external_root: bool,
}

/// Who signs the subordinate certificates: the root created here, or an offline root (CSRs).
enum Signer<'a> {
    Root(Issuer<'a, &'a CaKey>),
    External(&'a mut CsrSet),
}

/// Writes the whole hierarchy into `dir/ca/` (keys sealed or in the token) and `dir/root.pem`;
/// under an external root, the keys and `dir/csr/` instead.
pub fn create_hierarchy(
    dir: &Path,
    params: &HierarchyParams,
    policies: &PolicySet,
    keys: &mut KeyStore,
) -> Result<(), PkiError> {
    let now = OffsetDateTime::now_utc();
    let urls = PublicUrls::new(&params.public_url);
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).map_err(|e| PkiError::io(&ca_dir, e))?;

    let mut csrs = CsrSet::default();
    let root_key;
    let mut signer = if params.external_root {
        Signer::External(&mut csrs)
    } else {
        root_key = keys.generate(&ca_dir, ROOT_CA, &rcgen::PKCS_ECDSA_P384_SHA384)?;
        let mut root_params = ca_params(params, "IoMT Root CA G1", &root_key, now, 15 * 365)?;
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        let root_cert = root_params.self_signed(&root_key)?;
        write_cert(&ca_dir, ROOT_CA, root_cert.pem().as_bytes())?;
        write_new(&dir.join("root.pem"), root_cert.pem().as_bytes(), PUBLIC)
            .map_err(|e| PkiError::io(&dir.join("root.pem"), e))?;
        Signer::Root(Issuer::new(root_params, &root_key))
    };

    for level in Level::ALL {
        // High devices get a P-384 chain (docs/PROFILE.md §3.3); Basic and Substantial use P-256,
        // which every device TLS stack verifies cheaply.
        let alg = match level {
            Level::High => &rcgen::PKCS_ECDSA_P384_SHA384,
            Level::Basic | Level::Substantial => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let years = match level {
            Level::Basic => 5,
            Level::Substantial => 8,
            Level::High => 10,
        };
        let title = format!("IoMT {} Issuing CA G1", capitalized(level.as_str()));
        let eku = level_ekus(policies, level);
        let policy_oids = policies.issuer_policy_oids(level);
        let key = keys.generate(&ca_dir, issuing_ca_name(level), alg)?;
        issue_sub_ca(
            &ca_dir,
            issuing_ca_name(level),
            &key,
            params,
            &title,
            &mut signer,
            &urls,
            now,
            years,
            eku,
            &policy_oids,
        )?;
    }
    let key = keys.generate(&ca_dir, STATION_CA, &rcgen::PKCS_ECDSA_P256_SHA256)?;
    issue_sub_ca(
        &ca_dir,
        STATION_CA,
        &key,
        params,
        "IoMT Manufacturing Station CA G1",
        &mut signer,
        &urls,
        now,
        5,
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        &[STATION_POLICY_OID.to_owned()],
    )?;
    let tls_key = CaKey::File(Box::new(keys.generate_file(
        &ca_dir,
        TLS_CERT,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )?));
    issue_tls_certificate(&ca_dir, params, &mut signer, &tls_key, &urls, now)?;
    let audit_key = keys.generate(&ca_dir, AUDIT_SIGNER, &rcgen::PKCS_ECDSA_P256_SHA256)?;
    issue_audit_signer(&ca_dir, params, &mut signer, &audit_key, &urls, now)?;
    keys.finish(&ca_dir)?;
    drop(signer);
    if params.external_root {
        csrs.write(dir)?;
    }
    Ok(())
}

pub(super) fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn level_allows_server_auth(policies: &PolicySet, level: Level) -> bool {
    let eku = &policies.level(level).extensions.extended_key_usage;
    eku.required
        .iter()
        .chain(&eku.optional)
        .any(|e| e == "id-kp-serverAuth")
}

/// Subject `C, O, CN` for a CA; evaluation CAs say so in their CN.
fn ca_name(params: &HierarchyParams, title: &str) -> Result<DistinguishedName, PkiError> {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CountryName,
        DnValue::PrintableString(params.country.as_str().try_into()?),
    );
    dn.push(DnType::OrganizationName, params.organization.clone());
    let cn = if params.evaluation {
        format!("{title} EVALUATION")
    } else {
        title.to_owned()
    };
    dn.push(DnType::CommonName, cn);
    Ok(dn)
}

pub(super) fn ca_params(
    params: &HierarchyParams,
    title: &str,
    key: &CaKey,
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateParams, PkiError> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = ca_name(params, title)?;
    ca.serial_number = Some(random_serial()?);
    ca.not_before = now - Duration::minutes(5);
    ca.not_after = now + Duration::days(days);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(key.der_bytes()));
    Ok(ca)
}

#[allow(clippy::too_many_arguments)] // one call per CA; a params struct would only rename these
fn issue_sub_ca(
    ca_dir: &Path,
    name: &str,
    key: &CaKey,
    params: &HierarchyParams,
    title: &str,
    signer: &mut Signer<'_>,
    urls: &PublicUrls,
    now: OffsetDateTime,
    years: i64,
    eku: Vec<ExtendedKeyUsagePurpose>,
    policy_oids: &[String],
) -> Result<(), PkiError> {
    let ca = sub_ca_params(
        params,
        title,
        key,
        now,
        Duration::days(years * 365),
        eku,
        policy_oids,
        urls,
        ROOT_CA,
    )?;
    match signer {
        Signer::Root(root) => {
            let cert = ca.signed_by(key, root)?;
            write_cert(ca_dir, name, cert.pem().as_bytes())
        }
        Signer::External(csrs) => csrs.add(name, &ca, key, years * 365, policy_oids, urls),
    }
}

/// The certificate of an issuing or station CA (docs/PROFILE.md §3.2): pathLen 0, keyCertSign +
/// cRLSign, the level's EKUs and policy OIDs, the CRL DP and AIA of the root generation
/// `root` that signs it.
#[allow(clippy::too_many_arguments)] // the fields of one CA certificate
pub(super) fn sub_ca_params(
    params: &HierarchyParams,
    title: &str,
    key: &CaKey,
    now: OffsetDateTime,
    lifetime: Duration,
    eku: Vec<ExtendedKeyUsagePurpose>,
    policy_oids: &[String],
    urls: &PublicUrls,
    root: &str,
) -> Result<CertificateParams, PkiError> {
    let mut ca = ca_params(params, title, key, now, 0)?;
    ca.not_after = now + lifetime;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.use_authority_key_identifier_extension = true;
    ca.extended_key_usages = eku;
    ca.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![urls.crl(root)],
    }];
    ca.custom_extensions = vec![
        CustomExtension::from_oid_content(&[2, 5, 29, 32], certificate_policies(policy_oids)?),
        // AIA OCSP at the root's responder: relying parties that check every certificate of
        // the chain by OCSP (nginx `ssl_ocsp on`) need it on the CA certificates too.
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            authority_info_access(Some(&urls.ocsp(root)), &urls.ca_cert(root))?,
        ),
    ];
    Ok(ca)
}

/// The EKUs of a level's issuing CA: clientAuth, and serverAuth when the level allows devices
/// to serve TLS.
pub(super) fn level_ekus(policies: &PolicySet, level: Level) -> Vec<ExtendedKeyUsagePurpose> {
    let mut eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if level_allows_server_auth(policies, level) {
        eku.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    eku
}

fn issue_tls_certificate(
    ca_dir: &Path,
    params: &HierarchyParams,
    signer: &mut Signer<'_>,
    key: &CaKey,
    urls: &PublicUrls,
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(params.tls_names.iter().cloned());
    names.dedup();
    let mut tls = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, params.organization.clone());
    dn.push(DnType::CommonName, "IoMT CA EST server");
    tls.distinguished_name = dn;
    tls.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    tls.serial_number = Some(random_serial()?);
    tls.not_before = now - Duration::minutes(5);
    tls.not_after = now + Duration::days(397);
    tls.is_ca = IsCa::ExplicitNoCa;
    tls.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    tls.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    tls.use_authority_key_identifier_extension = true;
    tls.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(key.der_bytes()));
    match signer {
        Signer::Root(root) => {
            let cert = tls.signed_by(key, root)?;
            write_cert(ca_dir, TLS_CERT, cert.pem().as_bytes())
        }
        Signer::External(csrs) => csrs.add(TLS_CERT, &tls, key, 397, &[], urls),
    }
}

/// The audit key's certificate (see `audit_signer`), signed by the root like the TLS one.
fn issue_audit_signer(
    ca_dir: &Path,
    params: &HierarchyParams,
    signer: &mut Signer<'_>,
    key: &CaKey,
    urls: &PublicUrls,
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    let subject = ca_name(params, "IoMT Audit Checkpoint Signer G1")?;
    let audit = audit_signer::certificate_params(subject, key, now)?;
    match signer {
        Signer::Root(root) => {
            let cert = audit.signed_by(key, root)?;
            write_cert(ca_dir, AUDIT_SIGNER, cert.pem().as_bytes())
        }
        Signer::External(csrs) => csrs.add(
            AUDIT_SIGNER,
            &audit,
            key,
            audit_signer::AUDIT_SIGNER_DAYS,
            &[],
            urls,
        ),
    }
}

fn write_cert(ca_dir: &Path, name: &str, cert_pem: &[u8]) -> Result<(), PkiError> {
    let cert_path = ca_dir.join(format!("{name}.crt.pem"));
    write_new(&cert_path, cert_pem, PUBLIC).map_err(|e| PkiError::io(&cert_path, e))
}
