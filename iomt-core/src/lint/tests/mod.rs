//! The linter against a small rcgen PKI: a conformant certificate has no findings, and each test
//! makes one change and expects exactly the rule that change breaks.

mod fixture;

use der::{Decode, Encode};
use rcgen::{
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use time::Duration;
use time::macros::datetime;

use crate::extensions::{
    authority_info_access, certificate_policies, key_identifier, masa_url, subject_alt_name,
};
use crate::lint::{Finding, LintInput, lint_device_certificate};
use crate::policy::Presence;
use fixture::{
    Ca, Case, NOW, OID_AIA, OID_CP, OID_KU, OID_MASA_URL, OID_SAN, OID_SKI, OID_X520_SERIAL,
    extension, set_sunset,
};

#[test]
fn conformant_certificate_has_no_findings() {
    Case::new().assert_rules(&[]);
}

#[test]
fn conformant_certificate_with_a_p384_key_has_no_findings() {
    Case::with_key(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key"))
        .assert_rules(&[]);
}

#[test]
fn finding_displays_rule_then_message() {
    let finding = Finding {
        rule: "IOMT-SUB-01",
        message: "subject is `C, O`".into(),
    };
    assert_eq!(finding.to_string(), "IOMT-SUB-01: subject is `C, O`");
}

#[test]
fn unparsable_certificate_or_issuer_is_reported_once_as_enc_03() {
    let case = Case::new();
    let good = case.sign();
    for (certificate_der, issuer_der) in [
        (&b"not a certificate"[..], &case.ca.der[..]),
        (&good[..], &b"\x30\x03\x02\x01"[..]),
        (&[good.as_slice(), &[0]].concat()[..], &case.ca.der[..]),
    ] {
        let findings = lint_device_certificate(&LintInput {
            certificate_der,
            issuer_der,
            policy: &case.policy,
            identity: &case.identity,
            now: NOW,
            verify_signature: true,
        });
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "IOMT-ENC-03");
    }
}

#[test]
fn duplicate_extension_is_reported_as_enc_03() {
    let mut case = Case::new();
    let aia = authority_info_access(None, "http://aia.iomt.example/other.cer").expect("AIA");
    case.params.custom_extensions.push(extension(OID_AIA, aia));
    case.assert_rules(&["IOMT-ENC-03"]);
}

#[test]
fn four_octet_serial_is_reported_as_ser_02() {
    let mut case = Case::new();
    case.params.serial_number = Some(SerialNumber::from_slice(&[0x12, 0x34, 0x56, 0x78]));
    case.assert_rules(&["IOMT-SER-02"]);
}

#[test]
fn ed25519_key_is_reported_as_key_01() {
    let case = Case::with_key(KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key"));
    case.assert_rules(&["IOMT-KEY-01"]);
}

#[test]
fn ec_point_off_the_curve_is_reported_as_key_02() {
    /// A P-256 "public key" that is not a point on the curve.
    struct OffCurve([u8; 65]);
    impl PublicKeyData for OffCurve {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P256_SHA256
        }
    }
    let mut point = [0x01; 65];
    point[0] = 0x04;
    let key = OffCurve(point);
    let mut case = Case::new();
    case.params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(&key.0));
    let issuer = Issuer::from_params(&case.ca.params, &case.ca.key);
    case.assert_rules_of(&case.sign_with(&key, &issuer), &["IOMT-KEY-02"]);
}

#[test]
fn validity_of_400_days_is_reported_as_val_01() {
    let mut case = Case::new();
    case.params.not_after = NOW + Duration::days(400);
    case.assert_rules(&["IOMT-VAL-01"]);
}

#[test]
fn no_expiry_is_reported_as_val_02() {
    let mut case = Case::new();
    // Lift every other cap so that only the 9999 rule remains.
    case.policy.validity.max_days = u32::MAX;
    set_sunset(&mut case.policy, "9999-12-31");
    case.ca = Ca::new(
        &case.policy.extensions.certificate_policies.required_oids,
        |ca| {
            ca.not_after = datetime!(9999-12-31 23:59:59 UTC);
        },
    );
    case.params.not_after = datetime!(9999-12-31 23:59:59 UTC);
    case.assert_rules(&["IOMT-VAL-02"]);
}

#[test]
fn not_after_beyond_the_issuer_is_reported_as_val_03() {
    let mut case = Case::new();
    case.ca = Ca::new(
        &case.policy.extensions.certificate_policies.required_oids,
        |ca| {
            ca.not_after = NOW + Duration::days(200);
        },
    );
    case.assert_rules(&["IOMT-VAL-03"]);
}

