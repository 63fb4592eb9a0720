//! `DIR/config.toml`: typed settings written by `init` and read by every command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Name of the config file inside the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Default HTTPS (EST) listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default plain-HTTP (revocation, AIA) listener.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

/// The contents of `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// True for a CA built on placeholder OIDs: not for production devices.
    pub evaluation: bool,
    /// HTTPS listener for EST and the admin API.
    pub listen: String,
    /// Plain-HTTP listener for CRLs, OCSP and CA certificates.
    pub http_listen: String,
    /// Plain-HTTP listener for Prometheus `/metrics`; none unless set (or `serve
    /// --metrics-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Base URL that certificates' CRL distribution points and AIA point at.
    pub public_url: String,
    /// Database URL; `sqlite://ca.db` (relative to the data directory) by default.
    pub database_url: String,
    /// Organization and country of the CA subjects.
    pub organization: String,
    pub country: String,
    /// SHA-256 (hex) of the bootstrap `admin` API key written to `DIR/admin-token` by `init`;
    /// remove it to leave only the keys and operator certificates in the database.
    #[serde(default)]
    pub admin_token_sha256: Option<String>,
    /// Timeouts and connection caps of both listeners (`[limits]`; defaults when absent).
    #[serde(default)]
    pub limits: Limits,
    /// Audit checkpoints (`[audit]`; defaults when absent).
    #[serde(default)]
    pub audit: AuditConfig,
    /// The operator console at `/console/` (`[console]`; defaults when absent).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// CA generations: lifetimes of new generations, planned rollover dates, how often a
    /// running server looks for a rollover (`[ca]`, `[ca.<name>]`; defaults when absent).
    #[serde(default, skip_serializing_if = "CaLifecycle::is_default")]
    pub ca: CaLifecycle,
    /// How `serve` schedules the embedded database's threads (`[storage]`; defaults when
    /// absent).
    #[serde(default, skip_serializing_if = "StorageConfig::is_default")]
    pub storage: StorageConfig,
}

/// `[storage]`: scheduling of the SQLite driver threads under `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Run the SQLite driver threads at real-time priority (`SCHED_FIFO` 1) where the process
    /// may (`CAP_SYS_NICE` or `LimitRTPRIO=1`), so a woken reader or writer does not wait for a
    /// core the async workers hold. `false` leaves them at normal priority.
    pub sqlite_realtime_threads: bool,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            sqlite_realtime_threads: true,
        }
    }
}

impl StorageConfig {
    fn is_default(&self) -> bool {
        *self == StorageConfig::default()
    }

    /// The driver-thread priority `serve` opens the store with.
    pub fn driver_priority(&self) -> crate::storage::DriverPriority {
        if self.sqlite_realtime_threads {
            crate::storage::DriverPriority::Realtime
        } else {
            crate::storage::DriverPriority::Normal
        }
    }
}

/// `[console]`: how long a signed-in browser stays signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Seconds without a request after which a console session ends (default 15 minutes).
    pub idle_timeout_secs: u64,
    /// Seconds after sign-in at which a session ends however active it is (default 12 hours).
    pub max_session_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            idle_timeout_secs: 900,
            max_session_secs: 12 * 3600,
        }
    }
}

/// `[ca]`: the CA lifecycle (docs/PROFILE.md §3.7, README "Rollover").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaLifecycle {
    /// Seconds between a running server's looks at the database for a new or retired CA
    /// generation (every replica picks up `ca rollover` within this time). Default 30.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_interval_secs: Option<u64>,
    /// The HTTPS certificate is renewed once this percentage of its life has passed (1-99,
    /// default 67); its lifetime is `[ca.tls] lifetime` (default 397 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_renew_percent: Option<u8>,
    pub root: CaSettings,
    pub basic: CaSettings,
    pub substantial: CaSettings,
    pub high: CaSettings,
    pub station: CaSettings,
    pub tls: CaSettings,
}

/// `[ca.<name>]`: one CA's lifecycle settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaSettings {
    /// Lifetime of the next generation `ca rollover` makes, e.g. `"5y"`, `"8y"`, `"90d"` (test
    /// CAs: `"10m"`). Default: root 15 years, basic and station 5, substantial 8, high 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<String>,
    /// The planned rollover date is this many days before the CA's notAfter; from then on the
    /// server warns (log and `ca list`). Default: the longest certificate lifetime the CA
    /// issues plus 180 days, so a rollover on the planned date still leaves half a year
    /// before the CA could no longer cover a full device lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollover_before_days: Option<u32>,
}

/// Default percentage of its life after which the HTTPS certificate is renewed.
pub const DEFAULT_TLS_RENEW_PERCENT: u8 = 67;

