//! The HTTPS listener's certificate in use, and its renewal while the server runs.
//!
//! [`CurrentCert`] is the rustls certificate resolver: every handshake takes the
//! `Arc<CertifiedKey>` in place at that moment, so a renewal swaps it for new connections
//! while established ones keep the session they negotiated (nothing restarts, nothing drops).
//! [`HttpsRenewal`] renews the certificate from the online root once `[ca] tls_renew_percent`
//! of its life has passed, when it lives longer than `[ca.tls] lifetime` allows, or when the
//! active root no longer is its issuer (a root rollover: the new certificate is signed by the
//! new root and served with the NewWithOld link, so clients that trust only the old root still
//! connect; `CaMaterial::tls_chain_for`); each renewal is logged and audited as
//! `ca.tls_renewed`. Under an offline root nothing can sign: the task warns once the
//! certificate is due and the ceremony renews it (`init --external-root` recipe).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{CaLifecycle, Settings};
use crate::pki::{CaHandle, KeyAccess, KeyStore, PkiError, TLS_CERT, renew_tls_certificate};
use crate::storage::{AuditAction, AuditEvent, Store, StoreError};

/// Why the HTTPS certificate could not be renewed (the old one stays in use).
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("the renewed certificate and key are not usable by rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("audit: {0}")]
    Store(#[from] StoreError),
    #[error("the current HTTPS certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("renewal task: {0}")]
    Task(String),
}

/// The certificate and key every new TLS handshake uses.
#[derive(Debug)]
pub struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    /// A resolver serving `chain` (leaf first) with `key`.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CurrentCert, rustls::Error> {
        Ok(CurrentCert(RwLock::new(Arc::new(certified(chain, key)?))))
    }

    /// The certificate and key in use now.
    pub fn get(&self) -> Arc<CertifiedKey> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            // A writer never panics while holding the lock (it only swaps an Arc).
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `key` in use for every handshake from now on.
    fn replace(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.0.write() {
            Ok(mut guard) => *guard = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    /// Serves the same certificate and key with `chain` (leaf first) from now on, when `chain`
    /// differs from the one served; returns whether it did.
    fn rechain(&self, chain: Vec<CertificateDer<'static>>) -> bool {
        let current = self.get();
        if current.cert == chain {
            return false;
        }
        self.replace(CertifiedKey::new(chain, current.key.clone()));
        true
    }

    /// The leaf certificate in use (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.get().cert[0].clone()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A rustls `CertifiedKey` from a chain and a PKCS#8 key, checked to match (ring only).
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
}

/// Why a certificate is due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The configured share of its life has passed.
    Age,
    /// It lives longer than `[ca.tls] lifetime` (the configured lifetime was shortened).
    Lifetime,
    /// The active root did not sign it (a root rollover).
    Issuer,
}

impl Due {
    fn as_str(self) -> &'static str {
        match self {
            Due::Age => "age",
            Due::Lifetime => "lifetime",
            Due::Issuer => "root",
        }
    }
}

/// Slack over the configured lifetime before a certificate counts as too long-lived.
const LIFETIME_SLACK_SECS: i64 = 600;

/// How far before its issuance a certificate's notBefore lies (`pki::tls_cert`, `init`).
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// When `leaf` is due for renewal under `config` with `root_der` the active root, and if not,
/// the time it will be.
pub fn due(
    leaf: &[u8],
    root_der: &[u8],
    config: &CaLifecycle,
    now: OffsetDateTime,
) -> Result<Result<Due, OffsetDateTime>, RenewalError> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| RenewalError::Unreadable(e.to_string()))?;
    let (_, root) =
        X509Certificate::from_der(root_der).map_err(|e| RenewalError::Unreadable(e.to_string()))?;
    if cert.verify_signature(Some(root.public_key())).is_err() {
        return Ok(Ok(Due::Issuer));
    }
    // Our certificates are backdated five minutes against clock skew: their life counts from
    // issuance.
    let not_after = cert.validity().not_after.to_datetime();
    let issued = (cert.validity().not_before.to_datetime() + BACKDATE).min(not_after);
    let life = not_after - issued;
    let configured = config
        .lifetime(TLS_CERT)
        .map_err(|e| RenewalError::Unreadable(e.to_string()))?;
    if life.whole_seconds() > configured.whole_seconds() + LIFETIME_SLACK_SECS {
        return Ok(Ok(Due::Lifetime));
    }
    let at = issued + life * (f64::from(config.tls_renew_percent()) / 100.0);
    if now >= at {
        Ok(Ok(Due::Age))
    } else {
        Ok(Err(at))
    }
}

