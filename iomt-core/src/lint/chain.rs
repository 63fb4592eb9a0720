//! Issuer rules: IOMT-CHN-01 (the issuer is a CA that may sign this) and -03 (signature).

use super::extensions::extended_key_usages;
use super::{Context, Findings, SubjectKey};
use crate::policy::Curve;

const ANY_EXTENDED_KEY_USAGE: &str = "2.5.29.37.0";
const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
/// sha256/384/512WithRSAEncryption and RSASSA-PSS.
const RSA_SIGNATURES: [&str; 4] = [
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.113549.1.1.10",
];

/// IOMT-CHN-01: the issuer is a CA with pathLen 0 (if set), may sign certificates, is named by
/// the device certificate, is valid at signing time, and allows the device's EKUs.
pub(super) fn issuer(ctx: &Context<'_>, out: &mut Findings) {
    const RULE: &str = "IOMT-CHN-01";
    let issuer = ctx.issuer;
    match issuer.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            if let Some(len) = bc.value.path_len_constraint.filter(|len| *len > 0) {
                out.push(
                    RULE,
                    format!("the issuer has pathLenConstraint {len}; an issuing CA has 0"),
                );
            }
        }
        _ => out.push(
            RULE,
            "the issuer is not a CA (basicConstraints cA is not TRUE)",
        ),
    }
    let usage = issuer.key_usage().ok().flatten();
    if usage.is_some_and(|usage| !usage.value.key_cert_sign()) {
        out.push(RULE, "the issuer's keyUsage lacks keyCertSign");
    }
    if ctx.cert.issuer().as_raw() != issuer.subject().as_raw() {
        out.push(
            RULE,
            format!(
                "the certificate names issuer `{}` but the issuer certificate is `{}`",
                ctx.cert.issuer(),
                issuer.subject()
            ),
        );
    }
    let validity = issuer.validity();
    let (from, until) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    if ctx.now < from || ctx.now > until {
        out.push(
            RULE,
            format!(
                "the issuer is valid {from} to {until}, not at signing time {}",
                ctx.now
            ),
        );
    }
    // An issuer with an EKU extension (and no anyExtendedKeyUsage) bounds its subjects' EKUs.
    let bound = extended_key_usages(issuer)
        .filter(|ekus| !ekus.iter().any(|p| p == ANY_EXTENDED_KEY_USAGE));
    if let (Some(issuer_ekus), Some(device_ekus)) = (bound, extended_key_usages(ctx.cert)) {
        for missing in device_ekus.iter().filter(|p| !issuer_ekus.contains(p)) {
            out.push(
                RULE,
                format!("extendedKeyUsage {missing} is not allowed by the issuer"),
            );
        }
    }
}

/// IOMT-CHN-03: the signature algorithm suits the issuer key and the signature verifies.
pub(super) fn signature(ctx: &Context<'_>, out: &mut Findings) {
    const RULE: &str = "IOMT-CHN-03";
    let issuer_key = SubjectKey::of(ctx.issuer.public_key());
    let allowed: &[&str] = match issuer_key {
        SubjectKey::Ec(Some(Curve::P256)) => &[ECDSA_WITH_SHA256],
        SubjectKey::Ec(Some(Curve::P384)) => &[ECDSA_WITH_SHA384],
        SubjectKey::Rsa(bits) if bits >= 2048 => &RSA_SIGNATURES,
        _ => &[],
    };
    let algorithm = ctx.cert.signature_algorithm.algorithm.to_id_string();
    if allowed.is_empty() {
        out.push(
            RULE,
            format!("the issuer's {issuer_key} may not sign device certificates"),
        );
    } else if !allowed.contains(&algorithm.as_str()) {
        out.push(
            RULE,
            format!("signature algorithm {algorithm} does not suit the issuer's {issuer_key}"),
        );
    }
    if ctx.verify_signature
        && let Err(err) = ctx.cert.verify_signature(Some(ctx.issuer.public_key()))
    {
        out.push(
            RULE,
            format!("the signature does not verify with the issuer's key: {err}"),
        );
    }
}
