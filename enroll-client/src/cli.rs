//! The `enroll-client` command line.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::enroll::{EnrollAuthorization, EnrollRequest, Server, enroll};
use crate::error::ClientError;
use crate::provision::{ProvisionRequest, provision};
use crate::rotation::{
    RenewOutcome, RunOptions, RunOutcome, Schedule, Watch, renew, run_watching as run_loop,
};
use crate::verify::{RevocationCheck, Verdict, VerifyRequest, verify};

/// IoMT device enrollment client (EST, RFC 7030). The private key is generated here and never
/// leaves this machine.
///
/// Exit codes: 0 success; 1 local error (files, arguments); 2 usage; 3 CA unreachable;
/// 4 the CA's TLS certificate is not trusted by --ca-cert; 5 credentials refused (401);
/// 6 refused by the CA's policy (403); 7 unusable response or untrusted certificate;
/// 8 other server error; 9 provision: some devices failed (listed in the summary);
/// 10 the device needs re-provisioning (its identity cannot be renewed); 11 the TPM failed;
/// 12 the CA presents a new root without a valid link certificate (trust.pem unchanged);
/// verify: 20 untrusted chain, 21 not conformant, 22 revoked, 23 revocation unknown.
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
    /// Renew the credential in --out if its renewal window has opened (--force: now).
    Renew(RenewArgs),
    /// Stay running and renew in time, through outages and restarts; stops on SIGTERM, renews at
    /// once on SIGHUP. Checks its own certificate by OCSP (--ocsp-interval): exits 10 when it is
    /// revoked, waits while it is on hold.
    Run(RunArgs),
    /// Provision a batch of registered devices on a manufacturing station: a key per device made
    /// here, enrolled with the station's certificate, written to OUT/<serial>/ (key.pem 0600,
    /// cert.pem, chain.pem, trust.pem). Resumable: serials already in OUT are skipped. Exit 9 if any failed.
    Provision(ProvisionArgs),
    /// Check a device certificate as a hospital would: chain to the root, conformance to its
    /// level, revocation by OCSP or CRL. Exit 0 trusted; 20 untrusted chain; 21 not conformant
    /// or wrong level; 22 revoked or on hold; 23 revocation status unavailable.
    Verify(VerifyArgs),
}

/// `verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Root certificate (PEM) to trust.
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// The device certificate (PEM; may be followed by its issuing CA).
    #[arg(long)]
    pub cert: PathBuf,
    /// The issuing CA certificate (PEM), e.g. the device's chain.pem.
    #[arg(long)]
    pub chain: Option<PathBuf>,
    /// Refuse certificates of any other level (basic, substantial, high).
    #[arg(long)]
    pub require_level: Option<iomt_core::policy::Level>,
    /// How to check revocation.
    #[arg(long, value_enum, default_value = "auto")]
    pub revocation: RevocationCheck,
}

/// Where the CA is (shared by renew and run).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// CA base URL, e.g. https://ca.example:8443
    #[arg(long, env = "EST_SERVER")]
    pub server: String,
    /// Root certificate (PEM) to trust for the CA's TLS and the issued chain. The roots the
    /// device has come to trust since are in DIR/trust.pem: a new root the CA presents in
    /// cacerts is added there only when a NewWithOld link certificate signed by a root already
    /// trusted authenticates it (otherwise exit 12, trust.pem unchanged).
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// Directory holding key.pem, cert.pem and chain.pem (replaced atomically as one set) and
    /// trust.pem (every trusted root, replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// EST label: a product id or level (selects /.well-known/est/<label>/).
    #[arg(long)]
    pub label: Option<String>,
    /// The TPM 2.0 holding the device key, as a tpm2-tss TCTI (e.g. `device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`). Each renewal creates the new key in the TPM, proves it
    /// there to the CA (EK certificate, credential activation, TPM2_Certify) and signs the
    /// mutual-TLS handshake with the current TPM key; key.pem holds only TSS2 PRIVATE KEY blobs.
    #[arg(long, value_name = "TCTI")]
    pub tpm: Option<String>,
    /// Renew once this percentage of the certificate lifetime has passed (the product policy's
    /// window_start_percent: 70 at Basic, 75 at Substantial and High).
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub window_percent: u8,
}

/// `renew` options.
#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Renew now, even before the window opens (e.g. after a suspected key compromise).
    #[arg(long)]
    pub force: bool,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Spread renewals over up to this further percentage of the lifetime (fleet jitter).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=50))]
    pub jitter_percent: u8,
    /// First retry delay after a failed renewal; doubles each failure up to --retry-max.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_min: std::time::Duration,
    /// Longest single wait of any kind: retries, a CA's Retry-After (honoured up to this), and
    /// the steps of the wait for the renewal window. Every wait is jittered and logged.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub retry_max: std::time::Duration,
    /// How often to ask the certificate's OCSP responder (from its AIA) for its status; "0s"
    /// turns the check off.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ocsp_interval: std::time::Duration,
    /// Shell command to run after each successful renewal, e.g. "systemctl reload my-service".
    #[arg(long)]
    pub exec: Option<String>,
}

