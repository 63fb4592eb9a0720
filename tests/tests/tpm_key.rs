//! The device key in a real (software) TPM: `enroll_client::tpm` creates an ECC P-256 key under
//! the SRK, saves it as a TSS2 PRIVATE KEY that openssl parses (type 2.23.133.10.1.3, emptyAuth,
//! parent 0x40000001, no key in the clear), loads it back from that file alone in a new TPM
//! session, and the TPM signs a CSR that openssl verifies with the key's public point.

use std::process::Command;

use enroll_client::csr::build_csr_with;
use enroll_client::tpm::TpmKey;
use enroll_client::tpm::tss2_pem::is_tss2_pem;
use iomt_tests::run_tool;
use iomt_tests::swtpm::{self, SoftwareTpm};

#[test]
fn a_tpm_key_saved_as_tss2_pem_loads_back_and_signs_a_csr_openssl_verifies() {
    if !swtpm::available() || !iomt_tests::require_tool("openssl", &["version"]) {
        return;
    }
    let tpm = SoftwareTpm::start();
    let created = TpmKey::create(&tpm.tcti).expect("create the key in the TPM");
    let text = created.to_pem().expect("pem");
    let point = created.public_point().to_vec();
    assert_eq!(point.len(), 65);
    drop(created);

    assert!(
        text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----\n"),
        "{text}"
    );
    assert!(is_tss2_pem(text.as_bytes()));
    let file = tpm.path("key.pem");
    std::fs::write(&file, &text).expect("write");
    let parsed = run_tool(
        Command::new("openssl")
            .arg("asn1parse")
            .arg("-in")
            .arg(&file),
    );
    assert!(parsed.contains(":2.23.133.10.1.3"), "{parsed}");
    assert!(parsed.contains("BOOLEAN           :255"), "{parsed}");
    assert!(parsed.contains(":40000001"), "{parsed}");
    assert_eq!(parsed.matches("OCTET STRING").count(), 2, "{parsed}");

    // A new session, from the file alone: the SRK is recreated and the key loaded under it.
    let loaded = TpmKey::load(&tpm.tcti, text.as_bytes()).expect("load the key file");
    assert_eq!(loaded.public_point(), point.as_slice());
    let csr = build_csr_with(&loaded, "SN-TPM-0001").expect("the TPM signs the CSR");
    std::fs::write(tpm.path("req.der"), &csr).expect("write csr");
    let verified = run_tool(
        Command::new("openssl")
            .args(["req", "-inform", "DER", "-verify", "-noout", "-text", "-in"])
            .arg(tpm.path("req.der")),
    );
    assert!(verified.contains("SN-TPM-0001"), "{verified}");
    assert!(
        verified.contains("prime256v1") || verified.contains("P-256"),
        "{verified}"
    );
    let spki = &csr[..];
    assert!(
        spki.windows(point.len()).any(|w| w == point.as_slice()),
        "the CSR carries the TPM key's point"
    );

    // Two signatures of one message differ (ECDSA's nonce) and both are DER sequences.
    let first = loaded.sign_sha256(b"message").expect("sign");
    let second = loaded.sign_sha256(b"message").expect("sign");
    assert_ne!(first, second);
    assert_eq!(first[0], 0x30);

    // A key file tampered with does not load.
    let mut bytes = pem::parse(&text).expect("pem").into_contents();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("TSS2 PRIVATE KEY", bytes));
    assert!(TpmKey::load(&tpm.tcti, tampered.as_bytes()).is_err());
}
