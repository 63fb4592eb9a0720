//! `ca-server device register` and `token create`: parse, call the registry service, print.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::inventory::{DeviceListArgs, TokenListArgs, TokenRevokeArgs};
use super::open;
use super::station;
use crate::operations::registry::{self, Registration};

/// `device` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register one device, or many from an MES CSV export (all-or-nothing).
    Register(RegisterArgs),
    /// Allow a device to enroll from scratch again (repair, suspected clone): revokes its
    /// certificates (reason superseded) and records the decision in the audit trail.
    Reprovision(station::ReprovisionArgs),
    /// List registered devices with their newest certificate, a page at a time (by serial).
    List(DeviceListArgs),
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
    /// List a device's tokens (an id, state and times; never the token itself).
    List(TokenListArgs),
    /// Revoke a device's tokens that are not yet used or expired (audited as token.revoked).
    Revoke(TokenRevokeArgs),
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

pub(super) async fn register(
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

pub(super) async fn create_tokens(
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
