//! `AuditAction`: the vocabulary of the audit trail, in one list. Every event the CA writes
//! names one of these; auditors and SIEM rules match on the text, so a name never changes
//! meaning. The README's table of audit events is generated from [`AuditAction::ALL`]. Events
//! read back from the store keep their text as stored, so a trail written by an older release
//! still verifies and exports.

macro_rules! audit_actions {
    ($($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)*) => {
        /// What an audit event records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AuditAction {
            $($(#[doc = $doc])+ $variant,)*
        }

        impl AuditAction {
            /// Every action, in alphabetical order of its text.
            pub const ALL: &[AuditAction] = &[$(AuditAction::$variant,)*];

            /// The action as stored: `object.event`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $text,)*
                }
            }

            /// What the event records, in one line.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => concat!($($doc),+).trim_ascii(),)*
                }
            }
        }
    };
}

audit_actions! {
    /// an operator failed to authenticate to the admin API (throttled: one event per source and window)
    AdminLoginFailed = "admin.login_failed",
    /// an admin API key was created
    ApiKeyCreated = "apikey.created",
    /// an admin API key was revoked
    ApiKeyRevoked = "apikey.revoked",
    /// the start-up guard found the audit trail's protection missing and restored it
    AuditProtectionRestored = "audit.protection_restored",
    /// the CA hierarchy was created (`init`)
    CaCreated = "ca.created",
    /// certificates signed by an offline root were installed (`ca import`)
    CaImported = "ca.imported",
    /// a retiring CA generation's last certificate expired: it retired, its final CRL published
    CaRetired = "ca.retired",
    /// a new CA generation became active (`ca rollover`, or `ca import` of a rollover signed by the offline root); the previous one is retiring
    CaRolledOver = "ca.rolled_over",
    /// a CA generation's key and CSR were made for the offline root (`ca rollover` under an offline root)
    CaRolloverPending = "ca.rollover_pending",
    /// the offline root's renewed pre-signed OCSP responses were installed
    CaRootOcspInstalled = "ca.root_ocsp_installed",
    /// the HTTPS listener's certificate was renewed by the root (before expiry, or after a root rollover), with a new key
    CaTlsRenewed = "ca.tls_renewed",
    /// a certificate was put on hold (certificateHold)
    CertificateHeld = "certificate.held",
    /// a device certificate was issued at first enrollment
    CertificateIssued = "certificate.issued",
    /// a device certificate was issued by re-enrollment, superseding the previous one
    CertificateReissued = "certificate.reissued",
    /// a hold was lifted; the certificate is valid again
    CertificateReleased = "certificate.released",
    /// a repeated request got the certificate already issued for the same key
    CertificateResent = "certificate.resent",
    /// a certificate was revoked
    CertificateRevoked = "certificate.revoked",
    /// an operator signed in to the web console (API key or operator certificate)
    ConsoleSignedIn = "console.signed_in",
    /// an operator signed out of the web console
    ConsoleSignedOut = "console.signed_out",
    /// a device was disabled
    DeviceDisabled = "device.disabled",
    /// a device was registered
    DeviceRegistered = "device.registered",
    /// a device's certificates were revoked so it can enroll afresh (`device reprovision`)
    DeviceReprovisioned = "device.reprovisioned",
    /// an enrollment with a new key was refused because the device already holds a valid certificate (clone suspected)
    EnrollmentRefusedClone = "enrollment.refused_clone",
    /// an attested enrollment was refused because the device is bound to another TPM (EK)
    EnrollmentRefusedTpm = "enrollment.refused_tpm",
    /// an operator certificate was enrolled
    OperatorAdded = "operator.added",
    /// an operator certificate was revoked
    OperatorRevoked = "operator.revoked",
    /// a product policy changed between two starts of the server (old and new digests)
    PolicyChanged = "policy.changed",
    /// a product policy was loaded at `init`
    PolicyLoaded = "policy.loaded",
    /// a recall finished: every matching certificate is held or revoked
    RecallCompleted = "recall.completed",
    /// a recall's held certificates were released
    RecallReleased = "recall.released",
    /// a recall was started (its query, action and reason)
    RecallStarted = "recall.started",
    /// a manufacturing station's certificate was issued
    StationCertificateIssued = "station.certificate_issued",
    /// a manufacturing station was created
    StationCreated = "station.created",
    /// a manufacturing station was disabled
    StationDisabled = "station.disabled",
    /// a new enrollment token was made for a station
    StationTokenCreated = "station.token_created",
    /// a one-time enrollment token was made for a device
    TokenCreated = "token.created",
    /// a device's pending enrollment tokens were revoked
    TokenRevoked = "token.revoked",
    /// a TPM manufacturer root was added to the EK trust anchors (`tpm-roots add`)
    TpmRootAdded = "tpm_root.added",
    /// a TPM manufacturer root was removed from the EK trust anchors (`tpm-roots remove`)
    TpmRootRemoved = "tpm_root.removed",
}

impl From<AuditAction> for String {
    fn from(action: AuditAction) -> String {
        action.as_str().to_owned()
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The README's table of audit events (between the `audit-actions` markers).
pub fn markdown_table() -> String {
    let mut table = String::from("| action | records |\n|---|---|\n");
    for action in AuditAction::ALL {
        table.push_str(&format!(
            "| `{}` | {} |\n",
            action.as_str(),
            action.meaning()
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn actions_are_unique_sorted_and_shaped_object_dot_event() {
        let texts: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        let unique: BTreeSet<&str> = texts.iter().copied().collect();
        assert_eq!(unique.len(), texts.len(), "an action appears twice");
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "ALL is sorted");
        for text in texts {
            let (object, event) = text.split_once('.').expect("object.event");
            let shaped =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            assert!(shaped(object) && shaped(event), "{text}");
        }
    }

    /// `REGENERATE_AUDIT_ACTIONS=1 cargo test -p ca-server --lib audit_action` rewrites it.
    #[test]
    fn readme_table_is_the_vocabulary() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- audit-actions:begin", "<!-- audit-actions:end -->");
        let start = readme
            .find(begin)
            .expect("README has the audit-actions markers");
        let body_start = start + readme[start..].find("-->\n").unwrap() + 4;
        let body_end = readme.find(end).unwrap();
        let table = markdown_table();
        if std::env::var_os("REGENERATE_AUDIT_ACTIONS").is_some() {
            let updated = format!("{}{}{}", &readme[..body_start], table, &readme[body_end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            &readme[body_start..body_end],
            table,
            "README audit-event table is stale: REGENERATE_AUDIT_ACTIONS=1 cargo test -p ca-server --lib audit_action"
        );
    }
}
