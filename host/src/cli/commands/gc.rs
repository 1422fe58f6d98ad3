//! `kiln gc`: the CLI side of [`crate::gc`] — take the store alone, clear
//! staging left by killed runs, then plan and delete, saying what it did.

use std::path::PathBuf;

use crate::cli::args::GcArgs;
use crate::cli::open::store as open_store;

pub(super) fn run(a: GcArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open_store()?;
    // Alone in the store: no build can resolve an entry while we decide.
    let _alone = store.hold_for_gc()?;
    let stale = if a.dry_run { 0 } else { store.clear_staging()? };
    if !a.dry_run {
        // Nothing holds a lock now: their files go (one per target built).
        store.clear_locks()?;
    }
    if stale > 0 && !quiet {
        errln!("removed {stale} staging leftovers of interrupted runs");
    }
    let roots = if a.roots.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.roots.clone()
    };
    let plan = crate::gc::plan(&store, &roots)?;
    if a.dry_run {
        for (path, _) in &plan.dead {
            outln!("would delete {}", path.display());
        }
    } else {
        crate::gc::delete(&store, &plan)?;
        // A seed's index goes with its result.
        crate::runtime::prune_seed_indexes(&store);
    }
    let caches = crate::gc::plan_caches(&store, a.cache_max_age, a.cache_max_size as u64);
    if a.dry_run {
        for (path, _) in &caches {
            outln!("would delete tool cache {}", path.display());
        }
    } else {
        crate::gc::delete_caches(&caches)?;
    }
    if !quiet || a.dry_run {
        let verb = if a.dry_run { "would delete" } else { "deleted" };
        if !caches.is_empty() {
            let freed: u64 = caches.iter().map(|(_, n)| n).sum();
            errln!(
                "{verb} {} tool caches ({:.1} MiB)",
                caches.len(),
                freed as f64 / 1048576.0
            );
        }
        let freed: u64 = plan.dead.iter().map(|(_, n)| n).sum();
        errln!(
            "{verb} {} store entries ({:.1} MiB); {} kept",
            plan.dead.len(),
            freed as f64 / 1048576.0,
            plan.live.len()
        );
    }
    Ok(())
}
