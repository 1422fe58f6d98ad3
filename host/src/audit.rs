//! Audit: build records turned into the answers an auditor needs.
//!
//! * [`closure`]: a target output's full input closure as a tree: recipe,
//!   every input (recursing through targets), the files of path inputs, the
//!   tools run and the Go modules linked in;
//! * [`diff`]: what changed between two closures;
//! * [`verify`]: whether store entries still hash to what was recorded;
//! * [`provenance`] and [`sbom`]: in-toto/SLSA provenance and SPDX SBOMs.
//!
//! Everything here reads the store and its records; nothing builds.

pub mod gomod;
pub mod provenance;
pub mod sbom;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::EntryKind;
use kiln_core::store::Store;
use serde::Serialize;

use crate::builder::record::{self, BuildRecord};

/// One node of an input closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// `target`, `recipe`, `path`, `url`, `file`, `go-binary` or `go-module`.
    pub kind: &'static str,
    /// The input's name (the target's name at the root), a file's path, a
    /// module's path.
    pub name: String,
    /// Where it came from: a target name, a path relative to kiln.toml, a URL,
    /// a recipe's name or path, a Go version.
    pub source: String,
    /// An SRI hash; a Go module's go.sum checksum (`h1:…`).
    pub hash: String,
    /// For url and path inputs: `file` (flat hash) or `tree` (NAR hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_of: Option<String>,
    /// The store entry (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<PathBuf>,
    /// Sandbox mode the target was built in (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Executables the recipe ran from this input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// Why an audit could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "{0} has no build record: it is not a target's output (inputs and prefetched files have none); audit a target or its result link"
    )]
    NoRecord(PathBuf),
    #[error("{0}")]
    Other(String),
}

/// The record of the target output `entry`.
pub fn record_of(store: &Store, entry: &Path) -> Result<BuildRecord, AuditError> {
    record::read(store, entry).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AuditError::NoRecord(entry.to_path_buf()),
        _ => AuditError::Other(format!(
            "reading the build record of {}: {e}",
            entry.display()
        )),
    })
}

/// The store entry a path names: a store entry, a path inside one, or a
/// link (like `result`) to either.
pub fn entry_of(store: &Store, path: &Path) -> Result<PathBuf, AuditError> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| AuditError::Other(format!("{}: {e}", path.display())))?;
    let dir = std::fs::canonicalize(store.entries_dir())
        .map_err(|e| AuditError::Other(format!("{}: {e}", store.root().display())))?;
    let rel = real.strip_prefix(&dir).map_err(|_| {
        AuditError::Other(format!(
            "{} is not in the kiln store {}; name a target, a result link or a store path",
            path.display(),
            dir.display()
        ))
    })?;
    match rel.components().next() {
        Some(first) => Ok(dir.join(first)),
        None => Err(AuditError::Other(format!(
            "{} is the store itself; name one entry",
            path.display()
        ))),
    }
}

/// The input closure of the target output `entry`.
pub fn closure(store: &Store, entry: &Path) -> Result<Node, AuditError> {
    let rec = record_of(store, entry)?;
    let mut children = vec![Node::leaf("recipe", &rec.recipe.name, "", rec.recipe.hash)];
    children[0].source = if crate::recipes::standard(&rec.recipe.name).is_some() {
        "standard".into()
    } else {
        "custom".into()
    };
    for input in &rec.inputs {
        let mut node = match (input.kind.as_str(), &input.entry) {
            ("target", Some(dep)) => {
                let mut n = closure(store, &store.entries_dir().join(dep))?;
                n.name = input.name.clone();
                n
            }
            _ => {
                let kind = if input.kind == "url" { "url" } else { "path" };
                let mut n = Node::leaf(kind, &input.name, &input.origin, input.hash);
                n.hash_of = Some(input.hash_of.clone());
                n.children = input
                    .files
                    .iter()
                    .filter_map(|f| match &f.kind {
                        EntryKind::File { sha256, .. } => {
                            Some(Node::leaf("file", &f.path, "", *sha256))
                        }
                        EntryKind::Symlink { target } => Some(Node {
                            source: format!("-> {target}"),
                            hash: String::new(),
                            ..Node::leaf("file", &f.path, "", Sha256Hash([0; 32]))
                        }),
                        EntryKind::Directory => None,
                    })
                    .collect();
                n
            }
        };
        node.tools = rec
            .tools
            .iter()
            .filter(|t| t.input == input.name)
            .map(|t| t.path.clone())
            .collect();
        children.push(node);
    }
    for bin in gomod::read(entry).map_err(AuditError::Other)? {
        // The path comes from the output: resolved beneath it, regular files only.
        let root = kiln_core::beneath::Root::open(entry)
            .map_err(|e| AuditError::Other(format!("{}: {e}", entry.display())))?;
        let hash = Sha256Hash::of_reader(
            root.open_file(Path::new(&bin.path))
                .map_err(|e| AuditError::Other(format!("{}: {e}", bin.path)))?,
        )
        .map_err(|e| AuditError::Other(format!("{}: {e}", bin.path)))?;
        let mut n = Node::leaf("go-binary", &bin.path, &bin.go_version, hash);
        n.children = bin
            .modules
            .iter()
            .map(|m| Node {
                kind: "go-module",
                name: m.path.clone(),
                source: m.version.clone(),
                hash: m.sum.clone(),
                hash_of: None,
                entry: None,
                sandbox: None,
                tools: Vec::new(),
                children: Vec::new(),
            })
            .collect();
        children.push(n);
    }
    Ok(Node {
        kind: "target",
        name: rec.target.clone(),
        source: rec.target.clone(),
        hash: rec.output_hash.to_sri(),
        hash_of: Some("tree".into()),
        entry: Some(entry.to_path_buf()),
        sandbox: Some(rec.sandbox.clone()),
        tools: Vec::new(),
        children,
    })
}

