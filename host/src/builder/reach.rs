//! What host files a kiln.toml may read: the tree of its own directory,
//! plus directories the *user* allows (`--allow-path`, `KILN_ALLOW_PATH`).
//! A kiln.toml cannot grant itself more, as a Nix flake's pure evaluation
//! cannot read outside its source.
//!
//! Paths are checked after resolving symlinks, and only regular files and
//! directories are read: never a FIFO (it would hang the build), a device
//! or socket, nor anything under `/proc`, `/sys` or `/dev`, whoever allows it.

use std::path::{Path, PathBuf};

/// The directories a build may read host paths from.
#[derive(Debug, Clone)]
pub struct Reach {
    project: PathBuf,
    allowed: Vec<PathBuf>,
}

/// Kernel interfaces that look like files: never inputs.
const NEVER: &[&str] = &["/proc", "/sys", "/dev"];

impl Reach {
    /// The project at `project` (kiln.toml's directory) plus `allowed`.
    pub fn new(project: &Path, allowed: &[PathBuf]) -> Reach {
        let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        Reach {
            project: real(project),
            allowed: allowed.iter().map(|p| real(p)).collect(),
        }
    }

    /// `path` resolved (symlinks followed), if it is inside the project or
    /// an allowed directory and is a regular file or directory; otherwise
    /// what is wrong and how to allow it.
    pub fn check(&self, path: &Path) -> Result<PathBuf, ReachError> {
        let real = path
            .canonicalize()
            .map_err(|source| ReachError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
        if NEVER.iter().any(|n| real.starts_with(n)) {
            return Err(ReachError::KernelInterface { path: real });
        }
        let inside =
            real.starts_with(&self.project) || self.allowed.iter().any(|a| real.starts_with(a));
        if !inside {
            return Err(ReachError::Outside {
                path: path.to_path_buf(),
                real,
                project: self.project.clone(),
            });
        }
        check_kind(&real)?;
        Ok(real)
    }
}

/// Why a host path may not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is a kernel interface, not a file kiln reads", path.display())]
    KernelInterface { path: PathBuf },
    #[error(
        "{} is outside the project directory {}; a kiln.toml may only read inside its own directory (in a workspace, its package's). If you trust this project to read it, pass --allow-path {} (or add it to KILN_ALLOW_PATH)",
        shown(path, real),
        project.display(),
        real.display()
    )]
    Outside {
        path: PathBuf,
        real: PathBuf,
        project: PathBuf,
    },
    #[error("{} is {kind}; kiln reads only regular files and directories", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
}

/// `path`, with what it resolves to when that differs.
fn shown(path: &Path, real: &Path) -> String {
    if real == path {
        real.display().to_string()
    } else {
        format!("{} (resolved to {})", path.display(), real.display())
    }
}

/// Refuse what is not a regular file or a directory.
pub fn check_kind(path: &Path) -> Result<(), ReachError> {
    let meta = std::fs::metadata(path).map_err(|source| ReachError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_fifo() {
        "a fifo"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(ReachError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_project_and_allowed_directories_are_read() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("p");
        let other = d.path().join("other");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, project.join("link")).unwrap();
        let reach = Reach::new(&project, &[]);
        assert!(reach.check(&project.join("src")).is_ok());
        for p in [
            other.clone(),
            project.join("link"),
            project.join("../other"),
        ] {
            let e = reach.check(&p).unwrap_err();
            assert!(matches!(e, ReachError::Outside { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains("outside the project directory"), "{e}");
            assert!(e.contains("--allow-path"), "{e}");
        }
        assert!(
            Reach::new(&project, std::slice::from_ref(&other))
                .check(&other)
                .is_ok()
        );
        let e = Reach::new(&project, &[PathBuf::from("/")])
            .check(Path::new("/proc/self/environ"))
            .unwrap_err();
        assert!(matches!(e, ReachError::KernelInterface { .. }), "{e}");
        assert!(e.to_string().contains("kernel interface"), "{e}");
    }
}
