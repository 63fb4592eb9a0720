//! EK certificate verification against a real swtpm EK certificate (RSA-2048, template L-1)
//! issued by swtpm's local "manufacturer" CA (root and intermediate, `swtpm_setup
//! --create-ek-cert`).

use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../iomt-core/src/attestation/fixtures/"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

fn pem_der(name: &str) -> Vec<u8> {
    pem::parse(fixture(name)).expect("pem").into_contents()
}

/// One day after the fixtures were made (the EK certificate's notBefore is 2026-12-07).
const NOW: i64 = 1_796_611_963 + 86_400;

fn ek_public() -> Public {
    Public::parse_tpm2b(&fixture("swtpm-ek-rsa.pub")).expect("EK public")
}

#[test]
fn swtpm_ek_certificate_chains_and_names_the_tpm() {
    let root = pem_der("swtpm-localca-root.pem");
    let issuer = pem_der("swtpm-localca-issuer.pem");
    let ek = fixture("swtpm-ek-rsa2048.der");
    let verified = verify_ek(&ek, &[issuer], &[root], Some(&ek_public()), NOW).expect("verified");
    assert_eq!(verified.manufacturer, "id:00001014");
    assert_eq!(
        verified.hw_serial,
        "00001014:0D464CBAC85C7BFDFCE8B7CC68A008869C9FD00B:02"
    );
    assert_eq!(
        verified.certificate_sha256,
        ring::digest::digest(&ring::digest::SHA256, &ek).as_ref()
    );
}

#[test]
fn an_intermediate_trusted_as_a_root_is_enough() {
    let issuer = pem_der("swtpm-localca-issuer.pem");
    let ek = fixture("swtpm-ek-rsa2048.der");
    verify_ek(&ek, &[], &[issuer], None, NOW).expect("verified");
}

#[test]
fn an_ek_certificate_of_an_untrusted_manufacturer_is_refused() {
    let ek = fixture("swtpm-ek-rsa2048.der");
    let issuer = pem_der("swtpm-localca-issuer.pem");
    // Trusting an unrelated root (here: the EK certificate's own issuer is missing).
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&rcgen::KeyPair::generate().expect("key"))
        .expect("cert")
        .der()
        .to_vec();
    assert!(matches!(
        verify_ek(&ek, &[issuer], &[other], None, NOW),
        Err(AttestationProblem::EkUntrusted { .. })
    ));
    assert!(matches!(
        verify_ek(&ek, &[], &[], None, NOW),
        Err(AttestationProblem::EkUntrusted { .. })
    ));
}

#[test]
fn an_ek_public_area_that_is_not_the_certified_key_is_refused() {
    let root = pem_der("swtpm-localca-root.pem");
    let issuer = pem_der("swtpm-localca-issuer.pem");
    let ek = fixture("swtpm-ek-rsa2048.der");
    let ak = Public::parse_tpm2b(&fixture("swtpm-ak.pub")).expect("AK");
    assert_eq!(
        verify_ek(&ek, &[issuer], &[root], Some(&ak), NOW),
        Err(AttestationProblem::EkMismatch)
    );
}

#[test]
fn an_ek_certificate_before_its_validity_is_refused() {
    let root = pem_der("swtpm-localca-root.pem");
    let issuer = pem_der("swtpm-localca-issuer.pem");
    let ek = fixture("swtpm-ek-rsa2048.der");
    assert!(matches!(
        verify_ek(&ek, &[issuer], &[root], None, 1_700_000_000),
        Err(AttestationProblem::EkUntrusted { .. })
    ));
}
