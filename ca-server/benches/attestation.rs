//! The CA's CPU cost of one TPM-attested enrollment, step by step, on real swtpm structures
//! (iomt-core/src/attestation/fixtures): `cargo bench -p ca-server --bench attestation`.
//! Prints figures; asserts nothing about time (a benchmark, not a test). Database work (the
//! challenge row, the claim in the issuance transaction) is not in these figures.

use std::hint::black_box;
use std::time::Instant;

use ca_server::authority::attestation::{make_credential, verify_certify, verify_ek};
use iomt_core::attestation::{Public, encode_evidence, parse_evidence};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../iomt-core/src/attestation/fixtures/"
);
/// One day after the fixtures were made (the EK certificate's notBefore is 2026-12-07).
const NOW: i64 = 1_796_611_963 + 86_400;
/// The qualifying data the fixture certify was made over.
const SECRET: [u8; 4] = [0x00, 0xff, 0x55, 0xaa];
const ROUNDS: u32 = 2_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

fn pem_der(name: &str) -> Vec<u8> {
    pem::parse(fixture(name)).expect("pem").into_contents()
}

/// Mean microseconds per call of `step` over [`ROUNDS`] calls (after one warm-up call).
fn measure(label: &str, mut step: impl FnMut()) -> f64 {
    step();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        step();
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    println!("{label:<58} {micros:>9.1} µs");
    micros
}

fn main() {
    let ek_certificate = fixture("swtpm-ek-rsa2048.der");
    let issuer = pem_der("swtpm-localca-issuer.pem");
    let root = pem_der("swtpm-localca-root.pem");
    let ek = Public::parse_tpm2b(&fixture("swtpm-ek-rsa.pub")).expect("EK");
    let ak_raw = fixture("swtpm-ak.pub");
    let ak = Public::parse_tpm2b(&ak_raw).expect("AK");
    let key_raw = fixture("swtpm-key.pub");
    let key = Public::parse_tpm2b(&key_raw).expect("key");
    let point = key.key.sec1_uncompressed().expect("point");
    let mut spki =
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("SPKI prefix");
    spki.extend_from_slice(&point);
    let evidence_der = encode_evidence(
        &fixture("swtpm-attest.bin"),
        &fixture("swtpm-sig.bin"),
        &key_raw[2..],
        &[&ek_certificate],
    )
    .expect("evidence");
    let secret = [7u8; 32];

    let build = if cfg!(debug_assertions) {
        "debug build: run `cargo bench` for real figures"
    } else {
        "release build"
    };
    println!("TPM attestation, CA side, {ROUNDS} rounds each (one core, {build}):");
    println!("challenge (POST /attestation/challenge):");
    let chain = measure(
        "  EK certificate chain to the manufacturer root (RSA-2048)",
        || {
            black_box(
                verify_ek(
                    &ek_certificate,
                    std::slice::from_ref(&issuer),
                    std::slice::from_ref(&root),
                    Some(&ek),
                    NOW,
                )
                .expect("EK"),
            );
        },
    );
    let ek_raw = fixture("swtpm-ek-rsa.pub");
    let parse_publics = measure("  parse the EK and AK public areas", || {
        black_box(Public::parse_tpm2b(&ek_raw).expect("EK"));
        black_box(Public::parse_tpm2b(&ak_raw).expect("AK"));
    });
    let credential = measure(
        "  TPM2_MakeCredential (RSA-OAEP, KDFa, AES-CFB, HMAC)",
        || {
            black_box(make_credential(&ek, &ak.name(), &secret).expect("credential"));
        },
    );
    println!("enrollment (the CSR's evidence):");
    let parse = measure(
        "  parse the evidence attribute (EvidenceBundle, TPMS_ATTEST)",
        || {
            black_box(parse_evidence(&evidence_der).expect("evidence"));
        },
    );
    let evidence = parse_evidence(&evidence_der).expect("evidence");
    let certify = measure(
        "  TPM2_Certify: AK signature (P-256), name, attributes",
        || {
            black_box(verify_certify(&evidence, &ak, &SECRET, &spki).expect("certify"));
        },
    );
    let again = measure("  EK certificate chain again, at issuance", || {
        black_box(
            verify_ek(
                &ek_certificate,
                std::slice::from_ref(&issuer),
                std::slice::from_ref(&root),
                None,
                NOW,
            )
            .expect("EK"),
        );
    });
    let total = chain + parse_publics + credential + parse + certify + again;
    println!("{:<58} {total:>9.1} µs", "total per attested enrollment");
}
