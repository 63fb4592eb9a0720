//! `ca-server tpm-roots add FILE...|list|remove SHA256`: the TPM manufacturer roots EK
//! certificates must chain to for attested enrollment. Parse, call
//! [`crate::operations::tpm_roots`], print.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::open;
use crate::operations::tpm_roots;

/// `tpm-roots` subcommands.
#[derive(Debug, Subcommand)]
pub enum TpmRootsCommand {
    /// Trust the TPM manufacturer root (or intermediate) certificates in FILE... (PEM with one
    /// or more CERTIFICATE blocks, or DER). Roots already trusted are left as they are.
    Add(TpmRootsAddArgs),
    /// List the trusted TPM roots: SHA-256, date added, subject.
    List,
    /// Stop trusting a TPM root, named by the SHA-256 `list` prints. EK certificates that chain
    /// only to it are refused from then on, also for challenges already issued.
    Remove(TpmRootsRemoveArgs),
}

/// `tpm-roots add` options.
#[derive(Debug, Args)]
pub struct TpmRootsAddArgs {
    /// Certificate files (PEM or DER).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `tpm-roots remove` options.
#[derive(Debug, Args)]
pub struct TpmRootsRemoveArgs {
    /// SHA-256 of the root certificate (hex), as `tpm-roots list` prints it.
    pub sha256: String,
}

const ACTOR: &str = "operator:cli";

/// Runs a `tpm-roots` subcommand.
pub async fn run(
    data_dir: &Path,
    database_url: Option<String>,
    command: TpmRootsCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, _, store) = open(data_dir, database_url).await?;
    match command {
        TpmRootsCommand::Add(args) => {
            // Every file is read and checked before anything is stored.
            let mut ders = Vec::new();
            for file in &args.files {
                let bytes =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                ders.extend(tpm_roots::read_certificates(
                    &file.display().to_string(),
                    &bytes,
                )?);
            }
            for added in tpm_roots::add(store.as_ref(), &ders, ACTOR).await? {
                let what = if added.new {
                    "added"
                } else {
                    "already trusted"
                };
                writeln!(out, "{what} {} {}", added.sha256, added.subject)?;
            }
        }
        TpmRootsCommand::List => {
            for root in store.tpm_roots().await? {
                let added = time::OffsetDateTime::from_unix_timestamp(root.added_at)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {added} {}",
                    hex::encode(&root.sha256),
                    root.subject
                )?;
            }
        }
        TpmRootsCommand::Remove(args) => {
            let root = tpm_roots::remove(store.as_ref(), &args.sha256, ACTOR).await?;
            writeln!(
                out,
                "removed {} {}",
                hex::encode(&root.sha256),
                root.subject
            )?;
        }
    }
    Ok(())
}
