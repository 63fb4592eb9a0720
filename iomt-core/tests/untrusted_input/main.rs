//! Property-based tests of every iomt-core parser of untrusted bytes: OCSP requests and
//! responses, the EST wire bodies (certs-only PKCS#7, csrattrs) and policy files. Each asserts
//! "no panic, a typed refusal, and the round trip where an encoder exists".
//!
//! Case counts default to the value of `PROPTEST_CASES` (256 when unset), lowered per test where
//! a case costs a signature or a full policy load; `PROPTEST_CASES=5000 cargo test -p iomt-core
//! --test untrusted_input` runs them all harder.

mod attestation;
mod ocsp;
mod policy;
mod wire;

pub use iomt_core::testing::{Mutation, apply, config, der_like, mutations, tlv};

/// A self-signed P-256 CA certificate and its key.
pub fn ca() -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "untrusted-input test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).expect("cert").der().to_vec();
    (key, der)
}
