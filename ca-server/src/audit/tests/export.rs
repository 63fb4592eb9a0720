//! Property tests for the audit trail as it leaves and re-enters the CA: export lines (`audit
//! export`, JSON lines an auditor recomputes the chain from) and checkpoint files (`audit verify
//! --checkpoint FILE` reads whatever file it is given).

use proptest::prelude::*;
use serde_json::value::RawValue;

use super::json_line;
use crate::audit::checkpoint::{CheckpointError, authenticate, from_json, to_json};
use crate::storage::{AuditEvent, StoredAuditEvent, StoredCheckpoint, chain_hash};
use crate::tests_support::{apply, config, der_like, mutations};

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the times RFC 3339 can write.
const FIRST_RFC3339: i64 = -62_167_219_200;
const LAST_RFC3339: i64 = 253_402_300_799;

/// An export line as an auditor reads it: the details kept as their raw JSON text.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    seq: i64,
    at: serde_json::Value,
    actor: String,
    action: String,
    object: String,
    #[serde(borrow)]
    details: &'a RawValue,
    prev_hash: String,
    hash: String,
}

/// What the CA stores as details: a JSON object, compact, as `serde_json::json!` writes it.
fn details_object() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(any::<String>(), value, 0..5)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()).to_string())
}

/// A chained event with these details.
fn stored(seq: i64, event: AuditEvent, prev_hash: Vec<u8>) -> StoredAuditEvent {
    let hash = chain_hash(&prev_hash, &event);
    StoredAuditEvent {
        seq,
        event,
        prev_hash,
        hash,
    }
}

fn event(details: impl Strategy<Value = String>) -> impl Strategy<Value = AuditEvent> {
    (
        FIRST_RFC3339..=LAST_RFC3339,
        any::<String>(),
        any::<String>(),
        any::<String>(),
        details,
    )
        .prop_map(|(at, actor, action, object, details)| AuditEvent {
            at,
            actor,
            action,
            object,
            details,
        })
}

/// The event an auditor reads back from a line.
fn read_back(line: &Line<'_>) -> AuditEvent {
    let at = line.at.as_str().expect("an RFC 3339 string");
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp();
    AuditEvent {
        at,
        actor: line.actor.clone(),
        action: line.action.clone(),
        object: line.object.clone(),
        details: line.details.get().to_owned(),
    }
}

fn checkpoint() -> impl Strategy<Value = StoredCheckpoint> {
    (
        any::<i64>(),
        prop::array::uniform32(any::<u8>()),
        FIRST_RFC3339..=LAST_RFC3339,
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(seq, head, at, signature, signer_der)| StoredCheckpoint {
            seq,
            head_hash: head.to_vec(),
            at,
            signature,
            signer_der,
        })
}

/// A checkpoint file is refused only as malformed: it is read before anything is trusted.
fn assert_malformed(error: &CheckpointError) {
    assert!(matches!(error, CheckpointError::Malformed(_)), "{error:?}");
}

