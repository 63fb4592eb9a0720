//! Encoding, certificate serial, subject key and validity rules (IOMT-ENC, -SER, -KEY, -VAL).

use der::Decode;
use time::Duration;
use time::macros::{datetime, time};
use x509_cert::time::Time;
use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::{AlgorithmIdentifier, X509Version};

use super::curve_point::check_point;
use super::{Context, Findings, SubjectKey};

/// IOMT-ENC-01 to -04: v3, matching signature algorithms, strict DER, time encodings.
pub(super) fn encoding(ctx: &Context<'_>, der: &[u8], out: &mut Findings) {
    let cert = ctx.cert;
    if cert.version() != X509Version::V3 {
        out.push(
            "IOMT-ENC-01",
            format!("version is v{}, must be v3", cert.version().0 + 1),
        );
    }
    if !same_algorithm(&cert.signature_algorithm, &cert.tbs_certificate.signature) {
        out.push(
            "IOMT-ENC-02",
            format!(
                "signatureAlgorithm {} differs from the TBS signature field {}",
                cert.signature_algorithm.algorithm, cert.tbs_certificate.signature.algorithm
            ),
        );
    }
    if cert.tbs_certificate.issuer_uid.is_some() || cert.tbs_certificate.subject_uid.is_some() {
        out.push(
            "IOMT-ENC-03",
            "issuerUniqueID or subjectUniqueID is present",
        );
    }
    let mut seen = Vec::new();
    for ext in cert.extensions() {
        let oid = &ext.oid;
        if seen.contains(&oid) {
            out.push(
                "IOMT-ENC-03",
                format!("extension {oid} appears more than once"),
            );
        } else {
            seen.push(oid);
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            out.push(
                "IOMT-ENC-03",
                format!("extension {oid} does not decode: {error}"),
            );
        }
    }
    // The RustCrypto decoder refuses anything that is BER but not DER.
    match x509_cert::Certificate::from_der(der) {
        Err(err) => out.push("IOMT-ENC-03", format!("not strict DER: {err}")),
        Ok(strict) => {
            let validity = &strict.tbs_certificate.validity;
            for (field, time) in [
                ("notBefore", &validity.not_before),
                ("notAfter", &validity.not_after),
            ] {
                // UTCTime cannot express 2050 or later, and der only decodes the `Z` form
                // with seconds; what is left to check is GeneralizedTime before 2050.
                let early = matches!(time, Time::GeneralTime(t) if t.to_date_time().year() < 2050);
                if early {
                    out.push(
                        "IOMT-ENC-04",
                        format!("{field} before 2050 is GeneralizedTime, must be UTCTime"),
                    );
                }
            }
        }
    }
}

/// Byte-exact AlgorithmIdentifier comparison (OID, and parameters including their tag).
fn same_algorithm(a: &AlgorithmIdentifier<'_>, b: &AlgorithmIdentifier<'_>) -> bool {
    a.algorithm == b.algorithm
        && match (&a.parameters, &b.parameters) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.class() == y.class()
                    && x.header.is_constructed() == y.header.is_constructed()
                    && x.tag() == y.tag()
                    && x.data == y.data
            }
            _ => false,
        }
}

/// IOMT-SER-01 (positive, ≤ 20 octets) and the length part of IOMT-SER-02.
pub(super) fn serial(ctx: &Context<'_>, out: &mut Findings) {
    let raw = ctx.cert.raw_serial();
    if raw.first().is_none_or(|b| b & 0x80 != 0) || raw.iter().all(|&b| b == 0) {
        out.push("IOMT-SER-01", "serial number is not a positive integer");
    }
    if raw.len() > 20 {
        out.push(
            "IOMT-SER-01",
            format!("serial number is {} octets, at most 20 allowed", raw.len()),
        );
    }
    let significant = raw.iter().skip_while(|&&b| b == 0).count();
    let min_octets =
        usize::try_from(ctx.policy.serial_number.min_random_bits.div_ceil(8)).unwrap_or(usize::MAX);
    if significant < min_octets {
        out.push(
            "IOMT-SER-02",
            format!(
                "serial number has {significant} significant octets; {min_octets} are needed for \
                 {} random bits",
                ctx.policy.serial_number.min_random_bits
            ),
        );
    }
}

