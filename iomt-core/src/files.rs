//! The filesystem helpers both programs share: atomic, permission-controlled writes and
//! private (0700) directories. (The core otherwise does no I/O; keeping these here avoids
//! copies of subtle routines in the server and the client.)

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// File mode for private keys and secrets.
pub const PRIVATE: u32 = 0o600;
/// File mode for certificates and other public files.
pub const PUBLIC: u32 = 0o644;

/// Writes `contents` to `path` atomically: a temporary file in the same directory, created with
/// `mode`, written, fsynced, renamed over `path`, and the directory fsynced. A crash leaves
/// either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` exclusively (fails if it exists) with `mode`, writes and fsyncs it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Directory mode for key and staging directories.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and any missing parents with mode 0700; an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Creates `dir` (its parent must exist) with mode 0700; fails if anything is already there.
pub fn create_new_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(PRIVATE_DIR).create(dir)
}

/// fsyncs a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_are_0700_and_only_the_new_kind_refuses_an_existing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).expect("with parents");
        create_private_dir(&nested).expect("again");
        for path in [dir.path().join("a"), nested.clone()] {
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
        let fresh = dir.path().join("c");
        create_new_private_dir(&fresh).expect("new");
        assert_eq!(
            create_new_private_dir(&fresh).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(create_new_private_dir(&dir.path().join("x/y")).is_err());
    }

    #[test]
    fn write_atomic_replaces_with_the_requested_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"old", PUBLIC).expect("first");
        write_atomic(&path, b"new", PRIVATE).expect("second");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary files remain");
    }

    #[test]
    fn write_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x");
        write_new(&path, b"1", PRIVATE).expect("create");
        assert!(write_new(&path, b"2", PRIVATE).is_err());
        assert_eq!(fs::read(&path).expect("read"), b"1");
    }
}
