//! Who is calling the admin API: a bearer API key or an operator client certificate, each
//! enrolled with a role, and what each role may do. Creating and revoking those credentials
//! (`ca-server apikey`, `ca-server operator`) is [`crate::operations::credentials`].
//!
//! API keys look like `iomt_<id>_<secret>`: the id (16 hex digits) finds the record, then the
//! SHA-256 of the whole key is compared in constant time. The bootstrap key `init` writes to
//! `DIR/admin-token` (its hash in `config.toml`) is an `admin` key named `bootstrap`.
//! An operator certificate is a certificate of the operator profile (`operator_profile`: the
//! operator policy OID, no device identity, not issued by a device issuing CA or the station
//! CA) chaining to our root for client authentication, whose SHA-256 fingerprint was enrolled
//! with `operator add`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, UnixTime};
use subtle::ConstantTimeEq;

use super::operator_profile::{self, ForbiddenIssuers, ProfileProblem};
use crate::pki::CaMaterial;
use crate::pki::fingerprint::sha256_hex;
use crate::storage::{OperatorKind, Role, Store, StoreError};

/// Prefix of every API key (easy to spot in a secret scanner).
const KEY_PREFIX: &str = "iomt_";
/// Name of the bootstrap admin key written by `init`.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// Something an admin API route does; each route requires exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Read and export the audit trail.
    AuditRead,
    /// Search and read certificates.
    CertificatesRead,
    /// Revoke, hold and release certificates.
    CertificatesRevoke,
    /// Read device records.
    DevicesRead,
    /// Run, list and release recalls (admin only).
    Recall,
    /// Register devices.
    DevicesRegister,
    /// Create, disable and list manufacturing stations.
    StationsManage,
    /// Create one-time enrollment tokens.
    TokensCreate,
    /// Revoke a device's unused enrollment tokens.
    TokensRevoke,
}

impl Capability {
    /// Whether `role` has this capability: `admin` everything, `registrar` devices and tokens
    /// (create, revoke), `auditor` read-only (certificates, devices, audit).
    pub fn allowed_for(self, role: Role) -> bool {
        use Capability as C;
        match role {
            Role::Admin => true,
            Role::Registrar => {
                matches!(
                    self,
                    C::DevicesRead | C::DevicesRegister | C::TokensCreate | C::TokensRevoke
                )
            }
            Role::Auditor => matches!(self, C::AuditRead | C::CertificatesRead | C::DevicesRead),
        }
    }

    /// The name used in error messages and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Capability::AuditRead => "audit:read",
            Capability::CertificatesRead => "certificates:read",
            Capability::CertificatesRevoke => "certificates:revoke",
            Capability::DevicesRead => "devices:read",
            Capability::DevicesRegister => "devices:register",
            Capability::Recall => "recalls:manage",
            Capability::StationsManage => "stations:manage",
            Capability::TokensCreate => "tokens:create",
            Capability::TokensRevoke => "tokens:revoke",
        }
    }
}

/// An authenticated admin API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub kind: OperatorKind,
}

impl Operator {
    /// How the caller appears as the actor of audit events.
    pub fn actor(&self) -> String {
        match self.kind {
            OperatorKind::ApiKey => format!("apikey:{}", self.name),
            OperatorKind::Certificate => format!("operator:{}", self.name),
        }
    }
}

/// Why a caller was not authenticated. Messages never include the presented secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error(
        "no credential: send `Authorization: Bearer <API key>` or an operator client certificate"
    )]
    Missing,
    #[error("the API key is not valid")]
    BadKey,
    #[error("the API key `{0}` has been revoked")]
    RevokedKey(String),
    #[error("client certificate {fingerprint} is not enrolled as an operator")]
    UnknownCertificate { fingerprint: String },
    #[error("client certificate {fingerprint} is not valid here: {reason}")]
    UntrustedCertificate { fingerprint: String, reason: String },
    #[error("operator `{0}` has been revoked")]
    RevokedOperator(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthFailure {
    /// A short stable reason for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_credential",
            AuthFailure::BadKey => "bad_key",
            AuthFailure::RevokedKey(_) => "revoked_key",
            AuthFailure::UnknownCertificate { .. } => "unknown_certificate",
            AuthFailure::UntrustedCertificate { .. } => "untrusted_certificate",
            AuthFailure::RevokedOperator(_) => "revoked_operator",
            AuthFailure::Store(_) => "storage",
        }
    }
}

