//! The EST measurements: `enroll` (with cfssl side by side) and `reenroll`, each on a fresh CA.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cfssl::{self, CertDb, Cfssl};
use crate::est::{self, Enroll, Reenroll};
use crate::load::{self, LoadOptions, LoadResult};
use crate::report::{self, Outcome, Row};
use crate::setup::{Ca, device_serial};

/// Load parameters shared by the modes.
#[derive(Debug, Clone)]
pub struct Load {
    /// Concurrent connections.
    pub concurrency: usize,
    /// Measured window.
    pub duration: Duration,
    /// Requests before the window.
    pub warmup: usize,
}

impl Load {
    /// Options against `addr`, observing the server `pid` and its PostgreSQL database.
    pub fn options(
        &self,
        addr: std::net::SocketAddr,
        pid: Option<u32>,
        database_name: Option<String>,
    ) -> LoadOptions {
        LoadOptions {
            addr,
            concurrency: self.concurrency,
            duration: self.duration,
            warmup: self.warmup,
            server_pid: pid,
            database_name,
        }
    }
}

/// What one `enroll` run does.
#[derive(Debug, Clone, Copy)]
pub struct EnrollRun<'a> {
    /// Devices (and requests) prepared.
    pub devices: usize,
    /// A PostgreSQL server for a fresh database; SQLite when `None`.
    pub database: Option<&'a str>,
    /// Run cfssl with the same CSRs afterwards, stateless and with its certificate database.
    pub compare_cfssl: bool,
    /// The PostgreSQL server for cfssl's certificate database; SQLite when `None`.
    pub cfssl_database: Option<&'a str>,
    /// Certificates stored before the run.
    pub prefill: usize,
    /// Prefix of the result keys (`ours` for the headline run).
    pub label: &'a str,
}

/// The device that owns the certificates stored by `--prefill` (outside the enrolled range).
const PREFILL_DEVICE: &str = "IP29999999";

