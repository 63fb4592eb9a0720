//! Extension rules: IOMT-BC, -KU, -EKU, -KID, -POL, -REV and -EXT.

use der::Decode;
use der::asn1::Ia5StringRef;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{
    DistributionPointName, ExtendedKeyUsage, GeneralName, ParsedExtension, X509Extension,
};

use super::{Context, Findings, SubjectKey, extension, is_http, oid};
use crate::extensions::key_identifier;
use crate::oids::eku_oid;
use crate::policy::Presence;

/// The extensions a device certificate may carry (IOMT-EXT-01).
const ALLOWED: [&str; 10] = [
    oid::BASIC_CONSTRAINTS,
    oid::KEY_USAGE,
    oid::EXTENDED_KEY_USAGE,
    oid::SUBJECT_KEY_IDENTIFIER,
    oid::AUTHORITY_KEY_IDENTIFIER,
    oid::SUBJECT_ALT_NAME,
    oid::CERTIFICATE_POLICIES,
    oid::CRL_DISTRIBUTION_POINTS,
    oid::AUTHORITY_INFO_ACCESS,
    oid::MASA_URL,
];

/// keyUsage bit names, in bit order (RFC 5280 §4.2.1.3).
const KEY_USAGE_BITS: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

/// The extension, after reporting under `rule` that it is missing or has the wrong criticality.
fn required<'c, 'a>(
    cert: &'c X509Certificate<'a>,
    dotted: &str,
    name: &str,
    critical: bool,
    rule: &'static str,
    out: &mut Findings,
) -> Option<&'c X509Extension<'a>> {
    let Some(ext) = extension(cert, dotted) else {
        out.push(rule, format!("{name} is missing"));
        return None;
    };
    if ext.critical != critical {
        let must = if critical { "must be" } else { "must not be" };
        out.push(rule, format!("{name} {must} critical"));
    }
    Some(ext)
}

/// IOMT-BC-01: present, critical, cA FALSE, no pathLenConstraint.
pub(super) fn basic_constraints(ctx: &Context<'_>, out: &mut Findings) {
    const RULE: &str = "IOMT-BC-01";
    let ext = required(
        ctx.cert,
        oid::BASIC_CONSTRAINTS,
        "basicConstraints",
        true,
        RULE,
        out,
    );
    if let Some(ParsedExtension::BasicConstraints(bc)) = ext.map(|e| e.parsed_extension()) {
        if bc.ca {
            out.push(RULE, "basicConstraints says cA TRUE");
        }
        if let Some(len) = bc.path_len_constraint {
            out.push(
                RULE,
                format!("basicConstraints has pathLenConstraint {len}"),
            );
        }
    }
}

/// IOMT-KU-01 (present, critical, not empty), -02 (ECDSA) and -03 (RSA).
pub(super) fn key_usage(ctx: &Context<'_>, out: &mut Findings) {
    let ext = required(
        ctx.cert,
        oid::KEY_USAGE,
        "keyUsage",
        true,
        "IOMT-KU-01",
        out,
    );
    let Some(ParsedExtension::KeyUsage(usage)) = ext.map(|e| e.parsed_extension()) else {
        return;
    };
    let bits: Vec<&str> = KEY_USAGE_BITS
        .iter()
        .enumerate()
        .filter(|(index, _)| (usage.flags >> index) & 1 == 1)
        .map(|(_, name)| *name)
        .collect();
    if bits.is_empty() {
        out.push("IOMT-KU-01", "keyUsage has no bits set");
        return;
    }
    match ctx.key {
        SubjectKey::Ec(_) => {
            if bits != ["digitalSignature"] {
                out.push(
                    "IOMT-KU-02",
                    format!(
                        "ECDSA key has keyUsage {}, must be digitalSignature only",
                        bits.join(", ")
                    ),
                );
            }
        }
        SubjectKey::Rsa(_) => {
            if !bits.contains(&"digitalSignature") {
                out.push("IOMT-KU-03", "RSA key lacks keyUsage digitalSignature");
            }
            let optional = &ctx.policy.extensions.key_usage.rsa_optional;
            for bit in bits.iter().filter(|bit| **bit != "digitalSignature") {
                let allowed = !["keyCertSign", "cRLSign"].contains(bit)
                    && optional.iter().any(|name| {
                        name == bit || (*bit == "nonRepudiation" && name == "contentCommitment")
                    });
                if !allowed {
                    out.push(
                        "IOMT-KU-03",
                        format!("RSA key has keyUsage {bit}, which the policy does not allow"),
                    );
                }
            }
        }
        // IOMT-KEY-01 refuses the key itself.
        SubjectKey::Other(_) => {}
    }
}

