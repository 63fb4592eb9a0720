//! Test support shared by the property tests of ca-server's parsers of untrusted bytes: the
//! proptest configuration, mutations of valid inputs, and DER-shaped byte strings.

use proptest::prelude::*;
use proptest::sample::Index;

/// The proptest configuration: `PROPTEST_CASES` if set, `default_cases` otherwise (lower than
/// proptest's 256 where a case costs a signature or a database round trip).
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One edit of a valid input: what a corrupted transfer or a fuzzing attacker does to it.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit { at: Index, bit: u8 },
    Overwrite { at: Index, byte: u8 },
    Truncate { at: Index },
    Append(Vec<u8>),
    Insert { at: Index, bytes: Vec<u8> },
    Remove { at: Index, count: usize },
}

/// One to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite { at, byte }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), 1usize..8).prop_map(|(at, count)| Mutation::Remove { at, count }),
    ];
    prop::collection::vec(one, 1..=4)
}

/// `input` with `mutations` applied in order.
pub fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for mutation in mutations {
        if out.is_empty() {
            break;
        }
        match mutation {
            Mutation::FlipBit { at, bit } => {
                let i = at.index(out.len());
                out[i] ^= 1 << bit;
            }
            Mutation::Overwrite { at, byte } => {
                let i = at.index(out.len());
                out[i] = *byte;
            }
            Mutation::Truncate { at } => {
                let len = at.index(out.len());
                out.truncate(len);
            }
            Mutation::Append(bytes) => out.extend_from_slice(bytes),
            Mutation::Insert { at, bytes } => {
                let i = at.index(out.len() + 1);
                out.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, count } => {
                let i = at.index(out.len());
                let end = (i + count).min(out.len());
                out.drain(i..end);
            }
        }
    }
    out
}

/// DER tag, length and contents (definite length, short or long form).
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Well-formed TLV trees with arbitrary tags and contents: they get past the first length
/// check of a DER decoder, so its deeper paths run too.
pub fn der_like() -> impl Strategy<Value = Vec<u8>> {
    let leaf_tag = prop_oneof![
        Just(0x01u8), // BOOLEAN
        Just(0x02),   // INTEGER
        Just(0x03),   // BIT STRING
        Just(0x04),   // OCTET STRING
        Just(0x05),   // NULL
        Just(0x06),   // OBJECT IDENTIFIER
        Just(0x0c),   // UTF8String
        Just(0x13),   // PrintableString
        Just(0x1e),   // BMPString
        Just(0x80),
        Just(0x81),
        Just(0x82),
        any::<u8>(),
    ];
    let leaf = (leaf_tag, prop::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(tag, content)| tlv(tag, &content));
    leaf.prop_recursive(5, 96, 6, |inner| {
        let tag = prop_oneof![
            Just(0x30u8), // SEQUENCE
            Just(0x31),   // SET
            Just(0x04),   // OCTET STRING wrapping DER (extnValue)
            Just(0xa0),
            Just(0xa1),
            Just(0xa3),
        ];
        (tag, prop::collection::vec(inner, 0..6))
            .prop_map(|(tag, children)| tlv(tag, &children.concat()))
    })
}

/// A fresh evaluation CA made by `ca-server init` in a temp directory, with its SQLite
/// database, and the services the in-process tests drive (no listener, no TLS).
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub material: std::sync::Arc<crate::pki::CaMaterial>,
    pub authority: std::sync::Arc<crate::authority::Authority>,
    pub revocation: std::sync::Arc<crate::revocation::Revocation>,
}

impl TestCa {
    /// Runs `init` and loads what `serve` would (on the current tokio runtime).
    pub async fn init() -> TestCa {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("ca");
        cli_in(
            &data_dir,
            &[
                "init",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--public-url",
                "http://127.0.0.1:8080",
            ],
        )
        .await;
        let settings = crate::config::Settings::load(&data_dir).expect("settings");
        let policies = Arc::new(
            iomt_core::policy::PolicySet::load_dir(&data_dir.join("policies")).expect("policies"),
        );
        let material = Arc::new(
            crate::pki::CaMaterial::load_with(&data_dir, &settings.key_access)
                .expect("CA material"),
        );
        let store = crate::storage::open(&settings.database_url())
            .await
            .expect("database");
        let revocation = Arc::new(
            crate::revocation::Revocation::new(material.clone(), store.clone(), policies.clone())
                .expect("revocation"),
        );
        let authority = Arc::new(crate::authority::Authority::new(
            policies,
            material.clone(),
            store,
            crate::pki::PublicUrls::new(&settings.config.public_url),
        ));
        TestCa {
            dir,
            material,
            authority,
            revocation,
        }
    }

    /// The data directory (`ca/` in the temp directory).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("ca")
    }

    /// Runs a `ca-server` command against this CA; returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        cli_in(&self.data_dir(), args).await
    }

    /// Registers an example infusion pump and returns a fresh one-time token for it.
    pub async fn pump_with_token(&self, serial: &str) -> String {
        let product = "example-infusion-pump";
        self.cli(&[
            "device",
            "register",
            "--serial",
            serial,
            "--product",
            product,
        ])
        .await;
        let token = self.cli(&["token", "create", "--serial", serial]).await;
        token.trim().to_owned()
    }
}

/// Runs a `ca-server` command line against `data_dir`, in process; returns its stdout.
async fn cli_in(data_dir: &std::path::Path, args: &[&str]) -> String {
    use clap::Parser;
    let full = ["ca-server", "--data-dir", data_dir.to_str().expect("utf-8")]
        .into_iter()
        .chain(args.iter().copied());
    let cli = crate::cli::Cli::try_parse_from(full).expect("command line");
    let mut out = Vec::new();
    crate::cli::run(cli, &mut out)
        .await
        .unwrap_or_else(|e| panic!("ca-server {args:?}: {e:#}"));
    String::from_utf8(out).expect("utf-8")
}

/// A P-256 CSR for `serial` as an enroll-client makes it (subject serialNumber alone).
pub fn p256_csr(serial: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(serial.try_into().expect("printable")),
    );
    params.serialize_request(&key).expect("CSR").der().to_vec()
}
