//! `--check`: when a second build in a fresh sandbox differs, keep it
//! (sealed) beside the store and name the paths that differ.

use std::fs;
use std::path::PathBuf;

use kiln_core::listing;
use kiln_core::manifest::Target;

use super::{BuildError, Built, Ctx};

impl Ctx<'_> {
    /// `--check` found a difference: keep the second output under
    /// the store's checks (`Store::check_path`) and name the paths that differ.
    pub(super) fn keep_for_inspection(
        &self,
        t: &Target,
        first: &Built,
        second: PathBuf,
    ) -> Result<Built, BuildError> {
        let list = |path: &PathBuf| {
            listing::list(path).map_err(|source| BuildError::Listing {
                action: "cannot list the outputs to compare",
                source,
            })
        };
        let changes = listing::diff(&list(&first.entry)?, &list(&second)?);
        let kept = self.store.check_path(&first.entry);
        let moved = fs::create_dir_all(kept.parent().unwrap_or(self.store.root()))
            .and_then(|_| match fs::symlink_metadata(&kept) {
                Ok(_) => kiln_core::store::make_writable(&kept)
                    .and_then(|_| fs::remove_dir_all(&kept).or_else(|_| fs::remove_file(&kept))),
                Err(_) => Ok(()),
            })
            .and_then(|_| kiln_core::store::move_sealed(&second, &kept));
        moved.map_err(|source| BuildError::Io {
            action: "cannot keep the second output in",
            path: kept.clone(),
            source,
        })?;
        Err(BuildError::NotReproducible {
            target: t.name.clone(),
            first: first.entry.clone(),
            second: kept,
            differences: changes
                .iter()
                .map(|c| {
                    let show = |k: &Option<listing::EntryKind>| {
                        k.as_ref().map_or("nothing".into(), |k| k.describe())
                    };
                    let path = if c.path.is_empty() { "." } else { &c.path };
                    format!("{} {path}: {} → {}", c.verb(), show(&c.old), show(&c.new))
                })
                .collect(),
        })
    }
}
