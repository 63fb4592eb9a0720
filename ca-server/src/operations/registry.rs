//! Device registration and enrollment tokens: the operations behind `ca-server device` and
//! `ca-server token` and the admin API. Validation happens here; SQL in storage.

use std::collections::HashSet;
use std::time::Duration;

use iomt_core::identity::check_serial;
use iomt_core::policy::PolicySet;

use crate::auth::token;
use crate::storage::{
    AuditAction, AuditEvent, Device, DeviceStatus, Store, StoreError, TokenRecord,
};

/// One device to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub serial: String,
    pub product: String,
    pub lot: Option<String>,
    /// Defaults to the product's first GTIN.
    pub gtin: Option<String>,
}

/// A problem with one input line (1-based, counting the CSV header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
    /// The line's only fault is that its device is already registered.
    pub already_registered: bool,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why registration or token creation was refused. Nothing is written when it is.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{} bad line(s), nothing registered:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    BadLines(Vec<LineError>),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("no devices given")]
    Empty,
    #[error("token lifetime {requested} exceeds the {max_hours} h that product `{product}` allows")]
    TtlTooLong {
        requested: String,
        max_hours: u32,
        product: String,
    },
    #[error(
        "product `{product}` does not accept one-time tokens (it enrolls through a manufacturing \
         station; at Substantial, a token is accepted for a TPM-attested key only where the \
         product allows a TPM 2.0)"
    )]
    TokensNotAllowed { product: String },
    #[error("not registered: {}", .0.join(", "))]
    UnknownDevices(Vec<String>),
    #[error("device {0} is disabled")]
    DeviceDisabled(String),
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses an MES CSV export: a header with `serial` and `product`, optional `lot` and `gtin`.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Registration)>, RegistryError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| RegistryError::Csv(e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(serial_col), Some(product_col)) = (column("serial"), column("product")) else {
        return Err(RegistryError::Csv(
            "the header must name `serial` and `product` columns (optional: `lot`, `gtin`)".into(),
        ));
    };
    let (lot_col, gtin_col) = (column("lot"), column("gtin"));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        match record {
            Ok(record) => {
                let field = |col: Option<usize>| {
                    col.and_then(|c| record.get(c))
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                rows.push((
                    line,
                    Registration {
                        serial: field(Some(serial_col)).unwrap_or_default(),
                        product: field(Some(product_col)).unwrap_or_default(),
                        lot: field(lot_col),
                        gtin: field(gtin_col),
                    },
                ));
            }
            Err(e) => errors.push(LineError {
                line,
                message: e.to_string(),
                already_registered: false,
            }),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(RegistryError::BadLines(errors))
    }
}

