//! The load driver: `concurrency` workers share one request counter, each on its own HTTP/1.1
//! connection (kept alive, or fresh per request), for a timed window after a warm-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::procstat::{self, CpuSample};

/// How many failed answers keep their body for the report.
const ERROR_SAMPLES: usize = 3;

/// How a connection is made.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP (OCSP).
    Plain,
    /// HTTPS with this client configuration (trust, and a client certificate if any).
    Tls(Arc<ClientConfig>),
}

/// The requests of one run. Index `i` is the i-th request sent; each index is used once.
pub trait Workload: Send + Sync + 'static {
    /// How many requests exist; `None` when requests may repeat without end.
    fn capacity(&self) -> Option<usize>;
    /// The request for `index`.
    fn request(&self, index: usize) -> Request<Full<Bytes>>;
    /// Checks the body of a 200 answer to `index`; `Err` explains why it does not count.
    fn check(&self, index: usize, body: &Bytes) -> Result<(), String>;
    /// The transport for a connection whose first request is `index`.
    fn transport(&self, index: usize) -> Transport;
    /// True to open a new connection (TCP + TLS handshake) for every request.
    fn fresh_connections(&self) -> bool {
        false
    }
}

/// Load parameters.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server's address.
    pub addr: SocketAddr,
    /// Concurrent connections (one request in flight on each).
    pub concurrency: usize,
    /// Length of the measured window (after the warm-up).
    pub duration: Duration,
    /// Requests sent before the measured window; clamped to a tenth of a finite workload.
    pub warmup: usize,
    /// The server process, for its CPU time over the window.
    pub server_pid: Option<u32>,
    /// The server's PostgreSQL database, whose backends' CPU time is measured too.
    pub database_name: Option<String>,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Successful answers inside the measured window.
    pub ok: usize,
    /// Successful answers during the warm-up (not in the figures).
    pub warmup_ok: usize,
    /// Wall time of the measured window.
    pub window: Duration,
    /// Latencies of the measured successes, in µs, sorted.
    pub latencies_us: Vec<u32>,
    /// Failures by kind (`HTTP 401`, `transport`, `check`), warm-up included.
    pub errors: BTreeMap<String, usize>,
    /// The first few failure descriptions.
    pub error_samples: Vec<String>,
    /// The workload ran out of requests before the window ended.
    pub exhausted: bool,
    /// Connections opened (warm-up included): `concurrency` when keep-alive holds.
    pub connections: usize,
    /// Server CPU time over the window.
    pub server_cpu: Option<Duration>,
    /// This process's CPU time over the window.
    pub client_cpu: Duration,
    /// CPU time of the PostgreSQL backends over the window.
    pub database_cpu: Option<Duration>,
    /// What each kind of server thread spent over the window (on a CPU, waiting for one, how
    /// often woken), busiest first.
    pub server_threads: Vec<procstat::ThreadGroup>,
    /// The machine's idle time over the window (both cores).
    pub machine_idle: Duration,
}

impl LoadResult {
    /// Successful answers per second over the window.
    pub fn rate(&self) -> f64 {
        let seconds = self.window.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0..=1) in ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[index.min(last)]) / 1000.0
    }

    /// Total failed requests.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// State shared by the workers.
struct Shared<W> {
    workload: Arc<W>,
    options: LoadOptions,
    warmup: usize,
    next: AtomicUsize,
    exhausted: AtomicBool,
    /// Start of the measured window, with the CPU samples taken then.
    window: OnceLock<WindowStart>,
}

/// The moment the measured window opened, and the CPU counters then.
struct WindowStart {
    at: Instant,
    server: Option<CpuSample>,
    server_threads: Option<BTreeMap<u32, (String, procstat::ThreadCounters)>>,
    client: CpuSample,
    database: Option<BTreeMap<u32, CpuSample>>,
    idle_ns: u64,
}

impl WindowStart {
    fn now(options: &LoadOptions) -> WindowStart {
        WindowStart {
            at: Instant::now(),
            server: options.server_pid.map(CpuSample::take),
            server_threads: options.server_pid.map(procstat::threads),
            client: CpuSample::take(std::process::id()),
            database: options
                .database_name
                .as_deref()
                .map(procstat::postgres_backends),
            idle_ns: procstat::machine_idle_ns(),
        }
    }
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    connections: usize,
    ok: usize,
    warmup_ok: usize,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, usize>,
    samples: Vec<String>,
}

impl Tally {
    fn fail(&mut self, kind: String, detail: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(detail);
        }
    }
}

/// Runs `workload` against `options.addr` and returns the measurements.
pub async fn run<W: Workload>(workload: Arc<W>, options: LoadOptions) -> LoadResult {
    let warmup = match workload.capacity() {
        Some(capacity) => options.warmup.min(capacity / 10),
        None => options.warmup,
    };
    let shared = Arc::new(Shared {
        workload,
        options: options.clone(),
        warmup,
        next: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
        window: OnceLock::new(),
    });
    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut result = LoadResult::default();
    for handle in workers {
        match handle.await {
            Ok(tally) => merge(&mut result, tally),
            Err(error) => {
                *result.errors.entry("worker panicked".into()).or_default() += 1;
                result.error_samples.push(error.to_string());
            }
        }
    }
    let end = WindowStart::now(&options);
    if let Some(start) = shared.window.get() {
        result.window = end.at.duration_since(start.at);
        result.client_cpu = start.client.until(&end.client);
        result.server_cpu = match (start.server, end.server) {
            (Some(a), Some(b)) => Some(a.until(&b)),
            _ => None,
        };
        result.database_cpu = match (&start.database, &end.database) {
            (Some(a), Some(b)) => Some(procstat::group_cpu(a, b)),
            _ => None,
        };
        if let (Some(a), Some(b)) = (&start.server_threads, &end.server_threads) {
            result.server_threads = procstat::thread_groups(a, b);
        }
        result.machine_idle = Duration::from_nanos(end.idle_ns.saturating_sub(start.idle_ns));
    }
    result.exhausted = shared.exhausted.load(Ordering::Relaxed);
    result.latencies_us.sort_unstable();
    result
}

