//! The built-in level baselines: the three levels as compiled into the program, which the files
//! in a data directory may only narrow and which every certificate must also satisfy.
//!
//! The shipped level files use placeholder OIDs under the RFC 5612 documentation arc
//! (`1.3.6.1.4.1.32473`). A production CA replaces that arc by its own, keeping the numbering
//! below it (`….7.1.1` for Basic, and so on): [`bind_placeholder_arc`] rebinds the built-in level
//! to the arc a level file uses, so that the replacement is not a widening and the lint expects
//! the CA's real OIDs.

use std::collections::BTreeMap;

use super::model::{Level, Policy};
use super::narrow::{pen_arc, under_arc};

/// The RFC 5612 documentation enterprise arc the shipped files use for every placeholder OID.
pub(super) const DOCUMENTATION_ARC: &str = "1.3.6.1.4.1.32473";

/// The built-in `builtin` level with its placeholder OIDs moved to the arc that `loaded` (the
/// level file of the same level) uses for `policy.certificate_policy_oid`.
///
/// Nothing is rebound when the file keeps the placeholders, or when its OID does not end in the
/// built-in numbering: the narrowing check then reports `policy.certificate_policy_oid`.
pub(super) fn bind_placeholder_arc(builtin: &Policy, loaded: &Policy) -> Policy {
    let mut bound = builtin.clone();
    let Some(arc) = replacement_arc(
        &builtin.policy.certificate_policy_oid,
        &loaded.policy.certificate_policy_oid,
    ) else {
        return bound;
    };
    let rebind = |oid: &mut String| {
        if let Some(rest) = oid.strip_prefix(DOCUMENTATION_ARC)
            && rest.starts_with('.')
        {
            *oid = format!("{arc}{rest}");
        }
    };
    rebind(&mut bound.policy.certificate_policy_oid);
    let cp = &mut bound.extensions.certificate_policies;
    cp.required_oids.iter_mut().for_each(rebind);
    cp.optional_oids.iter_mut().for_each(rebind);
    bound
}

/// The arc replacing the documentation arc: `loaded` minus the built-in numbering (`.7.1.1`).
fn replacement_arc<'a>(builtin_oid: &str, loaded_oid: &'a str) -> Option<&'a str> {
    let numbering = builtin_oid.strip_prefix(DOCUMENTATION_ARC)?;
    let arc = loaded_oid.strip_suffix(numbering)?;
    let valid = !arc.is_empty()
        && arc.split('.').all(|arc| arc.parse::<u64>().is_ok())
        && !under_arc(Some(DOCUMENTATION_ARC), arc);
    valid.then_some(arc)
}

/// What a certificate under `product` must satisfy whatever the files say: its built-in level
/// (`level`, placeholders bound), with the product's own constants (`[manufacturer]`,
/// `[device]`) to fill the templates, and the policy OIDs it adds under its `pen_arc` allowed.
///
/// An OID of any built-in level (`builtin_oids`) is never added that way: a product cannot
/// make its certificates assert another level.
pub(super) fn for_product(level: &Policy, product: &Policy, builtin_oids: &[String]) -> Policy {
    let mut baseline = level.clone();
    baseline.manufacturer = product.manufacturer.clone();
    baseline.device = product.device.clone();
    let arc = pen_arc(product);
    let cp = &product.extensions.certificate_policies;
    let allowed = &mut baseline.extensions.certificate_policies.optional_oids;
    for oid in cp.required_oids.iter().chain(&cp.optional_oids) {
        if under_arc(arc, oid) && !builtin_oids.contains(oid) && !allowed.contains(oid) {
            allowed.push(oid.clone());
        }
    }
    baseline
}

