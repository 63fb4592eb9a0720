//! The `TPM2_Certify` of the CSR key by the AK: signature, challenge, name and attributes.

use iomt_core::attestation::{
    EccCurve, Evidence, HashAlg, ObjectAttributes, Public, PublicKey, Signature,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::AttestationProblem;

/// The key a certify proved TPM-resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The key's TPM name (nameAlg || digest of its public area).
    pub name: Vec<u8>,
}

/// The attributes of a key generated in the TPM that cannot leave it (TCG DevID §5.2).
const RESIDENT: [(u32, &str); 3] = [
    (ObjectAttributes::FIXED_TPM, "fixedTPM"),
    (ObjectAttributes::FIXED_PARENT, "fixedParent"),
    (
        ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        "sensitiveDataOrigin",
    ),
];

/// Checks `evidence` against the AK the challenge was sealed for, the challenge `secret`, and
/// the CSR's SubjectPublicKeyInfo. The checks run from the signature inward, so a refusal names
/// the outermost thing that is wrong.
pub fn verify_certify(
    evidence: &Evidence,
    ak: &Public,
    secret: &[u8],
    csr_spki_der: &[u8],
) -> Result<CertifiedKey, AttestationProblem> {
    let certify = &evidence.certify;
    check_ak(ak)?;
    verify_signature(ak, &certify.signature, &certify.attest.raw)?;
    use subtle::ConstantTimeEq;
    if !bool::from(certify.attest.extra_data.as_slice().ct_eq(secret)) {
        return Err(AttestationProblem::ChallengeUnknown);
    }
    let name = certify.certified.name();
    if name != certify.attest.certified_name {
        return Err(AttestationProblem::NameMismatch);
    }
    if !same_key(&certify.certified, csr_spki_der) {
        return Err(AttestationProblem::KeyMismatch);
    }
    let attributes = certify.certified.attributes;
    if let Some((_, missing)) = RESIDENT.iter().find(|(bit, _)| !attributes.has(*bit)) {
        return Err(AttestationProblem::KeyNotFixed { missing });
    }
    if !attributes.has(ObjectAttributes::SIGN) {
        return Err(AttestationProblem::KeyNotFixed { missing: "sign" });
    }
    Ok(CertifiedKey { name })
}

/// The AK must be a restricted signing key (the TPM then signs only structures it made, so a
/// TPMS_ATTEST with TPM_GENERATED_VALUE cannot be forged through it) and resident like the key.
pub(super) fn check_ak(ak: &Public) -> Result<(), AttestationProblem> {
    let required = ObjectAttributes::RESTRICTED
        | ObjectAttributes::SIGN
        | ObjectAttributes::FIXED_TPM
        | ObjectAttributes::FIXED_PARENT
        | ObjectAttributes::SENSITIVE_DATA_ORIGIN;
    if ak.attributes.has(required) && !ak.attributes.has(ObjectAttributes::DECRYPT) {
        Ok(())
    } else {
        Err(AttestationProblem::AkNotRestricted)
    }
}

fn verify_signature(
    ak: &Public,
    signature: &Signature,
    signed: &[u8],
) -> Result<(), AttestationProblem> {
    use ring::signature as sig;
    let verified = match (&ak.key, signature) {
        (PublicKey::Ecc { curve, .. }, Signature::Ecdsa { hash, .. }) => {
            let algorithm: &dyn sig::VerificationAlgorithm = match (curve, hash) {
                (EccCurve::P256, HashAlg::Sha256) => &sig::ECDSA_P256_SHA256_FIXED,
                (EccCurve::P384, HashAlg::Sha384) => &sig::ECDSA_P384_SHA384_FIXED,
                // ring verifies each curve with its own hash only.
                _ => return Err(AttestationProblem::SignatureInvalid),
            };
            match (
                ak.key.sec1_uncompressed(),
                signature.ecdsa_fixed(curve.coordinate_size()),
            ) {
                (Some(point), Some(fixed)) => sig::UnparsedPublicKey::new(algorithm, point)
                    .verify(signed, &fixed)
                    .is_ok(),
                _ => false,
            }
        }
        (
            PublicKey::Rsa {
                modulus, exponent, ..
            },
            Signature::RsaSsa { hash, signature },
        ) => {
            let params = match hash {
                HashAlg::Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                HashAlg::Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            };
            sig::RsaPublicKeyComponents {
                n: modulus.as_slice(),
                e: exponent.to_be_bytes().as_slice(),
            }
            .verify(params, signed, signature)
            .is_ok()
        }
        _ => false,
    };
    if verified {
        Ok(())
    } else {
        Err(AttestationProblem::SignatureInvalid)
    }
}

/// True when the TPM public area holds the key of the CSR's SubjectPublicKeyInfo: the same
/// curve and point (a TPM device key is ECDSA; an RSA device key is compared by modulus).
fn same_key(public: &Public, spki_der: &[u8]) -> bool {
    use x509_parser::public_key::PublicKey as X509Key;
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else {
        return false;
    };
    let strip = |v: &[u8]| {
        v.iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect::<Vec<u8>>()
    };
    match (spki.parsed(), &public.key) {
        (Ok(X509Key::EC(point)), PublicKey::Ecc { curve, .. }) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let expected = match curve {
                EccCurve::P256 => "1.2.840.10045.3.1.7",
                EccCurve::P384 => "1.3.132.0.34",
            };
            curve_oid.as_deref() == Some(expected)
                && public.key.sec1_uncompressed().as_deref() == Some(point.data())
        }
        (
            Ok(X509Key::RSA(rsa)),
            PublicKey::Rsa {
                modulus, exponent, ..
            },
        ) => {
            strip(rsa.modulus) == strip(modulus)
                && strip(rsa.exponent) == strip(&exponent.to_be_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "tests/certify.rs"]
mod tests;
