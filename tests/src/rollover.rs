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
