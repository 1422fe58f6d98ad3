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

mod diff;
pub mod gomod;
pub mod provenance;
mod render;
pub mod sbom;
mod verify;

pub use diff::{Change, Difference, Version, diff};
pub use render::{render, render_diff};
pub use verify::{Verified, verify};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::EntryKind;
use kiln_core::store::Store;
use serde::Serialize;

use crate::record::{self, BuildRecord, HashOf, InputKind};
use crate::sandbox::SandboxMode;

/// What a node of an input closure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A target's output (the root, and target inputs).
    Target,
    /// The recipe a target was built with.
    Recipe,
    /// A `path` input.
    Path,
    /// A `url` input.
    Url,
    /// An `image` input (a base image pulled by digest).
    Image,
    /// A file inside a path or url input.
    File,
    /// A Go binary in the output.
    GoBinary,
    /// A Go module linked into a binary.
    GoModule,
    /// What a fixed-output step fetched (a module download), by its pin.
    Download,
}

impl NodeKind {
    /// The word printed in trees, diffs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Target => "target",
            NodeKind::Recipe => "recipe",
            NodeKind::Path => "path",
            NodeKind::Url => "url",
            NodeKind::Image => "image",
            NodeKind::File => "file",
            NodeKind::GoBinary => "go-binary",
            NodeKind::GoModule => "go-module",
            NodeKind::Download => "download",
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of an input closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub kind: NodeKind,
    /// The input's name (the target's name at the root), a file's path, a
    /// module's path.
    pub name: String,
    /// Where it came from: a target name, a path relative to kiln.toml, a URL,
    /// a recipe's name or path, the Go release a binary was built with;
    /// empty for a Go module (its `version` says which).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// A Go module's version (`v1.2.0`, `(devel)` for the main module); a
    /// Go binary's stamped version, when its recipe stamped one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// An SRI hash; a Go module's go.sum checksum (`h1:…`).
    pub hash: String,
    /// For url and path inputs: `file` (flat hash) or `tree` (NAR hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_of: Option<HashOf>,
    /// The store entry (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<PathBuf>,
    /// Sandbox mode the target was built in (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxMode>,
    /// Executables the recipe ran from this input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// A download: whether this build fetched it or reused an earlier
    /// build's (its `source` is the step's command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<crate::record::FetchOutcome>,
    /// Remote engines that ran the target's tool steps (targets only):
    /// `grpc://host:port (N steps, M from its action cache)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<String>,
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
    #[error("cannot read the build record of {}: {source}", entry.display())]
    BadRecord {
        entry: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hash(#[from] kiln_core::nar::NarError),
    #[error("{} is not in the kiln store {}; name a target, a result link or a store path", path.display(), store.display())]
    NotInStore { path: PathBuf, store: PathBuf },
    #[error(
        "{} leads back to itself through the build records' target inputs; its records are not ones kiln writes (delete the entry and rebuild)",
        .0.display()
    )]
    Cycle(PathBuf),
    #[error(
        "{} was built from input '{input}', the output {dep}, which is no longer in the store; rebuild the target to audit it",
        entry.display()
    )]
    MissingDep {
        entry: PathBuf,
        input: String,
        dep: String,
    },
    #[error("{}: {message}", entry.display())]
    GoBuildInfo { entry: PathBuf, message: String },
    #[error("the audited outputs hold no files, so the provenance would have no subject")]
    NoSubject,
    #[error(
        "no Go binary or base image in the closure of {}: an SBOM lists the Go modules of Go binaries (built by the go recipe), the base images images stand on, and the images holding them",
        targets.join(", ")
    )]
    NoGoBinary { targets: Vec<String> },
}

/// The record of the target output `entry`.
pub fn record_of(store: &Store, entry: &Path) -> Result<BuildRecord, AuditError> {
    record::read(store, entry).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AuditError::NoRecord(entry.to_path_buf()),
        _ => AuditError::BadRecord {
            entry: entry.to_path_buf(),
            source: e,
        },
    })
}

