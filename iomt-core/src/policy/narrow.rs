//! docs/PROFILE.md §4.2: a product policy may only narrow its level, and a level file in the data
//! directory may only narrow the built-in level.
//!
//! [`check`] compares a product (already merged onto its base level) with that base, one rule
//! family per function: identity, key allow-list, other allow-lists, required lists, maxima,
//! minima, ladders, restrictive booleans and templates. Informational fields (`policy.id`,
//! `name`, `status`, `description`, `placeholder_oids`) and the product's own `[manufacturer]` /
//! `[device]` tables have no narrowing rule. [`check_level_file`] applies the same rules to a
//! level file against the level compiled into the program.

use std::fmt::Display;

use super::error::Violation;
use super::model::{
    AllowedKey, AuthorizationFactor, KeyAlgorithm, KeyProtection, Policy, Presence, Strength,
};
use super::template::bind_product;

/// Every way `product` widens `base`; empty when it only narrows.
///
/// `product` is the product file merged onto `base`, so a key it does not mention equals the
/// base's. Each [`Violation`] names the dotted key and says what the base allows and what the
/// product asked for.
pub fn check(base: &Policy, product: &Policy) -> Vec<Violation> {
    check_as(Narrower::PRODUCT, base, product)
}

/// Every way the level file `level` widens `builtin`, the same level as compiled into the
/// program (its placeholder OIDs already bound to the file's arc); empty when it only narrows.
///
/// The rules are those of [`check`], except for the keys in [`OPERATOR_TUNED`].
pub fn check_level_file(builtin: &Policy, level: &Policy) -> Vec<Violation> {
    check_as(Narrower::LEVEL_FILE, builtin, level)
}

/// Every way `product` (merged onto its loaded level) widens `builtin`, its level as compiled
/// into the program; empty when it stays within the built-in level.
pub fn check_product_against_builtin(builtin: &Policy, product: &Policy) -> Vec<Violation> {
    check_as(Narrower::PRODUCT_AGAINST_BUILTIN, builtin, product)
}

/// Operational throttles that are not part of the assurance profile (docs/PROFILE.md §4.4; no
/// certificate shows them): the files in the data directory may set them freely
/// against the built-in level; a product still only narrows its loaded level's value.
pub const OPERATOR_TUNED: [&str; 1] = ["renewal.min_reenroll_interval_minutes"];

/// What narrows which base; both are named in every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Narrower {
    /// The file being checked: `product` or `level file`.
    noun: &'static str,
    /// The policy it is checked against: `base` or `built-in level`.
    base: &'static str,
    /// True against the built-in level, where the [`OPERATOR_TUNED`] keys are the data
    /// directory's to set.
    skip_operator_tuned: bool,
}

impl Narrower {
    /// A product file against its loaded level.
    const PRODUCT: Narrower = Narrower {
        noun: "product",
        base: "base",
        skip_operator_tuned: false,
    };
    /// A level file in the data directory against the built-in level.
    const LEVEL_FILE: Narrower = Narrower {
        noun: "level file",
        base: "built-in level",
        skip_operator_tuned: true,
    };
    /// A product file against the built-in level.
    const PRODUCT_AGAINST_BUILTIN: Narrower = Narrower {
        noun: "product",
        base: "built-in level",
        skip_operator_tuned: true,
    };
}

fn check_as(narrower: Narrower, base: &Policy, product: &Policy) -> Vec<Violation> {
    let mut f = Findings {
        narrower,
        base,
        product,
        out: Vec::new(),
    };
    identity(&mut f);
    allowed_keys(&mut f);
    allow_lists(&mut f);
    required_lists(&mut f);
    maxima(&mut f);
    minima(&mut f);
    ladders(&mut f);
    booleans(&mut f);
    templates(&mut f);
    f.out
}

/// The pair being compared and what has been found so far.
struct Findings<'a> {
    narrower: Narrower,
    base: &'a Policy,
    product: &'a Policy,
    out: Vec<Violation>,
}

