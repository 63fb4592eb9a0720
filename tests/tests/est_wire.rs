//! EST on the wire: RFC 8951 base64 (answers without line breaks, requests with or without),
//! no registration oracle on the token route, and one-line error bodies whatever the input
//! (issue 17, items 8 and 9).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use iomt_tests::{MONITOR, PUMP, TestApp, p256_csr, require_tool, run_tool};

/// The body of a successful answer: one base64 line, no CR or LF anywhere, and it decodes to a
/// certs-only PKCS#7.
fn assert_single_line_base64(body: &str) -> Vec<Vec<u8>> {
    assert!(!body.is_empty());
    assert!(!body.contains(['\n', '\r', ' ']), "line breaks in {body:?}");
    let der = STANDARD.decode(body).expect("strict RFC 4648 base64");
    iomt_core::wire::parse_certs_only(&der).expect("certs-only PKCS#7")
}

/// `text` broken into `width`-column lines ending in `eol`.
fn wrapped(text: &str, width: usize, eol: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in text.as_bytes().chunks(width) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push_str(eol);
    }
    out.into_bytes()
}

#[tokio::test]
async fn cacerts_and_simpleenroll_answer_base64_without_line_breaks() {
    let app = TestApp::spawn().await;
    let response = app
        .http_client()
        .get(format!("{}/.well-known/est/cacerts", app.server_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let certs = assert_single_line_base64(&response.text().await.unwrap());
    assert!(!certs.is_empty());

    let token = app.pump_with_token("IP27200001").await;
    let (_key, csr) = p256_csr("IP27200001");
    let (status, code, body) = app
        .post_simpleenroll(
            "IP27200001",
            &token,
            "application/pkcs10",
            TestApp::est_body(&csr),
        )
        .await;
    assert_eq!(status, 200, "{code}: {body}");
    assert_eq!(assert_single_line_base64(&body).len(), 1);
}

/// Turns a base64 string into a request body.
type Encode = fn(&str) -> Vec<u8>;

#[tokio::test]
async fn simpleenroll_with_wrapped_or_unwrapped_base64_enrolls() {
    let app = TestApp::spawn().await;
    let bodies: [(&str, Encode); 4] = [
        ("unwrapped", |b64| b64.as_bytes().to_vec()),
        ("64 columns, LF", |b64| wrapped(b64, 64, "\n")),
        ("76 columns, CRLF", |b64| wrapped(b64, 76, "\r\n")),
        ("unwrapped, trailing CRLF", |b64| {
            format!("{b64}\r\n").into_bytes()
        }),
    ];
    for (i, (form, encode)) in bodies.into_iter().enumerate() {
        let serial = format!("IP2720010{i}");
        let token = app.pump_with_token(&serial).await;
        let (_key, csr) = p256_csr(&serial);
        let body = encode(&STANDARD.encode(&csr));
        let (status, code, text) = app
            .post_simpleenroll(&serial, &token, "application/pkcs10", body)
            .await;
        assert_eq!(status, 200, "{form}: {code}: {text}");
        assert_single_line_base64(&text);
    }
}

#[tokio::test]
async fn simpleenroll_with_unknown_serial_answers_exactly_as_a_wrong_token() {
    let app = TestApp::spawn().await;
    app.register("IP27200201", PUMP).await;
    let _real = app.token("IP27200201").await;
    let (_key, csr) = p256_csr("IP27200201");
    let body = TestApp::est_body(&csr);
    let wrong_token = app
        .post_simpleenroll(
            "IP27200201",
            "guessed-token",
            "application/pkcs10",
            body.clone(),
        )
        .await;
    let unknown_serial = app
        .post_simpleenroll("IP27299999", "guessed-token", "application/pkcs10", body)
        .await;
    assert_eq!(wrong_token.0, 401);
    assert_eq!(wrong_token.1, "auth.token_unknown");
    assert_eq!(
        unknown_serial, wrong_token,
        "status, code and body are identical"
    );
    // A device whose product enrolls only through a station is not revealed either: the token
    // is judged before anything about the device.
    app.register("PM72700401", MONITOR).await;
    let (_key, csr) = p256_csr("PM72700401");
    let station_only = app
        .post_simpleenroll(
            "PM72700401",
            "guessed-token",
            "application/pkcs10",
            TestApp::est_body(&csr),
        )
        .await;
    assert_eq!(
        (station_only.0, station_only.1.as_str()),
        (401, "auth.token_unknown")
    );
}

#[tokio::test]
async fn simpleenroll_with_newline_in_basic_user_name_answers_one_line() {
    let app = TestApp::spawn().await;
    let (_key, csr) = p256_csr("IP27200301");
    for user in [
        "IP27200301\nX-Injected: yes",
        "IP\r\n\r\n<html>",
        "IP\u{1b}[2J\u{7f}\u{2028}x",
    ] {
        let credential = STANDARD.encode(format!("{user}:token"));
        let response = app
            .http_client()
            .post(format!("{}/.well-known/est/simpleenroll", app.server_url()))
            .header("authorization", format!("Basic {credential}"))
            .header("content-type", "application/pkcs10")
            .body(TestApp::est_body(&csr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{user:?}");
        assert!(response.headers().get("x-injected").is_none());
        let body = response.text().await.unwrap();
        assert_one_line(&body, user);
    }
}

#[tokio::test]
async fn est_with_control_characters_in_the_label_answers_one_line() {
    let app = TestApp::spawn().await;
    for label in ["a%0Ab", "x%0D%0AX-Injected:%20yes", "%E2%80%A8"] {
        let response = app
            .http_client()
            .get(format!(
                "{}/.well-known/est/{label}/cacerts",
                app.server_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{label}");
        assert!(response.headers().get("x-injected").is_none());
        assert_one_line(&response.text().await.unwrap(), label);
    }
    // The public listener echoes file names too.
    let response = app
        .plain_client()
        .get(format!("http://{}/crl/evil%0Aline.crl", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_one_line(&response.text().await.unwrap(), "crl");
}

fn assert_one_line(body: &str, input: &str) {
    let line = body.strip_suffix('\n').unwrap_or(body);
    assert!(
        !line.contains(['\n', '\r', '\u{2028}', '\u{2029}', '\u{1b}']),
        "{input:?} gave a multi-line body: {body:?}"
    );
}

/// The README's curl + openssl recipe, RFC 8951 style (`openssl base64 -A`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_recipe_with_curl_and_openssl_base64_a_enrolls() {
    if !require_tool("openssl", &["version"]) || !require_tool("curl", &["--version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP27200401").await;
    let dir = app.dir.path();
    let script = format!(
        "set -e
openssl ecparam -name prime256v1 -genkey -noout -out key.pem
openssl req -new -key key.pem -subj /serialNumber=IP27200401 -outform DER | openssl base64 -A > csr.b64
curl -sS --fail --cacert {root} -u 'IP27200401:{token}' -H 'Content-Type: application/pkcs10' \
     --data-binary @csr.b64 {url}/.well-known/est/simpleenroll \
  | openssl base64 -d -A | openssl pkcs7 -inform DER -print_certs > cert.pem
openssl x509 -in cert.pem -noout -subject",
        root = app.root_pem().display(),
        url = app.server_url(),
    );
    let out = run_tool(
        std::process::Command::new("sh")
            .current_dir(dir)
            .args(["-c", &script]),
    );
    assert!(out.contains("IP27200401"), "{out}");
    let csr = std::fs::read_to_string(dir.join("csr.b64")).unwrap();
    assert!(
        !csr.trim_end().contains('\n'),
        "openssl base64 -A wrote one line"
    );
}
