//! The `ca-server` command line. `main.rs` parses and calls [`run`]; tests call it directly.

mod admin;
mod station;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use iomt_core::policy::PolicySet;

use crate::config::Settings;
use crate::pki::CaMaterial;
use crate::registry::{self, Registration};
use crate::revocation::{REASON_NAMES, Reason, Revocation};
use crate::setup::{self, InitOptions};
use crate::startup::{Application, open_store};
use crate::storage::Store;
pub use admin::{
    ApikeyCommand, AuditCommand, CertificatesCommand, CredentialArgs, ExportArgs, NameArgs,
    OperatorAddArgs, OperatorCommand, SearchArgs,
};

/// The default data directory; `serve` (or no command) creates a development CA there on first run.
pub const DEFAULT_DATA_DIR: &str = "./ca-data";

/// IoMT device identity CA: issues per-device X.509 identities over EST (RFC 7030).
///
/// Run with no command (or `serve` without --data-dir) to start a development CA in ./ca-data,
/// created on first run.
#[derive(Debug, Parser)]
#[command(name = "ca-server", version, propagate_version = true)]
pub struct Cli {
    /// The CA's data directory (keys, certificates, policies, config.toml, database).
    #[arg(long, global = true, env = "CA_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Database URL overriding config.toml (e.g. sqlite:///var/lib/iomt-ca/ca.db).
    #[arg(long, global = true, env = "CA_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new CA: root (P-384), issuing CAs per level, station CA, TLS certificate.
    Init(InitArgs),
    /// Serve EST over HTTPS and the public revocation/AIA endpoints over HTTP.
    Serve(ServeArgs),
    /// Manage the device registry.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage one-time enrollment tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Revoke a certificate, or every certificate of a device; publishes the new CRL at once.
    Revoke(RevokeArgs),
    /// Lift a hold (certificateHold): the certificate is good again and leaves the next CRL.
    Release(ReleaseArgs),
    /// Manage manufacturing stations (registration authorities on production lines).
    #[command(subcommand)]
    Station(station::StationCommand),
    /// Search certificates by device, product, lot, status or expiry.
    #[command(subcommand)]
    Certificates(CertificatesCommand),
    /// Admin API keys (bearer) with roles: admin, registrar, auditor.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Operator client certificates for the admin API, with roles.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Verify or export the hash-chained audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `revoke` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "device"])))]
pub struct RevokeArgs {
    /// Certificate serial in hex (as `openssl x509 -serial` prints it; colons allowed).
    #[arg(long)]
    pub serial: Option<String>,
    /// Device serial: revoke all of its certificates.
    #[arg(long)]
    pub device: Option<String>,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
    /// cessationOfOperation, certificateHold (reversible with `release`), privilegeWithdrawn, aACompromise.
    #[arg(long, default_value = "unspecified")]
    pub reason: String,
}

/// `release` options.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Certificate serial in hex.
    #[arg(long)]
    pub serial: String,
}

/// `init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Refuse policies that still use placeholder OIDs (1.3.6.1.4.1.32473.*).
    #[arg(long)]
    pub production: bool,
    /// Organization named in the CA certificates.
    #[arg(long, default_value = "IoMT Device Identity Authority")]
    pub organization: String,
    /// ISO 3166 country of the organization.
    #[arg(long, default_value = "US")]
    pub country: String,
    /// Extra DNS name or IP for the HTTPS certificate (repeatable); localhost and 127.0.0.1 are always included.
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Base URL of the public HTTP endpoints that certificates point at (CRL, OCSP, CA certs).
    #[arg(long)]
    pub public_url: Option<String>,
    /// HTTPS listen address recorded in config.toml.
    #[arg(long)]
    pub listen: Option<String>,
    /// Plain-HTTP listen address recorded in config.toml.
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Policy directory to install (default: the policies shipped with this build).
    #[arg(long)]
    pub policies: Option<PathBuf>,
}

/// `serve` options.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// HTTPS listen address for EST (default from config.toml, 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// Plain-HTTP listen address for CRL/OCSP/CA certificates (default 127.0.0.1:8080).
    #[arg(long)]
    pub http_listen: Option<String>,
}

/// `device` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register one device, or many from an MES CSV export (all-or-nothing).
    Register(RegisterArgs),
    /// Allow a device to enroll from scratch again (repair, suspected clone): revokes its
    /// certificates (reason superseded) and records the decision in the audit trail.
    Reprovision(station::ReprovisionArgs),
}

/// `device register` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["serial", "csv"])))]
pub struct RegisterArgs {
    /// Device serial as on its label.
    #[arg(long, requires = "product")]
    pub serial: Option<String>,
    /// Product policy id (e.g. example-infusion-pump).
    #[arg(long)]
    pub product: Option<String>,
    /// Production lot.
    #[arg(long)]
    pub lot: Option<String>,
    /// GTIN of the variant (default: the product's first GTIN).
    #[arg(long)]
    pub gtin: Option<String>,
    /// CSV with a header naming `serial`, `product` and optionally `lot`, `gtin`.
    #[arg(long, conflicts_with_all = ["serial", "product", "lot", "gtin"])]
    pub csv: Option<PathBuf>,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create one-time enrollment tokens. One serial: prints the token alone. A file: `serial,token` lines.
    Create(TokenArgs),
}

