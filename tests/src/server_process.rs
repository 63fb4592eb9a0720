//! `ca-server serve` in its own process, so a test can kill it with SIGKILL mid-load and start
//! it again on the same data directory and ports. As with the client (see
//! [`crate::client_process`]), the process is this test binary run again with
//! [`SERVER_ARGS_ENV`] set; its [`SERVER_ENTRY`] test then runs exactly what `ca-server`'s
//! `main` runs.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The environment variable carrying the server's arguments, one per line.
pub const SERVER_ARGS_ENV: &str = "IOMT_TEST_SERVER_ARGS";
/// The name every test binary using [`ServerProcess`] gives its entry test.
pub const SERVER_ENTRY: &str = "server_process_entry_runs_the_server_when_asked";

/// Body of the [`SERVER_ENTRY`] test: in a child, runs `ca-server ARGS...` and exits with its
/// status; in an ordinary test run, does nothing.
pub fn child_entry() {
    let Ok(args) = std::env::var(SERVER_ARGS_ENV) else {
        return;
    };
    use clap::Parser;
    let argv = std::iter::once("ca-server").chain(args.split('\n'));
    let cli = match ca_server::cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut stdout = std::io::stdout();
    let code = match runtime.block_on(ca_server::cli::run(cli, &mut stdout)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    let _ = stdout.flush();
    std::process::exit(code);
}

/// A `ca-server serve` process on fixed ports.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts `ca-server --data-dir DIR serve --listen HTTPS --http-listen HTTP` and waits
    /// until its HTTPS listener accepts connections.
    pub async fn start(data_dir: &str, https: SocketAddr, http: SocketAddr) -> ServerProcess {
        let exe = std::env::current_exe().expect("test binary");
        let args = [
            "--data-dir".to_owned(),
            data_dir.to_owned(),
            "serve".to_owned(),
            "--listen".to_owned(),
            https.to_string(),
            "--http-listen".to_owned(),
            http.to_string(),
        ];
        let child = Command::new(exe)
            .args([SERVER_ENTRY, "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVER_ARGS_ENV, args.join("\n"))
            .env("CA_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server process");
        let mut server = ServerProcess { child };
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(https).await.is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited at start-up: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.kill();
        panic!("the server did not listen on {https} within 30 s");
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is lost.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two free loopback ports (bound and released: another process could take them in between,
/// which on a test machine does not happen in practice).
pub fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    (a.local_addr().expect("addr"), b.local_addr().expect("addr"))
}
