//! Policy files (TOML text an operator edits; `PolicySet::from_sources` / `load_dir`): any text
//! is refused with a typed error naming a file, a mutated shipped file never panics the loader,
//! and a file re-serialized from its parsed table loads to the same policies.

use iomt_core::policy::{PolicyError, PolicySet, PolicySource, shipped_sources};
use proptest::prelude::*;

use super::{apply, config, mutations};

const PUMP: &str = "policies/example-infusion-pump.toml";

/// Which shipped file a case edits.
fn shipped_index() -> impl Strategy<Value = usize> {
    0..shipped_sources().len()
}

/// Whether the error is a typed refusal that names one of the loaded files (or, for the two
/// set-wide refusals, says which level or policies are at fault).
fn assert_names_a_file(error: &PolicyError, sources: &[PolicySource]) {
    let named = |file: &str| sources.iter().any(|s| s.name == file);
    match error {
        PolicyError::Invalid { file, violations } => {
            assert!(named(file), "{error}");
            assert!(!violations.is_empty(), "{error}");
        }
        PolicyError::DuplicateId { file, .. }
        | PolicyError::DuplicateLevel { file, .. }
        | PolicyError::Schema { file, .. }
        | PolicyError::Syntax { file, .. } => assert!(named(file), "{error}"),
        // A level file edited into a product file leaves its level without a base.
        PolicyError::MissingLevel(level) => {
            assert!(["basic", "substantial", "high"].contains(level), "{error}")
        }
        PolicyError::Io { .. } | PolicyError::PlaceholderOids(_) => {
            panic!("from_sources reads no file and checks no OIDs: {error}")
        }
    }
}