#[test]
fn not_after_beyond_the_key_sunset_is_reported_as_val_04() {
    let mut case = Case::new();
    set_sunset(&mut case.policy, "2026-06-30");
    case.assert_rules(&["IOMT-VAL-04"]);
}

#[test]
fn organizational_unit_in_subject_is_reported_as_sub_01() {
    let mut case = Case::new();
    case.params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "Ward 7");
    case.assert_rules(&["IOMT-SUB-01"]);
}

#[test]
fn serial_number_attribute_as_utf8_string_is_reported_as_sub_02() {
    let mut case = Case::new();
    let serial = case.identity.serial_number.clone();
    case.params
        .distinguished_name
        .push(DnType::CustomDnType(OID_X520_SERIAL.to_vec()), serial);
    case.assert_rules(&["IOMT-SUB-02"]);
}

#[test]
fn country_as_utf8_string_is_reported_as_sub_03() {
    let mut case = Case::new();
    case.params
        .distinguished_name
        .push(DnType::CountryName, "US");
    case.assert_rules(&["IOMT-SUB-03"]);
}

#[test]
fn organization_differing_from_identity_is_reported_as_sub_05() {
    let mut case = Case::new();
    case.params
        .distinguished_name
        .push(DnType::OrganizationName, "Other Medical Ltd");
    case.assert_rules(&["IOMT-SUB-05"]);
}

#[test]
fn critical_san_is_reported_as_san_01() {
    let mut case = Case::new();
    let identity = &case.identity;
    let san = subject_alt_name(
        identity.hardware_module_name.as_ref(),
        identity.uri.as_deref(),
    )
    .expect("SAN");
    case.replace_extension(OID_SAN, san, true);
    case.assert_rules(&["IOMT-SAN-01"]);
}

#[test]
fn missing_hardware_module_name_is_reported_as_san_02() {
    let mut case = Case::new();
    assert_eq!(
        case.policy.san.hardware_module_name.presence,
        Presence::Required
    );
    let san = subject_alt_name(None, case.identity.uri.as_deref()).expect("SAN");
    case.replace_extension(OID_SAN, san, false);
    case.assert_rules(&["IOMT-SAN-02"]);
}

#[test]
fn product_uri_differing_from_identity_is_reported_as_san_04() {
    let mut case = Case::new();
    let uri = "https://id.example-medical.example/01/00850000000017/21/IP20000043";
    let san =
        subject_alt_name(case.identity.hardware_module_name.as_ref(), Some(uri)).expect("SAN");
    case.replace_extension(OID_SAN, san, false);
    case.assert_rules(&["IOMT-SAN-04"]);
}

#[test]
fn dns_name_in_san_is_reported_as_san_06() {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    let mut case = Case::new();
    let identity = &case.identity;
    let der = subject_alt_name(
        identity.hardware_module_name.as_ref(),
        identity.uri.as_deref(),
    )
    .expect("SAN");
    let mut san = SubjectAltName::from_der(&der).expect("decode SAN");
    let dns = der::asn1::Ia5String::new("pump.ward7.hospital.example").expect("IA5");
    san.0.push(GeneralName::DnsName(dns));
    case.replace_extension(OID_SAN, san.to_der().expect("encode SAN"), false);
    case.assert_rules(&["IOMT-SAN-06"]);
}

#[test]
fn missing_basic_constraints_is_reported_as_bc_01() {
    let mut case = Case::new();
    // Without basicConstraints rcgen also drops the SKI; add it back by hand.
    case.params.is_ca = IsCa::NoCa;
    let ski = der::asn1::OctetString::new(key_identifier(case.key.public_key_raw()))
        .and_then(|id| id.to_der())
        .expect("SKI");
    case.params.custom_extensions.push(extension(OID_SKI, ski));
    case.assert_rules(&["IOMT-BC-01"]);
}

#[test]
fn non_critical_key_usage_is_reported_as_ku_01() {
    let mut case = Case::new();
    case.params.key_usages.clear();
    // BIT STRING, 7 unused bits, digitalSignature.
    case.replace_extension(OID_KU, vec![0x03, 0x02, 0x07, 0x80], false);
    case.assert_rules(&["IOMT-KU-01"]);
}

#[test]
fn key_cert_sign_on_an_ecdsa_key_is_reported_as_ku_02() {
    let mut case = Case::new();
    case.params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    case.assert_rules(&["IOMT-KU-02"]);
}