/// A newly created API key; the key is shown once.
pub struct NewApiKey {
    /// The whole key, `iomt_<id>_<secret>`: never stored or logged.
    pub key: String,
    pub id: String,
    pub sha256: Vec<u8>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Generates an API key: a 64-bit id and 256 random bits from the system CSPRNG.
pub fn generate_key() -> Result<NewApiKey, ring::error::Unspecified> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)?;
    rng.fill(&mut secret)?;
    let id = hex::encode(id);
    let key = format!("{KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    Ok(NewApiKey {
        sha256: crate::auth::token::hash(&key),
        key,
        id,
    })
}

/// The id part of an API key, if it has the API key shape.
fn key_id(key: &str) -> Option<&str> {
    let (id, _) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// What an operator certificate must be: of the operator profile, chaining to our root directly
/// or through CAs other than the device issuing CAs and the station CA.
struct OperatorTrust {
    root: CertificateDer<'static>,
    forbidden: ForbiddenIssuers,
}

/// Why a certificate cannot be an operator's.
#[derive(Debug, thiserror::Error)]
pub enum TrustProblem {
    #[error("it is not an operator certificate: {0}")]
    Profile(#[from] ProfileProblem),
    #[error("it does not chain to this CA's root for client authentication: {0:?}")]
    Chain(webpki::Error),
}

impl OperatorTrust {
    fn new(ca: &CaMaterial) -> OperatorTrust {
        OperatorTrust {
            root: ca.root_der.clone(),
            forbidden: ForbiddenIssuers::of(ca),
        }
    }

    /// Refuses device and station certificates, verifies the chain for client authentication
    /// (with the intermediates the client sent, never a device issuing CA or the station CA),
    /// then checks the rest of the operator profile.
    fn verify(
        &self,
        leaf: &CertificateDer<'static>,
        extra: &[CertificateDer<'static>],
    ) -> Result<(), TrustProblem> {
        operator_profile::check_issuer(leaf, &self.forbidden)?;
        let intermediates: Vec<CertificateDer<'static>> = extra
            .iter()
            .filter(|der| !self.forbidden.is_one(der))
            .cloned()
            .collect();
        let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(TrustProblem::Chain)?;
        let anchor = webpki::anchor_from_trusted_cert(&self.root).map_err(TrustProblem::Chain)?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &intermediates,
                UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(TrustProblem::Chain)?;
        Ok(operator_profile::check(leaf)?)
    }
}

/// Checks that `leaf` (with the intermediates `extra`) can be an operator's certificate under
/// `ca`: of the operator profile, chaining to our root for client authentication now.
pub fn verify_operator_certificate(
    ca: &CaMaterial,
    leaf: &CertificateDer<'static>,
    extra: &[CertificateDer<'static>],
) -> Result<(), TrustProblem> {
    OperatorTrust::new(ca).verify(leaf, extra)
}

/// Checks admin API callers against the bootstrap key, the API keys and operator certificates.
pub struct Authenticator {
    store: Arc<dyn Store>,
    bootstrap_sha256: Option<Vec<u8>>,
    trust: OperatorTrust,
}

impl Authenticator {
    /// Trusts operator certificates chaining to `ca`'s root through any of its CAs.
    pub fn new(
        store: Arc<dyn Store>,
        ca: &CaMaterial,
        bootstrap_sha256: Option<Vec<u8>>,
    ) -> Authenticator {
        Authenticator {
            store,
            bootstrap_sha256,
            trust: OperatorTrust::new(ca),
        }
    }

    /// Authenticates a bearer key (preferred when both are present) or a client certificate.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<Operator, AuthFailure> {
        match (bearer, peer.and_then(<[_]>::first)) {
            (Some(key), _) => self.key(key.trim()).await,
            (None, Some(leaf)) => self.certificate(leaf, peer.unwrap_or_default()).await,
            (None, None) => Err(AuthFailure::Missing),
        }
    }

    /// [`Authenticator::authenticate`], also returning what identifies the credential for a
    /// later [`Authenticator::recheck`]: the API key id (`bootstrap` for the init key) or the
    /// certificate's SHA-256 fingerprint. Never the key itself.
    pub async fn authenticate_with_lookup(
        &self,
        bearer: Option<&str>,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<(Operator, String), AuthFailure> {
        let operator = self.authenticate(bearer, peer).await?;
        let lookup = match (bearer, peer.and_then(<[_]>::first)) {
            (Some(key), _) => key_id(key.trim()).unwrap_or(BOOTSTRAP_NAME).to_owned(),
            (None, Some(leaf)) => sha256_hex(leaf),
            (None, None) => return Err(AuthFailure::Missing),
        };
        Ok((operator, lookup))
    }

    /// Checks again a credential authenticated earlier (a console session): still enrolled
    /// under the same name and kind and not revoked; the role is the one on record now. A
    /// certificate's session also needs that certificate presented on this connection.
    pub async fn recheck(
        &self,
        kind: OperatorKind,
        name: &str,
        lookup: &str,
        peer_leaf: Option<&CertificateDer<'static>>,
    ) -> Result<Operator, AuthFailure> {
        if kind == OperatorKind::ApiKey && lookup == BOOTSTRAP_NAME {
            return match (&self.bootstrap_sha256, name == BOOTSTRAP_NAME) {
                (Some(_), true) => Ok(Operator {
                    name: BOOTSTRAP_NAME.to_owned(),
                    role: Role::Admin,
                    kind,
                }),
                _ => Err(AuthFailure::BadKey),
            };
        }
        let unknown = || match kind {
            OperatorKind::ApiKey => AuthFailure::BadKey,
            OperatorKind::Certificate => AuthFailure::UnknownCertificate {
                fingerprint: lookup.to_owned(),
            },
        };
        if kind == OperatorKind::Certificate
            && peer_leaf.map(|leaf| sha256_hex(leaf)).as_deref() != Some(lookup)
        {
            return Err(unknown());
        }
        let record = self
            .store
            .operator(lookup)
            .await?
            .filter(|r| r.kind == kind && r.name == name)
            .ok_or_else(unknown)?;
        if record.revoked_at.is_some() {
            return Err(match kind {
                OperatorKind::ApiKey => AuthFailure::RevokedKey(record.name),
                OperatorKind::Certificate => AuthFailure::RevokedOperator(record.name),
            });
        }
        Ok(Operator {
            name: record.name,
            role: record.role,
            kind,
        })
    }

    async fn key(&self, key: &str) -> Result<Operator, AuthFailure> {
        let presented = crate::auth::token::hash(key);
        let Some(id) = key_id(key) else {
            let bootstrap = self
                .bootstrap_sha256
                .as_ref()
                .is_some_and(|expected| bool::from(presented.ct_eq(expected)));
            return if bootstrap {
                Ok(Operator {
                    name: BOOTSTRAP_NAME.to_owned(),
                    role: Role::Admin,
                    kind: OperatorKind::ApiKey,
                })
            } else {
                Err(AuthFailure::BadKey)
            };
        };
        let record = self.store.operator(id).await?.ok_or(AuthFailure::BadKey)?;
        let expected = match (&record.kind, &record.secret_sha256) {
            (OperatorKind::ApiKey, Some(expected)) => expected,
            _ => return Err(AuthFailure::BadKey),
        };
        if !bool::from(presented.ct_eq(expected)) {
            return Err(AuthFailure::BadKey);
        }
        if record.revoked_at.is_some() {
            return Err(AuthFailure::RevokedKey(record.name));
        }
        Ok(Operator {
            name: record.name,
            role: record.role,
            kind: OperatorKind::ApiKey,
        })
    }

    async fn certificate(
        &self,
        leaf: &CertificateDer<'static>,
        chain: &[CertificateDer<'static>],
    ) -> Result<Operator, AuthFailure> {
        let fingerprint = sha256_hex(leaf);
        let record = self
            .store
            .operator(&fingerprint)
            .await?
            .filter(|r| r.kind == OperatorKind::Certificate)
            .ok_or_else(|| AuthFailure::UnknownCertificate {
                fingerprint: fingerprint.clone(),
            })?;
        let extra = chain.get(1..).unwrap_or_default();
        self.trust
            .verify(leaf, extra)
            .map_err(|problem| AuthFailure::UntrustedCertificate {
                fingerprint: fingerprint.clone(),
                reason: problem.to_string(),
            })?;
        if record.revoked_at.is_some() {
            return Err(AuthFailure::RevokedOperator(record.name));
        }
        Ok(Operator {
            name: record.name,
            role: record.role,
            kind: OperatorKind::Certificate,
        })
    }
}
