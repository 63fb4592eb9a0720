//! `enroll-client --tpm` against a real (software) TPM and the real CA: the device key is made
//! in the TPM, proven there (EK certificate from NV, credential activation of a fresh AK, a
//! TPM2_Certify over the CA's single-use challenge), `key.pem` holds only the TSS2 PRIVATE KEY
//! blobs, and the renewal signs its mutual-TLS handshake in the TPM and attests a new key.
//! Also what the CA refuses when the evidence is real but the request is not.

use std::path::Path;

use enroll_client::attested::{self, ChallengeAuth};
use enroll_client::enroll::{EnrollAuthorization, EnrollRequest, Server, enroll, reenroll};
use enroll_client::est::EstClient;
use enroll_client::tpm::tss2_pem::is_tss2_pem;
use enroll_client::tpm::{Tpm, TpmKey};
use iomt_tests::TestApp;
use iomt_tests::swtpm::{self, SoftwareTpm};
use x509_parser::prelude::{FromDer, X509Certificate};

fn token_request(
    app: &TestApp,
    serial: &str,
    token: &str,
    out: &Path,
    tcti: &str,
) -> EnrollRequest {
    EnrollRequest {
        server: app.server_url(),
        ca_cert: app.root_pem(),
        serial: serial.to_owned(),
        authorization: EnrollAuthorization::Token(token.to_owned()),
        out: out.to_path_buf(),
        label: None,
        tpm: Some(tcti.to_owned()),
    }
}

/// The SubjectPublicKeyInfo of the first certificate in a PEM file.
fn certificate_spki(path: &Path) -> Vec<u8> {
    let der = iomt_tests::read_pem_certs(path).remove(0);
    let (_, cert) = X509Certificate::from_der(&der).expect("certificate");
    cert.public_key().raw.to_vec()
}

fn spki_of(key: &TpmKey) -> Vec<u8> {
    rcgen::PublicKeyData::subject_public_key_info(key)
}

#[tokio::test]
async fn a_device_enrolls_and_renews_with_its_key_in_the_tpm() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    tpm.trust_manufacturer(&app).await;
    let serial = "IP20000101";
    let token = app.pump_with_token(serial).await;
    let out = app.dir.path().join("device");

    let enrolled = enroll(&token_request(&app, serial, &token, &out, &tpm.tcti))
        .await
        .expect("attested enrollment");
    let key_pem = std::fs::read(out.join("key.pem")).expect("key.pem");
    assert!(is_tss2_pem(&key_pem), "key.pem holds the TPM key's blobs");
    assert!(!String::from_utf8_lossy(&key_pem).contains("BEGIN PRIVATE KEY"));
    // The certificate is for the key in the TPM: loading key.pem there gives its public key.
    let loaded = TpmKey::load(&tpm.tcti, &key_pem).expect("key.pem loads in the TPM");
    assert_eq!(spki_of(&loaded), certificate_spki(&out.join("cert.pem")));
    drop(loaded);
    assert!(app.token_used(&token).await);

    // The CA bound the device to this TPM's EK and recorded the certificate as attested.
    let store = app.authority.store();
    let binding = store
        .device_tpm(serial)
        .await
        .unwrap()
        .expect("device bound to its TPM");
    tpm.run("tpm2_nvread", &["0x1c00002", "-o", "ek.der"]);
    let ek_sha256 = swtpm::sha256(&tpm.read("ek.der"));
    assert_eq!(binding.ek_sha256, ek_sha256);

    // Renewal: mutual TLS signed by the current TPM key, a new key attested afresh.
    let server = Server {
        url: app.server_url(),
        ca_cert: app.root_pem(),
        label: None,
        tpm: Some(tpm.tcti.clone()),
    };
    let renewed = reenroll(&server, &out).await.expect("attested renewal");
    assert_ne!(renewed.certificate_serial, enrolled.certificate_serial);
    let new_key_pem = std::fs::read(out.join("key.pem")).expect("key.pem");
    assert!(is_tss2_pem(&new_key_pem));
    assert_ne!(new_key_pem, key_pem, "a renewal re-keys in the TPM");
    let loaded = TpmKey::load(&tpm.tcti, &new_key_pem).expect("new key loads");
    assert_eq!(spki_of(&loaded), certificate_spki(&out.join("cert.pem")));
    drop(loaded);
    let still = store.device_tpm(serial).await.unwrap().expect("bound");
    assert_eq!(still.ek_sha256, ek_sha256, "still the same TPM");

    // Without --tpm the client says what is needed instead of failing in TLS.
    let without = Server {
        tpm: None,
        ..server
    };
    let error = reenroll(&without, &out).await.expect_err("needs --tpm");
    assert!(error.to_string().contains("--tpm"), "{error}");
}

