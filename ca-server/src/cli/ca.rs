//! `ca-server ca list`, `ca rollover`, `ca import` and `ca install-root-ocsp`: the CA
//! generations, and installing what the offline root signed, audited.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::open;
use crate::operations::RolledOver;
use crate::operations::generations;
use crate::pki::{CaRole, ImportRequest, KeyAccess};
use crate::storage::{AuditAction, AuditEvent, GenerationStatus};

/// `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Every generation of every CA: validity, status (active, retiring, retired, pending), how
    /// many valid certificates each still has, the planned rollover date and warnings.
    List(ListArgs),
    /// Make the next generation of an issuing or station CA: a new key in the same custody
    /// (sealed file or PKCS#11), signed by the active root. From then on (within
    /// `ca.reload_interval_secs` on every running server) new certificates and renewals come
    /// from it; the previous generation keeps its CRL and OCSP until its last certificate
    /// expires. Under an offline root: a CSR and the openssl ceremony recipe, then `ca import`.
    ///
    /// `--ca root` (online root only): a new root key in the same custody, the self-signed root
    /// G2 and the link certificates NewWithOld and OldWithNew (RFC 4210 §4.4), written to
    /// DIR/ca/root-g2*.crt.pem and served by EST cacerts and /ca/bundle.pem. Issuance does not
    /// move: roll each issuing and station CA over afterwards (`ca rollover --ca basic`, ...)
    /// to issue under the new root.
    Rollover(RolloverArgs),
    /// Install the certificates the offline root signed for the CSRs in DIR/csr/, after checking
    /// each against its key, the root and the CA profile. All or nothing.
    Import(ImportArgs),
    /// Install renewed pre-signed OCSP responses of the offline root over the CA certificates
    /// (`<name>.ocsp.der`, made by csr/root-ocsp-with-openssl.sh), after checking each against
    /// the root and the certificate it answers for. Restart `serve` to use them.
    InstallRootOcsp(InstallRootOcspArgs),
}

/// `ca list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `ca rollover` options.
#[derive(Debug, Args)]
pub struct RolloverArgs {
    /// The CA: root, basic, substantial, high or station.
    #[arg(long = "ca", value_parser = ["root", "basic", "substantial", "high", "station"])]
    pub ca: String,
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

pub(super) async fn list(
    data_dir: &Path,
    database_url: Option<String>,
    args: ListArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (settings, policies, store) = open(data_dir, database_url).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let views = generations::list(
        store.as_ref(),
        data_dir,
        &policies,
        &settings.config.ca,
        now,
    )
    .await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
        return Ok(());
    }
    let day = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(|t| t.date().to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    writeln!(
        out,
        "{:<16} {:<4} {:<9} {:<11} {:<11} {:>7}  {:<11}",
        "GENERATION", "GEN", "STATUS", "NOT BEFORE", "NOT AFTER", "VALID", "ROLL OVER BY"
    )?;
    for view in &views {
        let valid = view
            .valid_certificates
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "{:<16} {:<4} {:<9} {:<11} {:<11} {:>7}  {:<11}",
            view.name,
            view.generation,
            view.status,
            day(view.not_before),
            day(view.not_after),
            valid,
            day(view.planned_rollover),
        )?;
        for warning in &view.warnings {
            writeln!(out, "  ! {warning}")?;
        }
    }
    Ok(())
}

