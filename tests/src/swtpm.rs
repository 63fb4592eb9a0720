//! A software TPM 2.0 for the attestation tests: `swtpm socket --tpm2` on free local ports,
//! manufactured by `swtpm_setup` with an RSA and an ECC EK and their certificates issued by a
//! local "manufacturer" CA whose files live in the test's own temporary directory (its own
//! `swtpm_setup.conf` and `swtpm-localca.conf`, nothing under /etc or /var is touched).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestApp, run_tool};

/// The tools the harness and the tests drive.
pub const TOOLS: [(&str, &[&str]); 4] = [
    ("swtpm", &["--version"]),
    ("swtpm_setup", &["--help"]),
    ("tpm2_createak", &["--version"]),
    ("tpm2_activatecredential", &["--version"]),
];

/// True when every tool is installed (a missing one skips, or fails under CI=true).
pub fn available() -> bool {
    TOOLS
        .iter()
        .all(|(tool, probe)| crate::require_tool(tool, probe))
}

static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running software TPM; stopped and deleted on drop.
pub struct SoftwareTpm {
    pub dir: tempfile::TempDir,
    /// The tpm2-tss TCTI string that reaches it.
    pub tcti: String,
    child: Child,
}

/// Two consecutive free TCP ports on 127.0.0.1 (swtpm's control port is the server port + 1).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

impl SoftwareTpm {
    /// Manufactures and starts a TPM.
    pub fn start() -> SoftwareTpm {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for sub in ["state", "localca", "ekcerts"] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
        }
        let localca = root.join("localca");
        std::fs::write(
            root.join("swtpm-localca.conf"),
            format!(
                "statedir = {0}\nsigningkey = {0}/signkey.pem\nissuercert = {0}/issuercert.pem\ncertserial = {0}/certserial\n",
                localca.display()
            ),
        )
        .expect("localca conf");
        std::fs::write(
            root.join("swtpm-localca.options"),
            "--platform-manufacturer IoMT-Test\n--platform-version 2.1\n--platform-model swtpm\n",
        )
        .expect("localca options");
        std::fs::write(
            root.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {0}/swtpm-localca.conf\ncreate_certs_tool_options = {0}/swtpm-localca.options\nactive_pcr_banks = sha256\n",
                root.display()
            ),
        )
        .expect("setup conf");
        run_tool(
            Command::new("swtpm_setup")
                .args([
                    "--tpm2",
                    "--create-ek-cert",
                    "--create-platform-cert",
                    "--overwrite",
                ])
                .arg("--tpmstate")
                .arg(root.join("state"))
                .arg("--config")
                .arg(root.join("swtpm_setup.conf"))
                .arg("--write-ek-cert-files")
                .arg(root.join("ekcerts")),
        );
        // Held from choosing the ports until swtpm listens on them, so two TPMs of one test
        // binary never pick the same free ports.
        let _ports = PORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let port = free_port_pair();
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", root.join("state").display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            assert!(
                child.try_wait().expect("swtpm status").is_none(),
                "swtpm exited (ports {port} and {} taken?)",
                port + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SoftwareTpm {
            dir,
            tcti: format!("swtpm:host=127.0.0.1,port={port}"),
            child,
        }
    }

    /// The local manufacturer CA's root certificate (PEM), the one an operator adds to
    /// `tpm-roots`.
    pub fn manufacturer_root(&self) -> PathBuf {
        self.dir
            .path()
            .join("localca/swtpm-localca-rootca-cert.pem")
    }

    /// The manufacturer's intermediate (PEM) that issued the EK certificates.
    pub fn manufacturer_intermediate(&self) -> PathBuf {
        self.dir.path().join("localca/issuercert.pem")
    }

    /// A file in the TPM's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tpm2-tools command aimed at this TPM.
    pub fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(name);
        command
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .current_dir(self.dir.path());
        command
    }

    /// Runs a tpm2-tools command, then flushes transient objects and sessions (swtpm has no
    /// resource manager in front of it, and only three object slots).
    pub fn run(&self, name: &str, args: &[&str]) -> String {
        let out = run_tool(self.tool(name).args(args));
        for kind in ["-t", "-s"] {
            let _ = self.tool("tpm2_flushcontext").arg(kind).output();
        }
        out
    }

    /// Reads a file of the scratch directory.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The scratch directory.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Makes `app`'s CA trust this TPM's manufacturer (`tpm-roots add` of its root and
    /// intermediate); the command's output.
    pub async fn trust_manufacturer(&self, app: &TestApp) -> String {
        let (root, intermediate) = (self.manufacturer_root(), self.manufacturer_intermediate());
        app.cli(&[
            "tpm-roots",
            "add",
            root.to_str().unwrap(),
            intermediate.to_str().unwrap(),
        ])
        .await
        .expect("tpm-roots add")
    }
}

/// SHA-256 of `data`, by `sha256sum` (the suite keeps no crypto dependency of its own).
pub fn sha256(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, data).unwrap();
    let out = run_tool(Command::new("sha256sum").arg(&file));
    hex::decode(out.split_whitespace().next().unwrap()).unwrap()
}

/// A policy edit for `TestApp::spawn_with_policies`: the patient monitor (Substantial, station
/// only) in a build whose board may carry a TPM 2.0, so a token with TPM evidence enrolls it.
pub fn monitor_with_tpm(file: &str, text: &str) -> String {
    if file == "example-patient-monitor.toml" {
        text.replace(
            r#"allowed_modules = ["secure-element"]"#,
            r#"allowed_modules = ["secure-element", "tpm2"]"#,
        )
    } else {
        text.to_owned()
    }
}

/// [`monitor_with_tpm`], and its certificate may name the TPM (the TPM hwType in its
/// HardwareModuleName allow-list, a permanentIdentifier allowed, the attestation marker
/// optional).
pub fn monitor_naming_its_tpm(file: &str, text: &str) -> String {
    if file != "example-patient-monitor.toml" {
        return text.to_owned();
    }
    monitor_with_tpm(file, text)
        .replace(
            r#"hw_type_oids = ["1.3.6.1.4.1.32473.98.4.2"]"#,
            r#"hw_type_oids = ["1.3.6.1.4.1.32473.98.4.2", "2.23.133.1.2"]"#,
        )
        .replace(
            r#"presence = "forbidden" # no TPM in this product"#,
            r#"presence = "optional""#,
        )
        .replace(
            r#"optional_oids = ["1.3.6.1.4.1.32473.7.2.2"]"#,
            r#"optional_oids = ["1.3.6.1.4.1.32473.7.2.2", "1.3.6.1.4.1.32473.7.2.10"]"#,
        )
}

impl Drop for SoftwareTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
