//! Checking what the CA answered before anything is written: the issued certificate certifies
//! our key and chains to the root we trust for TLS client use, by the device clock (or, with a
//! warning, by the CA's when the device clock is off).

use std::path::Path;

use rcgen::PublicKeyData;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::clock;
use crate::error::ClientError;

/// Reads the first certificate of a PEM file.
pub fn read_root(path: &Path) -> Result<CertificateDer<'static>, ClientError> {
    let text = std::fs::read(path).map_err(ClientError::io(path))?;
    let block = pem::parse(text).map_err(|e| {
        ClientError::Local(format!("{}: not a PEM certificate: {e}", path.display()))
    })?;
    Ok(CertificateDer::from(block.into_contents()))
}

/// The hex serial of a certificate.
pub(crate) fn certificate_serial(cert: &[u8]) -> Result<String, ClientError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    Ok(hex_serial(&parsed))
}

pub(crate) fn hex_serial(cert: &X509Certificate<'_>) -> String {
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
/// Verifies the leaf against `root` through one of the CA certificates, for TLS client use,
/// and that it certifies our key. Returns the chain to write: issuing CA, then root.
pub fn verify_chain(
    leaf: &[u8],
    ca_certs: &[Vec<u8>],
    root: &CertificateDer<'static>,
    key: &impl PublicKeyData,
    ca_name: &str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let untrusted = |reason: String| ClientError::Untrusted {
        ca_cert: ca_name.to_owned(),
        reason,
    };
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    let issuer = ca_certs
        .iter()
        .find(|ca| {
            X509Certificate::from_der(ca)
                .map(|(_, c)| c.subject().as_raw() == parsed.issuer().as_raw())
                .unwrap_or(false)
        })
        .ok_or_else(|| untrusted("the CA did not provide the issuing CA certificate".into()))?;
    let issuer = CertificateDer::from(issuer.clone());
    verify_leaf(leaf, key, root, std::slice::from_ref(&issuer), ca_name)?;
    Ok(vec![issuer, root.clone()])
}

/// Verifies that `leaf` certifies `key` and chains to `anchor` (through `intermediates`) for TLS
/// client use. A batch that has verified one leaf through an issuing CA up to the root may pass
/// that issuing CA as the anchor for the next leaves (one P-256 verification instead of a P-384
/// one more). Time is the device clock; a certificate valid only by the CA's clock (measured
/// from its answers) is accepted with a warning: the CA committed it, and the device's clock,
/// not the certificate, is wrong.
pub fn verify_leaf(
    leaf: &[u8],
    key: &impl PublicKeyData,
    anchor: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    ca_name: &str,
) -> Result<(), ClientError> {
    let untrusted = |reason: String| ClientError::Untrusted {
        ca_cert: ca_name.to_owned(),
        reason,
    };
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(ClientError::BadResponse(
            "the issued certificate is for a different key".into(),
        ));
    }
    let leaf_der = CertificateDer::from(leaf);
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| untrusted(format!("{e:?}")))?;
    let anchor =
        webpki::anchor_from_trusted_cert(anchor).map_err(|e| untrusted(format!("{e:?}")))?;
    let verify_at = |at: UnixTime| {
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                intermediates,
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
    };
    match verify_at(clock::device_unix_time()) {
        Ok(()) => Ok(()),
        Err(error) if is_time_error(&error) => {
            let Some(skew) = clock::skew().filter(|s| s.abs() > clock::SKEW_TOLERANCE_SECS) else {
                return Err(untrusted(format!(
                    "{error:?} by the device clock ({}); check the device's time",
                    time::OffsetDateTime::from_unix_timestamp(clock::device_now())
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                )));
            };
            let ca_time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                clock::ca_now().max(0) as u64,
            ));
            verify_at(ca_time).map_err(|e| {
                untrusted(format!("{e:?} (also by the CA's clock, {skew:+} s away)"))
            })?;
            tracing::warn!(
                skew_secs = skew,
                "{}",
                clock::skew_advice(
                    skew,
                    "the issued certificate is valid by the CA's clock only"
                )
            );
            Ok(())
        }
        Err(error) => Err(untrusted(format!("{error:?}"))),
    }
}

fn is_time_error(error: &webpki::Error) -> bool {
    matches!(
        error,
        webpki::Error::CertNotValidYet { .. } | webpki::Error::CertExpired { .. }
    )
}
