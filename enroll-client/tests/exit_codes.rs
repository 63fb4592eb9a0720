//! The client binary's exit codes, which scripts and stations rely on.

use std::process::Command;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enroll-client"))
}

#[test]
fn unreachable_server_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&root, cert.pem()).unwrap();
    // Port 9 (discard) on loopback: nothing listens there in a test environment.
    let output = client()
        .args([
            "enroll",
            "--server",
            "https://127.0.0.1:9",
            "--serial",
            "IP20000001",
            "--token",
            "secret-token-value",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .arg("--ca-cert")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: cannot reach the CA"), "{stderr}");
    assert!(
        !stderr.contains("secret-token-value"),
        "the token is never echoed"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn missing_root_file_exits_1_and_bad_usage_exits_2() {
    let output = client()
        .args([
            "enroll",
            "--server",
            "https://127.0.0.1:9",
            "--serial",
            "S",
            "--token",
            "t",
            "--out",
            "/tmp/x",
            "--ca-cert",
            "/nonexistent/root.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let output = client().args(["enroll", "--server", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