#[test]
fn missing_extended_key_usage_is_reported_as_eku_01() {
    let mut case = Case::new();
    case.params.extended_key_usages.clear();
    case.assert_rules(&["IOMT-EKU-01"]);
}

#[test]
fn server_auth_when_the_product_forbids_it_is_reported_as_eku_02() {
    let mut case = Case::new();
    assert!(
        case.policy
            .extensions
            .extended_key_usage
            .optional
            .is_empty()
    );
    case.params
        .extended_key_usages
        .push(ExtendedKeyUsagePurpose::ServerAuth);
    case.assert_rules(&["IOMT-EKU-02"]);
}

#[test]
fn subject_key_identifier_not_by_rfc_7093_is_reported_as_kid_01() {
    let mut case = Case::new();
    case.params.key_identifier_method = KeyIdMethod::Sha384;
    case.assert_rules(&["IOMT-KID-01"]);
}

#[test]
fn authority_key_identifier_not_matching_the_issuer_is_reported_as_kid_02() {
    let case = Case::new();
    let mut other = case.ca.params.clone();
    other.key_identifier_method = KeyIdMethod::PreSpecified(vec![0x42; 20]);
    let issuer = Issuer::new(other, &case.ca.key);
    case.assert_rules_of(&case.sign_with(&case.key, &issuer), &["IOMT-KID-02"]);
}

#[test]
fn critical_certificate_policies_is_reported_as_pol_01() {
    let mut case = Case::new();
    let oids = &case.policy.extensions.certificate_policies.required_oids;
    let policies = certificate_policies(oids).expect("policies");
    case.replace_extension(OID_CP, policies, true);
    case.assert_rules(&["IOMT-POL-01"]);
}

#[test]
fn missing_product_policy_oid_is_reported_as_pol_02() {
    let mut case = Case::new();
    let level_only = [case.policy.policy.certificate_policy_oid.clone()];
    case.replace_extension(
        OID_CP,
        certificate_policies(&level_only).expect("CP"),
        false,
    );
    case.assert_rules(&["IOMT-POL-02"]);
}

#[test]
fn policy_oid_the_issuer_does_not_assert_is_reported_as_pol_03() {
    let mut case = Case::new();
    let level_only = [case.policy.policy.certificate_policy_oid.clone()];
    case.ca = Ca::new(&level_only, |_| {});
    case.assert_rules(&["IOMT-POL-03"]);
}

#[test]
fn missing_crl_distribution_point_is_reported_as_rev_01() {
    let mut case = Case::new();
    case.params.crl_distribution_points.clear();
    case.assert_rules(&["IOMT-REV-01"]);
}

#[test]
fn missing_authority_info_access_is_reported_as_rev_02() {
    let mut case = Case::new();
    case.remove_extension(OID_AIA);
    case.assert_rules(&["IOMT-REV-02"]);
}

#[test]
fn missing_ocsp_when_required_is_reported_as_rev_03() {
    let mut case = Case::new();
    case.policy.extensions.authority_info_access.ocsp_presence = Presence::Required;
    case.assert_rules(&["IOMT-REV-03"]);
}

#[test]
fn unknown_extension_is_reported_as_ext_01() {
    let mut case = Case::new();
    case.params
        .custom_extensions
        .push(extension(&[1, 3, 6, 1, 4, 1, 32473, 1], vec![0x05, 0x00]));
    case.assert_rules(&["IOMT-EXT-01"]);
}

#[test]
fn critical_masa_url_is_reported_as_ext_02() {
    let mut case = Case::new();
    let url = masa_url("masa.example-medical.example").expect("MASA URL");
    case.replace_extension(OID_MASA_URL, url, true);
    case.assert_rules(&["IOMT-EXT-02"]);
}

#[test]
fn issuer_without_the_ca_flag_is_reported_as_chn_01() {
    let mut case = Case::new();
    let oids = case
        .policy
        .extensions
        .certificate_policies
        .required_oids
        .clone();
    case.ca = Ca::new(&oids, |ca| ca.is_ca = IsCa::ExplicitNoCa);
    case.assert_rules(&["IOMT-CHN-01"]);
}

#[test]
fn signature_by_another_key_is_reported_as_chn_03() {
    let case = Case::new();
    let impostor = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    // Same name and key identifier as the real CA, different key.
    let issuer = Issuer::from_params(&case.ca.params, &impostor);
    case.assert_rules_of(&case.sign_with(&case.key, &issuer), &["IOMT-CHN-03"]);
}

