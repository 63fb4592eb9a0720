//! OCSP (RFC 6960): `parse_request` (what any HTTP client sends the responder), `Nonce::parse`,
//! and `read_answers` / `check_response` (what a relying party reads back).

use std::sync::LazyLock;

use der::Decode;
use der::asn1::OctetString;
use iomt_core::ocsp::{
    Answer, CertIdHash, ErrorKind, MAX_REQUEST, NONCE_OCTETS, Nonce, OcspCheckError,
    OcspRequestError, OcspResponseError, ParsedRequest, Status, build_request, build_response,
    check_response, error_response, parse_request, read_answers,
};
use proptest::prelude::*;
use rcgen::{PublicKeyData, SigningKey};

use super::{apply, config, mutations};

/// The test CA: it issues the certificates asked about and signs the responses itself.
static CA: LazyLock<(rcgen::KeyPair, Vec<u8>)> = LazyLock::new(super::ca);

/// Latest time a GeneralizedTime holds: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;

fn ca_der() -> &'static [u8] {
    &CA.1
}

/// A request for `serial` under the test CA.
fn request(serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    build_request(ca_der(), serial, nonce).expect("build request")
}

/// A successful response signed by the test CA itself (its certificate included).
fn response(parsed: &ParsedRequest, status: Status, this: i64, next: i64) -> Vec<u8> {
    let answers: Vec<Answer<'_>> = parsed
        .queries
        .iter()
        .map(|query| Answer {
            query,
            status,
            this_update: this,
            next_update: next,
        })
        .collect();
    build_response(
        ca_der(),
        CA.0.der_bytes(),
        this,
        &answers,
        parsed.nonce.as_ref(),
        |tbs| CA.0.sign(tbs).map_err(|e| e.to_string()),
    )
    .expect("build response")
}

/// A request refusal is one of the typed variants and says something.
fn assert_typed_request_refusal(error: &OcspRequestError) {
    match error {
        OcspRequestError::Malformed(_)
        | OcspRequestError::TooLarge
        | OcspRequestError::Empty
        | OcspRequestError::UnsupportedHash(_)
        | OcspRequestError::BadNonce => assert!(!error.to_string().is_empty()),
    }
}

/// What every accepted request satisfies.
fn assert_accepted_request(parsed: &ParsedRequest) {
    assert!(
        !parsed.queries.is_empty(),
        "an accepted request asks about something"
    );
    if let Some(nonce) = &parsed.nonce {
        let inner = OctetString::from_der(nonce.encoded()).expect("a checked nonce is DER");
        assert!(NONCE_OCTETS.contains(&inner.as_bytes().len()));
    }
}

fn assert_typed_check_refusal(error: &OcspCheckError) {
    match error {
        OcspCheckError::Unsuccessful(_)
        | OcspCheckError::Malformed(_)
        | OcspCheckError::BadSignature(_)
        | OcspCheckError::NotAnswered
        | OcspCheckError::NonceMismatch
        | OcspCheckError::Stale => assert!(!error.to_string().is_empty()),
    }
}

/// A DER INTEGER's contents for the unsigned big-endian `bytes` (what a CertID carries).
fn integer_contents(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let mut out = bytes[first..].to_vec();
    if out.first().is_none_or(|b| *b >= 0x80) {
        out.insert(0, 0);
    }
    out
}

/// A positive serial of 1 to 20 octets whose encoding fits the 20 octets RFC 5280 allows.
fn serial() -> impl Strategy<Value = Vec<u8>> {
    (1u8..=0x7f, prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(first, rest)| {
        let mut serial = vec![first];
        serial.extend(rest);
        serial
    })
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Good),
        Just(Status::Unknown),
        (0..=MAX_TIME, proptest::option::of(any::<u8>()))
            .prop_map(|(at, reason)| Status::Revoked { at, reason }),
    ]
}

