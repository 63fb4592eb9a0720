//! Verifies that a client certificate presented over mutual TLS was issued by one of our own CAs.

use rustls_pki_types::{CertificateDer, UnixTime};

/// Verifies `leaf` for TLS client authentication at `at` (Unix seconds), issued directly by
/// `issuer_der`. The issuer is one of this CA's own certificates, loaded from its data
/// directory, so it serves as the trust anchor itself: re-verifying the root's signature over
/// it on every request would cost a P-384 verification (about 1 ms with ring) and prove nothing
/// new. Callers also match the leaf byte for byte against the registry.
pub(super) fn verify_client_certificate(
    leaf: &CertificateDer<'_>,
    issuer_der: &CertificateDer<'_>,
    at: i64,
) -> Result<(), String> {
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("{e:?}"))?;
    let anchor = webpki::anchor_from_trusted_cert(issuer_der).map_err(|e| format!("{e:?}"))?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at).unwrap_or(0),
    ));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            at,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("chain verification failed: {e:?}"))
}