/// Default seconds between looks for a new CA generation.
pub const DEFAULT_RELOAD_INTERVAL_SECS: u64 = 30;

impl CaLifecycle {
    fn is_default(&self) -> bool {
        *self == CaLifecycle::default()
    }

    /// Time between looks for a rollover.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(
            self.reload_interval_secs
                .unwrap_or(DEFAULT_RELOAD_INTERVAL_SECS),
        )
    }

    /// The percentage of its life after which the HTTPS certificate is renewed.
    pub fn tls_renew_percent(&self) -> u8 {
        self.tls_renew_percent.unwrap_or(DEFAULT_TLS_RENEW_PERCENT)
    }

    /// The settings of the CA `name` (`root`, `basic`, ..., `tls`).
    pub fn of(&self, name: &str) -> Option<&CaSettings> {
        Some(match name {
            "root" => &self.root,
            "basic" => &self.basic,
            "substantial" => &self.substantial,
            "high" => &self.high,
            "station" => &self.station,
            "tls" => &self.tls,
            _ => return None,
        })
    }

    /// The lifetime of the next generation of `name`: configured, or the built-in default.
    pub fn lifetime(&self, name: &str) -> Result<time::Duration, OutOfRange> {
        let default_years = match name {
            "root" => 15,
            "substantial" => 8,
            "high" => 10,
            "tls" => return self.configured_lifetime(name, time::Duration::days(397)),
            _ => 5,
        };
        self.configured_lifetime(name, time::Duration::days(365 * default_years))
    }

    fn configured_lifetime(
        &self,
        name: &str,
        default: time::Duration,
    ) -> Result<time::Duration, OutOfRange> {
        let Some(text) = self.of(name).and_then(|s| s.lifetime.as_deref()) else {
            return Ok(default);
        };
        let parsed = humantime::parse_duration(text)
            .ok()
            .and_then(|d| time::Duration::try_from(d).ok())
            .filter(|d| d.whole_seconds() >= 60);
        parsed.ok_or_else(|| OutOfRange::Lifetime {
            key: name.to_owned(),
            value: text.to_owned(),
        })
    }

    fn check(&self) -> Result<(), OutOfRange> {
        if self.reload_interval_secs == Some(0) {
            return Err(OutOfRange::ZeroSeconds("ca.reload_interval_secs"));
        }
        if !(1..=99).contains(&self.tls_renew_percent()) {
            return Err(OutOfRange::Percent("ca.tls_renew_percent"));
        }
        for name in ["root", "basic", "substantial", "high", "station", "tls"] {
            self.lifetime(name)?;
        }
        Ok(())
    }
}

/// `[audit]`: how often the audit trail's head is signed while the server runs (also at start
/// and at shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Seconds between checkpoints (a checkpoint is only signed when events were added).
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            checkpoint_interval_secs: 3600,
        }
    }
}

impl AuditConfig {
    /// Time between checkpoints.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.checkpoint_interval_secs)
    }
}

/// `[limits]`: how long a client may take and how many connections each listener holds. The
/// same values apply to the HTTPS (EST, admin) and the plain-HTTP (CRL, OCSP, CA certificates)
/// listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds a client has to complete the TLS handshake (HTTPS).
    pub handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers, counted from the connection's start or
    /// the end of its previous response: also how long an idle keep-alive connection stays open.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request body.
    pub body_timeout_secs: u64,
    /// Open connections per listener. Absent: derived from the open-file limit at start-up
    /// (`RLIMIT_NOFILE`, see README "Limits"); a configured value is never allowed above that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            body_timeout_secs: 15,
            max_connections: None,
        }
    }
}

impl Limits {
    /// Time allowed for the TLS handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Time allowed for a request's headers (and a keep-alive connection's idle time).
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// Time allowed for a request body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    fn check(&self) -> Result<(), OutOfRange> {
        let timeouts = [
            ("limits.handshake_timeout_secs", self.handshake_timeout_secs),
            ("limits.header_timeout_secs", self.header_timeout_secs),
            ("limits.body_timeout_secs", self.body_timeout_secs),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, secs)| *secs == 0) {
            return Err(OutOfRange::ZeroSeconds(key));
        }
        if self.max_connections == Some(0) {
            return Err(OutOfRange::Zero("limits.max_connections"));
        }
        Ok(())
    }
}

/// A setting that parses but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfRange {
    #[error("{0} must be at least 1 second")]
    ZeroSeconds(&'static str),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{0} must be a percentage from 1 to 99")]
    Percent(&'static str),
    #[error(
        "ca.{key}.lifetime: `{value}` is not a duration of at least a minute like \"5y\" or \"90d\""
    )]
    Lifetime { key: String, value: String },
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {problem}")]
    OutOfRange { path: PathBuf, problem: OutOfRange },
    #[error("no CA in {0}: run `ca-server init --data-dir {0}` first")]
    NotInitialized(String),
}

