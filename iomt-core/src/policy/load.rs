//! Reads `policies/*.toml`, resolves products against their level, and refuses bad files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{PolicyError, Violation};
use super::model::{Level, Policy};
use super::{baseline, narrow, validate};

/// Every policy the CA enforces: the three levels and the products that narrow them, each
/// checked against the level baselines compiled into the program.
#[derive(Debug, Clone)]
pub struct PolicySet {
    levels: BTreeMap<Level, Policy>,
    products: BTreeMap<String, Policy>,
    /// The built-in levels (placeholder OIDs bound to the loaded files' arc).
    baselines: BTreeMap<Level, Policy>,
    /// Per product: its built-in level with the product's constants, for the lint.
    product_baselines: BTreeMap<String, Policy>,
    /// Every file loaded, with its SHA-256, for the audit trail.
    files: Vec<PolicyFile>,
    /// File name and SHA-256 (hex) of every file loaded.
    sources: Vec<(String, String)>,
}

/// One file's raw text, named as the operator knows it.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// One loaded file: its name, SHA-256 (hex) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The path as loaded (or the name given with the text).
    pub name: String,
    /// SHA-256 of the text, lowercase hex.
    pub sha256: String,
    /// The file's content.
    pub text: String,
}

/// Whether the files are held to the built-in level baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaselineCheck {
    Enforce,
    DangerSkip,
}

impl PolicySet {
    /// Loads every `*.toml` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            sources.push(PolicySource {
                name: path.display().to_string(),
                text,
            });
        }
        PolicySet::from_sources(sources)
    }

    /// Resolves a set of policy files given as text (base levels first, then products).
    ///
    /// A level file may only narrow the same level as built into the program, and a product
    /// may only narrow its loaded level and never exceed the built-in one (docs/PROFILE.md §4.2);
    /// any widening refuses the set, naming the file, the key and the limit.
    pub fn from_sources(sources: Vec<PolicySource>) -> Result<PolicySet, PolicyError> {
        PolicySet::resolve(sources, BaselineCheck::Enforce)
    }

    /// Like [`PolicySet::from_sources`], but accepts level and product files that widen the
    /// built-in levels. Only for tests proving that the pre-issuance lint still holds every
    /// certificate to the built-in baseline ([`PolicySet::baseline_for`]).
    #[doc(hidden)]
    pub fn danger_from_sources_without_baseline_check(
        sources: Vec<PolicySource>,
    ) -> Result<PolicySet, PolicyError> {
        PolicySet::resolve(sources, BaselineCheck::DangerSkip)
    }

    fn resolve(sources: Vec<PolicySource>, check: BaselineCheck) -> Result<PolicySet, PolicyError> {
        let builtin_sources = super::shipped_sources();
        let (builtin, _) = parse_levels(&parse_tables(&builtin_sources)?)?;
        let parsed = parse_tables(&sources)?;
        let (levels, base_tables) = parse_levels(&parsed)?;

        let mut baselines = BTreeMap::new();
        for (level, loaded) in &levels {
            let baseline = baseline::bind_placeholder_arc(&builtin[level], loaded);
            if check == BaselineCheck::Enforce {
                let file = parsed
                    .iter()
                    .find(|(_, table, extends)| {
                        extends.is_empty() && level_of(table) == Some(level.as_str())
                    })
                    .map_or("", |(source, _, _)| source.name.as_str());
                reject(file, narrow::check_level_file(&baseline, loaded))?;
            }
            baselines.insert(*level, baseline);
        }
        let builtin_oids = baseline::level_oids(&baselines);

        let mut products = BTreeMap::new();
        let mut product_baselines = BTreeMap::new();
        for (source, table, extends) in &parsed {
            if extends.is_empty() {
                continue;
            }
            let Some((base_table, base_level)) = base_tables.get(extends) else {
                return Err(PolicyError::Invalid {
                    file: source.name.clone(),
                    violations: vec![Violation::new(
                        "policy.extends",
                        format!("`{extends}` is not one of the level policies"),
                    )],
                });
            };
            let merged = merge(base_table.clone(), table.clone());
            let policy = deserialize(&source.name, toml::Value::Table(merged))?;
            let base = &levels[base_level];
            let mut violations = validate::product(&policy);
            violations.extend(narrow::check(base, &policy));
            if violations.is_empty() && check == BaselineCheck::Enforce {
                let builtin = &baselines[base_level];
                violations.extend(narrow::check_product_against_builtin(builtin, &policy));
            }
            reject(&source.name, violations)?;
            if levels.values().any(|l| l.policy.id == policy.policy.id)
                || products.contains_key(&policy.policy.id)
            {
                return Err(PolicyError::DuplicateId {
                    file: source.name.clone(),
                    id: policy.policy.id.clone(),
                });
            }
            let baseline = baseline::for_product(&baselines[base_level], &policy, &builtin_oids);
            product_baselines.insert(policy.policy.id.clone(), baseline);
            products.insert(policy.policy.id.clone(), policy);
        }

        let files: Vec<PolicyFile> = sources
            .into_iter()
            .map(|s| PolicyFile {
                sha256: sha256_hex(s.text.as_bytes()),
                name: s.name,
                text: s.text,
            })
            .collect();
        let sources = files
            .iter()
            .map(|f| (f.name.clone(), f.sha256.clone()))
            .collect();
        Ok(PolicySet {
            levels,
            products,
            baselines,
            product_baselines,
            files,
            sources,
        })
    }

    /// The policy of a level.
    pub fn level(&self, level: Level) -> &Policy {
        // `from_sources` refuses a set without all three levels.
        &self.levels[&level]
    }

    /// A product policy by id.
    pub fn product(&self, id: &str) -> Option<&Policy> {
        self.products.get(id)
    }

    /// All product policies, by id.
    pub fn products(&self) -> impl Iterator<Item = &Policy> {
        self.products.values()
    }

    /// Loaded files with their SHA-256.
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    /// Loaded files with their SHA-256 and text.
    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// The built-in level (placeholder OIDs bound to the loaded files' arc).
    pub fn builtin_level(&self, level: Level) -> &Policy {
        // `resolve` builds a baseline for each of the three levels it requires.
        &self.baselines[&level]
    }

    /// What a certificate issued under `policy` (a level or product of this set) must also
    /// satisfy whatever the files say: its built-in level, with a product's own constants and
    /// the policy OIDs it adds under its `pen_arc`. The pre-issuance lint checks both.
    pub fn baseline_for(&self, policy: &Policy) -> &Policy {
        self.product_baselines
            .get(&policy.policy.id)
            .unwrap_or_else(|| self.builtin_level(policy.policy.level))
    }

    /// Every policy OID a certificate under `level` may carry: what its issuing CA must assert
    /// (docs/PROFILE.md §3.3, IOMT-CA-01).
    pub fn issuer_policy_oids(&self, level: Level) -> Vec<String> {
        let mut oids: Vec<String> = Vec::new();
        let policies = std::iter::once(self.level(level))
            .chain(self.products.values().filter(|p| p.policy.level == level));
        for policy in policies {
            let cp = &policy.extensions.certificate_policies;
            for oid in cp.required_oids.iter().chain(&cp.optional_oids) {
                if !oids.contains(oid) {
                    oids.push(oid.clone());
                }
            }
        }
        oids
    }

    /// Refuses the set for a production CA while any file still uses placeholder OIDs.
    pub fn ensure_production_ready(&self) -> Result<(), PolicyError> {
        let placeholders: Vec<String> = self
            .levels
            .values()
            .chain(self.products.values())
            .filter(|p| p.policy.placeholder_oids || uses_documentation_arc(p))
            .map(|p| p.policy.id.clone())
            .collect();
        if placeholders.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::PlaceholderOids(placeholders))
        }
    }
}

