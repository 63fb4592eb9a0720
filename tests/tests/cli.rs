//! The operator's commands: init, device register (single and CSV), token create.

use std::os::unix::fs::PermissionsExt;

use iomt_tests::{PUMP, TestApp};

#[tokio::test]
async fn init_writes_the_hierarchy_with_private_keys_and_refuses_to_run_twice() {
    let app = TestApp::spawn().await;
    let data = app.data_dir();
    for file in [
        "config.toml",
        "root.pem",
        "ca.db",
        "policies/iomt-basic.toml",
        "policies/example-infusion-pump.toml",
    ] {
        assert!(data.join(file).exists(), "{file} exists");
    }
    for ca in ["root", "basic", "substantial", "high", "station", "tls"] {
        let key = data.join("ca").join(format!("{ca}.key.pem"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let config = std::fs::read_to_string(data.join("config.toml")).unwrap();
    assert!(
        config.contains("evaluation = true") && config.contains("EVALUATION CA"),
        "{config}"
    );
    let before = std::fs::read(data.join("root.pem")).unwrap();

    let err = app.cli(&["init"]).await.expect_err("second init");
    assert!(err.contains("already holds a CA"), "{err}");
    assert_eq!(
        std::fs::read(data.join("root.pem")).unwrap(),
        before,
        "existing CA untouched"
    );

    let events = app.authority.store().audit_events().await.unwrap();
    assert_eq!(events[0].event.action, "ca.created");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.action == "policy.loaded")
            .count(),
        iomt_core::policy::SHIPPED_POLICIES.len()
    );
}

#[tokio::test]
async fn production_init_refuses_placeholder_oids_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prod");
    let mut out = Vec::new();
    let cli = <ca_server::cli::Cli as clap::Parser>::try_parse_from([
        "ca-server",
        "--data-dir",
        data.to_str().unwrap(),
        "init",
        "--production",
    ])
    .unwrap();
    let err = ca_server::cli::run(cli, &mut out)
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("placeholder OIDs"), "{err:#}");
    assert!(!data.exists(), "nothing created");
}

#[tokio::test]
async fn csv_import_is_all_or_nothing_and_names_every_bad_line() {
    let app = TestApp::spawn().await;
    app.register("IP20000050", PUMP).await;
    let csv = app.dir.path().join("mes.csv");
    std::fs::write(
        &csv,
        "serial,product,lot\n\
         IP20000101,example-infusion-pump,L7\n\
         bad serial!,example-infusion-pump,L7\n\
         IP20000102,no-such-product,L7\n\
         IP20000101,example-infusion-pump,L7\n\
         IP20000050,example-infusion-pump,L7\n\
         PM70000001,example-patient-monitor,L8\n",
    )
    .unwrap();
    let err = app
        .cli(&["device", "register", "--csv", csv.to_str().unwrap()])
        .await
        .expect_err("bad lines");
    for line in ["line 3:", "line 4:", "line 5:", "line 6:"] {
        assert!(err.contains(line), "names {line}: {err}");
    }
    assert!(
        !err.contains("line 2:") && !err.contains("line 7:"),
        "{err}"
    );
    let registered = app
        .authority
        .store()
        .registered_serials(&["IP20000101".into(), "PM70000001".into()])
        .await
        .unwrap();
    assert!(
        registered.is_empty(),
        "nothing registered from a file with bad lines"
    );

    std::fs::write(&csv, "serial,product,lot,gtin\nIP20000101,example-infusion-pump,L7,\nPM70000001,example-patient-monitor,L8,00850000000024\n").unwrap();
    let out = app
        .cli(&["device", "register", "--csv", csv.to_str().unwrap()])
        .await
        .expect("good file");
    assert_eq!(out.trim(), "registered 2 device(s)");
}

#[tokio::test]
async fn token_create_prints_tokens_and_refuses_what_policy_forbids() {
    let app = TestApp::spawn().await;
    app.register("IP20000001", PUMP).await;
    app.register("IP20000002", PUMP).await;

    let single = app
        .cli(&["token", "create", "--serial", "IP20000001"])
        .await
        .unwrap();
    assert_eq!(single.lines().count(), 1);
    assert!(single.trim().len() >= 22, "at least 128 bits in base64url");

    let list = app.dir.path().join("serials.txt");
    std::fs::write(&list, "IP20000001\nIP20000002\n").unwrap();
    let many = app
        .cli(&[
            "token",
            "create",
            "--serials-file",
            list.to_str().unwrap(),
            "--ttl",
            "2h",
        ])
        .await
        .unwrap();
    let lines: Vec<&str> = many.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("IP20000001,") && lines[1].starts_with("IP20000002,"));
    let secret = lines[0].split_once(',').unwrap().1;
    let record = app
        .authority
        .store()
        .token(&ca_server::auth::token::hash(secret))
        .await
        .unwrap()
        .unwrap();
    assert!(record.expires_at - record.created_at == 7200);

    let err = app
        .cli(&["token", "create", "--serial", "IP20000001", "--ttl", "48h"])
        .await
        .unwrap_err();
    assert!(err.contains("exceeds the 24 h"), "{err}");
    let err = app
        .cli(&["token", "create", "--serial", "IP29999999"])
        .await
        .unwrap_err();
    assert!(err.contains("not registered: IP29999999"), "{err}");
}

#[tokio::test]
async fn widening_policy_stops_start_up_naming_file_and_key() {
    let app = TestApp::spawn().await;
    let pump = app.data_dir().join("policies/example-infusion-pump.toml");
    let text = std::fs::read_to_string(&pump)
        .unwrap()
        .replace("max_days = 365", "max_days = 4000");
    std::fs::write(&pump, text).unwrap();
    let settings = ca_server::config::Settings::load(&app.data_dir()).unwrap();
    let err = ca_server::startup::Application::build(&settings)
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("example-infusion-pump.toml") && text.contains("validity.max_days"),
        "{text}"
    );
}
