//! Where `init` builds a CA before it exists: a staging directory renamed into place only when
//! every step succeeded, and removed, with any parent `init` created, when one failed.

use std::path::{Path, PathBuf};

use iomt_core::files::create_new_private_dir;

use super::{InitError, io};
use crate::config::CONFIG_FILE;
use crate::pki::PkiError;

/// The directory `init` builds the CA in, renamed into place only when everything succeeded:
/// a sibling of a new data directory, or a hidden directory inside an existing empty one (a
/// mount point cannot be renamed over, and its siblings may be on another file system).
pub(super) struct Staging {
    path: PathBuf,
    target: PathBuf,
    target_exists: bool,
    /// The first ancestor of the target that `init` created, removed again on failure.
    created_parent: Option<PathBuf>,
}

impl Staging {
    pub(super) fn create(target: &Path, target_exists: bool) -> Result<Staging, InitError> {
        let suffix = random_suffix()?;
        let (path, created_parent) = if target_exists {
            (target.join(format!(".init-{suffix}")), None)
        } else {
            let parent = match target.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let created_parent = parent.ancestors().take_while(|a| !a.exists()).last();
            let created_parent = created_parent.map(Path::to_path_buf);
            std::fs::create_dir_all(&parent).map_err(io(&parent))?;
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "ca-data".into());
            (
                parent.join(format!(".{name}.init-{suffix}")),
                created_parent,
            )
        };
        let staging = Staging {
            path,
            target: target.to_path_buf(),
            target_exists,
            created_parent,
        };
        create_new_private_dir(&staging.path).map_err(io(&staging.path))?;
        Ok(staging)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished CA into place (`config.toml` last), or removes everything.
    pub(super) fn install(self) -> Result<(), InitError> {
        if !self.target_exists {
            return std::fs::rename(&self.path, &self.target).map_err(io(&self.target));
        }
        let mut names: Vec<_> = std::fs::read_dir(&self.path)
            .map_err(io(&self.path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&self.path))?;
        names.sort_by_key(|name| name == CONFIG_FILE);
        let mut moved: Vec<PathBuf> = Vec::new();
        for name in names {
            let to = self.target.join(&name);
            if let Err(error) = std::fs::rename(self.path.join(&name), &to) {
                for path in moved {
                    remove_path(&path);
                }
                return Err(io(&to)(error));
            }
            moved.push(to);
        }
        std::fs::remove_dir(&self.path).map_err(io(&self.path))
    }
}

impl Drop for Staging {
    /// Whatever is still staged was not installed: it goes.
    fn drop(&mut self) {
        if self.path.exists() {
            remove_path(&self.path);
        }
        if let Some(parent) = &self.created_parent
            && !self.target.exists()
        {
            remove_path(parent);
        }
    }
}

fn remove_path(path: &Path) {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(error) = removed {
        tracing::warn!(path = %path.display(), %error, "could not remove what a failed init wrote");
    }
}

fn random_suffix() -> Result<String, InitError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 6];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}
