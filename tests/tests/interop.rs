//! Outside tools as clients and judges: enrollment with curl and openssl only (as any RFC 7030
//! client could), `openssl verify`, and DigiCert's pkilint on device and CA certificates.

use std::path::Path;
use std::process::Command;

use iomt_tests::{TestApp, require_tool, run_tool};

fn openssl(dir: &Path, args: &[&str]) -> String {
    run_tool(Command::new("openssl").current_dir(dir).args(args))
}

#[tokio::test]
async fn enroll_with_curl_and_openssl_only() {
    if !require_tool("openssl", &["version"]) || !require_tool("curl", &["--version"]) {
        return;
    }
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000009").await;
    let work = app.dir.path().join("curl");
    std::fs::create_dir(&work).unwrap();
    let base = format!("{}/.well-known/est", app.server_url());

    openssl(
        &work,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ],
    );
    openssl(
        &work,
        &[
            "req",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/serialNumber=IP20000009",
            "-outform",
            "DER",
            "-out",
            "csr.der",
        ],
    );
    openssl(&work, &["base64", "-in", "csr.der", "-out", "csr.b64"]);
    let credential = format!("IP20000009:{token}");
    // curl runs in a blocking thread so the in-process server keeps serving.
    let (work2, app_base) = (work.clone(), base.clone());
    let root = app.root_pem();
    let port = app.https.port();
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            run_tool(
                Command::new("curl")
                    .current_dir(&work2)
                    .args(["-sS", "--fail-with-body", "--max-time", "20", "--cacert"])
                    .arg(&root)
                    .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
                    .args(args),
            )
        };
        run(&[
            "-u",
            &credential,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@csr.b64",
            "-o",
            "cert.p7.b64",
            &format!("{app_base}/simpleenroll"),
        ]);
        run(&["-o", "ca.p7.b64", &format!("{app_base}/cacerts")]);
    })
    .await
    .unwrap();

    openssl(
        &work,
        &[
            "base64",
            "-d",
            "-A",
            "-in",
            "cert.p7.b64",
            "-out",
            "cert.p7.der",
        ],
    );
    openssl(
        &work,
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "cert.p7.der",
            "-print_certs",
            "-out",
            "cert.pem",
        ],
    );
    openssl(
        &work,
        &[
            "base64",
            "-d",
            "-A",
            "-in",
            "ca.p7.b64",
            "-out",
            "ca.p7.der",
        ],
    );
    openssl(
        &work,
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "ca.p7.der",
            "-print_certs",
            "-out",
            "cacerts.pem",
        ],
    );
    let root = app.root_pem();
    let verified = openssl(
        &work,
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            "cacerts.pem",
            "cert.pem",
        ],
    );
    assert!(verified.contains("cert.pem: OK"), "{verified}");
    let text = openssl(&work, &["x509", "-in", "cert.pem", "-noout", "-subject"]);
    assert!(text.contains("CN = IP200-IP20000009"), "{text}");
    assert!(app.token_used(&token).await);
}

#[tokio::test]
async fn pkilint_finds_no_error_in_device_and_ca_certificates() {
    let Some(linter) = iomt_tests::pkilint::tool("lint_pkix_cert") else {
        return;
    };
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000010").await;
    let out = app.dir.path().join("device");
    app.enroll("IP20000010", &token, &out)
        .await
        .expect("enroll");
    let linter2 = linter.clone();
    let data = app.data_dir();
    tokio::task::spawn_blocking(move || {
        iomt_tests::pkilint::assert_clean(&linter2, &[], &out.join("cert.pem"));
        for ca in ["root", "basic", "substantial", "high", "station", "audit"] {
            iomt_tests::pkilint::assert_clean(
                &linter2,
                &[],
                &data.join("ca").join(format!("{ca}.crt.pem")),
            );
        }
    })
    .await
    .unwrap();
}
