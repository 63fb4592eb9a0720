//! The per-listener connection cap, counted in file descriptors: with idle clients far beyond
//! the cap, the server never holds more than the cap per listener (issue 17, item 5). Its own
//! test binary, so no other test's sockets are counted.

use std::time::Duration;

use ca_server::config::Limits;
use iomt_tests::TestApp;
use tokio::net::TcpStream;

/// Idle clients per listener, and the cap the server is given.
const IDLE: usize = 500;
const CAP: usize = 100;
/// Descriptors the process may open besides the sockets counted (runtime, logs, database).
const SLACK: usize = 64;

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_connection_cap_never_holds_more_connections_than_the_cap() {
    let Some(before) = open_fds() else {
        eprintln!("SKIPPED: no /proc/self/fd to count descriptors");
        return;
    };
    // Timeouts longer than the test, so no slot is recycled while it counts.
    let app = TestApp::spawn_with_limits(Limits {
        handshake_timeout_secs: 120,
        header_timeout_secs: 120,
        body_timeout_secs: 15,
        max_connections: Some(CAP),
    })
    .await;
    let server_baseline = open_fds().unwrap() - before;
    let mut idle = Vec::with_capacity(2 * IDLE);
    for addr in [app.http, app.https] {
        for _ in 0..IDLE {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
    }
    // Sample while the server fills its slots.
    let mut peak = 0;
    for _ in 0..60 {
        peak = peak.max(open_fds().unwrap() - before - server_baseline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clients = 2 * IDLE;
    eprintln!("peak: {peak} descriptors over {clients} client sockets (cap {CAP} per listener)");
    assert!(
        peak + SLACK >= clients + 2 * CAP,
        "the server took connections up to its cap on both listeners: peak {peak} descriptors over {clients} client sockets"
    );
    assert!(
        peak <= clients + 2 * CAP + SLACK,
        "the server held more than {CAP} connections per listener: peak {peak} descriptors over {clients} client sockets"
    );
    drop(idle);
}
