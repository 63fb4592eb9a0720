//! Subject and subjectAltName rules (IOMT-SUB, IOMT-SAN), compared with the authorised identity.

use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::{Context, Findings, extension, oid};
use crate::extensions::{
    hardware_module_name_from_other_name, permanent_identifier_from_other_name,
};
use crate::identity::check_serial;
use crate::policy::Presence;
use crate::policy::template::substitute;

const COUNTRY: &str = "2.5.4.6";
const ORGANIZATION: &str = "2.5.4.10";
const COMMON_NAME: &str = "2.5.4.3";
const SERIAL_NUMBER: &str = "2.5.4.5";

/// The only subject layout the profile allows (docs/PROFILE.md §2.6).
const LAYOUT: &str = "C, O, CN, serialNumber";
/// ub-common-name, ub-serial-number (RFC 5280 Appendix A).
const MAX_NAME_LENGTH: usize = 64;
/// Longest TPM 2.0 hwSerialNum: the TCG construction `<manufacturer>:<EK AKI>:<EK serial>` in
/// hex is up to 8 + 1 + 40 + 1 + 40 characters, longer than a device serial's 64 (IOMT-SAN-03).
const MAX_TPM_HW_SERIAL: usize = 128;

/// IOMT-SUB-01 to -05.
pub(super) fn subject(ctx: &Context<'_>, out: &mut Findings) {
    let name = ctx.cert.subject();
    let layout = layout(name);
    if layout != LAYOUT {
        out.push(
            "IOMT-SUB-01",
            format!("subject is `{layout}`, must be exactly `{LAYOUT}` with one attribute each"),
        );
    }
    let rules = &ctx.policy.subject;

    if let Some(serial) = attribute(name, SERIAL_NUMBER) {
        let max = rules.serial_number.max_length.min(MAX_NAME_LENGTH);
        match printable(serial) {
            None => out.push("IOMT-SUB-02", "serialNumber is not a PrintableString"),
            Some(value) if value.chars().count() > max => out.push(
                "IOMT-SUB-02",
                format!("serialNumber `{value}` is longer than {max} characters"),
            ),
            Some(value) => {
                if let Err(err) = check_serial(ctx.policy, value) {
                    out.push("IOMT-SUB-02", err.to_string());
                }
            }
        }
    }
    if let Some(country) = attribute(name, COUNTRY) {
        match printable(country) {
            None => out.push("IOMT-SUB-03", "countryName is not a PrintableString"),
            Some(value) if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) => {
                out.push(
                    "IOMT-SUB-03",
                    format!("countryName `{value}` is not an ISO 3166 alpha-2 code"),
                );
            }
            Some(_) => {}
        }
    }
    if let Some(common_name) = attribute(name, COMMON_NAME) {
        let max = rules.common_name.max_length.min(MAX_NAME_LENGTH);
        match common_name.as_str() {
            Err(_) => out.push("IOMT-SUB-04", "commonName is not a UTF8String"),
            Ok(value) if value.chars().count() > max => out.push(
                "IOMT-SUB-04",
                format!("commonName `{value}` is longer than {max} characters"),
            ),
            Ok(_) => {}
        }
    }

    let identity = ctx.identity;
    for (label, dotted, expected) in [
        ("countryName", COUNTRY, &identity.country),
        ("organizationName", ORGANIZATION, &identity.organization),
        ("commonName", COMMON_NAME, &identity.common_name),
        ("serialNumber", SERIAL_NUMBER, &identity.serial_number),
    ] {
        let Some(found) = attribute(name, dotted) else {
            continue; // IOMT-SUB-01 reported the missing attribute.
        };
        match found.as_str() {
            Ok(value) if value == expected => {}
            Ok(value) => out.push(
                "IOMT-SUB-05",
                format!("{label} is `{value}`, the registration record says `{expected}`"),
            ),
            Err(_) => out.push("IOMT-SUB-05", format!("{label} is not a readable string")),
        }
    }
}

/// The subject as short attribute names: RDNs joined by `, `, multi-valued RDNs by `+`.
fn layout(name: &X509Name<'_>) -> String {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| short_name(&attribute.attr_type().to_id_string()))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_name(dotted: &str) -> String {
    let name = match dotted {
        COUNTRY => "C",
        ORGANIZATION => "O",
        COMMON_NAME => "CN",
        SERIAL_NUMBER => "serialNumber",
        "2.5.4.11" => "OU",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        other => other,
    };
    name.to_owned()
}

