//! The client in its own process (so a test can SIGKILL it, or run it in a namespace with a full
//! disk), and a tiny real HTTPS front for a CA that answers faults before passing through.
//!
//! The client process is this test binary run again with [`CLIENT_ARGS_ENV`] set: its test
//! [`CHILD_ENTRY`] then parses those arguments with the real `enroll-client` command line and runs
//! exactly what the binary's `main` runs (`cli::init_logging` + `cli::execute`), then exits with
//! the binary's exit code. (A crate's tests cannot depend on another crate's binary, and building
//! it from inside a test would race the build lock; this needs neither.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The environment variable carrying the client's arguments, one per line.
pub const CLIENT_ARGS_ENV: &str = "IOMT_TEST_CLIENT_ARGS";
/// The name every test binary using [`client_command`] gives its entry test.
pub const CHILD_ENTRY: &str = "client_process_entry_runs_the_client_when_asked";

/// Body of the [`CHILD_ENTRY`] test: in a child, runs the client and exits with its code; in
/// an ordinary test run, does nothing.
pub fn child_entry() {
    let Ok(args) = std::env::var(CLIENT_ARGS_ENV) else {
        return;
    };
    use clap::Parser;
    let argv = std::iter::once("enroll-client").chain(args.split('\n'));
    let cli = match enroll_client::cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    enroll_client::cli::init_logging();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let code = runtime.block_on(enroll_client::cli::execute(cli));
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code));
}