/// The store entry a path names: a store entry, a path inside one, or a
/// link (like `result`) to either.
pub fn entry_of(store: &Store, path: &Path) -> Result<PathBuf, AuditError> {
    match store.entry_containing(path) {
        Ok(Some(entry)) => Ok(entry),
        Ok(None) => Err(AuditError::NotInStore {
            path: path.to_path_buf(),
            store: store.entries_dir(),
        }),
        Err(source) => Err(AuditError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The input closure of the target output `entry`: its recipe, each
/// input (a dependency's closure for `target` inputs), and the Go binaries
/// it holds with the modules linked into them.
///
/// Each output is walked once (a dependency shared by many targets is
/// copied, not walked again), and a record that leads back to an output
/// being walked is an error rather than an endless recursion.
pub fn closure(store: &Store, entry: &Path) -> Result<Node, AuditError> {
    Walk {
        store,
        done: HashMap::new(),
        walking: Vec::new(),
    }
    .closure(entry)
}

/// One audit's walk over the records.
struct Walk<'a> {
    store: &'a Store,
    /// The closures of outputs walked so far.
    done: HashMap<PathBuf, Node>,
    /// The outputs being walked, outermost first.
    walking: Vec<PathBuf>,
}

impl Walk<'_> {
    fn closure(&mut self, entry: &Path) -> Result<Node, AuditError> {
        if let Some(n) = self.done.get(entry) {
            return Ok(n.clone());
        }
        if self.walking.iter().any(|e| e == entry) {
            return Err(AuditError::Cycle(entry.to_path_buf()));
        }
        self.walking.push(entry.to_path_buf());
        let node = self.walk(entry);
        self.walking.pop();
        let node = node?;
        self.done.insert(entry.to_path_buf(), node.clone());
        Ok(node)
    }

    fn walk(&mut self, entry: &Path) -> Result<Node, AuditError> {
        let rec = record_of(self.store, entry)?;
        let mut children = vec![recipe_node(&rec)];
        for input in &rec.inputs {
            let mut node = self.input_node(entry, input)?;
            node.tools = rec
                .tools
                .iter()
                .filter(|t| t.input == input.name)
                .map(|t| t.path.clone())
                .collect();
            children.push(node);
        }
        children.extend(download_nodes(&rec));
        children.extend(go_binary_nodes(entry)?);
        Ok(Node {
            kind: NodeKind::Target,
            name: rec.target.clone(),
            source: rec.target.clone(),
            version: String::new(),
            hash: rec.output_hash.to_sri(),
            hash_of: Some(HashOf::Tree),
            entry: Some(entry.to_path_buf()),
            sandbox: Some(rec.sandbox),
            tools: Vec::new(),
            outcome: None,
            executors: executors(&rec.timing.remote),
            children,
        })
    }

    /// One input of the output `entry`: a dependency's whole closure, or a
    /// leaf (with the files of a directory from the project).
    fn input_node(
        &mut self,
        entry: &Path,
        input: &record::InputRecord,
    ) -> Result<Node, AuditError> {
        let store = self.store;
        Ok(match (input.kind, &input.entry) {
            (InputKind::Target, Some(name)) => {
                let dep = input
                    .entry_in(store)
                    .ok_or_else(|| AuditError::MissingDep {
                        entry: entry.to_path_buf(),
                        input: input.name.clone(),
                        dep: name.clone(),
                    })?;
                let mut n = self.closure(&dep)?;
                n.name = input.name.clone();
                n
            }
            _ => {
                let kind = match input.kind {
                    InputKind::Url => NodeKind::Url,
                    InputKind::Image => NodeKind::Image,
                    _ => NodeKind::Path,
                };
                let mut n = Node::leaf(kind, &input.name, &input.origin, input.hash);
                n.hash_of = Some(input.hash_of);
                n.children = input
                    .files
                    .iter()
                    .filter_map(|f| match &f.kind {
                        EntryKind::File { sha256, .. } => {
                            Some(Node::leaf(NodeKind::File, &f.path, "", *sha256))
                        }
                        EntryKind::Symlink { target } => Some(Node {
                            source: format!("-> {target}"),
                            hash: String::new(),
                            ..Node::leaf(NodeKind::File, &f.path, "", Sha256Hash([0; 32]))
                        }),
                        EntryKind::Directory => None,
                    })
                    .collect();
                n
            }
        })
    }
}

fn recipe_node(rec: &BuildRecord) -> Node {
    let mut n = Node::leaf(NodeKind::Recipe, &rec.recipe.name, "", rec.recipe.hash);
    n.source = if crate::recipes::standard(&rec.recipe.name).is_some() {
        "standard".into()
    } else {
        "custom".into()
    };
    n
}

/// What the target's fixed-output steps fetched, one node per step: its
/// pin (`params.vendor_hash`) as the name, its command as the source, the
/// pinned NAR hash, and whether this build fetched it or reused it.
fn download_nodes(rec: &BuildRecord) -> Vec<Node> {
    rec.execs
        .iter()
        .filter_map(|e| {
            let f = e.fixed_output.as_ref()?;
            let mut n = Node::leaf(NodeKind::Download, &f.pin, &e.argv.join(" "), f.hash);
            n.hash_of = Some(HashOf::Tree);
            n.outcome = Some(f.outcome);
            Some(n)
        })
        .collect()
}

/// The Go binaries in `entry`, each with the modules `go version -m` lists.
fn go_binary_nodes(entry: &Path) -> Result<Vec<Node>, AuditError> {
    let mut nodes = Vec::new();
    let go_err = |message: String| AuditError::GoBuildInfo {
        entry: entry.to_path_buf(),
        message,
    };
    for bin in gomod::read(entry).map_err(go_err)? {
        // The path comes from the output: resolved beneath it, regular files only.
        let root = kiln_core::beneath::Root::open(entry).map_err(|e| go_err(e.to_string()))?;
        let hash = Sha256Hash::of_reader(
            root.open_file(Path::new(&bin.path))
                .map_err(|e| go_err(format!("{}: {e}", bin.path)))?,
        )
        .map_err(|e| go_err(format!("{}: {e}", bin.path)))?;
        let mut n = Node::leaf(NodeKind::GoBinary, &bin.path, &bin.go_version, hash);
        n.version = bin.stamped_version.clone().unwrap_or_default();
        n.children = bin
            .modules
            .iter()
            .map(|m| Node {
                kind: NodeKind::GoModule,
                name: m.path.clone(),
                source: String::new(),
                version: m.version.clone(),
                hash: m.sum.clone(),
                hash_of: None,
                entry: None,
                sandbox: None,
                tools: Vec::new(),
                outcome: None,
                executors: Vec::new(),
                children: Vec::new(),
            })
            .collect();
        nodes.push(n);
    }
    Ok(nodes)
}

/// Where a target's steps ran remotely, one line per engine and instance.
pub fn executors(steps: &[crate::record::RemoteStep]) -> Vec<String> {
    let mut by: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for s in steps {
        let at = if s.placement.instance.is_empty() {
            s.placement.executor.clone()
        } else {
            format!("{} instance {}", s.placement.executor, s.placement.instance)
        };
        let e = by.entry(at).or_default();
        e.0 += 1;
        e.1 += usize::from(s.placement.cached);
    }
    by.into_iter()
        .map(|(at, (n, cached))| {
            format!(
                "{at} ({n} step{}, {cached} from its action cache)",
                if n == 1 { "" } else { "s" }
            )
        })
        .collect()
}

impl Node {
    fn leaf(kind: NodeKind, name: &str, source: &str, hash: Sha256Hash) -> Node {
        Node {
            kind,
            name: name.to_string(),
            source: source.to_string(),
            version: String::new(),
            hash: hash.to_sri(),
            hash_of: None,
            entry: None,
            sandbox: None,
            tools: Vec::new(),
            outcome: None,
            executors: Vec::new(),
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

#[cfg(test)]
mod tests;