/// The reason code a response carries for `code`: RFC 5280 CRLReason values (7 is unused).
fn carried_reason(code: Option<u8>) -> Option<u8> {
    code.filter(|c| matches!(c, 0..=6 | 8..=10))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_request_of_arbitrary_bytes_refuses_typed(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        match parse_request(&bytes) {
            Ok(parsed) => assert_accepted_request(&parsed),
            Err(error) => assert_typed_request_refusal(&error),
        }
    }

    #[test]
    fn parse_request_of_der_shaped_bytes_refuses_typed(bytes in super::der_like()) {
        match parse_request(&bytes) {
            Ok(parsed) => assert_accepted_request(&parsed),
            Err(error) => assert_typed_request_refusal(&error),
        }
    }

    #[test]
    fn parse_request_over_the_limit_is_too_large(extra in 1usize..4096, fill in any::<u8>()) {
        let bytes = vec![fill; MAX_REQUEST + extra];
        prop_assert_eq!(parse_request(&bytes), Err(OcspRequestError::TooLarge));
    }

    #[test]
    fn parse_request_of_a_mutated_request_refuses_typed(
        serial in serial(),
        nonce in proptest::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
        edits in mutations(),
    ) {
        let mutated = apply(&request(&serial, nonce.as_deref()), &edits);
        match parse_request(&mutated) {
            Ok(parsed) => assert_accepted_request(&parsed),
            Err(error) => assert_typed_request_refusal(&error),
        }
    }

    /// build_request → parse_request gives back the serial, the issuer hashes and the nonce.
    #[test]
    fn build_request_round_trips_through_parse_request(
        serial in serial(),
        nonce in proptest::option::of(prop::collection::vec(any::<u8>(), NONCE_OCTETS)),
    ) {
        let parsed = parse_request(&request(&serial, nonce.as_deref())).expect("parse");
        prop_assert_eq!(parsed.queries.len(), 1);
        let query = &parsed.queries[0];
        prop_assert_eq!(query.hash, CertIdHash::Sha1);
        prop_assert_eq!(&query.serial, &integer_contents(&serial));
        let (_, issuer) = x509_parser::parse_x509_certificate(ca_der()).expect("CA");
        prop_assert_eq!(&query.issuer_name_hash, &CertIdHash::Sha1.digest(issuer.subject().as_raw()));
        prop_assert_eq!(
            &query.issuer_key_hash,
            &CertIdHash::Sha1.digest(&issuer.public_key().subject_public_key.data)
        );
        let echoed = parsed
            .nonce
            .map(|n| OctetString::from_der(n.encoded()).expect("nonce").as_bytes().to_vec());
        prop_assert_eq!(echoed, nonce);
    }

    /// A nonce longer than RFC 9654 allows makes the request malformed (BadNonce), whatever
    /// its length.
    #[test]
    fn request_with_an_oversized_nonce_is_refused_bad_nonce(len in 129usize..2000) {
        let bytes = request(&[1], Some(&vec![0x5a; len]));
        prop_assert_eq!(parse_request(&bytes), Err(OcspRequestError::BadNonce));
    }

    /// `Nonce::parse` accepts exactly a DER OCTET STRING of 1–128 octets, and refuses anything
    /// else with BadNonce.
    #[test]
    fn nonce_parse_accepts_exactly_rfc_9654_nonces(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|v| {
            der::Encode::to_der(&OctetString::new(v).expect("octets")).expect("der")
        }),
    ]) {
        let expected = OctetString::from_der(&bytes)
            .is_ok_and(|o| NONCE_OCTETS.contains(&o.as_bytes().len()));
        match Nonce::parse(&bytes) {
            Ok(nonce) => {
                prop_assert!(expected, "accepted {:?}", bytes);
                prop_assert_eq!(nonce.encoded(), bytes.as_slice());
            }
            Err(error) => {
                prop_assert!(!expected, "refused {:?}", bytes);
                prop_assert_eq!(error, OcspRequestError::BadNonce);
            }
        }
    }

    #[test]
    fn read_answers_of_arbitrary_bytes_refuses_typed(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        super::der_like(),
    ]) {
        if let Err(error) = read_answers(&bytes) {
            assert_typed_check_refusal(&error);
        }
    }

    #[test]
    fn check_response_of_arbitrary_bytes_refuses_typed(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        super::der_like(),
    ]) {
        let checked = check_response(&bytes, ca_der(), &[1], None, 0);
        prop_assert!(checked.is_err(), "arbitrary bytes verified: {:?}", bytes);
        if let Err(error) = checked {
            assert_typed_check_refusal(&error);
        }
    }

    /// Times beyond what a GeneralizedTime holds are refused with a DER error, not a panic.
    #[test]
    fn build_response_at_any_time_encodes_or_refuses_typed(
        this in any::<i64>(),
        next in any::<i64>(),
        status in prop_oneof![
            Just(Status::Good),
            (any::<i64>(), proptest::option::of(any::<u8>()))
                .prop_map(|(at, reason)| Status::Revoked { at, reason }),
        ],
    ) {
        let parsed = parse_request(&request(&[7], None)).expect("parse");
        let answers = [Answer { query: &parsed.queries[0], status, this_update: this, next_update: next }];
        let built = build_response(ca_der(), CA.0.der_bytes(), this, &answers, None, |tbs| {
            CA.0.sign(tbs).map_err(|e| e.to_string())
        });
        match built {
            Ok(der) => {
                read_answers(&der).expect("what build_response encodes reads back");
            }
            Err(error) => prop_assert!(matches!(error, OcspResponseError::Der(_)), "{}", error),
        }
    }
}

