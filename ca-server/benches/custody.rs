//! Signing rate with the CA key sealed in a file versus inside a PKCS#11 token (SoftHSM2):
//! `cargo bench -p ca-server --bench custody`. Prints figures; asserts nothing about time.
//!
//! SoftHSM reads SOFTHSM2_CONF once per process, so the benchmark makes a token directory with
//! `softhsm2-util` and re-runs itself with the variable set.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ca_server::pki::{CaMaterial, KeyAccess, TokenOptions};
use ca_server::setup::{InitOptions, init};
use iomt_core::policy::Level;
use rcgen::{CertificateParams, KeyPair, SigningKey};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CHILD: &str = "IOMT_BENCH_SOFTHSM_DIR";
const ROUNDS: usize = 2_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::var(CHILD) {
        Ok(dir) => measure(Path::new(&dir)).await,
        Err(_) => parent(),
    }
}

/// Makes the token, then runs this benchmark again inside it.
fn parent() -> anyhow::Result<()> {
    if !Path::new(MODULE).exists() {
        anyhow::bail!("SoftHSM2 is not installed ({MODULE}); apt-get install softhsm2");
    }
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let status = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            "5678901234",
            "--pin",
            "1234567",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "softhsm2-util --init-token failed");
    std::fs::write(dir.path().join("pin"), "1234567\n")?;
    let status = Command::new(std::env::current_exe()?)
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD, dir.path())
        .status()?;
    anyhow::ensure!(status.success(), "the measuring run failed");
    Ok(())
}

async fn measure(hsm: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let access = KeyAccess {
        pin_file: Some(hsm.join("pin")),
        ..KeyAccess::default()
    };
    for (label, token) in [
        ("sealed file", None),
        (
            "SoftHSM2",
            Some(TokenOptions {
                module: MODULE.into(),
                token: "bench".into(),
            }),
        ),
    ] {
        let data = scratch.path().join(label.replace(' ', "-"));
        init(&InitOptions {
            data_dir: data.clone(),
            production: false,
            organization: "Bench".into(),
            country: "US".into(),
            tls_names: vec![],
            public_url: None,
            listen: None,
            http_listen: None,
            database_url: None,
            policies_dir: None,
            key_access: access.clone(),
            pkcs11: token,
            external_root: false,
        })
        .await?;
        let ca = CaMaterial::load_with(&data, &access)?;
        for level in [Level::Basic, Level::High] {
            let issuer = &ca.issuing(level).issuer;
            let message = [0x5au8; 512];
            let start = Instant::now();
            for _ in 0..ROUNDS {
                issuer.key().sign(&message)?;
            }
            let signatures = ROUNDS as f64 / start.elapsed().as_secs_f64();
            let device = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let params = CertificateParams::new(vec!["device.example".to_owned()])?;
            let start = Instant::now();
            for _ in 0..ROUNDS / 4 {
                params.signed_by(&device, issuer)?;
            }
            let certs = (ROUNDS / 4) as f64 / start.elapsed().as_secs_f64();
            println!(
                "{label:>11}, {level:<11} CA ({}): {signatures:>8.0} signatures/s, {certs:>8.0} certificates/s",
                if level == Level::High {
                    "P-384"
                } else {
                    "P-256"
                },
                level = level.as_str(),
            );
        }
    }
    Ok(())
}