/// Every policy OID the built-in levels name (level OIDs and markers).
pub(super) fn level_oids(levels: &BTreeMap<Level, Policy>) -> Vec<String> {
    let mut oids = Vec::new();
    for policy in levels.values() {
        let cp = &policy.extensions.certificate_policies;
        let all = std::iter::once(&policy.policy.certificate_policy_oid)
            .chain(&cp.required_oids)
            .chain(&cp.optional_oids);
        for oid in all {
            if !oids.contains(oid) {
                oids.push(oid.clone());
            }
        }
    }
    oids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_arc_keeps_the_builtin_numbering() {
        let builtin = "1.3.6.1.4.1.32473.7.1.1";
        for (loaded, arc) in [
            ("2.16.840.1.113883.99.7.1.1", Some("2.16.840.1.113883.99")),
            ("1.3.6.1.4.1.32473.7.1.1", None),
            ("1.3.6.1.4.1.32473.5.7.1.1", None),
            ("2.16.840.1.113883.99.7.1.3", None),
            (".7.1.1", None),
            ("7.1.1", None),
            ("2.x.7.1.1", None),
        ] {
            assert_eq!(replacement_arc(builtin, loaded), arc, "{loaded}");
        }
    }
}

#[cfg(test)]
mod set_tests {
    use crate::policy::{Level, PolicySet, PolicySource, shipped_sources};

    /// The shipped files with `edit(name, text)` applied.
    fn edited(edit: impl Fn(&str, &str) -> String) -> Vec<PolicySource> {
        let mut sources = shipped_sources();
        for source in &mut sources {
            source.text = edit(&source.name, &source.text);
        }
        sources
    }

    fn in_file(file: &'static str, from: &'static str, to: &'static str) -> Vec<PolicySource> {
        edited(move |name, text| {
            if name.ends_with(file) {
                assert!(text.contains(from), "{file} has no `{from}`");
                text.replace(from, to)
            } else {
                text.to_owned()
            }
        })
    }

    #[test]
    fn level_file_raising_max_days_is_refused_naming_file_key_and_builtin_limit() {
        let sources = in_file("iomt-basic.toml", "max_days = 398", "max_days = 3650");
        let err = PolicySet::from_sources(sources)
            .expect_err("widened")
            .to_string();
        for part in [
            "iomt-basic.toml",
            "validity.max_days",
            "398",
            "3650",
            "built-in",
        ] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
    }

