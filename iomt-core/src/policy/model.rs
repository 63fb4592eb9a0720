//! Typed policy values: one [`Policy`] per TOML file, resolved against its base level.

use serde::Deserialize;
use time::Date;

/// The assurance level a policy belongs to (docs/PROFILE.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Basic,
    Substantial,
    High,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 3] = [Level::Basic, Level::Substantial, Level::High];

    /// The lowercase name used in file names, URLs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Substantial => "substantial",
            Level::High => "high",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == name)
    }
}

/// A name that is not `basic`, `substantial` or `high`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not basic, substantial or high")]
pub struct UnknownLevel(pub String);

impl std::str::FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(name: &str) -> Result<Level, UnknownLevel> {
        Level::parse(name).ok_or_else(|| UnknownLevel(name.to_owned()))
    }
}

/// `forbidden < optional < recommended < required` (docs/PROFILE.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Forbidden,
    Optional,
    Recommended,
    Required,
}

/// `none < optional < recommended < required` (docs/PROFILE.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    None,
    Optional,
    Recommended,
    Required,
}

/// `software < hardware < hardware-attested` (docs/PROFILE.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProtection {
    Software,
    Hardware,
    HardwareAttested,
}

/// An enrolment authorisation factor (docs/PROFILE.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorizationFactor {
    KeyAttestation,
    OneTimeToken,
    PreregisteredSerial,
    StationMtls,
}

impl AuthorizationFactor {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationFactor::KeyAttestation => "key-attestation",
            AuthorizationFactor::OneTimeToken => "one-time-token",
            AuthorizationFactor::PreregisteredSerial => "preregistered-serial",
            AuthorizationFactor::StationMtls => "station-mtls",
        }
    }
}

/// A whole policy file after inheritance: every table is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub schema_version: String,
    pub policy: PolicyInfo,
    /// Present in product (narrowing) files only.
    pub manufacturer: Option<Manufacturer>,
    /// Present in product (narrowing) files only.
    pub device: Option<DeviceModel>,
    pub keys: Keys,
    pub key_protection: KeyProtectionRules,
    pub enrollment: Enrollment,
    pub validity: Validity,
    pub serial_number: SerialNumberRules,
    pub subject: Subject,
    pub san: San,
    pub extensions: Extensions,
    pub revocation: Revocation,
    pub renewal: Renewal,
}

/// `[policy]`: identity of the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInfo {
    pub id: String,
    pub name: String,
    pub level: Level,
    pub status: String,
    /// Base policy id; empty for the three level files.
    pub extends: String,
    /// The level OID; set by base files and inherited by products.
    pub certificate_policy_oid: String,
    pub placeholder_oids: bool,
    pub description: String,
}

/// `[manufacturer]`: values bound into `{manufacturer.*}` templates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manufacturer {
    pub legal_name: String,
    pub country: String,
    pub id_domain: String,
    /// OID arc under which the product may add its own policy OIDs.
    pub pen_arc: String,
}

/// `[device]`: values bound into `{device.*}` templates (except the per-device serial and GTIN).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceModel {
    pub model_code: String,
    /// The product's GTINs (UDI-DI); a device's GTIN must be one of them.
    pub gtins: Vec<String>,
    /// Serial syntax for this product, in addition to the level's.
    pub serial_pattern: String,
    pub hw_type_oid: String,
}

/// `[keys]`: the subject-key allow-list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub reject_duplicate_public_key: bool,
    pub rsa_min_public_exponent: u64,
    pub allowed: Vec<AllowedKey>,
}

/// One `[[keys.allowed]]` entry: an ECDSA curve or a set of RSA modulus sizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedKey {
    pub algorithm: KeyAlgorithm,
    /// Set for `ecdsa`.
    pub curve: Option<Curve>,
    /// Set for `rsa`.
    pub bits: Option<Vec<u32>>,
    /// No certificate for this key type may be valid after this date.
    pub sunset: toml::value::Datetime,
}

impl AllowedKey {
    /// The date after which no certificate for this key type may be valid.
    pub fn sunset_date(&self) -> Date {
        match self.sunset.date {
            Some(date) => {
                let month = time::Month::try_from(date.month).unwrap_or(time::Month::January);
                // The TOML parser only accepts real calendar dates; falling back to the earliest
                // date (which refuses issuance) is the safe direction if it ever did not.
                Date::from_calendar_date(i32::from(date.year), month, date.day).unwrap_or(Date::MIN)
            }
            None => Date::MIN,
        }
    }

