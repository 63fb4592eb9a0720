//! The README's exit-code tables (`## Exit codes`) against the programs: every code `ca-server`
//! and `enroll-client` can return has its row, and every row is a code one of them returns.
//!
//! `enroll-client`'s codes come from its error types: [`variant`] and [`verdict_variant`] match
//! without a wildcard, so a new error variant does not compile here until it is listed, and the
//! test then asks for a sample of it. `ca-server`'s `main` maps every error to one code; its
//! source is read to make sure it still does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use enroll_client::error::ClientError;
use enroll_client::verify::Verdict;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The codes in the first column of the table that follows the line starting `**<program>**`
/// in the README's `## Exit codes` section.
fn table(program: &str) -> BTreeSet<u8> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Exit codes\n"))
        .expect("README.md has a `## Exit codes` section");
    let marker = format!("**{program}**");
    let mut lines = section
        .lines()
        .skip_while(|line| !line.starts_with(&marker))
        .skip(1)
        .skip_while(|line| line.trim().is_empty());
    let mut codes = BTreeSet::new();
    for line in lines.by_ref().take_while(|line| line.starts_with('|')) {
        let first = line.trim_matches('|').split('|').next().unwrap().trim();
        if let Ok(code) = first.parse::<u8>() {
            assert!(codes.insert(code), "{program}: code {code} has two rows");
        }
    }
    assert!(
        !codes.is_empty(),
        "no table after {marker} in `## Exit codes`"
    );
    codes
}

/// What clap exits with: 2 for a command line it refuses, 0 for `--help` and `--version`.
fn clap_codes<P: Parser + std::fmt::Debug>(program: &str) -> BTreeSet<u8> {
    [
        vec![program, "--no-such-option"],
        vec![program, "--help"],
        vec![program, "--version"],
    ]
    .into_iter()
    .map(|args| {
        let error = P::try_parse_from(args).expect_err("clap stops");
        u8::try_from(error.exit_code()).unwrap()
    })
    .collect()
}

