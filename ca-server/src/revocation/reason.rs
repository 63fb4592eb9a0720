//! RFC 5280 §5.3.1 revocation reasons, by the names operators type.

use rcgen::RevocationReason;

/// A revocation reason an operator may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(RevocationReason);

/// The names accepted, in RFC 5280 order.
pub const REASON_NAMES: [&str; 9] = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
];

impl Reason {
    /// `superseded`: the certificate was replaced (used when a device is re-provisioned).
    pub const SUPERSEDED: Reason = Reason(RevocationReason::Superseded);

    /// Parses an RFC 5280 reason name (case-insensitive).
    pub fn parse(name: &str) -> Option<Reason> {
        use RevocationReason as R;
        let reason = match name.to_ascii_lowercase().as_str() {
            "unspecified" => R::Unspecified,
            "keycompromise" => R::KeyCompromise,
            "cacompromise" => R::CaCompromise,
            "affiliationchanged" => R::AffiliationChanged,
            "superseded" => R::Superseded,
            "cessationofoperation" => R::CessationOfOperation,
            "certificatehold" => R::CertificateHold,
            "privilegewithdrawn" => R::PrivilegeWithdrawn,
            "aacompromise" => R::AaCompromise,
            _ => return None,
        };
        Some(Reason(reason))
    }

    /// The RFC 5280 name.
    pub fn name(self) -> &'static str {
        REASON_NAMES[match self.0 as u8 {
            code @ 0..=6 => usize::from(code),
            code => usize::from(code) - 2, // 7 is unused and 8 (removeFromCRL) is not accepted
        }]
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        self.0 as u8
    }

    /// `certificateHold`: a reversible suspension.
    pub fn hold() -> Reason {
        Reason(RevocationReason::CertificateHold)
    }

    /// True for `certificateHold`: a reversible suspension.
    pub fn is_hold(self) -> bool {
        self.0 == RevocationReason::CertificateHold
    }

    /// The rcgen value.
    pub fn rcgen(self) -> RevocationReason {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for name in REASON_NAMES {
            assert_eq!(Reason::parse(name).unwrap().name(), name);
        }
        assert_eq!(Reason::parse("keyCompromise").unwrap().code(), 1);
        assert_eq!(Reason::parse("aACompromise").unwrap().code(), 10);
        assert!(Reason::parse("stolen").is_none());
        assert!(
            Reason::parse("removeFromCRL").is_none(),
            "release is its own command"
        );
    }
}
