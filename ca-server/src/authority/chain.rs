//! Verifies that a client certificate presented over mutual TLS was issued by one of our own CAs.

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a client certificate does not verify against one of our CAs; the webpki error is kept
/// as it is so logs and refusals name the exact check that failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChainError {
    #[error("the certificate is not a well-formed end-entity certificate ({0:?})")]
    Leaf(webpki::Error),
    #[error("the issuing CA certificate cannot serve as a trust anchor ({0:?})")]
    Anchor(webpki::Error),
    #[error("chain verification failed: {0:?}")]
    Path(webpki::Error),
}

/// The registry serial (lower-case hex) of a client certificate presented on an EST route, once
/// it parses and is not an operator's; the refusal's reason otherwise, which the caller words
/// as its own problem (re-enrollment's "not ours", the station's "not a station certificate").
pub(super) fn presented_serial(leaf: &CertificateDer<'_>) -> Result<String, &'static str> {
    let (_, parsed) = X509Certificate::from_der(leaf).map_err(|_| "it does not parse")?;
    if crate::auth::operator_profile::is_operator_certificate(&parsed) {
        return Err(crate::auth::operator_profile::REFUSED_ON_EST);
    }
    Ok(hex::encode(parsed.raw_serial()))
}

/// Verifies `leaf` for TLS client authentication at `at` (Unix seconds), issued directly by
/// `issuer_der`. The issuer is one of this CA's own certificates, loaded from its data
/// directory, so it serves as the trust anchor itself: re-verifying the root's signature over
/// it on every request would cost a P-384 verification (about 1 ms with ring) and prove nothing
/// new. Callers also match the leaf byte for byte against the registry.
pub(super) fn verify_client_certificate(
    leaf: &CertificateDer<'_>,
    issuer_der: &CertificateDer<'_>,
    at: i64,
) -> Result<(), ChainError> {
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(ChainError::Leaf)?;
    let anchor = webpki::anchor_from_trusted_cert(issuer_der).map_err(ChainError::Anchor)?;
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
        .map_err(ChainError::Path)
}

/// Station certificates whose chain already verified, so a station's keep-alive stream of
/// enrollments costs one P-256 verification per certificate rather than one per request.
/// Keyed by the SHA-256 of the leaf's and the issuer's DER; an entry holds the leaf's validity, so it stops
/// counting when the certificate expires. Revocation and the station's status are not cached:
/// the registry is asked every time.
#[derive(Debug, Default)]
pub(super) struct VerifiedChains {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (i64, i64)>>,
}

/// Bound on remembered certificates (a factory has a few hundred stations).
const MAX_REMEMBERED: usize = 4096;

impl VerifiedChains {
    /// Like [`verify_client_certificate`], answering from memory for a certificate that
    /// verified before and is within its validity at `at`.
    pub(super) fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        issuer_der: &CertificateDer<'_>,
        at: i64,
    ) -> Result<(), ChainError> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(leaf);
        digest.update(issuer_der);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.finish().as_ref());
        let remembered = self.entries.lock().ok().and_then(|e| e.get(&key).copied());
        if let Some((not_before, not_after)) = remembered
            && not_before <= at
            && at <= not_after
        {
            return Ok(());
        }
        verify_client_certificate(leaf, issuer_der, at)?;
        let validity = x509_parser::parse_x509_certificate(leaf).map(|(_, cert)| {
            (
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
            )
        });
        if let (Ok(validity), Ok(mut entries)) = (validity, self.entries.lock()) {
            if entries.len() >= MAX_REMEMBERED {
                entries.clear();
            }
            entries.insert(key, validity);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    use super::*;

    fn ca_and_leaf(not_after_year: i32) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let issuer = Issuer::from_params(&ca, &ca_key);
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf.der().clone())
    }

    const Y2025: i64 = 1_735_689_600;

    #[test]
    fn remembered_chain_still_ends_with_the_certificate_validity() {
        let (ca, leaf) = ca_and_leaf(2026);
        let chains = VerifiedChains::default();
        chains.verify(&leaf, &ca, Y2025).unwrap();
        chains.verify(&leaf, &ca, Y2025 + 60).unwrap();
        // 2027: expired, whether or not it was remembered.
        assert!(chains.verify(&leaf, &ca, Y2025 + 2 * 366 * 86_400).is_err());
    }

    #[test]
    fn remembered_chain_is_not_used_for_another_issuer_or_certificate() {
        let (ca, leaf) = ca_and_leaf(2030);
        let (other_ca, other_leaf) = ca_and_leaf(2030);
        let chains = VerifiedChains::default();
        chains.verify(&leaf, &ca, Y2025).unwrap();
        assert!(chains.verify(&other_leaf, &ca, Y2025).is_err());
        assert!(chains.verify(&leaf, &other_ca, Y2025).is_err());
    }
}
