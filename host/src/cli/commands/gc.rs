//! `kiln gc`: delete store entries nothing roots.
//!
//! Roots are result links (symlinks into the store) and kiln.lock files found
//! under the `--root` directories. A rooted entry's build record keeps alive
//! what it was built from (its inputs and dependency outputs), so a rooted
//! output can still be rebuilt and audited after a gc.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Lockfile;
use kiln_core::store::make_writable;

use super::open_store;
use crate::builder::record;
use crate::cli::args::GcArgs;

pub(super) fn run(a: GcArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open_store()?;
    // Alone in the store: no build can resolve an entry while we decide.
    let _alone = store.hold_for_gc()?;
    let stale = if a.dry_run { 0 } else { store.clear_staging()? };
    if stale > 0 && !quiet {
        eprintln!("removed {stale} staging leftovers of interrupted runs");
    }
    let store_dir = store.root().join("store");
    let store_dir = fs::canonicalize(&store_dir).unwrap_or(store_dir);
    let roots = if a.roots.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.roots.clone()
    };

    let mut live: BTreeSet<PathBuf> = BTreeSet::new();
    let mut pinned: Vec<Sha256Hash> = Vec::new();
    for root in &roots {
        find_roots(root, &store_dir, 0, &mut live, &mut pinned)
            .with_context(|| format!("searching {} for roots", root.display()))?;
    }
    live.extend(pinned.iter().filter_map(|h| store.find_by_hash(h)));

    // Close over build records: inputs and dependency outputs stay alive.
    let mut queue: Vec<PathBuf> = live.iter().cloned().collect();
    while let Some(entry) = queue.pop() {
        let Ok(rec) = record::read(&store, &entry) else {
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

    let mut deleted = 0usize;
    let mut freed = 0u64;
    for entry in fs::read_dir(&store_dir)? {
        let path = entry?.path();
        if live.contains(&path) {
            continue;
        }
        freed += disk_usage(&path);
        deleted += 1;
        if a.dry_run {
            println!("would delete {}", path.display());
            continue;
        }
        make_writable(&path).ok();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("deleting {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for sidecar in ["records", "listings"] {
            let _ = fs::remove_file(store.root().join(sidecar).join(format!("{name}.json")));
        }
    }
    if !quiet || a.dry_run {
        let verb = if a.dry_run { "would delete" } else { "deleted" };
        eprintln!(
            "{verb} {deleted} store entries ({:.1} MiB); {} kept",
            freed as f64 / 1048576.0,
            live.len()
        );
    }
    Ok(())
}

fn find_roots(
    dir: &Path,
    store_dir: &Path,
    depth: usize,
    live: &mut BTreeSet<PathBuf>,
    pinned: &mut Vec<Sha256Hash>,
) -> anyhow::Result<()> {
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
