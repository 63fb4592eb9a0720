//! What a TPM-attested device certificate carries (docs/PROFILE.md §2.7, §2.9): the CA's own
//! builder and lint on the High example product, whose key lives in a TPM 2.0. The identity of
//! a verified attestation names the TPM (hwType 2.23.133.1.2, the EK-derived hwSerialNum, a
//! permanentIdentifier with the EK certificate digest) and earns the TCG residency OIDs; the
//! lint accepts exactly that, and refuses those contents without the attestation.

use ca_server::authority::{CertificateInputs, build_and_sign};
use ca_server::pki::{CaMaterial, PublicUrls};
use iomt_core::identity::{DeviceRecord, Identity, TpmResidency};
use iomt_core::lint::{Finding, LintInput, lint_device_certificate};
use iomt_core::policy::Policy;
use iomt_tests::{TestApp, webpki_verify};
use rcgen::PublicKeyData;
use x509_parser::extensions::{GeneralName, ParsedExtension};

const VENTILATOR: &str = "example-ventilator";
const SERIAL: &str = "VT90000001";
const GTIN: &str = "00850000000031";
/// The shape the CA derives from an EK certificate: manufacturer, EK AKI, EK serial (hex).
const HW_SERIAL: &str =
    "00001014:3A1B52E5C0F4D9AE0E1A2B3C4D5E6F708192A3B4:00C0FFEE0123456789ABCDEF";
const TPM2: &str = "2.23.133.1.2";

fn residency() -> TpmResidency {
    TpmResidency {
        hw_serial: HW_SERIAL.to_owned(),
        ek_certificate_sha256: (0u8..32).collect(),
    }
}

fn record_identity(policy: &Policy) -> Identity {
    Identity::build(
        policy,
        &DeviceRecord {
            serial: SERIAL.into(),
            gtin: GTIN.into(),
        },
    )
    .expect("identity")
}

/// Builds and signs a ventilator certificate for `identity` with the CA's High issuing CA.
fn issue(app: &TestApp, policy: &Policy, identity: &Identity) -> Vec<u8> {
    let ca = CaMaterial::load(&app.data_dir()).expect("CA material");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    build_and_sign(&CertificateInputs {
        policy,
        identity,
        spki_der: &key.subject_public_key_info(),
        sunset: policy.keys.allowed[0].sunset_date(),
        issuer: ca.issuing(policy.policy.level),
        urls: &PublicUrls::new("http://127.0.0.1:8080"),
        now: time::OffsetDateTime::now_utc(),
    })
    .expect("signed")
    .der
}

/// The CA's two lint passes: the product policy and its built-in baseline.
fn lint(app: &TestApp, policy: &Policy, identity: &Identity, der: &[u8]) -> Vec<Finding> {
    let ca = CaMaterial::load(&app.data_dir()).expect("CA material");
    let issuer = ca.issuing(policy.policy.level).cert_der.clone();
    let baseline = app.authority.policies().baseline_for(policy);
    [policy, baseline]
        .into_iter()
        .flat_map(|against| {
            lint_device_certificate(&LintInput {
                certificate_der: der,
                issuer_der: &issuer,
                policy: against,
                identity,
                now: time::OffsetDateTime::now_utc(),
                verify_signature: true,
            })
        })
        .collect()
}

/// (HardwareModuleName hwType and hwSerialNum, permanentIdentifier otherName DER, policy OIDs).
type Contents = ((String, Vec<u8>), Option<Vec<u8>>, Vec<String>);

fn contents(der: &[u8]) -> Contents {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
    let mut hmn = None;
    let mut permanent = None;
    let mut policies = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::OtherName(oid, value) = name {
                        match oid.to_id_string().as_str() {
                            "1.3.6.1.5.5.7.8.4" => {
                                let m =
                                    iomt_core::extensions::hardware_module_name_from_other_name(
                                        value,
                                    )
                                    .expect("HardwareModuleName");
                                hmn = Some((m.hw_type, m.hw_serial));
                            }
                            "1.3.6.1.5.5.7.8.3" => permanent = Some(value.to_vec()),
                            other => panic!("unexpected otherName {other}"),
                        }
                    }
                }
            }
            ParsedExtension::CertificatePolicies(list) => {
                policies = list.iter().map(|p| p.policy_id.to_id_string()).collect();
            }
            _ => {}
        }
    }
    (hmn.expect("a HardwareModuleName"), permanent, policies)
}

