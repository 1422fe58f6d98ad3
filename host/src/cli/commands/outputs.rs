//! What `audit`, `push` and `cache push` name when they name an output:
//! a target of kiln.toml (found as last built: nothing is built or
//! fetched), or a path into the store (`./result`, a store path, or a path
//! inside an entry, which names that entry). One rule decides which
//! ([`OutputRef::parse`]), one resolver finds the entries.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::manifest::Manifest;
use kiln_core::store::Store;

use crate::builder::Builder;
use crate::cli::args::{FileArg, KeyArgs};
use crate::cli::open;
use crate::cli::options::{self, Setting};

/// An output as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OutputRef {
    /// Written as a path (`./result`, `dir/link`, `/abs`).
    Path(PathBuf),
    /// A bare name: a target of kiln.toml if it has one by that name, else
    /// a path in the current directory (a result link such as `result`).
    Name(String),
}

impl OutputRef {
    /// A name holding `/` or starting with `.` is a path; any other is a name.
    pub(super) fn parse(s: &str) -> OutputRef {
        if s.contains('/') || s.starts_with('.') {
            OutputRef::Path(PathBuf::from(s))
        } else {
            OutputRef::Name(s.to_string())
        }
    }
}

/// The store entries `refs` name, in their order; every target of
/// kiln.toml when `refs` is empty.
pub(super) fn resolve(
    store: &Store,
    refs: &[String],
    file: &FileArg,
    key: &KeyArgs,
    setting: &Setting,
) -> anyhow::Result<Vec<PathBuf>> {
    let refs: Vec<OutputRef> = refs.iter().map(|r| OutputRef::parse(r)).collect();
    let manifest = manifest_for(&refs, file)?;
    let targets: Vec<String> = match &manifest {
        Some(m) if refs.is_empty() => m.targets.keys().cloned().collect(),
        Some(m) => refs
            .iter()
            .filter_map(|r| match r {
                OutputRef::Name(n) if m.targets.contains_key(n) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let mut found = std::collections::BTreeMap::new();
    if let Some(m) = &manifest
        && !targets.is_empty()
    {
        let mut builder = Builder::new(store.clone(), m, options::lookup(setting, key, file))?;
        let built = builder
            .build(&targets)
            .context("these targets are not built: run `kiln build` first")?;
        for b in built {
            found.insert(b.target.clone(), b.entry);
        }
    }
    if refs.is_empty() {
        return Ok(found.into_values().collect());
    }
    let mut out = Vec::new();
    for r in &refs {
        match r {
            OutputRef::Name(n) if found.contains_key(n) => out.push(found[n].clone()),
            OutputRef::Name(n) if !Path::new(n).exists() => {
                let names = manifest
                    .as_ref()
                    .map(|m| m.targets.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                let file = manifest
                    .as_ref()
                    .map(|m| m.file.display().to_string())
                    .unwrap_or_else(|| "kiln.toml".into());
                bail!(
                    "'{n}' is neither a target of {file} (targets: {names}) nor an existing path"
                );
            }
            OutputRef::Name(n) => out.push(entry_at(store, Path::new(n))?),
            OutputRef::Path(p) => out.push(entry_at(store, p)?),
        }
    }
    Ok(out)
}

/// kiln.toml: the one `-f` names or the one here, read whenever it is
/// there (a broken one is an error, never skipped) or a reference needs
/// it (none are given: every target; a bare name is not an existing
/// path). Only paths, with no kiln.toml at all, need none.
fn manifest_for(refs: &[OutputRef], file: &FileArg) -> anyhow::Result<Option<Manifest>> {
    let names_a_path = |r: &OutputRef| match r {
        OutputRef::Path(_) => true,
        OutputRef::Name(n) => Path::new(n).exists(),
    };
    let needed = refs.is_empty() || !refs.iter().all(names_a_path);
    let present = file.file.is_some() || std::fs::symlink_metadata("kiln.toml").is_ok();
    if needed || present {
        open::manifest(file.file.as_deref()).map(Some)
    } else {
        Ok(None)
    }
}

/// The store entry `path` lies in, or why it is none.
fn entry_at(store: &Store, path: &Path) -> anyhow::Result<PathBuf> {
    store
        .entry_containing(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .with_context(|| {
            format!(
                "{} is not in the kiln store {}; name a target, a result link or a store path",
                path.display(),
                store.entries_dir().display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_written_as_one_and_a_bare_name_may_be_either() {
        assert_eq!(
            OutputRef::parse("./result"),
            OutputRef::Path("./result".into())
        );
        assert_eq!(OutputRef::parse("a/b"), OutputRef::Path("a/b".into()));
        assert_eq!(
            OutputRef::parse(".hidden"),
            OutputRef::Path(".hidden".into())
        );
        assert_eq!(OutputRef::parse("result"), OutputRef::Name("result".into()));
        assert_eq!(OutputRef::parse("image"), OutputRef::Name("image".into()));
    }
}
