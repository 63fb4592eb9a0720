//! TLS channel binding (RFC 9266 `tls-exporter`) end to end: the client's bound POST
//! (`enroll_client::bound`) against the real HTTPS listener, under a pump policy that requires
//! the binding (without attestation) and under the shipped one that only recommends it.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use enroll_client::bound::{self, BoundPost, BoundResponse};
use enroll_client::tls::{ClientIdentity, ClientKey};
use iomt_tests::{PUMP, TestApp, no_reenroll_interval, webpki_verify};
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The pump's policy with channel binding required (and no minimum re-enrollment interval).
fn binding_required(name: &str, text: &str) -> String {
    let text = no_reenroll_interval(name, text);
    if name == format!("{PUMP}.toml") {
        format!("{text}\n[enrollment]\nchannel_binding = \"required\"\n")
    } else {
        text
    }
}

fn key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

/// The enroll-client's CSR for `serial`, with `binding` in its challengePassword when given.
fn csr(key: &KeyPair, serial: &str, binding: Option<&[u8; 32]>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(serial.try_into().expect("printable")),
    );
    params.distinguished_name = dn;
    let attributes = binding
        .map(bound::challenge_password_attribute)
        .into_iter()
        .collect();
    params
        .serialize_request_with_attributes(key, attributes)
        .expect("CSR")
        .der()
        .to_vec()
}

fn est_body(csr_der: &[u8]) -> Vec<u8> {
    STANDARD.encode(csr_der).into_bytes()
}

/// A client configuration trusting the CA's root, optionally presenting a device credential.
fn tls(app: &TestApp, identity: Option<ClientIdentity>) -> Arc<rustls::ClientConfig> {
    Arc::new(
        enroll_client::tls::client_config(&app.root_der(), "root.pem", identity)
            .expect("client config"),
    )
}

fn basic(serial: &str, token: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{serial}:{token}")))
}

/// POSTs to `operation` on a fresh connection; the body is built by `body(exporter)`.
async fn post(
    app: &TestApp,
    config: Arc<rustls::ClientConfig>,
    operation: &str,
    authorization: Option<&str>,
    body: impl FnOnce([u8; 32]) -> Vec<u8>,
) -> BoundResponse {
    let url = format!("{}/.well-known/est/{operation}", app.server_url());
    bound::post::<std::convert::Infallible, _>(
        config,
        BoundPost {
            url: &url,
            content_type: "application/pkcs10",
            authorization,
        },
        |exporter| Ok(body(exporter)),
    )
    .await
    .expect("bound POST")
}

/// The connection's exporter, read by a bound POST whose body builder gives up (nothing sent).
async fn exporter_of_another_connection(app: &TestApp) -> [u8; 32] {
    let url = format!("{}/.well-known/est/simpleenroll", app.server_url());
    let outcome = bound::post(
        tls(app, None),
        BoundPost {
            url: &url,
            content_type: "application/pkcs10",
            authorization: None,
        },
        Err::<Vec<u8>, [u8; 32]>,
    )
    .await;
    match outcome {
        Err(bound::BoundError::Body(exporter)) => exporter,
        other => panic!("expected the builder's error, got {other:?}"),
    }
}

fn issued_leaf(response: &BoundResponse) -> Vec<u8> {
    assert_eq!(
        response.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let der = STANDARD.decode(&response.body).expect("base64");
    iomt_core::wire::parse_certs_only(&der)
        .expect("certs-only")
        .remove(0)
}

fn assert_refused(response: &BoundResponse, code: &str) {
    assert_eq!(
        (response.status.as_u16(), response.error_code()),
        (403, Some(code)),
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

#[tokio::test]
async fn enroll_bound_to_its_connection_is_issued() {
    let app = TestApp::spawn_with_policies(binding_required).await;
    let serial = "IP20000001";
    let token = app.pump_with_token(serial).await;
    let key = key();
    let auth = basic(serial, &token);
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |e| {
        est_body(&csr(&key, serial, Some(&e)))
    })
    .await;
    let leaf = issued_leaf(&response);
    let issuer = app
        .authority
        .ca()
        .current()
        .issuing(iomt_core::policy::Level::Basic)
        .cert_der
        .clone();
    webpki_verify(&leaf, &issuer, &app.root_der());
    assert!(app.token_used(&token).await);
    assert_eq!(app.certificates(serial).await.len(), 1);
}

#[tokio::test]
async fn enroll_without_binding_is_refused_and_the_token_stays_unused() {
    let app = TestApp::spawn_with_policies(binding_required).await;
    let serial = "IP20000002";
    let token = app.pump_with_token(serial).await;
    let key = key();
    let auth = basic(serial, &token);
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |_| {
        est_body(&csr(&key, serial, None))
    })
    .await;
    assert_refused(&response, "csr.channel_binding_missing");
    assert!(!app.token_used(&token).await);
    assert!(app.certificates(serial).await.is_empty());
}

#[tokio::test]
async fn enroll_with_another_connections_exporter_is_refused_and_the_token_stays_unused() {
    let app = TestApp::spawn_with_policies(binding_required).await;
    let serial = "IP20000003";
    let token = app.pump_with_token(serial).await;
    let key = key();
    let auth = basic(serial, &token);
    let elsewhere = exporter_of_another_connection(&app).await;
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |here| {
        assert_ne!(here, elsewhere, "two connections share an exporter");
        est_body(&csr(&key, serial, Some(&elsewhere)))
    })
    .await;
    assert_refused(&response, "csr.channel_binding_mismatch");
    assert!(!app.token_used(&token).await);
    assert!(app.certificates(serial).await.is_empty());

    // The same token and key, bound to the connection they are sent on: issued.
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |e| {
        est_body(&csr(&key, serial, Some(&e)))
    })
    .await;
    issued_leaf(&response);
    assert!(app.token_used(&token).await);
}