proptest! {
    // Each case signs a response (ECDSA): fewer cases by default.
    #![proptest_config(config(64))]

    /// parse → answer → build_response → read_answers and check_response give back the status,
    /// the times, the CertID and the nonce.
    #[test]
    fn build_response_round_trips_through_read_answers_and_check_response(
        serial in serial(),
        nonce in proptest::option::of(prop::collection::vec(any::<u8>(), NONCE_OCTETS)),
        status in status(),
        this in 0..MAX_TIME / 2,
        lifetime in 0..MAX_TIME / 2,
    ) {
        let parsed = parse_request(&request(&serial, nonce.as_deref())).expect("parse");
        let der = response(&parsed, status, this, this + lifetime);
        let expected = match status {
            Status::Revoked { at, reason } => Status::Revoked { at, reason: carried_reason(reason) },
            other => other,
        };
        let answers = read_answers(&der).expect("read");
        prop_assert_eq!(answers.len(), 1);
        prop_assert_eq!(&answers[0].cert_id, &parsed.queries[0].key());
        prop_assert_eq!(answers[0].status, expected);
        prop_assert_eq!(answers[0].this_update, this);
        prop_assert_eq!(answers[0].next_update, Some(this + lifetime));
        let checked = check_response(&der, ca_der(), &integer_contents(&serial), nonce.as_deref(), this);
        prop_assert_eq!(checked, Ok(expected));
    }

    /// A mutated signed response never verifies as anything but what was signed.
    #[test]
    fn mutated_response_never_verifies_another_status(
        serial in serial(),
        status in status(),
        edits in mutations(),
    ) {
        let parsed = parse_request(&request(&serial, Some(b"nonce"))).expect("parse");
        let now = 1_800_000_000;
        let der = response(&parsed, status, now, now + 86_400);
        let original = read_answers(&der).expect("read");
        let mutated = apply(&der, &edits);
        match read_answers(&mutated) {
            Ok(_) => {}
            Err(error) => assert_typed_check_refusal(&error),
        }
        match check_response(&mutated, ca_der(), &integer_contents(&serial), Some(b"nonce"), now) {
            Ok(verified) => prop_assert_eq!(verified, original[0].status),
            Err(error) => assert_typed_check_refusal(&error),
        }
    }
}

/// The unsuccessful responses the responder sends read back as their status.
#[test]
fn error_responses_read_back_as_unsuccessful() {
    use x509_ocsp::OcspResponseStatus as S;
    for (kind, status) in [
        (ErrorKind::Internal, S::InternalError),
        (ErrorKind::Malformed, S::MalformedRequest),
        (ErrorKind::TryLater, S::TryLater),
        (ErrorKind::Unauthorized, S::Unauthorized),
    ] {
        assert_eq!(
            read_answers(&error_response(kind)),
            Err(OcspCheckError::Unsuccessful(status)),
            "{kind:?}"
        );
    }
}
