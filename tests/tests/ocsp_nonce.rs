//! OCSP nonces per RFC 9654 against the real responder: 1–128 octets are echoed in the signed
//! response, anything else is `malformedRequest` and never copied (issue 17, item 6).

use iomt_core::ocsp::{Status, build_request, check_response};
use iomt_tests::{TestApp, require_tool, run_tool};

/// `OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED }` with 1 = malformedRequest.
const MALFORMED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x01];

async fn ocsp_post(app: &TestApp, request: Vec<u8>) -> Vec<u8> {
    let response = app
        .plain_client()
        .post(format!("http://{}/ocsp/basic", app.http))
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .expect("OCSP request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body").to_vec()
}

async fn basic_issuer(app: &TestApp) -> Vec<u8> {
    let response = app
        .plain_client()
        .get(format!("http://{}/ca/basic.cer", app.http))
        .send()
        .await
        .expect("issuer");
    response.bytes().await.expect("issuer body").to_vec()
}

#[tokio::test]
async fn ocsp_with_nonce_of_each_length_is_echoed_or_malformed_per_rfc_9654() {
    let app = TestApp::spawn().await;
    let issuer = basic_issuer(&app).await;
    let serial = [0x42; 12];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (octets, echoed) in [
        (0, false),
        (1, true),
        (128, true),
        (129, false),
        (4000, false),
    ] {
        let nonce = vec![0xa5; octets];
        let request = build_request(&issuer, &serial, Some(&nonce)).unwrap();
        let response = ocsp_post(&app, request).await;
        if echoed {
            // check_response verifies the signature and that the nonce came back unchanged.
            let status = check_response(&response, &issuer, &serial, Some(&nonce), now)
                .unwrap_or_else(|e| panic!("{octets}-octet nonce: {e}"));
            assert_eq!(status, Status::Unknown, "{octets}-octet nonce");
        } else {
            assert_eq!(response, MALFORMED, "{octets}-octet nonce");
        }
    }
}

#[tokio::test]
async fn ocsp_get_with_oversized_nonce_is_malformed() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let issuer = basic_issuer(&app).await;
    let request = build_request(&issuer, &[7; 8], Some(&[0x5a; 129])).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(request);
    let path = encoded
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let response = app
        .plain_client()
        .get(format!("http://{}/ocsp/basic/{path}", app.http))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.bytes().await.unwrap().to_vec(), MALFORMED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_with_its_default_nonce_verifies_the_echo() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let dir = app.dir.path();
    std::fs::write(dir.join("basic.cer"), basic_issuer(&app).await).unwrap();
    run_tool(
        std::process::Command::new("openssl")
            .current_dir(dir)
            .args([
                "x509",
                "-inform",
                "DER",
                "-in",
                "basic.cer",
                "-out",
                "basic.pem",
            ]),
    );
    // openssl sends a 16-octet nonce by default and fails on a missing or changed echo.
    let out = run_tool(
        std::process::Command::new("openssl")
            .current_dir(dir)
            .args([
                "ocsp",
                "-issuer",
                "basic.pem",
                "-serial",
                "0x424242",
                "-url",
                &format!("http://{}/ocsp/basic", app.http),
                "-noverify",
                "-resp_text",
            ]),
    );
    assert!(out.contains("OCSP Nonce"), "{out}");
    assert!(out.contains("0x424242: unknown"), "{out}");
}