impl Findings<'_> {
    fn push(&mut self, key: &str, message: String) {
        self.out.push(Violation::new(key, message));
    }

    /// How messages name the base: ``base `iomt-basic` `` or ``built-in level `iomt-basic` ``.
    fn base_id(&self) -> String {
        format!("{} `{}`", self.narrower.base, self.base.policy.id)
    }

    /// How messages name the file being checked: `product` or `level file`.
    fn noun(&self) -> &'static str {
        self.narrower.noun
    }

    /// Binds the product's `[manufacturer]`/`[device]` constants into `template` (§4.2 rule 3).
    fn bind(&self, template: &str) -> String {
        bind_product(
            template,
            self.product.manufacturer.as_ref(),
            self.product.device.as_ref(),
        )
    }

    fn at_most<T: PartialOrd + Display>(&mut self, key: &str, base: T, product: T) {
        if product > base {
            let noun = self.noun();
            let message = format!(
                "the {} allows at most {base}; this {noun} asks for {product} \
                 (a {noun} may only lower a maximum)",
                self.base_id()
            );
            self.push(key, message);
        }
    }

    fn at_least<T: PartialOrd + Display>(&mut self, key: &str, base: T, product: T) {
        if product < base {
            let noun = self.noun();
            let message = format!(
                "the {} requires at least {base}; this {noun} asks for {product} \
                 (a {noun} may only raise a minimum)",
                self.base_id()
            );
            self.push(key, message);
        }
    }

    fn equal<T: PartialEq + Display>(&mut self, key: &str, base: T, product: T) {
        if product != base {
            let noun = self.noun();
            let message = format!(
                "must stay `{base}` as in the {}; this {noun} sets `{product}`",
                self.base_id()
            );
            self.push(key, message);
        }
    }

    /// Every `product` entry must be in `base` or be accepted by `also_allowed`; `rule` tells
    /// the operator what the product may do instead.
    fn subset<T: AsRef<str>>(
        &mut self,
        key: &str,
        (base, product): (&[T], &[T]),
        also_allowed: impl Fn(&str) -> bool,
        rule: &str,
    ) {
        let extra: Vec<&str> = product
            .iter()
            .map(AsRef::as_ref)
            .filter(|item| !base.iter().any(|b| b.as_ref() == *item) && !also_allowed(item))
            .collect();
        if !extra.is_empty() {
            let message = format!(
                "{} not allowed by the {}, which allows [{}]; {rule}",
                quoted(&extra),
                self.base_id(),
                quoted(base),
            );
            self.push(key, message);
        }
    }

    /// Every `base` entry must stay in `product`.
    fn superset<T: AsRef<str>>(&mut self, key: &str, base: &[T], product: &[T]) {
        let missing: Vec<&str> = base
            .iter()
            .map(AsRef::as_ref)
            .filter(|item| !product.iter().any(|p| p.as_ref() == *item))
            .collect();
        if !missing.is_empty() {
            let noun = self.noun();
            let message = format!(
                "{} required by the {} but dropped by this {noun}; \
                 a {noun} may only add entries",
                quoted(&missing),
                self.base_id(),
            );
            self.push(key, message);
        }
    }

    /// A ladder value (`strength`, `minimum`) may only move up.
    fn up<T: Ladder>(&mut self, key: &str, base: T, product: T) {
        if product < base {
            let noun = self.noun();
            let message = format!(
                "the {} sets `{}`; this {noun} lowers it to `{}` \
                 (it may only move up {})",
                self.base_id(),
                base.name(),
                product.name(),
                T::ORDER,
            );
            self.push(key, message);
        }
    }

    /// A presence may only move up, except that `optional` may become `forbidden`, and
    /// `forbidden` must stay `forbidden`.
    fn presence(&mut self, key: &str, base: Presence, product: Presence) {
        let widened = match (base, product) {
            (Presence::Forbidden, product) => product != Presence::Forbidden,
            (Presence::Optional, Presence::Forbidden) => false,
            (base, product) => product < base,
        };
        if widened {
            let noun = self.noun();
            let message = format!(
                "the {} sets `{}`; this {noun} sets `{}` (presence may only move up {}, \
                 `optional` may become `forbidden`, and `forbidden` must stay `forbidden`)",
                self.base_id(),
                base.name(),
                product.name(),
                Presence::ORDER,
            );
            self.push(key, message);
        }
    }

    /// `product` must equal `base` once the product's constants are bound into both.
    fn template(&mut self, key: &str, base: &str, product: &str) {
        let bound = self.bind(base);
        if self.bind(product) != bound {
            let noun = self.noun();
            let message = format!(
                "must be the base template `{base}` with this {noun}'s [manufacturer]/[device] \
                 values bound, i.e. `{bound}`; this {noun} sets `{product}`"
            );
            self.push(key, message);
        }
    }
}

