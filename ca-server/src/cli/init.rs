//! `ca-server init`: the options, and the report `setup::init` returns, printed for the operator.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::pki::{KeyAccess, TokenOptions};
use crate::setup::{self, InitOptions};

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
    /// Ask for the CA passphrase on the terminal (instead of --passphrase-file/IOMT_CA_PASSPHRASE).
    #[arg(long)]
    pub ask_passphrase: bool,
    /// Generate the CA keys inside a PKCS#11 token: the module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, requires = "pkcs11_token")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token for the CA keys (with --pkcs11-module and --pkcs11-pin-file).
    #[arg(long, requires = "pkcs11_module")]
    pub pkcs11_token: Option<String>,
    /// Create no root: generate the issuing, station and TLS keys and write CSRs to DIR/csr/ for
    /// an offline root; finish with `ca-server ca import`.
    #[arg(long)]
    pub external_root: bool,
}

pub(super) async fn init(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    args: InitArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let key_access = KeyAccess {
        prompt: args.ask_passphrase,
        ..access.clone()
    };
    let pkcs11 = match (args.pkcs11_module, args.pkcs11_token) {
        (Some(module), Some(token)) => Some(TokenOptions { module, token }),
        _ => None,
    };
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
        key_access,
        pkcs11,
        external_root: args.external_root,
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
    if report.external_root {
        writeln!(
            out,
            "external root: sign the CSRs in {} on the offline root (see {}), then run `ca-server ca import`",
            data_dir.join(crate::pki::CSR_DIR).display(),
            data_dir
                .join(crate::pki::CSR_DIR)
                .join(crate::pki::SIGN_SCRIPT)
                .display()
        )?;
    } else {
        writeln!(
            out,
            "root certificate: {}",
            data_dir.join("root.pem").display()
        )?;
        writeln!(out, "root SHA-256 fingerprint: {}", report.root_fingerprint)?;
    }
    if report.passphrase_generated {
        writeln!(
            out,
            "WARNING: no passphrase given; the CA keys are sealed with a generated one in {} (0600), \
             which protects nothing against anyone who can read the directory",
            data_dir
                .join(crate::pki::custody::PASSPHRASE_FILE)
                .display()
        )?;
    }
    writeln!(
        out,
        "bootstrap admin API key: {} (0600; send as `Authorization: Bearer ...`; make named keys with `ca-server apikey create`)",
        data_dir.join(crate::setup::ADMIN_TOKEN_FILE).display()
    )?;
    Ok(())
}
