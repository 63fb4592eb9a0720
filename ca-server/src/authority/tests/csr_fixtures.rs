//! The CSRs the table and property tests send: made by rcgen as honest clients make them, or
//! assembled by hand for the structures rcgen will not produce; and the policies and the
//! registration record they are checked against.

use std::sync::LazyLock;

use iomt_core::identity::{DeviceRecord, HardwareModuleName, Identity};
use iomt_core::policy::{Level, Policy, PolicySet};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, KeyPair, SigningKey,
};

use crate::tests_support::tlv;

pub(super) const SERIAL: &str = "IP20000001";
pub(super) const GTIN: &str = "00850000000017";

pub(super) static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies")
});

/// The example infusion pump: ECDSA P-256 or P-384 only.
pub(super) fn pump() -> &'static Policy {
    POLICIES.product("example-infusion-pump").expect("pump")
}

/// The Basic level: ECDSA and RSA 2048, 3072, 4096.
pub(super) fn basic() -> &'static Policy {
    POLICIES.level(Level::Basic)
}

/// What the registration record says device `SERIAL` is.
pub(super) fn identity() -> Identity {
    let record = DeviceRecord {
        serial: SERIAL.into(),
        gtin: GTIN.into(),
    };
    Identity::build(pump(), &record).expect("identity")
}

// ---------------------------------------------------------------------------------------------
// CSRs made by rcgen: what honest clients send, and honest-looking requests for the wrong thing.

pub(super) fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

/// The subject an enroll-client sends: serialNumber alone, as a PrintableString.
pub(super) fn serial_only(serial: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(serial.try_into().expect("printable")),
    );
    dn
}

/// A CSR signed by `key` with `edit` applied to the enroll-client's parameters.
pub(super) fn csr_with(
    key: &KeyPair,
    edit: impl FnOnce(&mut CertificateParams),
    attributes: Vec<rcgen::Attribute>,
) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = serial_only(SERIAL);
    edit(&mut params);
    params
        .serialize_request_with_attributes(key, attributes)
        .expect("CSR")
        .der()
        .to_vec()
}

/// The CSR an enroll-client sends for `SERIAL`.
pub(super) fn honest(key: &KeyPair) -> Vec<u8> {
    csr_with(key, |_| {}, Vec::new())
}

/// The subjectAltName extension request, DER as `iomt_core` encodes it for certificates.
pub(super) fn san_request(hmn: Option<&HardwareModuleName>, uri: Option<&str>) -> CustomExtension {
    let der = iomt_core::extensions::subject_alt_name(hmn, uri).expect("SAN");
    CustomExtension::from_oid_content(&[2, 5, 29, 17], der)
}

// ---------------------------------------------------------------------------------------------
// CSRs assembled by hand: the structures rcgen will not produce.

pub(super) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(super) const OID_SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
pub(super) const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
pub(super) const NULL: &[u8] = &[0x05, 0x00];
pub(super) const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
pub(super) const SHA256_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// `Name` with the serialNumber attribute alone.
pub(super) fn serial_name() -> Vec<u8> {
    let atv = seq(&[
        &[0x06, 0x03, 0x55, 0x04, 0x05],
        &tlv(0x13, SERIAL.as_bytes()),
    ]);
    seq(&[&tlv(0x31, &atv)])
}

/// An RSA SubjectPublicKeyInfo with a `bits`-bit modulus (not a real key: nobody holds it).
pub(super) fn rsa_spki(bits: usize, exponent: &[u8]) -> Vec<u8> {
    let mut modulus = vec![0x00, 0xc5];
    modulus.resize(bits / 8 + 1, 0x5a);
    let last = modulus.len() - 1;
    modulus[last] |= 1;
    let key = seq(&[&tlv(0x02, &modulus), &tlv(0x02, exponent)]);
    let mut bit_string = vec![0x00];
    bit_string.extend(key);
    seq(&[&seq(&[OID_RSA_ENCRYPTION, NULL]), &tlv(0x03, &bit_string)])
}

/// An EC SubjectPublicKeyInfo on secp256k1 (a curve no IoMT level allows).
pub(super) fn secp256k1_spki() -> Vec<u8> {
    let mut point = vec![0x00, 0x04];
    point.extend([0x42; 64]);
    seq(&[
        &seq(&[OID_EC_PUBLIC_KEY, OID_SECP256K1]),
        &tlv(0x03, &point),
    ])
}

/// The parts of a CertificationRequest, to assemble as a row needs.
pub(super) struct Raw {
    pub(super) version: u8,
    pub(super) subject: Vec<u8>,
    pub(super) spki: Vec<u8>,
    /// The `[0]` attributes' contents; `None` leaves the field out.
    pub(super) attributes: Option<Vec<u8>>,
    pub(super) signature_algorithm: &'static [u8],
}

impl Raw {
    /// A v1 request for `SERIAL` carrying `key`'s public key, no attributes.
    pub(super) fn for_key(key: &KeyPair) -> Raw {
        Raw {
            version: 0,
            subject: serial_name(),
            spki: rcgen::PublicKeyData::subject_public_key_info(key),
            attributes: Some(Vec::new()),
            signature_algorithm: ECDSA_WITH_SHA256,
        }
    }

    fn info(&self) -> Vec<u8> {
        let attributes = self
            .attributes
            .as_ref()
            .map(|a| tlv(0xa0, a))
            .unwrap_or_default();
        seq(&[
            &tlv(0x02, &[self.version]),
            &self.subject,
            &self.spki,
            &attributes,
        ])
    }

    /// Signed by `signer` (who may not hold the key the request carries).
    pub(super) fn signed_by(&self, signer: &KeyPair) -> Vec<u8> {
        let info = self.info();
        let signature = signer.sign(&info).expect("sign");
        self.with_signature(&info, &signature)
    }

    /// With a signature of `len` bytes that nobody made.
    pub(super) fn with_garbage_signature(&self, len: usize) -> Vec<u8> {
        self.with_signature(&self.info(), &vec![0x5a; len])
    }

    fn with_signature(&self, info: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut bits = vec![0x00];
        bits.extend_from_slice(signature);
        seq(&[info, self.signature_algorithm, &tlv(0x03, &bits)])
    }
}
