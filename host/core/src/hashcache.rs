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
use crate::store::Existing;
use crate::store::content_hash;

/// The content hash of `path` (as [`content_hash`]), from the cache in
/// `cache_dir` (the store's [`crate::store::Store::hashcache_dir`]) when the
/// tree's fingerprint is unchanged.
pub fn hash_cached(
    cache_dir: &Path,
    path: &Path,
    filter: &PathFilter,
) -> Result<Sha256Hash, NarError> {
    hash_with_cache(cache_dir, path, filter, true)
}

/// [`hash_cached`] that reads the cache but never writes it (a lookup
/// that must leave everything as it was).
pub fn hash_cached_read_only(
    cache_dir: &Path,
    path: &Path,
    filter: &PathFilter,
) -> Result<Sha256Hash, NarError> {
    hash_with_cache(cache_dir, path, filter, false)
}

fn hash_with_cache(
    cache_dir: &Path,
    path: &Path,
    filter: &PathFilter,
    remember: bool,
) -> Result<Sha256Hash, NarError> {
    let abs = fs::canonicalize(path).map_err(|source| NarError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut id = Sha256::new();
    id.update(abs.as_os_str().as_bytes());
    id.update(format!("{filter:?}").as_bytes());
    let cache_file = cache_dir.join(Sha256Hash(id.finalize().into()).to_hex());

    let fingerprint = fingerprint(&abs, filter)?;
    if let Ok(text) =
        crate::sidefile::read_to_string(&cache_file, crate::sidefile::Links::Refuse, 4096)
        && let Some((fp, hash)) = text.split_once(' ')
        && fp == fingerprint.to_hex()
        && let Ok(hash) = Sha256Hash::parse(hash.trim())
    {
        return Ok(hash);
    }
    let hash = content_hash(&abs, filter)?;
    // Only remember the hash if nothing moved while it was computed.
    if remember && fingerprint_unchanged(&abs, filter, &fingerprint) {
        let line = format!("{} {}", fingerprint.to_hex(), hash.to_sri());
        // A cache: failing to remember only costs a re-hash next time.
        let _ = crate::store::write_atomic(&cache_file, line.as_bytes(), Existing::Replace);
    }
    Ok(hash)
}

fn fingerprint_unchanged(path: &Path, filter: &PathFilter, before: &Sha256Hash) -> bool {
    fingerprint(path, filter).is_ok_and(|now| now == *before)
}

/// A digest of every entry's identity and stat data.
///
/// The top directory's children are walked on up to four threads (a walk is
/// all `stat` calls, which parallelise well); each child's digest is fed to
/// the result in name order, so the fingerprint does not depend on timing.
pub fn fingerprint(path: &Path, filter: &PathFilter) -> Result<Sha256Hash, NarError> {
    let mut h = Sha256::new();
    let m = fs::symlink_metadata(path).map_err(io_err(path))?;
    if !m.is_dir() {
        walk(path, &m, "", filter, &mut h)?;
        return Ok(Sha256Hash(h.finalize().into()));
    }
    stat_line(&m, "", &mut h);
    let children = sorted_children(path, "", filter)?;
    // A thread costs more than a few dozen stat calls: small trees (the
    // common package source) are walked here.
    let threads = if children.len() < 32 {
        1
    } else {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
    .clamp(1, 4);
    let digest = |part: &[Child]| {
        part.iter()
            .map(|(name, rel, meta)| {
                let mut ch = Sha256::new();
                walk(&path.join(name), meta, rel, filter, &mut ch)?;
                Ok(ch.finalize().into())
            })
            .collect::<Result<Vec<[u8; 32]>, NarError>>()
    };
    let digests: Vec<Result<Vec<[u8; 32]>, NarError>> = if threads == 1 {
        vec![digest(&children)]
    } else {
        let per_thread = children.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = children
                .chunks(per_thread)
                .map(|part| scope.spawn(move || digest(part)))
                .collect();
            handles
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for part in digests {
        for d in part? {
            h.update(d);
        }
    }
    Ok(Sha256Hash(h.finalize().into()))
}

/// The entry's identity and stat data.
fn stat_line(m: &fs::Metadata, rel: &str, h: &mut Sha256) {
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
}

type Child = (std::ffi::OsString, String, fs::Metadata);

/// The entries of directory `path` the filter keeps, sorted bytewise, with
/// their relative paths and `lstat` data (`fstatat` on the open directory).
fn sorted_children(path: &Path, rel: &str, filter: &PathFilter) -> Result<Vec<Child>, NarError> {
    let mut children: Vec<Child> = fs::read_dir(path)
        .map_err(io_err(path))?
        .map(|e| {
            e.and_then(|e| {
                let name = e.file_name();
                let child_rel = join_rel(rel, &name.to_string_lossy());
                Ok((name, child_rel, e.metadata()?))
            })
        })
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    children.retain(|(name, r, m)| !filter.skips(r, &path.join(name), m.file_type().is_symlink()));
    children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(children)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NarError + '_ {
    move |source| NarError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Feed `path` (whose `lstat` is `m`) and everything below it to `h`.
fn walk(
    path: &Path,
    m: &fs::Metadata,
    rel: &str,
    filter: &PathFilter,
    h: &mut Sha256,
) -> Result<(), NarError> {
    stat_line(m, rel, h);
    if m.file_type().is_symlink() {
        h.update(
            fs::read_link(path)
                .map_err(io_err(path))?
                .as_os_str()
                .as_bytes(),
        );
    } else if m.is_dir() {
        for (name, child_rel, meta) in sorted_children(path, rel, filter)? {
            walk(&path.join(&name), &meta, &child_rel, filter, h)?;
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

    #[test]
    fn fingerprints_are_stable_and_see_changes_deep_in_the_tree() {
        let src = tempfile::tempdir().unwrap();
        for d in 0..9 {
            let dir = src.path().join(format!("d{d}/sub"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), format!("{d}")).unwrap();
        }
        let filter = PathFilter::default();
        let fp = fingerprint(src.path(), &filter).unwrap();
        for _ in 0..5 {
            assert_eq!(fingerprint(src.path(), &filter).unwrap(), fp);
        }
        fs::write(src.path().join("d7/sub/f"), "changed").unwrap();
        assert_ne!(fingerprint(src.path(), &filter).unwrap(), fp);
        let ignore = PathFilter::new(&["d7".to_string()]);
        let before = fingerprint(src.path(), &ignore).unwrap();
        fs::write(src.path().join("d7/sub/f"), "again").unwrap();
        assert_eq!(fingerprint(src.path(), &ignore).unwrap(), before);
    }
}