/// `enroll`: token enrollment over HTTPS keep-alive; cfssl with the same CSRs if asked.
pub async fn enroll(load: &Load, run: &EnrollRun<'_>) -> anyhow::Result<Outcome> {
    let EnrollRun {
        devices,
        database,
        compare_cfssl,
        cfssl_database,
        prefill,
        label,
    } = *run;
    let cfssl_database = match cfssl_database {
        Some(url) => CertDb::Postgres(url.to_owned()),
        None => CertDb::Sqlite,
    };
    let cfssl_binary = if compare_cfssl {
        Some(cfssl::binary().map_err(|path| {
            anyhow::anyhow!(
                "--compare-cfssl: `{path} version` does not run (apt-get install golang-cfssl, or set CFSSL=/path/to/cfssl)"
            )
        })?)
    } else {
        None
    };
    let backend = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    eprintln!("enroll: creating a CA ({backend}), registering {devices} devices with tokens");
    let ca = Ca::create(database).await?;
    let credentials = ca.register_with_tokens(devices)?;
    if prefill > 0 {
        eprintln!("enroll: storing {prefill} certificates first (group commit, untimed)");
        ca.cli(&[
            "device",
            "register",
            "--serial",
            PREFILL_DEVICE,
            "--product",
            crate::setup::PRODUCT,
        ])?;
        crate::crl::fill(&ca.database_url()?, PREFILL_DEVICE, prefill, false).await?;
        println!("{label}.prefilled_certificates: {prefill}");
    }
    eprintln!("enroll: generating {devices} P-256 keys and CSRs");
    let serials: Vec<String> = credentials.iter().map(|(s, _)| s.clone()).collect();
    let csrs = tokio::task::block_in_place(|| est::keys_and_csrs(&serials))?;
    let server = ca.serve()?;
    eprintln!(
        "enroll: simpleenroll on {} at c={} for {:?} (after {} warm-up requests)",
        ca.https,
        load.concurrency,
        load.duration,
        load.warmup.min(devices / 10)
    );
    let workload = Arc::new(Enroll::new(
        ca.https,
        ca.client_config()?,
        &credentials,
        &csrs,
        false,
    )?);
    let ours = load::run(
        workload,
        load.options(ca.https, Some(server.pid()), ca.database_name()),
    )
    .await;
    let ours_rss = load::peak_rss_mb(Some(server.pid()));
    server.stop();
    ca.cleanup().await?;
    report::print_load(label, &ours, ours_rss);
    println!("{label}.storage: {backend}, durable (every answer after its commit)");

    let mut outcome = Outcome {
        request_errors: ours.error_count(),
        rate: ours.rate(),
        ..Outcome::default()
    };
    let measure = format!(
        "token enrollment, HTTPS keep-alive, {backend}, c={}",
        load.concurrency
    );
    let (target, floor) = if database.is_some() {
        ("≥ 6,000 certs/s", 6000.0)
    } else {
        ("≥ 8,000 certs/s and ≥ 1.0× stateless cfssl", 8000.0)
    };
    let mut row = Row::new(
        &measure,
        target,
        format!("{} certs/s", report::thousands(ours.rate())),
        Some(ours.rate() >= floor),
    );
    let p99 = ours.latency_ms(0.99);
    outcome.summary = format!("enroll: {label}={:.0} certs/s p99={p99:.1} ms", ours.rate());

    if let Some(binary) = cfssl_binary {
        let stateless = run_cfssl(&binary, load, &csrs, &CertDb::Stateless, "cfssl").await?;
        let with_db = run_cfssl(&binary, load, &csrs, &cfssl_database, "cfssl_db").await?;
        outcome.request_errors += stateless.error_count() + with_db.error_count();
        let ratio_of = |theirs: &LoadResult| {
            if theirs.rate() > 0.0 {
                ours.rate() / theirs.rate()
            } else {
                0.0
            }
        };
        let (ratio, ratio_db) = (ratio_of(&stateless), ratio_of(&with_db));
        println!("cfssl.ratio_ours_over_cfssl: {ratio:.2}");
        println!("cfssl_db.ratio_ours_over_cfssl_db: {ratio_db:.2}");
        row.cfssl = format!(
            "{} certs/s stateless, {} certs/s with its database",
            report::thousands(stateless.rate()),
            report::thousands(with_db.rate())
        );
        row.ours = format!("{} ({ratio:.2}×, {ratio_db:.2}× with database)", row.ours);
        row.met = Some(ours.rate() >= floor && (database.is_some() || ratio >= 1.0));
        outcome.rows.push(Row::new(
            "vs cfssl with its certificate database (same CSRs, same load)",
            "≥ 2.0×",
            format!("{ratio_db:.2}×"),
            Some(ratio_db >= 2.0),
        ));
        outcome.summary = format!(
            "enroll: ours={:.0} certs/s p99={p99:.1} ms cfssl={:.0} certs/s ratio={ratio:.2} \
             cfssl_db={:.0} certs/s ratio_db={ratio_db:.2}",
            ours.rate(),
            stateless.rate(),
            with_db.rate()
        );
    }
    outcome.rows.push(row);
    outcome.rows.push(Row::new(
        &format!("p99 latency at c={}", load.concurrency),
        "≤ 15 ms",
        format!("{p99:.1} ms"),
        Some(p99 <= 15.0),
    ));
    if let Some(rss) = ours_rss {
        outcome.rows.push(Row::new(
            "server RSS under load",
            "≤ 64 MB",
            format!("{rss:.0} MB"),
            Some(rss <= 64.0),
        ));
    }
    if let Some(cpu) = ours.server_cpu {
        outcome.rows.push(Row::new(
            "server CPU per certificate",
            "–",
            format!("{:.0} µs", cpu.as_secs_f64() * 1e6 / ours.ok.max(1) as f64),
            None,
        ));
    }
    Ok(outcome)
}

