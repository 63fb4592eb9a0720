//! Table tests for channel binding: the challengePassword attribute as the CSR parser reads it,
//! and the check of a parsed CSR's binding against the connection under each policy strength.

use std::sync::LazyLock;

use iomt_core::channel_binding::{self, Exporter};
use iomt_core::policy::{Policy, PolicySet, Strength};
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

use super::super::{Csr, CsrError, EnrollError};
use super::{BindingProblem, check};
use crate::tests_support::tlv;

static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies")
});

const CONNECTION: Exporter = [0x5A; 32];
const OTHER_CONNECTION: Exporter = [0xA5; 32];

fn pump(binding: Strength) -> Policy {
    let mut policy = POLICIES
        .product("example-infusion-pump")
        .expect("pump")
        .clone();
    policy.enrollment.channel_binding = binding;
    policy
}

/// A P-256 CSR for a pump serial with `attributes`.
fn csr_der(attributes: Vec<rcgen::Attribute>) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString("IP20000001".try_into().expect("printable")),
    );
    params.distinguished_name = dn;
    params
        .serialize_request_with_attributes(&key, attributes)
        .expect("CSR")
        .der()
        .to_vec()
}

/// A challengePassword attribute whose values SET holds `values` (each a whole DER value).
fn challenge_password(values: &[Vec<u8>]) -> rcgen::Attribute {
    rcgen::Attribute {
        oid: channel_binding::CHALLENGE_PASSWORD_ARCS,
        values: tlv(0x31, &values.concat()),
    }
}

fn bound_to(exporter: &Exporter) -> rcgen::Attribute {
    rcgen::Attribute {
        oid: channel_binding::CHALLENGE_PASSWORD_ARCS,
        values: channel_binding::attribute_values_der(exporter),
    }
}

/// A parse case: name, attributes, and the text read (`None`: refused as not DER).
type ParseCase<'a> = (&'a str, Vec<rcgen::Attribute>, Option<Option<&'a str>>);

/// A check case: name, policy strength, CSR attributes, connection exporter, verdict.
type CheckCase = (
    &'static str,
    Strength,
    Vec<rcgen::Attribute>,
    Option<Exporter>,
    Result<(), BindingProblem>,
);

#[test]
fn challenge_password_is_read_when_well_formed_and_refused_as_not_der_otherwise() {
    let printable = |text: &str| tlv(0x13, text.as_bytes());
    let utf8 = |text: &str| tlv(0x0c, text.as_bytes());
    let bound = channel_binding::encode(&CONNECTION);
    let longest = "p".repeat(255);
    // (case, attributes, Some(text read) or None for refused as not DER)
    let cases: Vec<ParseCase<'_>> = vec![
        ("no challengePassword", vec![], Some(None)),
        (
            "the binding",
            vec![bound_to(&CONNECTION)],
            Some(Some(&bound)),
        ),
        (
            "a UTF8String",
            vec![challenge_password(&[utf8("s3cret é")])],
            Some(Some("s3cret é")),
        ),
        (
            "255 characters",
            vec![challenge_password(&[printable(&longest)])],
            Some(Some(&longest)),
        ),
        (
            "256 characters",
            vec![challenge_password(&[printable(&"p".repeat(256))])],
            None,
        ),
        (
            "two values",
            vec![challenge_password(&[printable("a"), printable("b")])],
            None,
        ),
        ("no value", vec![challenge_password(&[])], None),
        (
            "two attributes",
            vec![bound_to(&CONNECTION), bound_to(&OTHER_CONNECTION)],
            None,
        ),
        (
            "an IA5String",
            vec![challenge_password(&[tlv(0x16, b"s3cret")])],
            None,
        ),
        (
            "a PrintableString with '@'",
            vec![challenge_password(&[printable("a@b")])],
            None,
        ),
        (
            "a UTF8String that is not UTF-8",
            vec![challenge_password(&[tlv(0x0c, &[0xff, 0xfe])])],
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, attributes, expected) in cases {
        let got = Csr::parse(&csr_der(attributes));
        let ok = match (&got, expected) {
            (Ok(csr), Some(text)) => csr.challenge_password() == text,
            (Err(CsrError::NotDer(_)), None) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{name}: expected {expected:?}, got {:?}",
                got.map(|c| c.challenge_password().map(str::to_owned))
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn binding_is_checked_when_present_and_required_only_where_the_policy_says() {
    use BindingProblem::{Mismatch, Missing, Unavailable};
    let none = || Vec::new();
    let right = || vec![bound_to(&CONNECTION)];
    let other = || vec![bound_to(&OTHER_CONNECTION)];
    let password = || vec![challenge_password(&[tlv(0x0c, b"s3cret")])];
    // (case, policy strength, CSR attributes, connection exporter, expected)
    let cases: Vec<CheckCase> = vec![
        (
            "required, bound to this connection",
            Strength::Required,
            right(),
            Some(CONNECTION),
            Ok(()),
        ),
        (
            "required, no binding",
            Strength::Required,
            none(),
            Some(CONNECTION),
            Err(Missing),
        ),
        (
            "required, no binding, TLS 1.2",
            Strength::Required,
            none(),
            None,
            Err(Missing),
        ),
        (
            "required, another connection's",
            Strength::Required,
            other(),
            Some(CONNECTION),
            Err(Mismatch),
        ),
        (
            "required, a plain password",
            Strength::Required,
            password(),
            Some(CONNECTION),
            Err(Mismatch),
        ),
        (
            "required, bound, TLS 1.2",
            Strength::Required,
            right(),
            None,
            Err(Unavailable),
        ),
        (
            "recommended, no binding",
            Strength::Recommended,
            none(),
            Some(CONNECTION),
            Ok(()),
        ),
        (
            "recommended, no binding, TLS 1.2",
            Strength::Recommended,
            none(),
            None,
            Ok(()),
        ),
        (
            "recommended, bound to this connection",
            Strength::Recommended,
            right(),
            Some(CONNECTION),
            Ok(()),
        ),
        (
            "recommended, another connection's",
            Strength::Recommended,
            other(),
            Some(CONNECTION),
            Err(Mismatch),
        ),
        (
            "optional, a plain password",
            Strength::Optional,
            password(),
            Some(CONNECTION),
            Err(Mismatch),
        ),
    ];
    let mut failures = Vec::new();
    for (name, strength, attributes, connection, expected) in cases {
        let csr = Csr::parse(&csr_der(attributes)).expect("CSR parses");
        let got = match check(&pump(strength), &csr, connection.as_ref()) {
            Ok(()) => Ok(()),
            Err(EnrollError::ChannelBinding(problem)) => Err(problem),
            Err(other) => panic!("{name}: unexpected {other:?}"),
        };
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