#[tokio::test]
async fn attested_certificate_names_the_tpm_and_earns_the_residency_oids() {
    let app = TestApp::spawn().await;
    let policy = app
        .authority
        .policies()
        .product(VENTILATOR)
        .expect("ventilator")
        .clone();
    let identity = record_identity(&policy).with_tpm_residency(&policy, &residency());
    let der = issue(&app, &policy, &identity);
    assert_eq!(lint(&app, &policy, &identity, &der), Vec::<Finding>::new());
    let ca = CaMaterial::load(&app.data_dir()).expect("CA material");
    webpki_verify(
        &der,
        &ca.issuing(policy.policy.level).cert_der,
        &app.root_der(),
    );

    let ((hw_type, hw_serial), permanent, policies) = contents(&der);
    assert_eq!(hw_type, TPM2);
    assert_eq!(hw_serial, HW_SERIAL.as_bytes());
    // [0] { SEQUENCE { UTF8String <hex of the EK certificate SHA-256>, OID 2.23.133.12.1 } }
    let digest_hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let mut expected = vec![0x0c, 64];
    expected.extend_from_slice(digest_hex.as_bytes());
    expected.extend_from_slice(&[0x06, 0x05, 0x67, 0x81, 0x05, 0x0c, 0x01]);
    let sequence = [vec![0x30, expected.len() as u8], expected].concat();
    let wrapped = [vec![0xa0, sequence.len() as u8], sequence].concat();
    assert_eq!(permanent.as_deref(), Some(wrapped.as_slice()));
    assert_eq!(
        policies,
        [
            "1.3.6.1.4.1.32473.7.1.3",
            "1.3.6.1.4.1.32473.7.2.10",
            "1.3.6.1.4.1.32473.98.1.3",
            "2.23.133.11.1.1",
            "2.23.133.11.1.2",
        ]
    );
}

#[tokio::test]
async fn tpm_contents_without_a_verified_attestation_are_refused_by_the_lint() {
    let app = TestApp::spawn().await;
    let policy = app
        .authority
        .policies()
        .product(VENTILATOR)
        .expect("ventilator")
        .clone();
    let attested = record_identity(&policy).with_tpm_residency(&policy, &residency());
    let der = issue(&app, &policy, &attested);
    let rules: Vec<&str> = lint(&app, &policy, &record_identity(&policy), &der)
        .iter()
        .map(|f| f.rule)
        .collect();
    for rule in ["IOMT-SAN-02", "IOMT-SAN-07", "IOMT-POL-02"] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }

    // Without attestation the certificate asserts no TCG OID and no permanentIdentifier, and an
    // identity that claims them finds them missing.
    let plain = record_identity(&policy);
    let der = issue(&app, &policy, &plain);
    assert_eq!(lint(&app, &policy, &plain, &der), Vec::<Finding>::new());
    let (_, permanent, policies) = contents(&der);
    assert_eq!(permanent, None);
    assert!(!policies.iter().any(|o| o.starts_with("2.23.133.11.")));
    let rules: Vec<&str> = lint(&app, &policy, &attested, &der)
        .iter()
        .map(|f| f.rule)
        .collect();
    for rule in ["IOMT-SAN-02", "IOMT-SAN-07", "IOMT-POL-06"] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
}