/// The Rust sources under `dir`, except `main.rs`.
fn sources_besides_main(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// No code outside `main.rs` ends the process with a code of its own.
fn assert_only_main_exits(crate_dir: &str) {
    for (path, text) in sources_besides_main(&repository().join(crate_dir).join("src")) {
        for call in ["process::exit", "ExitCode::"] {
            assert!(
                !text.contains(call),
                "{}: `{call}` sets an exit code outside main.rs; return it through the error type \
                 and give it a row in the README's `## Exit codes`",
                path.display()
            );
        }
    }
}

#[test]
fn ca_server_exit_codes_are_all_in_the_readme_table() {
    let main = std::fs::read_to_string(repository().join("ca-server/src/main.rs")).unwrap();
    let mut codes = clap_codes::<ca_server::cli::Cli>("ca-server");
    for (token, code) in [("ExitCode::SUCCESS", 0), ("ExitCode::FAILURE", 1)] {
        if main.contains(token) {
            codes.insert(code);
        }
    }
    let others = main.matches("ExitCode::").count()
        - main.matches("ExitCode::SUCCESS").count()
        - main.matches("ExitCode::FAILURE").count();
    assert_eq!(
        others, 0,
        "ca-server/src/main.rs exits with a code other than SUCCESS and FAILURE: give it a row in \
         the README's `## Exit codes` and list it here"
    );
    assert!(
        !main.contains("process::exit"),
        "ca-server/src/main.rs calls process::exit"
    );
    assert_only_main_exits("ca-server");
    assert_eq!(
        table("ca-server"),
        codes,
        "README.md `## Exit codes`, ca-server table"
    );
}

/// The position of each [`ClientError`] variant (no wildcard: a new variant must be added).
fn variant(error: &ClientError) -> usize {
    match error {
        ClientError::Unreachable { .. } => 0,
        ClientError::TlsTrust { .. } => 1,
        ClientError::Unauthorized { .. } => 2,
        ClientError::Forbidden { .. } => 3,
        ClientError::TooSoon { .. } => 4,
        ClientError::NeedsReprovisioning(_) => 5,
        ClientError::Server { .. } => 6,
        ClientError::BadResponse(_) => 7,
        ClientError::Untrusted { .. } => 8,
        ClientError::Io { .. } => 9,
        ClientError::Local(_) => 10,
        ClientError::BatchIncomplete { .. } => 11,
        ClientError::Verdict(_) => 12,
        ClientError::Tpm(_) => 13,
        ClientError::UntrustedRoot { .. } => 14,
    }
}

/// The position of each [`Verdict`] variant (no wildcard: a new variant must be added).
fn verdict_variant(verdict: &Verdict) -> usize {
    match verdict {
        Verdict::Trusted => 0,
        Verdict::Untrusted(_) => 1,
        Verdict::NonConformant(_) => 2,
        Verdict::Revoked(_) => 3,
        Verdict::RevocationUnknown(_) => 4,
    }
}

fn verdicts() -> Vec<Verdict> {
    let why = String::new;
    let all = vec![
        Verdict::Trusted,
        Verdict::Untrusted(why()),
        Verdict::NonConformant(why()),
        Verdict::Revoked(why()),
        Verdict::RevocationUnknown(why()),
    ];
    let covered: BTreeSet<usize> = all.iter().map(verdict_variant).collect();
    assert_eq!(covered.len(), 5, "a sample of every Verdict variant");
    all
}

/// One error of each kind; `Verdict` carries the code of each verdict `verify` reaches.
fn client_errors() -> Vec<ClientError> {
    let text = String::new;
    let mut all = vec![
        ClientError::Unreachable {
            url: text(),
            reason: text(),
        },
        ClientError::TlsTrust {
            ca_cert: text(),
            reason: text(),
        },
        ClientError::Unauthorized {
            code: text(),
            message: text(),
        },
        ClientError::Forbidden {
            code: text(),
            message: text(),
        },
        ClientError::TooSoon {
            retry_after_secs: 1,
            message: text(),
        },
        ClientError::NeedsReprovisioning(text()),
        ClientError::Server {
            status: 503,
            code: text(),
            message: text(),
            retry_after_secs: None,
        },
        ClientError::BadResponse(text()),
        ClientError::Untrusted {
            ca_cert: text(),
            reason: text(),
        },
        ClientError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other("sample"),
        },
        ClientError::Local(text()),
        ClientError::BatchIncomplete {
            failed: 1,
            total: 2,
        },
        ClientError::Tpm(enroll_client::tpm::TpmError::NotP256),
        ClientError::UntrustedRoot {
            subject: text(),
            reason: text(),
        },
    ];
    all.extend(
        verdicts()
            .iter()
            .map(|verdict| ClientError::Verdict(verdict.exit_code())),
    );
    let covered: BTreeSet<usize> = all.iter().map(variant).collect();
    assert_eq!(
        covered,
        (0..15).collect(),
        "a sample of every ClientError variant"
    );
    all
}

#[test]
fn enroll_client_exit_codes_are_all_in_the_readme_table() {
    let main = std::fs::read_to_string(repository().join("enroll-client/src/main.rs")).unwrap();
    assert!(
        main.contains("ExitCode::from(enroll_client::cli::execute(")
            && main.matches("ExitCode::").count() == 1
            && !main.contains("process::exit"),
        "enroll-client/src/main.rs exits with the code `cli::execute` returns, and nothing else"
    );
    assert_only_main_exits("enroll-client");
    // `cli::execute`: 0 when the command succeeds (a trusted verdict included), otherwise the
    // error's code; clap's own codes before that.
    let mut codes = clap_codes::<enroll_client::cli::Cli>("enroll-client");
    codes.insert(0);
    codes.extend(client_errors().iter().map(ClientError::exit_code));
    codes.extend(verdicts().iter().map(Verdict::exit_code));
    assert_eq!(
        table("enroll-client"),
        codes,
        "README.md `## Exit codes`, enroll-client table"
    );
}
