//! `base`: an image input (an OCI layout kiln pulled by digest) that the
//! built image stacks on. Its layers come first, unchanged — the same
//! blobs and digests, so a registry that has them keeps them and a push
//! sends only kiln's — and its config is the starting point: env, user,
//! working directory, entrypoint and cmd carry over unless params set
//! them; history and diff_ids grow by kiln's layers.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_sdk::platform::Platform;
use kiln_sdk::{Context, Error, Result};
use serde_json::Value;

use crate::layer::{Node, Tree};

/// One platform's image of the base.
pub struct Base {
    /// The layers, as (OCI media type, hex digest, size), bottom first.
    pub layers: Vec<(String, String, u64)>,
    /// Where each layer's bytes are (the input's blob files), by hex digest.
    pub blob_dir: PathBuf,
    /// The config's `config` object (env, user, entrypoint, …).
    pub config: Value,
    pub diff_ids: Vec<String>,
    pub history: Vec<Value>,
    /// How messages name it: the input's name.
    pub reference: String,
}

/// The JSON blob `digest` names, checked against it.
fn read_verified(blob_dir: &Path, digest: &str) -> Result<Value> {
    use sha2::Digest;
    let hex = hex_of(digest)?;
    let path = blob_dir.join(hex);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let got: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != hex {
        return Err(Error::msg(format!(
            "{digest} holds other bytes (sha256:{got}); it is not the image it names"
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// A `sha256:…` digest's hex part, checked (it names a file).
fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(h),
        _ => Err(Error::msg(format!("{digest:?} is not a sha256 digest"))),
    }
}

/// The base in input `input` (an OCI layout), for `platform`.
pub fn load(input: &str, platform: &Platform) -> Result<Base> {
    let root = kiln_sdk::input(input)?;
    let index = read_json(&root.join("index.json")).with_context(|| {
        format!("params.base: input '{input}' is not an image (no OCI layout index.json); give it as image = \"REGISTRY/REPO@sha256:…\"")
    })?;
    let blob_dir = root.join("blobs/sha256");
    let top = &index["manifests"][0];
    let reference = format!("'{input}'");
    let mut manifest = read_verified(&blob_dir, top["digest"].as_str().unwrap_or(""))?;
    if manifest.get("manifests").is_some() {
        // An index: this platform's manifest.
        let want_variant = platform.variant.as_deref();
        let chosen = manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| {
                let p = &m["platform"];
                p["os"].as_str() == Some(platform.os.as_str())
                    && p["architecture"].as_str() == Some(platform.arch.as_str())
                    && want_variant.is_none_or(|v| p["variant"].as_str() == Some(v))
            })
            .ok_or_else(|| {
                Error::msg(format!(
                    "the base {reference} has no {platform} image; pick a base built for it"
                ))
            })?;
        let hex = hex_of(chosen["digest"].as_str().unwrap_or(""))?.to_string();
        manifest = read_verified(&blob_dir, &format!("sha256:{hex}")).with_context(|| {
            format!("the base's {platform} manifest was not pulled (kiln pulls the platforms params.platforms names)")
        })?;
    }
    let config = read_verified(
        &blob_dir,
        manifest["config"]["digest"].as_str().unwrap_or(""),
    )?;
    if config["os"].as_str() != Some(platform.os.as_str())
        || config["architecture"].as_str() != Some(platform.arch.as_str())
    {
        return Err(Error::msg(format!(
            "the base {reference} is an image for {}/{}, not {platform}",
            config["os"].as_str().unwrap_or("?"),
            config["architecture"].as_str().unwrap_or("?")
        )));
    }
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let hex = hex_of(l["digest"].as_str().unwrap_or(""))?.to_string();
        let size = l["size"].as_u64().unwrap_or(0);
        // Docker's gzip layer type is OCI's tar+gzip: the same bytes.
        let media_type = match l["mediaType"].as_str().unwrap_or("") {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.v1.tar+gzip".to_string()
            }
            t => t.to_string(),
        };
        // Each layer is what its digest says (kiln pulled it so; an input
        // that merely looks like a layout is checked here), hashed by the
        // host without passing through the recipe.
        let mut pieces = kiln_sdk::assemble::Pieces::new();
        pieces.range(blob_dir.join(&hex), 0, size);
        let (digest, got_size) = pieces
            .sha256()
            .with_context(|| format!("reading the base's layer {hex}"))?;
        let got: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if got != hex || got_size != size {
            return Err(Error::msg(format!(
                "the base {reference}'s layer sha256:{hex} holds other bytes ({size} bytes expected); it is not the image it names"
            )));
        }
        layers.push((media_type, hex, size));
    }
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect::<Vec<_>>();
    if diff_ids.len() != layers.len() {
        return Err(Error::msg(format!(
            "the base {reference} lists {} layers but {} diff_ids; it is not a well-formed image",
            layers.len(),
            diff_ids.len()
        )));
    }
    Ok(Base {
        layers,
        blob_dir,
        config: config["config"].clone(),
        diff_ids,
        history: config["history"].as_array().cloned().unwrap_or_default(),
        reference,
    })
}

