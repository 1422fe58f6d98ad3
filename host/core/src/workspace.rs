//! A workspace: a root kiln.toml whose `[workspace]` names member
//! directories, each a package with its own kiln.toml and targets.
//!
//! Opening one reads the root and lists the members (directory listings,
//! no parsing); [`Workspace::load`] then parses only the packages a
//! command needs — those it names and, transitively, those their targets'
//! inputs name — and merges them into one [`Manifest`] keyed by address.
//! A no-op build of one package does not read the other 499.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::address::{self, Naming};
use crate::manifest::{Location, Manifest, ManifestError, parse_package};
use crate::pathfilter::glob_match;

/// A workspace's root and its members.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The root kiln.toml, parsed as the package "".
    root: Manifest,
    /// Member packages: package path → its kiln.toml.
    members: BTreeMap<String, PathBuf>,
}

/// Which packages a command needs.
#[derive(Debug, Clone)]
pub enum Packages {
    All,
    /// These packages (and what their targets depend on).
    Some(BTreeSet<String>),
}

impl Workspace {
    /// The workspace whose root kiln.toml is `file`, holding `text`; its
    /// `[workspace]` globs are expanded against the directories below it.
    pub fn open(file: &Path, text: &str) -> Result<Workspace, ManifestError> {
        let root = parse_package(file, text, Naming::Workspace, "")?;
        let Some(decl) = root.workspace.clone() else {
            return Err(ManifestError {
                location: Location {
                    file: file.to_path_buf(),
                    line: 1,
                    column: 1,
                },
                message: "not a workspace root: it has no [workspace] table".into(),
            });
        };
        let err = |message: String| ManifestError {
            location: decl.at.clone(),
            message,
        };
        let real_root = root
            .dir
            .canonicalize()
            .map_err(|e| err(format!("cannot resolve {}: {e}", root.dir.display())))?;
        for p in decl.members.iter().chain(&decl.exclude) {
            if p.is_empty()
                || p.starts_with('/')
                || p.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Err(err(format!(
                    "'{p}' is not a directory glob below the workspace root (write it like \"services/*\"; no '..', no leading '/')"
                )));
            }
        }
        let mut members = BTreeMap::new();
        // Each member's resolved directory, to refuse two names for one.
        let mut claimed: BTreeMap<PathBuf, String> = BTreeMap::new();
        for pattern in &decl.members {
            let globbed = pattern.contains(['*', '?']);
            let mut found = 0;
            for rel in expand(&root.dir, pattern) {
                if decl
                    .exclude
                    .iter()
                    .any(|x| glob_match(x.as_bytes(), rel.as_bytes()))
                {
                    continue;
                }
                let dir = root.dir.join(&rel);
                let file = dir.join("kiln.toml");
                if !file.is_file() {
                    if globbed {
                        continue;
                    }
                    return Err(err(format!(
                        "member '{rel}' has no kiln.toml; create {} or remove it from members",
                        file.display()
                    )));
                }
                address::check_package(&rel)
                    .map_err(|m| err(format!("member directory {rel}: {m}")))?;
                let real = dir
                    .canonicalize()
                    .map_err(|e| err(format!("cannot resolve {}: {e}", dir.display())))?;
                if !real.starts_with(&real_root) {
                    return Err(err(format!(
                        "member '{rel}' resolves to {}, outside the workspace root {}; a package must be a directory below the root",
                        real.display(),
                        real_root.display()
                    )));
                }
                if real == real_root {
                    return Err(err(format!(
                        "member '{rel}' is the workspace root itself; the root kiln.toml's own targets are //:NAME"
                    )));
                }
                if let Some(other) = claimed.get(&real)
                    && *other != rel
                {
                    return Err(err(format!(
                        "packages '{other}' and '{rel}' are one directory ({}); list it once",
                        real.display()
                    )));
                }
                claimed.insert(real, rel.clone());
                found += 1;
                members.insert(rel, file);
            }
            if found == 0 {
                return Err(err(format!(
                    "member glob '{pattern}' matches no directory with a kiln.toml; fix or remove it"
                )));
            }
        }
        Ok(Workspace { root, members })
    }

    /// The root kiln.toml, as parsed.
    pub fn root(&self) -> &Manifest {
        &self.root
    }

    /// Every member's package path.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The package whose directory holds `dir` (a path below the root),
    /// and the path from the root to `dir`.
    pub fn package_of(&self, dir: &Path) -> (String, String) {
        let rel = dir.strip_prefix(&self.root.dir).unwrap_or(Path::new(""));
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let path = rel.join("/");
        for n in (0..=rel.len()).rev() {
            let pkg = rel[..n].join("/");
            if self.members.contains_key(&pkg) {
                return (pkg, path);
            }
        }
        (String::new(), path)
    }

    /// The packages at or below `prefix`, the root's own among them when
    /// `prefix` is "".
    pub fn packages_below(&self, prefix: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .members
            .keys()
            .filter(|p| address::is_below(&format!("{p}:x"), prefix))
            .cloned()
            .collect();
        if prefix.is_empty() {
            out.insert(String::new());
        }
        out
    }

    /// Parse `wanted` and every package their targets depend on, and merge
    /// them into one manifest keyed by address; `read` reads a kiln.toml.
    pub fn load(
        &self,
        wanted: &Packages,
        read: impl Fn(&Path) -> std::io::Result<String> + Sync,
    ) -> Result<Manifest, ManifestError> {
        let mut merged = self.root.clone();
        let mut loaded: BTreeSet<String> = BTreeSet::from([String::new()]);
        let mut queue: Vec<String> = match wanted {
            Packages::All => self.members.keys().cloned().collect(),
            Packages::Some(set) => set.iter().filter(|p| !p.is_empty()).cloned().collect(),
        };
        // Dependencies of the root's targets.
        queue.extend(wanted_by(
            &merged,
            &merged.targets.keys().cloned().collect::<Vec<_>>(),
        ));
        while !queue.is_empty() {
            let batch: Vec<String> = std::mem::take(&mut queue)
                .into_iter()
                .filter(|p| loaded.insert(p.clone()))
                .collect();
            let parsed = self.parse_all(&batch, &read)?;
            // A package no member names is None: the reference to it
            // fails in the check below, at the input that makes it.
            for m in parsed.into_iter().flatten() {
                let new: Vec<String> = m.targets.keys().cloned().collect();
                merged.files.push(m.file.clone());
                merged.targets.extend(m.targets);
                queue.extend(wanted_by(&merged, &new));
            }
        }
        merged.check_target_refs()?;
        merged.package_dirs = self
            .members
            .values()
            .filter_map(|f| f.parent().map(crate::manifest::lexical))
            .collect();
        Ok(merged)
    }

    /// Parse the kiln.toml of each package in `batch` (two threads: 500
    /// small files parse in half the time); `None` for a package that is
    /// not a member.
    fn parse_all(
        &self,
        batch: &[String],
        read: &(impl Fn(&Path) -> std::io::Result<String> + Sync),
    ) -> Result<Vec<Option<Manifest>>, ManifestError> {
        let one = |pkg: &String| -> Result<Option<Manifest>, ManifestError> {
            let Some(file) = self.members.get(pkg) else {
                return Ok(None);
            };
            let text = read(file).map_err(|e| ManifestError {
                location: Location {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                },
                message: format!("cannot read it: {e}"),
            })?;
            let m = parse_package(file, &text, Naming::Workspace, pkg)?;
            let own_lock = file.with_file_name("kiln.lock");
            if own_lock.exists() {
                return Err(ManifestError {
                    location: Location {
                        file: file.clone(),
                        line: 1,
                        column: 1,
                    },
                    message: format!(
                        "package '{pkg}' has its own {}, which a workspace does not read: one kiln.lock at the root pins every package. Run `kiln lock` at the root, then delete it",
                        own_lock.display()
                    ),
                });
            }
            let refuse = |what: &str, at: &Location| ManifestError {
                location: at.clone(),
                message: format!(
                    "package '{pkg}': {what} belongs in the workspace root {}, not in a member",
                    self.root.file.display()
                ),
            };
            if let Some(w) = &m.workspace {
                return Err(refuse("[workspace] (workspaces do not nest)", &w.at));
            }
            if let Some(at) = &m.cache.at {
                return Err(refuse("[cache]", at));
            }
            Ok(Some(m))
        };
        if batch.len() < 16 {
            return batch.iter().map(one).collect();
        }
        let half = batch.len() / 2;
        let (a, b) = batch.split_at(half);
        std::thread::scope(|s| {
            let first = s.spawn(|| a.iter().map(one).collect::<Result<Vec<_>, _>>());
            let mut second = b.iter().map(one).collect::<Result<Vec<_>, _>>()?;
            let mut out = first
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            out.append(&mut second);
            Ok(out)
        })
    }
}

