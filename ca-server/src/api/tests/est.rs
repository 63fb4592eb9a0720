//! In-process tests of the EST handlers: the router with a real authority on a fresh CA and
//! SQLite database in a temp directory, driven by `tower::ServiceExt::oneshot` (no sockets, no
//! TLS: the client chain extension is set as the TLS listener would set it). Property tests of
//! the EST body decoding, the Content-Type check and HTTP Basic are in `est_props.rs`.

#[path = "est_props.rs"]
mod props;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use tower::ServiceExt;

use super::BODY_LIMIT;
use crate::tests_support::{apply, config, mutations, p256_csr};
use crate::tls::UnverifiedClientChain;

const PKCS10: &str = "application/pkcs10";
const ENROLL: &str = "/.well-known/est/simpleenroll";

/// A fresh CA and its EST router.
struct TestCa {
    ca: crate::tests_support::TestCa,
    router: Router,
}

impl TestCa {
    async fn new() -> TestCa {
        let ca = crate::tests_support::TestCa::init().await;
        let metrics = Arc::new(crate::telemetry::Metrics::new());
        let router = crate::api::est_router(ca.authority.clone(), metrics, Duration::from_secs(10));
        TestCa { ca, router }
    }

    /// Registers a pump and returns its `Authorization: Basic` header value.
    async fn pump_with_token(&self, serial: &str) -> String {
        let token = self.ca.pump_with_token(serial).await;
        format!("Basic {}", STANDARD.encode(format!("{serial}:{token}")))
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// `POST path` with these headers, as a client without a TLS certificate.
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
        let mut request = Request::post(path).extension(UnverifiedClientChain::default());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).expect("request")).await
    }

    async fn get(&self, path: &str) -> Answer {
        let request = Request::get(path)
            .extension(UnverifiedClientChain::default())
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }
}

