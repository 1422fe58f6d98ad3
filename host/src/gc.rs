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

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Lockfile;
use kiln_core::store::{Store, StoreError, make_writable};

use crate::builder::record;

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
    live.extend(pinned.iter().filter_map(|h| store.find_by_hash(h)));

    // Close over build records: inputs and dependency outputs stay alive.
    let mut queue: Vec<PathBuf> = live.iter().cloned().collect();
    while let Some(entry) = queue.pop() {
        let Ok(rec) = record::read(store, &entry) else {
            continue;
        };
        for input in &rec.inputs {
            let dep = match &input.entry {
                Some(name) => Some(store_dir.join(name)),
                None => store.find_by_hash(&input.hash),
            };
            if let Some(dep) = dep
                && live.insert(dep.clone())
            {
                queue.push(dep);
            }
        }
        if let Some(dep) = store.find_by_hash(&rec.recipe.hash)
            && live.insert(dep.clone())
        {
            queue.push(dep);
        }
    }
    let dead = store
        .entries()?
        .into_iter()
        .filter(|p| !live.contains(p))
        .map(|p| {
            let size = disk_usage(&p);
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
            && let Ok(text) = fs::read_to_string(&path)
            && let Ok(lock) = Lockfile::parse(&path.display().to_string(), &text)
        {
            pinned.extend(lock.target.values().flat_map(|m| m.values().copied()));
            pinned.extend(lock.recipe.values().copied());
        }
    }
    Ok(())
}

fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if m.is_dir() {
        fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| disk_usage(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        m.len()
    }
}