/// True when a certificate capped at `root_end` would end over a minute after `leaf`.
fn outlasts(leaf: &[u8], root_end: Option<OffsetDateTime>) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return true;
    };
    root_end.is_some_and(|end| {
        end > cert.validity().not_after.to_datetime() + time::Duration::minutes(1)
    })
}

/// Renews the HTTPS certificate in the background (every replica renews its own).
pub struct HttpsRenewal {
    dir: PathBuf,
    access: KeyAccess,
    store: Arc<dyn Store>,
    ca: CaHandle,
    config: CaLifecycle,
    current: Arc<CurrentCert>,
    /// The longest sleep between looks: a minute, or the reload interval when shorter (a root
    /// rollover is picked up within it).
    max_sleep: std::time::Duration,
    /// The offline-root warning is logged once per certificate.
    warned: std::sync::Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for HttpsRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsRenewal").finish_non_exhaustive()
    }
}

/// The longest sleep between looks when `[ca] reload_interval_secs` is longer.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

impl HttpsRenewal {
    /// The renewal of `current` for the server configured by `settings`.
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        ca: CaHandle,
        current: Arc<CurrentCert>,
    ) -> HttpsRenewal {
        HttpsRenewal {
            dir: settings.data_dir.clone(),
            access: settings.key_access.clone(),
            store,
            ca,
            config: settings.config.ca.clone(),
            current,
            max_sleep: MAX_SLEEP.min(settings.config.ca.reload_interval()),
            warned: std::sync::Mutex::new(None),
        }
    }

    /// Whether this is the first warning about `leaf` (each certificate is warned about once,
    /// not at every look).
    fn first_warning_for(&self, leaf: &[u8]) -> Result<bool, RenewalError> {
        let mut warned = self
            .warned
            .lock()
            .map_err(|e| RenewalError::Task(e.to_string()))?;
        if warned.as_deref() == Some(leaf) {
            return Ok(false);
        }
        *warned = Some(leaf.to_vec());
        Ok(true)
    }

    /// Renews the certificate if it is due; returns when to look again.
    pub async fn tick(&self) -> Result<OffsetDateTime, RenewalError> {
        let now = OffsetDateTime::now_utc();
        let material = self.ca.current();
        let leaf = self.current.leaf();
        // The links sent with it follow the roots: a link drops out once its old root expired.
        let chain = material.tls_chain_for(&leaf);
        let links = chain.len() - 1;
        if self.current.rechain(chain) {
            tracing::info!(
                chain_certificates = links,
                "HTTPS certificate chain updated"
            );
        }
        let reason = match due(&leaf, material.active_root_der(), &self.config, now)? {
            Ok(reason) => reason,
            Err(at) => return Ok(at),
        };
        let Some(root_end) = material.active_root().map(|root| root.not_after) else {
            if self.first_warning_for(&leaf)? {
                tracing::warn!(
                    reason = reason.as_str(),
                    "the HTTPS certificate is due for renewal but the root is offline: have the \
                     offline root sign a new one at the next ceremony"
                );
            }
            return Ok(now + time::Duration::hours(1));
        };
        let lifetime = self
            .config
            .lifetime(TLS_CERT)
            .map_err(|e| RenewalError::Unreadable(e.to_string()))?;
        if reason == Due::Age && !outlasts(&leaf, Some(root_end)) {
            // The root ends first: a renewal would end no later than this certificate (it is
            // capped at the root's notAfter), so only a root rollover helps.
            if self.first_warning_for(&leaf)? {
                tracing::warn!(
                    "the HTTPS certificate is due but already ends with the root: roll the root over"
                );
            }
            return Ok(now + time::Duration::hours(1));
        }
        let (dir, access) = (self.dir.clone(), self.access.clone());
        let root_name = material.active_root_name().to_owned();
        let renewed = tokio::task::spawn_blocking(move || {
            let keys = KeyStore::open(&dir, &access)?;
            let Some(root) = material.active_root() else {
                return Err(RenewalError::Task("the root went offline".into()));
            };
            let renewed = renew_tls_certificate(&dir, &keys, root, &leaf, lifetime, now)?;
            let chain = material.tls_chain_for(&renewed.cert);
            Ok::<_, RenewalError>((renewed, chain))
        })
        .await
        .map_err(|e| RenewalError::Task(e.to_string()))??;
        let (renewed, chain) = renewed;
        let (serial, not_after) = (renewed.serial.clone(), renewed.not_after);
        let links = chain.len().saturating_sub(1);
        self.current.replace(certified(chain, renewed.key)?);
        tracing::info!(
            %serial,
            not_after = %not_after,
            reason = reason.as_str(),
            root = %root_name,
            chain_certificates = links,
            "HTTPS certificate renewed with a new key; new connections get it"
        );
        self.store
            .append_audit(&[AuditEvent {
                at: now.unix_timestamp(),
                actor: "system:tls".into(),
                action: AuditAction::CaTlsRenewed.into(),
                object: format!("ca:{TLS_CERT}"),
                details: serde_json::json!({
                    "serial": serial,
                    "not_after": not_after.unix_timestamp(),
                    "reason": reason.as_str(),
                    "root": root_name,
                })
                .to_string(),
            }])
            .await?;
        Ok(now)
    }

    /// Looks at the certificate until `stop` turns true: when it falls due, and at least every
    /// minute or reload interval (a root rollover), retrying a failed renewal at the next look.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let next = match self.tick().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(%error, "HTTPS certificate renewal failed; the current one stays in use, retrying in a minute");
                    OffsetDateTime::now_utc() + self.max_sleep
                }
            };
            let wait = (next - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(std::time::Duration::ZERO)
                .clamp(std::time::Duration::from_millis(200), self.max_sleep);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::listener::stopped(&mut stop) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};
    use time::Duration;

    fn make_root(name: &str) -> (Issuer<'static, KeyPair>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (Issuer::new(params, key), der)
    }

    /// A leaf issued at `issued` for `life`, backdated like ours.
    fn leaf(root: &Issuer<'_, KeyPair>, issued: OffsetDateTime, life: Duration) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = issued - BACKDATE;
        params.not_after = issued + life;
        params.signed_by(&key, root).unwrap().der().to_vec()
    }

    fn config(lifetime: &str, percent: u8) -> CaLifecycle {
        let mut config = CaLifecycle {
            tls_renew_percent: Some(percent),
            ..CaLifecycle::default()
        };
        config.tls.lifetime = Some(lifetime.to_owned());
        config
    }

    #[test]
    fn due_after_the_configured_share_of_life_counted_from_issuance() {
        let (root, root_der) = make_root("Root G1");
        let issued = OffsetDateTime::now_utc() - Duration::minutes(30);
        let cert = leaf(&root, issued, Duration::hours(1));
        let config = config("1h", 67);
        let at = due(&cert, &root_der, &config, issued + Duration::minutes(39))
            .unwrap()
            .unwrap_err();
        // 67 % of an hour after issuance, not after the backdated notBefore.
        assert!((at - (issued + Duration::seconds(2412))).abs() < Duration::seconds(2));
        let reason = due(&cert, &root_der, &config, issued + Duration::minutes(41)).unwrap();
        assert_eq!(reason, Ok(Due::Age));
    }

    #[test]
    fn due_at_once_when_longer_lived_than_configured_or_signed_by_another_root() {
        let (root, root_der) = make_root("Root G1");
        let now = OffsetDateTime::now_utc();
        let long = leaf(&root, now, Duration::days(397));
        assert_eq!(
            due(&long, &root_der, &config("1h", 67), now).unwrap(),
            Ok(Due::Lifetime)
        );
        assert!(
            due(&long, &root_der, &config("397d", 67), now)
                .unwrap()
                .is_err()
        );
        let (_, other_root) = make_root("Root G2");
        assert_eq!(
            due(&long, &other_root, &config("397d", 67), now).unwrap(),
            Ok(Due::Issuer)
        );
    }

    #[test]
    fn no_renewal_once_the_certificate_already_ends_with_the_root() {
        let (root, _) = make_root("Root G1");
        let now = OffsetDateTime::now_utc();
        let cert = leaf(&root, now, Duration::hours(1));
        assert!(outlasts(&cert, Some(now + Duration::hours(2))));
        assert!(!outlasts(&cert, Some(now + Duration::hours(1))));
        assert!(!outlasts(&cert, None));
    }
}