/// The first attribute of this type (IOMT-SUB-01 reports repeats).
fn attribute<'c, 'a>(
    name: &'c X509Name<'a>,
    dotted: &str,
) -> Option<&'c AttributeTypeAndValue<'a>> {
    name.iter_attributes()
        .find(|attribute| crate::oids::is_dotted(attribute.attr_type(), dotted))
}

/// The value when it is a PrintableString holding only PrintableString characters.
fn printable<'a>(attribute: &AttributeTypeAndValue<'a>) -> Option<&'a str> {
    if attribute.attr_value().tag() != Tag::PrintableString {
        return None;
    }
    let value = attribute.as_str().ok()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c);
    value.chars().all(allowed).then_some(value)
}

/// IOMT-SAN-01, -02, -04 and -06.
pub(super) fn subject_alt_name(ctx: &Context<'_>, out: &mut Findings) {
    let Some(ext) = extension(ctx.cert, oid::SUBJECT_ALT_NAME) else {
        out.push("IOMT-SAN-01", "subjectAltName is missing");
        hardware_module_name(ctx, &[], out);
        product_uri(ctx, &[], out);
        return;
    };
    if ext.critical {
        out.push(
            "IOMT-SAN-01",
            "subjectAltName is critical; it must not be when the subject is not empty",
        );
    }
    let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
        return; // IOMT-ENC-03 reported the decoding error.
    };
    if san.general_names.is_empty() {
        out.push("IOMT-SAN-01", "subjectAltName has no names");
    }
    let mut modules = Vec::new();
    let mut permanent = Vec::new();
    let mut uris = Vec::new();
    for name in &san.general_names {
        match name {
            GeneralName::OtherName(type_id, value) => match type_id.to_id_string().as_str() {
                oid::HARDWARE_MODULE_NAME => modules.push(*value),
                oid::PERMANENT_IDENTIFIER => {
                    if ctx.policy.san.permanent_identifier.presence == Presence::Forbidden {
                        out.push(
                            "IOMT-SAN-06",
                            "permanentIdentifier is forbidden by the policy",
                        );
                    }
                    permanent.push(*value);
                }
                other => out.push("IOMT-SAN-06", format!("otherName {other} is not allowed")),
            },
            GeneralName::URI("") => out.push("IOMT-SAN-01", "subjectAltName has an empty URI"),
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::DNSName(_) => out.push("IOMT-SAN-06", "dNSName is forbidden"),
            GeneralName::IPAddress(_) => out.push("IOMT-SAN-06", "iPAddress is forbidden"),
            GeneralName::RFC822Name(_) => out.push("IOMT-SAN-06", "rfc822Name is forbidden"),
            other => out.push(
                "IOMT-SAN-06",
                format!("only otherName and URI names are allowed, found {other:?}"),
            ),
        }
    }
    hardware_module_name(ctx, &modules, out);
    permanent_identifier(ctx, &permanent, out);
    product_uri(ctx, &uris, out);
}

/// IOMT-SAN-07: the permanentIdentifier is exactly the one a verified TPM attestation gave the
/// identity (the EK certificate digest, TCG assigner), and absent otherwise.
fn permanent_identifier(ctx: &Context<'_>, found: &[&[u8]], out: &mut Findings) {
    let expected = ctx.identity.permanent_identifier.as_ref();
    match (found, expected) {
        ([], None) => {}
        ([], Some(_)) => out.push("IOMT-SAN-07", "the TPM's permanentIdentifier is missing"),
        ([one], expected) => match permanent_identifier_from_other_name(one) {
            Ok(id) if Some(&id) == expected => {}
            Ok(id) => out.push(
                "IOMT-SAN-07",
                format!(
                    "permanentIdentifier is {} / {}, expected {}",
                    id.value,
                    id.assigner,
                    expected.map_or_else(
                        || "none (no verified TPM attestation)".to_owned(),
                        |e| format!("{} / {}", e.value, e.assigner)
                    )
                ),
            ),
            Err(err) => out.push(
                "IOMT-SAN-07",
                format!("permanentIdentifier is not SEQUENCE {{ UTF8String, OID }}: {err}"),
            ),
        },
        (many, _) => out.push(
            "IOMT-SAN-07",
            format!("{} permanentIdentifiers, at most one allowed", many.len()),
        ),
    }
}

