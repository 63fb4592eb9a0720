//! The `enroll-client` command line.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::enroll::{EnrollRequest, enroll};
use crate::error::ClientError;

/// IoMT device enrollment client (EST, RFC 7030). The private key is generated here and never
/// leaves this machine.
///
/// Exit codes: 0 success; 1 local error (files, arguments); 2 usage; 3 CA unreachable;
/// 4 the CA's TLS certificate is not trusted by --ca-cert; 5 credentials refused (401);
/// 6 refused by the CA's policy (403); 7 unusable response or untrusted certificate;
/// 8 other server error.
#[derive(Debug, Parser)]
#[command(name = "enroll-client", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll once with a one-time token; writes key.pem (0600), cert.pem and chain.pem to --out.
    Enroll(EnrollArgs),
}

/// `enroll` options.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// CA base URL, e.g. https://ca.example:8443
    #[arg(long, env = "EST_SERVER")]
    pub server: String,
    /// Root certificate (PEM) to trust for the CA's TLS and the issued chain.
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// Device serial as registered.
    #[arg(long)]
    pub serial: String,
    /// One-time enrollment token (or set ENROLL_TOKEN to keep it out of the process list).
    #[arg(long, env = "ENROLL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Directory for key.pem, cert.pem and chain.pem (created 0700).
    #[arg(long)]
    pub out: PathBuf,
    /// EST label: a product id or level (selects /.well-known/est/<label>/).
    #[arg(long)]
    pub label: Option<String>,
}

/// Runs the command; the report goes to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), ClientError> {
    match cli.command {
        Command::Enroll(args) => {
            let enrolled = enroll(&EnrollRequest {
                server: args.server,
                ca_cert: args.ca_cert,
                serial: args.serial,
                token: args.token,
                out: args.out,
                label: args.label,
            })
            .await?;
            let report = |out: &mut (dyn Write + Send)| -> std::io::Result<()> {
                writeln!(
                    out,
                    "enrolled: certificate {} valid until {}",
                    enrolled.certificate_serial, enrolled.not_after
                )?;
                for file in &enrolled.files {
                    writeln!(out, "wrote {}", file.display())?;
                }
                Ok(())
            };
            report(out).map_err(|e| ClientError::Local(e.to_string()))
        }
    }
}
