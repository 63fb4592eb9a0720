//! Property tests for `Csr::parse` and the checks after it: arbitrary and mutated bytes never
//! panic and are refused with a `CsrError`; a mutated CSR never gets another key past the proof
//! of possession; subject values come back from the parser as they were written.

use std::sync::LazyLock;

use proptest::prelude::*;
use rcgen::{DistinguishedName, DnType, DnValue, KeyPair};

use super::super::{Csr, CsrError, check_key};
use super::fixtures::{SERIAL, csr_with, honest, identity, p256};
use crate::tests_support::{apply, config, der_like, mutations};

/// One key for every case: generating one per case would dominate the run.
static KEY: LazyLock<KeyPair> = LazyLock::new(p256);
static HONEST: LazyLock<Vec<u8>> = LazyLock::new(|| honest(&KEY));

fn pump() -> &'static iomt_core::policy::Policy {
    static POLICIES: LazyLock<iomt_core::policy::PolicySet> = LazyLock::new(|| {
        iomt_core::policy::PolicySet::from_sources(iomt_core::policy::shipped_sources())
            .expect("shipped policies")
    });
    POLICIES.product("example-infusion-pump").expect("pump")
}

/// Every refusal is a variant with something to say.
fn assert_typed(error: &CsrError) {
    match error {
        CsrError::NotDer(_)
        | CsrError::BadSignature
        | CsrError::NoSerialNumber
        | CsrError::UnreadableKey(_)
        | CsrError::SubjectMismatch { .. }
        | CsrError::SubjectAttributeForbidden { .. }
        | CsrError::SanMismatch { .. }
        | CsrError::SanForbidden { .. } => assert!(!error.to_string().is_empty()),
    }
}

/// Runs every check `vet_csr` runs; returns the SPKI of a request that passed them all.
fn vet(der: &[u8]) -> Option<Vec<u8>> {
    let csr = match Csr::parse(der) {
        Ok(csr) => csr,
        Err(error) => {
            assert!(
                matches!(error, CsrError::NotDer(_) | CsrError::UnreadableKey(_)),
                "the parser refuses only structure and keys: {error:?}"
            );
            return None;
        }
    };
    // Whatever parsed can be asked everything issuance asks.
    let _ = (csr.subject_serial_number(), csr.spki_sha256());
    check_key(pump(), csr.key).ok()?;
    if let Err(error) = csr.verify_signature() {
        assert_eq!(error, CsrError::BadSignature);
        return None;
    }
    if let Err(error) = csr.check_identity(&identity()) {
        assert_typed(&error);
        return None;
    }
    Some(csr.spki_der)
}

/// A CSR whose subject is the CN `cn` alone, signed by the shared key.
fn with_cn(cn: &str) -> Vec<u8> {
    csr_with(
        &KEY,
        |params| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, DnValue::Utf8String(cn.to_owned()));
            params.distinguished_name = dn;
        },
        Vec::new(),
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_refused_typed(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        der_like(),
    ]) {
        prop_assert!(vet(&bytes).is_none(), "arbitrary bytes passed every check: {:?}", bytes);
    }

    /// Whatever a mutation does, no other key gets past the proof of possession.
    #[test]
    fn mutated_request_never_certifies_another_key(edits in mutations()) {
        let mutated = apply(&HONEST, &edits);
        if let Some(spki) = vet(&mutated) {
            prop_assert_eq!(spki, rcgen::PublicKeyData::subject_public_key_info(&*KEY));
        }
    }
}

proptest! {
    // Each case signs a request.
    #![proptest_config(config(64))]

    /// A CN comes back from the parser as written: accepted when it is the record's, refused
    /// as a mismatch naming the requested value otherwise.
    #[test]
    fn subject_cn_round_trips_into_the_identity_check(cn in prop_oneof![
        "[ -~]{1,64}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        Just(identity().common_name),
    ]) {
        let csr = Csr::parse(&with_cn(&cn)).expect("rcgen's CSR parses");
        csr.verify_signature().expect("rcgen's CSR is signed");
        let registered = identity().common_name;
        match csr.check_identity(&identity()) {
            Ok(()) => prop_assert_eq!(&cn, &registered),
            Err(CsrError::SubjectMismatch { attribute, requested, registered: record }) => {
                prop_assert_eq!(attribute, "CN");
                prop_assert_eq!(requested, cn);
                prop_assert_eq!(record, registered);
            }
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }

    /// The subject serialNumber a station request names is read back as written. (No `?`:
    /// PrintableString allows it, but yasna 0.6, rcgen's writer, panics on it.)
    #[test]
    fn subject_serial_number_round_trips(serial in "[A-Za-z0-9 '()+,./:=-]{1,64}") {
        let der = csr_with(
            &KEY,
            |params| {
                let mut dn = DistinguishedName::new();
                dn.push(
                    DnType::CustomDnType(vec![2, 5, 4, 5]),
                    DnValue::PrintableString(serial.as_str().try_into().expect("printable")),
                );
                params.distinguished_name = dn;
            },
            Vec::new(),
        );
        let csr = Csr::parse(&der).expect("parse");
        prop_assert_eq!(csr.subject_serial_number(), Some(serial.as_str()));
        prop_assert_eq!(csr.check_identity(&identity()).is_ok(), serial == SERIAL);
    }
}