impl Node {
    fn leaf(kind: &'static str, name: &str, source: &str, hash: Sha256Hash) -> Node {
        Node {
            kind,
            name: name.to_string(),
            source: source.to_string(),
            hash: hash.to_sri(),
            hash_of: None,
            entry: None,
            sandbox: None,
            tools: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Every node below this one with its path of names from here
    /// (`hello > src > hello.go`), depth first.
    pub fn descendants(&self) -> Vec<(String, &Node)> {
        let mut out = Vec::new();
        fn walk<'a>(n: &'a Node, prefix: &str, out: &mut Vec<(String, &'a Node)>) {
            for c in &n.children {
                let path = if prefix.is_empty() {
                    format!("{} {}", c.kind, c.name)
                } else {
                    format!("{prefix} > {}", c.name)
                };
                out.push((path.clone(), c));
                walk(c, &path, out);
            }
        }
        walk(self, "", &mut out);
        out
    }
}

/// The closure as an indented tree, one node per line.
pub fn render(root: &Node) -> String {
    let mut out = String::new();
    let mut line = format!("target {}  {}", root.name, root.hash);
    if let Some(e) = &root.entry {
        line.push_str(&format!("  {}", e.display()));
    }
    if let Some(s) = &root.sandbox {
        line.push_str(&format!("  ({s})"));
    }
    out.push_str(&line);
    out.push('\n');
    fn walk(n: &Node, indent: &str, out: &mut String) {
        for (i, c) in n.children.iter().enumerate() {
            let last = i + 1 == n.children.len();
            let mut line = format!(
                "{indent}{} {} {}",
                if last { "└──" } else { "├──" },
                c.kind,
                c.name
            );
            if !c.source.is_empty() && c.source != c.name {
                line.push_str(&format!("  {}", c.source));
            }
            if !c.hash.is_empty() {
                line.push_str(&format!("  {}", c.hash));
            }
            if let Some(s) = &c.sandbox
                && s != "hermetic"
            {
                line.push_str(&format!("  (sandbox {s}: NOT HERMETIC)"));
            }
            for t in &c.tools {
                line.push_str(&format!("  [tool {t}]"));
            }
            out.push_str(&line);
            out.push('\n');
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            walk(c, &deeper, out);
        }
    }
    walk(root, "", &mut out);
    out
}

/// How one node differs between two closures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Names from the root: `input hello > src > hello.go`.
    pub path: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Version>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub source: String,
    pub hash: String,
}

/// What changed from closure `a` to closure `b`: the outputs themselves,
/// then every node added, removed or changed (hash or source), in `b`'s order.
pub fn diff(a: &Node, b: &Node) -> Vec<Difference> {
    let version = |n: &Node| Version {
        source: n.source.clone(),
        hash: n.hash.clone(),
    };
    let mut out = Vec::new();
    if a.hash != b.hash {
        out.push(Difference {
            change: "changed",
            path: "output".into(),
            kind: "target",
            old: Some(version(a)),
            new: Some(version(b)),
        });
    }
    let old: BTreeMap<String, &Node> = a.descendants().into_iter().collect();
    let new = b.descendants();
    for (path, n) in &new {
        match old.get(path) {
            None => out.push(Difference {
                change: "added",
                path: path.clone(),
                kind: n.kind,
                old: None,
                new: Some(version(n)),
            }),
            Some(o) if o.hash != n.hash || o.source != n.source => out.push(Difference {
                change: "changed",
                path: path.clone(),
                kind: n.kind,
                old: Some(version(o)),
                new: Some(version(n)),
            }),
            Some(_) => {}
        }
    }
    let new_paths: std::collections::BTreeSet<&String> = new.iter().map(|(p, _)| p).collect();
    for (path, o) in &old {
        if !new_paths.contains(path) {
            out.push(Difference {
                change: "removed",
                path: path.clone(),
                kind: o.kind,
                old: Some(version(o)),
                new: None,
            });
        }
    }
    out
}

/// The differences, one per line.
pub fn render_diff(diffs: &[Difference]) -> String {
    if diffs.is_empty() {
        return "the two input closures are identical\n".into();
    }
    let show = |v: &Option<Version>| {
        v.as_ref().map_or(String::new(), |v| {
            if v.hash.is_empty() || v.source.is_empty() {
                format!("{}{}", v.source, v.hash)
            } else {
                format!("{} {}", v.source, v.hash)
            }
        })
    };
    diffs
        .iter()
        .map(|d| match d.change {
            "added" => format!("added    {}  {}\n", d.path, show(&d.new)),
            "removed" => format!("removed  {}  {}\n", d.path, show(&d.old)),
            _ => format!("changed  {}  {} → {}\n", d.path, show(&d.old), show(&d.new)),
        })
        .collect()
}

/// One store entry's verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub entry: PathBuf,
    /// `record` (a target output) or `name` (content named by its hash).
    pub against: &'static str,
    pub expected: String,
    pub got: String,
    pub ok: bool,
}