/// The base's file tree, layer by layer with whiteouts applied (OCI image
/// spec, "Whiteouts"): enough for the run check to follow symlinks and find
/// a loader or interpreter the base carries. Files read from it have no
/// readable source (`src` empty): only their mode is known. zstd layers
/// are not read (`None`: the check then trusts the base).
pub fn listing(b: &Base) -> Result<Option<Tree>> {
    let mut tree = Tree::new();
    for (media_type, hex, _) in &b.layers {
        let file = fs::File::open(b.blob_dir.join(hex))
            .with_context(|| format!("reading the base's layer {hex}"))?;
        let reader: Box<dyn std::io::Read> = match media_type.as_str() {
            "application/vnd.oci.image.layer.v1.tar" => Box::new(file),
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                Box::new(flate2::read::GzDecoder::new(file))
            }
            _ => return Ok(None),
        };
        let mut archive = tar::Archive::new(reader);
        let mut this: Vec<(String, Node)> = Vec::new();
        for entry in archive
            .entries()
            .with_context(|| format!("reading the base's layer {hex}"))?
        {
            let entry = entry.with_context(|| format!("reading the base's layer {hex}"))?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./").trim_matches('/').to_string();
            if path.is_empty() || path.split('/').any(|c| c == "..") {
                continue;
            }
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            // Whiteouts hide what lower layers put there.
            if name == ".wh..wh..opq" {
                remove_below(&mut tree, &dir, false);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                remove_below(&mut tree, &gone, true);
                continue;
            }
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            let node = match header.entry_type() {
                tar::EntryType::Directory => Node::Dir { mode },
                tar::EntryType::Symlink => Node::Symlink {
                    target: entry
                        .link_name()?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                },
                // A hard link is the file it names.
                _ => Node::File {
                    src: PathBuf::new(),
                    mode,
                    size: header.size().unwrap_or(0),
                },
            };
            this.push((path, node));
            if tree.len() + this.len() > MAX_ENTRIES {
                return Err(Error::msg(format!(
                    "the base has more than {MAX_ENTRIES} files; too many to check the entrypoint against"
                )));
            }
        }
        for (path, node) in this {
            // A file or link where a lower layer had a directory replaces
            // the directory and all it held.
            if !matches!(node, Node::Dir { .. }) {
                remove_below(&mut tree, &path, false);
            }
            tree.insert(path, node);
        }
    }
    Ok(Some(tree))
}

/// The most entries a base's listing may hold (the recipe's memory).
const MAX_ENTRIES: usize = 2_000_000;

/// Remove everything below `dir` ("" is the root), and `dir` itself when
/// `itself`.
fn remove_below(tree: &mut Tree, dir: &str, itself: bool) {
    if itself {
        tree.remove(dir);
    }
    if dir.is_empty() {
        tree.clear();
        return;
    }
    let prefix = format!("{dir}/");
    let doomed: Vec<String> = tree
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

/// The base's config with params on top: `overrides` is the config kiln
/// would write without a base (its `config` object), `set` says which of
/// entrypoint and cmd params gave.
pub fn merge_config(base: &Value, ours: &Value, entrypoint_set: bool, cmd_set: bool) -> Value {
    let mut out = base.as_object().cloned().unwrap_or_default();
    // Env: the base's, with params' variables replacing those of the same name.
    let mut env: Vec<String> = base["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    for e in ours["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
    {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.to_string());
    }
    if !env.is_empty() {
        out.insert("Env".into(), Value::from(env));
    }
    // As docker does: a new entrypoint drops the base's cmd unless cmd is given too.
    if entrypoint_set {
        out.insert("Entrypoint".into(), ours["Entrypoint"].clone());
        if !cmd_set {
            out.remove("Cmd");
        }
    }
    if cmd_set {
        out.insert("Cmd".into(), ours["Cmd"].clone());
    }
    for key in ["WorkingDir", "User"] {
        if let Some(v) = ours.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    for key in ["ExposedPorts", "Labels"] {
        if let Some(add) = ours.get(key).and_then(Value::as_object) {
            let mut merged = out
                .get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            merged.extend(add.clone());
            out.insert(key.into(), Value::Object(merged));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_override_the_bases_config_as_docker_does() {
        let base = serde_json::json!({
            "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "User": "65532",
            "Cmd": ["/bin/sh"],
            "Labels": {"a": "1"},
        });
        let ours = serde_json::json!({
            "Env": ["PATH=/app:/usr/bin"],
            "Entrypoint": ["/app/server"],
            "Labels": {"b": "2"},
        });
        let m = merge_config(&base, &ours, true, false);
        assert_eq!(
            m["Env"],
            serde_json::json!([
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "PATH=/app:/usr/bin"
            ])
        );
        assert_eq!(m["User"], "65532");
        assert_eq!(m["Entrypoint"], serde_json::json!(["/app/server"]));
        assert!(
            m.get("Cmd").is_none(),
            "a new entrypoint drops the base's cmd"
        );
        assert_eq!(m["Labels"], serde_json::json!({"a": "1", "b": "2"}));
        // Nothing set: the base's own.
        let m = merge_config(&base, &serde_json::json!({}), false, false);
        assert_eq!(m["Cmd"], serde_json::json!(["/bin/sh"]));
    }
}