/// A product whose HardwareModuleName names its own module type keeps it when its key is
/// attested; the Substantial attestation marker is earned where the policy lists it.
#[tokio::test]
async fn attested_key_of_a_product_without_the_tpm_hw_type_keeps_its_own_name() {
    let app = TestApp::spawn().await;
    let policy = app
        .authority
        .policies()
        .product("example-patient-monitor")
        .expect("monitor")
        .clone();
    let record = Identity::build(
        &policy,
        &DeviceRecord {
            serial: "PM70000001".into(),
            gtin: "00850000000024".into(),
        },
    )
    .expect("identity");
    let attested = record.clone().with_tpm_residency(&policy, &residency());
    assert_eq!(attested.hardware_module_name, record.hardware_module_name);
    assert_eq!(attested.permanent_identifier, None);
    let cp = &policy.extensions.certificate_policies;
    let marker = "1.3.6.1.4.1.32473.7.2.10".to_owned();
    assert_eq!(
        attested.attested_policies.contains(&marker),
        cp.optional_oids.contains(&marker) && !cp.required_oids.contains(&marker)
    );
    let der = issue(&app, &policy, &attested);
    assert_eq!(lint(&app, &policy, &attested, &der), Vec::<Finding>::new());
}

/// End to end with a software TPM: the CA verifies the evidence of `enroll-client --tpm`, and the
/// certificate it issues (and the renewal, re-attested) names that TPM by its EK certificate.
#[tokio::test]
async fn attested_enrollment_through_the_ca_names_the_tpm_of_the_ek() {
    use enroll_client::enroll::{EnrollAuthorization, EnrollRequest, Server, enroll, reenroll};
    use iomt_tests::swtpm::{self, SoftwareTpm};
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn_with_policies(swtpm::monitor_naming_its_tpm).await;
    tpm.trust_manufacturer(&app).await;
    let serial = "PM70000301";
    app.register(serial, iomt_tests::MONITOR).await;
    let token = app.token(serial).await;
    let out = app.dir.path().join("monitor");
    enroll(&EnrollRequest {
        server: app.server_url(),
        ca_cert: app.root_pem(),
        serial: serial.to_owned(),
        authorization: EnrollAuthorization::Token(token),
        out: out.clone(),
        label: None,
        tpm: Some(tpm.tcti.clone()),
    })
    .await
    .expect("token + TPM attestation");

    tpm.run("tpm2_nvread", &["0x1c00002", "-o", "ek.der"]);
    let digest =
        iomt_tests::run_tool(std::process::Command::new("sha256sum").arg(tpm.path("ek.der")));
    let ek_hex = digest.split_whitespace().next().unwrap().to_owned();
    let check = |der: &[u8]| {
        let ((hw_type, hw_serial), permanent, policies) = contents(der);
        assert_eq!(hw_type, TPM2);
        let hw_serial = String::from_utf8(hw_serial).expect("ASCII hwSerialNum");
        let parts: Vec<&str> = hw_serial.split(':').collect();
        assert_eq!(parts.len(), 3, "{hw_serial}");
        assert_eq!(parts[1].len(), 40, "EK AKI in hex: {hw_serial}");
        assert!(
            hw_serial
                .bytes()
                .all(|b| b == b':' || b.is_ascii_digit() || b.is_ascii_uppercase()),
            "{hw_serial}"
        );
        let permanent = permanent.expect("permanentIdentifier");
        let id = iomt_core::extensions::permanent_identifier_from_other_name(&permanent)
            .expect("permanentIdentifier decodes");
        assert_eq!(id.value, ek_hex);
        assert_eq!(id.assigner, "2.23.133.12.1");
        assert!(
            policies.contains(&"1.3.6.1.4.1.32473.7.2.10".to_owned()),
            "the Substantial attestation marker is earned: {policies:?}"
        );
        hw_serial
    };
    let first = iomt_tests::read_pem_certs(&out.join("cert.pem")).remove(0);
    let hw_serial = check(&first);

    let renewed = reenroll(
        &Server {
            url: app.server_url(),
            ca_cert: app.root_pem(),
            label: None,
            tpm: Some(tpm.tcti.clone()),
        },
        &out,
    )
    .await
    .expect("attested renewal keeps the TPM's name");
    let second = iomt_tests::read_pem_certs(&out.join("cert.pem")).remove(0);
    assert_ne!(first, second, "{renewed:?}");
    assert_eq!(check(&second), hw_serial);
}
