//! Manufacturing stations (DESIGN.md flow 4): a station enrolls its own key with its one-time
//! token, then its certificate authorizes device enrollments within its product scope and
//! hourly limit.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::csr::{KeyNotAllowed, SubjectKey};
use super::replay::{self, Attempt, Repeat};
use super::station_certificate::{build_station_certificate, station_identity};
use super::{
    Authority, Authorization, Csr, EnrollError, IssueRequest, Issued, StationProblem,
    TokenEnrollment, TokenProblem, VettedCsr, allow_station_enrollment, vet_csr,
};
use crate::storage::{
    AuditAction, AuditEvent, FactsQuery, Station, StationCertificate, StationIssuance,
    StationQuota, StationStatus, StoreError,
};
use iomt_core::policy::Curve;

/// A `simpleenroll` request authorized by a station's client certificate.
pub struct StationEnrollment<'a> {
    pub label: Option<&'a str>,
    /// The client certificate chain the TLS peer presented (leaf first).
    pub peer_chain: &'a [CertificateDer<'static>],
    pub csr_der: &'a [u8],
    /// The station connection's `tls-exporter` value (`None` when it has none).
    pub channel_binding: Option<&'a iomt_core::channel_binding::Exporter>,
}

fn refuse(problem: StationProblem) -> EnrollError {
    EnrollError::Station(problem)
}

impl Authority {
    /// Enrolls a device on behalf of an authenticated station: the device (named by the CSR's
    /// serialNumber) must be registered under a product in the station's scope.
    #[tracing::instrument(skip_all, fields(label = request.label, station, serial))]
    pub async fn enroll_by_station(
        &self,
        request: StationEnrollment<'_>,
    ) -> Result<Issued, EnrollError> {
        replay::settle(|| self.station_attempt(&request)).await
    }

    async fn station_attempt(&self, request: &StationEnrollment<'_>) -> Result<Issued, Attempt> {
        let now = OffsetDateTime::now_utc();
        let leaf = request.peer_chain.first().ok_or_else(|| {
            refuse(StationProblem::NotAStationCertificate {
                reason: "no client certificate was presented".into(),
            })
        })?;
        let station = self.authenticate_station(leaf, now).await?;
        tracing::Span::current().record("station", station.name.as_str());

        let csr = Csr::parse(request.csr_der)?;
        let serial = csr
            .subject_serial_number()
            .ok_or(super::CsrError::NoSerialNumber)?
            .to_owned();
        tracing::Span::current().record("serial", serial.as_str());
        let facts = self
            .commits
            .facts(FactsQuery {
                serial: serial.clone(),
                token_hash: None,
                spki_sha256: Some(csr.spki_sha256()),
                now: now.unix_timestamp(),
            })
            .await?;
        let (device, policy) = self.check_registered(&serial, facts.device)?;
        if let Some(label) = request.label {
            self.check_label(label, &device, policy)?;
        }
        if !station.products.contains(&device.product) {
            return Err(refuse(StationProblem::OutOfScope {
                station: station.name,
                product: device.product,
            })
            .into());
        }
        allow_station_enrollment(policy)?;
        let quota = Authority::station_quota(&station, policy, now);

        let VettedCsr {
            csr,
            sunset,
            identity,
            spki_sha256,
        } = vet_csr(policy, &device, csr)?;
        super::channel_binding::check(policy, &csr, request.channel_binding)?;
        let actor = format!("station:{}", station.name);
        if facts
            .held
            .as_ref()
            .is_some_and(|held| held.authorized_by == actor)
            && let Some(issued) = self
                .resend(
                    Repeat {
                        device: &device,
                        spki_sha256: &spki_sha256,
                        authorized_by: &actor,
                        issued_between: replay::last_day(now),
                        actor: &actor,
                    },
                    now,
                )
                .await?
        {
            return Ok(issued);
        }
        super::token::check_key_unused(facts.key_holder, &device)?;
        self.check_not_enrolled(&device, facts.held, &actor, now)
            .await?;
        let attested = self.attest(policy, &device, &csr, &actor, now).await?;

        self.issue(IssueRequest {
            device: &device,
            policy,
            identity: &identity,
            csr: &csr,
            sunset,
            spki_sha256,
            now,
            authorization: Authorization::Station(quota),
            same_identity_as: None,
            attested,
        })
        .await
    }

    /// The station behind a client certificate: it chains to the station CA, is on record
    /// byte for byte, is not revoked, and its station is active.
    pub(in crate::authority) async fn authenticate_station(
        &self,
        leaf: &CertificateDer<'static>,
        now: OffsetDateTime,
    ) -> Result<Station, EnrollError> {
        let not_station = |reason: &str| {
            refuse(StationProblem::NotAStationCertificate {
                reason: reason.to_owned(),
            })
        };
        let serial = super::chain::presented_serial(leaf).map_err(not_station)?;
        self.verify_station_chain(leaf, now).map_err(|reason| {
            not_station(&format!("it was not issued by the station CA ({reason})"))
        })?;
        let (record, station) = self
            .store
            .station_by_certificate(&serial)
            .await?
            .filter(|(record, _)| record.der == leaf.as_ref())
            .ok_or_else(|| not_station("this CA has no record of it"))?;
        if station.status != StationStatus::Active {
            return Err(refuse(StationProblem::Disabled {
                station: station.name,
            }));
        }
        if record.revoked {
            return Err(refuse(StationProblem::Revoked {
                station: station.name,
            }));
        }
        Ok(station)
    }

