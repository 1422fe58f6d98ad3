//! The `go` recipe's params, as written in kiln.toml's `params` table.

use std::collections::BTreeMap;

use kiln_sdk::platform::Platform;
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
    /// The version to stamp (`v1.2.3`): set with `-X` in each of
    /// `version_vars` and recorded in `share/kiln/go/version`.
    #[serde(default)]
    pub version: Option<String>,
    /// The string variables `version` is written to (`-X VAR=VERSION`);
    /// one the program does not have is ignored, as the linker does.
    #[serde(default = "version_vars")]
    pub version_vars: Vec<String>,
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
    /// Platforms to cross-compile for, `os/arch[/variant]` (`linux/arm64`,
    /// `linux/arm/v7`); each goes to `/out/<os>-<arch>[-<variant>]/bin/`.
    /// Unset: the toolchain's own platform, in `/out/bin/`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The input holding the Go toolchain.
    #[serde(default = "go_input")]
    pub go: String,
    /// The input holding the module's source.
    #[serde(default = "src_input")]
    pub src: String,
}

impl Params {
    /// `-tags=a,b` for a go command, when there are tags.
    pub fn tags_flag(&self) -> Option<String> {
        (!self.tags.is_empty()).then(|| format!("-tags={}", self.tags.join(",")))
    }
}

fn version_vars() -> Vec<String> {
    vec!["main.version".into()]
}

/// A `params.version_vars` entry checked: a Go string variable's full
/// name (`main.version`, `example.com/cli/cmd.Version`), which goes into
/// `-ldflags` where a space or quote would split or break it.
pub fn check_version_var(v: &str) -> Result<(), String> {
    let (pkg, name) = v.rsplit_once('.').unwrap_or(("", v));
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let path_ok = !pkg.is_empty()
        && !pkg.starts_with('-')
        && pkg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/~".contains(&b));
    if path_ok && ident(name) {
        Ok(())
    } else {
        Err(format!(
            "params.version_vars: {v:?} is not a Go variable's full name (IMPORT_PATH.NAME, e.g. \"main.version\")"
        ))
    }
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

/// A platform of `params.platforms`, with the variants Go knows checked.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    let p = Platform::parse(s).map_err(|e| format!("params.platforms: {e}"))?;
    if let Some(v) = &p.variant {
        let known = match p.arch.as_str() {
            "arm" => ["v5", "v6", "v7"].contains(&v.as_str()),
            "amd64" => ["v1", "v2", "v3", "v4"].contains(&v.as_str()),
            _ => false,
        };
        if !known {
            return Err(format!(
                "params.platforms: {s:?}: variant {v:?} is not one Go knows for {} (arm: v5-v7, amd64: v1-v4)",
                p.arch
            ));
        }
    }
    Ok(p)
}

/// GOOS, GOARCH and the variant's GOARM / GOAMD64 for `p`.
pub fn go_env(p: &Platform) -> Vec<(String, String)> {
    let mut env = vec![
        ("GOOS".to_string(), p.os.clone()),
        ("GOARCH".to_string(), p.arch.clone()),
    ];
    match (p.arch.as_str(), &p.variant) {
        ("arm", Some(v)) => env.push(("GOARM".into(), v.trim_start_matches('v').into())),
        ("amd64", Some(v)) => env.push(("GOAMD64".into(), v.clone())),
        _ => {}
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_give_go_env_and_unknown_variants_are_refused() {
        let p = parse_platform("linux/arm/v7").unwrap_or_else(|e| panic!("{e}"));
        assert!(go_env(&p).contains(&("GOARM".into(), "7".into())));
        assert!(parse_platform("linux/arm64/v9").is_err());
        assert!(parse_platform("linux").is_err());
    }

    #[test]
    fn version_variables_are_checked_before_they_reach_ldflags() {
        for ok in [
            "main.version",
            "example.com/cli/cmd.Version",
            "github.com/x/y/v2/internal/build.ver_2",
        ] {
            assert!(check_version_var(ok).is_ok(), "{ok}");
        }
        for bad in [
            "version", "main.", "main.a b", "-X.v", "main.v=1", "a'b.c", ".v",
        ] {
            assert!(check_version_var(bad).is_err(), "{bad:?}");
        }
    }
}
