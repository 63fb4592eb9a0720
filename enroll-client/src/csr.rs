//! What a device asks the CA for: its key (P-256 unless the CA's csrattrs allow only P-384) and
//! a CSR carrying its serial alone; the CA fills everything else from its registry.

use iomt_core::oids;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

use crate::error::ClientError;

/// P-256 unless the CA's csrattrs allow only P-384.
pub(crate) fn generate_key(
    requirements: &iomt_core::wire::CsrRequirements,
) -> Result<KeyPair, ClientError> {
    let curves = requirements
        .attributes
        .iter()
        .find(|(attr, _)| *attr == oids::EC_PUBLIC_KEY)
        .map(|(_, curves)| curves.clone());
    let alg = match curves {
        Some(curves) if !curves.contains(&oids::SECP256R1) && curves.contains(&oids::SECP384R1) => {
            &rcgen::PKCS_ECDSA_P384_SHA384
        }
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    KeyPair::generate_for(alg)
        .map_err(|e| ClientError::Local(format!("key generation failed: {e}")))
}

/// A CSR carrying only the device serial (the CA fills everything else from its registry).
pub fn build_csr(key: &KeyPair, serial: &str) -> Result<Vec<u8>, ClientError> {
    build_csr_with(key, serial)
}

/// The subject a device asks for: its serialNumber alone, as a PrintableString (the CA fills
/// everything else from its registry).
pub(crate) fn device_subject(serial: &str) -> Result<DistinguishedName, ClientError> {
    let mut dn = DistinguishedName::new();
    let printable = serial
        .try_into()
        .map_err(|_| ClientError::Local(format!("serial `{serial}` is not a PrintableString")))?;
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(printable),
    );
    Ok(dn)
}

/// The CSR for `serial` signed by any key: a software key pair or one held by the TPM.
pub fn build_csr_with(key: &impl rcgen::SigningKey, serial: &str) -> Result<Vec<u8>, ClientError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = device_subject(serial)?;
    let csr = params
        .serialize_request(key)
        .map_err(|e| ClientError::Local(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}
