//! Checks on a single policy that the type system cannot express (patterns, OIDs, templates).

use std::str::FromStr;

use der::asn1::ObjectIdentifier;
use regex::Regex;

use super::error::Violation;
use super::model::{KeyAlgorithm, Policy, Presence, SerialNumberRules, SubjectAttribute};
use super::template::{KNOWN_VARIABLES, bind_product, variables};

/// Rules for a base level file.
pub fn base(policy: &Policy) -> Vec<Violation> {
    let mut out = common(policy);
    if policy.manufacturer.is_some() || policy.device.is_some() {
        out.push(Violation::new(
            "manufacturer",
            "a base level binds no manufacturer or device; put them in a product file",
        ));
    }
    out
}

/// Rules for a product (narrowing) file after inheritance.
pub fn product(policy: &Policy) -> Vec<Violation> {
    let mut out = common(policy);
    match &policy.manufacturer {
        None => out.push(Violation::new(
            "manufacturer",
            "a product file needs [manufacturer]",
        )),
        Some(m) => {
            if m.country.len() != 2 || !m.country.bytes().all(|b| b.is_ascii_uppercase()) {
                out.push(Violation::new(
                    "manufacturer.country",
                    format!("`{}` is not an ISO 3166 alpha-2 code", m.country),
                ));
            }
            check_oid(&mut out, "manufacturer.pen_arc", &m.pen_arc);
        }
    }
    match &policy.device {
        None => out.push(Violation::new("device", "a product file needs [device]")),
        Some(d) => {
            if d.gtins.is_empty() {
                out.push(Violation::new("device.gtins", "list at least one GTIN"));
            }
            for gtin in &d.gtins {
                if gtin.len() != 14 || !gtin.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(Violation::new(
                        "device.gtins",
                        format!("`{gtin}` is not a 14-digit GTIN"),
                    ));
                }
            }
            check_pattern(&mut out, "device.serial_pattern", &d.serial_pattern);
            check_oid(&mut out, "device.hw_type_oid", &d.hw_type_oid);
            let allowed: Vec<String> = policy
                .san
                .hardware_module_name
                .hw_type_oids
                .iter()
                .map(|t| bind_product(t, policy.manufacturer.as_ref(), Some(d)))
                .collect();
            if !allowed.contains(&d.hw_type_oid) {
                out.push(Violation::new(
                    "device.hw_type_oid",
                    format!(
                        "`{}` is not in san.hardware_module_name.hw_type_oids ({})",
                        d.hw_type_oid,
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
    let masa = &policy.extensions.masa_url;
    if masa.presence == Presence::Required && masa.value.is_none() {
        out.push(Violation::new(
            "extensions.masa_url.value",
            "required MASA URL needs a value",
        ));
    }
    for name in eku_names(policy) {
        if crate::oids::eku_oid(name).is_none() {
            out.push(Violation::new(
                "extensions.extended_key_usage",
                format!("unknown EKU `{name}` (known: id-kp-clientAuth, id-kp-serverAuth)"),
            ));
        }
    }
    out
}

fn eku_names(policy: &Policy) -> impl Iterator<Item = &str> {
    let eku = &policy.extensions.extended_key_usage;
    eku.required.iter().chain(&eku.optional).map(String::as_str)
}

fn common(policy: &Policy) -> Vec<Violation> {
    let mut out = Vec::new();
    if policy.validity.max_days == 0 {
        out.push(Violation::new(
            "validity.max_days",
            "a certificate must be valid for at least one day",
        ));
    }
    if policy.schema_version != "1.0" {
        out.push(Violation::new(
            "schema_version",
            format!(
                "`{}` is not supported (expected \"1.0\")",
                policy.schema_version
            ),
        ));
    }
    check_oid(
        &mut out,
        "policy.certificate_policy_oid",
        &policy.policy.certificate_policy_oid,
    );
    let cp = &policy.extensions.certificate_policies;
    if !cp
        .required_oids
        .contains(&policy.policy.certificate_policy_oid)
    {
        out.push(Violation::new(
            "extensions.certificate_policies.required_oids",
            "must contain the level's certificate_policy_oid",
        ));
    }
    for oid in cp.required_oids.iter().chain(&cp.optional_oids) {
        check_oid(&mut out, "extensions.certificate_policies", oid);
    }
    let random_bits = policy.serial_number.min_random_bits;
    if !(SerialNumberRules::FLOOR_RANDOM_BITS..=SerialNumberRules::MAX_RANDOM_BITS)
        .contains(&random_bits)
    {
        out.push(Violation::new(
            "serial_number.min_random_bits",
            format!(
                "{random_bits} is outside {}..={} (at least 64 CSPRNG bits; a serial has at \
                 most 20 octets)",
                SerialNumberRules::FLOOR_RANDOM_BITS,
                SerialNumberRules::MAX_RANDOM_BITS
            ),
        ));
    }
    if policy.keys.allowed.is_empty() {
        out.push(Violation::new(
            "keys.allowed",
            "allow at least one key type",
        ));
    }
    for (index, key) in policy.keys.allowed.iter().enumerate() {
        let well_formed = match key.algorithm {
            KeyAlgorithm::Ecdsa => key.curve.is_some() && key.bits.is_none(),
            KeyAlgorithm::Rsa => {
                key.curve.is_none() && key.bits.as_ref().is_some_and(|b| !b.is_empty())
            }
        };
        if !well_formed {
            out.push(Violation::new(
                format!("keys.allowed[{index}]"),
                "ecdsa entries name a `curve`, rsa entries list `bits`",
            ));
        }
        if key.sunset.date.is_none() || key.sunset.time.is_some() {
            out.push(Violation::new(
                format!("keys.allowed[{index}].sunset"),
                "must be a date",
            ));
        }
    }
    let subject = &policy.subject;
    for (key, attribute) in [
        ("subject.C", &subject.country),
        ("subject.O", &subject.organization),
        ("subject.CN", &subject.common_name),
        ("subject.serialNumber", &subject.serial_number),
    ] {
        check_attribute(&mut out, key, attribute);
    }
    check_template(&mut out, "san.uri.value", &policy.san.uri.value);
    for oid in &policy.san.hardware_module_name.hw_type_oids {
        check_template(&mut out, "san.hardware_module_name.hw_type_oids", oid);
    }
    if policy.renewal.window_start_percent == 0 || policy.renewal.window_start_percent > 100 {
        out.push(Violation::new(
            "renewal.window_start_percent",
            "must be between 1 and 100",
        ));
    }
    out
}

fn check_attribute(out: &mut Vec<Violation>, key: &str, attribute: &SubjectAttribute) {
    check_template(out, &format!("{key}.value"), &attribute.value);
    if let Some(pattern) = &attribute.pattern {
        check_pattern(out, &format!("{key}.pattern"), pattern);
    }
}

fn check_template(out: &mut Vec<Violation>, key: &str, template: &str) {
    for name in variables(template) {
        if !KNOWN_VARIABLES.contains(&name) {
            out.push(Violation::new(
                key,
                format!(
                    "unknown variable `{{{name}}}` (known: {})",
                    KNOWN_VARIABLES.join(", ")
                ),
            ));
        }
    }
}

fn check_pattern(out: &mut Vec<Violation>, key: &str, pattern: &str) {
    if let Err(e) = Regex::new(pattern) {
        out.push(Violation::new(
            key,
            format!("not a valid regular expression: {e}"),
        ));
    }
}

fn check_oid(out: &mut Vec<Violation>, key: &str, oid: &str) {
    if oid.contains('{') {
        return; // a template, checked by check_template
    }
    if ObjectIdentifier::from_str(oid).is_err() {
        out.push(Violation::new(key, format!("`{oid}` is not a dotted OID")));
    } else if oid
        .split('.')
        .any(|arc| arc.parse::<u64>().is_ok_and(|n| n > MAX_OID_ARC))
    {
        out.push(Violation::new(
            key,
            format!("`{oid}` has an arc above {MAX_OID_ARC}, which the DER encoder cannot write"),
        ));
    }
}

/// The largest OID arc written correctly (const-oid 0.9 encodes at most four base-128 digits,
/// 28 bits, per arc; real arcs are far smaller).
const MAX_OID_ARC: u64 = (1 << 28) - 1;
