//! The nginx configuration hospitals copy (certs-example/nginx/iomt-mtls.conf), run against real
//! nginx: a good device is accepted, a revoked one refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iomt_tests::{TestApp, require_tool, run_tool};

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn crl_bundle(app: &TestApp, dir: &Path) -> std::path::PathBuf {
    let bundle = dir.join("iomt-crls.pem");
    let mut pem = String::new();
    for ca in ["root", "basic", "substantial", "high"] {
        let response = app
            .plain_client()
            .get(format!("http://{}/crl/{ca}.crl", app.http))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let der = dir.join(format!("{ca}.crl"));
        std::fs::write(&der, response.bytes().await.unwrap()).unwrap();
        pem.push_str(&run_tool(
            Command::new("openssl")
                .args(["crl", "-inform", "DER", "-in"])
                .arg(&der),
        ));
    }
    std::fs::write(&bundle, pem).unwrap();
    bundle
}

fn curl_status(server_cert: &Path, device: &Path, port: u16) -> String {
    let client = device.join("client.pem");
    let chain = std::fs::read_to_string(device.join("cert.pem")).unwrap()
        + &std::fs::read_to_string(device.join("chain.pem")).unwrap();
    std::fs::write(&client, chain).unwrap();
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(server_cert)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "--cert",
        ])
        .arg(&client)
        .arg("--key")
        .arg(device.join("key.pem"))
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn nginx_accepts_a_good_device_and_refuses_a_revoked_one() {
    if !require_tool("nginx", &["-v"])
        || !require_tool("openssl", &["version"])
        || !require_tool("curl", &["--version"])
    {
        return;
    }
    let app = TestApp::spawn().await;
    let mut devices = Vec::new();
    for serial in ["IP20000001", "IP20000002"] {
        let token = app.pump_with_token(serial).await;
        let dir = app.dir.path().join(serial);
        let enrolled = app.enroll(serial, &token, &dir).await.unwrap();
        devices.push((dir, enrolled.certificate_serial));
    }
    app.cli(&[
        "revoke",
        "--serial",
        &devices[1].1,
        "--reason",
        "keyCompromise",
    ])
    .await
    .unwrap();

    let prefix = app.dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (server_cert, server_key) = (prefix.join("server.pem"), prefix.join("server.key"));
    std::fs::write(&server_cert, server.pem()).unwrap();
    std::fs::write(&server_key, key.serialize_pem()).unwrap();
    let crls = crl_bundle(&app, &prefix).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-example/nginx/iomt-mtls.conf"),
    )
    .unwrap();
    let site = template
        .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
        .replace("@SERVER_CERT@", server_cert.to_str().unwrap())
        .replace("@SERVER_KEY@", server_key.to_str().unwrap())
        .replace("@IOMT_ROOT@", app.root_pem().to_str().unwrap())
        .replace("@IOMT_CRLS@", crls.to_str().unwrap());
    let conf = format!(
        "master_process off;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {p}/tmp_body;\n proxy_temp_path {p}/tmp_proxy;\n fastcgi_temp_path {p}/tmp_fcgi;\n uwsgi_temp_path {p}/tmp_uwsgi;\n scgi_temp_path {p}/tmp_scgi;\n{site}\n}}\n",
        p = prefix.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    run_tool(
        Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf")),
    );
    let _nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (good, revoked) = (devices[0].0.clone(), devices[1].0.clone());
    let statuses = tokio::task::spawn_blocking(move || {
        (
            curl_status(&server_cert, &good, port),
            curl_status(&server_cert, &revoked, port),
        )
    })
    .await
    .unwrap();
    assert_eq!(statuses.0, "200", "a good device is accepted");
    assert_eq!(
        statuses.1, "400",
        "a revoked device is refused (nginx: 400 The SSL certificate error)"
    );
    let log = std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
    assert!(log.contains("certificate revoked"), "nginx logs why: {log}");
}
