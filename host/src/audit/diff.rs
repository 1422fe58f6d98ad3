//! What changed between two builds' input closures.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Node, NodeKind};

/// How one node differs between two closures.
/// How a node differs: in `b` only, in `a` only, or in both with another
/// hash or source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    /// The word printed and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub change: Change,
    /// Names from the root: `input hello > src > hello.go`.
    pub path: String,
    pub kind: NodeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Version>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub source: String,
    /// A Go module's (or a stamped binary's) version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub hash: String,
}

/// What changed from closure `a` to closure `b`: the outputs themselves,
/// then every node added, removed or changed (hash, source or version),
/// in `b`'s order.
pub fn diff(a: &Node, b: &Node) -> Vec<Difference> {
    let version = |n: &Node| Version {
        source: n.source.clone(),
        version: n.version.clone(),
        hash: n.hash.clone(),
    };
    let mut out = Vec::new();
    if a.hash != b.hash {
        out.push(Difference {
            change: Change::Changed,
            path: "output".into(),
            kind: NodeKind::Target,
            old: Some(version(a)),
            new: Some(version(b)),
        });
    }
    let old: BTreeMap<String, &Node> = a.descendants().into_iter().collect();
    let new = b.descendants();
    for (path, n) in &new {
        match old.get(path) {
            None => out.push(Difference {
                change: Change::Added,
                path: path.clone(),
                kind: n.kind,
                old: None,
                new: Some(version(n)),
            }),
            Some(o) if o.hash != n.hash || o.source != n.source || o.version != n.version => out
                .push(Difference {
                    change: Change::Changed,
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
                change: Change::Removed,
                path: path.clone(),
                kind: o.kind,
                old: Some(version(o)),
                new: None,
            });
        }
    }
    out
}
