//! The operator's admin commands: `apikey`, `operator`, `certificates search`, `audit`. Each calls
//! the same function as its admin API route.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rustls_pki_types::CertificateDer;

use super::open;
use crate::audit;
use crate::operations::credentials;
use crate::operations::search::{self, SearchParams};
use crate::pki::CaMaterial;

/// The audit actor of commands run on the CA host.
const CLI_ACTOR: &str = "operator:cli";

/// `apikey` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key with a role; prints the key, alone, once (only its hash is kept).
    Create(CredentialArgs),
    /// List API keys and operator certificates (never the keys).
    List,
    /// Revoke an API key (or operator certificate) by name.
    Revoke(NameArgs),
}

/// `operator` subcommands.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Enroll an operator client certificate with a role: a certificate of the operator profile
    /// (operator policy 1.3.6.1.4.1.32473.7.5.1, no device identity) chaining to this CA's root,
    /// never through a device issuing CA or the station CA. Device and station certificates are
    /// refused.
    Add(OperatorAddArgs),
    /// List API keys and operator certificates.
    List,
    /// Revoke an operator certificate (or API key) by name.
    Revoke(NameArgs),
}

/// Name and role of a new credential.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// Unique name (letters, digits, `.`, `_`, `-`), shown as the actor in the audit trail.
    #[arg(long)]
    pub name: String,
    /// admin (everything), registrar (devices, tokens) or auditor (read-only).
    #[arg(long)]
    pub role: String,
}

/// `operator add` options.
#[derive(Debug, Args)]
pub struct OperatorAddArgs {
    #[command(flatten)]
    pub credential: CredentialArgs,
    /// The operator's certificate (PEM), optionally followed by the intermediate CA
    /// certificates between it and the root.
    #[arg(long)]
    pub cert: PathBuf,
}

/// A credential name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The credential's name.
    #[arg(long)]
    pub name: String,
}

/// `certificates` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// Search certificates: one JSON object per line, ordered by serial.
    Search(SearchArgs),
}

/// `certificates search` filters (all optional, combined with AND).
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Device serial.
    #[arg(long)]
    pub device: Option<String>,
    /// Product policy id.
    #[arg(long)]
    pub product: Option<String>,
    /// Production lot of the device.
    #[arg(long)]
    pub lot: Option<String>,
    /// valid, on_hold or revoked.
    #[arg(long)]
    pub status: Option<String>,
    /// Unexpired certificates expiring within this many days.
    #[arg(long)]
    pub expiring_within_days: Option<u32>,
    /// At most this many results (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue after this serial (the `next` cursor printed on stderr).
    #[arg(long)]
    pub after: Option<String>,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain from the first event and compare it with every stored
    /// checkpoint and every `--checkpoint` copy; names every broken event, every deleted newest
    /// event and every checkpoint the trail no longer matches; exits non-zero on any problem.
    Verify(VerifyArgs),
    /// Print the newest signed checkpoint (JSON; the same as `GET /audit/checkpoint`). Keep
    /// copies outside the CA: they prove later that no newest event was deleted.
    Checkpoint,
    /// Write the events as JSON lines.
    Export(ExportArgs),
}

/// `audit verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A checkpoint file kept elsewhere (from `audit checkpoint` or `GET /audit/checkpoint`);
    /// repeat for each copy.
    #[arg(long = "checkpoint", value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
}

/// `audit export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    /// Write to this file (created 0600) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The root certificate (DER) checkpoints must chain to.
fn read_root(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("root.pem");
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let block = pem::parse(text).with_context(|| format!("{} is not PEM", path.display()))?;
    Ok(block.into_contents())
}

/// A checkpoint copy given with `--checkpoint` (bounded: a checkpoint is about 1 KiB).
fn read_checkpoint(path: &Path) -> anyhow::Result<audit::Witness> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    file.take(audit::checkpoint::MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let checkpoint = audit::checkpoint::from_json(&text)
        .with_context(|| format!("checkpoint {}", path.display()))?;
    Ok(audit::Witness {
        source: path.display().to_string(),
        checkpoint,
    })
}

/// `apikey ...`.
pub async fn apikey(
    data_dir: &Path,
    database_url: Option<String>,
    command: ApikeyCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, _, store) = open(data_dir, database_url).await?;
    match command {
        ApikeyCommand::Create(args) => {
            let role = credentials::parse_role(&args.role)?;
            let key = credentials::create_key(store.as_ref(), &args.name, role, CLI_ACTOR).await?;
            writeln!(out, "{}", key.key)?;
        }
        ApikeyCommand::List => list(store.as_ref(), out).await?,
        ApikeyCommand::Revoke(args) => {
            credentials::revoke(store.as_ref(), &args.name, CLI_ACTOR).await?;
            writeln!(out, "revoked {}", args.name)?;
        }
    }
    Ok(())
}