/// IOMT-EKU-01 (present, non-critical, every required EKU) and -02 (nothing else).
pub(super) fn extended_key_usage(ctx: &Context<'_>, out: &mut Findings) {
    let ext = required(
        ctx.cert,
        oid::EXTENDED_KEY_USAGE,
        "extendedKeyUsage",
        false,
        "IOMT-EKU-01",
        out,
    );
    let Some(ParsedExtension::ExtendedKeyUsage(eku)) = ext.map(|e| e.parsed_extension()) else {
        return;
    };
    let present = purposes(eku);
    let rule = &ctx.policy.extensions.extended_key_usage;
    for name in &rule.required {
        match eku_oid(name) {
            Some(dotted) if present.iter().any(|p| p == dotted) => {}
            Some(dotted) => out.push(
                "IOMT-EKU-01",
                format!("extendedKeyUsage lacks the required {name} ({dotted})"),
            ),
            None => out.push(
                "IOMT-EKU-01",
                format!("the policy requires {name}, an EKU the linter does not know"),
            ),
        }
    }
    let allowed: Vec<&str> = rule
        .required
        .iter()
        .chain(&rule.optional)
        .filter_map(|name| eku_oid(name))
        .collect();
    for dotted in present.iter().filter(|p| !allowed.contains(&p.as_str())) {
        out.push(
            "IOMT-EKU-02",
            format!("extendedKeyUsage {dotted} is not allowed by the product policy"),
        );
    }
}

/// The dotted OIDs of the certificate's extendedKeyUsage, if it has a readable one.
pub(super) fn extended_key_usages(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    match extension(cert, oid::EXTENDED_KEY_USAGE).map(|e| e.parsed_extension()) {
        Some(ParsedExtension::ExtendedKeyUsage(eku)) => Some(purposes(eku)),
        _ => None,
    }
}

/// The dotted OIDs of an extendedKeyUsage value.
fn purposes(eku: &ExtendedKeyUsage<'_>) -> Vec<String> {
    let known = [
        (eku.any, "2.5.29.37.0"),
        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
    ];
    known
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, dotted)| (*dotted).to_owned())
        .chain(eku.other.iter().map(|oid| oid.to_id_string()))
        .collect()
}

/// IOMT-KID-01 (SKI = RFC 7093 method 1) and -02 (AKI keyIdentifier = issuer SKI).
pub(super) fn key_identifiers(ctx: &Context<'_>, out: &mut Findings) {
    let ski = required(
        ctx.cert,
        oid::SUBJECT_KEY_IDENTIFIER,
        "subjectKeyIdentifier",
        false,
        "IOMT-KID-01",
        out,
    );
    if let Some(ParsedExtension::SubjectKeyIdentifier(id)) = ski.map(|e| e.parsed_extension()) {
        let expected = key_identifier(&ctx.cert.public_key().subject_public_key.data);
        if id.0 != expected.as_slice() {
            out.push(
                "IOMT-KID-01",
                format!(
                    "subjectKeyIdentifier is {}, RFC 7093 method 1 gives {}",
                    hex::encode(id.0),
                    hex::encode(&expected)
                ),
            );
        }
    }

    const RULE: &str = "IOMT-KID-02";
    let aki = required(
        ctx.cert,
        oid::AUTHORITY_KEY_IDENTIFIER,
        "authorityKeyIdentifier",
        false,
        RULE,
        out,
    );
    let Some(ParsedExtension::AuthorityKeyIdentifier(aki)) = aki.map(|e| e.parsed_extension())
    else {
        return;
    };
    if aki.authority_cert_issuer.is_some() || aki.authority_cert_serial.is_some() {
        out.push(RULE, "authorityKeyIdentifier must carry keyIdentifier only");
    }
    let issuer_ski =
        match extension(ctx.issuer, oid::SUBJECT_KEY_IDENTIFIER).map(|e| e.parsed_extension()) {
            Some(ParsedExtension::SubjectKeyIdentifier(id)) => Some(id.0),
            _ => None,
        };
    match (&aki.key_identifier, issuer_ski) {
        (None, _) => out.push(RULE, "authorityKeyIdentifier has no keyIdentifier"),
        (Some(_), None) => out.push(RULE, "the issuer certificate has no subjectKeyIdentifier"),
        (Some(id), Some(expected)) if id.0 != expected => out.push(
            RULE,
            format!(
                "authorityKeyIdentifier is {}, the issuer's subjectKeyIdentifier is {}",
                hex::encode(id.0),
                hex::encode(expected)
            ),
        ),
        (Some(_), Some(_)) => {}
    }
}