#[test]
fn signature_is_not_reverified_when_the_signer_vouches_for_it() {
    let case = Case::new();
    let impostor = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let issuer = Issuer::from_params(&case.ca.params, &impostor);
    let forged = case.sign_with(&case.key, &issuer);
    let findings = |verify_signature| {
        lint_device_certificate(&LintInput {
            certificate_der: &forged,
            issuer_der: &case.ca.der,
            policy: &case.policy,
            identity: &case.identity,
            now: NOW,
            verify_signature,
        })
    };
    assert!(findings(false).is_empty(), "{:?}", findings(false));
    assert_eq!(findings(true).len(), 1);
}

/// The shipped files with Basic and the pump widened to five years, loaded past the baseline
/// check (as if the start-up check had been bypassed).
fn widened_five_years() -> crate::policy::PolicySet {
    let mut sources = crate::policy::shipped_sources();
    for source in &mut sources {
        source.text = source
            .text
            .replace("max_days = 398", "max_days = 1826")
            .replace("max_days = 365", "max_days = 1825");
    }
    crate::policy::PolicySet::danger_from_sources_without_baseline_check(sources).expect("load")
}

#[test]
fn conformant_certificate_passes_its_builtin_baseline_too() {
    let case = Case::new();
    let set =
        crate::policy::PolicySet::from_sources(crate::policy::shipped_sources()).expect("shipped");
    let der = case.sign();
    let findings = lint_device_certificate(&LintInput {
        certificate_der: &der,
        issuer_der: &case.ca.der,
        policy: set.baseline_for(&case.policy),
        identity: &case.identity,
        now: NOW,
        verify_signature: true,
    });
    assert_eq!(findings, []);
}

#[test]
fn five_year_certificate_the_files_allow_fails_the_builtin_baseline() {
    let set = widened_five_years();
    let mut case = Case::new();
    case.policy = set.product("example-infusion-pump").expect("pump").clone();
    case.params.not_after = NOW + Duration::days(1825);
    let der = case.sign();
    assert_eq!(case.lint(&der), [], "the widened files allow it");
    let findings = lint_device_certificate(&LintInput {
        certificate_der: &der,
        issuer_der: &case.ca.der,
        policy: set.baseline_for(&case.policy),
        identity: &case.identity,
        now: NOW,
        verify_signature: false,
    });
    let rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, ["IOMT-VAL-01"], "{findings:#?}");
    assert!(findings[0].message.contains("398"), "{findings:?}");
}

#[test]
fn combined_lint_reports_only_the_baselines_objection_with_its_prefix() {
    let set = widened_five_years();
    let mut case = Case::new();
    case.policy = set.product("example-infusion-pump").expect("pump").clone();
    case.params.not_after = NOW + Duration::days(1825);
    let der = case.sign();
    let input = LintInput {
        certificate_der: &der,
        issuer_der: &case.ca.der,
        policy: &case.policy,
        identity: &case.identity,
        now: NOW,
        verify_signature: true,
    };
    let findings =
        crate::lint::lint_device_certificate_with_baseline(&input, set.baseline_for(&case.policy));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].rule, "IOMT-VAL-01");
    assert!(findings[0].message.starts_with("built-in level baseline: "));
}

/// What the second, baseline pass costs per certificate (run with
/// `cargo test --release -p iomt-core lint_cost -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn lint_cost_of_the_baseline_pass() {
    let case = Case::new();
    let set =
        crate::policy::PolicySet::from_sources(crate::policy::shipped_sources()).expect("shipped");
    let der = case.sign();
    let input = LintInput {
        certificate_der: &der,
        issuer_der: &case.ca.der,
        policy: &case.policy,
        identity: &case.identity,
        now: NOW,
        verify_signature: false,
    };
    let baseline = LintInput {
        policy: set.baseline_for(&case.policy),
        ..input
    };
    const N: u32 = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..N {
        let findings = crate::lint::lint_device_certificate_with_baseline(&input, baseline.policy);
        assert!(findings.is_empty());
    }
    println!(
        "product + baseline, one parse: {:.1} µs per certificate",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
    );
    for (name, passes) in [
        ("product only", vec![input]),
        ("product + baseline", vec![input, baseline]),
    ] {
        let start = std::time::Instant::now();
        for _ in 0..N {
            for pass in &passes {
                assert!(lint_device_certificate(pass).is_empty());
            }
        }
        println!(
            "{name}: {:.1} µs per certificate",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    }
}
