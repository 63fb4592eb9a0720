use super::*;
use crate::policy::{AllowedKey, Curve, Level, PolicySet, PolicySource, shipped_sources};

type Mutation = fn(&mut Policy);

fn shipped() -> PolicySet {
    PolicySet::from_sources(shipped_sources()).expect("shipped policies load")
}

/// The level policy as base, and as product a copy of it bound to the example pump's
/// manufacturer and device: a product that changes nothing.
fn product_of(level: Level) -> (Policy, Policy) {
    let set = shipped();
    let base = set.level(level).clone();
    let pump = set.product("example-infusion-pump").expect("pump");
    let mut product = base.clone();
    product.manufacturer = pump.manufacturer.clone();
    product.device = pump.device.clone();
    (base, product)
}

fn keys_of(violations: &[Violation]) -> Vec<&str> {
    violations.iter().map(|v| v.key.as_str()).collect()
}

fn assert_one(violations: &[Violation], key: &str) {
    assert_eq!(keys_of(violations), [key], "{violations:#?}");
    assert!(!violations[0].message.is_empty());
}

fn rsa(bits: &[u32], sunset: &str) -> AllowedKey {
    AllowedKey {
        algorithm: KeyAlgorithm::Rsa,
        curve: None,
        bits: Some(bits.to_vec()),
        sunset: sunset.parse().expect("date"),
    }
}

fn ecdsa(curve: Curve, sunset: &str) -> AllowedKey {
    AllowedKey {
        algorithm: KeyAlgorithm::Ecdsa,
        curve: Some(curve),
        bits: None,
        sunset: sunset.parse().expect("date"),
    }
}

const PEN_OID: &str = "1.3.6.1.4.1.32473.98.1.7";

#[test]
fn shipped_products_only_narrow() {
    let set = shipped();
    let mut checked = 0;
    for product in set.products() {
        let base = set.level(product.policy.level);
        let violations = check(base, product);
        assert!(
            violations.is_empty(),
            "{}: {violations:#?}",
            product.policy.id
        );
        checked += 1;
    }
    assert_eq!(checked, crate::policy::SHIPPED_POLICIES.len() - 3);
}

#[test]
fn unchanged_level_copy_has_no_violations() {
    for level in Level::ALL {
        let (base, product) = product_of(level);
        assert_eq!(check(&base, &product), [], "{level:?}");
        assert_eq!(check(&base, &base), [], "{level:?} against itself");
    }
}

#[test]
fn raising_max_days_is_widening() {
    let (base, mut product) = product_of(Level::Basic);
    product.validity.max_days = 4000;
    let violations = check(&base, &product);
    assert_one(&violations, "validity.max_days");
    let message = &violations[0].message;
    assert!(
        message.contains("398") && message.contains("4000"),
        "{message}"
    );
    assert!(message.contains("iomt-basic"), "{message}");
}

#[test]
fn section_4_7_negative_case_reports_two_violations() {
    let set = shipped();
    let base = set.level(Level::Substantial).clone();
    let mut product = set
        .product("example-patient-monitor")
        .expect("monitor")
        .clone();
    product.validity.max_days = 4000;
    product
        .key_protection
        .allowed_modules
        .push("software".into());
    let violations = check(&base, &product);
    assert_eq!(
        keys_of(&violations),
        ["key_protection.allowed_modules", "validity.max_days"],
        "{violations:#?}"
    );
    assert!(violations[0].message.contains("`software`"));
}

