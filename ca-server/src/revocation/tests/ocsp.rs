//! Property tests for the OCSP responder (`Revocation::ocsp`, what `/ocsp/<responder>` runs on
//! any body): hostile requests get an OCSP error status, never a failure or an internal error;
//! a request for a certificate this CA issued gets a signed answer that verifies.

use iomt_core::ocsp::{OcspCheckError, Status, build_request, check_response, read_answers};
use iomt_core::policy::Level;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::authority::TokenEnrollment;
use crate::revocation::RevocationError;
use crate::tests_support::{TestCa, apply, config, der_like, mutations, p256_csr};

const SERIAL: &str = "IP20000005";

/// A CA that issued one pump certificate; its DER and the issuing CA's.
async fn ca_with_a_device() -> (TestCa, Vec<u8>, Vec<u8>) {
    let ca = TestCa::init().await;
    let token = ca.pump_with_token(SERIAL).await;
    let issued = ca
        .authority
        .enroll_with_token(TokenEnrollment {
            label: None,
            serial: SERIAL,
            token: &token,
            csr_der: &p256_csr(SERIAL),
            channel_binding: None,
        })
        .await
        .expect("enroll");
    let issuer = ca.material.issuing(Level::Basic).cert_der.to_vec();
    (ca, issued.certificate.der.clone(), issuer)
}

fn raw_serial(certificate: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate).expect("certificate");
    cert.raw_serial().to_vec()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What hostile input may get: an OCSP error status the client understands, or (for a request
/// that parses) answers; never internalError or tryLater, and never a failure of the call.
fn assert_refused_or_answered(answered: Result<Vec<u8>, RevocationError>) {
    let der = answered.expect("our responder names never fail");
    match read_answers(&der) {
        Ok(_) => {}
        // (x509-ocsp is not a dependency of this crate: the status by name.)
        Err(OcspCheckError::Unsuccessful(status))
            if matches!(
                format!("{status:?}").as_str(),
                "MalformedRequest" | "Unauthorized"
            ) => {}
        Err(other) => panic!("hostile request answered {other:?}"),
    }
}

#[test]
fn hostile_requests_get_an_ocsp_error_status() {
    let runtime = runtime();
    let (ca, certificate, issuer) = runtime.block_on(ca_with_a_device());
    let request =
        build_request(&issuer, &raw_serial(&certificate), Some(b"nonce")).expect("request");
    let names = ca.revocation.responder_names();
    let responder = prop::sample::select(names.clone());
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        der_like(),
        mutations().prop_map(move |edits| apply(&request, &edits)),
    ];
    TestRunner::new(config(256))
        .run(&(responder, body), |(responder, body)| {
            assert_refused_or_answered(runtime.block_on(ca.revocation.ocsp(&responder, &body)));
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));

    // A responder name that is not ours is the one failure (404), whatever it is.
    TestRunner::new(config(64))
        .run(&any::<String>(), |name| {
            if !names.contains(&name) {
                let answered = runtime.block_on(ca.revocation.ocsp(&name, &[]));
                prop_assert!(
                    matches!(&answered, Err(RevocationError::UnknownResponder(n)) if *n == name),
                    "{:?}",
                    answered
                );
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// build_request → the responder → check_response: the issued certificate is good, with the
/// nonce echoed, in a response signed for the issuing CA.
#[test]
fn request_for_an_issued_certificate_round_trips_to_good() {
    let runtime = runtime();
    let (ca, certificate, issuer) = runtime.block_on(ca_with_a_device());
    let serial = raw_serial(&certificate);
    TestRunner::new(config(32))
        .run(
            &proptest::option::of(prop::collection::vec(any::<u8>(), 1..=128)),
            |nonce| {
                let request = build_request(&issuer, &serial, nonce.as_deref()).expect("request");
                let der = runtime
                    .block_on(ca.revocation.ocsp("basic", &request))
                    .expect("answer");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let status = check_response(&der, &issuer, &serial, nonce.as_deref(), now);
                prop_assert_eq!(status, Ok(Status::Good));
                Ok(())
            },
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
}
