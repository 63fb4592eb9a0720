//! Property-test support for the parsers of untrusted bytes, shared by the test suites of
//! iomt-core and ca-server (feature `testing`, never in a release build): the proptest
//! configuration, mutations of valid inputs, and DER-shaped byte strings.

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