#[tokio::test]
async fn reenroll_checks_the_binding_on_the_mutual_tls_connection() {
    let app = TestApp::spawn_with_policies(binding_required).await;
    let serial = "IP20000004";
    let token = app.pump_with_token(serial).await;
    let first_key = key();
    let auth = basic(serial, &token);
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |e| {
        est_body(&csr(&first_key, serial, Some(&e)))
    })
    .await;
    let leaf = issued_leaf(&response);
    let identity = || {
        let key = PrivateKeyDer::try_from(first_key.serialize_der()).expect("key");
        ClientIdentity {
            chain: vec![CertificateDer::from(leaf.clone())],
            key: ClientKey::Software(key),
        }
    };
    let new_key = key();

    let response = post(
        &app,
        tls(&app, Some(identity())),
        "simplereenroll",
        None,
        |_| est_body(&csr(&new_key, serial, None)),
    )
    .await;
    assert_refused(&response, "csr.channel_binding_missing");
    let elsewhere = exporter_of_another_connection(&app).await;
    let response = post(
        &app,
        tls(&app, Some(identity())),
        "simplereenroll",
        None,
        |_| est_body(&csr(&new_key, serial, Some(&elsewhere))),
    )
    .await;
    assert_refused(&response, "csr.channel_binding_mismatch");
    assert_eq!(app.certificates(serial).await.len(), 1);

    let response = post(
        &app,
        tls(&app, Some(identity())),
        "simplereenroll",
        None,
        |e| est_body(&csr(&new_key, serial, Some(&e))),
    )
    .await;
    issued_leaf(&response);
    assert_eq!(app.certificates(serial).await.len(), 2);
}

/// Under the shipped pump policy (binding recommended), an unbound CSR is issued but a binding
/// that is present is still checked.
#[tokio::test]
async fn enroll_with_a_recommended_binding_checks_a_present_one() {
    let app = TestApp::spawn().await;
    let serial = "IP20000005";
    let token = app.pump_with_token(serial).await;
    let key = key();
    let auth = basic(serial, &token);
    let elsewhere = exporter_of_another_connection(&app).await;
    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |_| {
        est_body(&csr(&key, serial, Some(&elsewhere)))
    })
    .await;
    assert_refused(&response, "csr.channel_binding_mismatch");
    assert!(!app.token_used(&token).await);

    let response = post(&app, tls(&app, None), "simpleenroll", Some(&auth), |_| {
        est_body(&csr(&key, serial, None))
    })
    .await;
    issued_leaf(&response);
}

/// TLS 1.2 has no `tls-exporter` binding here: the client refuses to send a bound request on it,
/// and a binding sent on a TLS 1.2 connection anyway is refused by the CA.
#[tokio::test]
async fn binding_over_tls_1_2_is_refused_by_both_ends() {
    let app = TestApp::spawn_with_policies(binding_required).await;
    let serial = "IP20000006";
    let token = app.pump_with_token(serial).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(app.root_der()).expect("root");
    let tls12 = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let url = format!("{}/.well-known/est/simpleenroll", app.server_url());
    let outcome = bound::post::<std::convert::Infallible, _>(
        tls12.clone(),
        BoundPost {
            url: &url,
            content_type: "application/pkcs10",
            authorization: None,
        },
        |_| Ok(Vec::new()),
    )
    .await;
    assert!(
        matches!(outcome, Err(bound::BoundError::NotTls13 { .. })),
        "{outcome:?}"
    );

    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls12).clone())
        .build()
        .expect("client");
    let response = client
        .post(&url)
        .basic_auth(serial, Some(&token))
        .header("content-type", "application/pkcs10")
        .body(est_body(&csr(&key(), serial, Some(&[7u8; 32]))))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("csr.channel_binding_unavailable")
    );
    assert!(!app.token_used(&token).await);
}
