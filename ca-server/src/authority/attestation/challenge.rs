//! The attestation challenge (step 1 of docs/PROFILE.md §6.1's attested enrollment): who may
//! ask for one, what is checked before one is made, and what is stored.
//!
//! Asking is authorized like enrolling, read-only: the device's unused one-time token (not
//! consumed here), a station certificate whose scope covers the device, or the device's current
//! certificate (renewal). So nobody else can fill the table or learn which TPM a device has.

use iomt_core::attestation::Public;
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::credential::{CredentialBlob, make_credential};
use super::{AttestationProblem, certify, ek};
use crate::authority::{Authority, EnrollError, StationProblem, TokenProblem};
use crate::storage::ChallengeRecord;

/// How long a challenge may be answered (the client activates, certifies and sends its CSR in
/// well under a second; a station that queues devices gets five minutes).
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Challenges expired longer than this are deleted when a new one is stored.
const PURGE_AFTER_SECS: i64 = 86_400;
/// The secret's size: SHA-256, the name hash of the TCG EK templates this CA accepts.
const SECRET_LEN: usize = 32;

/// Who asks for a challenge.
pub enum ChallengeAuthorization<'a> {
    /// HTTP Basic `serial:token`: the device's one-time token, checked but not consumed.
    Token { serial: &'a str, token: &'a str },
    /// A client certificate: a station's (for any device in its scope) or the device's own.
    Certificate(&'a [CertificateDer<'static>]),
}

/// A challenge request, parsed from the transport.
pub struct ChallengeRequest<'a> {
    pub authorization: ChallengeAuthorization<'a>,
    pub serial: &'a str,
    /// The EK certificate (DER), as read from the TPM's NV index.
    pub ek_certificate: &'a [u8],
    /// Intermediate CA certificates between the EK certificate and a TPM root (DER).
    pub ek_chain: &'a [Vec<u8>],
    /// The EK's `TPMT_PUBLIC` (or `TPM2B_PUBLIC`).
    pub ek_public: &'a [u8],
    /// The AK's `TPMT_PUBLIC` (or `TPM2B_PUBLIC`).
    pub ak_public: &'a [u8],
}

/// What the client needs to activate the credential.
#[derive(Debug, Clone)]
pub struct IssuedChallenge {
    pub credential: CredentialBlob,
    pub expires_at: i64,
}

/// A challenge as stored (what [`Authority::attestation_challenge`] wrote).
pub type PendingChallenge = ChallengeRecord;

/// A `TPMT_PUBLIC`, or a `TPM2B_PUBLIC` around one.
pub(crate) fn parse_public(bytes: &[u8]) -> Result<Public, AttestationProblem> {
    Public::parse(bytes)
        .or_else(|first| Public::parse_tpm2b(bytes).map_err(|_| first))
        .map_err(AttestationProblem::from)
}

impl Authority {
    /// Makes a challenge for a device's TPM: the requester is authorized, the EK certificate
    /// chains to a trusted TPM root and certifies the EK, the AK is a restricted resident signing
    /// key; then a fresh secret is sealed to the EK and the AK's name and its digest stored.
    #[tracing::instrument(skip_all, fields(serial = request.serial))]
    pub async fn attestation_challenge(
        &self,
        request: ChallengeRequest<'_>,
    ) -> Result<IssuedChallenge, EnrollError> {
        let now = OffsetDateTime::now_utc();
        self.authorize_challenge(&request, now).await?;
        let ek_public = parse_public(request.ek_public)?;
        let ak = parse_public(request.ak_public)?;
        certify::check_ak(&ak)?;
        let roots: Vec<Vec<u8>> = self
            .store
            .tpm_roots()
            .await?
            .into_iter()
            .map(|r| r.der)
            .collect();
        let verified = ek::verify_ek(
            request.ek_certificate,
            request.ek_chain,
            &roots,
            Some(&ek_public),
            now.unix_timestamp(),
        )?;
        let mut secret = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| AttestationProblem::EkUnusable("no randomness".into()))?;
        // TPM2_MakeCredential's RSA-OAEP encryption to the EK costs ~0.3 ms (release build,
        // `cargo bench -p ca-server --bench attestation`): off the async workers.
        let ak_name = ak.name();
        let credential =
            tokio::task::spawn_blocking(move || make_credential(&ek_public, &ak_name, &secret))
                .await
                .map_err(|e| AttestationProblem::EkUnusable(format!("credential task: {e}")))?
                .map_err(|e| AttestationProblem::EkUnusable(e.to_string()))?;
        let expires_at = now.unix_timestamp() + CHALLENGE_TTL_SECS;
        self.store
            .insert_challenge(
                &ChallengeRecord {
                    secret_sha256: ring::digest::digest(&ring::digest::SHA256, &secret)
                        .as_ref()
                        .to_vec(),
                    device_serial: request.serial.to_owned(),
                    ek_sha256: verified.certificate_sha256,
                    ak_public: ak.raw,
                    created_at: now.unix_timestamp(),
                    expires_at,
                    used_at: None,
                },
                now.unix_timestamp() - PURGE_AFTER_SECS,
            )
            .await?;
        Ok(IssuedChallenge {
            credential,
            expires_at,
        })
    }

    /// The requester may enroll (or renew) this device.
    async fn authorize_challenge(
        &self,
        request: &ChallengeRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<(), EnrollError> {
        match &request.authorization {
            ChallengeAuthorization::Token { serial, token } => {
                let record = self.store.token(&crate::auth::token::hash(token)).await?;
                crate::authority::token::check_token(record.as_ref(), serial, now)?;
                if *serial != request.serial {
                    return Err(EnrollError::Token {
                        problem: TokenProblem::OtherDevice,
                    });
                }
                self.registered_device(request.serial).await?;
            }
            ChallengeAuthorization::Certificate(chain) => {
                let leaf = chain.first().ok_or(EnrollError::Station(
                    StationProblem::NotAStationCertificate {
                        reason: "no client certificate was presented".into(),
                    },
                ))?;
                let (device, _) = self.registered_device(request.serial).await?;
                if self.verify_station_chain(leaf, now).is_ok() {
                    let station = self.authenticate_station(leaf, now).await?;
                    if !station.products.contains(&device.product) {
                        return Err(EnrollError::Station(StationProblem::OutOfScope {
                            station: station.name,
                            product: device.product,
                        }));
                    }
                } else {
                    let current = self.current_certificate(leaf, now).await?;
                    if current.device_serial != request.serial {
                        return Err(EnrollError::Token {
                            problem: TokenProblem::OtherDevice,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