/// IOMT-POL-01 (encoding), -02 (the policy's OIDs and nothing else), -03 (issuer asserts them).
pub(super) fn certificate_policies(ctx: &Context<'_>, out: &mut Findings) {
    let ext = required(
        ctx.cert,
        oid::CERTIFICATE_POLICIES,
        "certificatePolicies",
        false,
        "IOMT-POL-01",
        out,
    );
    let Some(ParsedExtension::CertificatePolicies(policies)) = ext.map(|e| e.parsed_extension())
    else {
        return;
    };
    let mut asserted: Vec<String> = Vec::new();
    for info in policies {
        let dotted = info.policy_id.to_id_string();
        if info.policy_qualifiers.is_some() {
            out.push("IOMT-POL-01", format!("policy {dotted} carries qualifiers"));
        }
        if dotted == oid::ANY_POLICY {
            out.push("IOMT-POL-01", "anyPolicy is asserted");
        }
        if asserted.contains(&dotted) {
            out.push(
                "IOMT-POL-01",
                format!("policy {dotted} appears more than once"),
            );
        } else {
            asserted.push(dotted);
        }
    }

    let rule = &ctx.policy.extensions.certificate_policies;
    let level = &ctx.policy.policy.certificate_policy_oid;
    let mut required: Vec<&String> = vec![level];
    required.extend(rule.required_oids.iter().filter(|o| *o != level));
    for missing in required.iter().filter(|o| !asserted.contains(o)) {
        out.push(
            "IOMT-POL-02",
            format!("required policy {missing} is missing"),
        );
    }
    // The attestation marker and the TCG residency OIDs, where optional, are asserted only
    // when this issuance earned them by a verified TPM attestation (IOMT-POL-06).
    let earned = &ctx.identity.attested_policies;
    let earnable = crate::identity::attestation_policies(level);
    for missing in earned.iter().filter(|o| !asserted.contains(o)) {
        out.push(
            "IOMT-POL-06",
            format!("policy {missing}, earned by verified attestation, is missing"),
        );
    }
    let permitted = |dotted: &String| {
        dotted == level
            || rule.required_oids.contains(dotted)
            || (rule.optional_oids.contains(dotted)
                && (!earnable.contains(dotted) || earned.contains(dotted)))
    };
    for extra in asserted
        .iter()
        .filter(|o| o.as_str() != oid::ANY_POLICY && !permitted(o))
    {
        out.push(
            "IOMT-POL-02",
            format!("policy {extra} is not allowed by the product policy"),
        );
    }

    let issuer_policies =
        match extension(ctx.issuer, oid::CERTIFICATE_POLICIES).map(|e| e.parsed_extension()) {
            Some(ParsedExtension::CertificatePolicies(list)) => list
                .iter()
                .map(|info| info.policy_id.to_id_string())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
    // anyPolicy in the issuer covers every policy in RFC 5280 path validation.
    if !issuer_policies.iter().any(|o| o == oid::ANY_POLICY) {
        let uncovered = asserted
            .iter()
            .filter(|o| o.as_str() != oid::ANY_POLICY && !issuer_policies.contains(o));
        for uncovered in uncovered {
            out.push(
                "IOMT-POL-03",
                format!("policy {uncovered} is not asserted by the issuing CA"),
            );
        }
    }
}

/// IOMT-REV-01 (CRL distribution point), -02 (caIssuers) and -03 (OCSP).
pub(super) fn revocation_pointers(ctx: &Context<'_>, out: &mut Findings) {
    crl_distribution_points(ctx, out);
    authority_info_access(ctx, out);
}

fn crl_distribution_points(ctx: &Context<'_>, out: &mut Findings) {
    const RULE: &str = "IOMT-REV-01";
    let ext = required(
        ctx.cert,
        oid::CRL_DISTRIBUTION_POINTS,
        "cRLDistributionPoints",
        false,
        RULE,
        out,
    );
    let Some(ParsedExtension::CRLDistributionPoints(crldp)) = ext.map(|e| e.parsed_extension())
    else {
        return;
    };
    if crldp.points.is_empty() {
        out.push(RULE, "cRLDistributionPoints is empty");
    }
    for point in &crldp.points {
        if point.crl_issuer.is_some() {
            out.push(RULE, "a distribution point names a cRLIssuer");
        }
        if point.reasons.is_some() {
            out.push(RULE, "a distribution point is limited to some reasons");
        }
        match &point.distribution_point {
            Some(DistributionPointName::FullName(names)) => {
                for name in names {
                    if !matches!(name, GeneralName::URI(uri) if is_http(uri)) {
                        out.push(
                            RULE,
                            format!("distribution point {name} is not an http:// URI"),
                        );
                    }
                }
            }
            _ => out.push(RULE, "a distribution point has no fullName URI"),
        }
    }
}

fn authority_info_access(ctx: &Context<'_>, out: &mut Findings) {
    let ocsp_presence = ctx.policy.extensions.authority_info_access.ocsp_presence;
    let ext = required(
        ctx.cert,
        oid::AUTHORITY_INFO_ACCESS,
        "authorityInfoAccess",
        false,
        "IOMT-REV-02",
        out,
    );
    let Some(ext) = ext else {
        if ocsp_presence == Presence::Required {
            out.push("IOMT-REV-03", "the required OCSP URI is missing");
        }
        return;
    };
    let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
        return;
    };
    let (mut ca_issuers, mut ocsp) = (0, 0);
    for access in &aia.accessdescs {
        let location = &access.access_location;
        let http = matches!(location, GeneralName::URI(uri) if is_http(uri));
        match access.access_method.to_id_string().as_str() {
            oid::AD_CA_ISSUERS => {
                ca_issuers += 1;
                if !http {
                    out.push(
                        "IOMT-REV-02",
                        format!("caIssuers {location} is not an http:// URI"),
                    );
                }
            }
            oid::AD_OCSP => {
                ocsp += 1;
                if !http {
                    out.push(
                        "IOMT-REV-03",
                        format!("OCSP {location} is not an http:// URI"),
                    );
                }
            }
            other => out.push("IOMT-REV-02", format!("unexpected access method {other}")),
        }
    }
    if ca_issuers == 0 {
        out.push("IOMT-REV-02", "authorityInfoAccess has no caIssuers");
    }
    match ocsp_presence {
        Presence::Required if ocsp == 0 => {
            out.push("IOMT-REV-03", "the required OCSP URI is missing");
        }
        Presence::Forbidden if ocsp > 0 => {
            out.push("IOMT-REV-03", "an OCSP URI is forbidden by the policy");
        }
        _ => {}
    }
}