    /// True when this entry allows an ECDSA key on `curve`.
    pub fn allows_curve(&self, curve: Curve) -> bool {
        self.algorithm == KeyAlgorithm::Ecdsa && self.curve == Some(curve)
    }

    /// True when this entry allows an RSA key of `bits`.
    pub fn allows_rsa(&self, bits: u32) -> bool {
        self.algorithm == KeyAlgorithm::Rsa && self.bits.as_ref().is_some_and(|b| b.contains(&bits))
    }
}

/// Subject key algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    Ecdsa,
    Rsa,
}

/// The elliptic curves the profiles know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Curve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
}

impl Curve {
    /// The NIST name.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// `[key_protection]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyProtectionRules {
    pub minimum: KeyProtection,
    pub allowed_modules: Vec<String>,
    pub attestation: Strength,
}

/// `[enrollment]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub authorization_any_of: Vec<AuthorizationFactor>,
    pub authorization_all_of: Vec<AuthorizationFactor>,
    pub channel_binding: Strength,
    pub one_time_token: OneTimeToken,
    pub station: StationRules,
}

/// `[enrollment.one_time_token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneTimeToken {
    pub max_ttl_hours: u32,
    pub min_entropy_bits: u32,
}

/// `[enrollment.station]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationRules {
    pub max_issuance_per_station_per_hour: u32,
}

/// `[validity]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    pub max_days: u32,
    pub allow_no_expiry: bool,
    pub max_backdate_seconds: u32,
}

/// `[serial_number]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialNumberRules {
    pub min_random_bits: u32,
}

impl SerialNumberRules {
    /// CA/Browser Forum Baseline Requirements §7.1: at least 64 bits of CSPRNG output.
    pub const FLOOR_RANDOM_BITS: u32 = 64;
    /// The most a serial can carry: 20 octets (RFC 5280 §4.1.2.2), the first of them fixed to
    /// keep it positive and of constant length.
    pub const MAX_RANDOM_BITS: u32 = 19 * 8;
}

/// `[subject]`: the DN template, always `C, O, CN, serialNumber` in that order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(rename = "C")]
    pub country: SubjectAttribute,
    #[serde(rename = "O")]
    pub organization: SubjectAttribute,
    #[serde(rename = "CN")]
    pub common_name: SubjectAttribute,
    #[serde(rename = "serialNumber")]
    pub serial_number: SubjectAttribute,
}

/// One subject attribute template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectAttribute {
    pub value: String,
    pub pattern: Option<String>,
    pub max_length: usize,
}

/// `[san]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct San {
    pub hardware_module_name: HardwareModuleNameRule,
    pub uri: UriRule,
    pub permanent_identifier: PresenceOnly,
}

/// `[san.hardware_module_name]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareModuleNameRule {
    pub presence: Presence,
    pub hw_type_oids: Vec<String>,
}

/// `[san.uri]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriRule {
    pub presence: Presence,
    pub allowed_schemes: Vec<String>,
    pub value: String,
}

/// A table with only a `presence` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceOnly {
    pub presence: Presence,
}

/// `[extensions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extensions {
    pub key_usage: KeyUsageRule,
    pub extended_key_usage: ExtendedKeyUsageRule,
    pub certificate_policies: CertificatePoliciesRule,
    pub authority_info_access: AuthorityInfoAccessRule,
    pub masa_url: MasaUrlRule,
}

/// `[extensions.key_usage]`: ECDSA and RSA keys always get `digitalSignature`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUsageRule {
    pub rsa_optional: Vec<String>,
}

/// `[extensions.extended_key_usage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendedKeyUsageRule {
    pub required: Vec<String>,
    pub optional: Vec<String>,
}

/// `[extensions.certificate_policies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatePoliciesRule {
    pub required_oids: Vec<String>,
    pub optional_oids: Vec<String>,
}

/// `[extensions.authority_info_access]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityInfoAccessRule {
    pub ocsp_presence: Presence,
}

/// `[extensions.masa_url]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasaUrlRule {
    pub presence: Presence,
    /// Authority-only form (RFC 8995 §2.3.2); required when `presence = "required"`.
    pub value: Option<String>,
}

/// `[revocation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub crl_max_next_update_hours: u32,
    pub ocsp: Strength,
    pub ocsp_max_response_validity_hours: u32,
    pub revoke_on_key_compromise_hours: u32,
}

/// `[renewal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    pub window_start_percent: u8,
    pub rekey: Strength,
    pub max_key_reuse: u32,
    pub max_key_age_days: u32,
    pub expired_grace_days: u32,
    pub min_reenroll_interval_minutes: u32,
}
