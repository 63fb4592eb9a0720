//! `ca-server init`: a new CA in an empty data directory, all or nothing. Every precondition
//! (directory, policies, key access, database) is checked first; the CA is then built in a
//! staging directory and renamed into place, and a failure removes what was written.

mod staging;

use std::path::{Path, PathBuf};

use iomt_core::files::{PUBLIC, write_new};
use iomt_core::policy::{PolicySet, PolicySource, shipped_sources};

use crate::config::{
    CONFIG_FILE, ConfigFile, DEFAULT_HTTP_LISTEN, DEFAULT_LISTEN, resolve_database_url,
};
use crate::pki::custody::Resolved;
use crate::pki::fingerprint::sha256_colon_hex;
use crate::pki::{
    HierarchyParams, KeyAccess, KeyStore, PendingToken, PkiError, TokenOptions, create_hierarchy,
};
use crate::storage::provision::{self, ProvisionError};
use crate::storage::{AuditAction, AuditEvent};
use staging::Staging;

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
    /// Where the CA keys were created.
    pub custody: Custody,
}

/// Why `init` refused or failed. Every precondition is checked before anything is written, and
/// a failure after that removes what was written: a failed `init` can simply be run again.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already holds a CA (found {1}); refusing to touch it")]
    AlreadyInitialized(String, String),
    #[error(
        "{dir} is not empty (found {entry}): `init` creates a CA in a new or empty directory; \
         nothing was written"
    )]
    NotEmpty { dir: String, entry: String },
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
    Database(#[from] ProvisionError),
    #[error("country `{0}` is not an ISO 3166 alpha-2 code")]
    Country(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The database `init` records when none is given: `DIR/ca.db`.
const DEFAULT_DATABASE_URL: &str = "sqlite://ca.db";

/// Creates the CA: policies, hierarchy, config, database and the first audit events; all of
/// them or, on any failure, none.
pub async fn init(options: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &options.data_dir;
    let dir_exists = check_target(dir)?;
    let policies = check_request(options)?;
    let keys = unlock_keys(options)?;
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let database = provision::prepare(&resolve_database_url(dir, &database_url)).await?;

    let staging = match Staging::create(dir, dir_exists) {
        Ok(staging) => staging,
        Err(error) => {
            database.discard().await;
            return Err(error);
        }
    };
    let built = async {
        let report = write_files(options, &policies, keys, staging.path(), &database_url)?;
        let events = first_events(options, &policies, &report);
        provision::write_initial(
            &resolve_database_url(staging.path(), &database_url),
            &events,
        )
        .await?;
        Ok(report)
    }
    .await;
    match built.and_then(|report| staging.install().map(|()| report)) {
        Ok(report) => Ok(report),
        Err(error) => {
            database.discard().await;
            Err(error)
        }
    }
}

/// The policies as read, and the sources they came from.
struct CheckedPolicies {
    sources: Vec<PolicySource>,
    set: PolicySet,
    evaluation: bool,
}

/// Refuses a data directory that holds anything; true when it exists (empty).
fn check_target(dir: &Path) -> Result<bool, InitError> {
    for marker in [CONFIG_FILE, "ca", "root.pem", "ca.db"] {
        if dir.join(marker).exists() {
            return Err(InitError::AlreadyInitialized(
                dir.display().to_string(),
                marker.to_owned(),
            ));
        }
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(true),
            Some(entry) => Err(InitError::NotEmpty {
                dir: dir.display().to_string(),
                entry: entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io(dir))?,
            }),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io(dir)(error)),
    }
}

/// The organization's country and the policies (production-ready when asked).
fn check_request(options: &InitOptions) -> Result<CheckedPolicies, InitError> {
    if options.country.len() != 2 || !options.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(InitError::Country(options.country.clone()));
    }
    let sources = match &options.policies_dir {
        Some(policies_dir) => read_sources(policies_dir)?,
        None => shipped_sources(),
    };
    let set = PolicySet::from_sources(sources.clone())?;
    if options.production {
        set.ensure_production_ready()?;
    }
    let evaluation = set.ensure_production_ready().is_err();
    Ok(CheckedPolicies {
        sources,
        set,
        evaluation,
    })
}

/// The token logged in to and the passphrase, obtained before anything exists: a wrong PIN or
/// an unusable passphrase leaves nothing behind.
struct UnlockedKeys {
    token: Option<PendingToken>,
    passphrase: Resolved,
}

fn unlock_keys(options: &InitOptions) -> Result<UnlockedKeys, InitError> {
    let token = match &options.pkcs11 {
        Some(token) => Some(KeyStore::login_for_init(token, &options.key_access)?),
        None => None,
    };
    let passphrase = options.key_access.passphrase_for_init()?;
    Ok(UnlockedKeys { token, passphrase })
}

