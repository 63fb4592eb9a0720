//! TPM 2.0 attestation against a real (software) TPM: the operator trusts the manufacturer
//! (`tpm-roots`), the CA answers a challenge request with a `TPM2_MakeCredential` blob made in
//! Rust, and the TPM itself (`tpm2_activatecredential`) opens it, which it does only for the AK
//! named and the EK it holds: the proof that the CA's credential is right.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use iomt_tests::TestApp;
use iomt_tests::swtpm::{self, SoftwareTpm};

const EK_HANDLE: &str = "0x81010001";
const EK_CERT_NV: &str = "0x1c00002";

/// The EK certificate, EK public area and a fresh AK of `tpm`, as a client sends them.
fn identity(tpm: &SoftwareTpm) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    tpm.run(
        "tpm2_readpublic",
        &["-c", EK_HANDLE, "-f", "tss", "-o", "ek.pub"],
    );
    tpm.run("tpm2_nvread", &[EK_CERT_NV, "-o", "ek.der"]);
    tpm.run(
        "tpm2_createak",
        &[
            "-C", EK_HANDLE, "-c", "ak.ctx", "-G", "ecc256", "-g", "sha256", "-s", "ecdsa", "-u",
            "ak.pub", "-n", "ak.name", "-f", "tss",
        ],
    );
    (
        tpm.read("ek.der"),
        tpm.read("ek.pub"),
        tpm.read("ak.pub"),
        tpm.read("ak.name"),
    )
}

fn challenge_body(serial: &str, ek_cert: &[u8], ek_public: &[u8], ak_public: &[u8]) -> String {
    serde_json::json!({
        "serial": serial,
        "ek_certificate": STANDARD.encode(ek_cert),
        "ek_public": STANDARD.encode(ek_public),
        "ak_public": STANDARD.encode(ak_public),
    })
    .to_string()
}

async fn post_challenge(
    app: &TestApp,
    auth: Option<(&str, &str)>,
    body: String,
) -> (u16, String, serde_json::Value) {
    let mut request = app
        .http_client()
        .post(format!("{}/attestation/challenge", app.server_url()))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("X-Error-Code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, code, json)
}

/// Opens the credential with the TPM: `Some(secret)` when it activates.
fn activate(tpm: &SoftwareTpm, answer: &serde_json::Value) -> Option<Vec<u8>> {
    let field = |name: &str| {
        STANDARD
            .decode(answer[name].as_str().expect(name))
            .expect("base64")
    };
    // tpm2-tools' credential file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    let mut file = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
    file.extend(field("id_object"));
    file.extend(field("encrypted_secret"));
    std::fs::write(tpm.path("cred.in"), file).expect("write");
    // The EK's policy (TCG template L-1): PolicySecret(endorsement hierarchy). The session is
    // kept (not flushed) until the activation has used it.
    iomt_tests::run_tool(tpm.tool("tpm2_startauthsession").args([
        "--policy-session",
        "-S",
        "session.ctx",
    ]));
    iomt_tests::run_tool(
        tpm.tool("tpm2_policysecret")
            .args(["-S", "session.ctx", "-c", "e"]),
    );
    let activated = tpm
        .tool("tpm2_activatecredential")
        .args([
            "-c",
            "ak.ctx",
            "-C",
            EK_HANDLE,
            "-i",
            "cred.in",
            "-o",
            "secret.out",
            "-P",
            "session:session.ctx",
        ])
        .output()
        .expect("tpm2_activatecredential");
    for kind in ["-t", "-s"] {
        let _ = tpm.tool("tpm2_flushcontext").arg(kind).output();
    }
    if !activated.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&activated.stderr));
    }
    activated.status.success().then(|| tpm.read("secret.out"))
}

