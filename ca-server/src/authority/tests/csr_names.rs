//! Table tests for what a CSR names: its subject and requested subjectAltName against the
//! registration record, and the attributes and extension requests the CA ignores or refuses.

use iomt_core::identity::HardwareModuleName;
use iomt_core::policy::Curve;
use rcgen::{CustomExtension, DistinguishedName, DnType, DnValue, SanType};

use super::super::{CsrError, SubjectKey};
use super::fixtures::*;
use super::{Expected, case, mismatch, run};
use crate::tests_support::tlv;

#[test]
fn subject_must_match_the_record_and_name_only_allowed_attributes() {
    let id = identity();
    let key = p256();
    let subject = |attributes: Vec<(DnType, DnValue)>| {
        csr_with(
            &key,
            |params| {
                let mut dn = DistinguishedName::new();
                for (kind, value) in attributes {
                    dn.push(kind, value);
                }
                params.distinguished_name = dn;
            },
            Vec::new(),
        )
    };
    let utf8 = |s: &str| DnValue::Utf8String(s.into());
    let serial = |s: &str| {
        (
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(s.try_into().expect("printable")),
        )
    };
    let huge_cn = "X".repeat(60_000);
    let ok = Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "empty subject (filled from the record)",
            pump(),
            subject(vec![]),
            ok,
        ),
        case(
            "the record's C, O, CN and serialNumber",
            pump(),
            subject(vec![
                (
                    DnType::CountryName,
                    DnValue::PrintableString("US".try_into().expect("C")),
                ),
                (DnType::OrganizationName, utf8(&id.organization)),
                (DnType::CommonName, utf8(&id.common_name)),
                serial(SERIAL),
            ]),
            Expected::Accepted(SubjectKey::Ec(Some(Curve::P256))),
        ),
        case(
            "another device's serialNumber",
            pump(),
            subject(vec![serial("IP20000002")]),
            mismatch("serialNumber", "IP20000002", SERIAL),
        ),
        case(
            "another CN",
            pump(),
            subject(vec![(DnType::CommonName, utf8("IP200-IP29999999"))]),
            mismatch("CN", "IP200-IP29999999", &id.common_name),
        ),
        case(
            "another organization",
            pump(),
            subject(vec![(DnType::OrganizationName, utf8("Evil Corp"))]),
            mismatch("O", "Evil Corp", &id.organization),
        ),
        case(
            "a 60,000-character CN",
            pump(),
            subject(vec![(DnType::CommonName, utf8(&huge_cn))]),
            mismatch("CN", &huge_cn, &id.common_name),
        ),
        case(
            "the record's CN as a BMPString",
            pump(),
            subject(vec![(
                DnType::CommonName,
                DnValue::BmpString(id.common_name.as_str().try_into().expect("BMP")),
            )]),
            mismatch("CN", "<not a string>", &id.common_name),
        ),
        case(
            "an organizationalUnit",
            pump(),
            subject(vec![(DnType::OrganizationalUnitName, utf8("Pumps"))]),
            Expected::Identity(CsrError::SubjectAttributeForbidden {
                oid: "2.5.4.11".into(),
            }),
        ),
        case(
            "a domainComponent",
            pump(),
            subject(vec![(
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                utf8("example"),
            )]),
            Expected::Identity(CsrError::SubjectAttributeForbidden {
                oid: "0.9.2342.19200300.100.1.25".into(),
            }),
        ),
    ]);
}

#[test]
fn requested_names_must_match_the_record_and_be_allowed() {
    let id = identity();
    let key = p256();
    let hmn = id
        .hardware_module_name
        .clone()
        .expect("the pump has a HardwareModuleName");
    let uri = id.uri.clone().expect("the pump has a URI");
    let with_sans =
        |sans: Vec<SanType>| csr_with(&key, |params| params.subject_alt_names = sans, Vec::new());
    let with_san_der = |extension: CustomExtension| {
        csr_with(
            &key,
            |params| params.custom_extensions = vec![extension],
            Vec::new(),
        )
    };
    let ia5 = |s: &str| s.try_into().expect("IA5");
    let other_hmn = HardwareModuleName {
        hw_type: hmn.hw_type.clone(),
        hw_serial: b"IP29999999".to_vec(),
    };
    // An otherName with the HardwareModuleName type-id whose value is not one.
    let undecodable_hmn = {
        let type_id = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x04];
        let value = tlv(0xa0, &tlv(0x04, b"not a HardwareModuleName"));
        let other_name = tlv(0xa0, &[&type_id[..], &value].concat());
        CustomExtension::from_oid_content(&[2, 5, 29, 17], seq(&[&other_name]))
    };
    let ok = Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "the record's HardwareModuleName and URI",
            pump(),
            with_san_der(san_request(Some(&hmn), Some(&uri))),
            ok,
        ),
        case(
            "the record's URI alone",
            pump(),
            with_sans(vec![SanType::URI(ia5(&uri))]),
            Expected::Accepted(SubjectKey::Ec(Some(Curve::P256))),
        ),
        case(
            "another URI",
            pump(),
            with_sans(vec![SanType::URI(ia5(
                "https://evil.example/21/IP20000001",
            ))]),
            Expected::Identity(CsrError::SanMismatch {
                kind: "URI",
                requested: "https://evil.example/21/IP20000001".into(),
                registered: uri.clone(),
            }),
        ),
        case(
            "another device's HardwareModuleName",
            pump(),
            with_san_der(san_request(Some(&other_hmn), None)),
            Expected::SanMismatch("HardwareModuleName"),
        ),
        case(
            "an undecodable HardwareModuleName",
            pump(),
            with_san_der(undecodable_hmn),
            Expected::SanMismatch("HardwareModuleName"),
        ),
        case(
            "a dNSName",
            pump(),
            with_sans(vec![SanType::DnsName(ia5("pump.example"))]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "dNSName",
                value: "pump.example".into(),
            }),
        ),
        case(
            "an rfc822Name",
            pump(),
            with_sans(vec![SanType::Rfc822Name(ia5("pump@example.com"))]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "rfc822Name",
                value: "pump@example.com".into(),
            }),
        ),
        case(
            "an iPAddress",
            pump(),
            with_sans(vec![SanType::IpAddress([10, 0, 0, 1].into())]),
            Expected::Identity(CsrError::SanForbidden {
                kind: "iPAddress",
                value: "<address>".into(),
            }),
        ),
    ]);
}