#[test]
fn each_widening_is_reported_at_its_key() {
    let cases: &[(&str, Level, Mutation)] = &[
        // identity
        ("policy.level", Level::Basic, |p| {
            p.policy.level = Level::High
        }),
        ("policy.certificate_policy_oid", Level::Basic, |p| {
            p.policy.certificate_policy_oid = "1.3.6.1.4.1.32473.7.1.3".into()
        }),
        // allow-lists
        ("key_protection.allowed_modules", Level::High, |p| {
            p.key_protection.allowed_modules.push("tee".into())
        }),
        ("san.uri.allowed_schemes", Level::Basic, |p| {
            p.san.uri.allowed_schemes.push("http".into())
        }),
        (
            "extensions.extended_key_usage.optional",
            Level::Basic,
            |p| {
                p.extensions
                    .extended_key_usage
                    .optional
                    .push("id-kp-codeSigning".into())
            },
        ),
        (
            "extensions.certificate_policies.optional_oids",
            Level::Basic,
            |p| {
                p.extensions
                    .certificate_policies
                    .optional_oids
                    .push("1.2.3.4".into())
            },
        ),
        (
            "extensions.key_usage.rsa_optional",
            Level::Substantial,
            |p| {
                p.extensions
                    .key_usage
                    .rsa_optional
                    .push("keyEncipherment".into())
            },
        ),
        ("enrollment.authorization_any_of", Level::Basic, |p| {
            p.enrollment
                .authorization_any_of
                .push(AuthorizationFactor::PreregisteredSerial)
        }),
        ("san.hardware_module_name.hw_type_oids", Level::Basic, |p| {
            p.san
                .hardware_module_name
                .hw_type_oids
                .push("2.23.133.1.2".into())
        }),
        // required lists
        ("enrollment.authorization_all_of", Level::High, |p| {
            p.enrollment
                .authorization_all_of
                .retain(|f| *f != AuthorizationFactor::KeyAttestation)
        }),
        (
            "extensions.extended_key_usage.required",
            Level::Basic,
            |p| p.extensions.extended_key_usage.required.clear(),
        ),
        (
            "extensions.certificate_policies.required_oids",
            Level::High,
            |p| {
                p.extensions.certificate_policies.required_oids.pop();
            },
        ),
        // maxima
        ("validity.max_days", Level::High, |p| {
            p.validity.max_days += 1
        }),
        ("validity.max_backdate_seconds", Level::Basic, |p| {
            p.validity.max_backdate_seconds += 1
        }),
        (
            "enrollment.one_time_token.max_ttl_hours",
            Level::Basic,
            |p| p.enrollment.one_time_token.max_ttl_hours += 1,
        ),
        (
            "enrollment.station.max_issuance_per_station_per_hour",
            Level::Basic,
            |p| p.enrollment.station.max_issuance_per_station_per_hour += 1,
        ),
        ("revocation.crl_max_next_update_hours", Level::High, |p| {
            p.revocation.crl_max_next_update_hours += 1
        }),
        (
            "revocation.ocsp_max_response_validity_hours",
            Level::High,
            |p| p.revocation.ocsp_max_response_validity_hours += 1,
        ),
        (
            "revocation.revoke_on_key_compromise_hours",
            Level::High,
            |p| p.revocation.revoke_on_key_compromise_hours += 1,
        ),
        ("renewal.max_key_reuse", Level::High, |p| {
            p.renewal.max_key_reuse += 1
        }),
        ("renewal.max_key_age_days", Level::Basic, |p| {
            p.renewal.max_key_age_days += 1
        }),
        ("renewal.expired_grace_days", Level::Basic, |p| {
            p.renewal.expired_grace_days += 1
        }),
        ("subject.C.max_length", Level::Basic, |p| {
            p.subject.country.max_length += 1
        }),
        ("subject.O.max_length", Level::Basic, |p| {
            p.subject.organization.max_length += 1
        }),
        ("subject.CN.max_length", Level::Basic, |p| {
            p.subject.common_name.max_length += 1
        }),
        ("subject.serialNumber.max_length", Level::Basic, |p| {
            p.subject.serial_number.max_length += 1
        }),
        // minima
        ("serial_number.min_random_bits", Level::Basic, |p| {
            p.serial_number.min_random_bits -= 1
        }),
        (
            "enrollment.one_time_token.min_entropy_bits",
            Level::Basic,
            |p| p.enrollment.one_time_token.min_entropy_bits -= 1,
        ),
        ("renewal.window_start_percent", Level::Basic, |p| {
            p.renewal.window_start_percent -= 1
        }),
        ("renewal.min_reenroll_interval_minutes", Level::Basic, |p| {
            p.renewal.min_reenroll_interval_minutes -= 1
        }),
        ("keys.rsa_min_public_exponent", Level::Basic, |p| {
            p.keys.rsa_min_public_exponent = 3
        }),
        // ladders
        ("san.hardware_module_name.presence", Level::High, |p| {
            p.san.hardware_module_name.presence = Presence::Recommended
        }),
        ("san.uri.presence", Level::High, |p| {
            p.san.uri.presence = Presence::Optional
        }),
        (
            "extensions.authority_info_access.ocsp_presence",
            Level::High,
            |p| p.extensions.authority_info_access.ocsp_presence = Presence::Recommended,
        ),
        ("key_protection.attestation", Level::High, |p| {
            p.key_protection.attestation = Strength::Recommended
        }),
        ("enrollment.channel_binding", Level::High, |p| {
            p.enrollment.channel_binding = Strength::None
        }),
        ("revocation.ocsp", Level::High, |p| {
            p.revocation.ocsp = Strength::Optional
        }),
        ("renewal.rekey", Level::High, |p| {
            p.renewal.rekey = Strength::Recommended
        }),
        ("key_protection.minimum", Level::High, |p| {
            p.key_protection.minimum = KeyProtection::Hardware
        }),
        // restrictive booleans
        ("validity.allow_no_expiry", Level::Basic, |p| {
            p.validity.allow_no_expiry = true
        }),
        ("keys.reject_duplicate_public_key", Level::Basic, |p| {
            p.keys.reject_duplicate_public_key = false
        }),
        // templates
        ("subject.C.value", Level::Basic, |p| {
            p.subject.country.value = "DE".into()
        }),
        ("subject.O.value", Level::Basic, |p| {
            p.subject.organization.value = "Someone Else GmbH".into()
        }),
        ("subject.CN.value", Level::Basic, |p| {
            p.subject.common_name.value = "{device.serial}".into()
        }),
        ("subject.serialNumber.value", Level::Basic, |p| {
            p.subject.serial_number.value = "{device.gtin}".into()
        }),
        ("subject.serialNumber.pattern", Level::Basic, |p| {
            p.subject.serial_number.pattern = None
        }),
        ("san.uri.value", Level::Basic, |p| {
            p.san.uri.value = "https://elsewhere.example/{device.serial}".into()
        }),
    ];
    for (key, level, widen) in cases {
        let (base, mut product) = product_of(*level);
        widen(&mut product);
        let violations = check(&base, &product);
        assert_one(&violations, key);
        let message = &violations[0].message;
        assert!(
            message.contains(base.policy.id.as_str()) || message.contains("base"),
            "{key}: {message}"
        );
    }
}

