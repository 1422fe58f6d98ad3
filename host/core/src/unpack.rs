//! Unpacking downloaded archives: tar (plain, gzip, xz, zstd) and zip
//! (Python wheels are zips), recognised by their magic bytes.
//!
//! # Security
//!
//! An archive is untrusted until its hash is checked, and it is unpacked
//! before it can be hashed. So every path is resolved beneath the
//! destination by the kernel, never through a symlink
//! ([`crate::beneath`]); symlinks are created *last*, after every file
//! and directory, so nothing the archive links is ever followed while it is
//! unpacked; a hard link may only name a regular file this archive already
//! extracted. Refused, by name: entries with absolute paths or `..`;
//! symlinks whose target is absolute or climbs out of the archive; hard
//! links to anything else; device nodes and fifos; more than
//! [`MAX_ENTRIES`] entries or [`MAX_DEPTH`] path components; output more
//! than [`MAX_RATIO`] times the archive's size (past [`RATIO_FLOOR`] bytes).
//! Only the executable bit of modes is kept; owners and times are dropped,
//! as NAR drops them.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use crate::beneath::{BeneathError, Root};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Refuse output larger than this multiple of the archive…
pub const MAX_RATIO: u64 = 200;
/// …once it is past this many bytes.
pub const RATIO_FLOOR: u64 = 64 * 1024 * 1024;
/// Entries an archive may hold (files, directories and links).
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Components an entry's path may have.
pub const MAX_DEPTH: usize = 256;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "entry '{0}' has an absolute path or '..'; refusing to write outside the archive's directory"
    )]
    UnsafePath(String),
    #[error("symlink '{entry}' points to '{target}', outside the archive")]
    LinkOut { entry: String, target: String },
    #[error(
        "hard link '{entry}' points to '{target}', which is not a regular file this archive extracted"
    )]
    HardLinkOut { entry: String, target: String },
    #[error("entry '{0}' would be written through a symlink")]
    ThroughLink(String),
    #[error("symlink '{0}' would replace a directory of the archive")]
    LinkOverDir(String),
    #[error("entry '{entry}' is a {kind}, which kiln does not unpack")]
    Special { entry: String, kind: &'static str },
    #[error(
        "the archive expands to more than {limit} bytes ({MAX_RATIO}× its size); refusing a possible decompression bomb"
    )]
    Bomb { limit: u64 },
    #[error("the archive holds more than {limit} entries; refusing it")]
    TooManyEntries { limit: u64 },
    #[error("entry '{entry}' is nested more than {limit} directories deep; refusing it")]
    TooDeep { entry: String, limit: usize },
    #[error("not an archive kiln can unpack (tar, tar.gz, tar.xz, tar.zst or zip)")]
    UnknownFormat,
    #[error("the archive is empty")]
    Empty,
    #[error("entry '{entry}': {source}")]
    Entry { entry: String, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Unpack `archive` into `dest` (created).
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), UnpackError> {
    let size = fs::metadata(archive)?.len();
    let limit = (size.saturating_mul(MAX_RATIO)).max(RATIO_FLOOR);
    fs::create_dir_all(dest)?;
    let mut magic = [0u8; 262];
    let n = read_prefix(&mut fs::File::open(archive)?, &mut magic)?;
    let magic = &magic[..n];
    let file = || fs::File::open(archive);
    if magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06") {
        return unzip(archive, dest, limit);
    }
    let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            file()?
        )))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(io::BufReader::new(
            file()?,
        )))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(io::BufReader::new(file()?))
                .map_err(|e| io::Error::other(e.to_string()))?,
        )
    } else if magic.len() >= 262 && &magic[257..262] == b"ustar" {
        Box::new(io::BufReader::new(file()?))
    } else {
        return Err(UnpackError::UnknownFormat);
    };
    untar(reader, dest, limit)
}

fn read_prefix(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `nix-prefetch-url --unpack`: if the archive holds exactly one top-level
/// entry and it is a directory, that directory is the result.
pub fn single_root(dir: &Path) -> Result<PathBuf, UnpackError> {
    let entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    match entries.as_slice() {
        [] => Err(UnpackError::Empty),
        [only] if only.file_type()?.is_dir() => Ok(only.path()),
        _ => Ok(dir.to_path_buf()),
    }
}

/// Check `name` is relative with no `..`, returning its normal components.
fn safe_relative(name: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(UnpackError::UnsafePath(name.display().to_string())),
        }
    }
    Ok(out)
}

