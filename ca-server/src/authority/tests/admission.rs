//! Table tests for admission: which authorization routes each policy accepts. Key attestation
//! and channel binding are not decided here: each is met or refused per request, on the
//! evidence (`authority/attestation/`) and on the connection (`authority/channel_binding.rs`).

use std::sync::LazyLock;

use iomt_core::policy::{AuthorizationFactor as F, Level, Policy, PolicySet, Strength};
use time::macros::datetime;

use super::super::{EnrollError, StationProblem};
use super::{allow_station_enrollment, allow_token_enrollment, seconds_to_next_hour};

static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    PolicySet::from_sources(iomt_core::policy::shipped_sources()).expect("shipped policies")
});

const TOKEN_METHOD: &str = "a manufacturing station's mutual-TLS certificate";

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
            name: "ventilator: station only (attestation and channel binding per request)",
            policy: product("example-ventilator"),
            token: token_refused,
            station: allowed,
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
            name: "High level: station in all_of",
            policy: level(Level::High),
            token: token_refused,
            station: allowed,
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
            name: "pump requiring channel binding: decided on the connection",
            policy: pump_with(|p| p.enrollment.channel_binding = Strength::Required),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "pump requiring both: decided per request",
            policy: pump_with(|p| {
                p.enrollment.channel_binding = Strength::Required;
                p.key_protection.attestation = Strength::Required;
            }),
            token: allowed,
            station: allowed,
        },
        Case {
            name: "required channel binding opens no refused route",
            policy: pump_with(|p| {
                p.enrollment.authorization_any_of.clear();
                p.enrollment.channel_binding = Strength::Required;
            }),
            token: token_refused,
            station: station_refused,
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
