//! DigiCert's pkilint, as the suite finds it: the project virtualenv `.ci/run` creates
//! (`.venv/bin/<tool>`), else PATH; absent, the test skips with a reason (fails under CI=true).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require_tool;

/// The pkilint command `name` (`lint_ocsp_response`, `lint_crl`, `lint_pkix_cert`), if present.
pub fn tool(name: &str) -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    if local.exists() {
        return Some(local);
    }
    require_tool(name, &["--help"]).then(|| PathBuf::from(name))
}

/// Runs `linter lint EXTRA -s WARNING FILE` and panics on any ERROR or FATAL finding.
pub fn assert_clean(linter: &Path, extra: &[&str], file: &Path) {
    let output = Command::new(linter)
        .arg("lint")
        .args(extra)
        .args(["-s", "WARNING"])
        .arg(file)
        .output()
        .expect("run pkilint");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        !report.contains("ERROR") && !report.contains("FATAL") && !report.contains("usage:"),
        "pkilint reports errors for {}:\n{report}",
        file.display()
    );
}
