//! The records storage reads and writes: devices, tokens, certificates, CRLs, audit events,
//! operators and the issuance bundle. Plain data; the SQL is in the backends and `sql/`.

use super::StationQuota;

/// A device as registered from the MES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub serial: String,
    pub product: String,
    pub gtin: String,
    pub lot: Option<String>,
    pub status: DeviceStatus,
    pub registered_at: i64,
}

/// Whether a device may enroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Disabled,
}

impl DeviceStatus {
    /// The name used in the database, the CLI and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Disabled => "disabled",
        }
    }

    pub(super) fn parse(text: &str) -> DeviceStatus {
        if text == "active" {
            DeviceStatus::Active
        } else {
            DeviceStatus::Disabled
        }
    }
}

/// A stored one-time token (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: Vec<u8>,
    pub device_serial: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Set when an operator cancelled the token before it was used.
    pub revoked_at: Option<i64>,
}

/// Revocation state of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    OnHold,
    Revoked,
    Valid,
}

impl CertificateStatus {
    /// The name used in the database and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::OnHold => "on_hold",
            CertificateStatus::Revoked => "revoked",
            CertificateStatus::Valid => "valid",
        }
    }

    /// Parses a status name strictly (`valid`, `on_hold`, `revoked`); `None` for anything else.
    pub fn from_name(text: &str) -> Option<CertificateStatus> {
        [
            CertificateStatus::OnHold,
            CertificateStatus::Revoked,
            CertificateStatus::Valid,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    pub(super) fn parse(text: &str) -> CertificateStatus {
        match text {
            "valid" => CertificateStatus::Valid,
            "on_hold" => CertificateStatus::OnHold,
            // Anything unexpected is treated as the most restrictive state.
            _ => CertificateStatus::Revoked,
        }
    }
}

/// An issued certificate, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub serial: String,
    pub issuer: String,
    pub device_serial: String,
    pub product: String,
    pub policy_oid: String,
    pub not_before: i64,
    pub not_after: i64,
    pub spki_sha256: Vec<u8>,
    pub der: Vec<u8>,
    pub status: CertificateStatus,
    pub authorized_by: String,
    /// The certificate this one replaced at re-enrollment.
    pub supersedes: Option<String>,
    pub issued_at: i64,
}

/// An audit event before it is chained and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// JSON object with the event's details.
    pub details: String,
}

/// A stored, chained audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// What an operator may do through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only: certificates, devices, the audit trail.
    Auditor,
    /// Devices and tokens.
    Registrar,
}

impl Role {
    /// The name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Registrar => "registrar",
        }
    }

    /// Parses a role name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "registrar" => Some(Role::Registrar),
            _ => None,
        }
    }
}

/// How an operator authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKind {
    /// A bearer API key (only its SHA-256 is stored).
    ApiKey,
    /// A client certificate chaining to our root, known by its SHA-256 fingerprint.
    Certificate,
}

impl OperatorKind {
    /// The name used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::ApiKey => "api_key",
            OperatorKind::Certificate => "certificate",
        }
    }

    pub(super) fn parse(text: &str) -> OperatorKind {
        if text == "api_key" {
            OperatorKind::ApiKey
        } else {
            OperatorKind::Certificate
        }
    }
}

/// An admin API credential and the role it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    pub kind: OperatorKind,
    pub role: Role,
    /// API key id, or the certificate's SHA-256 fingerprint (lowercase hex).
    pub lookup: String,
    /// SHA-256 of the whole API key (`None` for certificates).
    pub secret_sha256: Option<Vec<u8>>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for OperatorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key hash is elided: it is a credential verifier.
        f.debug_struct("OperatorRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("role", &self.role)
            .field("lookup", &self.lookup)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// Filters and paging for a certificate search; every filter is optional and they combine
/// with AND. Results are ordered by serial; `after` continues from a previous page's last serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateQuery {
    pub device: Option<String>,
    pub product: Option<String>,
    /// The device's production lot.
    pub lot: Option<String>,
    pub status: Option<CertificateStatus>,
    /// Only certificates with `from < not_after <= to` (Unix seconds).
    pub not_after_within: Option<(i64, i64)>,
    /// Keyset cursor: only serials greater than this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: i64,
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub reason: Option<String>,
}

/// What a CRL is built from: the next number and the revoked certificates at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSnapshot {
    pub number: i64,
    pub entries: Vec<RevokedEntry>,
}

/// A signed CRL as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCrl {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

/// Everything one issuance writes, committed together or not at all.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub certificate: CertificateRecord,
    /// The one-time token consumed by this issuance, if it was token-authorized.
    pub consume_token: Option<Vec<u8>>,
    /// The station hour this issuance counts against, if a station authorized it.
    pub station_quota: Option<StationQuota>,
    /// An initial enrollment (token or station): refused at commit while the device holds a
    /// certificate neither revoked nor expired, and for a key certified before for any device.
    /// Any issuance is refused for a key certified for another device.
    pub initial: bool,
    /// The attestation challenge consumed and the TPM the device is bound to, for an issuance
    /// whose key was attested.
    pub attestation: Option<super::AttestationClaim>,
    pub audit: AuditEvent,
}
