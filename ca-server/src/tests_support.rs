//! Test support shared by the property tests of ca-server's parsers of untrusted bytes: the
//! strategies of `iomt_core::testing` (configuration, mutations, DER-shaped bytes) and an
//! in-process CA to drive.

pub use iomt_core::testing::{apply, config, der_like, mutations, tlv};

/// A fresh evaluation CA made by `ca-server init` in a temp directory, with its SQLite
/// database, and the services the in-process tests drive (no listener, no TLS).
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub material: std::sync::Arc<crate::pki::CaMaterial>,
    pub authority: std::sync::Arc<crate::authority::Authority>,
    pub revocation: std::sync::Arc<crate::revocation::Revocation>,
}

impl TestCa {
    /// Runs `init` and loads what `serve` would (on the current tokio runtime).
    pub async fn init() -> TestCa {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("ca");
        cli_in(
            &data_dir,
            &[
                "init",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--public-url",
                "http://127.0.0.1:8080",
            ],
        )
        .await;
        let settings = crate::config::Settings::load(&data_dir).expect("settings");
        let policies = Arc::new(
            iomt_core::policy::PolicySet::load_dir(&data_dir.join("policies")).expect("policies"),
        );
        let material = Arc::new(
            crate::pki::CaMaterial::load_with(&data_dir, &settings.key_access)
                .expect("CA material"),
        );
        let store = crate::storage::open(&settings.database_url())
            .await
            .expect("database");
        let revocation = Arc::new(
            crate::revocation::Revocation::new(material.clone(), store.clone(), policies.clone())
                .expect("revocation"),
        );
        let authority = Arc::new(crate::authority::Authority::new(
            policies,
            material.clone(),
            store,
            crate::pki::PublicUrls::new(&settings.config.public_url),
        ));
        TestCa {
            dir,
            material,
            authority,
            revocation,
        }
    }

    /// The data directory (`ca/` in the temp directory).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("ca")
    }

    /// Runs a `ca-server` command against this CA; returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        cli_in(&self.data_dir(), args).await
    }

    /// Registers an example infusion pump and returns a fresh one-time token for it.
    pub async fn pump_with_token(&self, serial: &str) -> String {
        let product = "example-infusion-pump";
        self.cli(&[
            "device",
            "register",
            "--serial",
            serial,
            "--product",
            product,
        ])
        .await;
        let token = self.cli(&["token", "create", "--serial", serial]).await;
        token.trim().to_owned()
    }
}

/// Runs a `ca-server` command line against `data_dir`, in process; returns its stdout.
async fn cli_in(data_dir: &std::path::Path, args: &[&str]) -> String {
    use clap::Parser;
    let full = ["ca-server", "--data-dir", data_dir.to_str().expect("utf-8")]
        .into_iter()
        .chain(args.iter().copied());
    let cli = crate::cli::Cli::try_parse_from(full).expect("command line");
    let mut out = Vec::new();
    crate::cli::run(cli, &mut out)
        .await
        .unwrap_or_else(|e| panic!("ca-server {args:?}: {e:#}"));
    String::from_utf8(out).expect("utf-8")
}

/// A P-256 CSR for `serial` as an enroll-client makes it (subject serialNumber alone).
pub fn p256_csr(serial: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(serial.try_into().expect("printable")),
    );
    params.serialize_request(&key).expect("CSR").der().to_vec()
}
