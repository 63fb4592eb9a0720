//! `ca-server revoke` and `release`: revoke or hold certificates (one, or a device's) and lift
//! holds, through the revocation service, which republishes the CRL.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use iomt_core::serial::CertSerial;

use super::open;
use crate::pki::KeyAccess;
use crate::revocation::{REASON_NAMES, Reason, Revocation};
use crate::storage::Store;

/// `revoke` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "device"])))]
pub struct RevokeArgs {
    /// Certificate serial in hex (as `openssl x509 -serial` prints it; colons allowed).
    #[arg(long)]
    pub serial: Option<CertSerial>,
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
    /// Certificate serial in hex (colons allowed).
    #[arg(long)]
    pub serial: CertSerial,
}

pub(super) async fn revocation_service(
    data_dir: &Path,
    database_url: Option<String>,
    access: &KeyAccess,
) -> anyhow::Result<(Revocation, Arc<dyn Store>)> {
    // Keys first: a wrong passphrase or PIN stops here, before the database is touched. Then
    // every generation in the database, so a retiring one's CRL is republished too.
    crate::pki::CaMaterial::check_unlock(data_dir, access)?;
    let (_, policies, store) = open(data_dir, database_url).await?;
    let ca = Arc::new(
        crate::operations::generations::load_recorded(data_dir, access, store.as_ref()).await?,
    );
    let service = Revocation::new(ca, store.clone(), Arc::new(policies))?;
    Ok((service, store))
}

pub(super) async fn revoke(
    data_dir: &Path,
    database_url: Option<String>,
    args: RevokeArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let reason = Reason::parse(&args.reason).with_context(|| {
        format!(
            "unknown reason `{}` (use one of: {})",
            args.reason,
            REASON_NAMES.join(", ")
        )
    })?;
    let (service, _) = revocation_service(data_dir, database_url, access).await?;
    let changes = match (args.serial, args.device) {
        (Some(serial), _) => {
            let change = service.revoke(&serial, reason, "operator:cli").await?;
            vec![(serial.into_string(), change)]
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

pub(super) async fn release(
    data_dir: &Path,
    database_url: Option<String>,
    args: ReleaseArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (service, _) = revocation_service(data_dir, database_url, access).await?;
    let serial = args.serial;
    let change = service.release(&serial, "operator:cli").await?;
    writeln!(out, "certificate {serial} {}", change.describe())?;
    Ok(())
}
