//! `ca-server fleet summary`, `device list`, `token list` and `token revoke`: parse, call the
//! inventory service (`operations::inventory`), print text or JSON.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::open;
use crate::operations::Inventory;
use crate::operations::inventory::{
    CertificateTally, DeviceListParams, DevicePage, FleetSummary, MAX_LIMIT,
};

/// The audit actor of commands run on the CA host.
const CLI_ACTOR: &str = "operator:cli";

/// `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Devices by product, level and status; certificates valid, on hold, revoked and expiring
    /// within 30 and 90 days; what each station issued today (UTC).
    Summary(JsonArgs),
}

/// Output format.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// One JSON document (the admin API's body) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `device list` options.
#[derive(Debug, Args)]
pub struct DeviceListArgs {
    /// Only this product.
    #[arg(long)]
    pub product: Option<String>,
    /// Only this production lot.
    #[arg(long)]
    pub lot: Option<String>,
    /// Only devices with this registration status: active or disabled.
    #[arg(long)]
    pub status: Option<String>,
    /// Devices per page (at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: u32,
    /// Continue after this serial (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// One JSON document (`devices` and `next`, the admin API's body) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `token list` options.
#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Registered device serial.
    #[arg(long)]
    pub serial: String,
    /// One JSON object per token and line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `token revoke` options.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// Registered device serial: every token of it not yet used or expired is revoked.
    #[arg(long)]
    pub serial: String,
}

async fn inventory(data_dir: &Path, database_url: Option<String>) -> anyhow::Result<Inventory> {
    let (_, policies, store) = open(data_dir, database_url).await?;
    Ok(Inventory::new(store, Arc::new(policies)))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Runs `fleet summary`.
pub async fn fleet(
    data_dir: &Path,
    database_url: Option<String>,
    command: FleetCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let FleetCommand::Summary(args) = command;
    let summary = inventory(data_dir, database_url)
        .await?
        .summary(now())
        .await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        write!(out, "{}", describe_summary(&summary))?;
    }
    Ok(())
}

/// Runs `device list`.
pub async fn list_devices(
    data_dir: &Path,
    database_url: Option<String>,
    args: DeviceListArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let params = DeviceListParams {
        product: args.product,
        lot: args.lot,
        status: args.status,
        limit: Some(args.limit),
        after: args.after,
    };
    let page = inventory(data_dir, database_url)
        .await?
        .devices(params, now())
        .await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&page)?)?;
    } else {
        write!(out, "{}", describe_page(&page))?;
    }
    Ok(())
}

/// Runs `token list`.
pub async fn list_tokens(
    data_dir: &Path,
    database_url: Option<String>,
    args: TokenListArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let tokens = inventory(data_dir, database_url)
        .await?
        .tokens(&args.serial, now())
        .await?;
    for token in tokens {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&token)?)?;
        } else {
            writeln!(
                out,
                "{}  {:<8} created {}  expires {}{}{}",
                token.id,
                token.state,
                token.created_at,
                token.expires_at,
                token
                    .used_at
                    .map(|t| format!("  used {t}"))
                    .unwrap_or_default(),
                token
                    .revoked_at
                    .map(|t| format!("  revoked {t}"))
                    .unwrap_or_default(),
            )?;
        }
    }
    Ok(())
}

/// Runs `token revoke`.
pub async fn revoke_tokens(
    data_dir: &Path,
    database_url: Option<String>,
    args: TokenRevokeArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let revoked = inventory(data_dir, database_url)
        .await?
        .revoke_tokens(&args.serial, CLI_ACTOR, now())
        .await?;
    writeln!(out, "revoked {revoked} token(s) of device {}", args.serial)?;
    Ok(())
}

fn tally(t: &CertificateTally) -> String {
    format!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        t.valid, t.on_hold, t.revoked, t.expired, t.expiring_30_days, t.expiring_90_days
    )
}

fn describe_summary(summary: &FleetSummary) -> String {
    let mut text = format!("fleet at {}\n\ndevices\n", summary.generated_at);
    text.push_str(&format!(
        "  {:<28} {:<12} {:<9} {:>8} {:>8}\n",
        "product", "level", "status", "devices", "enrolled"
    ));
    for group in &summary.devices {
        text.push_str(&format!(
            "  {:<28} {:<12} {:<9} {:>8} {:>8}\n",
            group.product, group.level, group.status, group.devices, group.enrolled
        ));
    }
    text.push_str(&format!(
        "\ncertificates\n  {:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "", "valid", "on_hold", "revoked", "expired", "exp<30d", "exp<90d"
    ));
    for named in summary
        .certificates_by_product
        .iter()
        .chain(&summary.certificates_by_level)
    {
        text.push_str(&format!("  {:<28} {}\n", named.name, tally(&named.tally)));
    }
    text.push_str(&format!(
        "  {:<28} {}\n",
        "all",
        tally(&summary.certificates)
    ));
    text.push_str("\nstation issuance today (UTC)\n");
    if summary.stations_today.is_empty() {
        text.push_str("  no stations\n");
    }
    for station in &summary.stations_today {
        text.push_str(&format!(
            "  {:<28} {:>8}\n",
            station.station, station.issued
        ));
    }
    text
}

fn describe_page(page: &DevicePage) -> String {
    let mut text = String::new();
    for device in &page.devices {
        let certificate = match &device.certificate {
            None => "never enrolled".to_owned(),
            Some(c) => format!(
                "{} {} {} until {}{}",
                c.issuer,
                c.serial,
                c.status,
                c.not_after,
                if c.expired { " (expired)" } else { "" }
            ),
        };
        text.push_str(&format!(
            "{}  {}  {}  lot {}  {}  registered {}  {}\n",
            device.serial,
            device.product,
            device.level,
            device.lot.as_deref().unwrap_or("-"),
            device.status,
            device.registered_at,
            certificate
        ));
    }
    if let Some(next) = &page.next {
        text.push_str(&format!("# more: --after {next}\n"));
    }
    text
}