impl ServerArgs {
    fn server(&self) -> Server {
        Server {
            url: self.server.clone(),
            ca_cert: self.ca_cert.clone(),
            label: self.label.clone(),
            tpm: self.tpm.clone(),
        }
    }

    fn schedule(&self, jitter_percent: u8) -> Schedule {
        Schedule {
            window_percent: self.window_percent,
            jitter_percent,
        }
    }
}

/// `enroll` options.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// CA base URL, e.g. https://ca.example:8443
    #[arg(long, env = "EST_SERVER")]
    pub server: String,
    /// Root certificate (PEM) to trust for the CA's TLS and the issued chain. The roots the
    /// device has come to trust since are in DIR/trust.pem: a new root the CA presents in
    /// cacerts is added there only when a NewWithOld link certificate signed by a root already
    /// trusted authenticates it (otherwise exit 12, trust.pem unchanged).
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// Device serial as registered.
    #[arg(long)]
    pub serial: String,
    /// One-time enrollment token (or set ENROLL_TOKEN to keep it out of the process list).
    /// Tokens are base64url, so one may begin with `-`: it is taken as the value all the same.
    #[arg(
        long,
        env = "ENROLL_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        required_unless_present = "station"
    )]
    pub token: Option<String>,
    /// Enroll as a manufacturing station instead of with a token: the station's credential
    /// directory (key.pem, cert.pem, chain.pem) authorizes this one device.
    #[arg(long, value_name = "STATION_DIR", conflicts_with = "token")]
    pub station: Option<PathBuf>,
    /// Directory for key.pem, cert.pem, chain.pem and trust.pem (created 0700).
    #[arg(long)]
    pub out: PathBuf,
    /// EST label: a product id or level (selects /.well-known/est/<label>/).
    #[arg(long)]
    pub label: Option<String>,
    /// Create the device key in this TPM 2.0 (a tpm2-tss TCTI, e.g. `device:/dev/tpmrm0`) and
    /// prove it to the CA: the EK certificate, credential activation of a fresh attestation key,
    /// and a TPM2_Certify of the new key over the CA's challenge, carried in the CSR. key.pem
    /// then holds the key's TSS2 PRIVATE KEY blobs; the private key never leaves the TPM.
    #[arg(long, value_name = "TCTI")]
    pub tpm: Option<String>,
}