pub(super) async fn rollover(
    data_dir: &Path,
    database_url: Option<String>,
    args: RolloverArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let (mut settings, policies, store) = open(data_dir, database_url).await?;
    settings.key_access = access.clone();
    let role =
        CaRole::parse(&args.ca).ok_or_else(|| anyhow::anyhow!("no CA called `{}`", args.ca))?;
    match generations::rollover(&settings, &policies, store.as_ref(), role, "operator:cli").await? {
        RolledOver::Active {
            previous,
            next,
            not_after,
        } => {
            let until = time::OffsetDateTime::from_unix_timestamp(not_after)
                .map(|t| t.date().to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{next} is active (valid until {until}); {previous} is retiring: it keeps its CRL \
                 and OCSP until its last certificate expires. Running servers pick it up within \
                 {} s.",
                settings.config.ca.reload_interval().as_secs()
            )?;
        }
        RolledOver::Root {
            previous,
            next,
            not_after,
            files,
        } => {
            let until = time::OffsetDateTime::from_unix_timestamp(not_after)
                .map(|t| t.date().to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{next} is the active root (valid until {until}); {previous} is retiring. Written:"
            )?;
            for file in &files {
                writeln!(out, "  {}", file.display())?;
            }
            writeln!(
                out,
                "Running servers serve the new root and its link certificates (EST cacerts, \
                 /ca/bundle.pem) within {} s and renew their HTTPS certificate under it (served with \
                 the NewWithOld link, so devices that trust only {previous} still connect); \
                 devices accept the new root through the NewWithOld link. \
                 Give hospitals the new bundle, then move issuance under {next}: `ca-server ca \
                 rollover --ca basic` (and substantial, high, station).",
                settings.config.ca.reload_interval().as_secs()
            )?;
        }
        RolledOver::Pending { next, csr_dir } => {
            let dir = csr_dir.display();
            writeln!(
                out,
                "{next}: key made, CSR written to {dir}/{next}.csr.pem. The current generation \
                 stays active until the offline root signs it:\n\
                 \x20 # on the offline root (copy {dir} over):\n\
                 \x20 cd {next} && sh sign-with-openssl.sh ROOT.crt.pem ROOT.key signed\n\
                 \x20 # back here:\n\
                 \x20 ca-server ca import --data-dir {data} --root ROOT.crt.pem --certs signed",
                data = data_dir.display()
            )?;
        }
    }
    Ok(())
}

pub(super) async fn import_ca(
    data_dir: &Path,
    args: ImportArgs,
    access: &KeyAccess,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    if data_dir.join("ca").join("root.crt.pem").exists() {
        let (_, _, store) = open(data_dir, None).await?;
        let pending: Vec<_> = store
            .generations()
            .await?
            .into_iter()
            .filter(|g| g.status == GenerationStatus::Pending)
            .collect();
        if !pending.is_empty() {
            return import_generations(data_dir, &args, access, store.as_ref(), pending, out).await;
        }
    }
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

/// `ca import` after `ca rollover` under an offline root: every pending generation whose signed
/// certificate is in `--certs` is checked and becomes active (the previous one retiring).
async fn import_generations(
    data_dir: &Path,
    args: &ImportArgs,
    access: &KeyAccess,
    store: &dyn crate::storage::Store,
    pending: Vec<crate::storage::GenerationRecord>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let request = ImportRequest {
        root: args.root.clone(),
        certs: args.certs.clone(),
        root_crl: args.root_crl.clone(),
    };
    let mut activated = 0;
    for generation in pending {
        if !args
            .certs
            .join(format!("{}.crt.pem", generation.name))
            .exists()
        {
            writeln!(
                out,
                "{}: no signed certificate in {}; still pending",
                generation.name,
                args.certs.display()
            )?;
            continue;
        }
        let imported = crate::pki::import_generation(data_dir, &generation, &request, access)?;
        let record = imported.record;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let details = serde_json::json!({
            "ca": record.ca,
            "external_root": true,
            "custody": record.custody.as_str(),
            "not_after": record.not_after,
        });
        let audit = generations::rollover_event(
            AuditAction::CaRolledOver,
            "operator:cli",
            &record,
            details,
            now,
        );
        store.activate_generation(&record, &audit).await?;
        writeln!(
            out,
            "{} is active (signed by the offline root); the previous generation is retiring",
            record.name
        )?;
        describe_root_ocsp(&imported.root_ocsp, out)?;
        activated += 1;
    }
    anyhow::ensure!(
        activated > 0,
        "no pending generation's certificate was found in {}",
        args.certs.display()
    );
    Ok(())
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
