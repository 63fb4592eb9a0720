//! PROFILES.md §4.2: a product policy may only narrow its level.

use super::error::Violation;
use super::model::Policy;

/// Every way `product` widens `base`; empty when it only narrows.
pub fn check(_base: &Policy, _product: &Policy) -> Vec<Violation> {
    Vec::new() // FILLED IN BY HELPER
}
