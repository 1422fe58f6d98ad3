//! The `go` recipe's params, as written in kiln.toml's `params` table.

use std::collections::BTreeMap;

use serde::Deserialize;

/// See docs/recipes/go.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Main packages to build (import paths or `./cmd/x` patterns);
    /// default: every package named `main` in the module.
    #[serde(default)]
    pub packages: Option<Vec<String>>,
    /// Extra linker flags; `-buildid=` is always set.
    #[serde(default)]
    pub ldflags: Vec<String>,
    /// Build tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// cgo (default off, so binaries are static).
    #[serde(default)]
    pub cgo: bool,
    /// `-trimpath` (default on).
    #[serde(default = "yes")]
    pub trimpath: bool,
    /// Extra environment variables for every go command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The module's directory inside the source input.
    #[serde(default = "dot")]
    pub mod_root: String,
    /// Run `go test ./...` before building (default on).
    #[serde(default = "yes")]
    pub check: bool,
    /// Keep Go's build cache between builds of this target (default on),
    /// so a rebuild compiles only what changed and reuses test results.
    #[serde(default = "yes")]
    pub cache: bool,
    /// The hash of the module download (`go mod download`'s cache), for
    /// modules without `vendor/`.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted here so kiln.toml may set it; the host reads the pin itself"
    )]
    pub vendor_hash: Option<String>,
    /// The GOPROXY the download step uses (default https://proxy.golang.org).
    #[serde(default)]
    pub goproxy: Option<String>,
    /// The input holding the Go toolchain.
    #[serde(default = "go_input")]
    pub go: String,
    /// The input holding the module's source.
    #[serde(default = "src_input")]
    pub src: String,
}

fn yes() -> bool {
    true
}

fn dot() -> String {
    ".".into()
}

fn go_input() -> String {
    "go".into()
}

fn src_input() -> String {
    "src".into()
}