/// True when any OID of the policy lies under the RFC 5612 documentation arc.
fn uses_documentation_arc(policy: &Policy) -> bool {
    let cp = &policy.extensions.certificate_policies;
    std::iter::once(&policy.policy.certificate_policy_oid)
        .chain(&cp.required_oids)
        .chain(&cp.optional_oids)
        .chain(&policy.san.hardware_module_name.hw_type_oids)
        .any(|oid| narrow::under_arc(Some(baseline::DOCUMENTATION_ARC), oid))
}

/// Each source parsed as TOML, with its `policy.extends`.
fn parse_tables(
    sources: &[PolicySource],
) -> Result<Vec<(&PolicySource, toml::Table, String)>, PolicyError> {
    let mut parsed = Vec::with_capacity(sources.len());
    for source in sources {
        let table: toml::Table = toml::from_str(&source.text).map_err(|e| PolicyError::Syntax {
            file: source.name.clone(),
            message: e.to_string(),
        })?;
        let extends = table
            .get("policy")
            .and_then(|p| p.get("extends"))
            .and_then(|e| e.as_str())
            .ok_or_else(|| PolicyError::Invalid {
                file: source.name.clone(),
                violations: vec![Violation::new("policy.extends", "missing")],
            })?
            .to_owned();
        parsed.push((source, table, extends));
    }
    Ok(parsed)
}

/// The base level tables, keyed by policy id.
type BaseTables = BTreeMap<String, (toml::Table, Level)>;

/// The three base levels among `parsed` (files with an empty `extends`).
fn parse_levels(
    parsed: &[(&PolicySource, toml::Table, String)],
) -> Result<(BTreeMap<Level, Policy>, BaseTables), PolicyError> {
    let mut levels = BTreeMap::new();
    let mut base_tables = BTreeMap::new();
    for (source, table, extends) in parsed {
        if !extends.is_empty() {
            continue;
        }
        let policy = deserialize(&source.name, toml::Value::Table(table.clone()))?;
        reject(&source.name, validate::base(&policy))?;
        if levels.contains_key(&policy.policy.level) {
            return Err(PolicyError::DuplicateLevel {
                file: source.name.clone(),
                level: policy.policy.level.as_str(),
            });
        }
        base_tables.insert(
            policy.policy.id.clone(),
            (table.clone(), policy.policy.level),
        );
        levels.insert(policy.policy.level, policy);
    }
    for level in Level::ALL {
        if !levels.contains_key(&level) {
            return Err(PolicyError::MissingLevel(level.as_str()));
        }
    }
    Ok((levels, base_tables))
}

