//! `ca-server station ...` and `ca-server device reprovision`: parse, call the shared
//! operations in [`crate::operations::stations`] and [`crate::operations::reprovision`], print.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::open;
use super::revocation::revocation_service;
use crate::operations::stations::{self, DEFAULT_STATION_TOKEN_TTL, NewStation, parse_rate_limit};
use crate::pki::KeyAccess;
use crate::storage::StationStatus;

/// `station` subcommands.
#[derive(Debug, Subcommand)]
pub enum StationCommand {
    /// Register a manufacturing station and print its one-time enrollment token. The station then
    /// enrolls its own key: `enroll-client enroll --serial NAME --token TOKEN ...`.
    Create(StationCreateArgs),
    /// Disable a station at once: its certificate stops authorizing and is revoked
    /// (cessationOfOperation) on the station CA's CRL.
    Disable(StationNameArgs),
    /// Print a new one-time token for an active station (to enroll a new station key).
    Token(StationTokenArgs),
    /// List stations: name, status, products, rate limit.
    List,
}

/// `station create` options.
#[derive(Debug, Args)]
pub struct StationCreateArgs {
    /// Station name, also its certificate's CN: `<site>-<line>-<station-id>`, e.g. plant1-line3-st07.
    #[arg(long)]
    pub name: String,
    /// Products whose devices the station may enroll (comma-separated policy ids).
    #[arg(long, value_delimiter = ',', required = true)]
    pub products: Vec<String>,
    /// Certificates per hour, e.g. 600/h (default: each product policy's
    /// max_issuance_per_station_per_hour).
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Lifetime of the station's enrollment token, e.g. 8h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub token_ttl: Option<Duration>,
}

/// A station named on the command line.
#[derive(Debug, Args)]
pub struct StationNameArgs {
    /// Station name.
    pub name: String,
}

/// `station token` options.
#[derive(Debug, Args)]
pub struct StationTokenArgs {
    /// Station name.
    pub name: String,
    /// Lifetime of the token, e.g. 8h (default 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
}

/// `device reprovision` options.
#[derive(Debug, Args)]
pub struct ReprovisionArgs {
    /// Device serial. Its certificates are revoked (superseded) so it can enroll again.
    pub serial: String,
}

const ACTOR: &str = "operator:cli";

/// Runs a `station` subcommand.
pub async fn run(
    data_dir: &Path,
    database_url: Option<String>,
    command: StationCommand,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        StationCommand::Create(args) => {
            let (_, policies, store) = open(data_dir, database_url).await?;
            let request = NewStation {
                name: args.name,
                products: args.products,
                rate_limit_per_hour: args
                    .rate_limit
                    .as_deref()
                    .map(parse_rate_limit)
                    .transpose()?,
                token_ttl: args.token_ttl.unwrap_or(DEFAULT_STATION_TOKEN_TTL),
            };
            let token = stations::create(&policies, store.as_ref(), &request, ACTOR).await?;
            writeln!(out, "{}", token.secret)?;
        }
        StationCommand::Disable(args) => {
            let (service, store) = revocation_service(data_dir, database_url, access).await?;
            let revoked = stations::disable(&service, store.as_ref(), &args.name, ACTOR).await?;
            writeln!(
                out,
                "station {} disabled; {} certificate(s) revoked",
                args.name,
                revoked.len()
            )?;
        }
        StationCommand::Token(args) => {
            let (_, _, store) = open(data_dir, database_url).await?;
            let ttl = args.ttl.unwrap_or(DEFAULT_STATION_TOKEN_TTL);
            let token =
                stations::new_enrollment_token(store.as_ref(), &args.name, ttl, ACTOR).await?;
            writeln!(out, "{}", token.secret)?;
        }
        StationCommand::List => {
            let (_, _, store) = open(data_dir, database_url).await?;
            for station in store.stations().await? {
                let status = match station.status {
                    StationStatus::Active => "active",
                    StationStatus::Disabled => "disabled",
                };
                let limit = station
                    .rate_limit_per_hour
                    .map_or_else(|| "policy default".to_owned(), |n| format!("{n}/h"));
                writeln!(
                    out,
                    "{}\t{status}\t{}\t{limit}",
                    station.name,
                    station.products.join(",")
                )?;
            }
        }
    }
    Ok(())
}

/// Runs `device reprovision`.
pub async fn reprovision(
    data_dir: &Path,
    database_url: Option<String>,
    args: ReprovisionArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (service, store) = revocation_service(data_dir, database_url, access).await?;
    let changes =
        crate::operations::reprovision::reprovision(&service, store.as_ref(), &args.serial, ACTOR)
            .await?;
    for (serial, change) in &changes {
        writeln!(out, "certificate {serial} {}", change.describe())?;
    }
    writeln!(
        out,
        "device {} may enroll again (its next initial enrollment is accepted)",
        args.serial
    )?;
    Ok(())
}
