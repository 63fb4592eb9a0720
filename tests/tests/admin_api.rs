//! The admin API over real HTTPS: API keys and operator certificates with roles, refusals
//! (audited), bulk registration, tokens, certificate search, and the OpenAPI document.

use std::sync::Arc;

use iomt_tests::{PUMP, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

/// An admin API client with an optional bearer key.
struct Admin {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Admin {
    fn new(app: &TestApp, key: Option<&str>) -> Admin {
        Admin {
            client: app.http_client(),
            base: app.server_url(),
            key: key.map(str::to_owned),
        }
    }

    fn with_client(app: &TestApp, client: reqwest::Client) -> Admin {
        Admin {
            client,
            base: app.server_url(),
            key: None,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status(),
            code: response
                .headers()
                .get("x-error-code")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            www_authenticate: response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post_json(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, Some(("application/json", body.to_string())))
            .await
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    code: String,
    www_authenticate: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn actions(app: &TestApp, action: &str) -> Vec<(String, Value)> {
    app.authority
        .store()
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == action)
        .map(|e| {
            (
                e.event.actor,
                serde_json::from_str(&e.event.details).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn admin_api_with_missing_wrong_or_revoked_key_is_refused_and_audited() {
    let app = TestApp::spawn().await;
    let key = app.api_key("mes", "registrar").await;
    assert!(key.starts_with("iomt_"), "{key}");
    let path = "/admin/v1/devices/IP20000001";

    let missing = Admin::new(&app, None).get(path).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(missing.code, "auth.required");
    assert!(
        missing.www_authenticate.starts_with("Bearer"),
        "{missing:?}"
    );
    let wrong = Admin::new(&app, Some("not-a-key")).get(path).await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.code.as_str()),
        (401, "auth.bad_key")
    );
    let (id, _) = key["iomt_".len()..].split_once('_').unwrap();
    let forged = format!("iomt_{id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let forged_answer = Admin::new(&app, Some(&forged)).get(path).await;
    assert_eq!(forged_answer.status, 401);
    assert_eq!(Admin::new(&app, Some(&key)).get(path).await.status, 404);

    app.cli(&["apikey", "revoke", "--name", "mes"])
        .await
        .unwrap();
    let revoked = Admin::new(&app, Some(&key)).get(path).await;
    assert_eq!(
        (revoked.status.as_u16(), revoked.code.as_str()),
        (401, "auth.bad_key")
    );
    assert!(revoked.body.contains("revoked"), "{revoked:?}");
    let listed = app.cli(&["apikey", "list"]).await.unwrap();
    assert!(
        listed.contains("mes\tapi_key\tregistrar") && listed.contains("revoked"),
        "{listed}"
    );
    assert!(!listed.contains(&key));

    let failures = actions(&app, "admin.login_failed").await;
    let seen: Vec<(&str, &str)> = failures
        .iter()
        .map(|(actor, d)| (actor.as_str(), d["reason"].as_str().unwrap()))
        .collect();
    let key_actor = format!("key:{id}");
    assert_eq!(
        seen,
        [
            ("anonymous", "missing_credential"),
            ("key:unrecognized", "bad_key"),
            (key_actor.as_str(), "bad_key"),
            (key_actor.as_str(), "revoked_key"),
        ]
    );
    let trail = format!("{:?}", app.authority.store().audit_events().await.unwrap());
    assert!(
        !trail.contains(&key) && !trail.contains("not-a-key"),
        "no secret is audited"
    );
}

#[tokio::test]
async fn admin_api_with_a_role_too_weak_is_forbidden_and_audited() {
    let app = TestApp::spawn().await;
    let registrar = Admin::new(&app, Some(&app.api_key("mes", "registrar").await));
    let auditor = Admin::new(&app, Some(&app.api_key("qa", "auditor").await));
    let admin = Admin::new(&app, Some(&app.admin_key()));

    let device = serde_json::json!({"devices": [{"serial": "IP20000001", "product": PUMP}]});
    let denied = auditor.post_json("/admin/v1/devices", device.clone()).await;
    assert_eq!(
        (denied.status.as_u16(), denied.code.as_str()),
        (403, "auth.role_insufficient")
    );
    assert!(denied.body.contains("devices:register"), "{denied:?}");
    assert_eq!(
        registrar
            .post_json("/admin/v1/devices", device)
            .await
            .status,
        201
    );
    let tokens = serde_json::json!({"serials": ["IP20000001"]});
    assert_eq!(
        auditor
            .post_json("/admin/v1/tokens", tokens.clone())
            .await
            .status,
        403
    );
    assert_eq!(
        registrar.post_json("/admin/v1/tokens", tokens).await.status,
        201
    );
    assert_eq!(
        registrar.get("/admin/v1/devices/IP20000001").await.status,
        200
    );
    assert_eq!(
        auditor.get("/admin/v1/devices/IP20000001").await.status,
        200
    );

    for (path, readers_ok) in [("/admin/v1/certificates", true), ("/admin/v1/audit", true)] {
        assert_eq!(registrar.get(path).await.status, 403, "{path}");
        assert_eq!(auditor.get(path).await.status == 200, readers_ok, "{path}");
        assert_eq!(admin.get(path).await.status, 200, "{path}");
    }
    let revoke = "/admin/v1/devices/IP20000001/revoke";
    for weak in [&registrar, &auditor] {
        assert_eq!(
            weak.post_json(revoke, serde_json::json!({})).await.status,
            403
        );
    }
    let allowed = admin.post_json(revoke, serde_json::json!({})).await;
    assert_eq!(
        (allowed.status.as_u16(), allowed.code.as_str()),
        (404, "device.unknown"),
        "admin passes the guard; the device has no certificate yet"
    );

    let refusals = actions(&app, "admin.login_failed").await;
    assert_eq!(refusals.len(), 6, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|(_, d)| d["reason"] == "role_insufficient")
    );
    assert!(refusals.contains(&(
        "apikey:qa".to_owned(),
        serde_json::json!({"reason": "role_insufficient", "needed": "devices:register", "suppressed_before": 0})
    )));
    let registered = actions(&app, "device.registered").await;
    assert_eq!(
        registered[0].0, "apikey:mes",
        "the API key is the audit actor"
    );
}

#[tokio::test]
async fn bulk_registration_with_bad_rows_names_each_line_and_imports_nothing() {
    let app = TestApp::spawn().await;
    app.register("IP20000050", PUMP).await;
    let registrar = Admin::new(&app, Some(&app.api_key("mes", "registrar").await));
    let csv = "serial,product,lot\n\
               IP20000101,example-infusion-pump,L7\n\
               bad serial!,example-infusion-pump,L7\n\
               IP20000102,no-such-product,L7\n\
               IP20000050,example-infusion-pump,L7\n";
    let bad = registrar
        .send("POST", "/admin/v1/devices", Some(("text/csv", csv.into())))
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.code.as_str()),
        (422, "registry.bad_lines")
    );
    assert_eq!(bad.body.lines().count(), 1, "one line: {}", bad.body);
    for line in ["line 3:", "line 4:", "line 5:"] {
        assert!(bad.body.contains(line), "{line}: {}", bad.body);
    }
    assert!(!bad.body.contains("line 2:"), "{}", bad.body);
    assert!(
        app.authority
            .store()
            .device("IP20000101")
            .await
            .unwrap()
            .is_none()
    );

    let duplicate = registrar
        .post_json(
            "/admin/v1/devices",
            serde_json::json!({"devices": [{"serial": "IP20000050", "product": PUMP}]}),
        )
        .await;
    assert_eq!(
        (duplicate.status.as_u16(), duplicate.code.as_str()),
        (409, "device.exists")
    );
    assert!(
        duplicate.body.contains("already registered"),
        "{duplicate:?}"
    );

    let unknown_field = registrar
        .post_json("/admin/v1/devices", serde_json::json!({"devices": [{"serial": "IP20000103", "product": PUMP, "colour": "red"}]}))
        .await;
    assert_eq!(
        (unknown_field.status.as_u16(), unknown_field.code.as_str()),
        (400, "request.bad_body")
    );
    let wrong_type = registrar
        .send(
            "POST",
            "/admin/v1/devices",
            Some(("text/plain", "x".into())),
        )
        .await;
    assert_eq!(wrong_type.status, 415);

    let good = "serial,product,lot\nIP20000101,example-infusion-pump,L7\nIP20000102,example-infusion-pump,L7\n";
    let ok = registrar
        .send("POST", "/admin/v1/devices", Some(("text/csv", good.into())))
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    assert_eq!(ok.json()["registered"], 2);
    assert_eq!(actions(&app, "device.registered").await.len(), 3);
}

#[tokio::test]
async fn api_tokens_enroll_devices_and_certificates_are_searched_over_https_and_cli() {
    let app = TestApp::spawn().await;
    let admin = Admin::new(&app, Some(&app.admin_key()));
    let csv = "serial,product,lot\nIP20000001,example-infusion-pump,L1\nIP20000002,example-infusion-pump,L1\nIP20000003,example-infusion-pump,L2\n";
    assert_eq!(
        admin
            .send("POST", "/admin/v1/devices", Some(("text/csv", csv.into())))
            .await
            .status,
        201
    );
    let created = admin
        .post_json(
            "/admin/v1/tokens",
            serde_json::json!({"serials": ["IP20000001", "IP20000002", "IP20000003"], "ttl": "1h"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut serials = Vec::new();
    for token in created.json()["tokens"].as_array().unwrap() {
        let device = token["serial"].as_str().unwrap();
        let enrolled = app
            .enroll(
                device,
                token["token"].as_str().unwrap(),
                &dir.path().join(device),
            )
            .await
            .unwrap();
        serials.push(enrolled.certificate_serial);
    }
    let too_long = admin
        .post_json(
            "/admin/v1/tokens",
            serde_json::json!({"serials": ["IP20000001"], "ttl": "999d"}),
        )
        .await;
    assert_eq!(
        (too_long.status.as_u16(), too_long.code.as_str()),
        (400, "token.ttl_too_long")
    );

    let search = |query: &'static str| {
        let admin = &admin;
        async move {
            let answer = admin.get(&format!("/admin/v1/certificates?{query}")).await;
            assert_eq!(answer.status, 200, "{query}: {answer:?}");
            let page = answer.json();
            let found: Vec<String> = page["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["device"].as_str().unwrap().to_owned())
                .collect();
            (found, page["next"].as_str().map(str::to_owned))
        }
    };
    let (mut lot1, _) = search("lot=L1").await;
    lot1.sort();
    assert_eq!(lot1, ["IP20000001", "IP20000002"]);
    assert_eq!(search("device=IP20000003").await.0, ["IP20000003"]);
    assert_eq!(search(&*format!("product={PUMP}").leak()).await.0.len(), 3);
    assert!(search("product=other").await.0.is_empty());
    assert_eq!(search("expiring_within_days=3650").await.0.len(), 3);
    assert!(search("expiring_within_days=0").await.0.is_empty());

    let hold = admin
        .post_json(
            &format!("/admin/v1/certificates/{}/hold", serials[2]),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(hold.status, 200, "{hold:?}");
    assert_eq!(search("status=on_hold").await.0, ["IP20000003"]);
    assert_eq!(search("status=valid").await.0.len(), 2);

    let (first, next) = search("limit=2").await;
    assert_eq!(first.len(), 2);
    let next = next.expect("a next cursor when the page is full");
    let rest = admin
        .get(&format!("/admin/v1/certificates?limit=2&after={next}"))
        .await
        .json();
    assert_eq!(rest["certificates"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());

    // A serial as openssl prints it (upper case, colons) names the same certificate; text that is
    // no serial is refused before anything is looked up or changed.
    let spelled = serials[2]
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for bad in ["IP20000003", "abc", "12 34"] {
        let answer = admin
            .post_json(
                &format!("/admin/v1/certificates/{}/release", bad.replace(' ', "%20")),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(
            (answer.status.as_u16(), answer.code.as_str()),
            (400, "certificate.bad_serial"),
            "{bad}: {answer:?}"
        );
    }
    assert_eq!(search("status=on_hold").await.0, ["IP20000003"]);
    let released = admin
        .post_json(
            &format!("/admin/v1/certificates/{spelled}/release"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!(released.json()["changes"][0]["serial"], serials[2].as_str());
    let held_again = admin
        .post_json(
            &format!("/admin/v1/certificates/{}/hold", serials[2]),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(held_again.status, 200, "{held_again:?}");

    for bad in [
        "status=good",
        "limit=0",
        "expiring_within_days=x",
        "colour=red",
        "after=not-a-serial",
    ] {
        let answer = admin.get(&format!("/admin/v1/certificates?{bad}")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code.as_str()),
            (400, "search.bad_query"),
            "{bad}"
        );
    }

    let cli = app
        .cli(&[
            "certificates",
            "search",
            "--lot",
            "L2",
            "--status",
            "on_hold",
        ])
        .await
        .unwrap();
    let line: Value = serde_json::from_str(cli.trim()).unwrap();
    assert_eq!(line["serial"], serials[2].as_str());
    assert_eq!(line["status"], "on_hold");
    let err = app
        .cli(&["certificates", "search", "--status", "good"])
        .await
        .unwrap_err();
    assert!(err.contains("unknown status `good`"), "{err}");

    let device = admin.get("/admin/v1/devices/IP20000003").await.json();
    assert_eq!(device["lot"], "L2");
    assert_eq!(device["certificates"][0]["status"], "on_hold");
}

/// An operator certificate of the operator profile, signed by the root as a PKI officer would
/// (the root key is sealed: it is unlocked the way the server does, with DIR/passphrase).
fn operator_certificate(app: &TestApp, name: &str) -> (String, String) {
    let ca = ca_server::pki::CaMaterial::load(&app.data_dir()).unwrap();
    let issuer = &ca.root.as_ref().expect("online root").issuer;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("operator {name}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 32],
        iomt_core::extensions::certificate_policies(&[iomt_core::oids::OPERATOR_POLICY.to_owned()])
            .unwrap(),
    )];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn mtls_client(app: &TestApp, chain_pem: &str, key_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(app.root_der()).unwrap();
    let chain = pem::parse_many(chain_pem)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents().into())
        .collect();
    let key =
        rustls_pki_types::PrivateKeyDer::try_from(pem::parse(key_pem).unwrap().into_contents())
            .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

#[tokio::test]
async fn operator_certificate_authenticates_with_its_role_until_revoked() {
    let app = TestApp::spawn().await;
    let (chain, key) = operator_certificate(&app, "alice");
    let cert_file = app.dir.path().join("alice.pem");
    std::fs::write(&cert_file, &chain).unwrap();
    let out = app
        .cli(&[
            "operator",
            "add",
            "--name",
            "alice",
            "--role",
            "auditor",
            "--cert",
            cert_file.to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert!(out.contains("enrolled"), "{out}");
    let alice = Admin::with_client(&app, mtls_client(&app, &chain, &key));
    assert_eq!(alice.get("/admin/v1/audit/verify").await.status, 200);
    let denied = alice
        .post_json("/admin/v1/devices/IP20000001/revoke", serde_json::json!({}))
        .await;
    assert_eq!(
        (denied.status.as_u16(), denied.code.as_str()),
        (403, "auth.role_insufficient")
    );
    assert!(
        actions(&app, "admin.login_failed")
            .await
            .iter()
            .any(|(actor, _)| actor == "operator:alice")
    );

    let (other_chain, other_key) = operator_certificate(&app, "mallory");
    let stranger = Admin::with_client(&app, mtls_client(&app, &other_chain, &other_key));
    let refused = stranger.get("/admin/v1/audit").await;
    assert_eq!(
        (refused.status.as_u16(), refused.code.as_str()),
        (401, "auth.bad_certificate")
    );

    let foreign = rcgen::generate_simple_self_signed(vec!["eve".to_owned()]).unwrap();
    let foreign_file = app.dir.path().join("eve.pem");
    std::fs::write(&foreign_file, foreign.cert.pem()).unwrap();
    let err = app
        .cli(&[
            "operator",
            "add",
            "--name",
            "eve",
            "--role",
            "admin",
            "--cert",
            foreign_file.to_str().unwrap(),
        ])
        .await
        .unwrap_err();
    assert!(err.contains("does not chain to this CA's root"), "{err}");
    let err = app
        .cli(&["apikey", "create", "--name", "x", "--role", "root"])
        .await
        .unwrap_err();
    assert!(err.contains("unknown role `root`"), "{err}");

    app.cli(&["operator", "revoke", "--name", "alice"])
        .await
        .unwrap();
    assert_eq!(alice.get("/admin/v1/audit/verify").await.status, 401);
}

#[tokio::test]
async fn openapi_document_is_served_and_lists_exactly_the_routes_that_answer() {
    let app = TestApp::spawn().await;
    let anonymous = Admin::new(&app, None);
    let answer = anonymous.get("/admin/v1/openapi.json").await;
    assert_eq!(answer.status, 200);
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        // Path-item keys other than operations (`parameters`, `summary`, ...) are not routes.
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let routes = ca_server::api::admin_routes();
    let served: std::collections::BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, served);
    for route in routes.iter().filter(|r| r.capability.is_some()) {
        let path = route.path.replace("{serial}", "IP20000001");
        let answer = anonymous.send(route.method.as_str(), &path, None).await;
        assert_eq!(
            answer.status, 401,
            "{} {path} is served and guarded",
            route.method
        );
    }
}

#[tokio::test]
async fn refusals_beyond_the_rate_are_counted_not_audited_one_by_one() {
    let app = TestApp::spawn().await;
    let wrong = Admin::new(&app, Some("wrong"));
    for _ in 0..ca_server::auth::failures::FAILURES_PER_MINUTE + 10 {
        assert_eq!(wrong.get("/admin/v1/audit").await.status, 401);
    }
    let audited = actions(&app, "admin.login_failed").await.len() as u32;
    // The count may straddle a minute boundary: then up to twice the budget are written.
    assert!(
        (ca_server::auth::failures::FAILURES_PER_MINUTE
            ..2 * ca_server::auth::failures::FAILURES_PER_MINUTE)
            .contains(&audited),
        "{audited}"
    );
}
