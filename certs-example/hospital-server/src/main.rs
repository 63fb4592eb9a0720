//! `hospital-server`: the command line over [`hospital_example::HospitalServer`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use hospital_example::{HospitalConfig, HospitalServer, PolicyOid};

/// A mutual-TLS server that accepts IoMT devices and logs one line per connection: `accepted
/// serial=… cn=… product=… policy=…` or `rejected: <why>`. Set HOSPITAL_LOG (default `info`).
#[derive(Debug, Parser)]
#[command(name = "hospital-server", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HOSPITAL_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// The IoMT root certificate (PEM): the only trust anchor for device certificates.
    #[arg(long, env = "HOSPITAL_CA_CERT", value_name = "ROOT.pem")]
    ca_cert: PathBuf,
    /// This server's own TLS certificate chain (PEM).
    #[arg(long, env = "HOSPITAL_CERT", value_name = "CERT.pem")]
    cert: PathBuf,
    /// The private key of --cert (PEM).
    #[arg(long, env = "HOSPITAL_KEY", value_name = "KEY.pem")]
    key: PathBuf,
    /// A CRL to fetch and keep fresh (repeatable): copy the certificates' CRL distribution
    /// points, the issuing CA's CRL and the root's CRL.
    #[arg(long = "crl-url", value_name = "URL", required = true)]
    crl_urls: Vec<String>,
    /// A level policy OID to accept (repeatable), e.g. 1.3.6.1.4.1.32473.7.1.3 for High only.
    #[arg(long = "accept-policy", value_name = "OID", required = true)]
    accept_policies: Vec<PolicyOid>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOSPITAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let server = HospitalServer::bind(HospitalConfig {
        listen: args.listen,
        ca_cert: args.ca_cert,
        cert: args.cert,
        key: args.key,
        crl_urls: args.crl_urls,
        accept_policies: args.accept_policies,
    })
    .await?;
    tracing::info!(address = %server.local_addr(), "listening");
    server.run_until(stop_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