#[tokio::test]
async fn the_tpm_activates_the_credential_the_ca_made_for_its_ek_and_ak() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    let root = tpm.manufacturer_root();
    let intermediate = tpm.manufacturer_intermediate();
    let added = app
        .cli(&[
            "tpm-roots",
            "add",
            root.to_str().unwrap(),
            intermediate.to_str().unwrap(),
        ])
        .await
        .expect("tpm-roots add");
    assert_eq!(added.matches("added ").count(), 2, "{added}");
    let listed = app.cli(&["tpm-roots", "list"]).await.expect("list");
    assert!(listed.contains("swtpm-localca"), "{listed}");

    let token = app.pump_with_token("IP20000001").await;
    let (ek_cert, ek_public, ak_public, ak_name) = identity(&tpm);
    let (status, code, answer) = post_challenge(
        &app,
        Some(("IP20000001", &token)),
        challenge_body("IP20000001", &ek_cert, &ek_public, &ak_public),
    )
    .await;
    assert_eq!((status, code.as_str()), (200, ""), "{answer}");
    let secret = activate(&tpm, &answer).expect("the TPM opens the CA's credential");
    assert_eq!(secret.len(), 32);
    // What the CA stored is the digest of exactly that secret, for that device, EK and AK.
    let digest = swtpm::sha256(&secret);
    let stored = app
        .authority
        .store()
        .challenge(&digest)
        .await
        .unwrap()
        .expect("challenge stored");
    assert_eq!(stored.device_serial, "IP20000001");
    assert_eq!(stored.ek_sha256, swtpm::sha256(&ek_cert));
    assert_eq!(stored.used_at, None);
    assert_eq!(&ak_name[..2], &[0x00, 0x0b]);
    // Asking does not consume the token.
    assert!(!app.token_used(&token).await);
}

#[tokio::test]
async fn a_challenge_is_refused_for_an_untrusted_manufacturer_or_a_stranger() {
    if !swtpm::available() {
        return;
    }
    let tpm = SoftwareTpm::start();
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000002").await;
    let (ek_cert, ek_public, ak_public, _) = identity(&tpm);
    let body = || challenge_body("IP20000002", &ek_cert, &ek_public, &ak_public);

    // No manufacturer trusted yet.
    let (status, code, _) = post_challenge(&app, Some(("IP20000002", &token)), body()).await;
    assert_eq!((status, code.as_str()), (403, "attestation.ek_untrusted"));
    // No credential at all; a wrong token.
    let (status, code, _) = post_challenge(&app, None, body()).await;
    assert_eq!((status, code.as_str()), (401, "auth.required"));
    let (status, code, _) = post_challenge(&app, Some(("IP20000002", "wrong")), body()).await;
    assert_eq!((status, code.as_str()), (401, "auth.token_unknown"));

    // Trusted, but the EK public area given is the AK's: not the certified key.
    tpm.trust_manufacturer(&app).await;
    let (status, code, _) = post_challenge(
        &app,
        Some(("IP20000002", &token)),
        challenge_body("IP20000002", &ek_cert, &ak_public, &ak_public),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "attestation.ek_mismatch"));
    // The EK as AK: not a restricted signing key.
    let (status, code, _) = post_challenge(
        &app,
        Some(("IP20000002", &token)),
        challenge_body("IP20000002", &ek_cert, &ek_public, &ek_public),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "attestation.ak_invalid"));

    // Removing the root refuses the manufacturer again; both changes are audited.
    let listed = app.cli(&["tpm-roots", "list"]).await.unwrap();
    for line in listed.lines() {
        let digest = line.split_whitespace().next().unwrap();
        app.cli(&["tpm-roots", "remove", digest])
            .await
            .expect("remove");
    }
    let (status, code, _) = post_challenge(&app, Some(("IP20000002", &token)), body()).await;
    assert_eq!((status, code.as_str()), (403, "attestation.ek_untrusted"));
    let events = app.authority.store().audit_events().await.unwrap();
    let count = |action: &str| events.iter().filter(|e| e.event.action == action).count();
    assert_eq!((count("tpm_root.added"), count("tpm_root.removed")), (2, 2));
    assert!(
        app.cli(&["tpm-roots", "remove", &"00".repeat(32)])
            .await
            .is_err()
    );
}