/// Settings for one run: the data directory, its config and command-line overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub config: ConfigFile,
    /// Where the CA passphrase and PKCS#11 PIN come from (defaults: environment, `DIR/passphrase`).
    pub key_access: crate::pki::KeyAccess,
}

impl Settings {
    /// Reads `DIR/config.toml`.
    pub fn load(data_dir: &Path) -> Result<Settings, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        if !path.exists() {
            return Err(ConfigError::NotInitialized(data_dir.display().to_string()));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let config: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let checked = match (
            config.audit.checkpoint_interval_secs,
            config.console.idle_timeout_secs,
            config.console.max_session_secs,
        ) {
            (0, _, _) => Err(OutOfRange::ZeroSeconds("audit.checkpoint_interval_secs")),
            (_, 0, _) => Err(OutOfRange::ZeroSeconds("console.idle_timeout_secs")),
            (_, _, 0) => Err(OutOfRange::ZeroSeconds("console.max_session_secs")),
            _ => config.limits.check().and_then(|()| config.ca.check()),
        };
        checked.map_err(|problem| ConfigError::OutOfRange {
            path: path.clone(),
            problem,
        })?;
        Ok(Settings {
            data_dir: data_dir.to_path_buf(),
            config,
            key_access: Default::default(),
        })
    }

    /// The database URL with a relative SQLite path resolved against the data directory.
    pub fn database_url(&self) -> String {
        resolve_database_url(&self.data_dir, &self.config.database_url)
    }

    /// The HTTPS listen address.
    pub fn listen(&self) -> Result<SocketAddr, ConfigError> {
        self.parse_addr(&self.config.listen, "listen")
    }

    /// The plain-HTTP listen address.
    pub fn http_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.parse_addr(&self.config.http_listen, "http_listen")
    }

    /// The metrics listen address, if metrics are on.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.config
            .metrics_listen
            .as_deref()
            .map(|text| self.parse_addr(text, "metrics_listen"))
            .transpose()
    }

    fn parse_addr(&self, text: &str, key: &str) -> Result<SocketAddr, ConfigError> {
        text.parse().map_err(|_| ConfigError::Invalid {
            path: self.data_dir.join(CONFIG_FILE),
            message: format!("{key}: `{text}` is not an address like 127.0.0.1:8443"),
        })
    }
}

/// Resolves `sqlite://relative.db` against `data_dir`; other URLs pass through.
pub fn resolve_database_url(data_dir: &Path, url: &str) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.starts_with('/') => {
            format!("sqlite://{}", data_dir.join(path).display())
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "evaluation = true\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
        public_url = \"http://ca.example.invalid\"\ndatabase_url = \"sqlite://ca.db\"\n\
        organization = \"Example\"\ncountry = \"US\"\n";

    fn load_with(extra: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), format!("{BASE}{extra}")).unwrap();
        Settings::load(dir.path())
    }

    #[test]
    fn zero_timeouts_caps_and_intervals_are_refused_naming_the_key() {
        assert!(load_with("").is_ok());
        let short = load_with("[ca.basic]\nlifetime = \"10m\"\nrollover_before_days = 2\n")
            .expect("a short test lifetime");
        assert_eq!(
            short.config.ca.lifetime("basic"),
            Ok(time::Duration::minutes(10))
        );
        assert_eq!(
            short.config.ca.lifetime("high"),
            Ok(time::Duration::days(3650))
        );
        for (extra, expected) in [
            (
                "[limits]\nheader_timeout_secs = 0\n",
                OutOfRange::ZeroSeconds("limits.header_timeout_secs"),
            ),
            (
                "[limits]\nmax_connections = 0\n",
                OutOfRange::Zero("limits.max_connections"),
            ),
            (
                "[audit]\ncheckpoint_interval_secs = 0\n",
                OutOfRange::ZeroSeconds("audit.checkpoint_interval_secs"),
            ),
            (
                "[ca]\nreload_interval_secs = 0\n",
                OutOfRange::ZeroSeconds("ca.reload_interval_secs"),
            ),
            (
                "[ca.basic]\nlifetime = \"soon\"\n",
                OutOfRange::Lifetime {
                    key: "basic".into(),
                    value: "soon".into(),
                },
            ),
        ] {
            match load_with(extra) {
                Err(ConfigError::OutOfRange { problem, path }) => {
                    assert_eq!(problem, expected, "{extra}");
                    assert!(path.ends_with(CONFIG_FILE));
                }
                other => panic!("{extra}: expected OutOfRange, got {other:?}"),
            }
        }
    }
}