/// The root kiln.toml's `text` with `package` added to `[workspace]
/// members (rewriting only the members array), or why it cannot be.
pub fn add_member(text: &str, package: &str) -> Result<String, String> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Peek {
        workspace: PeekWorkspace,
    }
    #[derive(Deserialize)]
    struct PeekWorkspace {
        members: toml::Spanned<Vec<String>>,
    }
    address::check_package(package)?;
    let peek: Peek = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let span = peek.workspace.members.span();
    let mut members = peek.workspace.members.into_inner();
    members.push(package.to_string());
    let array = members
        .iter()
        .map(|m| serde_json::to_string(m).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "{}[{array}]{}",
        &text[..span.start],
        &text[span.end..]
    ))
}

/// The packages `targets` of `m` depend on that `m` does not hold yet.
fn wanted_by(m: &Manifest, targets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in targets {
        for dep in m.targets[name].target_deps() {
            if !m.targets.contains_key(dep) {
                out.push(address::split(dep).0.to_string());
            }
        }
    }
    out
}

/// The most directories member globs may name: a glob over a tree of
/// links must not build millions of paths.
const MAX_MEMBERS: usize = 100_000;

/// The directories below `root` that `pattern` (`/`-separated; `*` and
/// `?` within a segment, never matching a name starting with `.`) names,
/// as paths relative to `root`, sorted. Only the last segment may be a
/// symlink (then checked to stay below the root): a glob never descends
/// through a link, so `x -> /` or a loop of links cannot make kiln walk
/// outside the root or forever.
fn expand(root: &Path, pattern: &str) -> Vec<String> {
    let segments: Vec<&str> = pattern.split('/').collect();
    let mut found: Vec<String> = vec![String::new()];
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let is_dir = |p: &Path| -> bool {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => last && p.is_dir(),
                Ok(m) => m.is_dir(),
                Err(_) => false,
            }
        };
        let mut next = Vec::new();
        for rel in &found {
            let dir = root.join(rel);
            if !seg.contains(['*', '?']) {
                if is_dir(&dir.join(seg)) {
                    next.push(join(rel, seg));
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !glob_match(seg.as_bytes(), name.as_bytes()) {
                    continue;
                }
                if is_dir(&e.path()) && next.len() < MAX_MEMBERS {
                    next.push(join(rel, &name));
                }
            }
        }
        found = next;
    }
    found.sort();
    found
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

#[cfg(test)]
mod tests;
