//! `ca-server recall`: hold or revoke a product's (or a lot's) certificates, `recall list` and
//! `recall release ID`. The work is the recall service's (`operations::recall`); this file
//! parses, calls and prints.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::open;
use crate::operations::health::rfc3339;
use crate::operations::recall::{self as service, DEFAULT_BATCH};
use crate::operations::{Batches, Plan, RecallRequest, Recalls};
use crate::pki::KeyAccess;
use crate::revocation::Revocation;
use crate::storage::{RecallAction, RecallQuery, RecallRecord};

/// The audit actor of commands run on the CA host.
const CLI_ACTOR: &str = "operator:cli";

/// `recall` options: run a recall, or `list` / `release`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RecallArgs {
    #[command(subcommand)]
    pub command: Option<RecallCommand>,
    #[command(flatten)]
    pub run: RecallRunArgs,
}

/// What to recall.
#[derive(Debug, Args)]
pub struct RecallRunArgs {
    /// Product policy id whose devices are recalled.
    #[arg(long, required = true)]
    pub product: Option<String>,
    /// Only this production lot.
    #[arg(long)]
    pub lot: Option<String>,
    /// Only devices registered before this time (RFC 3339, or a date YYYY-MM-DD at 00:00 UTC).
    #[arg(long, value_name = "TIME")]
    pub registered_before: Option<String>,
    /// hold (certificateHold, reversible with `recall release`) or revoke.
    #[arg(long, required = true, value_parser = ["hold", "revoke"])]
    pub action: Option<String>,
    /// RFC 5280 reason for a revoke (default unspecified), e.g. keyCompromise.
    #[arg(long)]
    pub reason: Option<String>,
    /// Show what would be touched; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Certificates changed per transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch_size: u32,
}

/// `recall` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecallCommand {
    /// Every recall, newest first (with its id).
    List(RecallListArgs),
    /// Lift a hold recall: its certificates still on hold are valid again.
    Release(RecallReleaseArgs),
}

/// `recall list` options.
#[derive(Debug, Args)]
pub struct RecallListArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `recall release` options.
#[derive(Debug, Args)]
pub struct RecallReleaseArgs {
    /// The recall's id (from `recall list`).
    pub id: i64,
}

/// Runs `recall ...`.
pub async fn run(
    data_dir: &Path,
    database_url: Option<String>,
    args: RecallArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let recalls = service(data_dir, database_url, access).await?;
    match args.command {
        Some(RecallCommand::List(list)) => {
            for recall in recalls.list().await? {
                if list.json {
                    writeln!(out, "{}", service::to_json(&recall))?;
                } else {
                    writeln!(out, "{}", describe(&recall))?;
                }
            }
        }
        Some(RecallCommand::Release(release)) => {
            let released = recalls.release(release.id, CLI_ACTOR).await?;
            writeln!(
                out,
                "recall {} released: {} certificate(s) valid again; CRLs republished: {}",
                released.id,
                released.certificates,
                or_none(&released.crls)
            )?;
        }
        None => execute(&recalls, args.run, out).await?,
    }
    Ok(())
}

async fn execute(
    recalls: &Recalls,
    args: RecallRunArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let request = request(&args)?;
    let plan = recalls.plan(&request).await?;
    writeln!(out, "{}", describe_plan(&request, &plan))?;
    if args.dry_run {
        writeln!(out, "dry run: nothing changed")?;
        return Ok(());
    }
    let outcome = recalls
        .run(
            &request,
            CLI_ACTOR,
            Batches {
                size: args.batch_size,
                stop_after: None,
            },
        )
        .await?;
    writeln!(
        out,
        "recall {}{}: {} certificate(s) changed by this run, {} in all; CRLs republished: {}",
        outcome.recall.id,
        if outcome.resumed { " (resumed)" } else { "" },
        outcome.changed,
        outcome.recall.certificates,
        or_none(&outcome.crls)
    )?;
    Ok(())
}

/// The request from the command line.
pub fn request(args: &RecallRunArgs) -> anyhow::Result<RecallRequest> {
    let action = args
        .action
        .as_deref()
        .and_then(RecallAction::parse)
        .context("give --action hold or --action revoke")?;
    let registered_before = args
        .registered_before
        .as_deref()
        .map(parse_time)
        .transpose()?;
    Ok(RecallRequest {
        query: RecallQuery {
            product: args.product.clone().context("give --product")?,
            lot: args.lot.clone(),
            registered_before,
        },
        action,
        reason: args.reason.clone(),
    })
}

/// RFC 3339, or `YYYY-MM-DD` as midnight UTC; Unix seconds.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time.unix_timestamp());
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .with_context(|| format!("`{text}` is neither RFC 3339 nor YYYY-MM-DD"))?;
    Ok(date.midnight().assume_utc().unix_timestamp())
}

async fn service(
    data_dir: &Path,
    database_url: Option<String>,
    access: &KeyAccess,
) -> anyhow::Result<Recalls> {
    // Keys first: a wrong passphrase or PIN stops here, before the database is touched. Then
    // every generation in the database, so a retiring one's CRL is republished too.
    crate::pki::CaMaterial::check_unlock(data_dir, access)?;
    let (_, policies, store) = open(data_dir, database_url).await?;
    let ca = Arc::new(
        crate::operations::generations::load_recorded(data_dir, access, store.as_ref()).await?,
    );
    let policies = Arc::new(policies);
    let revocation = Arc::new(Revocation::new(ca, store.clone(), policies.clone())?);
    Ok(Recalls::new(store, revocation, policies))
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn describe_query(query: &RecallQuery) -> String {
    let mut text = format!("product {}", query.product);
    if let Some(lot) = &query.lot {
        text.push_str(&format!(", lot {lot}"));
    }
    if let Some(before) = query.registered_before {
        text.push_str(&format!(", registered before {}", rfc3339(before)));
    }
    text
}

fn describe_plan(request: &RecallRequest, plan: &Plan) -> String {
    let per_ca: Vec<String> = plan
        .counts
        .iter()
        .map(|c| {
            format!(
                "{}: {} of {} device(s)",
                c.issuer, c.certificates, c.devices
            )
        })
        .collect();
    format!(
        "{} {} valid certificate(s) of {} ({})",
        request.action.as_str(),
        plan.certificates(),
        describe_query(&request.query),
        if per_ca.is_empty() {
            "none match".to_owned()
        } else {
            per_ca.join("; ")
        }
    )
}

fn describe(recall: &RecallRecord) -> String {
    format!(
        "{}  {}  {}  {}  {} certificate(s)  by {} at {}",
        recall.id,
        service::state(recall),
        recall.action.as_str(),
        describe_query(&recall.query),
        recall.certificates,
        recall.actor,
        rfc3339(recall.created_at)
    )
}