#[test]
fn each_narrowing_is_accepted() {
    let cases: &[(&str, Level, Mutation)] = &[
        ("drop a key type", Level::Basic, |p| {
            p.keys
                .allowed
                .retain(|k| k.algorithm == KeyAlgorithm::Ecdsa)
        }),
        ("earlier sunset", Level::Basic, |p| {
            p.keys.allowed = vec![ecdsa(Curve::P256, "2030-01-01")]
        }),
        ("fewer RSA sizes", Level::Basic, |p| {
            p.keys.allowed = vec![rsa(&[4096], "2035-12-31")]
        }),
        ("fewer modules", Level::High, |p| {
            p.key_protection.allowed_modules = vec!["tpm2".into()]
        }),
        ("fewer schemes", Level::Basic, |p| {
            p.san.uri.allowed_schemes = vec!["https".into()]
        }),
        ("no optional EKU", Level::Basic, |p| {
            p.extensions.extended_key_usage.optional.clear()
        }),
        ("optional EKU made required", Level::Basic, |p| {
            let eku = &mut p.extensions.extended_key_usage;
            eku.required.push("id-kp-serverAuth".into());
            eku.optional.clear();
        }),
        ("no RSA keyEncipherment", Level::Basic, |p| {
            p.extensions.key_usage.rsa_optional.clear()
        }),
        ("optional OID made required", Level::High, |p| {
            let cp = &mut p.extensions.certificate_policies;
            cp.required_oids.push("2.23.133.11.1.1".into());
            cp.optional_oids.clear();
        }),
        ("required OID under pen_arc", Level::Basic, |p| {
            p.extensions
                .certificate_policies
                .required_oids
                .push(PEN_OID.into())
        }),
        ("optional OID under pen_arc", Level::Basic, |p| {
            p.extensions
                .certificate_policies
                .optional_oids
                .push(PEN_OID.into())
        }),
        ("the pen_arc itself", Level::Basic, |p| {
            p.extensions
                .certificate_policies
                .optional_oids
                .push("1.3.6.1.4.1.32473.98".into())
        }),
        ("fewer any-of factors", Level::Basic, |p| {
            p.enrollment.authorization_any_of = vec![AuthorizationFactor::StationMtls]
        }),
        ("any-of factor moved to all-of", Level::Basic, |p| {
            p.enrollment.authorization_any_of.clear();
            p.enrollment
                .authorization_all_of
                .push(AuthorizationFactor::OneTimeToken);
        }),
        ("more all-of factors", Level::Substantial, |p| {
            p.enrollment
                .authorization_all_of
                .push(AuthorizationFactor::KeyAttestation)
        }),
        ("hw type bound to the product", Level::Substantial, |p| {
            p.san.hardware_module_name.hw_type_oids = vec!["1.3.6.1.4.1.32473.98.4.1".into()]
        }),
        ("lower maxima", Level::Basic, |p| {
            p.validity.max_days = 30;
            p.validity.max_backdate_seconds = 0;
            p.enrollment.one_time_token.max_ttl_hours = 1;
            p.enrollment.station.max_issuance_per_station_per_hour = 10;
            p.revocation.crl_max_next_update_hours = 24;
            p.revocation.ocsp_max_response_validity_hours = 12;
            p.revocation.revoke_on_key_compromise_hours = 4;
            p.renewal.max_key_age_days = 30;
            p.subject.common_name.max_length = 32;
        }),
        ("higher minima", Level::Basic, |p| {
            p.serial_number.min_random_bits = 128;
            p.enrollment.one_time_token.min_entropy_bits = 256;
            p.renewal.window_start_percent = 90;
            p.renewal.min_reenroll_interval_minutes = 600;
            p.keys.rsa_min_public_exponent = 65539;
        }),
        ("ladders up", Level::Basic, |p| {
            p.san.hardware_module_name.presence = Presence::Required;
            p.san.uri.presence = Presence::Required;
            p.extensions.authority_info_access.ocsp_presence = Presence::Recommended;
            p.key_protection.attestation = Strength::Required;
            p.enrollment.channel_binding = Strength::Required;
            p.revocation.ocsp = Strength::Required;
            p.key_protection.minimum = KeyProtection::Hardware;
        }),
        ("optional presence forbidden", Level::Basic, |p| {
            p.san.hardware_module_name.presence = Presence::Forbidden;
            p.san.permanent_identifier.presence = Presence::Forbidden;
            p.extensions.authority_info_access.ocsp_presence = Presence::Forbidden;
            p.extensions.masa_url.presence = Presence::Forbidden;
        }),
        ("templates bound to literals", Level::Basic, |p| {
            p.subject.country.value = "US".into();
            p.subject.organization.value = "Example Medical Devices, Inc.".into();
            p.subject.common_name.value = "IP200-{device.serial}".into();
            p.san.uri.value =
                "https://id.example-medical.example/01/{device.gtin}/21/{device.serial}".into();
        }),
        ("stricter pattern", Level::Basic, |p| {
            p.subject.country.pattern = Some("^US$".into());
            p.subject.common_name.pattern = Some("^IP200-".into());
        }),
        ("MASA URL added", Level::Basic, |p| {
            p.extensions.masa_url.value = Some("masa.example-medical.example".into())
        }),
    ];
    for (what, level, narrow) in cases {
        let (base, mut product) = product_of(*level);
        narrow(&mut product);
        assert_eq!(check(&base, &product), [], "{what}");
    }
}

