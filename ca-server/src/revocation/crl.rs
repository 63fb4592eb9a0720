//! CRLs (RFC 5280 §5): one per CA generation, built from a snapshot of the database, signed by
//! that generation and stored; reissued when half its life is gone. A retiring generation's
//! final CRL runs to the CA's own notAfter. An offline root's CRL is the file it produced.

use rcgen::{CertificateRevocationListParams, PublicKeyData, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use super::{Reason, Revocation, RevocationError};
use crate::pki::{CaRole, GenerationId, IssuingCa, ROOT_CA};
use crate::storage::{CrlSnapshot, PublishedCrl};

/// CRLs over the CA certificates (root) are reissued at least monthly.
const ROOT_CRL_VALIDITY: Duration = Duration::days(30);
/// Station CA CRLs follow the Basic cadence.
const STATION_CRL_VALIDITY: Duration = Duration::hours(96);

impl Revocation {
    /// The latest CRL of `issuer` as published, without reissuing it (`None`: none yet). For an
    /// offline root, the imported file.
    pub async fn published_crl(
        &self,
        issuer: &str,
    ) -> Result<Option<PublishedCrl>, RevocationError> {
        let ca = self.ca.current();
        if issuer == ROOT_CA && ca.root.is_none() {
            return match ca.root_crl.as_deref() {
                None => Ok(None),
                Some(der) => offline_root_crl(Some(der)).map(Some),
            };
        }
        Ok(self.store.latest_crl(issuer).await?)
    }

    /// Builds, signs and stores a new CRL for `issuer` (root, or a generation of an issuing or
    /// station CA).
    pub async fn publish_crl(&self, issuer: &str) -> Result<PublishedCrl, RevocationError> {
        let ca = self.ca.current();
        if issuer == ROOT_CA && ca.root.is_none() {
            return Err(RevocationError::RootSignerOffline);
        }
        let signer = ca
            .signer(issuer)
            .ok_or_else(|| RevocationError::UnknownIssuer(issuer.to_owned()))?;
        let now = OffsetDateTime::now_utc();
        let next_update = now + self.crl_validity(issuer);
        self.sign_and_store(signer, issuer, now, next_update).await
    }

    /// The final CRL of a generation that retires (RFC 5280 §5: a CRL is published until the
    /// last certificate it covers expired): its nextUpdate is the CA's own notAfter, and it is
    /// never reissued.
    pub async fn publish_final_crl(&self, issuer: &str) -> Result<PublishedCrl, RevocationError> {
        let ca = self.ca.current();
        let signer = ca
            .signer(issuer)
            .filter(|_| issuer != ROOT_CA)
            .ok_or_else(|| RevocationError::UnknownIssuer(issuer.to_owned()))?;
        let now = OffsetDateTime::now_utc();
        let next_update = signer.not_after.max(now + self.crl_validity(issuer));
        self.sign_and_store(signer, issuer, now, next_update).await
    }

    async fn sign_and_store(
        &self,
        signer: &IssuingCa,
        issuer: &str,
        now: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<PublishedCrl, RevocationError> {
        let snapshot = self.store.crl_snapshot(issuer).await?;
        let der = sign_crl(signer, &snapshot, now, next_update)?;
        let published = PublishedCrl {
            number: snapshot.number,
            this_update: now.unix_timestamp(),
            next_update: next_update.unix_timestamp(),
            der,
        };
        self.store.publish_crl(issuer, &published).await?;
        Ok(published)
    }

    /// The CRL to serve: the latest one, reissued first if none exists or half its life is gone
    /// (a retired generation's final CRL is served as it is).
    pub async fn current_crl(&self, issuer: &str) -> Result<PublishedCrl, RevocationError> {
        let ca = self.ca.current();
        if issuer == ROOT_CA && ca.root.is_none() {
            return offline_root_crl(ca.root_crl.as_deref());
        }
        if ca.signer(issuer).is_none() {
            return Err(RevocationError::UnknownIssuer(issuer.to_owned()));
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match self.store.latest_crl(issuer).await? {
            Some(crl) if ca.is_retired(issuer) => Ok(crl),
            None if ca.is_retired(issuer) => self.publish_final_crl(issuer).await,
            Some(crl) if now < crl.this_update + (crl.next_update - crl.this_update) / 2 => Ok(crl),
            _ => self.publish_crl(issuer).await,
        }
    }

    fn crl_validity(&self, issuer: &str) -> Duration {
        match GenerationId::parse(issuer).map(|g| g.role) {
            Some(CaRole::Root) => ROOT_CRL_VALIDITY,
            Some(CaRole::Issuing(level)) => Duration::hours(i64::from(
                self.policies
                    .level(level)
                    .revocation
                    .crl_max_next_update_hours,
            )),
            _ => STATION_CRL_VALIDITY,
        }
    }
}

/// Encodes and signs a v2 CRL (cRLNumber, AKI, reason codes) over a snapshot.
pub fn sign_crl(
    signer: &IssuingCa,
    snapshot: &CrlSnapshot,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, RevocationError> {
    let revoked_certs = snapshot
        .entries
        .iter()
        .filter_map(|entry| {
            let serial = hex::decode(&entry.serial).ok()?;
            Some(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(entry.revoked_at)
                    .unwrap_or(this_update),
                reason_code: entry
                    .reason
                    .as_deref()
                    .and_then(Reason::parse)
                    .map(Reason::rcgen),
                invalidity_date: None,
            })
        })
        .collect();
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&snapshot.number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        // AKI = the issuer's SKI, which this CA always derives by RFC 7093 method 1.
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(
            iomt_core::extensions::key_identifier(signer.issuer.key().der_bytes()),
        ),
    };
    Ok(params.signed_by(&signer.issuer)?.der().to_vec())
}

/// The root's CRL as the offline root produced it (`DIR/ca/root.crl`).
fn offline_root_crl(der: Option<&[u8]>) -> Result<PublishedCrl, RevocationError> {
    use x509_parser::prelude::CertificateRevocationList;
    let der = der.ok_or(RevocationError::RootOffline)?;
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| RevocationError::RootCrl(e.to_string()))?;
    let number = crl
        .crl_number()
        .and_then(|n| i64::try_from(n.clone()).ok())
        .unwrap_or(0);
    Ok(PublishedCrl {
        number,
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()).unwrap_or(i64::MAX),
        der: der.to_vec(),
    })
}