async fn run_cfssl(
    binary: &str,
    load: &Load,
    csrs: &[est::KeyAndCsr],
    db: &CertDb,
    label: &str,
) -> anyhow::Result<LoadResult> {
    let cfssl = Cfssl::start(binary, db).await?;
    eprintln!(
        "enroll: cfssl sign on {} at c={} for {:?}, same CSRs, storage: {}",
        cfssl.addr,
        load.concurrency,
        load.duration,
        db.describe()
    );
    let workload = Arc::new(cfssl::Sign::new(&cfssl, csrs)?);
    let result = load::run(workload, load.options(cfssl.addr, Some(cfssl.pid()), None)).await;
    let rss = load::peak_rss_mb(Some(cfssl.pid()));
    cfssl.stop().await?;
    report::print_load(label, &result, rss);
    println!("{label}.storage: {}", db.describe());
    Ok(result)
}

/// `reenroll`: `devices` devices enrolled first (untimed), then each re-enrolls once with a new
/// key on a fresh mutual-TLS connection.
pub async fn reenroll(
    load: &Load,
    devices: usize,
    database: Option<&str>,
) -> anyhow::Result<Outcome> {
    eprintln!("reenroll: creating a CA, registering {devices} devices with tokens");
    let ca = Ca::create(database).await?;
    let credentials = ca.register_with_tokens(devices)?;
    eprintln!("reenroll: generating 2 × {devices} P-256 keys and CSRs");
    let serials: Vec<String> = (0..devices).map(device_serial).collect();
    let (first, next) = tokio::task::block_in_place(|| {
        Ok::<_, anyhow::Error>((est::keys_and_csrs(&serials)?, est::keys_and_csrs(&serials)?))
    })?;
    let server = ca.serve()?;
    eprintln!("reenroll: enrolling the {devices} devices (untimed)");
    let enroll = Arc::new(Enroll::new(
        ca.https,
        ca.client_config()?,
        &credentials,
        &first,
        true,
    )?);
    let setup_load = Load {
        warmup: 0,
        duration: Duration::from_secs(3600),
        ..load.clone()
    };
    let enrolled = load::run(enroll.clone(), setup_load.options(ca.https, None, None)).await;
    if enrolled.error_count() > 0 {
        report::print_load("reenroll.setup", &enrolled, None);
        anyhow::bail!("{} initial enrollments failed", enrolled.error_count());
    }
    let answers = Arc::into_inner(enroll)
        .context("enroll workload still shared")?
        .into_answers();
    let mut current = Vec::with_capacity(devices);
    for (answer, key) in answers.iter().zip(&first) {
        let answer = answer.as_ref().context("a device was not enrolled")?;
        current.push((est::certificate_of(answer)?, key.key_pkcs8.clone()));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.root_der()?)?;
    let workload = Arc::new(Reenroll::new(
        ca.https,
        &roots,
        &ca.basic_ca_der()?,
        current,
        &next,
    )?);
    eprintln!(
        "reenroll: simplereenroll, fresh mTLS connection each, c={} for {:?}",
        load.concurrency, load.duration
    );
    let result = load::run(
        workload,
        load.options(ca.https, Some(server.pid()), ca.database_name()),
    )
    .await;
    let rss = load::peak_rss_mb(Some(server.pid()));
    server.stop();
    ca.cleanup().await?;
    report::print_load("reenroll", &result, rss);
    let p99 = result.latency_ms(0.99);
    Ok(Outcome {
        request_errors: result.error_count(),
        rows: vec![Row::new(
            "re-enrollment, fresh mTLS handshake each",
            "≥ 1,500/s",
            format!("{}/s (p99 {p99:.1} ms)", report::thousands(result.rate())),
            Some(result.rate() >= 1500.0),
        )],
        rate: result.rate(),
        summary: format!(
            "reenroll: ours={:.0} reenrollments/s p99={p99:.1} ms",
            result.rate()
        ),
    })
}