/// A response, read.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The `x-error-code` header, asserting that the body is the one line `code: message`.
    fn error_code(&self) -> &str {
        let code = self
            .headers
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>");
        assert!(
            self.body.starts_with(&format!("{code}: ")) && self.body.lines().count() == 1,
            "one-line body led by its code: {self:?}"
        );
        code
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The EST body for a DER CSR: base64, one line.
fn est_body(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// What a refused request must answer.
struct Refusal {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    /// Send the device's HTTP Basic credentials.
    credentials: bool,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

#[tokio::test]
async fn refused_enrollments_answer_their_status_and_stable_code() {
    let ca = TestCa::new().await;
    let basic = ca.pump_with_token("IP20000001").await;
    let good = p256_csr("IP20000001");
    let mut bad_signature = good.clone();
    let last = bad_signature.len() - 5;
    bad_signature[last] ^= 0x55;
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", good.clone()));
    let refusal = |name, content_type, body: Vec<u8>, status, code| Refusal {
        name,
        path: ENROLL,
        content_type,
        credentials: true,
        body,
        status,
        code,
    };
    let rows = vec![
        Refusal {
            credentials: false,
            ..refusal(
                "no credentials and no client certificate",
                Some(PKCS10),
                est_body(&good).into_bytes(),
                StatusCode::UNAUTHORIZED,
                "auth.required",
            )
        },
        refusal(
            "Content-Type text/plain",
            Some("text/plain"),
            est_body(&good).into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "est.content_type",
        ),
        refusal(
            "no Content-Type",
            None,
            est_body(&good).into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "est.content_type",
        ),
        refusal(
            "Content-Type application/pkcs10-x",
            Some("application/pkcs10-x"),
            est_body(&good).into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "est.content_type",
        ),
        refusal(
            "a body one byte over the limit",
            Some(PKCS10),
            vec![b'A'; BODY_LIMIT + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "est.too_large",
        ),
        refusal(
            "malformed base64",
            Some(PKCS10),
            b"MIIB!!not*base64".to_vec(),
            StatusCode::BAD_REQUEST,
            "csr.not_base64",
        ),
        refusal(
            "base64 without its padding",
            Some(PKCS10),
            // A length of 3n + 2 bytes ends in one `=`.
            est_body(&good[..good.len() - good.len() % 3 - 1])
                .trim_end_matches('=')
                .as_bytes()
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "csr.not_base64",
        ),
        refusal(
            "URL-safe base64",
            Some(PKCS10),
            base64::engine::general_purpose::URL_SAFE
                .encode([0xfb; 48])
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "csr.not_base64",
        ),
        refusal(
            "PEM instead of base64",
            Some(PKCS10),
            pem.into_bytes(),
            StatusCode::BAD_REQUEST,
            "csr.not_base64",
        ),
        refusal(
            "raw DER instead of base64",
            Some(PKCS10),
            good.clone(),
            StatusCode::BAD_REQUEST,
            "csr.not_base64",
        ),
        refusal(
            "an empty body",
            Some(PKCS10),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "csr.not_der",
        ),
        refusal(
            "base64 of garbage",
            Some(PKCS10),
            est_body(b"garbage").into_bytes(),
            StatusCode::BAD_REQUEST,
            "csr.not_der",
        ),
        refusal(
            "a truncated CSR",
            Some(PKCS10),
            est_body(&good[..good.len() / 2]).into_bytes(),
            StatusCode::BAD_REQUEST,
            "csr.not_der",
        ),
        refusal(
            "a bad signature",
            Some(PKCS10),
            est_body(&bad_signature).into_bytes(),
            StatusCode::BAD_REQUEST,
            "csr.bad_signature",
        ),
        refusal(
            "another device's serialNumber",
            Some(PKCS10),
            est_body(&p256_csr("IP20000002")).into_bytes(),
            StatusCode::FORBIDDEN,
            "csr.subject_mismatch",
        ),
        Refusal {
            path: "/.well-known/est/no-such-product/simpleenroll",
            ..refusal(
                "an unknown label",
                Some(PKCS10),
                est_body(&good).into_bytes(),
                StatusCode::NOT_FOUND,
                "est.unknown_label",
            )
        },
        Refusal {
            path: "/.well-known/est/simplereenroll",
            credentials: false,
            ..refusal(
                "re-enrollment without a client certificate",
                Some(PKCS10),
                est_body(&good).into_bytes(),
                StatusCode::UNAUTHORIZED,
                "auth.certificate_required",
            )
        },
        Refusal {
            path: "/.well-known/est/simplereenroll",
            credentials: false,
            ..refusal(
                "re-enrollment with the wrong Content-Type",
                Some("application/json"),
                est_body(&good).into_bytes(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "est.content_type",
            )
        },
    ];
    let mut failures = Vec::new();
    for row in rows {
        let mut headers = Vec::new();
        if let Some(content_type) = row.content_type {
            headers.push(("content-type", content_type));
        }
        if row.credentials {
            headers.push(("authorization", basic.as_str()));
        }
        let answer = ca.post(row.path, &headers, row.body).await;
        let got = (answer.status, answer.error_code().to_owned());
        if got != (row.status, row.code.to_owned()) {
            failures.push(format!(
                "{}: expected {} {}, got {answer:?}",
                row.name, row.status, row.code
            ));
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            assert!(
                answer.headers.contains_key(header::WWW_AUTHENTICATE),
                "{}",
                row.name
            );
        }
        assert!(
            answer.content_type().starts_with("text/plain"),
            "{}",
            row.name
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // None of these consumed the token: the device still enrolls with it.
    let answer = ca
        .post(
            ENROLL,
            &[("content-type", PKCS10), ("authorization", basic.as_str())],
            est_body(&good),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// Accepted bodies: base64 with MIME line breaks, a Content-Type with parameters in another
/// case; the answer is a one-line base64 certs-only PKCS#7 holding the device certificate.
#[tokio::test]
async fn enrollment_accepts_what_rfc_8951_allows_and_answers_certs_only() {
    let ca = TestCa::new().await;
    let basic = ca.pump_with_token("IP20000003").await;
    let csr = p256_csr("IP20000003");
    let wrapped: String = est_body(&csr)
        .as_bytes()
        .chunks(64)
        .map(|line| format!("{}\r\n", String::from_utf8_lossy(line)))
        .collect();
    let answer = ca
        .post(
            ENROLL,
            &[
                ("content-type", "Application/PKCS10; charset=us-ascii"),
                ("authorization", basic.as_str()),
            ],
            wrapped,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.content_type(),
        "application/pkcs7-mime; smime-type=certs-only"
    );
    assert!(!answer.body.contains('\n'), "one line: {answer:?}");
    let p7 = STANDARD.decode(&answer.body).expect("base64");
    let certificates = iomt_core::wire::parse_certs_only(&p7).expect("certs-only");
    assert_eq!(certificates.len(), 1);
    let (_, certificate) =
        x509_parser::parse_x509_certificate(&certificates[0]).expect("certificate");
    let csr = crate::authority::Csr::parse(&csr).expect("CSR");
    assert_eq!(certificate.public_key().raw, csr.spki_der.as_slice());

    // The other EST reads answer base64 bodies their decoders read back.
    let cacerts = ca.get("/.well-known/est/cacerts").await;
    assert_eq!(cacerts.status, StatusCode::OK, "{cacerts:?}");
    let p7 = STANDARD.decode(&cacerts.body).expect("base64");
    assert!(
        iomt_core::wire::parse_certs_only(&p7)
            .expect("certs-only")
            .len()
            >= 2
    );
    let csrattrs = ca
        .get("/.well-known/est/example-infusion-pump/csrattrs")
        .await;
    assert_eq!(csrattrs.status, StatusCode::OK, "{csrattrs:?}");
    assert_eq!(csrattrs.content_type(), "application/csrattrs");
    let der = STANDARD.decode(&csrattrs.body).expect("base64");
    let requirements = iomt_core::wire::decode_csrattrs(&der).expect("csrattrs");
    assert!(
        requirements
            .oids
            .contains(&iomt_core::oids::AT_SERIAL_NUMBER)
    );
}

/// Whatever the body, the answer is a 4xx with a stable code, never a 5xx, and the token
/// stays usable.
#[test]
fn hostile_bodies_are_refused_with_a_4xx_and_a_stable_code() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ca, basic, good) = runtime.block_on(async {
        let ca = TestCa::new().await;
        let basic = ca.pump_with_token("IP20000004").await;
        (ca, basic, p256_csr("IP20000004"))
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "[A-Za-z0-9+/=\r\n ]{0,512}".prop_map(String::into_bytes),
        // A mutation that changes nothing (a byte overwritten with itself) is no test.
        mutations().prop_map(move |edits| Some(apply(&good, &edits))
            .filter(|m| *m != good)
            .unwrap_or_default()),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(config(64));
    runner
        .run(&(body, any::<bool>()), |(body, encode)| {
            let body = if encode {
                STANDARD.encode(&body).into_bytes()
            } else {
                body
            };
            let answer = runtime.block_on(ca.post(
                ENROLL,
                &[("content-type", PKCS10), ("authorization", basic.as_str())],
                body,
            ));
            prop_assert!(
                answer.status.is_client_error(),
                "expected a 4xx: {:?}",
                answer
            );
            let code = answer.error_code();
            prop_assert!(
                code.starts_with("csr.") || code == "policy.key_not_allowed",
                "{:?}",
                answer
            );
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}
