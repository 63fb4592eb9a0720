//! CA generations (docs/PROFILE.md §3.7): every CA of the hierarchy has generations G1, G2, ...
//! A generation's *name* is what its certificates' `issuer` column, its CRL, its OCSP responder
//! and its URLs use: the CA's own name for G1 (`basic`, so data directories and device
//! certificates made before rollovers existed keep their meaning) and `<ca>-g<N>` after that.

use iomt_core::policy::Level;

use super::{ROOT_CA, STATION_CA, TLS_CERT};

/// One CA of the hierarchy, whatever its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaRole {
    /// The issuing CA of an assurance level (device certificates).
    Issuing(Level),
    /// The root.
    Root,
    /// The manufacturing-station CA.
    Station,
    /// The HTTPS listener's certificate (infrastructure).
    Tls,
}

impl CaRole {
    /// Every CA, in `ca list` order.
    pub const ALL: [CaRole; 6] = [
        CaRole::Root,
        CaRole::Issuing(Level::Basic),
        CaRole::Issuing(Level::Substantial),
        CaRole::Issuing(Level::High),
        CaRole::Station,
        CaRole::Tls,
    ];

    /// The CA's name (`root`, `basic`, ..., `tls`), also the name of its first generation.
    pub fn as_str(self) -> &'static str {
        match self {
            CaRole::Issuing(level) => level.as_str(),
            CaRole::Root => ROOT_CA,
            CaRole::Station => STATION_CA,
            CaRole::Tls => TLS_CERT,
        }
    }

    /// The CA a name (`--ca`) designates.
    pub fn parse(name: &str) -> Option<CaRole> {
        CaRole::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// True for the CAs whose certificates are device or station certificates: what `ca
    /// rollover` renews under the same root.
    pub fn is_subordinate_ca(self) -> bool {
        matches!(self, CaRole::Issuing(_) | CaRole::Station)
    }
}

/// A generation of one CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenerationId {
    pub role: CaRole,
    /// 1, 2, ...
    pub number: u32,
}

impl GenerationId {
    /// The first generation (made by `init`).
    pub fn first(role: CaRole) -> GenerationId {
        GenerationId { role, number: 1 }
    }

    /// The generation after this one.
    pub fn next(self) -> GenerationId {
        GenerationId {
            role: self.role,
            number: self.number + 1,
        }
    }

    /// `basic` for G1, `basic-g2` for G2, ...
    pub fn name(self) -> String {
        match self.number {
            1 => self.role.as_str().to_owned(),
            n => format!("{}-g{n}", self.role.as_str()),
        }
    }

    /// The generation a name designates (`basic`, `basic-g2`); `None` for anything else,
    /// including `basic-g1` (G1 is always spelled without suffix) and `basic-g02`.
    pub fn parse(name: &str) -> Option<GenerationId> {
        if let Some(role) = CaRole::parse(name) {
            return Some(GenerationId::first(role));
        }
        let (ca, number) = name.rsplit_once("-g")?;
        let role = CaRole::parse(ca)?;
        if number.starts_with('0') || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u32 = number.parse().ok()?;
        (number >= 2).then_some(GenerationId { role, number })
    }

    /// `G1`, `G2`, ... (for titles and `ca list`).
    pub fn label(self) -> String {
        format!("G{}", self.number)
    }
}

impl std::fmt::Display for GenerationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip_and_odd_spellings_are_refused() {
        for role in CaRole::ALL {
            for number in [1, 2, 3, 17] {
                let id = GenerationId { role, number };
                assert_eq!(GenerationId::parse(&id.name()), Some(id), "{id}");
            }
        }
        assert_eq!(GenerationId::parse("basic").map(|g| g.number), Some(1));
        assert_eq!(GenerationId::parse("high-g2").map(|g| g.number), Some(2));
        for bad in [
            "basic-g1",
            "basic-g0",
            "basic-g02",
            "basic-g",
            "basic-gx",
            "ops-g2",
            "",
            "-g2",
            "basic-g+2",
        ] {
            assert_eq!(GenerationId::parse(bad), None, "{bad}");
        }
    }
}
