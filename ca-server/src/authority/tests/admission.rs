//! Table tests for admission: which authorization routes each policy accepts, and the
//! requirement this CA refuses rather than issue without (channel binding). Key attestation is
//! no longer refused here: it is met or refused on the evidence (`authority/attestation/`).

use std::sync::LazyLock;

use iomt_core::policy::{AuthorizationFactor as F, Level, Policy, PolicySet, Strength};
use time::macros::datetime;

use super::super::{EnrollError, StationProblem};
use super::{allow_station_enrollment, allow_token_enrollment, seconds_to_next_hour};

static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies")
});

const TOKEN_METHOD: &str = "a manufacturing station's mutual-TLS certificate";
const CHANNEL_BINDING: &str = "TLS channel binding (RFC 9266)";

/// What a route's admission check decided, comparable (`EnrollError` is not `PartialEq`).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    TokenNotAllowed {
        product: String,
        method: &'static str,
    },
    StationNotAllowed {
        product: String,
    },
    RequirementUnsupported {
        product: String,
        requirement: &'static str,
    },
}

fn verdict(result: Result<(), EnrollError>) -> Verdict {
    match result {
        Ok(()) => Verdict::Allowed,
        Err(EnrollError::TokenNotAllowed { product, method }) => {
            Verdict::TokenNotAllowed { product, method }
        }
        Err(EnrollError::Station(StationProblem::NotAllowed { product })) => {
            Verdict::StationNotAllowed { product }
        }
        Err(EnrollError::RequirementUnsupported {
            product,
            requirement,
        }) => Verdict::RequirementUnsupported {
            product,
            requirement,
        },
        Err(other) => panic!("admission refused with an unexpected error: {other:?}"),
    }
}

fn product(id: &str) -> Policy {
    POLICIES.product(id).expect("shipped product").clone()
}

fn pump() -> Policy {
    product("example-infusion-pump")
}

fn pump_with(edit: impl FnOnce(&mut Policy)) -> Policy {
    let mut policy = pump();
    edit(&mut policy);
    policy
}

fn token_refused(policy: &Policy) -> Verdict {
    Verdict::TokenNotAllowed {
        product: policy.policy.id.clone(),
        method: TOKEN_METHOD,
    }
}

fn station_refused(policy: &Policy) -> Verdict {
    Verdict::StationNotAllowed {
        product: policy.policy.id.clone(),
    }
}

fn unsupported(policy: &Policy, requirement: &'static str) -> Verdict {
    Verdict::RequirementUnsupported {
        product: policy.policy.id.clone(),
        requirement,
    }
}

/// One policy and what each route gets under it.
struct Case {
    name: &'static str,
    policy: Policy,
    token: fn(&Policy) -> Verdict,
    station: fn(&Policy) -> Verdict,
}

fn allowed(_: &Policy) -> Verdict {
    Verdict::Allowed
}

fn channel_binding(policy: &Policy) -> Verdict {
    unsupported(policy, CHANNEL_BINDING)
}

#[test]
fn each_policy_admits_exactly_its_routes() {
    let level = |level| POLICIES.level(level).clone();
    let cases = vec![
        Case {
            name: "infusion pump: token or station",
            policy: pump(),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "patient monitor: station only",
            policy: product("example-patient-monitor"),
            token: token_refused,
            station: allowed,
        },
        Case {
            name: "ventilator: attestation and channel binding required",
            policy: product("example-ventilator"),
            token: channel_binding,
            station: channel_binding,
        },
        Case {
            name: "Basic level",
            policy: level(Level::Basic),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "Substantial level: station in all_of",
            policy: level(Level::Substantial),
            token: token_refused,
            station: allowed,
        },
        Case {
            name: "High level: channel binding is not verified yet",
            policy: level(Level::High),
            token: channel_binding,
            station: channel_binding,
        },
        Case {
            name: "pump narrowed to stations",
            policy: pump_with(|p| p.enrollment.authorization_any_of = vec![F::StationMtls]),
            token: token_refused,
            station: allowed,
        },
        Case {
            name: "pump narrowed to tokens",
            policy: pump_with(|p| p.enrollment.authorization_any_of = vec![F::OneTimeToken]),
            token: allowed,
            station: station_refused,
        },
        Case {
            name: "pump with a token and a station both required",
            policy: pump_with(|p| {
                p.enrollment.authorization_any_of = vec![F::OneTimeToken];
                p.enrollment.authorization_all_of = vec![F::StationMtls];
            }),
            token: token_refused,
            station: allowed,
        },
        Case {
            name: "pump with no route at all",
            policy: pump_with(|p| p.enrollment.authorization_any_of.clear()),
            token: token_refused,
            station: station_refused,
        },
        Case {
            name: "pump requiring key attestation as a factor: decided on the evidence",
            policy: pump_with(|p| p.enrollment.authorization_all_of.push(F::KeyAttestation)),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "pump requiring attested keys: decided on the evidence",
            policy: pump_with(|p| p.key_protection.attestation = Strength::Required),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "pump requiring channel binding",
            policy: pump_with(|p| p.enrollment.channel_binding = Strength::Required),
            token: channel_binding,
            station: channel_binding,
        },
        Case {
            name: "pump requiring both: channel binding is refused",
            policy: pump_with(|p| {
                p.enrollment.channel_binding = Strength::Required;
                p.key_protection.attestation = Strength::Required;
            }),
            token: channel_binding,
            station: channel_binding,
        },
        Case {
            name: "an unsupported requirement outranks a refused route",
            policy: pump_with(|p| {
                p.enrollment.authorization_any_of.clear();
                p.enrollment.channel_binding = Strength::Required;
            }),
            token: channel_binding,
            station: channel_binding,
        },
        Case {
            name: "recommended attestation and channel binding are not required",
            policy: pump_with(|p| {
                p.enrollment.channel_binding = Strength::Recommended;
                p.key_protection.attestation = Strength::Recommended;
            }),
            token: allowed,
            station: allowed,
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        for (route, got, want) in [
            (
                "token",
                verdict(allow_token_enrollment(&case.policy)),
                (case.token)(&case.policy),
            ),
            (
                "station",
                verdict(allow_station_enrollment(&case.policy)),
                (case.station)(&case.policy),
            ),
        ] {
            if got != want {
                failures.push(format!(
                    "{} ({route}): expected {want:?}, got {got:?}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A station's hourly count restarts at the top of each UTC hour.
#[test]
fn station_retry_waits_for_the_next_utc_hour() {
    for (now, seconds) in [
        (datetime!(2026-12-02 12:00:00 UTC), 3600),
        (datetime!(2026-12-02 12:00:01 UTC), 3599),
        (datetime!(2026-12-02 12:30:00 UTC), 1800),
        (datetime!(2026-12-02 12:59:59 UTC), 1),
        (datetime!(1969-12-31 23:59:59 UTC), 1),
    ] {
        assert_eq!(seconds_to_next_hour(now), seconds, "{now}");
    }
}
