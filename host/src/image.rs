//! Reading images back: what `kiln image inspect` shows (what dive shows,
//! in the terminal) — the config, each layer's digest and size, and the file
//! tree with modes and sizes. Reads a docker-archive tarball or an OCI image
//! layout directory; writes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An image, as `kiln image inspect` reports it.
#[derive(Debug, Serialize)]
pub struct ImageSummary {
    pub repo_tags: Vec<String>,
    pub architecture: String,
    pub os: String,
    pub created: String,
    /// The OCI config's `config` section (Entrypoint, Cmd, Env, …).
    pub config: Value,
    pub layers: Vec<LayerSummary>,
}

#[derive(Debug, Serialize)]
pub struct LayerSummary {
    pub digest: String,
    pub size: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: String,
    /// `drwxr-xr-x`-style.
    pub mode: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Where blobs come from: a layout directory or an archive's members.
enum Blobs {
    Dir(std::path::PathBuf),
    Archive(BTreeMap<String, Vec<u8>>),
}

impl Blobs {
    fn get(&self, name: &str, origin: &str) -> Result<Vec<u8>, ImageError> {
        match self {
            Blobs::Dir(d) => fs::read(d.join(name)).map_err(|source| ImageError::Io {
                path: d.join(name).display().to_string(),
                source,
            }),
            Blobs::Archive(m) => m.get(name).cloned().ok_or_else(|| ImageError::Invalid {
                path: origin.to_string(),
                message: format!("the archive has no {name}"),
            }),
        }
    }
}

/// Read the image at `path`: a docker-archive / OCI-archive tarball, or an OCI layout directory.
pub fn inspect(path: &Path) -> Result<ImageSummary, ImageError> {
    let origin = path.display().to_string();
    let io = |source| ImageError::Io {
        path: origin.clone(),
        source,
    };
    let bad = |message: String| ImageError::Invalid {
        path: origin.clone(),
        message,
    };
    let blobs = if path.is_dir() {
        Blobs::Dir(path.to_path_buf())
    } else {
        let mut members = BTreeMap::new();
        let mut archive = tar::Archive::new(fs::File::open(path).map_err(io)?);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io)?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(io)?;
            members.insert(name, data);
        }
        Blobs::Archive(members)
    };
    let json = |bytes: Vec<u8>, what: &str| -> Result<Value, ImageError> {
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{what} is not valid JSON: {e}")))
    };
    let blob_name = |digest: &str| format!("blobs/{}", digest.replacen(':', "/", 1));

    // docker's manifest.json if there is one (it carries the tags), else the OCI index.
    let docker = match &blobs {
        Blobs::Archive(m) if m.contains_key("manifest.json") => {
            Some(json(blobs.get("manifest.json", &origin)?, "manifest.json")?)
        }
        Blobs::Dir(d) if d.join("manifest.json").is_file() => {
            Some(json(blobs.get("manifest.json", &origin)?, "manifest.json")?)
        }
        _ => None,
    };
    let (config_name, layer_names, repo_tags) = if let Some(d) = docker {
        let first = d
            .get(0)
            .ok_or_else(|| bad("manifest.json lists no image".into()))?;
        let config = first["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json has no Config".into()))?
            .to_string();
        let layers: Vec<String> = first["Layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(String::from))
            .collect();
        let tags = first["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        (config, layers, tags)
    } else {
        let index = json(blobs.get("index.json", &origin)?, "index.json")?;
        let desc = &index["manifests"][0];
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| bad("index.json lists no manifest".into()))?;
        let manifest = json(blobs.get(&blob_name(digest), &origin)?, "the manifest")?;
        let config = blob_name(
            manifest["config"]["digest"]
                .as_str()
                .ok_or_else(|| bad("the manifest has no config".into()))?,
        );
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(&blob_name))
            .collect();
        let tags = desc["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(|t| vec![t.to_string()])
            .unwrap_or_default();
        (config, layers, tags)
    };
    let config = json(blobs.get(&config_name, &origin)?, "the image config")?;
    let mut layers = Vec::new();
    for name in layer_names {
        let bytes = blobs.get(&name, &origin)?;
        let digest = format!(
            "sha256:{}",
            kiln_core::hash::Sha256Hash::of_bytes(&bytes).to_hex()
        );
        layers.push(LayerSummary {
            digest,
            size: bytes.len() as u64,
            files: list_layer(&bytes).map_err(io)?,
        });
    }
    Ok(ImageSummary {
        repo_tags,
        architecture: config["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        os: config["os"].as_str().unwrap_or_default().to_string(),
        created: config["created"].as_str().unwrap_or_default().to_string(),
        config: config["config"].clone(),
        layers,
    })
}

/// The entries of a layer (plain or gzip-compressed tar).
fn list_layer(bytes: &[u8]) -> std::io::Result<Vec<FileEntry>> {
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut out = Vec::new();
    for entry in tar::Archive::new(reader).entries()? {
        let entry = entry?;
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => '-',
        };
        out.push(FileEntry {
            path: format!(
                "/{}",
                entry
                    .path()?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
            ),
            mode: format!("{kind}{}", rwx(h.mode().unwrap_or(0))),
            size: h.size().unwrap_or(0),
            link: entry.link_name()?.map(|l| l.to_string_lossy().into_owned()),
        });
    }
    Ok(out)
}

fn rwx(mode: u32) -> String {
    let mut s = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 1 << (8 - i);
        s.push(if mode & bit != 0 { c } else { '-' });
    }
    if mode & 0o1000 != 0 {
        s.replace_range(8..9, if mode & 1 != 0 { "t" } else { "T" });
    }
    if mode & 0o4000 != 0 {
        s.replace_range(2..3, if mode & 0o100 != 0 { "s" } else { "S" });
    }
    s
}

/// The human-readable report.
pub fn render(s: &ImageSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "image     {}\n",
        if s.repo_tags.is_empty() {
            "(untagged)".to_string()
        } else {
            s.repo_tags.join(", ")
        }
    ));
    out.push_str(&format!(
        "platform  {}/{}\ncreated   {}\n",
        s.os, s.architecture, s.created
    ));
    for (key, label) in [
        ("Entrypoint", "entrypoint"),
        ("Cmd", "cmd"),
        ("Env", "env"),
        ("WorkingDir", "workdir"),
        ("User", "user"),
        ("ExposedPorts", "ports"),
        ("Labels", "labels"),
    ] {
        let v = &s.config[key];
        if !v.is_null() {
            out.push_str(&format!("{label:<9} {v}\n"));
        }
    }
    for (i, l) in s.layers.iter().enumerate() {
        out.push_str(&format!(
            "\nlayer {i}  {}  {} bytes  {} entries\n",
            l.digest,
            l.size,
            l.files.len()
        ));
        for f in &l.files {
            let link = f
                .link
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            out.push_str(&format!("  {} {:>10}  {}{link}\n", f.mode, f.size, f.path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rwx;

    #[test]
    fn modes_print_like_ls() {
        assert_eq!(rwx(0o755), "rwxr-xr-x");
        assert_eq!(rwx(0o1777), "rwxrwxrwt");
        assert_eq!(rwx(0o4755), "rwsr-xr-x");
        assert_eq!(rwx(0o644), "rw-r--r--");
    }
}