#[test]
fn rsa_size_not_in_base_is_widening() {
    let (base, mut product) = product_of(Level::High);
    product.keys.allowed.push(rsa(&[2048], "2030-12-31"));
    let violations = check(&base, &product);
    assert_one(&violations, "keys.allowed[3]");
    assert!(violations[0].message.contains("RSA-2048"), "{violations:?}");
}

#[test]
fn curve_not_in_base_is_widening() {
    // A base edited by its operator to allow P-256 only.
    let (_, mut product) = product_of(Level::Basic);
    let text = crate::policy::SHIPPED_POLICIES[0].1;
    let p384 = concat!(
        "[[keys.allowed]]\n",
        "algorithm = \"ecdsa\"\n",
        "curve = \"P-384\"\n",
        "sunset = 2035-12-31\n",
    );
    assert!(text.contains(p384));
    let base = crate::policy::load::parse_base_for_tests(&text.replace(p384, ""));
    assert!(
        !base
            .keys
            .allowed
            .iter()
            .any(|k| k.allows_curve(Curve::P384))
    );
    product.keys.allowed = vec![
        ecdsa(Curve::P256, "2035-12-31"),
        ecdsa(Curve::P384, "2035-12-31"),
    ];
    let violations = check(&base, &product);
    assert_one(&violations, "keys.allowed[1]");
    assert!(
        violations[0].message.contains("ECDSA P-384"),
        "{violations:?}"
    );
}