/// IOMT-SAN-02 on the HardwareModuleName otherName values (each still `[0] EXPLICIT`-wrapped).
fn hardware_module_name(ctx: &Context<'_>, found: &[&[u8]], out: &mut Findings) {
    let rule = &ctx.policy.san.hardware_module_name;
    if found.len() > 1 {
        out.push(
            "IOMT-SAN-02",
            format!("{} HardwareModuleNames, at most one allowed", found.len()),
        );
    }
    let Some(wrapped) = found.first() else {
        if rule.presence == Presence::Required {
            out.push("IOMT-SAN-02", "the required HardwareModuleName is missing");
        }
        return;
    };
    if rule.presence == Presence::Forbidden {
        out.push(
            "IOMT-SAN-02",
            "HardwareModuleName is forbidden by the policy",
        );
    }
    let module = match hardware_module_name_from_other_name(wrapped) {
        Ok(module) => module,
        Err(err) => {
            out.push(
                "IOMT-SAN-02",
                format!("HardwareModuleName is not SEQUENCE {{ OID, OCTET STRING }}: {err}"),
            );
            return;
        }
    };
    let hw_type_oid = ctx.policy.device.as_ref().map(|d| d.hw_type_oid.as_str());
    let allowed = rule.hw_type_oids.iter().any(|template| {
        let filled = substitute(template, |name| match name {
            "device.hw_type_oid" => hw_type_oid,
            _ => None,
        });
        filled == module.hw_type
    });
    if !allowed {
        out.push(
            "IOMT-SAN-02",
            format!(
                "hwType {} is not in the policy's allow-list",
                module.hw_type
            ),
        );
    }
    let max = if module.hw_type == crate::oids::TCG_HW_TYPE_TPM2 {
        MAX_TPM_HW_SERIAL
    } else {
        MAX_NAME_LENGTH
    };
    if module.hw_serial.len() > max {
        out.push(
            "IOMT-SAN-02",
            format!(
                "hwSerialNum is {} octets, at most {max} allowed",
                module.hw_serial.len()
            ),
        );
    }
    match &ctx.identity.hardware_module_name {
        Some(expected) if *expected == module => {}
        Some(expected) => out.push(
            "IOMT-SAN-02",
            format!(
                "HardwareModuleName is {} / {:?}, the registration record says {} / {:?}",
                module.hw_type,
                String::from_utf8_lossy(&module.hw_serial),
                expected.hw_type,
                String::from_utf8_lossy(&expected.hw_serial)
            ),
        ),
        None => out.push(
            "IOMT-SAN-02",
            "HardwareModuleName is present but the identity has none",
        ),
    }
}

/// IOMT-SAN-04 on the uniformResourceIdentifier names.
fn product_uri(ctx: &Context<'_>, found: &[&str], out: &mut Findings) {
    let rule = &ctx.policy.san.uri;
    if found.len() > 1 {
        out.push(
            "IOMT-SAN-04",
            format!("{} URIs, at most one product URI allowed", found.len()),
        );
    }
    let Some(uri) = found.first() else {
        if rule.presence == Presence::Required {
            out.push("IOMT-SAN-04", "the required product URI is missing");
        }
        return;
    };
    if rule.presence == Presence::Forbidden {
        out.push("IOMT-SAN-04", "a product URI is forbidden by the policy");
    }
    if !uri.is_ascii() {
        out.push("IOMT-SAN-04", format!("URI `{uri}` is not IA5 (ASCII)"));
    }
    match uri.split_once(':') {
        Some((scheme, rest)) if !rest.is_empty() => {
            if !rule.allowed_schemes.iter().any(|allowed| allowed == scheme) {
                out.push(
                    "IOMT-SAN-04",
                    format!(
                        "URI scheme `{scheme}` is not allowed ({})",
                        rule.allowed_schemes.join(", ")
                    ),
                );
            }
        }
        _ => out.push("IOMT-SAN-04", format!("URI `{uri}` is not absolute")),
    }
    match &ctx.identity.uri {
        Some(expected) if expected == uri => {}
        Some(expected) => out.push(
            "IOMT-SAN-04",
            format!("URI is `{uri}`, the registration record says `{expected}`"),
        ),
        None => out.push("IOMT-SAN-04", "a URI is present but the identity has none"),
    }
}
