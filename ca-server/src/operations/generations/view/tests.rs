use super::*;
use crate::storage::{IssuerCount, KeyCustody};

fn record(name: &str, status: GenerationStatus, not_after: i64) -> GenerationRecord {
    let id = GenerationId::parse(name).expect("name");
    GenerationRecord {
        name: name.into(),
        ca: id.role.as_str().into(),
        generation: i64::from(id.number),
        status,
        not_before: Some(0),
        not_after: Some(not_after),
        der: None,
        custody: KeyCustody::DataDir,
        key: None,
        created_at: 0,
        changed_at: 0,
        links: None,
    }
}

#[test]
fn warnings_start_at_the_planned_date_and_again_when_a_full_lifetime_no_longer_fits() {
    let policies =
        PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies");
    let mut lifecycle = CaLifecycle::default();
    lifecycle.basic.rollover_before_days = Some(800);
    let longest = longest_issued_days(
        CaRole::Issuing(iomt_core::policy::Level::Basic),
        &policies,
        &lifecycle,
    );
    assert!(longest > 0);
    let not_after = 10_000 * DAY;
    let basic = record("basic", GenerationStatus::Active, not_after);
    let at = |days_before: i64| {
        assess(
            &basic,
            &[],
            &policies,
            &lifecycle,
            not_after - days_before * DAY,
        )
        .warnings
    };
    assert!(at(801).is_empty(), "{:?}", at(801));
    assert_eq!(at(800).len(), 1, "planned date reached");
    assert!(at(800)[0].contains("planned rollover"));
    let capped = at(longest);
    assert_eq!(capped.len(), 2, "{capped:?}");
    assert!(capped[0].contains("full certificate lifetime"));
    let view = assess(&basic, &[], &policies, &lifecycle, 0);
    assert_eq!(view.planned_rollover, Some(not_after - 800 * DAY));
    assert_eq!(view.full_lifetime_until, Some(not_after - longest * DAY));
    assert_eq!(view.valid_certificates, Some(0));

    // The default lead is the longest certificate plus 180 days.
    assert_eq!(
        rollover_before_days(
            CaRole::Issuing(iomt_core::policy::Level::High),
            &policies,
            &lifecycle
        ),
        longest_issued_days(
            CaRole::Issuing(iomt_core::policy::Level::High),
            &policies,
            &lifecycle
        ) + 180
    );
    let retiring = record("basic", GenerationStatus::Retiring, not_after);
    let counts = [IssuerCount {
        issuer: "basic".into(),
        valid: 3,
        unexpired: 4,
        last_not_after: 77 * DAY,
    }];
    let view = assess(&retiring, &counts, &policies, &lifecycle, 0);
    assert_eq!(view.valid_certificates, Some(3));
    assert!(
        view.warnings[0].starts_with("retiring"),
        "{:?}",
        view.warnings
    );
}