#[tokio::test]
async fn real_evidence_does_not_carry_another_key_or_a_second_request() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    tpm.trust_manufacturer(&app).await;
    let serial = "IP20000102";
    let token = app.pump_with_token(serial).await;
    let root = app.root_der();
    let client = EstClient::new(&app.server_url(), &root, "root", None).expect("client");
    let device = Tpm::open(&tpm.tcti).expect("tpm");
    let key = TpmKey::create_in(&device).expect("key");
    let auth = ChallengeAuth::Token {
        serial,
        token: &token,
    };
    let evidence = attested::evidence(&client, &key, serial, auth)
        .await
        .expect("evidence");

    // A software key presented with the TPM key's real evidence.
    let software = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let copied = csr_with_evidence(&software, serial, &evidence);
    let (status, code, body) = app
        .post_simpleenroll(
            serial,
            &token,
            "application/pkcs10",
            TestApp::est_body(&copied),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (403, "attestation.key_mismatch"),
        "{body}"
    );
    assert!(
        !app.token_used(&token).await,
        "a refused request leaves the token"
    );
    assert!(app.certificates(serial).await.is_empty());
    assert!(
        app.authority
            .store()
            .device_tpm(serial)
            .await
            .unwrap()
            .is_none()
    );

    // The honest request is accepted once...
    let csr = attested::attested_csr(&key, serial, &evidence, None).expect("csr");
    let (status, _, body) = app
        .post_simpleenroll(
            serial,
            &token,
            "application/pkcs10",
            TestApp::est_body(&csr),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // ...and its challenge is spent: the same evidence again (the certificate revoked, a new
    // token, a new key of the same TPM) is a replay.
    app.cli(&["revoke", "--device", serial])
        .await
        .expect("revoke");
    let renewal_token = app.token(serial).await;
    let second = TpmKey::create_in(&device).expect("second key");
    let replay = csr_with_evidence(&second, serial, &evidence);
    let (status, code, body) = app
        .post_simpleenroll(
            serial,
            &renewal_token,
            "application/pkcs10",
            TestApp::est_body(&replay),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (403, "attestation.challenge_used"),
        "{body}"
    );
    assert!(!app.token_used(&renewal_token).await);
}

#[tokio::test]
async fn a_second_tpm_for_a_bound_serial_is_refused() {
    if !swtpm::available() {
        return;
    }
    let first = SoftwareTpm::start();
    let second = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    first.trust_manufacturer(&app).await;
    second.trust_manufacturer(&app).await;
    let serial = "IP20000103";
    let token = app.pump_with_token(serial).await;
    enroll(&token_request(
        &app,
        serial,
        &token,
        &app.dir.path().join("a"),
        &first.tcti,
    ))
    .await
    .expect("first TPM enrolls");

    // The device's certificate is revoked (say the board was swapped); the serial stays bound.
    app.cli(&["revoke", "--device", serial])
        .await
        .expect("revoke");
    let again = app.token(serial).await;
    let error = enroll(&token_request(
        &app,
        serial,
        &again,
        &app.dir.path().join("b"),
        &second.tcti,
    ))
    .await
    .expect_err("another TPM");
    match &error {
        enroll_client::error::ClientError::Server { status, code, .. } => {
            assert_eq!(
                (*status, code.as_str()),
                (409, "attestation.tpm_mismatch"),
                "{error}"
            );
        }
        other => panic!("expected 409 attestation.tpm_mismatch, got {other}"),
    }
    assert!(!app.token_used(&again).await);
    assert!(!app.dir.path().join("b").join("cert.pem").exists());

    // An operator re-provisions the device: then the new TPM enrolls and is bound.
    app.cli(&["device", "reprovision", serial])
        .await
        .expect("reprovision");
    let last = app.token(serial).await;
    enroll(&token_request(
        &app,
        serial,
        &last,
        &app.dir.path().join("b"),
        &second.tcti,
    ))
    .await
    .expect("the new TPM enrolls after re-provisioning");
    second.run("tpm2_nvread", &["0x1c00002", "-o", "ek.der"]);
    let bound = app
        .authority
        .store()
        .device_tpm(serial)
        .await
        .unwrap()
        .expect("bound");
    assert_eq!(bound.ek_sha256, swtpm::sha256(&second.read("ek.der")));
}

fn csr_with_evidence(key: &impl rcgen::SigningKey, serial: &str, evidence: &[u8]) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(serial.try_into().unwrap()),
    );
    params.distinguished_name = dn;
    params
        .serialize_request_with_attributes(
            key,
            vec![attested::evidence_attribute(evidence).expect("attribute")],
        )
        .expect("csr")
        .der()
        .to_vec()
}

