//! CRL regeneration cost with 100,000 revoked entries: `cargo bench -p ca-server --bench crl`.
//! Prints figures; asserts nothing about time (a benchmark, not a test).

use std::time::Instant;

use ca_server::pki::CaMaterial;
use ca_server::revocation::sign_crl;
use ca_server::setup::{InitOptions, init};
use ca_server::storage::{CrlSnapshot, RevokedEntry};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("ca");
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
        key_access: Default::default(),
        pkcs11: None,
        external_root: false,
    })
    .await?;
    let ca = CaMaterial::load(&data)?;
    let signer = ca
        .signer("basic")
        .ok_or_else(|| anyhow::anyhow!("no basic CA"))?;
    let now = OffsetDateTime::now_utc();
    for count in [1_000usize, 10_000, 100_000] {
        let entries = (0..count)
            .map(|i| RevokedEntry {
                serial: format!("4{:031x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                revoked_at: now.unix_timestamp() - i as i64,
                reason: Some(
                    if i % 3 == 0 {
                        "keyCompromise"
                    } else {
                        "cessationOfOperation"
                    }
                    .into(),
                ),
            })
            .collect();
        let snapshot = CrlSnapshot { number: 7, entries };
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..3 {
            let start = Instant::now();
            let der = sign_crl(signer, &snapshot, now, now + time::Duration::hours(96))?;
            best = best.min(start.elapsed().as_secs_f64());
            size = der.len();
        }
        println!(
            "crl: {count:>7} revoked entries: {:>8.1} ms to build and sign (best of 3), {:>9} bytes",
            best * 1e3,
            size
        );
    }
    Ok(())
}
