//! `{var}` templates in policy values: binding product constants and filling device records.

use super::model::{DeviceModel, Manufacturer};

/// The variables a template may use (docs/PROFILE.md §4.1).
pub const KNOWN_VARIABLES: [&str; 7] = [
    "manufacturer.legal_name",
    "manufacturer.country",
    "manufacturer.id_domain",
    "device.serial",
    "device.model_code",
    "device.gtin",
    "device.hw_type_oid",
];

/// Names of the `{var}` references in `template`, in order of appearance.
pub fn variables(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                names.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    names
}

/// Replaces every `{name}` for which `lookup` has a value; leaves the others as they are.
pub fn substitute<'a>(template: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Binds the product constants (`[manufacturer]`, `[device]` except serial and GTIN) into a
/// template, leaving per-device variables in place (docs/PROFILE.md §4.2 rule 3).
pub fn bind_product(
    template: &str,
    manufacturer: Option<&Manufacturer>,
    device: Option<&DeviceModel>,
) -> String {
    substitute(template, |name| match name {
        "manufacturer.legal_name" => manufacturer.map(|m| m.legal_name.as_str()),
        "manufacturer.country" => manufacturer.map(|m| m.country.as_str()),
        "manufacturer.id_domain" => manufacturer.map(|m| m.id_domain.as_str()),
        "device.model_code" => device.map(|d| d.model_code.as_str()),
        "device.hw_type_oid" => device.map(|d| d.hw_type_oid.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_lists_references_in_order() {
        assert_eq!(
            variables("{device.model_code}-{device.serial}"),
            ["device.model_code", "device.serial"]
        );
        assert!(variables("literal").is_empty());
    }

    #[test]
    fn substitute_leaves_unknown_variables() {
        let out = substitute("{a}-{b}", |n| (n == "a").then_some("x"));
        assert_eq!(out, "x-{b}");
    }

    #[test]
    fn bind_product_keeps_per_device_variables() {
        let device = DeviceModel {
            model_code: "FG500".into(),
            gtins: vec![],
            serial_pattern: ".*".into(),
            hw_type_oid: "1.2.3".into(),
        };
        let bound = bind_product("{device.model_code}-{device.serial}", None, Some(&device));
        assert_eq!(bound, "FG500-{device.serial}");
    }
}