#[tokio::test]
async fn substantial_accepts_a_token_only_with_tpm_evidence() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn_with_policies(swtpm::monitor_with_tpm).await;
    tpm.trust_manufacturer(&app).await;

    // A token and a software key: the station is still required.
    let serial = "PM70000201";
    app.register(serial, iomt_tests::MONITOR).await;
    let token = app.token(serial).await;
    let (_, csr) = iomt_tests::p256_csr(serial);
    let (status, code, body) = app
        .post_simpleenroll(
            serial,
            &token,
            "application/pkcs10",
            TestApp::est_body(&csr),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (403, "policy.token_not_allowed"),
        "{body}"
    );
    assert!(body.contains("TPM key attestation"), "{body}");
    assert!(!app.token_used(&token).await);

    // The same token with the key made and proven in the TPM: issued at Substantial.
    let out = app.dir.path().join("monitor");
    enroll(&token_request(&app, serial, &token, &out, &tpm.tcti))
        .await
        .expect("token + TPM attestation at Substantial");
    assert!(app.token_used(&token).await);
    let der = iomt_tests::read_pem_certs(&out.join("cert.pem")).remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let policies: Vec<String> = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CertificatePolicies(cp) => {
                Some(cp.iter().map(|p| p.policy_id.to_id_string()).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        policies.contains(&"1.3.6.1.4.1.32473.7.1.2".to_owned()),
        "{policies:?}"
    );
}

#[tokio::test]
async fn a_substantial_product_without_a_tpm_option_gets_no_tokens() {
    // The shipped patient monitor keeps its key in a secure element: station only.
    let app = TestApp::spawn().await;
    let serial = "PM70000202";
    app.register(serial, iomt_tests::MONITOR).await;
    let refused = app
        .cli(&["token", "create", "--serial", serial])
        .await
        .expect_err("no tokens for a station-only product");
    assert!(
        refused.contains("does not accept one-time tokens"),
        "{refused}"
    );
}

/// A TPM renewal whose answer never arrived (the CA committed the new certificate, the device
/// did not install it): the next run attests the *staged* TPM key again and gets that same
/// certificate, not a second one.
#[tokio::test]
async fn a_tpm_renewal_whose_answer_was_lost_gets_the_same_certificate_again() {
    use enroll_client::staging::{self, Purpose, StagedTpmKey};
    use enroll_client::tls::{ClientIdentity, ClientKey};
    use enroll_client::tpm::TpmKeyFile;
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    tpm.trust_manufacturer(&app).await;
    let serial = "IP20000103";
    let token = app.pump_with_token(serial).await;
    let out = app.dir.path().join("device");
    enroll(&token_request(&app, serial, &token, &out, &tpm.tcti))
        .await
        .expect("attested enrollment");

    // The first attempt, as the client makes it: key made in the TPM and staged, then the
    // attested, bound renewal; its answer is dropped.
    let lost = {
        let device = Tpm::open(&tpm.tcti).expect("tpm");
        let key = TpmKey::create_in(&device).expect("key");
        let leaf = iomt_tests::read_pem_certs(&out.join("cert.pem")).remove(0);
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        let staged = StagedTpmKey {
            purpose: Purpose::Renew(hex::encode(cert.raw_serial())),
            tss2_pem: key.to_pem().unwrap(),
        };
        staging::stage_tpm_key(&out, &staged).expect("stage");
        let identity = ClientIdentity {
            chain: iomt_tests::hospital::device_chain(&out),
            key: ClientKey::Tpm(TpmKeyFile {
                tpm: device.clone(),
                pem: std::fs::read(out.join("key.pem")).unwrap(),
            }),
        };
        let client = EstClient::new(&app.server_url(), &app.root_der(), "root", Some(identity))
            .expect("client");
        let issued = attested::reenroll(&client, &key, serial, None)
            .await
            .expect("the CA issues the renewal");
        let (_, lost) = X509Certificate::from_der(&issued[0]).unwrap();
        hex::encode(lost.raw_serial())
    };
    assert_eq!(app.certificates(serial).await.len(), 2);

    let server = Server {
        url: app.server_url(),
        ca_cert: app.root_pem(),
        label: None,
        tpm: Some(tpm.tcti.clone()),
    };
    let renewed = reenroll(&server, &out).await.expect("renewal, again");
    assert_eq!(
        renewed.certificate_serial.to_lowercase(),
        lost,
        "the certificate already issued, sent again"
    );
    assert_eq!(app.certificates(serial).await.len(), 2, "no second renewal");
    assert!(
        !staging::tpm_key_path(&out).exists(),
        "cleared once installed"
    );
    let key_pem = std::fs::read(out.join("key.pem")).unwrap();
    let loaded = TpmKey::load(&tpm.tcti, &key_pem).expect("installed key loads");
    assert_eq!(spki_of(&loaded), certificate_spki(&out.join("cert.pem")));
}
