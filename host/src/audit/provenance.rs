//! SLSA provenance v1 in an in-toto Statement v1, from build records.
//!
//! Subjects are the files of each audited output with their sha256;
//! `resolvedDependencies` is every node of the input closures: recipes,
//! URLs, local files, other targets' outputs and Go modules. The build type
//! is documented in `docs/audit.md`.

use std::collections::BTreeSet;

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::{self, EntryKind};
use serde_json::{Value, json};

use super::{AuditError, Node, NodeKind};
use crate::record::{BuildRecord, HashOf};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What `buildDefinition` means; documented in docs/audit.md.
pub const BUILD_TYPE: &str = "https://kiln.dev/provenance/target/v1";
/// Who built: a local kiln, whose word is only as good as the machine's.
pub const BUILDER_ID: &str = "https://kiln.dev/builder/local/v1";

/// One audited output: its closure and its record.
pub struct Root<'a> {
    pub closure: &'a Node,
    pub record: &'a BuildRecord,
}

/// The in-toto Statement for `roots`.
pub fn statement(roots: &[Root<'_>]) -> Result<Value, AuditError> {
    let mut subjects = Vec::new();
    let mut external = Vec::new();
    let mut internal = Vec::new();
    let mut deps = Vec::new();
    let mut seen = BTreeSet::new();
    for r in roots {
        // A closure root is a target, which always has its entry.
        let Some(entry) = r.closure.entry.as_ref() else {
            continue;
        };
        let files = listing::list(entry)?;
        for f in files {
            if let EntryKind::File { sha256, .. } = f.kind {
                let name = if f.path.is_empty() {
                    r.record.target.clone()
                } else {
                    format!("{}/{}", r.record.target, f.path)
                };
                subjects.push(json!({ "name": name, "digest": { "sha256": sha256.to_hex() } }));
            }
        }
        external.push(json!({
            "target": r.record.target,
            "recipe": r.record.recipe.name,
            "params": r.record.params,
        }));
        internal.push(json!({
            "target": r.record.target,
            "buildKey": r.record.key.to_hex(),
            "sandbox": r.record.sandbox,
            "hermetic": r.record.hermetic,
            "sourceDateEpoch": r.record.source_date_epoch,
            "sandboxAbi": kiln_core::key::SANDBOX_ABI,
            // The engines that ran its steps: part of the builder's
            // environment, whose operators decided what the outputs are.
            "remoteExecutors": super::executors(&r.record.timing.remote),
        }));
        dependencies(r.closure, &r.record.target, &mut deps, &mut seen);
    }
    if subjects.is_empty() {
        return Err(AuditError::NoSubject);
    }
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": { "targets": external },
                "internalParameters": { "targets": internal },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": { "kiln": env!("CARGO_PKG_VERSION") },
                },
            },
        },
    }))
}

/// A DigestSet for an SRI `hash` of a file's bytes or of a tree's NAR.
fn digest(hash: &str, tree: bool) -> Value {
    match Sha256Hash::parse(hash) {
        Ok(h) if tree => json!({ "narSha256": h.to_hex() }),
        Ok(h) => json!({ "sha256": h.to_hex() }),
        Err(_) => json!({}),
    }
}

/// `file:` URIs for path inputs: relative to the kiln.toml of the target.
fn file_uri(origin: &str, rel: &str) -> String {
    let base = origin.trim_start_matches("./");
    match (base, rel) {
        ("." | "", "") => "file:.".into(),
        ("." | "", r) => format!("file:{r}"),
        (b, "") => format!("file:{b}"),
        (b, r) => format!("file:{b}/{r}"),
    }
}

/// Push a ResourceDescriptor for every node under `n` (depth first).
fn dependencies(n: &Node, prefix: &str, out: &mut Vec<Value>, seen: &mut BTreeSet<String>) {
    for c in &n.children {
        let name = format!("{prefix}/{}", c.name);
        let rd = match c.kind {
            NodeKind::Recipe => Some(json!({
                "name": format!("{prefix}/recipe"),
                "uri": if c.source == "standard" {
                    format!("kiln:recipe/{}", c.name)
                } else {
                    file_uri(&c.name, "")
                },
                "digest": digest(&c.hash, false),
            })),
            NodeKind::Url => Some(json!({
                "name": name,
                "uri": c.source,
                "digest": digest(&c.hash, is_tree(c)),
            })),
            // The image by its registry digest (what `docker pull` names),
            // and the stored layout by its NAR hash.
            NodeKind::Image => Some(json!({
                "name": name,
                "uri": format!("docker://{}", c.source),
                "digest": {
                    "sha256": c.source.rsplit_once("@sha256:").map(|(_, h)| h).unwrap_or_default(),
                    "narSha256": Sha256Hash::parse(&c.hash).map(|h| h.to_hex()).unwrap_or_default(),
                },
            })),
            NodeKind::Path => Some(json!({
                "name": name,
                "uri": file_uri(&c.source, ""),
                "digest": digest(&c.hash, is_tree(c)),
            })),
            // Named with the input it belongs to (`app/proxy/…`).
            NodeKind::File if !c.hash.is_empty() => Some(json!({
                "name": format!("{prefix}/{}/{}", n.name, c.name),
                "uri": file_uri(&n.source, &c.name),
                "digest": digest(&c.hash, false),
            })),
            NodeKind::Target => Some(json!({
                "name": name,
                "uri": format!("kiln:target/{}", c.source),
                "digest": digest(&c.hash, true),
            })),
            // Pinned by hash in kiln.toml, whoever fetched it.
            NodeKind::Download => Some(json!({
                "name": format!("{prefix}/download {}", c.name),
                "uri": format!("kiln:fixed-output/{}", c.name),
                "digest": digest(&c.hash, true),
            })),
            NodeKind::GoModule => {
                let uri = super::gomod::purl(&c.name, &c.version);
                let mut rd = json!({ "name": format!("go module {}", c.name), "uri": uri });
                if let Some(hex) = dir_hash_hex(&c.hash) {
                    rd["digest"] = json!({ "dirHash": hex });
                }
                Some(rd)
            }
            _ => None,
        };
        if let Some(rd) = rd
            && seen.insert(rd.to_string())
        {
            out.push(rd);
        }
        let deeper = if c.kind == NodeKind::Target {
            name
        } else {
            prefix.to_string()
        };
        dependencies(c, &deeper, out, seen);
    }
}

/// Whether a url/path node's hash is of a tree (its record said so).
fn is_tree(n: &Node) -> bool {
    n.hash_of != Some(HashOf::File)
}

/// Go's `h1:<base64>` as the lowercase hex in-toto's `dirHash` wants.
pub fn dir_hash_hex(sum: &str) -> Option<String> {
    let b64 = sum.strip_prefix("h1:")?;
    let bytes = data_encoding::BASE64.decode(b64.as_bytes()).ok()?;
    Some(data_encoding::HEXLOWER.encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_sums_become_dir_hashes_and_paths_file_uris() {
        assert_eq!(
            dir_hash_hex("h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(dir_hash_hex(""), None);
        assert_eq!(file_uri(".", "hello.go"), "file:hello.go");
        assert_eq!(file_uri("src", "a/b.go"), "file:src/a/b.go");
        assert_eq!(file_uri("./src", ""), "file:src");
    }
}