/// `policy.level` of a parsed file, as written.
fn level_of(table: &toml::Table) -> Option<&str> {
    table.get("policy")?.get("level")?.as_str()
}

fn deserialize(file: &str, value: toml::Value) -> Result<Policy, PolicyError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        PolicyError::Schema {
            file: file.to_owned(),
            key,
            message: e.into_inner().to_string(),
        }
    })
}

fn reject(file: &str, violations: Vec<Violation>) -> Result<(), PolicyError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::Invalid {
            file: file.to_owned(),
            violations,
        })
    }
}

/// Overlays `top` on `base`: tables merge key by key, everything else is replaced.
fn merge(mut base: toml::Table, top: toml::Table) -> toml::Table {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => {
                let merged = merge(std::mem::take(below), above);
                *below = merged;
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    base
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Lets `Deserialize` stay private to the loader while tests build policies from strings.
#[cfg(test)]
pub(crate) fn parse_base_for_tests(text: &str) -> Policy {
    use serde::Deserialize;
    Policy::deserialize(toml::Value::Table(toml::from_str(text).expect("toml"))).expect("policy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_load_with_both_products() {
        let set = PolicySet::from_sources(crate::policy::shipped_sources()).expect("load");
        let pump = set.product("example-infusion-pump").expect("pump");
        assert_eq!(pump.policy.level, Level::Basic);
        assert_eq!(
            pump.policy.certificate_policy_oid,
            "1.3.6.1.4.1.32473.7.1.1"
        );
        assert!(set.product("example-patient-monitor").is_some());
        assert_eq!(set.sources().len(), 6);
    }

    #[test]
    fn shipped_policies_are_refused_for_production() {
        let set = PolicySet::from_sources(crate::policy::shipped_sources()).expect("load");
        let err = set.ensure_production_ready().expect_err("placeholders");
        assert!(err.to_string().contains("iomt-basic"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let mut sources = crate::policy::shipped_sources();
        let pump = sources
            .iter_mut()
            .find(|s| s.name.contains("pump"))
            .expect("pump");
        pump.text
            .push_str("\n[enrollment.station]\nmax_per_shift = 3\n");
        let err = PolicySet::from_sources(sources).expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("example-infusion-pump.toml"), "{text}");
        assert!(text.contains("max_per_shift"), "{text}");
    }

    /// The shipped policies with `from` replaced by `to` in the Basic level's file.
    fn basic_edited(from: &str, to: &str) -> Vec<PolicySource> {
        let mut sources = crate::policy::shipped_sources();
        let basic = sources
            .iter_mut()
            .find(|s| s.name.contains("iomt-basic"))
            .expect("basic");
        basic.text = basic.text.replace(from, to);
        sources
    }

    #[test]
    fn base_file_missing_a_table_is_refused() {
        let sources = basic_edited("[serial_number]\nmin_random_bits = 64\n", "");
        let err = PolicySet::from_sources(sources).expect_err("missing table");
        assert!(err.to_string().contains("serial_number"), "{err}");
    }

    #[test]
    fn serial_randomness_beyond_what_a_serial_holds_is_refused() {
        for (bits, refused) in [(63, true), (64, false), (152, false), (153, true)] {
            let sources = basic_edited(
                "min_random_bits = 64\n",
                &format!("min_random_bits = {bits}\n"),
            );
            match PolicySet::from_sources(sources) {
                Err(err) => {
                    assert!(refused, "{bits} bits: {err}");
                    assert!(err.to_string().contains("min_random_bits"), "{err}");
                }
                Ok(_) => assert!(!refused, "{bits} bits were accepted"),
            }
        }
    }
}

#[cfg(test)]
mod product_validation_tests {
    use crate::policy::{PolicySet, shipped_sources};

    #[test]
    fn hw_type_outside_the_allowed_list_is_refused() {
        let mut sources = shipped_sources();
        let pump = sources
            .iter_mut()
            .find(|s| s.name.contains("pump"))
            .expect("pump");
        pump.text = pump.text.replace(
            "hw_type_oid = \"1.3.6.1.4.1.32473.98.4.1\"",
            "hw_type_oid = \"1.3.6.1.4.1.32473.98.4.9\"",
        );
        let err = PolicySet::from_sources(sources)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("device.hw_type_oid"), "{err}");
    }

    #[test]
    fn unknown_eku_name_is_refused() {
        let mut sources = shipped_sources();
        let pump = sources
            .iter_mut()
            .find(|s| s.name.contains("pump"))
            .expect("pump");
        pump.text = pump.text.replace(
            "optional = [] # the pump",
            "optional = [\"id-kp-codeSigning\"] # the pump",
        );
        let err = PolicySet::from_sources(sources)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("id-kp-codeSigning"), "{err}");
    }
}
