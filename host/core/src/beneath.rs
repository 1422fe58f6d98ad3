//! The trust boundary for paths an archive, a recipe or an output names:
//! every path is resolved beneath a root directory, one component at a
//! time, by the kernel (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`). No `..`, no absolute path, no symlink — not even
//! one that stays inside — is followed on the way; the final component is
//! never followed either. Anything but a regular file or a directory is
//! refused where content is read.
//!
//! This module does not decide *what* to write or read; the unpacker, the
//! audit and the store do, through it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("'{0}' is absolute or contains '..'")]
    Escapes(String),
    #[error("'{0}' goes through a symlink")]
    ThroughSymlink(String),
    #[error("'{path}' is a {kind}, not a regular file or directory")]
    NotRegular { path: String, kind: &'static str },
    #[error("'{path}': {source}")]
    Io { path: String, source: io::Error },
}

/// A directory that paths are resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Open `dir` (the caller's own path, trusted) as a root.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// The components of `rel`, refusing anything but plain names.
    fn components(rel: &Path) -> Result<Vec<&OsStr>, BeneathError> {
        let mut out = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                _ => return Err(BeneathError::Escapes(rel.display().to_string())),
            }
        }
        Ok(out)
    }

    /// Open the directory `rel` beneath the root; with `create`, make the
    /// missing directories on the way (mode 0755).
    pub fn dir(&self, rel: &Path, create: bool) -> Result<OwnedFd, BeneathError> {
        let parts = Self::components(rel)?;
        let mut cur = rustix::io::dup(&self.fd).map_err(|e| io_err(rel, e.into()))?;
        for part in parts {
            cur = match open_dir(&cur, part) {
                Ok(fd) => fd,
                Err(e) if create && e == rustix::io::Errno::NOENT => {
                    match rustix::fs::mkdirat(&cur, part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(io_err(rel, e.into())),
                    }
                    open_dir(&cur, part).map_err(|e| classify(rel, e))?
                }
                Err(e) => return Err(classify(rel, e)),
            };
        }
        Ok(cur)
    }

    /// The directory holding `rel` (created with `create`) and `rel`'s last
    /// component; `None` for the root itself.
    pub fn parent(
        &self,
        rel: &Path,
        create: bool,
    ) -> Result<Option<(OwnedFd, std::ffi::OsString)>, BeneathError> {
        let parts = Self::components(rel)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(None);
        };
        let parent: std::path::PathBuf = dirs.iter().collect();
        Ok(Some((self.dir(&parent, create)?, last.to_os_string())))
    }

    /// What `rel` is, without following a final symlink; `None` if absent.
    pub fn kind(&self, rel: &Path) -> Result<Option<FileType>, BeneathError> {
        let (dir, name) = match self.parent(rel, false) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Some(FileType::Directory)),
            Err(BeneathError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(rel, e.into())),
        }
    }

    /// Open the regular file `rel` for reading: non-blocking, so a FIFO
    /// cannot stall the caller, and refused unless it is a regular file.
    pub fn open_file(&self, rel: &Path) -> Result<File, BeneathError> {
        let fd = rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| classify(rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(rel, e.into()))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(BeneathError::NotRegular {
                path: rel.display().to_string(),
                kind: kind_name(kind),
            });
        }
        // Reads of a regular file never block; clear the flag for callers
        // that hand the file on.
        let _ = rustix::fs::fcntl_setfl(&fd, OFlags::empty());
        Ok(File::from(fd))
    }
}

fn open_dir(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
}

/// `ELOOP` is what `RESOLVE_NO_SYMLINKS` and `O_NOFOLLOW` say about a symlink.
fn classify(rel: &Path, e: rustix::io::Errno) -> BeneathError {
    match e {
        rustix::io::Errno::LOOP => BeneathError::ThroughSymlink(rel.display().to_string()),
        rustix::io::Errno::XDEV => BeneathError::Escapes(rel.display().to_string()),
        e => io_err(rel, e.into()),
    }
}

fn io_err(rel: &Path, source: io::Error) -> BeneathError {
    BeneathError::Io {
        path: rel.display().to_string(),
        source,
    }
}

/// A file type's name for messages.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device node",
        FileType::Unknown => "file of unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn nothing_is_followed_or_left() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("a")).unwrap();
        std::fs::write(r.join("a/f"), "x").unwrap();
        symlink("a", r.join("inside")).unwrap();
        symlink("/etc", r.join("out")).unwrap();
        let root = Root::open(r).unwrap();
        assert!(root.open_file(Path::new("a/f")).is_ok());
        for (p, want) in [
            ("inside/f", "symlink"),
            ("out/passwd", "symlink"),
            ("../x", "'..'"),
            ("/etc/passwd", "'..'"),
        ] {
            let e = root.open_file(Path::new(p)).unwrap_err().to_string();
            assert!(e.contains(want), "{p}: {e}");
        }
        assert!(matches!(
            root.dir(Path::new("inside/new"), true),
            Err(BeneathError::ThroughSymlink(_))
        ));
        assert!(!r.join("a/new").exists());
        root.dir(Path::new("b/c"), true).unwrap();
        assert!(r.join("b/c").is_dir());
        assert_eq!(
            root.kind(Path::new("out")).unwrap(),
            Some(FileType::Symlink)
        );
        assert_eq!(root.kind(Path::new("no/such/dir")).unwrap(), None);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("p");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let root = Root::open(d.path()).unwrap();
        let e = root.open_file(Path::new("p")).unwrap_err();
        assert!(
            matches!(e, BeneathError::NotRegular { kind: "fifo", .. }),
            "{e}"
        );
    }
}