/// Writes the policies, the hierarchy, the admin token and `config.toml` into `dir`.
fn write_files(
    options: &InitOptions,
    policies: &CheckedPolicies,
    keys: UnlockedKeys,
    dir: &Path,
    database_url: &str,
) -> Result<InitReport, InitError> {
    let passphrase_generated = keys.passphrase.generated;
    if passphrase_generated {
        crate::pki::custody::write_generated(dir, &keys.passphrase.passphrase)?;
    }
    let mut keys = KeyStore::create(keys.passphrase.passphrase, keys.token)?;
    write_policies(dir, &policies.sources)?;
    let http_listen = options
        .http_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_listen}"));
    let organization = if policies.evaluation {
        format!("{} (evaluation)", options.organization)
    } else {
        options.organization.clone()
    };
    create_hierarchy(
        dir,
        &HierarchyParams {
            organization: organization.clone(),
            country: options.country.clone(),
            evaluation: policies.evaluation,
            tls_names: options.tls_names.clone(),
            public_url: public_url.clone(),
            external_root: options.external_root,
        },
        &policies.set,
        &mut keys,
    )?;
    let custody = if keys.in_token() {
        Custody::Pkcs11
    } else {
        Custody::SealedFile
    };
    drop(keys);
    let config = ConfigFile {
        admin_token_sha256: Some(write_admin_token(dir)?),
        evaluation: policies.evaluation,
        listen: options
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        http_listen,
        metrics_listen: None,
        public_url,
        database_url: database_url.to_owned(),
        organization,
        country: options.country.clone(),
        limits: Default::default(),
        audit: Default::default(),
        console: Default::default(),
        ca: Default::default(),
        storage: Default::default(),
    };
    write_config(dir, &config)?;
    let root_fingerprint = if options.external_root {
        String::new()
    } else {
        let root_path = dir.join("root.pem");
        let root_pem = std::fs::read_to_string(&root_path).map_err(io(&root_path))?;
        pem::parse(root_pem)
            .map(|block| sha256_colon_hex(block.contents()))
            .unwrap_or_default()
    };
    Ok(InitReport {
        evaluation: policies.evaluation,
        root_fingerprint,
        config,
        passphrase_generated,
        external_root: options.external_root,
        custody,
    })
}

fn write_policies(dir: &Path, sources: &[PolicySource]) -> Result<(), InitError> {
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir).map_err(io(&policy_dir))?;
    for source in sources {
        let name = Path::new(&source.name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let path = policy_dir.join(name);
        write_new(&path, source.text.as_bytes(), PUBLIC).map_err(io(&path))?;
    }
    Ok(())
}

/// Writes the bootstrap admin API key to `DIR/admin-token` (0600); returns its SHA-256 (hex).
fn write_admin_token(dir: &Path) -> Result<String, InitError> {
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
    Ok(hex::encode(&admin_token.hash))
}

fn write_config(dir: &Path, config: &ConfigFile) -> Result<(), InitError> {
    let config_text = format!(
        "# IoMT CA configuration, written by `ca-server init`.\n{}{}",
        if config.evaluation {
            "# EVALUATION CA: the policies use placeholder OIDs (1.3.6.1.4.1.32473.*). Not for production devices.\n"
        } else {
            ""
        },
        toml::to_string(config).unwrap_or_default()
    );
    let config_path = dir.join(CONFIG_FILE);
    write_new(&config_path, config_text.as_bytes(), PUBLIC).map_err(io(&config_path))
}

/// `ca.created` and one `policy.loaded` per policy file: the trail's first events.
fn first_events(
    options: &InitOptions,
    policies: &CheckedPolicies,
    report: &InitReport,
) -> Vec<AuditEvent> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut events = vec![AuditEvent {
        at: now,
        actor: "operator".into(),
        action: AuditAction::CaCreated.into(),
        object: "ca:root".into(),
        details: serde_json::json!({
            "root_sha256": report.root_fingerprint,
            "evaluation": report.evaluation,
            "key_custody": report.custody.as_str(),
            "external_root": options.external_root,
        })
        .to_string(),
    }];
    // The text too, so that the first `policy.changed` after init can name the keys changed.
    for file in policies.set.files() {
        events.push(AuditEvent {
            at: now,
            actor: "operator".into(),
            action: AuditAction::PolicyLoaded.into(),
            object: format!("policy:{}", file.name),
            details: serde_json::json!({ "sha256": file.sha256, "text": file.text }).to_string(),
        });
    }
    events
}

/// Where the CA keys were created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Custody {
    /// In a PKCS#11 token.
    Pkcs11,
    /// Sealed files in `DIR/ca/`.
    SealedFile,
}

impl Custody {
    /// The name recorded in the `ca.created` audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            Custody::Pkcs11 => "pkcs11",
            Custody::SealedFile => "sealed-file",
        }
    }
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
