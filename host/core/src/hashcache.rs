//! The input-hash cache: an unchanged tree is not read again.
//!
//! A `path` input's hash is remembered with a fingerprint of the tree: every
//! entry's relative path, device, inode, size, mode, mtime and ctime (and a
//! symlink's target). Walking the tree with `lstat` is cheap next to reading
//! it; if the fingerprint matches, the remembered hash is returned. Any
//! write to a file moves its ctime, which no user-space call can set back,
//! so a changed file is always noticed.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::hash::Sha256Hash;
use crate::nar::NarError;
use crate::pathfilter::{PathFilter, join_rel};
use crate::store::content_hash;

/// The content hash of `path` (as [`content_hash`]), from the cache under
/// `home` when the tree's fingerprint is unchanged.
pub fn hash_cached(home: &Path, path: &Path, filter: &PathFilter) -> Result<Sha256Hash, NarError> {
    let abs = fs::canonicalize(path).map_err(|source| NarError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut id = Sha256::new();
    id.update(abs.as_os_str().as_bytes());
    id.update(format!("{filter:?}").as_bytes());
    let cache_file = home
        .join("hashcache")
        .join(Sha256Hash(id.finalize().into()).to_hex());

    let fingerprint = fingerprint(&abs, filter)?;
    if let Ok(text) = fs::read_to_string(&cache_file)
        && let Some((fp, hash)) = text.split_once(' ')
        && fp == fingerprint.to_hex()
        && let Ok(hash) = Sha256Hash::parse(hash.trim())
    {
        return Ok(hash);
    }
    let hash = content_hash(&abs, filter)?;
    // Only remember the hash if nothing moved while it was computed.
    if fingerprint_unchanged(&abs, filter, &fingerprint) {
        let _ = fs::create_dir_all(home.join("hashcache"));
        let tmp = cache_file.with_extension("tmp");
        if fs::write(&tmp, format!("{} {}", fingerprint.to_hex(), hash.to_sri())).is_ok() {
            let _ = fs::rename(&tmp, &cache_file);
        }
    }
    Ok(hash)
}

fn fingerprint_unchanged(path: &Path, filter: &PathFilter, before: &Sha256Hash) -> bool {
    fingerprint(path, filter).is_ok_and(|now| now == *before)
}

/// A digest of every entry's identity and stat data.
pub fn fingerprint(path: &Path, filter: &PathFilter) -> Result<Sha256Hash, NarError> {
    let mut h = Sha256::new();
    walk(path, "", filter, &mut h)?;
    Ok(Sha256Hash(h.finalize().into()))
}

fn walk(path: &Path, rel: &str, filter: &PathFilter, h: &mut Sha256) -> Result<(), NarError> {
    let io = |source| NarError::Io {
        path: path.to_path_buf(),
        source,
    };
    let m = fs::symlink_metadata(path).map_err(io)?;
    h.update(rel.as_bytes());
    h.update([0]);
    for v in [
        m.dev(),
        m.ino(),
        m.size(),
        u64::from(m.mode()),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    if m.file_type().is_symlink() {
        h.update(fs::read_link(path).map_err(io)?.as_os_str().as_bytes());
    } else if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child_rel = join_rel(rel, &name.to_string_lossy());
            if !filter.excludes(&child_rel) {
                walk(&path.join(&name), &child_rel, filter, h)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_noticed_even_with_the_same_size_and_mtime() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("a");
        fs::write(&f, "one").unwrap();
        let filter = PathFilter::default();
        let h1 = hash_cached(home.path(), src.path(), &filter).unwrap();
        assert_eq!(hash_cached(home.path(), src.path(), &filter).unwrap(), h1);
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, "two").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let h2 = hash_cached(home.path(), src.path(), &filter).unwrap();
        assert_ne!(h1, h2);
        assert_eq!(h2, content_hash(src.path(), &filter).unwrap());
    }
}