proptest! {
    #![proptest_config(config(256))]

    /// Every line is one line of JSON with every field as stored, the details byte for byte,
    /// so the chain recomputes from the export alone.
    #[test]
    fn export_line_round_trips_and_the_chain_recomputes(
        seq in any::<i64>(),
        event in event(details_object()),
        prev_hash in prop::collection::vec(any::<u8>(), 32),
    ) {
        let stored = stored(seq, event, prev_hash);
        let text = json_line(&stored);
        prop_assert!(!text.contains('\n') && !text.contains('\r'), "one line: {}", text);
        let line: Line<'_> = serde_json::from_str(&text).expect("the line is JSON");
        prop_assert_eq!(line.seq, stored.seq);
        prop_assert_eq!(&line.prev_hash, &hex::encode(&stored.prev_hash));
        prop_assert_eq!(&line.hash, &hex::encode(&stored.hash));
        let back = read_back(&line);
        prop_assert_eq!(&back, &stored.event);
        prop_assert_eq!(chain_hash(&stored.prev_hash, &back), stored.hash);
    }

    /// Details that are not JSON (no such row is written today) still export as one JSON line.
    #[test]
    fn export_line_of_any_details_is_one_json_line(
        event in event(any::<String>()),
        at in any::<i64>(),
    ) {
        let stored = stored(1, AuditEvent { at, ..event }, vec![0; 32]);
        let text = json_line(&stored);
        prop_assert!(!text.contains('\n') && !text.contains('\r'), "one line: {}", text);
        let line: Line<'_> = serde_json::from_str(&text).expect("the line is JSON");
        // A time RFC 3339 cannot write is exported as its Unix seconds, in the same string.
        let written = line.at.as_str().expect("`at` is a string");
        match time::OffsetDateTime::parse(written, &time::format_description::well_known::Rfc3339) {
            Ok(parsed) => prop_assert_eq!(parsed.unix_timestamp(), at),
            Err(_) => prop_assert_eq!(written, at.to_string()),
        }
        // Text that is not JSON is exported as a JSON string of that text.
        if serde_json::from_str::<&RawValue>(&stored.event.details).is_err() {
            let text: String = serde_json::from_str(line.details.get()).expect("a JSON string");
            prop_assert_eq!(text, stored.event.details);
        }
    }

    /// Details of any JSON shape, with any whitespace around them, are exported so that the
    /// stored text comes back byte for byte: a one-line object as it is, anything else as a
    /// JSON string of the text (a RawValue would drop the whitespace around it).
    #[test]
    fn export_line_keeps_any_json_details_byte_for_byte(
        details in (
            "[ \t\r\n]{0,2}",
            prop_oneof![
                details_object(),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<String>().prop_map(|s| serde_json::Value::from(s).to_string()),
                Just("[1, 2]".to_owned()),
                Just("{ \"a\" : 1 }".to_owned()),
                Just("{\n}".to_owned()),
            ],
            "[ \t\r\n]{0,2}",
        ).prop_map(|(before, json, after)| format!("{before}{json}{after}")),
    ) {
        let event = AuditEvent { at: 0, actor: "a".into(), action: "b".into(), object: "c".into(), details };
        let stored = stored(1, event, vec![0; 32]);
        let text = json_line(&stored);
        prop_assert!(!text.contains('\n') && !text.contains('\r'), "one line: {}", text);
        let line: Line<'_> = serde_json::from_str(&text).expect("the line is JSON");
        let exported = line.details.get();
        let recovered = if exported.starts_with('{') {
            exported.to_owned()
        } else {
            serde_json::from_str::<String>(exported).expect("a JSON string")
        };
        prop_assert_eq!(recovered, stored.event.details);
    }

    /// from_json reads any text without panicking and refuses it only as malformed.
    #[test]
    fn checkpoint_file_of_arbitrary_text_is_refused_as_malformed(text in prop_oneof![
        any::<String>(),
        "\\{[ -~]{0,200}\\}",
    ]) {
        if let Err(error) = from_json(&text) {
            assert_malformed(&error);
        }
    }

    #[test]
    fn mutated_checkpoint_file_is_read_or_refused_as_malformed(
        checkpoint in checkpoint(),
        edits in mutations(),
    ) {
        let mutated = apply(to_json(&checkpoint).as_bytes(), &edits);
        match from_json(&String::from_utf8_lossy(&mutated)) {
            // What is read is a checkpoint that writes and reads back the same.
            Ok(read) => prop_assert_eq!(from_json(&to_json(&read)).ok(), Some(read)),
            Err(error) => assert_malformed(&error),
        }
    }

    /// to_json → from_json gives back the checkpoint.
    #[test]
    fn checkpoint_file_round_trips(checkpoint in checkpoint()) {
        prop_assert_eq!(from_json(&to_json(&checkpoint)).ok(), Some(checkpoint));
    }

    /// A checkpoint whose signer is not a certificate the root issued is not authentic, however
    /// its bytes are made.
    #[test]
    fn checkpoint_with_an_arbitrary_signer_is_not_authentic(
        checkpoint in checkpoint(),
        signer in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), der_like()],
        root in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), der_like()],
    ) {
        let checkpoint = StoredCheckpoint { signer_der: signer, ..checkpoint };
        let error = authenticate(&checkpoint, &root).expect_err("authentic");
        prop_assert!(matches!(error, CheckpointError::NotAuthentic(_)), "{:?}", error);
    }
}
