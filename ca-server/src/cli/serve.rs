//! `ca-server serve`: settings from config.toml and flags, a development CA on first run, the
//! quick-start banner, and the server until SIGINT or SIGTERM.

use std::io::Write;

use clap::Args;

use super::init::{InitArgs, init};
use crate::config::Settings;
use crate::pki::KeyAccess;
use crate::startup::{Application, shutdown_signal};

/// `serve` options.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// HTTPS listen address for EST (default from config.toml, 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// Plain-HTTP listen address for CRL/OCSP/CA certificates (default 127.0.0.1:8080).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no authentication: bind it
    /// to an address only the monitoring network reaches). Off unless given here or as
    /// `metrics_listen` in config.toml.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

pub(super) async fn serve(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: ServeArgs,
    develop: bool,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    crate::pki::custody::harden_process();
    crate::memory::no_transparent_huge_pages();
    if !data_dir.join(crate::config::CONFIG_FILE).exists() && develop {
        tracing::warn!(
            "no CA in {}: creating a DEVELOPMENT CA (placeholder OIDs, keys sealed with a generated passphrase)",
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
                ask_passphrase: false,
                pkcs11_module: None,
                pkcs11_token: None,
                external_root: false,
            },
            access,
            out,
        )
        .await?;
    }
    let mut settings = Settings::load(data_dir)?;
    settings.key_access = access.clone();
    if let Some(url) = database_url {
        settings.config.database_url = url;
    }
    if let Some(listen) = args.listen {
        settings.config.listen = listen;
    }
    if let Some(http_listen) = args.http_listen {
        settings.config.http_listen = http_listen;
    }
    if let Some(metrics_listen) = args.metrics_listen {
        settings.config.metrics_listen = Some(metrics_listen);
    }
    let app = Application::build(&settings).await?;
    let root = std::fs::read(data_dir.join("root.pem"))
        .ok()
        .and_then(|p| pem::parse(p).ok());
    let fingerprint = root
        .map(|b| crate::pki::fingerprint::sha256_colon_hex(b.contents()))
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
        "health:     http://{0}/healthz, http://{0}/readyz",
        app.http_addr()
    )?;
    if let Some(metrics) = app.metrics_addr() {
        writeln!(out, "metrics:    http://{metrics}/metrics")?;
    }
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
