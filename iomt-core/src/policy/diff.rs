//! What changed between two versions of a policy file, key by key, for the audit trail.

use std::collections::BTreeMap;

/// The dotted keys whose values differ between `old` and `new` (two texts of one policy file),
/// each as `key: old → new`, `key: added = value` or `key: removed (was value)`, sorted by key.
///
/// Arrays (including `[[keys.allowed]]`) compare as one value. A text that is not TOML gives a
/// single entry saying so.
pub fn changed_keys(old: &str, new: &str) -> Vec<String> {
    let (old, new) = match (flatten_text(old), flatten_text(new)) {
        (Some(old), Some(new)) => (old, new),
        (None, _) => return vec!["(the previous text is not valid TOML)".to_owned()],
        (_, None) => return vec!["(the new text is not valid TOML)".to_owned()],
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| match (old.get(key), new.get(key)) {
            (Some(before), Some(after)) if before != after => {
                Some(format!("{key}: {before} → {after}"))
            }
            (Some(before), None) => Some(format!("{key}: removed (was {before})")),
            (None, Some(after)) => Some(format!("{key}: added = {after}")),
            _ => None,
        })
        .collect()
}

fn flatten_text(text: &str) -> Option<BTreeMap<String, String>> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    Some(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&path, inner, out),
            value => {
                out.insert(path, value.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_each_changed_added_and_removed_key() {
        let old = "[validity]\nmax_days = 398\nallow_no_expiry = false\n[renewal]\nrekey = \"required\"\n";
        let new = "# a comment only\n[validity]\nmax_days = 200\nallow_no_expiry = false\n[serial_number]\nmin_random_bits = 96\n";
        assert_eq!(
            changed_keys(old, new),
            [
                "renewal.rekey: removed (was \"required\")",
                "serial_number.min_random_bits: added = 96",
                "validity.max_days: 398 → 200",
            ]
        );
    }

    #[test]
    fn changed_keys_of_a_comment_edit_is_empty() {
        assert!(changed_keys("a = 1\n", "# note\na = 1\n").is_empty());
    }

    #[test]
    fn changed_keys_of_broken_toml_says_so() {
        assert_eq!(changed_keys("a = ", "a = 1").len(), 1);
    }
}
