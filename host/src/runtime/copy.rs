//! The `files.copy` import: a file, symlink or tree copied by the host from
//! `/inputs`, `/work` or `/out` into `/work` or `/out`, keeping executable
//! bits and symlinks (copied, never followed). Every step goes through a
//! directory handle opened beneath its root, so no symlink a tool planted
//! leads the host out; only regular files, directories and symlinks are
//! copied (a FIFO or device is refused, opened non-blocking). The copy
//! checks the build's deadline between files and between 64 MiB steps, and
//! stops at the disk budget it is given.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use super::bindings::kiln::recipe::types::Error as FsError;
use super::budget::{Budget, STEP, Stop};
use super::guest_fs::{GuestFs, Place, dir, io_error, normal};

/// Trees deeper than this are refused (a recipe cannot make the host recurse without end).
const MAX_DEPTH: usize = 256;

/// Copy `src` to `dst` (see the WIT doc of `files.copy`), writing at most
/// `budget` bytes.
pub(super) fn copy(
    fs: &GuestFs<'_>,
    src: &str,
    dst: &str,
    budget: u64,
    deadline: Instant,
) -> Result<(), Stop> {
    let mut budget = Budget::new(deadline, budget);
    let (dst_root, dst_inner) = fs.writable(dst)?;
    let (a, b) = (normal(src), normal(dst));
    if b.len() > a.len() && b.starts_with(&a) {
        return Err(FsError::Invalid(format!(
            "{dst} is inside {src}: a tree cannot be copied into itself"
        ))
        .into());
    }
    let dst_dir = dir(dst_root, dst)?;
    // Where the copy goes: a fresh name in an existing parent, or an
    // existing empty directory (only for a tree).
    let (dst_parent, dst_name) = split(&dst_dir, dst_inner, dst)?;
    let dst_exists = match &dst_name {
        None => true,
        Some(name) => dst_parent.symlink_metadata(name).is_ok(),
    };
    // A file (or symlink) goes to a name that does not exist yet.
    let fresh = || match (&dst_name, dst_exists) {
        (Some(name), false) => Ok(name.as_str()),
        _ => Err(exists(dst)),
    };

    let (root, inner) = match fs.place(src)? {
        Place::FileInput(host) => {
            let f = File::open(host).map_err(|e| io_error(src, &e))?;
            return copy_file(f, &dst_parent, fresh()?, src, &mut budget);
        }
        Place::Beneath { root, inner } => (root, inner),
    };
    let src_dir = dir(root, src)?;
    let (src_parent, src_name) = split(&src_dir, inner, src)?;
    let is_tree = match &src_name {
        None => true,
        Some(name) => src_parent
            .symlink_metadata(name)
            .map_err(|e| io_error(src, &e))?
            .is_dir(),
    };
    if !is_tree {
        let name = src_name.unwrap_or_default();
        return copy_entry(
            &src_parent,
            &name,
            &dst_parent,
            fresh()?,
            src,
            &mut budget,
            0,
        );
    }
    let from = open_as_dir(&src_parent, src_name.as_deref(), src)?;
    let to = if dst_exists {
        let to = open_as_dir(&dst_parent, dst_name.as_deref(), dst)?;
        let empty = to
            .entries()
            .map_err(|e| io_error(dst, &e))?
            .next()
            .is_none();
        if !empty {
            return Err(exists(dst).into());
        }
        to
    } else {
        let name = dst_name.as_deref().unwrap_or_default();
        dst_parent.create_dir(name).map_err(|e| io_error(dst, &e))?;
        open_as_dir(&dst_parent, Some(name), dst)?
    };
    copy_tree(&from, &to, src, &mut budget, 0)
}

/// `parent` itself (no name), or its directory `name`, refusing a symlink.
fn open_as_dir(parent: &Dir, name: Option<&str>, path: &str) -> Result<Dir, FsError> {
    match name {
        None => parent.try_clone(),
        Some(name) => open_dir_nofollow(parent, name),
    }
    .map_err(|e| io_error(path, &e))
}