/// Re-hash `entry` and compare with its build record, or, for inputs (which
/// have none), with the hash its name starts with.
pub fn verify(store: &Store, entry: &Path) -> Result<Verified, AuditError> {
    let hash_err = |e: kiln_core::nar::NarError| AuditError::Other(e.to_string());
    match record_of(store, entry) {
        Ok(rec) => {
            // A target output is hashed as a tree even when it is one file.
            let got = kiln_core::nar::hash_path(entry).map_err(hash_err)?;
            Ok(Verified {
                entry: entry.to_path_buf(),
                against: "record",
                expected: rec.output_hash.to_sri(),
                got: got.to_sri(),
                ok: got == rec.output_hash,
            })
        }
        Err(AuditError::NoRecord(_)) => {
            let got =
                kiln_core::store::content_hash(entry, &Default::default()).map_err(hash_err)?;
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let prefix = name.split('-').next().unwrap_or("");
            Ok(Verified {
                entry: entry.to_path_buf(),
                against: "name",
                expected: prefix.to_string(),
                got: got.to_sri(),
                ok: prefix.len() == 32 && got.to_nix32().starts_with(prefix),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &'static str, name: &str, hash: &str, children: Vec<Node>) -> Node {
        Node {
            kind,
            name: name.into(),
            source: String::new(),
            hash: hash.into(),
            hash_of: None,
            entry: None,
            sandbox: None,
            tools: Vec::new(),
            children,
        }
    }

    #[test]
    fn diff_names_changed_added_and_removed_nodes_by_path() {
        let a = node(
            "target",
            "hello",
            "out1",
            vec![node(
                "path",
                "src",
                "s1",
                vec![
                    node("file", "hello.go", "h1", vec![]),
                    node("file", "old.go", "o", vec![]),
                ],
            )],
        );
        let b = node(
            "target",
            "hello",
            "out2",
            vec![node(
                "path",
                "src",
                "s2",
                vec![
                    node("file", "hello.go", "h2", vec![]),
                    node("file", "new.go", "n", vec![]),
                ],
            )],
        );
        let d = diff(&a, &b);
        let summary: Vec<(&str, &str)> = d.iter().map(|d| (d.change, d.path.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("changed", "output"),
                ("changed", "path src"),
                ("changed", "path src > hello.go"),
                ("added", "path src > new.go"),
                ("removed", "path src > old.go"),
            ]
        );
        assert!(diff(&a, &a).is_empty());
        assert!(render_diff(&d).contains("changed  path src > hello.go  h1 → h2"));
    }

    #[test]
    fn render_draws_a_tree() {
        let t = node(
            "target",
            "hello",
            "sha256-x",
            vec![
                node("recipe", "go", "r", vec![]),
                node(
                    "path",
                    "src",
                    "s",
                    vec![node("file", "hello.go", "h", vec![])],
                ),
            ],
        );
        assert_eq!(
            render(&t),
            "target hello  sha256-x\n├── recipe go  r\n└── path src  s\n    └── file hello.go  h\n"
        );
    }
}
