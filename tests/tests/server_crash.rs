//! The CA killed with SIGKILL at random moments under enrollment load, five times, on SQLite and
//! on PostgreSQL: every certificate a client received is on record, and every device whose
//! answer was lost completes by sending the same request again (the same token and CSR get the
//! certificate already committed, or a first one if nothing was). No device is stranded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ca_server::storage::{Store, testing};
use iomt_tests::client_process::Moments;
use iomt_tests::server_process::{self, ServerProcess};
use iomt_tests::{PUMP, TestApp, https_client, p256_csr};

/// Devices added to the load in each round.
const PER_ROUND: usize = 400;
const ROUNDS: usize = 5;

#[test]
fn server_process_entry_runs_the_server_when_asked() {
    server_process::child_entry();
}

/// One device's request, sent again unchanged until it is answered.
struct Request {
    serial: String,
    token: String,
    csr: Vec<u8>,
}

/// What a request got: the certificates of a 200 answer, or nothing (refused or lost).
async fn send(
    client: &reqwest::Client,
    https: SocketAddr,
    request: &Request,
) -> Option<Vec<Vec<u8>>> {
    let response = client
        .post(format!(
            "https://localhost:{}/.well-known/est/simpleenroll",
            https.port()
        ))
        .basic_auth(&request.serial, Some(&request.token))
        .header("content-type", "application/pkcs10")
        .body(TestApp::est_body(&request.csr))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        panic!(
            "{}: the CA refused a request it must answer: {status} {text}",
            request.serial
        );
    }
    let body = response.text().await.ok()?;
    let der = STANDARD
        .decode(body.split_whitespace().collect::<String>())
        .ok()?;
    iomt_core::wire::parse_certs_only(&der).ok()
}

async fn requests(app_dir: &str, first: usize) -> Vec<Request> {
    let serials: Vec<String> = (first..first + PER_ROUND)
        .map(|i| format!("IP2{i:07}"))
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let csv = scratch.path().join("devices.csv");
    let rows: String = serials.iter().map(|s| format!("{s},{PUMP}\n")).collect();
    std::fs::write(&csv, format!("serial,product\n{rows}")).unwrap();
    TestApp::cli_in(
        app_dir,
        &["device", "register", "--csv", csv.to_str().unwrap()],
    )
    .await
    .unwrap();
    let list = scratch.path().join("serials.txt");
    std::fs::write(&list, serials.join("\n")).unwrap();
    let out = TestApp::cli_in(
        app_dir,
        &["token", "create", "--serials-file", list.to_str().unwrap()],
    )
    .await
    .unwrap();
    out.lines()
        .map(|line| {
            let (serial, token) = line.split_once(',').unwrap();
            Request {
                serial: serial.to_owned(),
                token: token.to_owned(),
                csr: p256_csr(serial).1,
            }
        })
        .collect()
}

/// Sends every pending request (32 in flight); returns the answers received.
async fn load(
    client: &reqwest::Client,
    https: SocketAddr,
    pending: &[Arc<Request>],
) -> HashMap<String, Vec<Vec<u8>>> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for request in pending {
        let (client, semaphore, request) = (client.clone(), semaphore.clone(), request.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            let answer = send(&client, https, &request).await;
            (request.serial.clone(), answer)
        });
    }
    let mut answered = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let (serial, Some(certificates)) = joined.unwrap() {
            answered.insert(serial, certificates);
        }
    }
    answered
}

async fn crash_and_recover(database_url: Option<&str>) {
    let (https, http) = server_process::free_addrs();
    let mut extra = Vec::new();
    if let Some(url) = database_url {
        extra.extend(["--database-url", url]);
    }
    let dir = TestApp::init_dir(|_, text| text.to_owned(), Some(http.port()), &extra)
        .await
        .expect("init");
    let data = dir.path().join("ca");
    let data = data.to_str().unwrap();
    let settings = ca_server::config::Settings::load(std::path::Path::new(data)).unwrap();
    let store: Arc<dyn Store> = ca_server::storage::open(&settings.database_url())
        .await
        .unwrap();
    let root = std::fs::read(dir.path().join("ca/root.pem")).unwrap();
    let client = https_client(pem::parse(&root).unwrap().into_contents().into());
    let mut moments = Moments::new();

    let mut pending: Vec<Arc<Request>> = Vec::new();
    let mut received: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut lost_after_commit = 0;
    for round in 0..ROUNDS {
        pending.extend(
            requests(data, round * PER_ROUND)
                .await
                .into_iter()
                .map(Arc::new),
        );
        let mut server = ServerProcess::start(data, https, http).await;
        let kill_after = Duration::from_millis(20 + moments.below(250));
        let (answered, ()) = tokio::join!(load(&client, https, &pending), async {
            tokio::time::sleep(kill_after).await;
            server.kill();
        });
        for request in &pending {
            if !answered.contains_key(&request.serial)
                && !store
                    .certificates_for_device(&request.serial)
                    .await
                    .unwrap()
                    .is_empty()
            {
                lost_after_commit += 1;
            }
        }
        pending.retain(|r| !answered.contains_key(&r.serial));
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} answered, {} pending",
            answered.len(),
            pending.len()
        );
        received.extend(answered);
    }
    // Back up for good: every device still waiting sends its same request again.
    let server = ServerProcess::start(data, https, http).await;
    let answered = load(&client, https, &pending).await;
    assert_eq!(answered.len(), pending.len(), "every retry is answered");
    received.extend(answered);
    drop(server);
    eprintln!("{lost_after_commit} device(s) had a certificate committed but its answer lost");

    // Every device holds exactly one certificate, and it is the one it received.
    assert_eq!(received.len(), ROUNDS * PER_ROUND);
    for (serial, certificates) in &received {
        let stored = store.certificates_for_device(serial).await.unwrap();
        assert_eq!(stored.len(), 1, "{serial}: exactly one certificate");
        assert!(
            certificates.contains(&stored[0].der),
            "{serial}: the certificate received is the one on record"
        );
    }
    TestApp::cli_in(data, &["audit", "verify"])
        .await
        .expect("the audit chain survives the kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_under_load_strands_no_device_on_sqlite() {
    crash_and_recover(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_under_load_strands_no_device_on_postgres() {
    let Some(database) = testing::create().await else {
        return;
    };
    crash_and_recover(Some(&database.url)).await;
}