    #[test]
    fn level_file_widenings_are_refused_at_their_key() {
        for (file, from, to, key) in [
            (
                "iomt-high.toml",
                "attestation = \"required\"",
                "attestation = \"optional\"",
                "key_protection.attestation",
            ),
            (
                "iomt-basic.toml",
                "max_ttl_hours = 24",
                "max_ttl_hours = 240",
                "enrollment.one_time_token.max_ttl_hours",
            ),
            (
                "iomt-high.toml",
                "bits = [3072, 4096]",
                "bits = [2048, 3072, 4096]",
                "keys.allowed",
            ),
            (
                "iomt-substantial.toml",
                "required_oids = [\"1.3.6.1.4.1.32473.7.1.2\"]",
                "required_oids = []",
                "extensions.certificate_policies.required_oids",
            ),
            (
                "iomt-basic.toml",
                "authorization_all_of = [\"preregistered-serial\"]",
                "authorization_all_of = []",
                "enrollment.authorization_all_of",
            ),
        ] {
            let err = PolicySet::from_sources(in_file(file, from, to))
                .expect_err(key)
                .to_string();
            assert!(err.contains(file) && err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn level_file_narrowing_is_accepted() {
        let sources = in_file("iomt-basic.toml", "max_days = 398", "max_days = 390");
        let set = PolicySet::from_sources(sources).expect("narrowed");
        assert_eq!(set.level(Level::Basic).validity.max_days, 390);
        assert_eq!(set.builtin_level(Level::Basic).validity.max_days, 398);
    }

    #[test]
    fn operator_tuned_keys_may_be_lowered_in_every_file() {
        let sources = edited(|_, text| {
            text.replace(
                "min_reenroll_interval_minutes = 60",
                "min_reenroll_interval_minutes = 0",
            )
        });
        PolicySet::from_sources(sources).expect("an operational throttle");
    }

    #[test]
    fn product_widening_is_refused() {
        let sources = in_file(
            "example-infusion-pump.toml",
            "max_days = 365",
            "max_days = 1825",
        );
        let err = PolicySet::from_sources(sources)
            .expect_err("widened")
            .to_string();
        assert!(
            err.contains("example-infusion-pump.toml") && err.contains("validity.max_days"),
            "{err}"
        );
    }

    #[test]
    fn placeholder_arc_replaced_by_the_cas_own_is_not_widening() {
        let sources = edited(|_, text| {
            text.replace("1.3.6.1.4.1.32473.7.", "2.16.840.1.113883.99.7.")
                .replace("placeholder_oids = true", "placeholder_oids = false")
        });
        let set = PolicySet::from_sources(sources).expect("own arc");
        let builtin = set.builtin_level(Level::High);
        assert_eq!(
            builtin.policy.certificate_policy_oid,
            "2.16.840.1.113883.99.7.1.3"
        );
        let required = &builtin.extensions.certificate_policies.required_oids;
        assert!(required.contains(&"2.16.840.1.113883.99.7.2.10".to_owned()));
    }

    #[test]
    fn level_oid_outside_the_builtin_numbering_is_refused() {
        let sources =
            edited(|_, text| text.replace("1.3.6.1.4.1.32473.7.1.1", "2.16.840.1.113883.99.5"));
        let err = PolicySet::from_sources(sources)
            .expect_err("moved")
            .to_string();
        assert!(err.contains("policy.certificate_policy_oid"), "{err}");
    }

    #[test]
    fn danger_loader_keeps_the_builtin_baseline_for_the_lint() {
        let sources = edited(|name, text| {
            if name.ends_with("iomt-basic.toml") {
                text.replace("max_days = 398", "max_days = 3650")
            } else if name.ends_with("example-infusion-pump.toml") {
                text.replace("max_days = 365", "max_days = 1825")
            } else {
                text.to_owned()
            }
        });
        assert!(PolicySet::from_sources(sources.clone()).is_err());
        let set = PolicySet::danger_from_sources_without_baseline_check(sources).expect("loaded");
        let pump = set.product("example-infusion-pump").expect("pump");
        assert_eq!(pump.validity.max_days, 1825);
        let baseline = set.baseline_for(pump);
        assert_eq!(baseline.validity.max_days, 398);
        assert_eq!(baseline.device, pump.device);
        let allowed = &baseline.extensions.certificate_policies.optional_oids;
        assert!(allowed.contains(&"1.3.6.1.4.1.32473.98.1.1".to_owned()));
    }

    #[test]
    fn product_cannot_add_another_levels_oid_to_its_baseline() {
        let sources = in_file(
            "example-infusion-pump.toml",
            "pen_arc = \"1.3.6.1.4.1.32473.98\"",
            "pen_arc = \"1.3.6.1.4.1.32473\"",
        );
        let mut sources = sources;
        let pump = sources
            .iter_mut()
            .find(|s| s.name.ends_with("example-infusion-pump.toml"))
            .expect("pump");
        pump.text = pump.text.replace(
            "\"1.3.6.1.4.1.32473.98.1.1\", # PLACEHOLDER IP-200 product-line policy",
            "\"1.3.6.1.4.1.32473.98.1.1\", \"1.3.6.1.4.1.32473.7.1.3\",",
        );
        let set = PolicySet::danger_from_sources_without_baseline_check(sources).expect("loaded");
        let pump = set.product("example-infusion-pump").expect("pump");
        let baseline = set.baseline_for(pump);
        let cp = &baseline.extensions.certificate_policies;
        let high = "1.3.6.1.4.1.32473.7.1.3".to_owned();
        assert!(!cp.optional_oids.contains(&high) && !cp.required_oids.contains(&high));
    }
}
