//! Property tests of what the EST handlers parse before the authority sees anything: the
//! base64 body (RFC 8951 §3.2), the Content-Type and the HTTP Basic credential.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::super::{decode_base64_body, require_content_type};
use super::PKCS10;
use crate::auth::token::parse_basic;
use crate::tests_support::config;

fn header_map(content_type: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers
}

/// Base64 text with whitespace (space, tab, LF, CRLF) inserted anywhere.
fn with_whitespace(text: &str, breaks: &[(prop::sample::Index, &'static str)]) -> String {
    let mut out = text.to_owned();
    for (at, white) in breaks {
        let i = at.index(out.len() + 1);
        out.insert_str(i, white);
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    /// Decoding either gives bytes or refuses with 400 csr.not_base64.
    #[test]
    fn body_decoding_refuses_typed(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(error) = decode_base64_body(Bytes::from(body)) {
            prop_assert_eq!(error.status, StatusCode::BAD_REQUEST);
            prop_assert_eq!(error.code.as_str(), "csr.not_base64");
        }
    }

    /// RFC 8951 §3.2: base64 with whitespace anywhere decodes to the bytes encoded.
    #[test]
    fn body_decoding_round_trips_with_any_line_breaks(
        der in prop::collection::vec(any::<u8>(), 0..600),
        breaks in prop::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![Just(" "), Just("\t"), Just("\n"), Just("\r\n")]),
            0..24,
        ),
    ) {
        let body = with_whitespace(&STANDARD.encode(&der), &breaks);
        let decoded = decode_base64_body(Bytes::from(body));
        prop_assert_eq!(decoded.ok(), Some(der));
    }

    /// Only `application/pkcs10` (any case, any parameters) passes; anything else is 415.
    #[test]
    fn content_type_check_accepts_only_pkcs10(content_type in proptest::option::of(prop_oneof![
        "[ -~]{0,40}",
        "(application|Application|APPLICATION)/(pkcs10|PKCS10|pkcs7-mime)( ?; ?[a-z]+=[a-z0-9-]+)?",
    ])) {
        let headers = header_map(content_type.as_deref());
        let sent = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let essence = sent.unwrap_or("").split(';').next().unwrap_or("").trim();
        match require_content_type(&headers, PKCS10) {
            Ok(()) => prop_assert!(essence.eq_ignore_ascii_case(PKCS10), "{:?}", sent),
            Err(error) => {
                prop_assert!(!essence.eq_ignore_ascii_case(PKCS10), "{:?}", sent);
                prop_assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                prop_assert_eq!(error.code.as_str(), "est.content_type");
            }
        }
    }

    /// `Basic base64(serial:token)` gives back the serial and the token; any other header
    /// value is not a credential, and nothing panics.
    #[test]
    fn basic_credentials_round_trip(
        serial in "[^:]{0,32}",
        token in "[ -~]{0,64}",
        scheme in prop_oneof![Just("Basic"), Just("basic"), Just("BASIC")],
    ) {
        let header = format!("{scheme} {}", STANDARD.encode(format!("{serial}:{token}")));
        let credential = parse_basic(&header).expect("a Basic credential");
        prop_assert_eq!(&credential.serial, &serial);
        prop_assert_eq!(&credential.token, &token);
    }

    #[test]
    fn arbitrary_authorization_headers_do_not_panic(header in prop_oneof![
        any::<String>(),
        "(Basic|Bearer|basic) [ -~]{0,64}",
        "Basic [A-Za-z0-9+/=]{0,64}",
    ]) {
        if let Some(credential) = parse_basic(&header) {
            prop_assert!(header.trim().to_ascii_lowercase().starts_with("basic "));
            prop_assert!(!credential.serial.contains(':'));
        }
    }
}
