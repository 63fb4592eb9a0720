//! The endorsement key: its certificate chains to a TPM manufacturer root the operator trusts,
//! certifies the EK public area the client gave, and names the TPM (TCG hwSerialNum).

use iomt_core::attestation::{Public, PublicKey};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::AttestationProblem;

/// tcg-kp-EKCertificate (2.23.133.8.1), DER content octets, for webpki's EKU check.
const EKU_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];
/// tcg-at-tpmManufacturer.
const TPM_MANUFACTURER: &str = "2.23.133.2.1";

/// An EK whose certificate verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEk {
    /// SHA-256 of the EK certificate (DER): the TPM's identity in the registry and audit.
    pub certificate_sha256: Vec<u8>,
    /// The TPM manufacturer attribute as the certificate gives it (`id:00001014`).
    pub manufacturer: String,
    /// TCG hwSerialNum: `<manufacturer id>:<EK AKI hex>:<EK serial hex>` (docs/PROFILE.md §2.7).
    pub hw_serial: String,
}

impl VerifiedEk {
    /// The EK identity as shown to operators: hex SHA-256 of its certificate.
    pub fn id(&self) -> String {
        hex::encode(&self.certificate_sha256)
    }
}

/// Verifies `certificate` (with `intermediates`) against `roots` at `now` for the EK usage, and
/// (when given) that it certifies `ek_public`'s key.
pub fn verify_ek(
    certificate: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    ek_public: Option<&Public>,
    now: i64,
) -> Result<VerifiedEk, AttestationProblem> {
    let untrusted = |reason: String| AttestationProblem::EkUntrusted { reason };
    if roots.is_empty() {
        return Err(untrusted(
            "no TPM manufacturer root is configured (`ca-server tpm-roots add`)".into(),
        ));
    }
    let roots: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| untrusted(format!("a configured root does not parse: {e:?}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let der = CertificateDer::from(certificate);
    let end_entity = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| untrusted(format!("the EK certificate does not parse: {e:?}")))?;
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0).unsigned_abs()));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            // "If present": webpki applies the rule to the intermediates too, and manufacturer
            // CAs carry no EKU; and EK certificates of several TPM vendors carry none either.
            // One that has an EKU must name the EK purpose (not, say, TLS).
            webpki::KeyUsage::required_if_present(EKU_EK_CERTIFICATE),
            None,
            None,
        )
        .map_err(|e| untrusted(format!("{e:?}")))?;

    let (_, cert) = X509Certificate::from_der(certificate)
        .map_err(|e| untrusted(format!("the EK certificate does not parse: {e}")))?;
    if let Some(ek_public) = ek_public {
        check_same_key(&cert, ek_public)?;
    }
    let manufacturer = manufacturer(&cert).ok_or_else(|| {
        AttestationProblem::EkUnusable("the EK certificate names no TPM manufacturer".into())
    })?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or_else(|| {
            AttestationProblem::EkUnusable(
                "the EK certificate has no authority key identifier".into(),
            )
        })?;
    let manufacturer_id = manufacturer.strip_prefix("id:").unwrap_or(&manufacturer);
    let hw_serial = format!(
        "{}:{}:{}",
        manufacturer_id.to_ascii_uppercase(),
        hex::encode_upper(aki.0),
        hex::encode_upper(cert.raw_serial())
    );
    Ok(VerifiedEk {
        certificate_sha256: ring::digest::digest(&ring::digest::SHA256, certificate)
            .as_ref()
            .to_vec(),
        manufacturer,
        hw_serial,
    })
}

/// The certificate's key must be the EK public area's (same RSA modulus and exponent, or the
/// same EC point).
fn check_same_key(
    cert: &X509Certificate<'_>,
    ek_public: &Public,
) -> Result<(), AttestationProblem> {
    use x509_parser::public_key::PublicKey as X509Key;
    let strip = |v: &[u8]| {
        v.iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect::<Vec<u8>>()
    };
    let same = match (cert.public_key().parsed(), &ek_public.key) {
        (
            Ok(X509Key::RSA(rsa)),
            PublicKey::Rsa {
                modulus, exponent, ..
            },
        ) => {
            strip(rsa.modulus) == strip(modulus)
                && strip(rsa.exponent) == strip(&exponent.to_be_bytes())
        }
        (Ok(X509Key::EC(point)), PublicKey::Ecc { .. }) => {
            ek_public.key.sec1_uncompressed().as_deref() == Some(point.data())
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(AttestationProblem::EkMismatch)
    }
}

/// The tcg-at-tpmManufacturer value from the SAN directoryName (TCG EK Credential Profile §3.2.9).
fn manufacturer(cert: &X509Certificate<'_>) -> Option<String> {
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DirectoryName(dn) => dn
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == TPM_MANUFACTURER)
            .and_then(|a| a.as_str().ok().map(str::to_owned)),
        _ => None,
    })
}

#[cfg(test)]
#[path = "tests/ek.rs"]
mod tests;