/// TOML-ish text: lines of tables, keys, values and junk, so the parser gets past the first
/// character and the schema check sees real tables.
fn tomlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("policy".to_owned()),
        Just("extends".to_owned()),
        Just("level".to_owned()),
        Just("id".to_owned()),
        Just("keys".to_owned()),
        Just("validity".to_owned()),
        Just("max_days".to_owned()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        Just("\"\"".to_owned()),
        Just("\"iomt-basic\"".to_owned()),
        Just("\"basic\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\"[ -~]{0,16}\"",
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("2035-12-31".to_owned()),
        "[ -~]{0,12}",
    ];
    let line = prop_oneof![
        (key.clone(), value).prop_map(|(k, v)| format!("{k} = {v}")),
        key.clone().prop_map(|k| format!("[{k}]")),
        (key.clone(), key).prop_map(|(a, b)| format!("[{a}.{b}]")),
        "[ -~]{0,20}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// The shipped sources with file `index`'s text replaced.
fn with_text(index: usize, text: String) -> Vec<PolicySource> {
    let mut sources = shipped_sources();
    sources[index].text = text;
    sources
}

/// The shipped pump file with `validity.max_days` set to `days`, re-serialized.
fn pump_with_max_days(days: i64) -> Vec<PolicySource> {
    let mut sources = shipped_sources();
    let pump = sources.iter_mut().find(|s| s.name == PUMP).expect("pump");
    let mut table: toml::Table = toml::from_str(&pump.text).expect("toml");
    table
        .get_mut("validity")
        .and_then(toml::Value::as_table_mut)
        .expect("[validity]")
        .insert("max_days".into(), toml::Value::Integer(days));
    pump.text = toml::to_string(&table).expect("serialize");
    sources
}

proptest! {
    // Each case loads the whole set (the built-in levels too).
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_text_in_a_policy_file_is_refused_naming_the_file(
        index in shipped_index(),
        text in prop_oneof![any::<String>(), tomlish()],
    ) {
        let sources = with_text(index, text);
        match PolicySet::from_sources(sources.clone()) {
            Ok(_) => prop_assert!(false, "{} was accepted: {:?}", sources[index].name, sources[index].text),
            Err(error) => assert_names_a_file(&error, &sources),
        }
    }

    #[test]
    fn mutated_policy_file_loads_or_is_refused_naming_a_file(index in shipped_index(), edits in mutations()) {
        let shipped = shipped_sources();
        let mutated = apply(shipped[index].text.as_bytes(), &edits);
        let sources = with_text(index, String::from_utf8_lossy(&mutated).into_owned());
        if let Err(error) = PolicySet::from_sources(sources.clone()) {
            assert_names_a_file(&error, &sources);
        }
    }

    /// A value written into the file is the value loaded; a widening one is refused at its key.
    #[test]
    // 0 is `max_days_of_zero_is_refused`'s case.
    fn max_days_written_is_loaded_or_refused_at_its_key(days in prop_oneof![-10i64..0, 1i64..1000]) {
        let sources = pump_with_max_days(days);
        match PolicySet::from_sources(sources) {
            Ok(set) => {
                let pump = set.product("example-infusion-pump").expect("pump");
                prop_assert_eq!(i64::from(pump.validity.max_days), days);
                // Never wider than the Basic level's 398 days.
                prop_assert!((1..=398).contains(&days), "{} days accepted", days);
            }
            Err(PolicyError::Invalid { file, violations }) => {
                prop_assert_eq!(file, PUMP);
                prop_assert!(violations.iter().any(|v| v.key == "validity.max_days"), "{:?}", violations);
                prop_assert!(!(1..=398).contains(&days), "{} days refused: {:?}", days, violations);
            }
            Err(PolicyError::Schema { file, key, .. }) => {
                // Out of range for the u32 field.
                prop_assert_eq!(file, PUMP);
                prop_assert_eq!(key, "validity.max_days");
                prop_assert!(days < 0);
            }
            Err(other) => prop_assert!(false, "{}", other),
        }
    }
}

/// Every shipped file, parsed to a TOML table and written back by the serializer (another
/// layout, order and quoting), loads to the same policies: the loader reads meaning, not text.
#[test]
fn reserialized_policy_files_load_to_the_same_policies() {
    let original = PolicySet::from_sources(shipped_sources()).expect("shipped");
    let reserialized: Vec<PolicySource> = shipped_sources()
        .into_iter()
        .map(|source| {
            let table: toml::Table = toml::from_str(&source.text).expect("toml");
            PolicySource {
                name: source.name,
                text: toml::to_string(&table).expect("serialize"),
            }
        })
        .collect();
    let again = PolicySet::from_sources(reserialized).expect("reserialized");
    for level in iomt_core::policy::Level::ALL {
        assert_eq!(
            format!("{:?}", original.level(level)),
            format!("{:?}", again.level(level)),
            "{level:?}"
        );
    }
    let products: Vec<String> = original.products().map(|p| format!("{p:?}")).collect();
    let products_again: Vec<String> = again.products().map(|p| format!("{p:?}")).collect();
    assert_eq!(products, products_again);
    // The loaded files are recorded as given (their text and hash), for the audit trail.
    assert_eq!(
        original.files().iter().map(|f| &f.name).collect::<Vec<_>>(),
        again.files().iter().map(|f| &f.name).collect::<Vec<_>>()
    );
}

/// A policy file that is not UTF-8 is refused as unreadable, naming the path.
#[test]
fn policy_file_that_is_not_utf8_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in iomt_core::policy::SHIPPED_POLICIES {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let broken = dir.path().join("example-infusion-pump.toml");
    let mut bytes = std::fs::read(&broken).expect("read");
    bytes.extend_from_slice(&[0xff, 0xfe, 0x80]);
    std::fs::write(&broken, bytes).expect("write");
    match PolicySet::load_dir(dir.path()) {
        Err(PolicyError::Io { path, .. }) => assert_eq!(path, broken),
        other => panic!("expected Io naming {}: {other:?}", broken.display()),
    }
}

/// const-oid 0.9.6 (behind `der`) encodes an arc of 2^28 or more wrongly: `…32473.268435457`
/// becomes the bytes `80 80 80 01` (a non-minimal encoding of arc 1, i.e. another OID), and
/// `…32473.4294967295` becomes bytes its own decoder refuses. `ObjectIdentifier::from_str`
/// accepts such OIDs, so the loader's OID check (`validate::check_oid`) refuses any arc above
/// 2^28 - 1: otherwise every certificate would carry the policy's OID wrongly.
#[test]
fn policy_oid_with_an_arc_const_oid_cannot_encode_is_refused() {
    for arc in ["268435457", "4294967295"] {
        let mut sources = shipped_sources();
        let pump = sources.iter_mut().find(|s| s.name == PUMP).expect("pump");
        pump.text = pump.text.replace(
            "\"1.3.6.1.4.1.32473.98.1.1\", # PLACEHOLDER IP-200",
            &format!("\"1.3.6.1.4.1.32473.98.1.{arc}\", # PLACEHOLDER IP-200"),
        );
        match PolicySet::from_sources(sources) {
            Err(PolicyError::Invalid { file, violations }) => {
                assert_eq!(file, PUMP);
                assert!(
                    violations
                        .iter()
                        .any(|v| v.key.starts_with("extensions.certificate_policies")),
                    "{violations:?}"
                );
            }
            other => panic!("arc {arc}: {other:?}"),
        }
    }
}

/// A certificate valid for zero days is no certificate: the loader should refuse the file at
/// `validity.max_days`, as it refuses a widening value.
#[test]
fn max_days_of_zero_is_refused() {
    match PolicySet::from_sources(pump_with_max_days(0)) {
        Err(PolicyError::Invalid { file, violations }) => {
            assert_eq!(file, PUMP);
            assert!(
                violations.iter().any(|v| v.key == "validity.max_days"),
                "{violations:?}"
            );
        }
        other => panic!("expected Invalid at validity.max_days: {other:?}"),
    }
}
