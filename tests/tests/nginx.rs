//! The nginx configurations hospitals copy (certs-example/nginx/), run against real nginx: with
//! CRLs (iomt-mtls.conf) and with OCSP over the whole chain or the leaf only
//! (iomt-mtls-ocsp.conf), under an online and an offline root: a good device is accepted, a
//! revoked one and a held one refused.

use std::path::{Path, PathBuf};
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

/// A running nginx with one site, and what a client needs to reach it.
struct Site {
    _nginx: Nginx,
    prefix: PathBuf,
    port: u16,
    server_cert: PathBuf,
}

impl Site {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }
}

fn tools_present() -> bool {
    require_tool("nginx", &["-v"])
        && require_tool("openssl", &["version"])
        && require_tool("curl", &["--version"])
}

/// Starts nginx in `prefix` with `certs-example/nginx/<template>`, its placeholders filled
/// (`@IOMT_ROOT@` with the CA's root, plus `extra`), after `edit`.
async fn start_nginx(
    app: &TestApp,
    prefix: &Path,
    template: &str,
    extra: &[(&str, &Path)],
    edit: impl Fn(String) -> String,
) -> Site {
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (server_cert, server_key) = (prefix.join("server.pem"), prefix.join("server.key"));
    std::fs::write(&server_cert, server.pem()).unwrap();
    std::fs::write(&server_key, key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../certs-example/nginx")
            .join(template),
    )
    .unwrap();
    let mut site = template
        .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
        .replace("@SERVER_CERT@", server_cert.to_str().unwrap())
        .replace("@SERVER_KEY@", server_key.to_str().unwrap())
        .replace("@IOMT_ROOT@", app.root_pem().to_str().unwrap());
    for (placeholder, path) in extra {
        site = site.replace(placeholder, path.to_str().unwrap());
    }
    let site = edit(site);
    let conf = format!(
        "master_process off;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {p}/tmp_body;\n proxy_temp_path {p}/tmp_proxy;\n fastcgi_temp_path {p}/tmp_fcgi;\n uwsgi_temp_path {p}/tmp_uwsgi;\n scgi_temp_path {p}/tmp_scgi;\n{site}\n}}\n",
        p = prefix.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    run_tool(
        Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf")),
    );
    let nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(prefix)
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
    Site {
        _nginx: nginx,
        prefix: prefix.to_path_buf(),
        port,
        server_cert,
    }
}

/// Enrolls one Basic device per serial; returns each device directory and certificate serial.
async fn enroll_devices(app: &TestApp, serials: &[&str]) -> Vec<(PathBuf, String)> {
    let mut devices = Vec::new();
    for serial in serials {
        let token = app.pump_with_token(serial).await;
        let dir = app.dir.path().join(serial);
        let enrolled = app.enroll(serial, &token, &dir).await.unwrap();
        devices.push((dir, enrolled.certificate_serial));
    }
    devices
}

/// The HTTP status nginx gives each device (curl presenting cert.pem + chain.pem).
async fn statuses(site: &Site, devices: &[PathBuf]) -> Vec<String> {
    let (cert, port, devices) = (site.server_cert.clone(), site.port, devices.to_vec());
    tokio::task::spawn_blocking(move || {
        devices
            .iter()
            .map(|device| curl_status(&cert, device, port))
            .collect()
    })
    .await
    .unwrap()
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
    if !tools_present() {
        return;
    }
    let app = TestApp::spawn().await;
    let devices = enroll_devices(&app, &["IP20000001", "IP20000002"]).await;
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
    std::fs::create_dir_all(&prefix).unwrap();
    let crls = crl_bundle(&app, &prefix).await;
    let site = start_nginx(
        &app,
        &prefix,
        "iomt-mtls.conf",
        &[("@IOMT_CRLS@", crls.as_path())],
        |site| site,
    )
    .await;
    let statuses = statuses(&site, &[devices[0].0.clone(), devices[1].0.clone()]).await;
    assert_eq!(statuses[0], "200", "a good device is accepted");
    assert_eq!(
        statuses[1], "400",
        "a revoked device is refused (nginx: 400 The SSL certificate error)"
    );
    let log = site.error_log();
    assert!(log.contains("certificate revoked"), "nginx logs why: {log}");
}

/// Enrolls a good, a revoked and a held device, then runs nginx with `ssl_ocsp on` and with
/// `ssl_ocsp leaf` against the CA's OCSP responders.
async fn ocsp_good_revoked_held(app: &TestApp) {
    let devices = enroll_devices(app, &["IP20000011", "IP20000012", "IP20000013"]).await;
    for (device, reason) in [
        (&devices[1], "keyCompromise"),
        (&devices[2], "certificateHold"),
    ] {
        app.cli(&["revoke", "--serial", &device.1, "--reason", reason])
            .await
            .unwrap();
    }
    let dirs: Vec<PathBuf> = devices.iter().map(|(dir, _)| dir.clone()).collect();
    for mode in ["on", "leaf"] {
        let prefix = app.dir.path().join(format!("nginx-ocsp-{mode}"));
        let site = start_nginx(app, &prefix, "iomt-mtls-ocsp.conf", &[], |site| {
            site.replace("ssl_ocsp       on;", &format!("ssl_ocsp       {mode};"))
        })
        .await;
        let got = statuses(&site, &dirs).await;
        let log = site.error_log();
        assert_eq!(
            got[0], "200",
            "ssl_ocsp {mode}: a good device is accepted: {log}"
        );
        assert_eq!(
            got[1], "400",
            "ssl_ocsp {mode}: a revoked device is refused"
        );
        assert_eq!(got[2], "400", "ssl_ocsp {mode}: a held device is refused");
        assert!(
            log.matches("certificate revoked").count() >= 2,
            "ssl_ocsp {mode}: nginx logs why, for both (no CRL is configured: OCSP said so): {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_ssl_ocsp_on_and_leaf_accept_good_and_refuse_revoked_and_held_devices() {
    if !tools_present() {
        return;
    }
    let app = TestApp::spawn_published().await;
    ocsp_good_revoked_held(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_ssl_ocsp_under_offline_root_uses_the_pre_signed_root_responses() {
    if !tools_present() {
        return;
    }
    let mut app = TestApp::spawn_under_offline_root().await;
    ocsp_good_revoked_held(&app).await;

    // Control: without the root's responses, `ssl_ocsp on` refuses even the good device (its
    // issuing CA cannot be checked) while `ssl_ocsp leaf` still accepts it.
    std::fs::remove_dir_all(app.data_dir().join("ca/root-ocsp")).unwrap();
    app.stop_server().await;
    app.restart().await;
    let good = app.dir.path().join("IP20000011");
    for (mode, expected) in [("on", "400"), ("leaf", "200")] {
        let prefix = app.dir.path().join(format!("nginx-control-{mode}"));
        let site = start_nginx(&app, &prefix, "iomt-mtls-ocsp.conf", &[], |site| {
            site.replace("ssl_ocsp       on;", &format!("ssl_ocsp       {mode};"))
        })
        .await;
        let got = statuses(&site, std::slice::from_ref(&good)).await;
        assert_eq!(
            got[0],
            expected,
            "ssl_ocsp {mode} without root responses: {}",
            site.error_log()
        );
    }
}