    pub(in crate::authority) fn verify_station_chain(
        &self,
        leaf: &CertificateDer<'static>,
        now: OffsetDateTime,
    ) -> Result<(), super::chain::ChainError> {
        // Every loaded station CA generation: a station enrolled under a retiring one keeps
        // working until its own certificate expires.
        let ca = self.ca.current();
        let mut outcome = None;
        for generation in ca.station_generations() {
            match self
                .station_chains
                .verify(leaf, &generation.cert_der, now.unix_timestamp())
            {
                Ok(()) => return Ok(()),
                Err(error) => outcome = outcome.or(Some(error)),
            }
        }
        Err(outcome.unwrap_or(super::chain::ChainError::Path(webpki::Error::UnknownIssuer)))
    }

    /// The hour this issuance counts in and the station's limit (its own, else the product
    /// policy's). The issuance transaction counts and enforces it atomically (one place, shared
    /// by every replica); a request over the limit is refused there with nothing stored.
    fn station_quota(
        station: &Station,
        policy: &iomt_core::policy::Policy,
        now: OffsetDateTime,
    ) -> StationQuota {
        StationQuota {
            station: station.name.clone(),
            window_start: StationQuota::window_of(now.unix_timestamp()),
            limit: station
                .rate_limit_per_hour
                .unwrap_or(policy.enrollment.station.max_issuance_per_station_per_hour),
        }
    }

    /// A station enrolling its own key with the one-time token `station create` printed.
    pub(super) async fn enroll_station_key(
        &self,
        station: Station,
        request: &TokenEnrollment<'_>,
        now: OffsetDateTime,
    ) -> Result<Issued, EnrollError> {
        if station.status != StationStatus::Active {
            return Err(refuse(StationProblem::Disabled {
                station: station.name,
            }));
        }
        let token_hash = crate::auth::token::hash(request.token);
        let problem = match &station.token {
            None => Some(TokenProblem::Unknown),
            Some(token) if token.hash != token_hash => Some(TokenProblem::Unknown),
            Some(token) if token.used_at.is_some() => Some(TokenProblem::Used),
            Some(token) if token.expires_at <= now.unix_timestamp() => Some(TokenProblem::Expired),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(EnrollError::Token { problem });
        }

        let csr = Csr::parse(request.csr_der)?;
        if !matches!(csr.key, SubjectKey::Ec(Some(Curve::P256 | Curve::P384))) {
            return Err(KeyNotAllowed {
                key: csr.key.to_string(),
                policy: "the station certificate profile".into(),
                allowed: "ECDSA P-256, ECDSA P-384".into(),
            }
            .into());
        }
        csr.verify_signature()?;
        let ca = self.ca.current();
        let identity = station_identity(&ca.station, &station.name);
        csr.check_identity(&identity)?;
        let signed =
            build_station_certificate(&identity, &csr.spki_der, &ca.station, &self.urls, now)?;
        // Re-checked by an independent verifier before it is stored and returned.
        let leaf = CertificateDer::from(signed.der.clone());
        if let Err(reason) = self.verify_station_chain(&leaf, now) {
            tracing::error!(%reason, "station certificate does not verify; nothing issued");
            return Err(EnrollError::Defect { findings: vec![] });
        }
        let issuance = StationIssuance {
            certificate: StationCertificate {
                serial: signed.serial_hex.clone(),
                station: station.name.clone(),
                not_before: signed.not_before.unix_timestamp(),
                not_after: signed.not_after.unix_timestamp(),
                spki_sha256: csr.spki_sha256(),
                der: signed.der.clone(),
                revoked: false,
                issued_at: now.unix_timestamp(),
            },
            issuer: ca.station.name.clone(),
            token_hash,
            audit: AuditEvent {
                at: now.unix_timestamp(),
                actor: format!("station:{}", station.name),
                action: AuditAction::StationCertificateIssued.into(),
                object: format!("certificate:{}", signed.serial_hex),
                details: serde_json::json!({
                    "station": station.name,
                    "not_after": signed.not_after.unix_timestamp(),
                })
                .to_string(),
            },
        };
        match self
            .store
            .commit_station_certificate(&issuance, now.unix_timestamp())
            .await
        {
            Ok(()) => {}
            Err(StoreError::TokenNotConsumable) => {
                return Err(EnrollError::Token {
                    problem: TokenProblem::Used,
                });
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(station = %station.name, certificate = %signed.serial_hex, "station certificate issued");
        Ok(Issued {
            certificate: signed,
            issuer_der: ca.station.cert_der.clone(),
            issuer: ca.station.name.clone(),
            product: crate::pki::STATION_CA.to_owned(),
        })
    }
}