/// Open the directory `name` of `dir`, refusing a symlink.
fn open_dir_nofollow(dir: &Dir, name: &str) -> std::io::Result<Dir> {
    let f = dir.open_with(
        name,
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW),
    )?;
    Ok(Dir::from_std_file(f.into_std()))
}

fn exists(dst: &str) -> FsError {
    FsError::WrongKind(format!(
        "{dst} exists: a copy goes to a new path, or (a tree) into an empty directory"
    ))
}

/// The directory holding `inner` beneath `root`, and `inner`'s last name
/// (none: `inner` is the root itself).
fn split(root: &Dir, inner: &str, path: &str) -> Result<(Dir, Option<String>), FsError> {
    let inner = inner.trim_matches('/');
    if inner.is_empty() {
        return Ok((root.try_clone().map_err(|e| io_error(path, &e))?, None));
    }
    let p = Path::new(inner);
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n != "..")
        .ok_or_else(|| FsError::BadPath(format!("{path}: not a plain path")))?
        .to_string();
    let parent = match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            root.open_dir(parent).map_err(|e| io_error(path, &e))?
        }
        _ => root.try_clone().map_err(|e| io_error(path, &e))?,
    };
    Ok((parent, Some(name)))
}

fn copy_tree(
    from: &Dir,
    to: &Dir,
    path: &str,
    budget: &mut Budget,
    depth: usize,
) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(
            FsError::Invalid(format!("{path}: deeper than {MAX_DEPTH} directories")).into(),
        );
    }
    let mut names: Vec<String> = Vec::new();
    for entry in from.entries().map_err(|e| io_error(path, &e))? {
        let entry = entry.map_err(|e| io_error(path, &e))?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            FsError::Invalid(format!("{path}: a name that is not UTF-8: {name:?}"))
        })?;
        names.push(name.to_string());
    }
    names.sort();
    for name in names {
        let sub = format!("{path}/{name}");
        budget.spend(0)?;
        copy_entry(from, &name, to, &name, &sub, budget, depth + 1)?;
    }
    Ok(())
}

/// Copy one entry: a file, a symlink as it is, or a directory and what it
/// holds (`depth` levels down from the copy's root).
fn copy_entry(
    from: &Dir,
    name: &str,
    to: &Dir,
    to_name: &str,
    path: &str,
    budget: &mut Budget,
    depth: usize,
) -> Result<(), Stop> {
    let meta = from
        .symlink_metadata(name)
        .map_err(|e| io_error(path, &e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = rustix::fs::readlinkat(from.as_fd(), name, Vec::new())
            .map_err(|e| io_error(path, &std::io::Error::from(e)))?;
        budget.spend(target.as_bytes().len() as u64)?;
        rustix::fs::symlinkat(target.as_c_str(), to.as_fd(), to_name)
            .map_err(|e| io_error(path, &std::io::Error::from(e)))?;
        Ok(())
    } else if ft.is_dir() {
        to.create_dir(to_name).map_err(|e| io_error(path, &e))?;
        let a = open_as_dir(from, Some(name), path)?;
        let b = open_as_dir(to, Some(to_name), path)?;
        copy_tree(&a, &b, path, budget, depth)
    } else if ft.is_file() {
        let f = from
            .open_with(
                name,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW),
            )
            .map_err(|e| io_error(path, &e))?
            .into_std();
        copy_file(f, to, to_name, path, budget)
    } else {
        Err(FsError::WrongKind(format!(
            "{path} is not a regular file, directory or symlink (a FIFO, socket or device is never copied)"
        ))
        .into())
    }
}

