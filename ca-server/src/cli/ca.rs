//! `ca-server ca import` and `ca install-root-ocsp`: install what the offline root signed,
//! audited.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::open;
use crate::pki::{ImportRequest, KeyAccess};
use crate::storage::{AuditAction, AuditEvent};

/// `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Install the certificates the offline root signed for the CSRs in DIR/csr/, after checking
    /// each against its key, the root and the CA profile. All or nothing.
    Import(ImportArgs),
    /// Install renewed pre-signed OCSP responses of the offline root over the CA certificates
    /// (`<name>.ocsp.der`, made by csr/root-ocsp-with-openssl.sh), after checking each against
    /// the root and the certificate it answers for. Restart `serve` to use them.
    InstallRootOcsp(InstallRootOcspArgs),
}

/// `ca install-root-ocsp` options.
#[derive(Debug, Args)]
pub struct InstallRootOcspArgs {
    /// Directory holding the renewed `<name>.ocsp.der` files.
    #[arg(long)]
    pub from: PathBuf,
}

/// `ca import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The offline root's certificate (PEM).
    #[arg(long)]
    pub root: PathBuf,
    /// Directory holding basic.crt.pem, substantial.crt.pem, high.crt.pem, station.crt.pem and
    /// tls.crt.pem.
    #[arg(long)]
    pub certs: PathBuf,
    /// The root's CRL over the CA certificates (PEM or DER); served at /crl/root.crl.
    #[arg(long)]
    pub root_crl: Option<PathBuf>,
}

pub(super) async fn import_ca(
    data_dir: &Path,
    args: ImportArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let imported = crate::pki::import(
        data_dir,
        &ImportRequest {
            root: args.root,
            certs: args.certs,
            root_crl: args.root_crl,
        },
        access,
    )?;
    let fingerprint = &imported.root_sha256;
    let (_, _, store) = open(data_dir, None).await?;
    store
        .append_audit(&[AuditEvent {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            actor: "operator:cli".into(),
            action: AuditAction::CaImported.into(),
            object: "ca:root".into(),
            details: serde_json::json!({ "root_sha256": fingerprint, "external_root": true })
                .to_string(),
        }])
        .await?;
    writeln!(
        out,
        "CA certificates installed under the external root (SHA-256 {fingerprint}); `ca-server serve` can start"
    )?;
    if imported.root_ocsp.is_empty() {
        writeln!(
            out,
            "no pre-signed root OCSP responses were given: /ocsp/root will answer `unauthorized` \
             (nginx ssl_ocsp on refuses devices) until `ca-server ca install-root-ocsp`"
        )?;
    }
    describe_root_ocsp(&imported.root_ocsp, out)
}

pub(super) async fn install_root_ocsp(
    data_dir: &Path,
    from: &Path,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let installed = crate::pki::install_root_ocsp(data_dir, from)?;
    let (_, _, store) = open(data_dir, None).await?;
    let next_updates: serde_json::Map<String, serde_json::Value> = installed
        .iter()
        .map(|r| (r.name.clone(), r.next_update.into()))
        .collect();
    store
        .append_audit(&[AuditEvent {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            actor: "operator:cli".into(),
            action: AuditAction::CaRootOcspInstalled.into(),
            object: "ca:root".into(),
            details: serde_json::json!({ "next_update": next_updates }).to_string(),
        }])
        .await?;
    describe_root_ocsp(&installed, out)?;
    writeln!(out, "restart `ca-server serve` to serve them")?;
    Ok(())
}

pub(super) fn describe_root_ocsp(
    responses: &[crate::pki::CheckedResponse],
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    for response in responses {
        let until = time::OffsetDateTime::from_unix_timestamp(response.next_update)
            .map(|t| t.date().to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "root OCSP response for {}: {:?}, valid until {until}",
            response.name, response.status
        )?;
    }
    Ok(())
}