/// IOMT-KEY-01 (allow-list), -02 (EC encoding and point), -03 (RSA exponent and modulus).
pub(super) fn subject_key(ctx: &Context<'_>, out: &mut Findings) {
    let spki = ctx.cert.public_key();
    match &ctx.key {
        SubjectKey::Ec(curve) => {
            let named = spki
                .algorithm
                .parameters
                .as_ref()
                .is_some_and(|params| params.tag() == Tag::Oid);
            if !named {
                out.push("IOMT-KEY-02", "EC parameters are not a namedCurve OID");
            }
            let point = &spki.subject_public_key.data;
            if let Some(Err(problem)) = curve.map(|curve| check_point(curve, point)) {
                out.push("IOMT-KEY-02", format!("EC public key {problem}"));
            }
        }
        SubjectKey::Rsa(bits) => {
            if bits % 8 != 0 {
                out.push(
                    "IOMT-KEY-03",
                    format!("RSA modulus of {bits} bits is not a multiple of 8"),
                );
            }
            let exponent = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.try_exponent().ok(),
                _ => None,
            };
            let min = ctx.policy.keys.rsa_min_public_exponent;
            match exponent {
                Some(e) if e % 2 == 1 && e >= min => {}
                Some(e) => out.push(
                    "IOMT-KEY-03",
                    format!("RSA public exponent {e} must be odd and at least {min}"),
                ),
                None => out.push("IOMT-KEY-03", "RSA public exponent does not decode"),
            }
        }
        SubjectKey::Other(_) => {}
    }
    if !ctx
        .policy
        .keys
        .allowed
        .iter()
        .any(|entry| ctx.key.allowed_by(entry))
    {
        out.push(
            "IOMT-KEY-01",
            format!("{} is not in the policy's key allow-list", ctx.key),
        );
    }
}

/// IOMT-VAL-01 to -04: lifetime, no 9999 expiry, issuer expiry and algorithm sunset.
pub(super) fn validity(ctx: &Context<'_>, out: &mut Findings) {
    let validity = ctx.cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    let rules = &ctx.policy.validity;

    let lifetime = not_after - not_before;
    let max = Duration::days(i64::from(rules.max_days));
    if lifetime.is_negative() || lifetime > max {
        out.push(
            "IOMT-VAL-01",
            format!(
                "lifetime is {} days {} s, the policy allows at most {} days",
                lifetime.whole_days(),
                lifetime.whole_seconds() % 86_400,
                rules.max_days
            ),
        );
    }
    if not_after == datetime!(9999-12-31 23:59:59 UTC) && !rules.allow_no_expiry {
        out.push(
            "IOMT-VAL-02",
            "notAfter is 99991231235959Z (no expiry), which the policy forbids",
        );
    }
    let issuer_not_after = ctx.issuer.validity().not_after.to_datetime();
    if not_after > issuer_not_after {
        out.push(
            "IOMT-VAL-03",
            format!("notAfter {not_after} is after the issuer's notAfter {issuer_not_after}"),
        );
    }
    // Any allow-list entry that covers the key permits it until the end of its sunset day.
    let sunset = ctx
        .policy
        .keys
        .allowed
        .iter()
        .filter(|entry| ctx.key.allowed_by(entry))
        .map(|entry| entry.sunset_date().with_time(time!(23:59:59)).assume_utc())
        .max();
    if let Some(sunset) = sunset.filter(|sunset| not_after > *sunset) {
        out.push(
            "IOMT-VAL-04",
            format!(
                "notAfter {not_after} is after the {} sunset {sunset}",
                ctx.key
            ),
        );
    }
}
