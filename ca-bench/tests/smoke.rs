//! A smoke run of every benchmark mode with small numbers: proves the harness still drives the
//! real server (and cfssl) end to end. It asserts that the runs complete without request
//! errors and print their figures, never how fast they were.

use std::process::Command;

fn ca_bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ca-bench"))
        .args(args)
        .output()
        .expect("run ca-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ca-bench {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of a `key: value` result line.
fn figure(stdout: &str, key: &str) -> f64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` figure in:\n{stdout}"))
}

fn cfssl_available() -> bool {
    let found = Command::new("cfssl").arg("version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "cfssl (Debian golang-cfssl) is required in CI"
        );
        eprintln!("SKIPPED: cfssl is not installed (apt-get install golang-cfssl)");
    }
    found
}

#[test]
fn enroll_against_cfssl_ends_with_the_summary_line() {
    if !cfssl_available() {
        return;
    }
    let out = ca_bench(&[
        "enroll",
        "--devices",
        "1500",
        "--duration",
        "1",
        "--warmup",
        "100",
        "--concurrency",
        "8",
        "--compare-cfssl",
    ]);
    assert!(
        figure(&out, "ours.ok") > 0.0
            && figure(&out, "cfssl.ok") > 0.0
            && figure(&out, "cfssl_db.ok") > 0.0,
        "{out}"
    );
    assert_eq!(figure(&out, "ours.errors"), 0.0);
    let last = out.lines().last().unwrap_or_default();
    assert!(is_summary_line(last), "unexpected summary line: {last}");
}

/// `enroll: ours=<N> certs/s p99=<ms> ms cfssl=<N> certs/s ratio=<x> cfssl_db=<N> certs/s
/// ratio_db=<x>`, checked by hand.
fn is_summary_line(line: &str) -> bool {
    let words: Vec<&str> = line.split(' ').collect();
    let number = |word: &str, prefix: &str| {
        word.strip_prefix(prefix)
            .is_some_and(|n| n.parse::<f64>().is_ok())
    };
    words.len() == 11
        && words[0] == "enroll:"
        && number(words[1], "ours=")
        && words[2] == "certs/s"
        && number(words[3], "p99=")
        && words[4] == "ms"
        && number(words[5], "cfssl=")
        && words[6] == "certs/s"
        && number(words[7], "ratio=")
        && number(words[8], "cfssl_db=")
        && words[9] == "certs/s"
        && number(words[10], "ratio_db=")
}

#[test]
fn reenroll_ocsp_and_crl_modes_complete() {
    let reenroll = ca_bench(&[
        "reenroll",
        "--devices",
        "300",
        "--duration",
        "1",
        "--warmup",
        "10",
        "--concurrency",
        "8",
    ]);
    assert!(figure(&reenroll, "reenroll.ok") > 0.0, "{reenroll}");
    let ocsp = ca_bench(&[
        "ocsp",
        "--devices",
        "50",
        "--revoked",
        "5",
        "--duration",
        "1",
        "--warmup",
        "10",
        "--concurrency",
        "8",
    ]);
    assert!(figure(&ocsp, "ocsp.ok") > 0.0, "{ocsp}");
    let crl = ca_bench(&["crl", "--revoked", "2000"]);
    assert_eq!(figure(&crl, "crl.revoked_entries"), 2000.0);
}