/// `token create` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["serial", "serials_file"])))]
pub struct TokenArgs {
    /// Registered device serial.
    #[arg(long)]
    pub serial: Option<String>,
    /// File with one serial per line.
    #[arg(long)]
    pub serials_file: Option<PathBuf>,
    /// Lifetime, e.g. 30m, 8h (default and maximum: the product policy's max_ttl_hours).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
}

/// Runs a parsed command line, writing results for the operator to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Init(args)) => init(&cli.data_dir, cli.database_url, args, out).await,
        Some(Command::Serve(args)) => {
            let develop = cli.data_dir == Path::new(DEFAULT_DATA_DIR);
            serve(&cli.data_dir, cli.database_url, args, develop, out).await
        }
        None => {
            serve(
                &cli.data_dir,
                cli.database_url,
                ServeArgs::default(),
                true,
                out,
            )
            .await
        }
        Some(Command::Device(DeviceCommand::Register(args))) => {
            register(&cli.data_dir, cli.database_url, args, out).await
        }
        Some(Command::Revoke(args)) => revoke(&cli.data_dir, cli.database_url, args, out).await,
        Some(Command::Release(args)) => release(&cli.data_dir, cli.database_url, args, out).await,
        Some(Command::Token(TokenCommand::Create(args))) => {
            create_tokens(&cli.data_dir, cli.database_url, args, out).await
        }
        Some(Command::Device(DeviceCommand::Reprovision(args))) => {
            station::reprovision(&cli.data_dir, cli.database_url, args, out).await
        }
        Some(Command::Station(command)) => {
            station::run(&cli.data_dir, cli.database_url, command, out).await
        }
        Some(Command::Certificates(command)) => {
            admin::certificates(&cli.data_dir, cli.database_url, command, out).await
        }
        Some(Command::Apikey(command)) => {
            admin::apikey(&cli.data_dir, cli.database_url, command, out).await
        }
        Some(Command::Operator(command)) => {
            admin::operator(&cli.data_dir, cli.database_url, command, out).await
        }
        Some(Command::Audit(command)) => {
            admin::audit(&cli.data_dir, cli.database_url, command, out).await
        }
    }
}

async fn init(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: InitArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let report = setup::init(&InitOptions {
        data_dir: data_dir.to_path_buf(),
        production: args.production,
        organization: args.organization,
        country: args.country,
        tls_names: args.tls_names,
        public_url: args.public_url,
        listen: args.listen,
        http_listen: args.http_listen,
        database_url,
        policies_dir: args.policies,
    })
    .await?;
    if report.evaluation {
        writeln!(
            out,
            "EVALUATION CA created in {} (policies use placeholder OIDs; not for production devices)",
            data_dir.display()
        )?;
    } else {
        writeln!(out, "CA created in {}", data_dir.display())?;
    }
    writeln!(
        out,
        "root certificate: {}",
        data_dir.join("root.pem").display()
    )?;
    writeln!(out, "root SHA-256 fingerprint: {}", report.root_fingerprint)?;
    writeln!(
        out,
        "bootstrap admin API key: {} (0600; send as `Authorization: Bearer ...`; make named keys with `ca-server apikey create`)",
        data_dir.join(crate::setup::ADMIN_TOKEN_FILE).display()
    )?;
    Ok(())
}

async fn open(
    data_dir: &std::path::Path,
    database_url: Option<String>,
) -> anyhow::Result<(Settings, PolicySet, Arc<dyn Store>)> {
    let mut settings = Settings::load(data_dir)?;
    if let Some(url) = database_url {
        settings.config.database_url = url;
    }
    let policies = PolicySet::load_dir(&data_dir.join("policies"))?;
    let store = open_store(&settings.database_url()).await?;
    Ok((settings, policies, store))
}

async fn register(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: RegisterArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, policies, store) = open(data_dir, database_url).await?;
    let rows = match (&args.csv, args.serial) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            registry::parse_csv(&text)?
        }
        (None, Some(serial)) => vec![(
            1,
            Registration {
                serial,
                product: args.product.unwrap_or_default(),
                lot: args.lot,
                gtin: args.gtin,
            },
        )],
        (None, None) => anyhow::bail!("give --serial and --product, or --csv FILE"),
    };
    let count = registry::register(&policies, store.as_ref(), &rows, "operator:cli").await?;
    writeln!(out, "registered {count} device(s)")?;
    Ok(())
}

