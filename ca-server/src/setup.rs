//! `ca-server init`: a new CA in an empty data directory.

use std::path::{Path, PathBuf};

use iomt_core::files::{PUBLIC, write_new};
use iomt_core::policy::{PolicySet, PolicySource, shipped_sources};

use crate::config::{CONFIG_FILE, ConfigFile, DEFAULT_HTTP_LISTEN, DEFAULT_LISTEN};
use crate::pki::{HierarchyParams, KeyAccess, KeyStore, PkiError, TokenOptions, create_hierarchy};
use crate::startup::{StartupError, open_store};
use crate::storage::AuditEvent;

/// The file (0600) holding the admin API bearer token; only its hash is in config.toml.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What `init` is asked to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    /// Refuse placeholder OIDs.
    pub production: bool,
    pub organization: String,
    pub country: String,
    pub tls_names: Vec<String>,
    /// Base URL for CRL/AIA; derived from `http_listen` when absent.
    pub public_url: Option<String>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub database_url: Option<String>,
    /// Policy directory to copy in; the shipped policies when absent.
    pub policies_dir: Option<PathBuf>,
    /// Where the CA passphrase (and PKCS#11 PIN) come from; none given: one is generated.
    pub key_access: KeyAccess,
    /// Generate the CA keys inside this PKCS#11 token instead of sealed files.
    pub pkcs11: Option<TokenOptions>,
    /// Create no root: write CSRs for an offline root (finish with `ca-server ca import`).
    pub external_root: bool,
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub evaluation: bool,
    /// SHA-256 of the root certificate, colon-separated hex (as `openssl x509 -fingerprint`).
    pub root_fingerprint: String,
    pub config: ConfigFile,
    /// True when the passphrase was generated into `DIR/passphrase`.
    pub passphrase_generated: bool,
    /// True when the root is external and the CSRs await its signature.
    pub external_root: bool,
}

/// Why `init` refused or failed. Nothing is left half-created on a refusal.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already holds a CA (found {1}); refusing to touch it")]
    AlreadyInitialized(String, String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] iomt_core::policy::PolicyError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("country `{0}` is not an ISO 3166 alpha-2 code")]
    Country(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the CA: policies, hierarchy, config, database and the first audit events.
pub async fn init(options: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &options.data_dir;
    for marker in [CONFIG_FILE, "ca", "root.pem", "ca.db"] {
        if dir.join(marker).exists() {
            return Err(InitError::AlreadyInitialized(
                dir.display().to_string(),
                marker.to_owned(),
            ));
        }
    }
    if options.country.len() != 2 || !options.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(InitError::Country(options.country.clone()));
    }
    let sources = match &options.policies_dir {
        Some(policies_dir) => read_sources(policies_dir)?,
        None => shipped_sources(),
    };
    let policies = PolicySet::from_sources(sources.clone())?;
    if options.production {
        policies.ensure_production_ready()?;
    }
    let evaluation = policies.ensure_production_ready().is_err();

    // Log in to the token before anything exists: a wrong PIN leaves nothing behind.
    let token = match &options.pkcs11 {
        Some(token) => Some(KeyStore::login_for_init(token, &options.key_access)?),
        None => None,
    };

    let passphrase = options.key_access.passphrase_for_init()?;

    create_private_dir(dir)?;
    if passphrase.generated {
        crate::pki::custody::write_generated(dir, &passphrase.passphrase)?;
    }
    let mut keys = KeyStore::create(passphrase.passphrase, token)?;
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir).map_err(io(&policy_dir))?;
    for source in &sources {
        let name = Path::new(&source.name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let path = policy_dir.join(name);
        write_new(&path, source.text.as_bytes(), PUBLIC).map_err(io(&path))?;
    }

    let http_listen = options
        .http_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_listen}"));
    let organization = if evaluation {
        format!("{} (evaluation)", options.organization)
    } else {
        options.organization.clone()
    };
    create_hierarchy(
        dir,
        &HierarchyParams {
            organization: organization.clone(),
            country: options.country.clone(),
            evaluation,
            tls_names: options.tls_names.clone(),
            public_url: public_url.clone(),
            external_root: options.external_root,
        },
        &policies,
        &mut keys,
    )?;
    let custody = if keys.in_token() {
        "pkcs11"
    } else {
        "sealed-file"
    };
    drop(keys);

    let admin_token = crate::auth::token::generate().map_err(|_| {
        InitError::Pki(PkiError::Random(
            "the system random generator failed".into(),
        ))
    })?;
    let token_path = dir.join(ADMIN_TOKEN_FILE);
    write_new(
        &token_path,
        format!("{}\n", admin_token.secret).as_bytes(),
        iomt_core::files::PRIVATE,
    )
    .map_err(io(&token_path))?;
    let config = ConfigFile {
        admin_token_sha256: Some(hex::encode(&admin_token.hash)),
        evaluation,
        listen: options
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        http_listen,
        public_url,
        database_url: options
            .database_url
            .clone()
            .unwrap_or_else(|| "sqlite://ca.db".to_owned()),
        organization,
        country: options.country.clone(),
        limits: Default::default(),
    };
    let config_text = format!(
        "# IoMT CA configuration, written by `ca-server init`.\n{}{}",
        if evaluation {
            "# EVALUATION CA: the policies use placeholder OIDs (1.3.6.1.4.1.32473.*). Not for production devices.\n"
        } else {
            ""
        },
        toml::to_string(&config).unwrap_or_default()
    );
    let config_path = dir.join(CONFIG_FILE);
    write_new(&config_path, config_text.as_bytes(), PUBLIC).map_err(io(&config_path))?;

    let root_fingerprint = if options.external_root {
        String::new()
    } else {
        let root_pem =
            std::fs::read_to_string(dir.join("root.pem")).map_err(io(&dir.join("root.pem")))?;
        pem::parse(root_pem)
            .map(|block| fingerprint(block.contents()))
            .unwrap_or_default()
    };
    let store = open_store(&crate::config::resolve_database_url(
        dir,
        &config.database_url,
    ))
    .await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut events = vec![AuditEvent {
        at: now,
        actor: "operator".into(),
        action: "ca.created".into(),
        object: "ca:root".into(),
        details: serde_json::json!({
            "root_sha256": root_fingerprint,
            "evaluation": evaluation,
            "key_custody": custody,
            "external_root": options.external_root,
        })
        .to_string(),
    }];
    for (name, sha256) in policies.sources() {
        events.push(AuditEvent {
            at: now,
            actor: "operator".into(),
            action: "policy.loaded".into(),
            object: format!("policy:{name}"),
            details: format!(r#"{{"sha256":"{sha256}"}}"#),
        });
    }
    store
        .append_audit(&events)
        .await
        .map_err(StartupError::from)?;
    Ok(InitReport {
        evaluation,
        root_fingerprint,
        config,
        passphrase_generated: passphrase.generated,
        external_root: options.external_root,
    })
}

fn read_sources(dir: &Path) -> Result<Vec<PolicySource>, InitError> {
    let mut sources = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            sources.push(PolicySource {
                name: path.display().to_string(),
                text,
            });
        }
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sources)
}

fn create_private_dir(dir: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// SHA-256 fingerprint, colon-separated uppercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
