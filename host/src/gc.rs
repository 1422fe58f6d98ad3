//! Garbage collection: which store entries something still roots, and
//! deleting the rest.
//!
//! Roots are result links (symlinks into the store) and kiln.lock files found
//! under the root directories. A rooted entry's build record keeps alive
//! what it was built from (its inputs, dependency outputs and recipe), so a
//! rooted output can still be rebuilt and audited after a gc. The caller
//! holds the store alone (`Store::hold_for_gc`) so no build resolves an
//! entry meanwhile; this module does not print.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Lockfile;
use kiln_core::store::{Store, StoreError, make_writable};

use crate::record;

/// What a collection would keep and delete.
#[derive(Debug, Default)]
pub struct GcPlan {
    pub live: BTreeSet<PathBuf>,
    /// Entries nothing roots, with their size in bytes.
    pub dead: Vec<(PathBuf, u64)>,
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("searching {root} for roots: {source}")]
    Roots {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("deleting {path}: {source}")]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Find what the directories `roots` keep alive in `store`.
pub fn plan(store: &Store, roots: &[PathBuf]) -> Result<GcPlan, GcError> {
    let store_dir = store.entries_dir();
    let store_dir = fs::canonicalize(&store_dir).unwrap_or(store_dir);
    let mut live: BTreeSet<PathBuf> = BTreeSet::new();
    let mut pinned: Vec<Sha256Hash> = Vec::new();
    for root in roots {
        find_roots(root, &store_dir, 0, &mut live, &mut pinned).map_err(|source| {
            GcError::Roots {
                root: root.clone(),
                source,
            }
        })?;
    }
    // Links were followed to the real store directory; name entries as the
    // store does, so records' names and the listing below compare equal.
    let mut live: BTreeSet<PathBuf> = live
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| store.entries_dir().join(n))
        .collect();
    // One listing of the store: the entries kiln.lock files pin, then
    // what nothing keeps alive.
    let entries = store.entries()?;
    let pinned: BTreeSet<Sha256Hash> = pinned.into_iter().collect();
    live.extend(
        entries
            .iter()
            .filter(|e| store.digest_of(e).is_some_and(|h| pinned.contains(&h)))
            .cloned(),
    );

    // Close over build records: inputs, dependency outputs and recipes stay alive.
    let mut queue: Vec<PathBuf> = live.iter().cloned().collect();
    while let Some(entry) = queue.pop() {
        let Ok(rec) = record::read(store, &entry) else {
            continue;
        };
        for dep in rec.deps(store) {
            if live.insert(dep.entry.clone()) {
                queue.push(dep.entry);
            }
        }
    }
    let dead = entries
        .into_iter()
        .filter(|p| !live.contains(p))
        .map(|p| {
            let size = kiln_core::usage::usage(&p).bytes;
            (p, size)
        })
        .collect();
    Ok(GcPlan { live, dead })
}

/// Delete the dead entries of `plan` and what describes them.
pub fn delete(store: &Store, plan: &GcPlan) -> Result<(), GcError> {
    for (path, _) in &plan.dead {
        make_writable(path).ok();
        let removed = if path.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        removed.map_err(|source| GcError::Delete {
            path: path.clone(),
            source,
        })?;
        for sidecar in store.sidecars(path) {
            let _ = fs::remove_file(sidecar);
        }
    }
    Ok(())
}

/// Tool caches to delete: those unused for `max_age`, then the least
/// recently used until the rest fit in `max_bytes`. Last use is the mtime of
/// the cache's `owner` file, which every build that mounts it rewrites.
/// Returns each with its size.
pub fn plan_caches(store: &Store, max_age: Duration, max_bytes: u64) -> Vec<(PathBuf, u64)> {
    let Ok(rd) = fs::read_dir(store.tool_caches_dir()) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut caches: Vec<(PathBuf, SystemTime, u64)> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let used = fs::metadata(e.path().join("owner"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let size = kiln_core::usage::usage(&e.path()).bytes;
            (e.path(), used, size)
        })
        .collect();
    // Most recently used first: the tail goes first.
    caches.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut kept = 0u64;
    let mut dead = Vec::new();
    for (path, used, size) in caches {
        let old = now.duration_since(used).unwrap_or_default() > max_age;
        if old || kept + size > max_bytes {
            dead.push((path, size));
        } else {
            kept += size;
        }
    }
    dead
}

/// Delete the caches [`plan_caches`] chose.
pub fn delete_caches(dead: &[(PathBuf, u64)]) -> Result<(), GcError> {
    for (path, _) in dead {
        make_writable(path).ok();
        fs::remove_dir_all(path).map_err(|source| GcError::Delete {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn find_roots(
    dir: &Path,
    store_dir: &Path,
    depth: usize,
    live: &mut BTreeSet<PathBuf>,
    pinned: &mut Vec<Sha256Hash>,
) -> std::io::Result<()> {
    if depth > 6 {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        let name = entry.file_name();
        if ft.is_symlink() {
            if let Ok(target) = fs::canonicalize(&path)
                && target.starts_with(store_dir)
            {
                // The entry itself is the child of store/ on the link's path.
                let rel = target.strip_prefix(store_dir).unwrap_or(&target);
                if let Some(first) = rel.components().next() {
                    live.insert(store_dir.join(first));
                }
            }
        } else if ft.is_dir() {
            if matches!(name.to_str(), Some(".git" | "target" | "node_modules")) {
                continue;
            }
            find_roots(&path, store_dir, depth + 1, live, pinned)?;
        } else if name == "kiln.lock"
            && let Ok(text) = kiln_core::sidefile::read_to_string(
                &path,
                kiln_core::sidefile::Links::Refuse,
                kiln_core::sidefile::limits::TEXT,
            )
            && let Ok(lock) = Lockfile::parse(&path.display().to_string(), &text)
        {
            pinned.extend(lock.target.values().flat_map(|m| m.values().copied()));
        }
    }
    Ok(())
}
