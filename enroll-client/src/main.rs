//! `enroll-client`: parse, run, and exit with a code scripts can trust (see `--help`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = enroll_client::cli::Cli::parse();
    enroll_client::cli::init_logging();
    std::process::ExitCode::from(enroll_client::cli::execute(cli).await)
}
