//! What `audit`, `push` and `cache push` name when they name an output:
//! a target of kiln.toml (found as last built: nothing is built or
//! fetched), or a path into the store (`./result`, a store path, or a path
//! inside an entry, which names that entry). One rule decides which
//! ([`OutputRef::parse`]), one resolver finds the entries.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use std::collections::BTreeMap;

use kiln_core::store::Store;

use crate::builder::Builder;
use crate::cli::args::{FileArg, KeyArgs};
use crate::cli::options::{self, Setting};
use crate::cli::project::Project;

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
    /// A name holding `/` or starting with `.` is a path, unless it is a
    /// workspace address (`services/api:image`); any other is a name.
    pub(super) fn parse(s: &str) -> OutputRef {
        let address = s.contains(':') && (s.starts_with("//") || !s.starts_with(['.', '/']));
        if !address && (s.contains('/') || s.starts_with('.')) {
            OutputRef::Path(PathBuf::from(s))
        } else {
            OutputRef::Name(s.to_string())
        }
    }
}

/// The store entries `refs` name, in their order; every target of
/// kiln.toml (at or below the current directory, in a workspace) when
/// `refs` is empty.
pub(super) fn resolve(
    store: &Store,
    refs: &[String],
    file: &FileArg,
    key: &KeyArgs,
    setting: &Setting,
) -> anyhow::Result<Vec<PathBuf>> {
    let refs: Vec<OutputRef> = refs.iter().map(|r| OutputRef::parse(r)).collect();
    let project = project_for(&refs, file)?;
    // Each name that is a target, by its address; the others are paths.
    let mut addresses: BTreeMap<&str, String> = BTreeMap::new();
    let mut not_targets: BTreeMap<&str, anyhow::Error> = BTreeMap::new();
    if let Some(p) = &project {
        for r in &refs {
            if let OutputRef::Name(n) = r {
                match p.select(std::slice::from_ref(n)) {
                    Ok((_, mut t)) if t.len() == 1 => {
                        addresses.insert(n, t.remove(0));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        not_targets.insert(n, e);
                    }
                }
            }
        }
    }
    let wanted: Vec<String> = addresses.values().cloned().collect();
    let mut found = BTreeMap::new();
    if let Some(p) = &project
        && (refs.is_empty() || !wanted.is_empty())
    {
        let (m, targets) = p.select(&wanted)?;
        let mut builder = Builder::new(store.clone(), &m, options::lookup(setting, key, file))?;
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
            OutputRef::Name(n) if addresses.contains_key(n.as_str()) => {
                out.push(found[&addresses[n.as_str()]].clone())
            }
            OutputRef::Name(n) if !Path::new(n).exists() => {
                let why = not_targets
                    .get(n.as_str())
                    .map(|e| format!("{e:#}"))
                    .unwrap_or_else(|| "there is no kiln.toml here".into());
                bail!("'{n}' is neither a target ({why}) nor an existing path");
            }
            OutputRef::Name(n) => out.push(entry_at(store, Path::new(n))?),
            OutputRef::Path(p) => out.push(entry_at(store, p)?),
        }
    }
    Ok(out)
}

/// The project: the one `-f` names or the one here, read whenever it is
/// there (a broken one is an error, never skipped) or a reference needs
/// it (none are given: every target; a bare name is not an existing
/// path). Only paths, with no kiln.toml at all, need none.
fn project_for(refs: &[OutputRef], file: &FileArg) -> anyhow::Result<Option<Project>> {
    let names_a_path = |r: &OutputRef| match r {
        OutputRef::Path(_) => true,
        OutputRef::Name(n) => Path::new(n).exists(),
    };
    let needed = refs.is_empty() || !refs.iter().all(names_a_path);
    let present = file.file.is_some() || std::fs::symlink_metadata("kiln.toml").is_ok();
    if needed || present {
        Project::open(file.file.as_deref()).map(Some)
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
        assert_eq!(
            OutputRef::parse("services/api:image"),
            OutputRef::Name("services/api:image".into())
        );
    }
}