#[test]
fn later_key_sunset_is_widening() {
    let (base, mut product) = product_of(Level::Basic);
    product.keys.allowed = vec![ecdsa(Curve::P256, "2040-01-01")];
    let violations = check(&base, &product);
    assert_one(&violations, "keys.allowed[0].sunset");
    assert!(
        violations[0].message.contains("2035-12-31"),
        "{violations:?}"
    );
}

#[test]
fn rsa_sizes_are_checked_against_their_own_base_sunset() {
    // Basic allows RSA-2048 until 2030 and RSA-3072 until 2035: one entry with both sizes
    // and the later sunset widens only the 2048 part.
    let (base, mut product) = product_of(Level::Basic);
    product.keys.allowed = vec![rsa(&[2048, 3072], "2035-12-31")];
    let violations = check(&base, &product);
    assert_one(&violations, "keys.allowed[0].sunset");
    assert!(violations[0].message.contains("RSA-2048"), "{violations:?}");
}

#[test]
fn required_oid_outside_pen_arc_and_base_is_widening() {
    for oid in ["1.2.3.4", "1.3.6.1.4.1.32473.980.1", "1.3.6.1.4.1.32473.9"] {
        let (base, mut product) = product_of(Level::Basic);
        product
            .extensions
            .certificate_policies
            .required_oids
            .push(oid.into());
        let violations = check(&base, &product);
        assert_one(&violations, "extensions.certificate_policies.required_oids");
        assert!(violations[0].message.contains(oid), "{violations:?}");
    }
}

#[test]
fn oid_checks_without_manufacturer_allow_no_arc() {
    let (base, mut product) = product_of(Level::Basic);
    product.manufacturer = None;
    product
        .extensions
        .certificate_policies
        .optional_oids
        .push(PEN_OID.into());
    assert_one(
        &check(&base, &product),
        "extensions.certificate_policies.optional_oids",
    );
}

#[test]
fn required_eku_the_base_never_allows_is_widening() {
    let (base, mut product) = product_of(Level::Basic);
    product
        .extensions
        .extended_key_usage
        .required
        .push("id-kp-codeSigning".into());
    assert_one(
        &check(&base, &product),
        "extensions.extended_key_usage.required",
    );
}

#[test]
fn emptying_any_of_without_all_of_cover_is_widening() {
    let (base, mut product) = product_of(Level::Basic);
    product.enrollment.authorization_any_of.clear();
    let violations = check(&base, &product);
    assert_one(&violations, "enrollment.authorization_any_of");
    assert!(violations[0].message.contains("one-time-token"));
}

