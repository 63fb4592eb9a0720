//! `ca-server`: parse the command line, set up logging, run, and exit with a script-friendly code.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ca_server::cli::Cli::parse();
    ca_server::telemetry::init(cli.log_format);
    let mut stdout = std::io::stdout();
    match ca_server::cli::run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, skipping causes whose text a message already
/// includes (many errors print their source inline).
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