/// A command that runs `enroll-client ARGS...` in a child process (stdout and stderr piped).
pub fn client_command(args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = Command::new(exe);
    command
        .args([CHILD_ENTRY, "--exact", "--nocapture", "--test-threads=1"])
        .env(CLIENT_ARGS_ENV, args.join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What a finished client process did.
#[derive(Debug)]
pub struct ClientRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the client to completion (off the async workers).
pub async fn run_client(args: &[&str], env: &[(&str, &str)]) -> ClientRun {
    let mut command = client_command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("client process"))
        .await
        .expect("join");
    ClientRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A small PRNG for kill moments (xorshift64*; the seed is printed so a failure can be replayed).
pub struct Moments(u64);

impl Moments {
    /// Seeded from `IOMT_TEST_SEED` or the clock.
    pub fn new() -> Moments {
        let seed = std::env::var("IOMT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("kill moments: IOMT_TEST_SEED={seed}");
        Moments(seed)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

impl Default for Moments {
    fn default() -> Moments {
        Moments::new()
    }
}

/// A fault the front answers on one connection, then closes it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// A status with an optional `Retry-After` and a short body.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// 200 whose body never ends (no `Content-Length`): written until the client hangs up.
    Endless,
    /// 200 announcing this `Content-Length`, the body sent as zeros until the client hangs up.
    Announced(u64),
}

/// An HTTPS front on 127.0.0.1 with the CA's own TLS identity: answers the queued faults, one
/// per connection, then passes every later connection through to the CA byte for byte (TLS end
/// to end, client certificates included).
pub struct FaultFront {
    pub addr: SocketAddr,
    faults: Arc<Mutex<std::collections::VecDeque<Fault>>>,
    /// Faults answered so far.
    pub answered: Arc<AtomicUsize>,
    /// Connections passed through to the CA so far.
    pub passed: Arc<AtomicUsize>,
    /// Body bytes written on fault answers (before the client hung up).
    pub body_bytes: Arc<AtomicU64>,
}

/// The longest body the front writes, so a client that never stops cannot fill the test's memory.
const BODY_CAP: u64 = 512 * 1024 * 1024;

impl FaultFront {
    /// Starts a front for the CA in `data_dir` (its TLS chain and key) listening at `https`.
    pub fn start(data_dir: &Path, https: SocketAddr, faults: Vec<Fault>) -> FaultFront {
        let material = ca_server::pki::CaMaterial::load(data_dir).expect("CA material");
        let tls = tls_config(material.tls_chain.clone(), material.tls_key.clone_key());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let front = FaultFront {
            addr: listener.local_addr().expect("addr"),
            faults: Arc::new(Mutex::new(faults.into())),
            answered: Arc::default(),
            passed: Arc::default(),
            body_bytes: Arc::default(),
        };
        let (faults, answered, passed, bytes) = (
            front.faults.clone(),
            front.answered.clone(),
            front.passed.clone(),
            front.body_bytes.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let next = faults.lock().expect("faults").pop_front();
                let (tls, answered, passed, bytes) =
                    (tls.clone(), answered.clone(), passed.clone(), bytes.clone());
                std::thread::spawn(move || match next {
                    Some(fault) => {
                        answer(stream, tls, &fault, &bytes);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    None => {
                        passed.fetch_add(1, Ordering::SeqCst);
                        pass_through(stream, https);
                    }
                });
            }
        });
        front
    }

    /// The URL the client is given (the name in the CA's TLS certificate).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate"),
    )
}

fn answer(stream: TcpStream, tls: Arc<rustls::ServerConfig>, fault: &Fault, bytes: &AtomicU64) {
    let Ok(connection) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    // Read the request head (and whatever body arrived with it); the answer does not depend on it.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, extra, body) = match fault {
        Fault::Status {
            status,
            retry_after,
            body,
        } => {
            let retry = retry_after
                .as_ref()
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            let text = format!("Content-Length: {}\r\n{retry}", body.len());
            (*status, text, Some(body.clone()))
        }
        Fault::Endless => (200, String::new(), None),
        Fault::Announced(length) => (200, format!("Content-Length: {length}\r\n"), None),
    };
    let head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/pkcs7-mime\r\n\
         Content-Transfer-Encoding: base64\r\nX-Error-Code: test.fault\r\n\
         Connection: close\r\n{extra}\r\n"
    );
    if tls.write_all(head.as_bytes()).is_err() {
        return;
    }
    match body {
        Some(body) => {
            let _ = tls.write_all(body.as_bytes());
        }
        None => {
            let chunk = vec![b'A'; 64 * 1024];
            while bytes.load(Ordering::SeqCst) < BODY_CAP {
                if tls.write_all(&chunk).and_then(|()| tls.flush()).is_err() {
                    break;
                }
                bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn pass_through(client: TcpStream, ca: SocketAddr) {
    let Ok(server) = TcpStream::connect(ca) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = std::io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}

/// Whether the set in `dir` is complete and matching: the key certifies the certificate, which
/// chains through chain.pem to `root`. Returns the certificate's hex serial.
pub fn assert_complete_set(dir: &Path, root: &CertificateDer<'_>) -> String {
    let credential = enroll_client::keystore::load(dir).expect("a complete set in place");
    let leaf = pem::parse(&credential.cert_pem)
        .expect("cert.pem")
        .into_contents();
    let chain = pem::parse_many(&credential.chain_pem).expect("chain.pem");
    let key = rcgen::KeyPair::from_pem(&credential.key_pem).expect("key.pem");
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("certificate");
    assert_eq!(
        parsed.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
        "key.pem is the certificate's key"
    );
    crate::webpki_verify(&leaf, chain[0].contents(), root);
    parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A client process left running (e.g. `run`), its stderr collected as it arrives.
pub struct RunningClient {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningClient {
    /// Starts `enroll-client ARGS...` with extra environment.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> RunningClient {
        let mut command = client_command(args);
        command.stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("client process");
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        RunningClient {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// What the client has logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Waits (polling) until `done` holds; panics with the log if the client exits first.
    pub async fn wait_until<F: std::future::Future<Output = bool>>(
        &mut self,
        mut done: impl FnMut() -> F,
    ) {
        loop {
            if done().await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                panic!("the client exited ({status}) early:\n{}", self.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log contains `text` at least `count` times.
    pub async fn wait_for_log_count(&mut self, text: &str, count: usize) {
        let stderr = self.stderr.clone();
        self.wait_until(|| {
            let found = stderr.lock().expect("stderr").matches(text).count() >= count;
            async move { found }
        })
        .await;
    }

    /// Sends SIGTERM (or nothing if it has exited) and waits for the exit.
    pub async fn stop(mut self) -> ClientRun {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        self.finish().await
    }

    /// Waits for the process to exit by itself.
    pub async fn finish(mut self) -> ClientRun {
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stderr = self.stderr.lock().expect("stderr").clone();
        ClientRun {
            code: status.code(),
            stdout: String::new(),
            stderr,
        }
    }
}