/// `provision` options.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// CA base URL, e.g. https://ca.example:8443
    #[arg(long, env = "EST_SERVER")]
    pub server: String,
    /// Root certificate (PEM) to trust for the CA's TLS and the issued chains.
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// The station's credential directory (from `enroll-client enroll --serial <station name>`).
    #[arg(long)]
    pub station: PathBuf,
    /// File with one device serial per line (blank lines and # comments ignored).
    #[arg(long)]
    pub serials: PathBuf,
    /// Output directory: one folder per serial.
    #[arg(long)]
    pub out: PathBuf,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Also write `device.p12` in each folder (key, certificate and chain for key-injection
    /// tools), encrypted with the password in this file (PBES2 AES-256-CBC, HMAC-SHA-256; the
    /// first line, at least 8 characters).
    #[arg(long, value_name = "FILE")]
    pub pkcs12_password_file: Option<PathBuf>,
    /// EST label: a product id or level (selects /.well-known/est/<label>/).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Logs to stderr, filtered by `ENROLL_LOG` (default `warn`: problems, and clock advice).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENROLL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// What the binary does once the command line is parsed: runs it, reports on stdout, prints a
/// failure as one `error:` line on stderr, and returns the exit code.
pub async fn execute(cli: Cli) -> u8 {
    let mut stdout = std::io::stdout();
    match run(cli, &mut stdout).await {
        Ok(()) => 0,
        Err(ClientError::Verdict(code)) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

/// Runs the command; the report goes to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), ClientError> {
    match cli.command {
        Command::Enroll(args) => {
            let enrolled = enroll(&EnrollRequest {
                server: args.server,
                ca_cert: args.ca_cert,
                serial: args.serial,
                authorization: match (args.token, args.station) {
                    (_, Some(station)) => EnrollAuthorization::Station(station),
                    (Some(token), None) => EnrollAuthorization::Token(token),
                    (None, None) => {
                        return Err(ClientError::Local(
                            "give --token (or ENROLL_TOKEN) or --station".into(),
                        ));
                    }
                },
                out: args.out,
                label: args.label,
                tpm: args.tpm,
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
                if let Some(warning) = &enrolled.clock_warning {
                    writeln!(out, "warning: {warning}")?;
                }
                Ok(())
            };
            report(out).map_err(|e| ClientError::Local(e.to_string()))
        }
        Command::Renew(args) => {
            let schedule = args.server.schedule(0);
            let outcome = renew(
                &args.server.server(),
                &args.server.out,
                schedule,
                args.force,
            )
            .await?;
            let line = match outcome {
                RenewOutcome::NotDue { at } => format!(
                    "not due: the renewal window opens at {} (use --force to renew now)",
                    time::OffsetDateTime::from_unix_timestamp(at)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ),
                RenewOutcome::Renewed(enrolled) => format!(
                    "renewed: certificate {} valid until {}{}",
                    enrolled.certificate_serial,
                    enrolled.not_after,
                    enrolled
                        .clock_warning
                        .map(|w| format!("\nwarning: {w}"))
                        .unwrap_or_default()
                ),
            };
            writeln!(out, "{line}").map_err(|e| ClientError::Local(e.to_string()))
        }
        Command::Verify(args) => {
            let report = verify(&VerifyRequest {
                ca_cert: args.ca_cert,
                cert: args.cert,
                chain: args.chain,
                require_level: args.require_level,
                revocation: args.revocation,
            })
            .await?;
            let print = |out: &mut (dyn Write + Send)| -> std::io::Result<()> {
                for (label, text) in &report.lines {
                    writeln!(out, "{label:<12} {text}")?;
                }
                let verdict = match &report.verdict {
                    Verdict::Trusted => "TRUSTED".to_owned(),
                    Verdict::Untrusted(why) => format!("NOT TRUSTED: {why}"),
                    Verdict::NonConformant(why) => format!("NOT CONFORMANT: {why}"),
                    Verdict::Revoked(why) => format!("REVOKED: {why}"),
                    Verdict::RevocationUnknown(why) => format!("REVOCATION UNKNOWN: {why}"),
                };
                writeln!(out, "{:<12} {verdict}", "verdict")
            };
            print(out).map_err(|e| ClientError::Local(e.to_string()))?;
            match report.verdict.exit_code() {
                0 => Ok(()),
                code => Err(ClientError::Verdict(code)),
            }
        }
        Command::Provision(args) => {
            let report = provision(&ProvisionRequest {
                server: Server {
                    url: args.server,
                    ca_cert: args.ca_cert,
                    label: args.label,
                    tpm: None,
                },
                station: args.station,
                serials: args.serials,
                out: args.out,
                concurrency: usize::from(args.concurrency),
                pkcs12_password: args
                    .pkcs12_password_file
                    .as_deref()
                    .map(crate::device_files::read_pkcs12_password)
                    .transpose()?,
                progress: !args.quiet,
            })
            .await?;
            let rate = report.done as f64 / report.elapsed.as_secs_f64().max(1e-3);
            let print = |out: &mut (dyn Write + Send)| -> std::io::Result<()> {
                writeln!(
                    out,
                    "provisioned {} device(s) in {:.1} s ({rate:.0}/s); {} already done; {} failed",
                    report.done,
                    report.elapsed.as_secs_f64(),
                    report.skipped,
                    report.failed.len()
                )?;
                for failure in &report.failed {
                    writeln!(out, "failed {}: {}", failure.serial, failure.reason)?;
                }
                Ok(())
            };
            print(out).map_err(|e| ClientError::Local(e.to_string()))?;
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(ClientError::BatchIncomplete {
                    failed: report.failed.len(),
                    total: report.done + report.failed.len(),
                })
            }
        }
        Command::Run(args) => {
            let watch = Watch {
                ocsp_interval: args.ocsp_interval,
                ..Watch::default()
            };
            spawn_renew_on_sighup(watch.renew_now.clone());
            let options = RunOptions {
                server: args.server.server(),
                dir: args.server.out.clone(),
                schedule: args.server.schedule(args.jitter_percent),
                retry_min: args.retry_min,
                retry_max: args.retry_max,
                exec: args.exec,
            };
            match run_loop(&options, &watch, shutdown_signal()).await? {
                RunOutcome::Stopped => Ok(()),
                RunOutcome::NeedsReprovisioning(reason) => {
                    Err(ClientError::NeedsReprovisioning(reason))
                }
            }
        }
    }
}

/// Renews at once on each SIGHUP (e.g. `systemctl reload`, or an operator told by the CA).
fn spawn_renew_on_sighup(renew_now: std::sync::Arc<tokio::sync::Notify>) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: renewing now");
                    renew_now.notify_one();
                }
            });
        }
        Err(error) => tracing::warn!(%error, "SIGHUP cannot trigger a renewal"),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// A base64url token that happens to begin with `-` is the token, not an unknown flag
    /// (one token in 64 does; a test of the rollover suite met one).
    #[test]
    fn a_token_beginning_with_a_hyphen_is_taken_as_the_token() {
        let cli = Cli::try_parse_from([
            "enroll-client",
            "enroll",
            "--server",
            "https://ca.example:8443",
            "--ca-cert",
            "root.pem",
            "--serial",
            "IP20000402",
            "--token",
            "-u3Xq9dW2kLr7",
            "--out",
            "device",
        ])
        .unwrap();
        let Command::Enroll(args) = cli.command else {
            panic!("not the enroll command");
        };
        assert_eq!(args.token.as_deref(), Some("-u3Xq9dW2kLr7"));
    }
}
