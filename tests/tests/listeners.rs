//! Slow and idle clients against both listeners: connection caps, header/handshake/idle
//! timeouts, and the other listener (and a normal client) unaffected (issue 17, item 5).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ca_server::config::Limits;
use iomt_tests::{PUMP, TestApp, p256_csr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections opened against each listener.
const IDLE: usize = 1000;
/// Failure guard only: everything below normally finishes in a few seconds.
const GUARD: Duration = Duration::from_secs(180);

/// Short timeouts so slots free quickly; a cap well under [`IDLE`] so the cap is exercised.
fn short_limits(max_connections: Option<usize>) -> Limits {
    Limits {
        handshake_timeout_secs: 1,
        header_timeout_secs: 1,
        body_timeout_secs: 15,
        max_connections,
    }
}

/// Both sides of every connection live in this process: lift the soft open-file limit.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(error) = setrlimit(Resource::Nofile, wanted) {
        eprintln!("could not raise RLIMIT_NOFILE ({error}); staying at {limit:?}");
    }
}

async fn open_idle(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await.expect("connect"));
    }
    streams
}

/// A normal client: EST enrollment (HTTPS), then OCSP and the CRL (plain HTTP).
async fn normal_client_round(app: &TestApp, serial: &str, token: &str) {
    let (_key, csr) = p256_csr(serial);
    let (status, code, body) = app
        .post_simpleenroll(serial, token, "application/pkcs10", TestApp::est_body(&csr))
        .await;
    assert_eq!(status, 200, "EST: {code} {body}");

    let certificate = app.certificates(serial).await.remove(0);
    let issuer = fetch(app, "/ca/basic.cer").await;
    let serial_bytes = hex::decode(&certificate.serial).expect("hex serial");
    let request =
        iomt_core::ocsp::build_request(&issuer, &serial_bytes, Some(b"listener-test")).unwrap();
    let response = app
        .plain_client()
        .post(format!("http://{}/ocsp/basic", app.http))
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .expect("OCSP request");
    assert_eq!(response.status(), 200);
    let der = response.bytes().await.expect("OCSP body");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let status =
        iomt_core::ocsp::check_response(&der, &issuer, &serial_bytes, Some(b"listener-test"), now)
            .expect("a signed OCSP answer");
    assert_eq!(status, iomt_core::ocsp::Status::Good);

    let crl = fetch(app, "/crl/basic.crl").await;
    x509_parser::parse_x509_crl(&crl).expect("a DER CRL");
}

async fn fetch(app: &TestApp, path: &str) -> Vec<u8> {
    let response = app
        .plain_client()
        .get(format!("http://{}{path}", app.http))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200, "{path}");
    response.bytes().await.expect("body").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_idle_connections_on_both_listeners_still_answers_est_ocsp_and_crl() {
    raise_open_file_limit();
    let app = TestApp::spawn_with_limits(short_limits(Some(200))).await;
    app.register("IP27100001", PUMP).await;
    let token = app.token("IP27100001").await;

    tokio::time::timeout(GUARD, async {
        let idle_https = open_idle(app.https, IDLE).await;
        let idle_http = open_idle(app.http, IDLE).await;
        // Every idle connection is open (accepted or waiting in the backlog) when the normal
        // client arrives; it is served once the timeouts free slots under the cap.
        normal_client_round(&app, "IP27100001", &token).await;
        drop((idle_https, idle_http));
    })
    .await
    .expect("the normal client was served while idle connections were open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_more_idle_connections_than_the_default_cap_keeps_both_listeners_answering() {
    // The derived cap (no `max_connections`): the listeners stay within the open-file limit
    // and a normal client is served on both while 1,000 idle connections sit on each.
    raise_open_file_limit();
    let app = TestApp::spawn_with_limits(short_limits(None)).await;
    app.register("IP27100002", PUMP).await;
    let token = app.token("IP27100002").await;
    tokio::time::timeout(GUARD, async {
        let idle_https = open_idle(app.https, IDLE).await;
        let idle_http = open_idle(app.http, IDLE).await;
        normal_client_round(&app, "IP27100002", &token).await;
        drop((idle_https, idle_http));
    })
    .await
    .expect("served");
}

/// Reads until the server closes the connection (EOF or reset); panics past the guard.
async fn closed_by_server(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_idle_or_slow_clients_are_closed_by_the_timeouts() {
    let app = TestApp::spawn_with_limits(short_limits(None)).await;
    let mut closing = Vec::new();

    // Connections that send nothing, on both listeners (no TLS handshake on HTTPS).
    for addr in [app.http, app.https] {
        for stream in open_idle(addr, 50).await {
            closing.push(tokio::spawn(closed_by_server(stream)));
        }
    }
    // A keep-alive connection left idle after one answered request (plain HTTP).
    let mut kept = TcpStream::connect(app.http).await.unwrap();
    kept.write_all(b"GET /ca/root.cer HTTP/1.1\r\nHost: ca\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    closing.push(tokio::spawn(closed_by_server(kept)));
    // A slowloris: one header byte every 200 ms never completes the headers.
    let slow = TcpStream::connect(app.http).await.unwrap();
    let (mut read, mut write) = slow.into_split();
    let dripping = tokio::spawn(async move {
        for byte in b"GET /crl/basic.crl HTTP/1.1\r\nHost: ca\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    closing.push(tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(GUARD, async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server closed the slow connection");
    }));

    for task in closing {
        task.await.expect("closed");
    }
    dripping.abort();

    // A TLS connection that completes its handshake and then sends no request (blocking rustls
    // on its own thread).
    let root = app.root_der();
    let https = app.https;
    tokio::task::spawn_blocking(move || tls_handshake_then_idle(https, root))
        .await
        .unwrap();
}

fn tls_handshake_then_idle(addr: SocketAddr, root: rustls_pki_types::CertificateDer<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(GUARD)).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).expect("handshake");
    }
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    stream.flush().unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(error) => assert!(
            !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server kept an idle TLS connection open: {error}"
        ),
        Ok(n) => panic!("unexpected {n} bytes on an idle connection"),
    }
}
