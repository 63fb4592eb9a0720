//! EST wire bodies (RFC 7030) the client reads from the server: certs-only PKCS#7
//! (`parse_certs_only`) and csrattrs (`decode_csrattrs`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use der::asn1::ObjectIdentifier;
use iomt_core::wire::{
    CsrRequirements, WireError, certs_only, decode_csrattrs, encode_csrattrs, parse_certs_only,
};
use proptest::prelude::*;

use super::{apply, config, mutations};

/// Four real certificates (key generation is too slow to do per case).
static CERTIFICATES: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| (0..4).map(|_| super::ca().1).collect());

fn assert_typed(error: &WireError) {
    match error {
        WireError::NotCertsOnly(_) | WireError::Der(_) => assert!(!error.to_string().is_empty()),
    }
}

/// A non-empty subset of the test certificates, in some order.
fn certificates() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::sample::subsequence((0..4).collect::<Vec<usize>>(), 1..=4)
        .prop_shuffle()
        .prop_map(|picked| {
            picked
                .into_iter()
                .map(|i| CERTIFICATES[i].clone())
                .collect()
        })
}

/// An OBJECT IDENTIFIER with 2 to 8 arcs, each below 2^28: const-oid 0.9 encodes larger arcs
/// wrongly (see `policy::policy_oid_with_an_arc_const_oid_cannot_encode_is_refused`).
fn oid() -> impl Strategy<Value = ObjectIdentifier> {
    (
        0u32..=2,
        0u32..40,
        prop::collection::vec(0u32..1 << 28, 0..6),
    )
        .prop_filter_map("encodable OID", |(first, second, rest)| {
            let mut dotted = format!("{first}.{second}");
            for arc in rest {
                dotted.push_str(&format!(".{arc}"));
            }
            ObjectIdentifier::new(&dotted).ok()
        })
}

fn requirements() -> impl Strategy<Value = CsrRequirements> {
    (
        prop::collection::vec(oid(), 0..6),
        prop::collection::vec((oid(), prop::collection::btree_set(oid(), 0..4)), 0..4),
    )
        .prop_map(|(oids, attributes)| CsrRequirements {
            oids,
            attributes: attributes
                .into_iter()
                .map(|(oid, values)| (oid, values.into_iter().collect()))
                .collect(),
        })
}

/// Attribute values are a SET: compare them in DER order.
fn sorted(mut requirements: CsrRequirements) -> CsrRequirements {
    for (_, values) in &mut requirements.attributes {
        let set: BTreeSet<Vec<u8>> = values
            .iter()
            .map(|v| der::Encode::to_der(v).expect("oid"))
            .collect();
        *values = set
            .into_iter()
            .map(|der| der::Decode::from_der(&der).expect("oid"))
            .collect();
    }
    requirements
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_certs_only_of_arbitrary_bytes_refuses_typed(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        super::der_like(),
    ]) {
        if let Err(error) = parse_certs_only(&bytes) {
            assert_typed(&error);
        }
    }

    #[test]
    fn parse_certs_only_of_a_mutated_body_refuses_typed(certs in certificates(), edits in mutations()) {
        let ders: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        let mutated = apply(&certs_only(&ders).expect("encode"), &edits);
        match parse_certs_only(&mutated) {
            // Whatever is accepted is carried again as it was read. (Not necessarily a good
            // certificate: the cms decoder does not check keys, x509-parser does later.)
            Ok(parsed) => {
                let ders: Vec<&[u8]> = parsed.iter().map(Vec::as_slice).collect();
                let again = parse_certs_only(&certs_only(&ders).expect("re-encode")).expect("re-read");
                let (mut again, mut parsed) = (again, parsed.clone());
                again.sort();
                parsed.sort();
                prop_assert_eq!(again, parsed);
            }
            Err(error) => assert_typed(&error),
        }
    }

    /// certs_only → parse_certs_only gives back the same certificates, byte for byte.
    #[test]
    fn certs_only_round_trips_through_parse_certs_only(certs in certificates()) {
        let ders: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        let mut back = parse_certs_only(&certs_only(&ders).expect("encode")).expect("decode");
        let mut expected = certs.clone();
        back.sort();
        expected.sort();
        prop_assert_eq!(back, expected);
    }

    /// What certs_only is handed is hostile too (a certificate file on disk): no panic.
    #[test]
    fn certs_only_of_arbitrary_certificates_encodes_or_refuses_typed(
        certs in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            super::der_like(),
        ], 0..4),
    ) {
        let ders: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        match certs_only(&ders) {
            Ok(p7) => {
                if let Err(error) = parse_certs_only(&p7) {
                    assert_typed(&error);
                }
            }
            Err(error) => assert_typed(&error),
        }
    }

    #[test]
    fn decode_csrattrs_of_arbitrary_bytes_refuses_typed(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        super::der_like(),
    ]) {
        if let Err(error) = decode_csrattrs(&bytes) {
            assert_typed(&error);
        }
    }

    #[test]
    fn decode_csrattrs_of_a_mutated_body_refuses_typed(requirements in requirements(), edits in mutations()) {
        let mutated = apply(&encode_csrattrs(&requirements).expect("encode"), &edits);
        if let Err(error) = decode_csrattrs(&mutated) {
            assert_typed(&error);
        }
    }

    /// encode_csrattrs → decode_csrattrs gives back the OIDs and the attributes.
    #[test]
    fn csrattrs_round_trip(requirements in requirements()) {
        let der = encode_csrattrs(&requirements).expect("encode");
        let back = decode_csrattrs(&der).expect("decode");
        prop_assert_eq!(sorted(back), sorted(requirements));
    }
}