/// Refuse a symlink target that is absolute or climbs out of the root.
fn check_link_target(entry: &Path, target: &Path) -> Result<(), UnpackError> {
    let out = || UnpackError::LinkOut {
        entry: entry.display().to_string(),
        target: target.display().to_string(),
    };
    if target.is_absolute() {
        return Err(out());
    }
    let mut depth: i64 = entry.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return Err(out()),
        }
        if depth < 0 {
            return Err(out());
        }
    }
    Ok(())
}

/// Writes one archive's entries beneath its destination.
struct Extractor {
    root: Root,
    /// Bytes written so far, and the most allowed.
    used: u64,
    limit: u64,
    entries: u64,
    /// Regular files this archive extracted: the only hard-link targets.
    files: HashSet<PathBuf>,
    /// Symlinks, created once everything else is in place.
    symlinks: Vec<(PathBuf, PathBuf)>,
}

impl Extractor {
    fn new(dest: &Path, limit: u64) -> Result<Self, UnpackError> {
        fs::create_dir_all(dest)?;
        Ok(Extractor {
            root: Root::open(dest)?,
            used: 0,
            limit,
            entries: 0,
            files: HashSet::new(),
            symlinks: Vec::new(),
        })
    }

    /// Count an entry and check its path; `None` for the archive's root.
    fn admit(&mut self, raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(UnpackError::TooManyEntries { limit: MAX_ENTRIES });
        }
        let rel = safe_relative(raw)?;
        if rel.components().count() > MAX_DEPTH {
            return Err(UnpackError::TooDeep {
                entry: rel.display().to_string(),
                limit: MAX_DEPTH,
            });
        }
        Ok((!rel.as_os_str().is_empty()).then_some(rel))
    }

    /// The directory holding `rel` (made as needed) and `rel`'s name, with
    /// anything but a directory already at `rel` removed.
    fn place(&self, rel: &Path) -> Result<(OwnedFd, std::ffi::OsString), UnpackError> {
        let (dir, name) = self
            .root
            .parent(rel, true)
            .map_err(|e| beneath_error(rel, e))?
            .ok_or_else(|| UnpackError::UnsafePath(rel.display().to_string()))?;
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) => rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
                .map_err(|e| entry_error(rel, e.into()))?,
            Err(_) => {}
        }
        Ok((dir, name))
    }

    fn dir(&mut self, rel: &Path) -> Result<(), UnpackError> {
        self.root
            .dir(rel, true)
            .map(drop)
            .map_err(|e| beneath_error(rel, e))
    }

    fn file(&mut self, rel: &Path, r: &mut impl Read, executable: bool) -> Result<(), UnpackError> {
        let (dir, name) = self.place(rel)?;
        let mode = Mode::from_raw_mode(if executable { 0o755 } else { 0o644 });
        let fd = rustix::fs::openat(
            &dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| entry_error(rel, e.into()))?;
        let mut f = fs::File::from(fd);
        let allowed = self.limit - self.used;
        let n = io::copy(&mut r.take(allowed + 1), &mut f).map_err(|e| entry_error(rel, e))?;
        if n > allowed {
            return Err(UnpackError::Bomb { limit: self.limit });
        }
        self.used += n;
        // The umask may have cut the mode at creation.
        rustix::fs::fchmod(&f, mode).map_err(|e| entry_error(rel, e.into()))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    fn hard_link(&mut self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        let out = || UnpackError::HardLinkOut {
            entry: rel.display().to_string(),
            target: target.display().to_string(),
        };
        let target_rel = safe_relative(target).map_err(|_| out())?;
        if !self.files.contains(&target_rel) {
            return Err(out());
        }
        let (src_dir, src_name) = self
            .root
            .parent(&target_rel, false)
            .map_err(|_| out())?
            .ok_or_else(out)?;
        // Still the regular file it was (no symlink exists yet, but check).
        match rustix::fs::statat(&src_dir, &src_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            _ => return Err(out()),
        }
        let (dir, name) = self.place(rel)?;
        rustix::fs::linkat(&src_dir, &src_name, &dir, &name, AtFlags::empty())
            .map_err(|e| entry_error(rel, e.into()))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        check_link_target(rel, target)?;
        self.symlinks
            .push((rel.to_path_buf(), target.to_path_buf()));
        Ok(())
    }

    /// Create the symlinks, last: nothing was written through one.
    fn finish(self) -> Result<(), UnpackError> {
        for (rel, target) in &self.symlinks {
            let (dir, name) = self.place(rel)?;
            if rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return Err(UnpackError::LinkOverDir(rel.display().to_string()));
            }
            rustix::fs::symlinkat(target.as_path(), &dir, &name)
                .map_err(|e| entry_error(rel, e.into()))?;
        }
        Ok(())
    }
}

