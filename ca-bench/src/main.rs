//! `ca-bench`: measures ca-server on this machine (issue #7) — token enrollment against
//! Cloudflare cfssl, re-enrollment with fresh mutual TLS, OCSP, and CRL regeneration.
//!
//! Progress goes to stderr; results to stdout as `key: value` lines and one summary line.
//! Exit code: 0 success, 1 some requests failed, 2 the setup failed.

mod cfssl;
mod crl;
mod est;
mod load;
mod modes;
mod ocsp;
mod procstat;
mod report;
mod setup;
mod verifier;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::modes::Load;
use crate::report::Outcome;

/// Load generator and benchmark for ca-server: starts a fresh CA in a temp directory (server in
/// a child process), prepares devices, tokens and CSRs outside the timed window, then measures.
#[derive(Debug, Parser)]
#[command(name = "ca-bench", version)]
struct Cli {
    /// What to measure (default: enroll).
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Token enrollment (simpleenroll) over HTTPS keep-alive; the headline figure.
    Enroll(EnrollArgs),
    /// Re-enrollment (simplereenroll) with a fresh mutual-TLS connection per request.
    Reenroll(ReenrollArgs),
    /// OCSP responses/s (POST /ocsp/basic over keep-alive HTTP), good and revoked serials mixed.
    Ocsp(OcspArgs),
    /// CRL regeneration time (build + sign + store) with many revoked entries.
    Crl(CrlArgs),
    /// enroll (with cfssl), reenroll, ocsp and crl in turn, then a Markdown table vs issue #7.
    All(AllArgs),
    /// Runs the ca-server command line in this process (how the bench starts its children).
    #[command(hide = true)]
    CaServer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// Load options shared by the HTTP modes.
#[derive(Debug, Clone, Args)]
struct LoadArgs {
    /// Concurrent connections, one request in flight on each.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Length of the measured window, in seconds (stops earlier if the requests run out).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Requests sent before the measured window (at most a tenth of the prepared requests).
    #[arg(long, default_value_t = 2000)]
    warmup: usize,
    /// Worker threads of the load generator (the rest of the cores are left to the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

/// Where the server keeps its records.
#[derive(Debug, Clone, Args)]
struct DatabaseArgs {
    /// Run the server on PostgreSQL: a fresh database is created on this server (e.g.
    /// postgres://postgres@127.0.0.1:5432) and dropped at the end. Default: SQLite.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl LoadArgs {
    fn load(&self) -> Load {
        Load {
            concurrency: self.concurrency,
            duration: Duration::from_secs_f64(self.duration.max(0.0)),
            warmup: self.warmup,
        }
    }
}

#[derive(Debug, Args)]
struct EnrollArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Devices registered, each with a token and a pre-generated CSR (one request each).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    devices: usize,
    /// Then run Cloudflare cfssl (`cfssl serve`, /api/v1/cfssl/sign) with the same CSRs,
    /// concurrency and duration, twice: stateless, and with its certificate database (which a
    /// CA must keep); print both ratios.
    #[arg(long)]
    compare_cfssl: bool,
    /// cfssl's certificate database for --compare-cfssl: a PostgreSQL server URL (a fresh
    /// database is created and dropped); default: SQLite in WAL mode with synchronous=FULL.
    #[arg(long, value_name = "URL", requires = "compare_cfssl")]
    cfssl_database: Option<String>,
    /// Certificates stored before the run (bulk-inserted, untimed), to measure issuance into
    /// a full database (issue #7: 1,000,000).
    #[arg(long, default_value_t = 0)]
    prefill: usize,
}

#[derive(Debug, Args)]
struct ReenrollArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Devices enrolled before the window; each re-enrolls at most once.
    #[arg(long, short = 'n', default_value_t = 25_000)]
    devices: usize,
}

#[derive(Debug, Args)]
struct OcspArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Devices enrolled (their certificates are queried in turn).
    #[arg(long, short = 'n', default_value_t = 1000)]
    devices: usize,
    /// How many of them are revoked (through `ca-server revoke`).
    #[arg(long, default_value_t = 10)]
    revoked: usize,
}

