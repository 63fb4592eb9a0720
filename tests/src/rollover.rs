//! Helpers for the CA lifecycle tests: a CA whose `config.toml` carries a `[ca]` section
//! (short-lived test generations, a one-second reload interval), and waiting until a running
//! server has picked up a rollover.

use std::time::Duration;

use crate::TestApp;

impl TestApp {
    /// `init` a CA, append `ca_section` (TOML: `[ca]`, `[ca.basic]`, ...) to its `config.toml`
    /// so the server and every CLI command read it, and serve it; `database_url` overrides
    /// SQLite.
    pub async fn spawn_with_ca_config(ca_section: &str, database_url: Option<&str>) -> TestApp {
        let mut extra = Vec::new();
        if let Some(url) = database_url {
            extra.extend(["--database-url", url]);
        }
        let dir = TestApp::init_dir(crate::no_reenroll_interval, None, &extra)
            .await
            .expect("init");
        let config = dir.path().join("ca").join("config.toml");
        let mut text = std::fs::read_to_string(&config).expect("config.toml");
        text.push('\n');
        text.push_str(ca_section);
        std::fs::write(&config, text).expect("config.toml");
        TestApp::serve_dir(dir, ca_server::pki::KeyAccess::default()).await
    }

    /// The name of the generation of `level` this server issues from now.
    pub fn active_generation(&self, level: iomt_core::policy::Level) -> String {
        self.authority.ca().current().issuing(level).name.clone()
    }

    /// Waits (up to 30 s) until the server issues `level` certificates from `generation`.
    pub async fn wait_for_active(&self, level: iomt_core::policy::Level, generation: &str) {
        wait_for_material(&self.authority.ca().clone(), level, generation).await;
    }
}

/// Waits (up to 30 s) until the material behind `ca` issues `level` certificates from
/// `generation` (a replica's handle, or the server's own).
pub async fn wait_for_material(
    ca: &ca_server::pki::CaHandle,
    level: iomt_core::policy::Level,
    generation: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ca.current().issuing(level).name != generation {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not pick up {generation} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TestApp {
    /// Waits (up to 30 s) until the server signs new CA generations with the root generation
    /// `name` (`root-g2`, ...), i.e. it picked up `ca rollover --ca root`.
    pub async fn wait_for_root(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.authority.ca().current().active_root_name() != name {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not pick up {name} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The TLS handshake with the CA at `addr` from a client trusting `roots` only (rustls): the
/// chain the server sent, leaf first, or why the handshake failed.
pub async fn tls_handshake(
    addr: std::net::SocketAddr,
    roots: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, String> {
    let roots = roots.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(rustls_pki_types::CertificateDer::from(root))
                .map_err(|e| e.to_string())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
            .map_err(|e| e.to_string())?;
        let mut socket = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        while connection.is_handshaking() {
            connection
                .complete_io(&mut socket)
                .map_err(|e| e.to_string())?;
        }
        Ok(connection
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect())
    })
    .await
    .map_err(|e| e.to_string())?
}

impl TestApp {
    /// Waits (up to 30 s) until a client trusting only `root` completes a TLS handshake with
    /// the CA, i.e. the server renewed its HTTPS certificate under `root`; the chain served.
    pub async fn wait_for_https_under(&self, root: &[u8]) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tls_handshake(self.https, &[root.to_vec()]).await {
                Ok(chain) => return chain,
                Err(error) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the HTTPS certificate was not renewed under the new root: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Replaces root-g2's NewWithOld link in the (SQLite) database with `der` and restarts the
    /// server: a CA that offers root G2 without its link, or with a forged one.
    pub async fn replace_root_link(&mut self, der: &[u8]) {
        self.stop_server().await;
        let settings = ca_server::config::Settings::load(&self.data_dir()).expect("settings");
        let pool = sqlx::SqlitePool::connect(&settings.database_url())
            .await
            .expect("database");
        sqlx::query("UPDATE ca_generations SET link_new_with_old = ? WHERE name = 'root-g2'")
            .bind(der)
            .execute(&pool)
            .await
            .expect("update");
        pool.close().await;
        self.restart().await;
    }
}
