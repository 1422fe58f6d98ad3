//! `kiln run`: one recipe with inputs and params from the command line, no
//! kiln.toml. The arguments become a one-target manifest that the normal
//! build path runs (same hashing, sandbox, store and record); the paths
//! named on the command line are the user's to grant, so they are allowed
//! however far outside the current directory they are.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::manifest::parse_manifest;

use super::build::{BuildHow, build_targets};
use crate::cli::args::RunArgs;

pub(super) fn run(a: RunArgs, quiet: bool) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let recipe = absolute(&cwd, &a.recipe);
    if !recipe.is_file() {
        bail!("recipe {} is not a file", a.recipe.display());
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => target_name(&recipe),
    };
    let params = read_params(&a.params)?;

    let mut target = toml::Table::new();
    target.insert("recipe".into(), path_table(&recipe));
    let mut inputs = toml::Table::new();
    let mut allowed = vec![recipe.clone()];
    for spec in &a.inputs {
        let (input, path) = spec
            .split_once('=')
            .with_context(|| format!("--input {spec:?}: write NAME=PATH, e.g. src=./src"))?;
        let path = absolute(&cwd, Path::new(path));
        if inputs
            .insert(input.to_string(), path_table(&path))
            .is_some()
        {
            bail!("--input {input} is given twice");
        }
        allowed.push(path);
    }
    target.insert("inputs".into(), toml::Value::Table(inputs));
    target.insert("params".into(), params);
    let mut targets = toml::Table::new();
    targets.insert(name.clone(), toml::Value::Table(target));
    let mut doc = toml::Table::new();
    doc.insert("target".into(), toml::Value::Table(targets));
    let text = toml::to_string(&doc).context("writing the recipe's arguments as a manifest")?;

    // The manifest lives in the current directory (links and messages are
    // relative to it); its file name says where it came from.
    let manifest = parse_manifest(&cwd.join("(kiln run arguments)"), &text)?;
    // Inputs come from the command line; the user config still applies.
    let no_fetch = crate::cli::args::FetchArgs::default();
    let how = BuildHow {
        flags: &a.flags,
        allow_paths: &allowed,
        fetch: &no_fetch,
        locked: false,
        push: false,
    };
    build_targets(&manifest, &[name], &how, quiet)
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

fn path_table(p: &Path) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("path".into(), toml::Value::String(p.display().to_string()));
    toml::Value::Table(t)
}

/// The recipe file's stem as a target name.
fn target_name(recipe: &Path) -> String {
    let stem = recipe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    super::scaffold::target_name_from(&stem, "run")
}

/// `--params`: a JSON object, inline or `@FILE`, as a TOML table.
fn read_params(arg: &str) -> anyhow::Result<toml::Value> {
    let (text, from) = match arg.strip_prefix('@') {
        Some(file) => (
            kiln_core::sidefile::read_to_string(
                std::path::Path::new(file),
                kiln_core::sidefile::Links::Follow,
                kiln_core::sidefile::limits::TEXT,
            )
            .with_context(|| format!("reading --params @{file}"))?,
            format!("--params @{file}"),
        ),
        None => (arg.to_string(), "--params".to_string()),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{from} is not JSON"))?;
    if !json.is_object() {
        bail!("{from} must be a JSON object, like {{\"greeting\": \"Hello\"}}");
    }
    toml::Value::try_from(json)
        .with_context(|| format!("{from}: a value kiln.toml cannot hold (null?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_names_are_checked() {
        assert!(read_params(r#"{"a": {"b": [1, 2]}}"#).is_ok());
        let e = read_params("[1]").unwrap_err().to_string();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e = format!("{:#}", read_params(r#"{"a": null}"#).unwrap_err());
        assert!(e.contains("cannot hold"), "{e}");
        assert_eq!(target_name(Path::new("/x/my_recipe.wasm")), "my_recipe");
        assert_eq!(target_name(Path::new("/x/rust_out.wasm")), "rust_out");
        assert_eq!(target_name(Path::new("/x/a b.wasm")), "a-b");
    }
}