/// `operator ...`.
pub async fn operator(
    data_dir: &Path,
    database_url: Option<String>,
    command: OperatorCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, _, store) = open(data_dir, database_url).await?;
    match command {
        OperatorCommand::Add(args) => {
            let role = credentials::parse_role(&args.credential.role)?;
            let pem = std::fs::read(&args.cert)
                .with_context(|| format!("cannot read {}", args.cert.display()))?;
            let mut chain = pem::parse_many(pem)
                .unwrap_or_default()
                .into_iter()
                .map(|block| CertificateDer::from(block.into_contents()));
            let leaf = chain
                .next()
                .with_context(|| format!("{} is not a PEM certificate", args.cert.display()))?;
            let intermediates: Vec<_> = chain.collect();
            let ca = CaMaterial::load(data_dir)?;
            let fingerprint = credentials::add_certificate(
                store.as_ref(),
                &ca,
                &args.credential.name,
                role,
                leaf,
                &intermediates,
                CLI_ACTOR,
            )
            .await?;
            writeln!(
                out,
                "operator {} ({}) enrolled: certificate SHA-256 {fingerprint}",
                args.credential.name, args.credential.role
            )?;
        }
        OperatorCommand::List => list(store.as_ref(), out).await?,
        OperatorCommand::Revoke(args) => {
            credentials::revoke(store.as_ref(), &args.name, CLI_ACTOR).await?;
            writeln!(out, "revoked {}", args.name)?;
        }
    }
    Ok(())
}

async fn list(
    store: &dyn crate::storage::Store,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    for record in store.operators().await? {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            record.name,
            record.kind.as_str(),
            record.role.as_str(),
            record.lookup,
            if record.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            }
        )?;
    }
    Ok(())
}

/// `certificates search`: JSON lines on stdout; the next-page cursor on stderr.
pub async fn certificates(
    data_dir: &Path,
    database_url: Option<String>,
    command: CertificatesCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let CertificatesCommand::Search(args) = command;
    let (_, _, store) = open(data_dir, database_url).await?;
    let page = search::search(
        store.as_ref(),
        SearchParams {
            device: args.device,
            product: args.product,
            lot: args.lot,
            status: args.status,
            expiring_within_days: args.expiring_within_days,
            limit: args.limit,
            after: args.after,
        },
    )
    .await?;
    for certificate in &page.certificates {
        writeln!(out, "{}", serde_json::to_string(certificate)?)?;
    }
    if let Some(next) = page.next {
        eprintln!("more results: add --after {next}");
    }
    Ok(())
}

/// `audit verify` and `audit export`.
pub async fn audit(
    data_dir: &Path,
    database_url: Option<String>,
    command: AuditCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (_, _, store) = open(data_dir, database_url).await?;
    match command {
        AuditCommand::Verify(args) => {
            let root = read_root(data_dir)?;
            let mut given = Vec::new();
            for path in &args.checkpoints {
                given.push(read_checkpoint(path)?);
            }
            let verification = audit::verify(store.as_ref(), &root, given).await?;
            if !verification.is_intact() {
                let problems = verification.problems();
                anyhow::bail!(
                    "audit trail broken ({} problem(s) in {} events): {}",
                    problems.len(),
                    verification.events,
                    problems.join("; ")
                );
            }
            let head = verification.head_hash.as_deref().unwrap_or("none");
            writeln!(
                out,
                "audit chain intact: {} events, head hash {head}; {} checkpoint(s) match",
                verification.events,
                verification.checkpoints.len()
            )?;
        }
        AuditCommand::Checkpoint => match store.latest_checkpoint().await? {
            Some(latest) => write!(out, "{}", audit::checkpoint::to_json(&latest))?,
            None => anyhow::bail!(
                "no audit checkpoint has been signed yet (`serve` signs one at start, every [audit] checkpoint_interval_secs and at shutdown)"
            ),
        },
        AuditCommand::Export(args) => match args.out {
            Some(path) => {
                // Owner-only: an export names every device and operator.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let mut writer = std::io::BufWriter::new(file);
                let count = audit::export(store.as_ref(), args.since, &mut writer).await?;
                writer
                    .into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()?;
                writeln!(out, "exported {count} event(s) to {}", path.display())?;
            }
            None => {
                audit::export(store.as_ref(), args.since, out).await?;
            }
        },
    }
    Ok(())
}
