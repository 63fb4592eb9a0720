//! IoMT assurance-profile policies (docs/PROFILE.md §4): typed model, loader and narrowing rules.

mod baseline;
mod diff;
mod error;
mod load;
mod model;
mod narrow;
pub mod template;
mod validate;

pub use diff::changed_keys;
pub use error::{PolicyError, Violation};
pub use load::{PolicyFile, PolicySet, PolicySource};
pub use model::*;
pub use narrow::OPERATOR_TUNED;

/// The policy files shipped in `policies/`, compiled in so a fresh `ca-server init` works from
/// any directory. `init` copies them into the CA's data directory, where the operator may narrow
/// them; the three level files are also the built-in baselines that no file may widen.
pub const SHIPPED_POLICIES: [(&str, &str); 6] = [
    (
        "iomt-basic.toml",
        include_str!("../../../policies/iomt-basic.toml"),
    ),
    (
        "iomt-substantial.toml",
        include_str!("../../../policies/iomt-substantial.toml"),
    ),
    (
        "iomt-high.toml",
        include_str!("../../../policies/iomt-high.toml"),
    ),
    (
        "example-infusion-pump.toml",
        include_str!("../../../policies/example-infusion-pump.toml"),
    ),
    (
        "example-patient-monitor.toml",
        include_str!("../../../policies/example-patient-monitor.toml"),
    ),
    (
        "example-ventilator.toml",
        include_str!("../../../policies/example-ventilator.toml"),
    ),
];

/// The shipped policies as loader input.
pub fn shipped_sources() -> Vec<PolicySource> {
    SHIPPED_POLICIES
        .iter()
        .map(|(name, text)| PolicySource {
            name: format!("policies/{name}"),
            text: (*text).to_owned(),
        })
        .collect()
}