fn merge(result: &mut LoadResult, tally: Tally) {
    result.connections += tally.connections;
    result.ok += tally.ok;
    result.warmup_ok += tally.warmup_ok;
    result.latencies_us.extend(tally.latencies_us);
    for (kind, count) in tally.errors {
        *result.errors.entry(kind).or_default() += count;
    }
    for sample in tally.samples {
        if result.error_samples.len() < ERROR_SAMPLES {
            result.error_samples.push(sample);
        }
    }
}

async fn worker<W: Workload>(shared: Arc<Shared<W>>) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    let fresh = shared.workload.fresh_connections();
    loop {
        if let Some(start) = shared.window.get()
            && start.at.elapsed() >= shared.options.duration
        {
            break;
        }
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.workload.capacity().is_some_and(|c| index >= c) {
            shared.exhausted.store(true, Ordering::Relaxed);
            break;
        }
        if index == shared.warmup {
            // Exactly one worker draws this index: it opens the measured window.
            let _ = shared.window.set(WindowStart::now(&shared.options));
        }
        let started = Instant::now();
        let mut sender = match connection.take().filter(|s| !s.is_closed()) {
            Some(sender) => sender,
            None => match connect(shared.options.addr, shared.workload.transport(index)).await {
                Ok(sender) => {
                    tally.connections += 1;
                    sender
                }
                Err(error) => {
                    tally.fail("connect".into(), format!("connect: {error}"));
                    continue;
                }
            },
        };
        let outcome = exchange(&mut sender, shared.workload.request(index)).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok((StatusCode::OK, body)) => match shared.workload.check(index, &body) {
                Ok(()) if index >= shared.warmup => {
                    tally.ok += 1;
                    tally
                        .latencies_us
                        .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                }
                Ok(()) => tally.warmup_ok += 1,
                Err(reason) => tally.fail("bad 200 answer".into(), reason),
            },
            Ok((status, body)) => tally.fail(
                format!("HTTP {}", status.as_u16()),
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ),
            ),
            Err(error) => {
                tally.fail("transport".into(), format!("transport: {error}"));
                continue; // the connection is dropped; the next request opens another
            }
        }
        if !fresh {
            connection = Some(sender);
        }
    }
    tally
}

/// Opens a connection and completes the HTTP/1.1 handshake; the connection task runs beside.
pub async fn connect(
    addr: SocketAddr,
    transport: Transport,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match transport {
        Transport::Plain => {
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            Ok(sender)
        }
        Transport::Tls(config) => {
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(connection);
            Ok(sender)
        }
    }
}

/// Sends one request and reads the whole answer.
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The server's peak RSS in MB, if it can be read.
pub fn peak_rss_mb(pid: Option<u32>) -> Option<f64> {
    pid.and_then(procstat::peak_rss_kb)
        .map(|kb| kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HOST;

    /// Even indexes ask for `/ok` (200), odd ones for `/no` (401).
    struct Alternating;

    impl Workload for Alternating {
        fn capacity(&self) -> Option<usize> {
            Some(40)
        }
        fn request(&self, index: usize) -> Request<Full<Bytes>> {
            let path = if index.is_multiple_of(2) {
                "/ok"
            } else {
                "/no"
            };
            Request::builder()
                .uri(path)
                .header(HOST, "127.0.0.1")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        fn check(&self, _: usize, body: &Bytes) -> Result<(), String> {
            if body.as_ref() == b"ok" {
                Ok(())
            } else {
                Err("unexpected body".into())
            }
        }
        fn transport(&self, _: usize) -> Transport {
            Transport::Plain
        }
    }

    async fn serve_alternating() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(|request: Request<_>| async move {
                    let ok = request.uri().path() == "/ok";
                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(if ok {
                        b"ok"
                    } else {
                        b"no"
                    })));
                    if !ok {
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, std::convert::Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn failed_answers_are_counted_by_status_on_kept_alive_connections() {
        let addr = serve_alternating().await;
        let options = LoadOptions {
            addr,
            concurrency: 4,
            duration: Duration::from_secs(10),
            warmup: 10,
            server_pid: None,
            database_name: None,
        };
        let result = run(Arc::new(Alternating), options).await;
        assert_eq!(result.ok + result.warmup_ok, 20);
        assert_eq!(result.warmup_ok, 2); // indexes 0 and 2 of the first 40 / 10 = 4
        assert_eq!(result.errors.get("HTTP 401"), Some(&20));
        assert_eq!(result.error_count(), 20);
        assert!(result.exhausted);
        assert_eq!(result.connections, 4);
        assert!(result.error_samples[0].contains("401"));
    }

    #[test]
    fn percentiles_pick_from_sorted_latencies() {
        let result = LoadResult {
            latencies_us: (1..=100).map(|ms| ms * 1000).collect(),
            ok: 100,
            window: Duration::from_secs(2),
            ..LoadResult::default()
        };
        assert_eq!(result.latency_ms(0.5), 51.0);
        assert_eq!(result.latency_ms(0.99), 99.0);
        assert_eq!(result.latency_ms(1.0), 100.0);
        assert_eq!(result.rate(), 50.0);
    }
}