#[derive(Debug, Args)]
struct CrlArgs {
    /// Revoked certificates in the CRL.
    #[arg(long, default_value_t = 100_000)]
    revoked: usize,
    /// Store them in a fresh database of this PostgreSQL server instead of SQLite.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, Args)]
struct AllArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Devices for the enroll mode.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Devices for the reenroll mode.
    #[arg(long, default_value_t = 25_000)]
    reenroll_devices: usize,
    /// Revoked entries for the CRL mode.
    #[arg(long, default_value_t = 100_000)]
    revoked: usize,
    /// Also measure enrollment with this many certificates already stored (0: skip; the
    /// issue's figure is 1,000,000).
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// Also measure enrollment on a fresh database of this PostgreSQL server (e.g.
    /// postgres://postgres@127.0.0.1:5432); everything else runs on SQLite.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = cli.mode.unwrap_or_else(|| Mode::Enroll(default_enroll()));
    if let Mode::CaServer { args } = mode {
        return setup::run_ca_server(args);
    }
    let threads = match &mode {
        Mode::Enroll(a) => a.load.client_threads,
        Mode::Reenroll(a) => a.load.client_threads,
        Mode::Ocsp(a) => a.load.client_threads,
        Mode::All(a) => a.load.client_threads,
        Mode::Crl(_) | Mode::CaServer { .. } => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: tokio runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(mode)) {
        Ok(outcome) => {
            println!("{}", outcome.summary);
            if outcome.request_errors > 0 {
                eprintln!(
                    "FAILED: {} requests failed (details above)",
                    outcome.request_errors
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: setup failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn default_enroll() -> EnrollArgs {
    EnrollArgs::parse_from_defaults()
}

impl EnrollArgs {
    /// The defaults, as `ca-bench enroll` with no options.
    fn parse_from_defaults() -> EnrollArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: EnrollArgs,
        }
        Only::parse_from(["enroll"]).args
    }
}

async fn run(mode: Mode) -> anyhow::Result<Outcome> {
    match mode {
        Mode::Enroll(a) => {
            let run = modes::EnrollRun {
                devices: a.devices,
                database: a.db.database.as_deref(),
                compare_cfssl: a.compare_cfssl,
                cfssl_database: a.cfssl_database.as_deref(),
                prefill: a.prefill,
                label: "ours",
            };
            modes::enroll(&a.load.load(), &run).await
        }
        Mode::Reenroll(a) => {
            modes::reenroll(&a.load.load(), a.devices, a.db.database.as_deref()).await
        }
        Mode::Ocsp(a) => {
            let db = a.db.database.as_deref();
            ocsp::run(&a.load.load(), a.devices, a.revoked, db).await
        }
        Mode::Crl(a) => crl::run(a.revoked, a.database.as_deref()).await,
        Mode::All(a) => all(a).await,
        Mode::CaServer { .. } => anyhow::bail!("internal: ca-server is handled before"),
    }
}

/// Every mode in turn; a setup failure stops the series, request errors are summed.
async fn all(a: AllArgs) -> anyhow::Result<Outcome> {
    let load = a.load.load();
    let mut run = modes::EnrollRun {
        devices: a.devices,
        database: None,
        compare_cfssl: true,
        cfssl_database: None,
        prefill: 0,
        label: "ours",
    };
    let headline = modes::enroll(&load, &run).await?;
    let empty_rate = headline.rate;
    let mut parts = vec![headline];
    run.compare_cfssl = false;
    if let Some(url) = a.postgres.as_deref() {
        let mut pg = modes::enroll(
            &load,
            &modes::EnrollRun {
                database: Some(url),
                label: "postgres",
                ..run
            },
        )
        .await?;
        pg.rows.truncate(1); // the rate; latency, RSS and CPU rows are the SQLite run's
        parts.push(pg);
    }
    if a.prefill > 0 {
        let mut full = modes::enroll(
            &load,
            &modes::EnrollRun {
                prefill: a.prefill,
                label: "prefilled",
                ..run
            },
        )
        .await?;
        let share = if empty_rate > 0.0 {
            full.rate / empty_rate
        } else {
            0.0
        };
        full.rows = vec![report::Row::new(
            &format!(
                "issuance rate with {} certificates already stored",
                report::thousands(a.prefill as f64)
            ),
            "≥ 90 % of the empty-database rate",
            format!(
                "{} certs/s ({:.0} %)",
                report::thousands(full.rate),
                share * 100.0
            ),
            Some(share >= 0.9),
        )];
        parts.push(full);
    }
    parts.push(modes::reenroll(&load, a.reenroll_devices, None).await?);
    parts.push(ocsp::run(&load, 1000, 10, None).await?);
    parts.push(crl::run(a.revoked, None).await?);
    let rows: Vec<_> = parts.iter().flat_map(|p| p.rows.clone()).collect();
    println!();
    print!("{}", report::markdown(&rows));
    println!();
    for part in parts.iter().skip(1) {
        println!("{}", part.summary);
    }
    Ok(Outcome {
        request_errors: parts.iter().map(|p| p.request_errors).sum(),
        rows,
        rate: empty_rate,
        summary: parts.first().map(|p| p.summary.clone()).unwrap_or_default(),
    })
}
