//! SPDX 2.3 JSON SBOMs for outputs holding Go binaries (directly, like a go
//! target, or through their inputs, like an image of one).
//!
//! Packages: one per audited output, one per Go binary in its closure, one
//! per Go module (`go version -m`) with its version, purl and go.sum
//! checksum, one per base image (an `image` input) with its OCI purl and
//! digest, the output a DESCENDANT_OF it. As syft does, a module's SHA256 checksum is its go.sum `h1:`
//! digest in hex (the sha256 of Go's dirhash summary of the module).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::provenance::{Root, dir_hash_hex};
use super::{AuditError, Node, NodeKind};
use kiln_core::hash::Sha256Hash;

/// The SPDX document for `roots`, or an error naming the roots that hold no
/// Go binaries (an SBOM here lists Go modules and nothing else).
pub fn document(roots: &[Root<'_>]) -> Result<Value, AuditError> {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let mut modules: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut binaries = 0;
    for (i, r) in roots.iter().enumerate() {
        let root_id = format!("SPDXRef-Output-{}", spdx_id_part(&r.record.target));
        packages.push(json!({
            "SPDXID": root_id,
            "name": r.record.target,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "comment": format!("kiln target output, NAR hash {}", r.record.output_hash),
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": root_id,
        }));
        let mut bases = Vec::new();
        base_images(r.closure, &mut bases);
        for (j, base) in bases.iter().enumerate() {
            binaries += 1;
            let id = format!("SPDXRef-BaseImage-{i}-{j}");
            packages.push(base_package(&id, base));
            relationships.push(json!({
                "spdxElementId": root_id,
                "relationshipType": "DESCENDANT_OF",
                "relatedSpdxElement": id,
            }));
        }
        let mut bins = Vec::new();
        go_binaries(r.closure, "", &mut bins);
        for (j, (path, bin)) in bins.iter().enumerate() {
            binaries += 1;
            let bin_id = format!("SPDXRef-GoBinary-{i}-{j}");
            packages.push(binary_package(&bin_id, path, bin));
            relationships.push(json!({
                "spdxElementId": root_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": bin_id,
            }));
            // The standard library it was built with, as vulnerability
            // scanners (govulncheck, grype, trivy) look for it.
            let n = modules.len();
            let std_id = modules
                .entry(("stdlib".to_string(), bin.source.clone()))
                .or_insert_with(|| {
                    let id = format!("SPDXRef-GoModule-{n}");
                    packages.push(stdlib_package(&id, &bin.source));
                    id
                })
                .clone();
            relationships.push(json!({
                "spdxElementId": bin_id,
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": std_id,
            }));
            for m in &bin.children {
                let n = modules.len();
                let id = modules
                    .entry((m.name.clone(), m.version.clone()))
                    .or_insert_with(|| {
                        let id = format!("SPDXRef-GoModule-{n}");
                        packages.push(module_package(&id, m));
                        id
                    })
                    .clone();
                relationships.push(json!({
                    "spdxElementId": bin_id,
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": id,
                }));
            }
        }
    }
    if binaries == 0 {
        return Err(AuditError::NoGoBinary {
            targets: roots.iter().map(|r| r.record.target.clone()).collect(),
        });
    }
    let first = roots[0].record;
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": roots.iter().map(|r| r.record.target.as_str()).collect::<Vec<_>>().join("+"),
        "documentNamespace": format!(
            "https://kiln.dev/spdx/{}-{}",
            spdx_id_part(&first.target),
            first.output_hash.to_hex()
        ),
        "creationInfo": {
            "created": humantime::format_rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(first.source_date_epoch)
            ).to_string(),
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    }))
}

/// A Go binary as an SPDX package: its main module's version and its sha256.
fn binary_package(id: &str, path: &str, bin: &Node) -> Value {
    let mut pkg = json!({
        "SPDXID": id,
        "name": path,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "APPLICATION",
        "comment": format!("Go binary built with {}", bin.source),
    });
    // The version it was stamped with, else its main module's.
    if !bin.version.is_empty() {
        pkg["versionInfo"] = json!(bin.version);
    } else if let Some(main) = bin.children.iter().find(|m| m.hash.is_empty()) {
        pkg["versionInfo"] = json!(main.version);
    }
    if let Ok(h) = Sha256Hash::parse(&bin.hash) {
        pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": h.to_hex() }]);
    }
    pkg
}

/// Go's standard library at `go_version` (`go1.27.3`), named as syft,
/// grype and the Go vulnerability database name it: `stdlib`, with the
/// version as Go writes it (`pkg:golang/stdlib@go1.27.3`).
fn stdlib_package(id: &str, go_version: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": "stdlib",
        "versionInfo": go_version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "comment": "the Go standard library compiled into the binary",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:golang/stdlib@{go_version}"),
        }],
    })
}

fn module_package(id: &str, m: &Node) -> Value {
    let purl = super::gomod::purl(&m.name, &m.version);
    let mut pkg = json!({
        "SPDXID": id,
        "name": m.name,
        "versionInfo": m.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    });
    if let Some(hex) = dir_hash_hex(&m.hash) {
        pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex }]);
        pkg["comment"] = json!(format!("go.sum checksum {}", m.hash));
    } else {
        pkg["comment"] = json!("the main module, built from local source");
    }
    pkg
}

/// A base image as an SPDX package: its reference, its registry digest, an
/// OCI purl (`pkg:oci/NAME@sha256%3AHEX?repository_url=REGISTRY/REPO`).
fn base_package(id: &str, n: &Node) -> Value {
    let (name, hex) = n.source.rsplit_once("@sha256:").unwrap_or((&n.source, ""));
    let repo = name
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(name, |(r, _)| r);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    json!({
        "SPDXID": id,
        "name": n.source,
        "versionInfo": format!("sha256:{hex}"),
        "downloadLocation": format!("docker://{}", n.source),
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": hex }],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{last}@sha256%3A{hex}?repository_url={repo}"),
        }],
        "comment": format!("base image (input '{}'), stored as an OCI layout with NAR hash {}", n.name, n.hash),
    })
}

/// The `image` inputs of the output `n` itself (an image a dependency
/// used is that dependency's business, not this output's ancestry).
fn base_images<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    out.extend(n.children.iter().filter(|c| c.kind == NodeKind::Image));
}

/// Every `go-binary` node under `n`, with its path from `n`'s output.
fn go_binaries<'a>(n: &'a Node, prefix: &str, out: &mut Vec<(String, &'a Node)>) {
    for c in &n.children {
        match c.kind {
            NodeKind::GoBinary => out.push((format!("{prefix}{}", c.name), c)),
            NodeKind::Target => go_binaries(c, &format!("{prefix}{}:", c.name), out),
            _ => {}
        }
    }
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
