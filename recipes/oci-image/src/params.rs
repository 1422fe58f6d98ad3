//! The `oci-image` recipe's params (docs/recipes/oci-image.md).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Repository name, e.g. `hello`.
    pub name: String,
    /// Tag; default: derived from the image's content (its config digest).
    #[serde(default)]
    pub tag: Option<String>,
    /// What goes where.
    #[serde(default)]
    pub contents: Vec<Content>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `KEY=value` strings, or a table.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// e.g. `["8080/tcp"]`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `single` (default): one layer; `per-content`: one layer per content
    /// item (plus one for `directories`), so unchanged items are reused.
    #[serde(default)]
    pub layers: LayerMode,
    /// Extra empty directories, e.g. `{ path = "/tmp", mode = "1777" }`.
    #[serde(default)]
    pub directories: Vec<Directory>,
    /// An input holding a CA bundle (a file, or a directory with one at
    /// `path`), installed as /etc/ssl/certs/ca-certificates.crt.
    #[serde(default)]
    pub ca_certificates: Option<Source>,
    /// An input holding a zoneinfo tree, installed as /usr/share/zoneinfo.
    #[serde(default)]
    pub tzdata: Option<Source>,
    /// The architecture of a single-platform image.
    #[serde(default = "amd64")]
    pub architecture: String,
    /// Build one image per platform (`os/arch[/variant]`) and an OCI image
    /// index over them in `/out/oci`; `{platform}` in a content's `path`
    /// becomes the platform's directory (`linux-arm64`, as the go recipe's
    /// `platforms` lays out its output). `/out/image.tar` holds linux/amd64
    /// if it is listed, else the first.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// An image input to stack on (`inputs.base = { image = "…@sha256:…" }`):
    /// its layers first, its config the starting point.
    #[serde(default)]
    pub base: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum LayerMode {
    #[default]
    Single,
    PerContent,
}

/// One item of `contents`: `/inputs/<from>/<path>` goes to `dest`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// The input (a path, url or another target's output).
    pub from: String,
    /// A file or directory inside it; empty: the whole input.
    #[serde(default)]
    pub path: String,
    /// Where it goes in the image (absolute).
    pub dest: String,
    /// Octal mode for files (e.g. "0755"); default: 0755 if executable, else 0644.
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub path: String,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub input: String,
    #[serde(default)]
    pub path: String,
}

fn amd64() -> String {
    "amd64".into()
}

/// Parse an octal mode string like "0755" or "1777".
pub fn parse_mode(s: &str, what: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{what}: mode {s:?} is not an octal mode like \"0755\""))
}
