//! The HTTPS certificate renews itself while the server runs (issue 20 §4): with a one-minute
//! `[ca.tls] lifetime` and `tls_renew_percent = 34`, the server replaces the 397-day
//! certificate `init` made at once (longer than configured), then renews again after a third of
//! the new one's life. A connection kept alive across the renewal keeps answering on the
//! session it negotiated; a new connection sees the new certificate (another serial, a later
//! notAfter, verified against the root by rustls); the data directory holds it with its new
//! key (0600); the trail records `ca.tls_renewed`. Nothing restarts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iomt_tests::TestApp;
use rustls_pki_types::{CertificateDer, ServerName};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A kept-alive HTTPS connection that trusts the CA root only.
struct Connection {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Connection {
    fn open(addr: SocketAddr, root: &CertificateDer<'static>) -> Connection {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while connection.is_handshaking() {
            connection.complete_io(&mut socket).expect("handshake");
        }
        Connection {
            tls: rustls::StreamOwned::new(connection, socket),
        }
    }

    /// The certificate the server presented on this connection.
    fn server_cert(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// GET /.well-known/est/cacerts on this connection; the status and body length.
    fn get_cacerts(&mut self) -> (u16, usize) {
        self.tls
            .write_all(
                b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n",
            )
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = self
                .tls
                .read(&mut byte)
                .expect("response on the kept-alive connection");
            assert_eq!(n, 1, "the server closed the kept-alive connection");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        let mut body = vec![0u8; length];
        self.tls.read_exact(&mut body).unwrap();
        (status, length)
    }
}

/// (serial, notAfter) of a DER certificate.
fn serial_and_end(der: &[u8]) -> (String, i64) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    (
        cert.raw_serial_as_string(),
        cert.validity().not_after.timestamp(),
    )
}

/// Opens new connections until one presents a certificate other than `old`; returns it.
fn wait_for_new_certificate(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    old: &[u8],
    within: Duration,
    mut meanwhile: impl FnMut(),
) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let cert = Connection::open(addr, root).server_cert();
        if cert != old {
            return cert;
        }
        assert!(
            Instant::now() < deadline,
            "the HTTPS certificate was not renewed within {within:?}"
        );
        meanwhile();
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_certificate_renews_itself_without_restart_or_dropped_connections() {
    let app = TestApp::spawn_with_ca_config(
        "[ca]\ntls_renew_percent = 34\n\n[ca.tls]\nlifetime = \"60s\"\n",
        None,
    )
    .await;
    let (addr, root) = (app.https, app.root_der());
    let data_dir = app.data_dir();
    let init_cert = iomt_tests::read_pem_certs(&data_dir.join("ca/tls.crt.pem")).remove(0);
    let (init_serial, init_end) = serial_and_end(&init_cert);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        init_end - now > 300 * 86400,
        "init makes a 397-day certificate"
    );

    let checked = tokio::task::spawn_blocking(move || {
        // 1. The 397-day certificate is longer-lived than configured: replaced at start.
        let first =
            wait_for_new_certificate(addr, &root, &init_cert, Duration::from_secs(20), || {});
        let (first_serial, first_end) = serial_and_end(&first);
        assert_ne!(first_serial, init_serial);
        assert!(
            first_end - now <= 70,
            "the renewed certificate lives about a minute"
        );

        // 2. A kept-alive connection on the first renewed certificate.
        let mut kept = Connection::open(addr, &root);
        assert_eq!(kept.server_cert(), first);
        assert_eq!(kept.get_cacerts().0, 200);

        // 3. After a third of its life, renewed again; the kept connection answers meanwhile.
        let second = wait_for_new_certificate(addr, &root, &first, Duration::from_secs(40), || {
            assert_eq!(
                kept.get_cacerts().0,
                200,
                "kept-alive connection during renewal"
            );
        });
        let (second_serial, second_end) = serial_and_end(&second);
        assert_ne!(second_serial, first_serial);
        assert!(second_end > first_end, "the new certificate ends later");
        for _ in 0..3 {
            assert_eq!(
                kept.get_cacerts().0,
                200,
                "kept-alive connection after renewal"
            );
        }
        assert_eq!(
            kept.server_cert(),
            first,
            "the kept connection keeps its session"
        );
        let mut fresh = Connection::open(addr, &root);
        assert_eq!(fresh.get_cacerts().0, 200);
        second
    })
    .await
    .unwrap();

    // The data directory holds what the server serves, with a new private key (0600).
    let on_disk = iomt_tests::read_pem_certs(&data_dir.join("ca/tls.crt.pem")).remove(0);
    let served_now = tokio::task::spawn_blocking({
        let root = app.root_der();
        move || Connection::open(addr, &root).server_cert()
    })
    .await
    .unwrap();
    assert!(on_disk == checked || on_disk == served_now);
    let key_mode = std::fs::metadata(data_dir.join("ca/tls.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let key_text = std::fs::read_to_string(data_dir.join("ca/tls.key.pem")).unwrap();
    assert!(
        !key_text.contains("BEGIN PRIVATE KEY"),
        "the key stays sealed"
    );

    // Every renewal is audited.
    let trail = app.cli(&["audit", "export"]).await.unwrap();
    let renewals: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("ca.tls_renewed"))
        .collect();
    assert!(renewals.len() >= 2, "two renewals audited: {renewals:?}");
    assert!(
        renewals.len() <= 4,
        "renewed only when due, not at every look: {renewals:?}"
    );
    assert!(renewals[0].contains("lifetime") && renewals[1].contains("age"));

    // A restart serves the renewed certificate from the data directory (or a later one).
    let mut app = app;
    app.stop_server().await;
    app.restart().await;
    let after_restart = tokio::task::spawn_blocking({
        let (addr, root) = (app.https, app.root_der());
        move || Connection::open(addr, &root).server_cert()
    })
    .await
    .unwrap();
    let (_, disk_end) = serial_and_end(&on_disk);
    assert!(serial_and_end(&after_restart).1 >= disk_end);
}