fn entry_error(rel: &Path, source: io::Error) -> UnpackError {
    UnpackError::Entry {
        entry: rel.display().to_string(),
        source,
    }
}

fn beneath_error(rel: &Path, e: BeneathError) -> UnpackError {
    match e {
        BeneathError::ThroughSymlink(_) => UnpackError::ThroughLink(rel.display().to_string()),
        BeneathError::Escapes(_) => UnpackError::UnsafePath(rel.display().to_string()),
        BeneathError::NotRegular { .. } => UnpackError::UnsafePath(rel.display().to_string()),
        BeneathError::Io { source, .. } => entry_error(rel, source),
    }
}

fn untar(reader: Box<dyn Read>, dest: &Path, limit: u64) -> Result<(), UnpackError> {
    let (reader, bound) = crate::tarbound::bounded(reader);
    let mut archive = tar::Archive::new(reader);
    let mut x = Extractor::new(dest, limit)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        bound.entry_seen(entry.header().entry_size()?);
        let raw = entry.path()?.into_owned();
        let Some(rel) = x.admit(&raw)? else {
            continue;
        };
        use tar::EntryType as T;
        let link_name = |entry: &tar::Entry<'_, _>| -> Result<PathBuf, UnpackError> {
            Ok(entry
                .link_name()?
                .ok_or_else(|| UnpackError::UnsafePath(rel.display().to_string()))?
                .into_owned())
        };
        match entry.header().entry_type() {
            T::Directory => x.dir(&rel)?,
            T::Regular | T::Continuous | T::GNUSparse => {
                let exec = entry.header().mode().unwrap_or(0o644) & 0o100 != 0;
                x.file(&rel, &mut entry, exec)?;
            }
            T::Symlink => {
                let target = link_name(&entry)?;
                x.symlink(&rel, &target)?;
            }
            T::Link => {
                let target = link_name(&entry)?;
                x.hard_link(&rel, &target)?;
            }
            T::Char | T::Block => {
                return Err(UnpackError::Special {
                    entry: rel.display().to_string(),
                    kind: "device node",
                });
            }
            T::Fifo => {
                return Err(UnpackError::Special {
                    entry: rel.display().to_string(),
                    kind: "fifo",
                });
            }
            // PAX and GNU long-name headers are consumed by the tar crate;
            // anything else carries no file.
            _ => {}
        }
    }
    x.finish()
}

fn unzip(archive: &Path, dest: &Path, limit: u64) -> Result<(), UnpackError> {
    let mut zip = zip::ZipArchive::new(fs::File::open(archive)?)
        .map_err(|e| io::Error::other(e.to_string()))?;
    if zip.len() as u64 > MAX_ENTRIES {
        return Err(UnpackError::TooManyEntries { limit: MAX_ENTRIES });
    }
    let mut x = Extractor::new(dest, limit)?;
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let name = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {i}"));
        let raw = file
            .enclosed_name()
            .ok_or_else(|| UnpackError::UnsafePath(name.clone()))?;
        let Some(rel) = x.admit(&raw)? else {
            continue;
        };
        let mode = file.unix_mode().unwrap_or(0o644);
        if file.is_dir() {
            x.dir(&rel)?;
        } else if file.is_symlink() {
            // A link's target is its content: bounded, it is a path.
            let mut target = String::new();
            (&mut file).take(4096).read_to_string(&mut target)?;
            x.symlink(&rel, Path::new(&target))?;
        } else {
            x.file(&rel, &mut file, mode & 0o100 != 0)?;
        }
    }
    x.finish()
}

#[cfg(test)]
mod tests;
