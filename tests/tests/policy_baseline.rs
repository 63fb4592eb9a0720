//! Level baselines that cannot be widened: the three levels are built into the program; a level
//! or product file in the data directory that widens them stops start-up naming the file, key and
//! limit; the pre-issuance lint holds every certificate to the built-in level even when the files
//! were widened behind the start-up check; and every edit of a policy file between two starts is
//! a `policy.changed` audit event with the old and new SHA-256 and the keys that changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ca_server::authority::{Authority, EnrollError, TokenEnrollment};
use ca_server::config::Settings;
use ca_server::pki::{CaMaterial, KeyAccess, PublicUrls};
use ca_server::startup::Application;
use ca_server::storage::open as open_store;
use iomt_core::policy::{PolicySet, PolicySource};
use iomt_tests::{TestApp, p256_csr};
use serde_json::Value;

const BASIC: &str = "iomt-basic.toml";
const PUMP_FILE: &str = "example-infusion-pump.toml";

/// `DIR/policies/<name>` of the CA.
fn policy_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("policies").join(name)
}

/// Replaces `from` by `to` in a policy file of the data directory.
fn edit(data_dir: &Path, name: &str, from: &str, to: &str) {
    let path = policy_file(data_dir, name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{name} has no `{from}`");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Starts a server on the data directory; the error text if start-up refuses.
async fn start(data_dir: &Path) -> Result<Application, String> {
    let settings = Settings::load(data_dir).unwrap();
    Application::build(&settings)
        .await
        .map_err(|e| e.to_string())
}

/// The SHA-256 the loader computes for a file of the data directory.
fn sha256_hex(path: &Path) -> String {
    let set = PolicySet::load_dir(path.parent().unwrap()).unwrap();
    let name = path.display().to_string();
    let file = set.files().iter().find(|f| f.name == name).unwrap();
    file.sha256.clone()
}

#[tokio::test]
async fn widened_level_file_is_refused_at_start_naming_file_key_and_limit() {
    let dir = TestApp::init_dir(|_, text| text.to_owned(), None, &[])
        .await
        .unwrap();
    let data = dir.path().join("ca");
    edit(&data, BASIC, "max_days = 398", "max_days = 3650");
    let err = start(&data)
        .await
        .err()
        .expect("a widened level must not start");
    let file = policy_file(&data, BASIC).display().to_string();
    for part in [
        file.as_str(),
        "validity.max_days",
        "398",
        "3650",
        "built-in level",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}

#[tokio::test]
async fn widened_level_file_is_refused_by_init() {
    let err = TestApp::init_dir(
        |name, text| {
            if name == "iomt-high.toml" {
                text.replace("attestation = \"required\"", "attestation = \"optional\"")
            } else {
                text.to_owned()
            }
        },
        None,
        &[],
    )
    .await
    .expect_err("init must refuse a widened level");
    assert!(
        err.contains("iomt-high.toml") && err.contains("key_protection.attestation"),
        "{err}"
    );
}

#[tokio::test]
async fn widened_product_file_is_refused_at_start() {
    let dir = TestApp::init_dir(|_, text| text.to_owned(), None, &[])
        .await
        .unwrap();
    let data = dir.path().join("ca");
    // Within the built-in Basic's 398 days but beyond the narrowed level file's 390.
    edit(&data, BASIC, "max_days = 398", "max_days = 390");
    edit(&data, PUMP_FILE, "max_days = 365", "max_days = 395");
    let err = start(&data)
        .await
        .err()
        .expect("a widened product must not start");
    assert!(
        err.contains(PUMP_FILE) && err.contains("validity.max_days") && err.contains("390"),
        "{err}"
    );

    // Widening both the level and the product beyond the built-in level: the level is named.
    edit(&data, BASIC, "max_days = 390", "max_days = 3650");
    edit(&data, PUMP_FILE, "max_days = 395", "max_days = 1825");
    let err = start(&data).await.err().expect("refused");
    assert!(err.contains(BASIC) && err.contains("398"), "{err}");
}

/// Files widened behind the start-up check (an authority assembled directly with a policy set
/// that skips it): the files allow five years, the lint against the built-in Basic level
/// refuses, and nothing is signed out, stored or consumed.
#[tokio::test]
async fn certificate_the_builtin_baseline_forbids_is_never_issued_even_when_files_allow_it() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let data = app.data_dir();
    edit(&data, BASIC, "max_days = 398", "max_days = 3650");
    edit(&data, PUMP_FILE, "max_days = 365", "max_days = 1825");

    let mut sources = Vec::new();
    for entry in std::fs::read_dir(data.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        sources.push(PolicySource {
            name: path.display().to_string(),
            text: std::fs::read_to_string(&path).unwrap(),
        });
    }
    assert!(PolicySet::from_sources(sources.clone()).is_err());
    let widened = PolicySet::danger_from_sources_without_baseline_check(sources).unwrap();
    let pump = widened.product(iomt_tests::PUMP).unwrap();
    assert_eq!(pump.validity.max_days, 1825, "the files allow five years");

    let settings = Settings::load(&data).unwrap();
    let ca = Arc::new(CaMaterial::load_with(&data, &KeyAccess::default()).unwrap());
    let store = open_store(&settings.database_url()).await.unwrap();
    let authority = Authority::new(
        Arc::new(widened),
        ca,
        store,
        PublicUrls::new(&settings.config.public_url),
    );
    let (_key, csr) = p256_csr("IP20000001");
    let err = authority
        .enroll_with_token(TokenEnrollment {
            label: None,
            serial: "IP20000001",
            token: &token,
            csr_der: &csr,
            channel_binding: None,
        })
        .await
        .expect_err("the built-in baseline must refuse a five-year Basic certificate");
    let EnrollError::Defect { findings } = err else {
        panic!("expected a lint defect, got {err:?}");
    };
    assert!(!findings.is_empty());
    for finding in &findings {
        assert!(
            finding.message.starts_with("built-in level baseline:"),
            "only the baseline should object: {findings:#?}"
        );
    }
    let lifetime = findings
        .iter()
        .find(|f| f.rule == "IOMT-VAL-01")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(lifetime.message.contains("398"), "{lifetime:?}");
    assert!(app.certificates("IP20000001").await.is_empty());
    assert!(!app.token_used(&token).await);
}

/// `policy.changed` events of the trail: (object, details).
async fn policy_changes(app: &TestApp) -> Vec<(String, Value)> {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == "policy.changed")
        .map(|e| {
            let details = serde_json::from_str(&e.event.details).unwrap();
            (e.event.object, details)
        })
        .collect()
}

#[tokio::test]
async fn policy_file_edited_between_starts_is_audited_once_with_old_and_new_hash() {
    let mut app = TestApp::spawn().await;
    assert!(
        policy_changes(&app).await.is_empty(),
        "nothing changed since init"
    );
    let data = app.data_dir();
    let pump = policy_file(&data, PUMP_FILE);
    let old_sha256 = sha256_hex(&pump);

    app.stop_server().await;
    app.restart().await;
    assert!(
        policy_changes(&app).await.is_empty(),
        "a restart without an edit records nothing"
    );

    app.stop_server().await;
    edit(&data, PUMP_FILE, "max_days = 365", "max_days = 200");
    let new_sha256 = sha256_hex(&pump);
    app.restart().await;
    let changes = policy_changes(&app).await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let (object, details) = &changes[0];
    assert!(object.ends_with(PUMP_FILE), "{object}");
    assert_eq!(details["old_sha256"], old_sha256.as_str());
    assert_eq!(details["new_sha256"], new_sha256.as_str());
    assert_eq!(
        details["changed"],
        serde_json::json!(["validity.max_days: 365 → 200"])
    );

    // A second edit is compared with the text recorded by the first change.
    app.stop_server().await;
    edit(&data, PUMP_FILE, "max_days = 200", "max_days = 100");
    app.restart().await;
    app.stop_server().await;
    app.restart().await;
    let changes = policy_changes(&app).await;
    assert_eq!(changes.len(), 2, "{changes:#?}");
    let (_, details) = &changes[1];
    assert_eq!(details["old_sha256"], new_sha256.as_str());
    assert_eq!(
        details["changed"],
        serde_json::json!(["validity.max_days: 200 → 100"])
    );
    app.stop().await;
}
