//! Unpacking downloaded archives: tar (plain, gzip, xz, zstd) and zip,
//! recognised by their magic bytes.
//!
//! # Security
//!
//! An archive is untrusted until its hash is checked, and it is unpacked
//! before it can be hashed, so this code refuses, by name: entries with
//! absolute paths or `..`; symlinks whose target is absolute or leaves the
//! archive; hard links to anything outside it; writing through a symlink;
//! device nodes and fifos; and output more than [`MAX_RATIO`] times the
//! archive's size (past [`RATIO_FLOOR`] bytes). Only the executable bit of
//! modes is kept; owners and times are dropped, as NAR drops them.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// Refuse output larger than this multiple of the archive…
pub const MAX_RATIO: u64 = 200;
/// …once it is past this many bytes.
pub const RATIO_FLOOR: u64 = 64 * 1024 * 1024;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "entry '{0}' has an absolute path or '..'; refusing to write outside the archive's directory"
    )]
    UnsafePath(String),
    #[error("symlink '{entry}' points to '{target}', outside the archive")]
    LinkOut { entry: String, target: String },
    #[error("hard link '{entry}' points to '{target}', which is not in the archive")]
    HardLinkOut { entry: String, target: String },
    #[error("entry '{0}' would be written through a symlink")]
    ThroughLink(String),
    #[error("entry '{entry}' is a {kind}, which kiln does not unpack")]
    Special { entry: String, kind: &'static str },
    #[error(
        "the archive expands to more than {limit} bytes ({MAX_RATIO}× its size); refusing a possible decompression bomb"
    )]
    Bomb { limit: u64 },
    #[error("not an archive kiln can unpack (tar, tar.gz, tar.xz, tar.zst or zip)")]
    UnknownFormat,
    #[error("the archive is empty")]
    Empty,
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

/// Create the parent directories of `rel` under `dest`, refusing to go
/// through any symlink.
fn prepare_parent(dest: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    let mut cur = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::ThroughLink(rel.display().to_string()));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(UnpackError::UnsafePath(rel.display().to_string())),
                Err(_) => fs::create_dir(&cur)?,
            }
        }
    }
    let path = dest.join(rel);
    if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(&path)?;
    }
    Ok(path)
}

struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    fn copy(
        &mut self,
        r: &mut impl Read,
        path: &Path,
        executable: bool,
    ) -> Result<(), UnpackError> {
        let mut f = fs::File::create(path)?;
        let allowed = self.limit - self.used;
        let n = io::copy(&mut r.take(allowed + 1), &mut f)?;
        if n > allowed {
            return Err(UnpackError::Bomb { limit: self.limit });
        }
        self.used += n;
        fs::set_permissions(
            path,
            fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }),
        )?;
        Ok(())
    }
}

fn untar(reader: Box<dyn Read>, dest: &Path, limit: u64) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget { used: 0, limit };
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        match kind {
            T::Directory => {
                let path = prepare_parent(dest, &rel)?;
                if !path.is_dir() {
                    fs::create_dir(&path)?;
                }
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let exec = entry.header().mode().unwrap_or(0o644) & 0o100 != 0;
                let path = prepare_parent(dest, &rel)?;
                budget.copy(&mut entry, &path, exec)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| UnpackError::UnsafePath(rel.display().to_string()))?
                    .into_owned();
                check_link_target(&rel, &target)?;
                let path = prepare_parent(dest, &rel)?;
                symlink(&target, &path)?;
            }
            T::Link => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| UnpackError::UnsafePath(rel.display().to_string()))?
                    .into_owned();
                let target_rel = safe_relative(&target).map_err(|_| UnpackError::HardLinkOut {
                    entry: rel.display().to_string(),
                    target: target.display().to_string(),
                })?;
                let src = dest.join(&target_rel);
                if !fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                    return Err(UnpackError::HardLinkOut {
                        entry: rel.display().to_string(),
                        target: target.display().to_string(),
                    });
                }
                let path = prepare_parent(dest, &rel)?;
                fs::hard_link(&src, &path)?;
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
    Ok(())
}

fn unzip(archive: &Path, dest: &Path, limit: u64) -> Result<(), UnpackError> {
    let mut zip = zip::ZipArchive::new(fs::File::open(archive)?)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut budget = Budget { used: 0, limit };
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let name = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {i}"));
        let rel = file
            .enclosed_name()
            .ok_or_else(|| UnpackError::UnsafePath(name.clone()))?;
        let rel = safe_relative(&rel)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = file.unix_mode().unwrap_or(0o644);
        if file.is_dir() {
            let path = prepare_parent(dest, &rel)?;
            if !path.is_dir() {
                fs::create_dir(&path)?;
            }
        } else if file.is_symlink() {
            let mut target = String::new();
            file.read_to_string(&mut target)?;
            check_link_target(&rel, Path::new(&target))?;
            let path = prepare_parent(dest, &rel)?;
            symlink(&target, &path)?;
        } else {
            let path = prepare_parent(dest, &rel)?;
            budget.copy(&mut file, &path, mode & 0o100 != 0)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