/// Registers devices all-or-nothing; every bad line is reported, not just the first.
pub async fn register(
    policies: &PolicySet,
    store: &dyn Store,
    rows: &[(usize, Registration)],
    actor: &str,
) -> Result<usize, RegistryError> {
    if rows.is_empty() {
        return Err(RegistryError::Empty);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut devices = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let mut fail = |message: String| {
            errors.push(LineError {
                line: *line,
                message,
                already_registered: false,
            })
        };
        let Some(policy) = policies.product(&row.product) else {
            let known: Vec<_> = policies.products().map(|p| p.policy.id.as_str()).collect();
            fail(format!(
                "unknown product `{}` (known: {})",
                row.product,
                known.join(", ")
            ));
            continue;
        };
        if let Err(e) = check_serial(policy, &row.serial) {
            fail(format!("serial: {e}"));
            continue;
        }
        if !seen.insert(row.serial.clone()) {
            fail(format!("serial {} appears more than once", row.serial));
            continue;
        }
        let gtins = policy
            .device
            .as_ref()
            .map(|d| d.gtins.clone())
            .unwrap_or_default();
        let gtin = match &row.gtin {
            Some(gtin) if gtins.contains(gtin) => gtin.clone(),
            Some(gtin) => {
                fail(format!(
                    "GTIN {gtin} is not one of product {}'s ({})",
                    row.product,
                    gtins.join(", ")
                ));
                continue;
            }
            None => match gtins.first() {
                Some(first) => first.clone(),
                None => {
                    fail(format!("product {} lists no GTIN", row.product));
                    continue;
                }
            },
        };
        if let Some(lot) = &row.lot
            && (lot.len() > 64 || lot.chars().any(char::is_control))
        {
            fail("lot must be at most 64 printable characters".into());
            continue;
        }
        devices.push(Device {
            serial: row.serial.clone(),
            product: row.product.clone(),
            gtin,
            lot: row.lot.clone(),
            status: DeviceStatus::Active,
            registered_at: now,
        });
    }
    let serials: Vec<String> = devices.iter().map(|d| d.serial.clone()).collect();
    let existing: HashSet<String> = store
        .registered_serials(&serials)
        .await?
        .into_iter()
        .collect();
    for (line, row) in rows {
        if existing.contains(&row.serial) {
            errors.push(LineError {
                line: *line,
                message: format!("device {} is already registered", row.serial),
                already_registered: true,
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(RegistryError::BadLines(errors));
    }
    let audit: Vec<AuditEvent> = devices
        .iter()
        .map(|d| AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: AuditAction::DeviceRegistered.into(),
            object: format!("device:{}", d.serial),
            details: serde_json::json!({"product": d.product, "gtin": d.gtin, "lot": d.lot})
                .to_string(),
        })
        .collect();
    store.register_devices(&devices, &audit).await?;
    Ok(devices.len())
}

/// A created token for one device; the secret is shown once.
#[derive(Debug)]
pub struct CreatedToken {
    pub serial: String,
    pub token: token::NewToken,
    pub expires_at: i64,
}

/// Creates one token per serial, all-or-nothing. `ttl` defaults to the product's maximum.
pub async fn create_tokens(
    policies: &PolicySet,
    store: &dyn Store,
    serials: &[String],
    ttl: Option<Duration>,
    actor: &str,
) -> Result<Vec<CreatedToken>, RegistryError> {
    if serials.is_empty() {
        return Err(RegistryError::Empty);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut unknown = Vec::new();
    let mut created = Vec::with_capacity(serials.len());
    for serial in serials {
        let Some(device) = store.device(serial).await? else {
            unknown.push(serial.clone());
            continue;
        };
        if device.status != DeviceStatus::Active {
            return Err(RegistryError::DeviceDisabled(device.serial));
        }
        let Some(policy) = policies.product(&device.product) else {
            unknown.push(serial.clone());
            continue;
        };
        let enrollment = &policy.enrollment;
        if !crate::authority::tokens_accepted(policy) {
            return Err(RegistryError::TokensNotAllowed {
                product: device.product,
            });
        }
        if token::TOKEN_ENTROPY_BITS < enrollment.one_time_token.min_entropy_bits {
            return Err(RegistryError::TokensNotAllowed {
                product: device.product,
            });
        }
        let max_hours = enrollment.one_time_token.max_ttl_hours;
        let max = Duration::from_secs(u64::from(max_hours) * 3600);
        let lifetime = ttl.unwrap_or(max);
        if lifetime > max || lifetime.is_zero() {
            return Err(RegistryError::TtlTooLong {
                requested: humantime::format_duration(lifetime).to_string(),
                max_hours,
                product: device.product,
            });
        }
        let secret = token::generate().map_err(|_| RegistryError::Random)?;
        created.push(CreatedToken {
            serial: serial.clone(),
            token: secret,
            expires_at: now + lifetime.as_secs() as i64,
        });
    }
    if !unknown.is_empty() {
        return Err(RegistryError::UnknownDevices(unknown));
    }
    let records: Vec<TokenRecord> = created
        .iter()
        .map(|c| TokenRecord {
            token_hash: c.token.hash.clone(),
            device_serial: c.serial.clone(),
            created_at: now,
            expires_at: c.expires_at,
            used_at: None,
            revoked_at: None,
        })
        .collect();
    let audit: Vec<AuditEvent> = created
        .iter()
        .map(|c| AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: AuditAction::TokenCreated.into(),
            object: format!("device:{}", c.serial),
            details: format!(r#"{{"expires_at":{}}}"#, c.expires_at),
        })
        .collect();
    store.create_tokens(&records, &audit).await?;
    Ok(created)
}
