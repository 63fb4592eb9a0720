//! Test support: a fresh PostgreSQL database per test, dropped afterwards. Compiled for this
//! crate's tests and, with the `testing` feature, for the end-to-end suite.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server the tests use; override with `IOMT_TEST_POSTGRES`.
pub fn admin_url() -> String {
    std::env::var("IOMT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops its database when dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

/// Creates a uniquely named database, or `None` (skip) when PostgreSQL is absent.
pub async fn create() -> Option<TestDatabase> {
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(error) => {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "PostgreSQL is required in CI: {error}"
            );
            eprintln!("SKIPPED: no PostgreSQL at {admin}: {error}");
            return None;
        }
    };
    let mut random = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).expect("random");
    let name = format!("iomt_test_{}", hex::encode(random));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or(admin.clone());
    Some(TestDatabase {
        url: format!("{base}/{name}"),
        name,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