#[test]
fn forbidden_presence_must_stay_forbidden() {
    type SetPresence = fn(&mut Policy, Presence);
    let cases: &[(&str, SetPresence)] = &[
        ("san.hardware_module_name.presence", |p, v| {
            p.san.hardware_module_name.presence = v
        }),
        ("san.uri.presence", |p, v| p.san.uri.presence = v),
        ("san.permanent_identifier.presence", |p, v| {
            p.san.permanent_identifier.presence = v
        }),
        ("extensions.authority_info_access.ocsp_presence", |p, v| {
            p.extensions.authority_info_access.ocsp_presence = v
        }),
        ("extensions.masa_url.presence", |p, v| {
            p.extensions.masa_url.presence = v
        }),
    ];
    for (key, set) in cases {
        for relaxed in [
            Presence::Optional,
            Presence::Recommended,
            Presence::Required,
        ] {
            let (mut base, mut product) = product_of(Level::Basic);
            set(&mut base, Presence::Forbidden);
            set(&mut product, relaxed);
            // A required MASA URL needs a value; that is validation's concern, not ours.
            assert_one(&check(&base, &product), key);
        }
        let (mut base, mut product) = product_of(Level::Basic);
        set(&mut base, Presence::Forbidden);
        set(&mut product, Presence::Forbidden);
        assert_eq!(check(&base, &product), [], "{key}");
    }
}

#[test]
fn recommended_presence_may_not_become_forbidden() {
    let (base, mut product) = product_of(Level::Basic);
    product.san.uri.presence = Presence::Forbidden;
    let violations = check(&base, &product);
    assert_one(&violations, "san.uri.presence");
    assert!(violations[0].message.contains("recommended"));
}

#[test]
fn changed_subject_pattern_is_accepted_but_removed_pattern_is_widening() {
    let (base, mut product) = product_of(Level::Basic);
    product.subject.country.pattern = Some("^[A-Z]{2,3}$".into());
    assert_eq!(check(&base, &product), []);
    product.subject.country.pattern = None;
    assert_one(&check(&base, &product), "subject.C.pattern");
}

#[test]
fn base_masa_url_must_be_kept() {
    let (mut base, mut product) = product_of(Level::Basic);
    base.extensions.masa_url.value = Some("masa.example".into());
    product.extensions.masa_url.value = Some("masa.example".into());
    assert_eq!(check(&base, &product), []);
    product.extensions.masa_url.value = Some("masa.elsewhere.example".into());
    assert_one(&check(&base, &product), "extensions.masa_url.value");
    product.extensions.masa_url.value = None;
    assert_one(&check(&base, &product), "extensions.masa_url.value");
}

#[test]
fn several_widenings_are_all_reported() {
    let (base, mut product) = product_of(Level::High);
    product.validity.max_days = 4000;
    product.key_protection.minimum = KeyProtection::Software;
    product.validity.allow_no_expiry = true;
    product.san.uri.value = "tag:{device.serial}".into();
    assert_eq!(
        keys_of(&check(&base, &product)),
        [
            "validity.max_days",
            "key_protection.minimum",
            "validity.allow_no_expiry",
            "san.uri.value",
        ]
    );
}

#[test]
fn widening_product_file_is_refused_naming_file_and_key() {
    let mut sources: Vec<PolicySource> = shipped_sources();
    let pump = sources
        .iter_mut()
        .find(|s| s.name.contains("example-infusion-pump"))
        .expect("pump");
    assert!(pump.text.contains("max_days = 365"));
    pump.text = pump.text.replace("max_days = 365", "max_days = 4000");
    let err = PolicySet::from_sources(sources).expect_err("widening product");
    let text = err.to_string();
    assert!(
        text.contains("policies/example-infusion-pump.toml"),
        "{text}"
    );
    assert!(text.contains("validity.max_days"), "{text}");
    assert!(text.contains("398") && text.contains("4000"), "{text}");
}
