//! Finding what `kiln push` and `kiln cache push` send: a target's output
//! as last built (nothing is built or fetched), or a path into the store.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, bail};
use kiln_core::store::Store;

use super::{load_manifest, resolving_options};
use crate::builder::{BuildOptions, Builder, Mode};
use crate::cli::args::{FileArg, SandboxArg};

/// The store entry `path` is (or links to), or why it is none.
pub(super) fn store_entry(store: &Store, path: &str) -> anyhow::Result<PathBuf> {
    let real = fs::canonicalize(path).with_context(|| format!("cannot read {path}"))?;
    let entries = fs::canonicalize(store.entries_dir())?;
    match real.strip_prefix(&entries) {
        Ok(rest) if rest.components().count() == 1 => Ok(real),
        _ => bail!(
            "{path} is not an entry of the store {} (give a target, or a path such as ./result that links into the store)",
            entries.display()
        ),
    }
}

/// The outputs of `names` (all targets if empty) as last built, without
/// building or fetching anything.
pub(super) fn lookup_outputs(
    store: &Store,
    names: &[String],
    file: &FileArg,
    sandbox: SandboxArg,
    source_date_epoch: u64,
    quiet: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let manifest = load_manifest(file.file.as_deref())?;
    let targets: Vec<String> = if names.is_empty() {
        manifest.targets.keys().cloned().collect()
    } else {
        names.to_vec()
    };
    let opts = BuildOptions {
        source_date_epoch,
        ..resolving_options(Mode::Lookup, sandbox.into(), quiet, file)?
    };
    let mut builder = Builder::new(store.clone(), &manifest, opts)?;
    Ok(builder
        .build(&targets)
        .context("these targets are not built: run `kiln build` first")?
        .into_iter()
        .map(|b| b.entry)
        .collect())
}
