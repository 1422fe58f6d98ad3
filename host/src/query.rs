//! Questions about the target graph, answered from kiln.toml alone
//! (nothing is built or hashed): what a target depends on, what depends on
//! it, what a change affects, and the graph drawn for Graphviz or Mermaid
//! (marked, when the caller looked in the store, with where each target
//! stands: [`Mark`]).
//!
//! `affected` takes the change as data — the files that differ and the
//! kiln.toml and kiln.lock texts as they were — so asking git is the
//! command's job; it reads the filesystem only to resolve an input's
//! symlinks, as the build does when it hashes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Lockfile;
use kiln_core::manifest::{Manifest, RecipeRef, Source, Target};
use kiln_core::pathfilter::PathFilter;

/// Every target `names` depend on, transitively, dependencies first
/// (`names` themselves left out).
pub fn deps(m: &Manifest, names: &[String]) -> Vec<String> {
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    match m.build_order(names) {
        Ok(order) => order
            .into_iter()
            .map(|t| t.name.clone())
            .filter(|n| !wanted.contains(n.as_str()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every target of `m` that depends on one of `names`, transitively,
/// sorted (`names` themselves left out).
pub fn rdeps(m: &Manifest, names: &[String]) -> Vec<String> {
    let users = dependents(m);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = names.iter().map(String::as_str).collect();
    while let Some(n) = queue.pop() {
        for u in users.get(n).into_iter().flatten() {
            if seen.insert(u) {
                queue.push(u);
            }
        }
    }
    for n in names {
        seen.remove(n.as_str());
    }
    seen.into_iter().map(str::to_string).collect()
}

/// Target → the targets that take its output as an input.
fn dependents(m: &Manifest) -> HashMap<&str, Vec<&str>> {
    let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in m.targets.values() {
        for d in t.target_deps() {
            users.entry(d).or_default().push(&t.name);
        }
    }
    users
}

/// A change to the project: what differs between a revision and now.
#[derive(Debug, Default)]
pub struct Change {
    /// Files that differ (added, modified, deleted or untracked), relative
    /// to the project's root directory.
    pub files: BTreeSet<PathBuf>,
    /// Each kiln.toml (by its path relative to the root) as it was: `None`
    /// when it did not exist then.
    pub old_manifests: BTreeMap<PathBuf, Option<String>>,
    /// kiln.lock as it was, when it existed and differs.
    pub old_lock: Option<Option<String>>,
    /// The project's root with symlinks resolved, to find an input that
    /// is a link (`path = "current"`, `current -> v2`) where git sees it;
    /// empty: paths are taken as written.
    pub real_root: PathBuf,
}

/// One affected target and the first reason found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    pub target: String,
    pub because: String,
}

/// The targets of `m` (the whole project, loaded) whose inputs `change`
/// touches, and everything that depends on them; sorted by address.
pub fn affected(m: &Manifest, lock: &Lockfile, change: &Change) -> Vec<Affected> {
    let root = &m.dir;
    let mut direct: BTreeMap<String, String> = BTreeMap::new();
    let old_lock = change.old_lock.as_ref().map(|text| match text {
        Some(t) => Lockfile::parse("kiln.lock", t).unwrap_or_default(),
        None => Lockfile::default(),
    });
    let mut old_targets: BTreeMap<PathBuf, Option<BTreeMap<String, serde_json::Value>>> =
        BTreeMap::new();
    // New members (or excluded ones) change which packages exist: every
    // target may be new, so every target counts.
    let root_file = rel_to(root, &m.file);
    if m.workspace.is_some() && change.files.contains(&root_file) {
        let old_decl = change
            .old_manifests
            .get(&root_file)
            .cloned()
            .flatten()
            .and_then(|text| kiln_core::manifest::parse_package(&m.file, &text, m.naming, "").ok())
            .and_then(|old| old.workspace);
        let same = old_decl
            .as_ref()
            .zip(m.workspace.as_ref())
            .is_some_and(|(a, b)| a.members == b.members && a.exclude == b.exclude);
        if !same {
            let mut all: Vec<Affected> = m
                .targets
                .keys()
                .map(|t| Affected {
                    target: t.clone(),
                    because: "[workspace] members changed".into(),
                })
                .collect();
            all.sort_by(|a, b| a.target.cmp(&b.target));
            return all;
        }
    }
    for t in m.targets.values() {
        let file = rel_to(root, &t.at.file);
        if change.files.contains(&file) {
            let old = old_targets.entry(file.clone()).or_insert_with(|| {
                let text = change.old_manifests.get(&file).cloned().flatten()?;
                let parsed =
                    kiln_core::manifest::parse_package(&t.at.file, &text, m.naming, &t.package)
                        .ok()?;
                Some(
                    parsed
                        .targets
                        .values()
                        .map(|o| (o.name.clone(), definition(o, &t.dir)))
                        .collect(),
                )
            });
            let same = old
                .as_ref()
                .and_then(|o| o.get(&t.name))
                .is_some_and(|d| *d == definition(t, &t.dir));
            if !same {
                direct.insert(t.name.clone(), format!("{} changed", file.display()));
                continue;
            }
        }
        if let Some(old) = &old_lock
            && old.target.get(&t.name) != lock.target.get(&t.name)
        {
            direct.insert(t.name.clone(), "its pins in kiln.lock changed".into());
            continue;
        }
        if let Some(why) = touched_input(m, &change.real_root, t, &change.files) {
            direct.insert(t.name.clone(), why);
        }
    }
    let names: Vec<String> = direct.keys().cloned().collect();
    let mut out: Vec<Affected> = direct
        .into_iter()
        .map(|(target, because)| Affected { target, because })
        .collect();
    let users = dependents(m);
    // Breadth-first from the directly affected: each dependent names the
    // dependency through which it was reached.
    let mut seen: BTreeSet<String> = names.iter().cloned().collect();
    let mut queue: std::collections::VecDeque<String> = names.into_iter().collect();
    while let Some(n) = queue.pop_front() {
        for u in users.get(n.as_str()).into_iter().flatten() {
            if seen.insert(u.to_string()) {
                out.push(Affected {
                    target: u.to_string(),
                    because: format!("depends on {n}"),
                });
                queue.push_back(u.to_string());
            }
        }
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}

/// The reason one of `t`'s own files is among `files`, if one is.
fn touched_input(
    m: &Manifest,
    real_root: &Path,
    t: &Target,
    files: &BTreeSet<PathBuf>,
) -> Option<String> {
    let root = &m.dir;
    // A path as written, and as the build reads it (symlinks resolved).
    let places = |path: &Path| -> Vec<PathBuf> {
        let mut v = vec![rel_to(root, path)];
        if !real_root.as_os_str().is_empty()
            && let Ok(real) = path.canonicalize()
            && let Ok(rel) = real.strip_prefix(real_root)
            && !v.iter().any(|p| p == rel)
        {
            v.push(rel.to_path_buf());
        }
        v
    };
    if let RecipeRef::Wasm { path, .. } = &t.recipe {
        for rel in places(path) {
            if files.contains(&rel) {
                return Some(format!("its recipe {} changed", rel.display()));
            }
        }
    }
    for i in t.inputs.values() {
        let (path, filter) = match &i.source {
            Source::Path { path, exclude } => (
                path.clone(),
                PathFilter::new(&m.source_excludes(path, exclude)),
            ),
            Source::Url { url, .. } => match url.strip_prefix("file://") {
                Some(local) => (PathBuf::from(local), PathFilter::default()),
                None => continue,
            },
            Source::Target(_) | Source::Image { .. } => continue,
        };
        for base in places(&path) {
            // A change at a directory above the input (git names a
            // submodule by its directory) touches it too.
            if let Some(f) = base
                .ancestors()
                .skip(1)
                .find(|a| !a.as_os_str().is_empty() && files.contains(*a))
            {
                return Some(format!("input '{}': {} changed", i.name, f.display()));
            }
            for f in files.range(base.clone()..) {
                let Ok(inner) = f.strip_prefix(&base) else {
                    break;
                };
                if !excluded(&filter, inner) {
                    return Some(format!("input '{}': {} changed", i.name, f.display()));
                }
            }
        }
    }
    None
}

/// Whether `rel` or a directory above it is left out by `filter`.
fn excluded(filter: &PathFilter, rel: &Path) -> bool {
    let mut prefix = String::new();
    for c in rel.components() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(&c.as_os_str().to_string_lossy());
        if filter.excludes(&prefix) {
            return true;
        }
    }
    false
}

/// `path` relative to `root`, with `.` and `..` resolved as written
/// (what git names a file by).
fn rel_to(root: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.strip_prefix(root).unwrap_or(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// What a target is, without where it is written: equal for two
/// revisions of kiln.toml exactly when the target did not change.
fn definition(t: &Target, dir: &Path) -> serde_json::Value {
    let recipe = match &t.recipe {
        RecipeRef::Standard(n) => serde_json::json!(n),
        RecipeRef::Wasm { path, hash, .. } => {
            serde_json::json!({ "path": rel_to(dir, path), "hash": hash.map(|h| h.to_sri()) })
        }
    };
    let inputs: BTreeMap<&str, serde_json::Value> = t
        .inputs
        .values()
        .map(|i| {
            let source = match &i.source {
                Source::Path { path, exclude } => {
                    serde_json::json!({ "path": rel_to(dir, path), "exclude": exclude })
                }
                Source::Url { url, unpack } => serde_json::json!({ "url": url, "unpack": unpack }),
                Source::Target(a) => serde_json::json!({ "target": a }),
                Source::Image { reference } => serde_json::json!({ "image": reference }),
            };
            let hash = i.hash.map(|h| h.to_sri());
            (
                i.name.as_str(),
                serde_json::json!({ "source": source, "hash": hash }),
            )
        })
        .collect();
    serde_json::json!({
        "recipe": recipe,
        "inputs": inputs,
        "params": t.params,
        "output_hash": t.output_hash.map(|h| h.to_sri()),
    })
}

/// How `kiln graph` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

/// `names` and their dependencies drawn in `format`; an edge runs from a
/// dependency to the target that takes it as an input.
/// What `kiln graph` shows of a target beyond kiln.toml, from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// "up to date", "out of date" or "unknown".
    pub state: &'static str,
    /// Why it is unknown.
    pub detail: Option<String>,
    /// The stored output's hash, when up to date.
    pub output: Option<Sha256Hash>,
    /// Input name → its hash, where known.
    pub inputs: HashMap<String, Sha256Hash>,
}

impl Mark {
    /// A short hash as people read them: the first 8 hex digits.
    fn short(h: &Sha256Hash) -> String {
        h.to_hex()[..8].to_string()
    }
    /// Its state and, if up to date, its output's short hash.
    fn line(&self) -> String {
        match (&self.output, &self.detail) {
            (Some(o), _) => format!("{} {}", self.state, Self::short(o)),
            (None, Some(d)) => format!("{} {d}", self.state),
            (None, None) => self.state.to_string(),
        }
    }
    /// The fill for its state.
    fn colour(&self) -> &'static str {
        match self.state {
            "up to date" => "#c8e6c9",
            "out of date" => "#ffe0b2",
            _ => "#eeeeee",
        }
    }
}

/// The graph of `names` and their dependencies in `format`: each target
/// with its recipe and own inputs (their kinds); with `marks`, also where
/// it stands and the inputs' short hashes.
pub fn graph(
    m: &Manifest,
    names: &[String],
    format: GraphFormat,
    marks: Option<&HashMap<String, Mark>>,
) -> String {
    let mark = |t: &Target| marks.and_then(|ms| ms.get(&t.name));
    let hash_of = |t: &Target, input: &str| {
        mark(t)
            .and_then(|mk| mk.inputs.get(input))
            .map(|h| format!(" {}", Mark::short(h)))
            .unwrap_or_default()
    };
    let order: Vec<&Target> = m.build_order(names).unwrap_or_default();
    let edges: Vec<(&str, &str, &str)> = order
        .iter()
        .flat_map(|t| {
            t.inputs.values().filter_map(|i| match &i.source {
                Source::Target(d) => Some((d.as_str(), t.name.as_str(), i.name.as_str())),
                _ => None,
            })
        })
        .collect();
    let label = |t: &Target| {
        let recipe = match &t.recipe {
            RecipeRef::Standard(n) => n.clone(),
            RecipeRef::Wasm { path, .. } => rel_to(&t.dir, path).display().to_string(),
        };
        let own: Vec<String> = t
            .inputs
            .values()
            .filter_map(|i| {
                let kind = match &i.source {
                    Source::Path { .. } => "path",
                    Source::Url { .. } => "url",
                    Source::Image { .. } => "image",
                    Source::Target(_) => return None,
                };
                Some(format!("{} ({kind}){}", i.name, hash_of(t, &i.name)))
            })
            .collect();
        (recipe, own)
    };
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(
                "digraph kiln {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for t in &order {
                let (recipe, own) = label(t);
                let mut text = format!("{}\\n[{recipe}]", t.name);
                for o in own {
                    text.push_str(&format!("\\n{o}"));
                }
                let style = match mark(t) {
                    Some(mk) => {
                        text.push_str(&format!("\\n{}", mk.line()));
                        format!(", style=filled, fillcolor=\"{}\"", mk.colour())
                    }
                    None => String::new(),
                };
                out.push_str(&format!(
                    "  {} [label={}{style}];\n",
                    dot_id(&t.name),
                    dot_id(&text)
                ));
            }
            for (from, to, input) in &edges {
                out.push_str(&format!(
                    "  {} -> {} [label={}];\n",
                    dot_id(from),
                    dot_id(to),
                    dot_id(input)
                ));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("graph LR\n");
            let ids: HashMap<&str, usize> = order
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.as_str(), i))
                .collect();
            for (i, t) in order.iter().enumerate() {
                let (recipe, _) = label(t);
                let state = mark(t)
                    .map(|mk| format!("<br/>{}", mermaid_text(&mk.line())))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  t{i}[\"{}<br/>{}{state}\"]\n",
                    mermaid_text(&t.name),
                    mermaid_text(&recipe)
                ));
                if let Some(mk) = mark(t) {
                    out.push_str(&format!("  style t{i} fill:{}\n", mk.colour()));
                }
            }
            for (from, to, input) in &edges {
                out.push_str(&format!(
                    "  t{} -->|{}| t{}\n",
                    ids[from],
                    mermaid_text(input),
                    ids[to]
                ));
            }
        }
        GraphFormat::Json => {
            let targets: Vec<serde_json::Value> = order
                .iter()
                .map(|t| {
                    let inputs: Vec<serde_json::Value> = t
                        .inputs
                        .values()
                        .map(|i| {
                            let (kind, from) = match &i.source {
                                Source::Path { path, .. } => {
                                    ("path", rel_to(&m.dir, path).display().to_string())
                                }
                                Source::Url { url, .. } => ("url", url.clone()),
                                Source::Target(a) => ("target", a.clone()),
                                Source::Image { reference } => ("image", reference.clone()),
                            };
                            let hash = mark(t)
                                .and_then(|mk| mk.inputs.get(&i.name))
                                .map(|h| h.to_sri());
                            serde_json::json!({ "name": i.name, "kind": kind, "from": from, "hash": hash })
                        })
                        .collect();
                    let mut v = serde_json::json!({
                        "target": t.name,
                        "package": t.package,
                        "recipe": label(t).0,
                        "inputs": inputs,
                    });
                    if let Some(mk) = mark(t) {
                        v["state"] = mk.state.into();
                        v["why"] = mk.detail.clone().into();
                        v["output_hash"] = mk.output.map(|h| h.to_sri()).into();
                    }
                    v
                })
                .collect();
            out = serde_json::to_string_pretty(&serde_json::json!({ "targets": targets }))
                .unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// A DOT string literal.
fn dot_id(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("\\\\n", "\\n")
    )
}

/// Text safe inside a Mermaid label (addresses hold only `/`, `:` and
/// name characters, but a path may hold more).
fn mermaid_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/:._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