/// Every name a request asks for is seen by the identity check, or the request is refused.
/// x509-parser drops an extension it cannot parse and reads only the first value of the first
/// extensionRequest attribute; `Csr::parse` refuses both shapes (PKCS#9 makes extensionRequest
/// single-valued), so no requested name goes unseen.
#[test]
fn requested_names_hidden_from_the_identity_check_are_refused() {
    let key = p256();
    let dns = seq(&[&tlv(0x82, b"evil.example")]);
    let san_extension = seq(&[&[0x06, 0x03, 0x55, 0x1d, 0x11], &tlv(0x04, &dns)]);
    let extension_request = |values: &[u8]| rcgen::Attribute {
        oid: &[1, 2, 840, 113549, 1, 9, 14],
        values: tlv(0x31, values),
    };
    let empty = seq(&[]);
    let with_dns = seq(&[&san_extension]);
    run(vec![
        case(
            "a subjectAltName request whose GeneralName overruns it",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.custom_extensions = vec![CustomExtension::from_oid_content(
                        &[2, 5, 29, 17],
                        vec![0x30, 0x03, 0x82, 0x05, 0x41],
                    )]
                },
                Vec::new(),
            ),
            Expected::NotDer,
        ),
        case(
            "a second extensionRequest attribute with a dNSName",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![extension_request(&empty), extension_request(&with_dns)],
            ),
            Expected::NotDer,
        ),
        case(
            "an extensionRequest whose second value has a dNSName",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![extension_request(
                    &[empty.clone(), with_dns.clone()].concat(),
                )],
            ),
            Expected::NotDer,
        ),
    ]);
}

/// Attributes and extension requests the CA does not act on are ignored: it builds every
/// certificate from the policy and the record and keeps only the CSR's public key.
#[test]
fn other_attributes_and_extension_requests_are_ignored() {
    let key = p256();
    let attribute = |oid: &'static [u64], value: Vec<u8>| rcgen::Attribute {
        oid,
        values: tlv(0x31, &value),
    };
    let challenge_password = attribute(&[1, 2, 840, 113549, 1, 9, 7], tlv(0x0c, b"s3cret"));
    let unstructured_name = attribute(&[1, 2, 840, 113549, 1, 9, 2], tlv(0x0c, b"pump"));
    let private = attribute(&[1, 3, 6, 1, 4, 1, 32473, 99], tlv(0x04, b"\x00\x01"));
    let ok = || Expected::Accepted(SubjectKey::Ec(Some(Curve::P256)));
    run(vec![
        case(
            "challengePassword",
            pump(),
            csr_with(&key, |_| {}, vec![challenge_password]),
            ok(),
        ),
        case(
            "unstructuredName and a private attribute",
            pump(),
            csr_with(&key, |_| {}, vec![unstructured_name, private]),
            ok(),
        ),
        case(
            "basicConstraints cA=TRUE requested",
            pump(),
            csr_with(
                &key,
                |params| params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
                Vec::new(),
            ),
            ok(),
        ),
        case(
            "keyUsage keyCertSign and serverAuth requested",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
                    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                },
                Vec::new(),
            ),
            ok(),
        ),
        case(
            "a private extension request",
            pump(),
            csr_with(
                &key,
                |params| {
                    params.custom_extensions = vec![CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 32473, 98],
                        tlv(0x04, b"x"),
                    )]
                },
                Vec::new(),
            ),
            ok(),
        ),
    ]);
}

/// Malformed attributes are refused as structure defects, like the rest of the request.
#[test]
fn malformed_attributes_are_refused_as_not_der() {
    let key = p256();
    let attribute = |oid: &'static [u64], values: Vec<u8>| rcgen::Attribute { oid, values };
    run(vec![
        case(
            "an extensionRequest that is not a SEQUENCE of extensions",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![attribute(
                    &[1, 2, 840, 113549, 1, 9, 14],
                    tlv(0x31, &tlv(0x04, b"x")),
                )],
            ),
            Expected::NotDer,
        ),
        case(
            "a challengePassword with no value",
            pump(),
            csr_with(
                &key,
                |_| {},
                vec![attribute(&[1, 2, 840, 113549, 1, 9, 7], tlv(0x31, &[]))],
            ),
            Expected::NotDer,
        ),
    ]);
}