/// An ordered ladder from docs/PROFILE.md §4.1, with the names used in policy files.
trait Ladder: Copy + PartialOrd {
    const ORDER: &'static str;
    fn name(self) -> &'static str;
}

impl Ladder for Presence {
    const ORDER: &'static str = "forbidden < optional < recommended < required";
    fn name(self) -> &'static str {
        match self {
            Presence::Forbidden => "forbidden",
            Presence::Optional => "optional",
            Presence::Recommended => "recommended",
            Presence::Required => "required",
        }
    }
}

impl Ladder for Strength {
    const ORDER: &'static str = "none < optional < recommended < required";
    fn name(self) -> &'static str {
        match self {
            Strength::None => "none",
            Strength::Optional => "optional",
            Strength::Recommended => "recommended",
            Strength::Required => "required",
        }
    }
}

impl Ladder for KeyProtection {
    const ORDER: &'static str = "software < hardware < hardware-attested";
    fn name(self) -> &'static str {
        match self {
            KeyProtection::Software => "software",
            KeyProtection::Hardware => "hardware",
            KeyProtection::HardwareAttested => "hardware-attested",
        }
    }
}

fn quoted<T: AsRef<str>>(items: &[T]) -> String {
    items
        .iter()
        .map(|item| format!("`{}`", item.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn factor_names(factors: &[AuthorizationFactor]) -> Vec<&'static str> {
    factors.iter().map(|f| f.as_str()).collect()
}

/// `policy.level` and `policy.certificate_policy_oid` are fixed by the base.
fn identity(f: &mut Findings<'_>) {
    let (b, p) = (&f.base.policy, &f.product.policy);
    f.equal("policy.level", b.level.as_str(), p.level.as_str());
    f.equal(
        "policy.certificate_policy_oid",
        &b.certificate_policy_oid,
        &p.certificate_policy_oid,
    );
}

/// Each `[[keys.allowed]]` entry must be covered by a base entry with a sunset no earlier.
fn allowed_keys(f: &mut Findings<'_>) {
    let base = &f.base.keys.allowed;
    let offered = base.iter().map(describe).collect::<Vec<_>>().join(", ");
    for (index, entry) in f.product.keys.allowed.iter().enumerate() {
        let key = format!("keys.allowed[{index}]");
        // Malformed entries (an ECDSA entry without a curve, say) are reported by validation.
        let sizes: Vec<(String, Vec<&AllowedKey>)> = match entry.algorithm {
            KeyAlgorithm::Ecdsa => entry
                .curve
                .map(|curve| {
                    let cover = base.iter().filter(|b| b.allows_curve(curve)).collect();
                    (format!("ECDSA {}", curve.as_str()), cover)
                })
                .into_iter()
                .collect(),
            KeyAlgorithm::Rsa => entry
                .bits
                .iter()
                .flatten()
                .map(|&bits| {
                    let cover = base.iter().filter(|b| b.allows_rsa(bits)).collect();
                    (format!("RSA-{bits}"), cover)
                })
                .collect(),
        };
        let sunset = entry.sunset_date();
        for (what, cover) in sizes {
            match cover.iter().map(|b| b.sunset_date()).max() {
                None => {
                    let message = format!(
                        "{what} is not allowed by the {}, which allows {offered}",
                        f.base_id()
                    );
                    f.push(&key, message);
                }
                Some(base_sunset) if sunset > base_sunset => {
                    let message = format!(
                        "{what} sunset {sunset} is later than {base_sunset}, the sunset in the \
                         {}; use {base_sunset} or earlier",
                        f.base_id()
                    );
                    f.push(&format!("{key}.sunset"), message);
                }
                Some(_) => {}
            }
        }
    }
}

/// One base key entry as an operator reads it: `RSA-3072/4096 until 2035-12-31`.
fn describe(entry: &AllowedKey) -> String {
    let what = match (entry.algorithm, entry.curve, &entry.bits) {
        (KeyAlgorithm::Ecdsa, Some(curve), _) => format!("ECDSA {}", curve.as_str()),
        (KeyAlgorithm::Rsa, _, Some(bits)) => {
            let sizes: Vec<String> = bits.iter().map(u32::to_string).collect();
            format!("RSA-{}", sizes.join("/"))
        }
        (KeyAlgorithm::Ecdsa, None, _) => "ECDSA (no curve)".to_owned(),
        (KeyAlgorithm::Rsa, _, None) => "RSA (no sizes)".to_owned(),
    };
    format!("{what} until {}", entry.sunset_date())
}

/// A dotted key and how to borrow its list from a policy.
type ListField = (&'static str, fn(&Policy) -> &[String]);

/// Allow-lists compared as they stand: may only shrink.
const ALLOW_LISTS: [ListField; 4] = [
    ("key_protection.allowed_modules", |p| {
        &p.key_protection.allowed_modules
    }),
    ("san.uri.allowed_schemes", |p| &p.san.uri.allowed_schemes),
    ("extensions.extended_key_usage.optional", |p| {
        &p.extensions.extended_key_usage.optional
    }),
    ("extensions.key_usage.rsa_optional", |p| {
        &p.extensions.key_usage.rsa_optional
    }),
];

/// What may be done to a plain allow-list.
const ONLY_REMOVE: &str = "entries may only be removed";

/// The product's `manufacturer.pen_arc`, if it has a non-empty one.
pub(super) fn pen_arc(product: &Policy) -> Option<&str> {
    let arc = product.manufacturer.as_ref().map(|m| m.pen_arc.as_str());
    arc.filter(|arc| !arc.is_empty())
}

/// True when `oid` is `arc` itself or lies under it.
pub(super) fn under_arc(arc: Option<&str>, oid: &str) -> bool {
    arc.and_then(|arc| oid.strip_prefix(arc))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Allow-lists may only shrink (policy OIDs may also grow under `manufacturer.pen_arc`).
fn allow_lists(f: &mut Findings<'_>) {
    let (b, p) = (f.base, f.product);
    for (key, list) in ALLOW_LISTS {
        f.subset(key, (list(b), list(p)), |_| false, ONLY_REMOVE);
    }
    let arc = pen_arc(p);
    f.subset(
        "extensions.certificate_policies.optional_oids",
        (
            &b.extensions.certificate_policies.optional_oids,
            &p.extensions.certificate_policies.optional_oids,
        ),
        |oid| under_arc(arc, oid),
        "entries may only be removed, or OIDs added under manufacturer.pen_arc",
    );
    let hw_type_oids = |policy: &Policy| -> Vec<String> {
        let templates = &policy.san.hardware_module_name.hw_type_oids;
        templates.iter().map(|t| f.bind(t)).collect()
    };
    let hw_types = (hw_type_oids(b), hw_type_oids(p));
    let key = "san.hardware_module_name.hw_type_oids";
    f.subset(key, (&hw_types.0, &hw_types.1), |_| false, ONLY_REMOVE);
    authorization_any_of(f);
}

/// `authorization_any_of` may only shrink; emptying a non-empty base list drops the "one of"
/// requirement, which is widening unless `authorization_all_of` now demands one of those factors.
fn authorization_any_of(f: &mut Findings<'_>) {
    let (b, p) = (&f.base.enrollment, &f.product.enrollment);
    let base = factor_names(&b.authorization_any_of);
    let product = factor_names(&p.authorization_any_of);
    let key = "enrollment.authorization_any_of";
    f.subset(key, (&base, &product), |_| false, ONLY_REMOVE);
    let covered = b
        .authorization_any_of
        .iter()
        .any(|factor| p.authorization_all_of.contains(factor));
    if !base.is_empty() && product.is_empty() && !covered {
        let message = format!(
            "the {} requires one of [{}]; an empty list drops that requirement unless \
             authorization_all_of names one of them",
            f.base_id(),
            quoted(&base),
        );
        f.push(key, message);
    }
}

/// Required lists may only grow, and only with values the base already allows.
fn required_lists(f: &mut Findings<'_>) {
    let (b, p) = (f.base, f.product);
    f.superset(
        "enrollment.authorization_all_of",
        &factor_names(&b.enrollment.authorization_all_of),
        &factor_names(&p.enrollment.authorization_all_of),
    );

    let (eku_b, eku_p) = (
        &b.extensions.extended_key_usage,
        &p.extensions.extended_key_usage,
    );
    let key = "extensions.extended_key_usage.required";
    f.superset(key, &eku_b.required, &eku_p.required);
    let allowed = [eku_b.required.as_slice(), &eku_b.optional].concat();
    let rule = "only EKUs the base lists as required or optional may be required";
    f.subset(key, (&allowed, &eku_p.required), |_| false, rule);

    let (cp_b, cp_p) = (
        &b.extensions.certificate_policies,
        &p.extensions.certificate_policies,
    );
    let key = "extensions.certificate_policies.required_oids";
    f.superset(key, &cp_b.required_oids, &cp_p.required_oids);
    let allowed = [cp_b.required_oids.as_slice(), &cp_b.optional_oids].concat();
    let arc = pen_arc(p);
    let rule = "an added OID must be in the base's optional_oids or under manufacturer.pen_arc";
    f.subset(
        key,
        (&allowed, &cp_p.required_oids),
        |oid| under_arc(arc, oid),
        rule,
    );
}

/// A dotted key and how to read its value from a policy.
type Field<T> = (&'static str, fn(&Policy) -> T);

/// Maxima: may only go down (the subject `max_length`s are checked in [`templates`]).
const MAXIMA: [Field<u32>; 10] = [
    ("validity.max_days", |p| p.validity.max_days),
    ("validity.max_backdate_seconds", |p| {
        p.validity.max_backdate_seconds
    }),
    ("enrollment.one_time_token.max_ttl_hours", |p| {
        p.enrollment.one_time_token.max_ttl_hours
    }),
    (
        "enrollment.station.max_issuance_per_station_per_hour",
        |p| p.enrollment.station.max_issuance_per_station_per_hour,
    ),
    ("revocation.crl_max_next_update_hours", |p| {
        p.revocation.crl_max_next_update_hours
    }),
    ("revocation.ocsp_max_response_validity_hours", |p| {
        p.revocation.ocsp_max_response_validity_hours
    }),
    ("revocation.revoke_on_key_compromise_hours", |p| {
        p.revocation.revoke_on_key_compromise_hours
    }),
    ("renewal.max_key_reuse", |p| p.renewal.max_key_reuse),
    ("renewal.max_key_age_days", |p| p.renewal.max_key_age_days),
    ("renewal.expired_grace_days", |p| {
        p.renewal.expired_grace_days
    }),
];

/// Minima (and `window_start_percent`): may only go up.
const MINIMA: [Field<u64>; 5] = [
    ("serial_number.min_random_bits", |p| {
        u64::from(p.serial_number.min_random_bits)
    }),
    ("enrollment.one_time_token.min_entropy_bits", |p| {
        u64::from(p.enrollment.one_time_token.min_entropy_bits)
    }),
    ("renewal.window_start_percent", |p| {
        u64::from(p.renewal.window_start_percent)
    }),
    ("renewal.min_reenroll_interval_minutes", |p| {
        u64::from(p.renewal.min_reenroll_interval_minutes)
    }),
    ("keys.rsa_min_public_exponent", |p| {
        p.keys.rsa_min_public_exponent
    }),
];

/// Presence ladders: up only, except `optional` → `forbidden`.
const PRESENCES: [Field<Presence>; 5] = [
    ("san.hardware_module_name.presence", |p| {
        p.san.hardware_module_name.presence
    }),
    ("san.uri.presence", |p| p.san.uri.presence),
    ("san.permanent_identifier.presence", |p| {
        p.san.permanent_identifier.presence
    }),
    ("extensions.authority_info_access.ocsp_presence", |p| {
        p.extensions.authority_info_access.ocsp_presence
    }),
    ("extensions.masa_url.presence", |p| {
        p.extensions.masa_url.presence
    }),
];

/// Strength ladders: up only.
const STRENGTHS: [Field<Strength>; 4] = [
    ("key_protection.attestation", |p| {
        p.key_protection.attestation
    }),
    ("enrollment.channel_binding", |p| {
        p.enrollment.channel_binding
    }),
    ("revocation.ocsp", |p| p.revocation.ocsp),
    ("renewal.rekey", |p| p.renewal.rekey),
];

/// Maxima may only go down.
fn maxima(f: &mut Findings<'_>) {
    for (key, value) in MAXIMA {
        f.at_most(key, value(f.base), value(f.product));
    }
}

/// Minima may only go up.
fn minima(f: &mut Findings<'_>) {
    for (key, value) in MINIMA {
        if f.narrower.skip_operator_tuned && OPERATOR_TUNED.contains(&key) {
            continue;
        }
        f.at_least(key, value(f.base), value(f.product));
    }
}

/// Presence, strength and key-protection ladders may only move up.
fn ladders(f: &mut Findings<'_>) {
    for (key, value) in PRESENCES {
        f.presence(key, value(f.base), value(f.product));
    }
    for (key, value) in STRENGTHS {
        f.up(key, value(f.base), value(f.product));
    }
    let minimum = |p: &Policy| p.key_protection.minimum;
    f.up(
        "key_protection.minimum",
        minimum(f.base),
        minimum(f.product),
    );
}

/// Restrictive booleans cannot be relaxed.
fn booleans(f: &mut Findings<'_>) {
    let (b, p) = (f.base, f.product);
    if !b.validity.allow_no_expiry && p.validity.allow_no_expiry {
        let noun = f.noun();
        let message = format!(
            "the {} forbids certificates without expiry; this {noun} sets true",
            f.base_id()
        );
        f.push("validity.allow_no_expiry", message);
    }
    if b.keys.reject_duplicate_public_key && !p.keys.reject_duplicate_public_key {
        let noun = f.noun();
        let message = format!(
            "the {} rejects a public key already certified for another device; \
             this {noun} sets false",
            f.base_id()
        );
        f.push("keys.reject_duplicate_public_key", message);
    }
}

/// Templates may be specialised (bound) but not changed; base patterns and the MASA URL stay.
fn templates(f: &mut Findings<'_>) {
    let (b, p) = (&f.base.subject, &f.product.subject);
    for (name, base, product) in [
        ("C", &b.country, &p.country),
        ("O", &b.organization, &p.organization),
        ("CN", &b.common_name, &p.common_name),
        ("serialNumber", &b.serial_number, &p.serial_number),
    ] {
        f.template(
            &format!("subject.{name}.value"),
            &base.value,
            &product.value,
        );
        f.at_most(
            &format!("subject.{name}.max_length"),
            base.max_length,
            product.max_length,
        );
        if let (Some(pattern), None) = (&base.pattern, &product.pattern) {
            let noun = f.noun();
            let message = format!(
                "the {} sets pattern `{pattern}`; this {noun} removes it \
                 (keep it, or set a stricter pattern)",
                f.base_id()
            );
            f.push(&format!("subject.{name}.pattern"), message);
        }
    }
    let (b, p) = (f.base, f.product);
    f.template("san.uri.value", &b.san.uri.value, &p.san.uri.value);
    if let Some(base_url) = &b.extensions.masa_url.value {
        match &p.extensions.masa_url.value {
            Some(url) => f.template("extensions.masa_url.value", base_url, url),
            None => {
                let noun = f.noun();
                let message = format!(
                    "the {} sets `{base_url}`; this {noun} removes it",
                    f.base_id()
                );
                f.push("extensions.masa_url.value", message);
            }
        }
    }
}

#[cfg(test)]
mod tests;
