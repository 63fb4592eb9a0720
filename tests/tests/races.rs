//! The CA's invariants under real concurrency, on SQLite and on two PostgreSQL replicas: one
//! public key certifies one device, a device gets one initial certificate (token and station at
//! once, or one station twice), and the losers of each race get the sequential answer with
//! nothing of theirs written (their tokens stay unused).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ca_server::authority::Csr;
use ca_server::storage::testing;
use enroll_client::keystore;
use iomt_tests::{PUMP, TestApp};

const PKCS10: &str = "application/pkcs10";
/// Requests sent together in one trial.
const CONCURRENT: usize = 20;
/// Trials per race.
const TRIALS: usize = 20;

/// A CSR for `serial` signed by `key` (several devices may share one key in these tests).
fn csr_with_key(serial: &str, key: &rcgen::KeyPair) -> Vec<u8> {
    enroll_client::csr::build_csr(key, serial).unwrap()
}

fn new_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

/// How a request ended: status and error code.
type Outcome = (u16, String);

async fn send(request: reqwest::RequestBuilder, csr: &[u8]) -> Outcome {
    let response = request
        .header("content-type", PKCS10)
        .body(TestApp::est_body(csr))
        .send()
        .await
        .expect("request");
    let code = response
        .headers()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status().as_u16(), code)
}

fn simpleenroll(https: SocketAddr) -> String {
    format!(
        "https://localhost:{}/.well-known/est/simpleenroll",
        https.port()
    )
}

/// A station for pumps, enrolled with the ordinary client; returns its credential directory.
async fn pump_station(app: &TestApp, name: &str) -> PathBuf {
    let token = app
        .cli(&[
            "station",
            "create",
            "--name",
            name,
            "--products",
            PUMP,
            "--rate-limit",
            "100000/h",
        ])
        .await
        .expect("station create");
    let dir = app.dir.path().join(format!("station-{name}"));
    app.enroll(name, token.trim(), &dir).await.expect("station");
    dir
}

fn station_client(app: &TestApp, dir: &Path) -> reqwest::Client {
    app.client_with_identity(&keystore::load(dir).unwrap())
}

/// N devices, each with its own token, all asking for one key at once: one certificate.
async fn one_key_race(app: &TestApp, replicas: &[SocketAddr]) {
    let client = app.http_client();
    for trial in 0..TRIALS {
        let devices = app.pumps_with_tokens(trial * CONCURRENT, CONCURRENT).await;
        let key = new_key();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (serial, token)) in devices.iter().enumerate() {
            let request = client
                .post(simpleenroll(replicas[i % replicas.len()]))
                .basic_auth(serial, Some(token));
            let csr = csr_with_key(serial, &key);
            tasks.spawn(async move { send(request, &csr).await });
        }
        let outcomes = tasks.join_all().await;
        let won = outcomes.iter().filter(|o| o.0 == 200).count();
        for (serial, _) in &devices {
            for c in app.certificates(serial).await {
                eprintln!(
                    "DEBUG {serial} {} {} {}",
                    c.serial,
                    hex::encode(&c.spki_sha256),
                    c.authorized_by
                );
            }
        }
        assert_eq!(won, 1, "trial {trial}: {outcomes:?}");
        for outcome in &outcomes {
            assert!(
                outcome.0 == 200 || *outcome == (403, "csr.duplicate_key".to_owned()),
                "trial {trial}: {outcome:?}"
            );
        }
        let spki = Csr::parse(&csr_with_key("any", &key))
            .unwrap()
            .spki_sha256();
        let holders = app.authority.store().key_holders(&spki).await.unwrap();
        assert_eq!(holders.len(), 1, "trial {trial}: one device holds the key");
        for (serial, token) in &devices {
            let holder = holders[0] == *serial;
            assert_eq!(app.token_used(token).await, holder, "{serial}'s token");
            assert_eq!(app.certificates(serial).await.len(), usize::from(holder));
        }
    }
}

/// Each device asked for at once by its token and a station (or by `second` station instead
/// of the token): one certificate per device; a losing token stays unused.
async fn one_device_race(
    app: &TestApp,
    replicas: &[SocketAddr],
    station: &Path,
    second: Option<&Path>,
    first_serial: usize,
) {
    let tokens_client = app.http_client();
    let station_a = station_client(app, station);
    let station_b = second.map(|dir| station_client(app, dir));
    let per_trial = CONCURRENT / 2;
    for trial in 0..TRIALS {
        let devices = app
            .pumps_with_tokens(first_serial + trial * per_trial, per_trial)
            .await;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (serial, token)) in devices.iter().enumerate() {
            let (one, other) = (
                replicas[i % replicas.len()],
                replicas[(i + 1) % replicas.len()],
            );
            let by_station = station_a.post(simpleenroll(one));
            let rival = match &station_b {
                Some(b) => b.post(simpleenroll(other)),
                None => tokens_client
                    .post(simpleenroll(other))
                    .basic_auth(serial, Some(token)),
            };
            for request in [by_station, rival] {
                let csr = csr_with_key(serial, &new_key());
                let serial = serial.clone();
                tasks.spawn(async move { (serial, send(request, &csr).await) });
            }
        }
        let outcomes = tasks.join_all().await;
        for (serial, token) in &devices {
            let answers: Vec<&Outcome> = outcomes
                .iter()
                .filter(|(s, _)| s == serial)
                .map(|(_, o)| o)
                .collect();
            let won = answers.iter().filter(|o| o.0 == 200).count();
            assert_eq!(won, 1, "trial {trial}, {serial}: {answers:?}");
            assert!(
                answers
                    .iter()
                    .any(|o| **o == (409, "device.already_enrolled".to_owned())),
                "trial {trial}, {serial}: {answers:?}"
            );
            let certificates = app.certificates(serial).await;
            assert_eq!(certificates.len(), 1, "trial {trial}, {serial}");
            if second.is_none() {
                let by_token = certificates[0].authorized_by == "token";
                assert_eq!(app.token_used(token).await, by_token, "{serial}'s token");
            }
        }
    }
}

async fn all_races(app: &TestApp, replicas: &[SocketAddr]) {
    one_key_race(app, replicas).await;
    let station = pump_station(app, "line1-st01").await;
    let other = pump_station(app, "line1-st02").await;
    one_device_race(app, replicas, &station, None, 500).await;
    one_device_race(app, replicas, &station, Some(&station), 800).await;
    one_device_race(app, replicas, &station, Some(&other), 1_100).await;
    // The audit trail stays one unbroken chain through every race.
    app.cli(&["audit", "verify"]).await.expect("audit verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_keep_one_key_one_device_on_sqlite() {
    let app = TestApp::spawn().await;
    all_races(&app, &[app.https]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_keep_one_key_one_device_across_postgres_replicas() {
    let Some(database) = testing::create().await else {
        return;
    };
    let app = TestApp::spawn_on_database(&database.url).await;
    let (replica, _, _, _stop_replica) = app.spawn_replica().await;
    all_races(&app, &[app.https, replica]).await;
    let mut seen = HashSet::new();
    for trial in 0..TRIALS {
        for i in 0..CONCURRENT {
            let serial = format!("IP2{:07}", trial * CONCURRENT + i);
            for certificate in app.certificates(&serial).await {
                assert!(seen.insert(certificate.serial), "serials are unique");
            }
        }
    }
}