/// IOMT-EXT-01 (nothing outside the profile) and -02 (MASA URL).
pub(super) fn other_extensions(ctx: &Context<'_>, out: &mut Findings) {
    for ext in ctx.cert.extensions() {
        if !ALLOWED
            .iter()
            .any(|allowed| crate::oids::is_dotted(&ext.oid, allowed))
        {
            out.push(
                "IOMT-EXT-01",
                format!("extension {} is not in the profile", ext.oid),
            );
        }
    }

    const RULE: &str = "IOMT-EXT-02";
    let rule = &ctx.policy.extensions.masa_url;
    let Some(ext) = extension(ctx.cert, oid::MASA_URL) else {
        if rule.presence == Presence::Required {
            out.push(RULE, "the required MASA URL is missing");
        }
        return;
    };
    if rule.presence == Presence::Forbidden {
        out.push(RULE, "a MASA URL is forbidden by the policy");
    }
    if ext.critical {
        out.push(RULE, "the MASA URL extension must not be critical");
    }
    let url = match Ia5StringRef::from_der(ext.value) {
        Ok(url) => url.as_str().to_owned(),
        Err(err) => {
            out.push(RULE, format!("the MASA URL is not an IA5String: {err}"));
            return;
        }
    };
    let authority_only = !url.is_empty() && !url.contains(['/', '?', '#']);
    if !authority_only {
        out.push(
            RULE,
            format!("MASA URL `{url}` is not in authority-only form"),
        );
    }
    if let Some(expected) = rule.value.as_ref().filter(|expected| **expected != url) {
        out.push(
            RULE,
            format!("MASA URL is `{url}`, the policy says `{expected}`"),
        );
    }
}
