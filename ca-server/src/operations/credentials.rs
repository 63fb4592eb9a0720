//! The operators' credentials behind `ca-server apikey` and `ca-server operator`: creating an API
//! key with a role, enrolling an operator certificate after checking it against the operator
//! profile and our root, and revoking either by name; each change is audited in the same
//! transaction. How a caller is authenticated with them is [`crate::auth::operator`].

use rustls_pki_types::CertificateDer;

use crate::auth::operator::{
    BOOTSTRAP_NAME, NewApiKey, TrustProblem, generate_key, verify_operator_certificate,
};
use crate::pki::CaMaterial;
use crate::pki::fingerprint::sha256_hex;
use crate::storage::{
    AuditAction, AuditEvent, OperatorKind, OperatorRecord, Role, Store, StoreError,
};

/// Why an operator credential could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("unknown role `{0}` (use admin, registrar or auditor)")]
    UnknownRole(String),
    #[error("name `{0}` must be 1-64 characters of letters, digits, `.`, `_` or `-`")]
    BadName(String),
    #[error("refused as an operator certificate: {0}")]
    Untrusted(#[from] TrustProblem),
    #[error("no active credential named `{0}`")]
    Unknown(String),
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_name(name: &str) -> Result<(), OperatorError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != BOOTSTRAP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| OperatorError::BadName(name.to_owned()))
}

/// Parses a role name.
pub fn parse_role(text: &str) -> Result<Role, OperatorError> {
    Role::parse(text).ok_or_else(|| OperatorError::UnknownRole(text.to_owned()))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Creates an API key with a role (`apikey create`); the key is returned once.
pub async fn create_key(
    store: &dyn Store,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<NewApiKey, OperatorError> {
    check_name(name)?;
    let key = generate_key().map_err(|_| OperatorError::Random)?;
    let at = now();
    let record = OperatorRecord {
        name: name.to_owned(),
        kind: OperatorKind::ApiKey,
        role,
        lookup: key.id.clone(),
        secret_sha256: Some(key.sha256.clone()),
        created_at: at,
        revoked_at: None,
    };
    let audit = AuditEvent {
        at,
        actor: actor.to_owned(),
        action: AuditAction::ApiKeyCreated.into(),
        object: format!("apikey:{name}"),
        details: serde_json::json!({"role": role.as_str(), "key_id": key.id}).to_string(),
    };
    store.add_operator(&record, &audit).await?;
    Ok(key)
}

/// Enrolls an operator certificate (DER, with the intermediates it needs) with a role
/// (`operator add`), after checking that it is of the operator profile and chains to our root
/// for client authentication now.
pub async fn add_certificate(
    store: &dyn Store,
    ca: &CaMaterial,
    name: &str,
    role: Role,
    der: CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    actor: &str,
) -> Result<String, OperatorError> {
    check_name(name)?;
    verify_operator_certificate(ca, &der, intermediates)?;
    let fingerprint = sha256_hex(&der);
    let at = now();
    let record = OperatorRecord {
        name: name.to_owned(),
        kind: OperatorKind::Certificate,
        role,
        lookup: fingerprint.clone(),
        secret_sha256: None,
        created_at: at,
        revoked_at: None,
    };
    let audit = AuditEvent {
        at,
        actor: actor.to_owned(),
        action: AuditAction::OperatorAdded.into(),
        object: format!("operator:{name}"),
        details: serde_json::json!({"role": role.as_str(), "sha256": fingerprint}).to_string(),
    };
    store.add_operator(&record, &audit).await?;
    Ok(fingerprint)
}

/// Revokes an API key or operator certificate by name.
pub async fn revoke(store: &dyn Store, name: &str, actor: &str) -> Result<(), OperatorError> {
    let at = now();
    let audit = AuditEvent {
        at,
        actor: actor.to_owned(),
        action: AuditAction::OperatorRevoked.into(),
        object: format!("operator:{name}"),
        details: "{}".into(),
    };
    if store.revoke_operator(name, at, &audit).await? {
        Ok(())
    } else {
        Err(OperatorError::Unknown(name.to_owned()))
    }
}
