//! Test PKI: a small rcgen issuing CA and a fully conformant pump certificate request.

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SigningKey,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::extensions::{
    authority_info_access, certificate_policies, key_identifier, subject_alt_name,
};
use crate::identity::{DeviceRecord, Identity};
use crate::lint::{Finding, LintInput, lint_device_certificate};
use crate::policy::{Level, Policy, PolicySet, shipped_sources};

pub(super) const NOW: OffsetDateTime = datetime!(2026-01-15 12:00:00 UTC);

pub(super) const OID_SAN: &[u64] = &[2, 5, 29, 17];
pub(super) const OID_CP: &[u64] = &[2, 5, 29, 32];
pub(super) const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
pub(super) const OID_KU: &[u64] = &[2, 5, 29, 15];
pub(super) const OID_SKI: &[u64] = &[2, 5, 29, 14];
pub(super) const OID_MASA_URL: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 32];
pub(super) const OID_X520_SERIAL: &[u64] = &[2, 5, 4, 5];

/// The issuing CA: its parameters, key and self-signed certificate.
pub(super) struct Ca {
    pub(super) params: CertificateParams,
    pub(super) key: KeyPair,
    pub(super) der: Vec<u8>,
}

impl Ca {
    /// A Basic issuing CA (P-256, pathLen 0) asserting `policy_oids`.
    pub(super) fn new(
        policy_oids: &[String],
        customize: impl FnOnce(&mut CertificateParams),
    ) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("US"));
        dn.push(DnType::OrganizationName, "IoMT Test PKI");
        dn.push(DnType::CommonName, "IoMT Basic Issuing CA T1");
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&[0x11; 16]));
        params.not_before = NOW - Duration::days(365);
        params.not_after = NOW + Duration::days(5 * 365);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(key_identifier(key.public_key_raw()));
        params.custom_extensions = vec![extension(
            OID_CP,
            certificate_policies(policy_oids).expect("CA policies"),
        )];
        customize(&mut params);
        let der = params
            .self_signed(&key)
            .expect("CA certificate")
            .der()
            .to_vec();
        Ca { params, key, der }
    }
}

/// One device certificate request: what the CA would sign, and what the linter gets.
pub(super) struct Case {
    pub(super) policy: Policy,
    pub(super) identity: Identity,
    pub(super) key: KeyPair,
    pub(super) params: CertificateParams,
    pub(super) ca: Ca,
}

impl Case {
    /// The shipped `example-infusion-pump` product, a P-256 device key, a conformant certificate.
    pub(super) fn new() -> Case {
        Case::with_key(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"))
    }

    pub(super) fn with_key(key: KeyPair) -> Case {
        let set = PolicySet::from_sources(shipped_sources()).expect("shipped policies");
        let policy = set.product("example-infusion-pump").expect("pump").clone();
        let record = DeviceRecord {
            serial: "IP20000042".into(),
            gtin: "00850000000017".into(),
        };
        let identity = Identity::build(&policy, &record).expect("identity");
        let params = device_params(&policy, &identity, &key);
        let ca = Ca::new(&set.issuer_policy_oids(Level::Basic), |_| {});
        Case {
            policy,
            identity,
            key,
            params,
            ca,
        }
    }

    /// The device certificate, signed by the case's CA.
    pub(super) fn sign(&self) -> Vec<u8> {
        let issuer = Issuer::from_params(&self.ca.params, &self.ca.key);
        self.sign_with(&self.key, &issuer)
    }

    /// The device certificate for `key`, signed by `issuer`.
    pub(super) fn sign_with(
        &self,
        key: &impl PublicKeyData,
        issuer: &Issuer<'_, impl SigningKey>,
    ) -> Vec<u8> {
        let cert = self.params.signed_by(key, issuer).expect("sign");
        cert.der().to_vec()
    }

    /// Lints `der` against the case's CA certificate, policy and identity.
    pub(super) fn lint(&self, der: &[u8]) -> Vec<Finding> {
        lint_device_certificate(&LintInput {
            certificate_der: der,
            issuer_der: &self.ca.der,
            policy: &self.policy,
            identity: &self.identity,
            now: NOW,
            verify_signature: true,
        })
    }

    /// Asserts that the case's certificate breaks exactly the rules in `expected`.
    pub(super) fn assert_rules(&self, expected: &[&str]) {
        self.assert_rules_of(&self.sign(), expected);
    }

    /// Asserts that every finding on `der` is one of `expected` and that each of them occurs.
    pub(super) fn assert_rules_of(&self, der: &[u8], expected: &[&str]) {
        let findings = self.lint(der);
        let mut rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        let shown: Vec<String> = findings.iter().map(Finding::to_string).collect();
        assert_eq!(rules, expected, "findings: {shown:#?}");
    }

    pub(super) fn replace_extension(&mut self, oid: &[u64], content: Vec<u8>, critical: bool) {
        self.remove_extension(oid);
        let mut ext = extension(oid, content);
        ext.set_criticality(critical);
        self.params.custom_extensions.push(ext);
    }

    pub(super) fn remove_extension(&mut self, oid: &[u64]) {
        self.params
            .custom_extensions
            .retain(|ext| !ext.oid_components().eq(oid.iter().copied()));
    }
}

pub(super) fn printable(text: &str) -> DnValue {
    DnValue::PrintableString(text.try_into().expect("printable"))
}

pub(super) fn extension(oid: &[u64], content: Vec<u8>) -> CustomExtension {
    CustomExtension::from_oid_content(oid, content)
}

/// Everything docs/PROFILE.md §2 asks of a Basic pump certificate.
fn device_params(policy: &Policy, identity: &Identity, key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(&[
        0x5a, 0x13, 0x9c, 0x02, 0x77, 0xe1, 0x40, 0x3b, 0x8d, 0x21, 0x6f, 0xa4, 0x09, 0xc3, 0x55,
        0x1e,
    ]));
    params.not_before = NOW;
    params.not_after = NOW + Duration::days(365);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable(&identity.country));
    dn.push(DnType::OrganizationName, identity.organization.as_str());
    dn.push(DnType::CommonName, identity.common_name.as_str());
    dn.push(
        DnType::CustomDnType(OID_X520_SERIAL.to_vec()),
        printable(&identity.serial_number),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(key.public_key_raw()));
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://crl.iomt.example/basic-t1.crl".into()],
    }];
    let san = subject_alt_name(
        identity.hardware_module_name.as_ref(),
        identity.uri.as_deref(),
    )
    .expect("SAN");
    let policies = certificate_policies(&policy.extensions.certificate_policies.required_oids)
        .expect("policies");
    let aia = authority_info_access(None, "http://aia.iomt.example/basic-t1.cer").expect("AIA");
    params.custom_extensions = vec![
        extension(OID_SAN, san),
        extension(OID_CP, policies),
        extension(OID_AIA, aia),
    ];
    params
}

pub(super) fn set_sunset(policy: &mut Policy, date: &str) {
    for entry in &mut policy.keys.allowed {
        entry.sunset = date.parse().expect("TOML date");
    }
}