/// Copy an open file into a new file `name` of `to`, keeping whether it is
/// executable (0o755 or 0o644).
fn copy_file(src: File, to: &Dir, name: &str, path: &str, budget: &mut Budget) -> Result<(), Stop> {
    use std::os::unix::fs::PermissionsExt;
    let meta = src.metadata().map_err(|e| io_error(path, &e))?;
    if !meta.is_file() {
        return Err(FsError::WrongKind(format!("{path} is not a regular file")).into());
    }
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    budget.spend(meta.len())?;
    let mut dst = to
        .open_with(
            name,
            OpenOptions::new().write(true).create_new(true).mode(mode),
        )
        .map_err(|e| io_error(path, &e))?
        .into_std();
    let mut left = meta.len();
    while left > 0 {
        budget.spend(0)?;
        let step = left.min(STEP);
        let copied =
            std::io::copy(&mut (&src).take(step), &mut dst).map_err(|e| io_error(path, &e))?;
        if copied < step {
            return Err(FsError::Io(format!("{path} got shorter while it was copied")).into());
        }
        left -= step;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::guest_fs::TestDirs;
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_tree_is_copied_with_its_modes_and_symlinks() {
        let dirs = TestDirs::new();
        std::fs::create_dir(dirs.input.join("bin")).unwrap();
        std::fs::write(dirs.input.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dirs.input.join("bin/tool"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        std::fs::write(dirs.input.join("readme"), "hi").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dirs.input.join("link")).unwrap();
        let fs = dirs.fs();
        copy(&fs, "/inputs/src", "/out/tree", 1 << 20, later()).unwrap();
        let out = dirs.out.join("tree");
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("readme"), 0o644);
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // Into an existing empty directory: /out itself.
        let dirs2 = TestDirs::new();
        std::fs::write(dirs2.input.join("a"), "a").unwrap();
        copy(&dirs2.fs(), "/inputs/src", "/out", 1 << 20, later()).unwrap();
        assert_eq!(std::fs::read(dirs2.out.join("a")).unwrap(), b"a");
        // One file.
        copy(&dirs2.fs(), "/inputs/src/a", "/work/b", 1 << 20, later()).unwrap();
        assert_eq!(std::fs::read(dirs2.work.join("b")).unwrap(), b"a");
    }

    #[test]
    fn copies_refuse_escapes_fifos_existing_targets_and_the_budget() {
        let dirs = TestDirs::new();
        std::fs::write(dirs.root.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("..", dirs.work.join("up")).unwrap();
        std::fs::write(dirs.input.join("big"), vec![0u8; 4096]).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dirs.input.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let fs = dirs.fs();
        let refused = |src: &str, dst: &str, budget: u64| {
            copy(&fs, src, dst, budget, later()).expect_err("must be refused")
        };
        assert!(matches!(
            refused("/work/up/secret", "/out/s", 1 << 20),
            Stop::Failed(FsError::BadPath(_))
        ));
        assert!(matches!(
            refused("/inputs/src/big", "/work/up/x", 1 << 20),
            Stop::Failed(FsError::BadPath(_))
        ));
        assert!(matches!(
            refused("/inputs/src/fifo", "/out/f", 1 << 20),
            Stop::Failed(FsError::WrongKind(_))
        ));
        assert!(matches!(
            refused("/inputs/src/big", "/work/up", 1 << 20),
            Stop::Failed(FsError::WrongKind(_))
        ));
        assert!(matches!(
            refused("/inputs/src/big", "/out/b", 100),
            Stop::TooLarge(_)
        ));
        std::fs::create_dir(dirs.work.join("tree")).unwrap();
        assert!(matches!(
            refused("/work/tree", "/work/./tree/sub", 1 << 20),
            Stop::Failed(FsError::Invalid(_))
        ));
        assert!(matches!(
            refused("/inputs/src/big", "/inputs/src/c", 1 << 20),
            Stop::Failed(FsError::BadPath(_))
        ));
        assert!(matches!(
            copy(&fs, "/inputs/src/big", "/out/b", 1 << 20, Instant::now()),
            Err(Stop::TimedOut)
        ));
        assert_eq!(
            std::fs::read(dirs.root.path().join("secret")).unwrap(),
            b"s"
        );
    }
}