async fn create_tokens(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: TokenArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, policies, store) = open(data_dir, database_url).await?;
    let (serials, single) = match (&args.serials_file, args.serial) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let serials: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            (serials, false)
        }
        (None, Some(serial)) => (vec![serial], true),
        (None, None) => anyhow::bail!("give --serial or --serials-file"),
    };
    let created = registry::create_tokens(
        &policies,
        store.as_ref(),
        &serials,
        args.ttl,
        "operator:cli",
    )
    .await?;
    for token in &created {
        if single {
            writeln!(out, "{}", token.token.secret)?;
        } else {
            writeln!(out, "{},{}", token.serial, token.token.secret)?;
        }
    }
    Ok(())
}

async fn serve(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: ServeArgs,
    develop: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    if !data_dir.join(crate::config::CONFIG_FILE).exists() && develop {
        tracing::warn!(
            "no CA in {}: creating a DEVELOPMENT CA (placeholder OIDs, keys in clear files)",
            data_dir.display()
        );
        init(
            data_dir,
            database_url.clone(),
            InitArgs {
                production: false,
                organization: "IoMT Development CA".into(),
                country: "US".into(),
                tls_names: vec![],
                public_url: None,
                listen: args.listen.clone(),
                http_listen: args.http_listen.clone(),
                policies: None,
            },
            out,
        )
        .await?;
    }
    let mut settings = Settings::load(data_dir)?;
    if let Some(url) = database_url {
        settings.config.database_url = url;
    }
    if let Some(listen) = args.listen {
        settings.config.listen = listen;
    }
    if let Some(http_listen) = args.http_listen {
        settings.config.http_listen = http_listen;
    }
    let app = Application::build(&settings).await?;
    let root = std::fs::read(data_dir.join("root.pem"))
        .ok()
        .and_then(|p| pem::parse(p).ok());
    let fingerprint = root
        .map(|b| setup::fingerprint(b.contents()))
        .unwrap_or_default();
    let est = format!("https://{}/.well-known/est", app.https_addr());
    if settings.config.evaluation {
        writeln!(
            out,
            "*** EVALUATION CA: placeholder policy OIDs; do not ship devices with these certificates ***"
        )?;
    }
    writeln!(out, "EST:        {est}/  (cacerts, csrattrs, simpleenroll)")?;
    writeln!(out, "public:     http://{}/ca/root.cer", app.http_addr())?;
    writeln!(
        out,
        "root:       {} (SHA-256 {fingerprint})",
        data_dir.join("root.pem").display()
    )?;
    writeln!(out, "next, in another terminal:")?;
    writeln!(
        out,
        "  ca-server device register --data-dir {} --serial IP20000001 --product example-infusion-pump",
        data_dir.display()
    )?;
    writeln!(
        out,
        "  TOKEN=$(ca-server token create --data-dir {} --serial IP20000001)",
        data_dir.display()
    )?;
    writeln!(
        out,
        "  enroll-client enroll --server https://{} --ca-cert {} --serial IP20000001 --token \"$TOKEN\" --out device-IP20000001",
        app.https_addr(),
        data_dir.join("root.pem").display()
    )?;
    out.flush()?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

async fn revocation_service(
    data_dir: &Path,
    database_url: Option<String>,
) -> anyhow::Result<(Revocation, Arc<dyn Store>)> {
    let (_, policies, store) = open(data_dir, database_url).await?;
    let ca = Arc::new(CaMaterial::load(data_dir)?);
    let service = Revocation::new(ca, store.clone(), Arc::new(policies))?;
    Ok((service, store))
}

fn normalize_serial(serial: &str) -> String {
    serial.replace(':', "").to_ascii_lowercase()
}

async fn revoke(
    data_dir: &Path,
    database_url: Option<String>,
    args: RevokeArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let reason = Reason::parse(&args.reason).with_context(|| {
        format!(
            "unknown reason `{}` (use one of: {})",
            args.reason,
            REASON_NAMES.join(", ")
        )
    })?;
    let (service, _) = revocation_service(data_dir, database_url).await?;
    let changes = match (args.serial, args.device) {
        (Some(serial), _) => {
            let serial = normalize_serial(&serial);
            let change = service.revoke(&serial, reason, "operator:cli").await?;
            vec![(serial, change)]
        }
        (None, Some(device)) => {
            service
                .revoke_device(&device, reason, "operator:cli")
                .await?
        }
        (None, None) => anyhow::bail!("give --serial or --device"),
    };
    for (serial, change) in changes {
        writeln!(
            out,
            "certificate {serial} {} ({})",
            change.describe(),
            reason.name()
        )?;
    }
    Ok(())
}

async fn release(
    data_dir: &Path,
    database_url: Option<String>,
    args: ReleaseArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (service, _) = revocation_service(data_dir, database_url).await?;
    let serial = normalize_serial(&args.serial);
    let change = service.release(&serial, "operator:cli").await?;
    writeln!(out, "certificate {serial} {}", change.describe())?;
    Ok(())
}
