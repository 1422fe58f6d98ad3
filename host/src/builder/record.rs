//! Build records: what went into a store entry, kept beside it in
//! `$KILN_HOME/records/<entry>.json`.
//!
//! Everything but the `timing` section is a function of the build's inputs,
//! so two identical builds write identical records (minus `timing`). No
//! absolute host path appears: path inputs are named relative to kiln.toml.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::{self, FileEntry};
use kiln_core::manifest::Target;
use kiln_core::nar::NarError;
use kiln_core::store::Store;
use serde::{Deserialize, Serialize};

use super::{BuildOptions, ResolvedInput};
use crate::runtime::{ExecRecord, LogLine, RunReport};
use crate::sandbox::SandboxMode;

/// The record of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub kiln_version: String,
    pub target: String,
    /// The build key: what names this output in the cache.
    #[serde(default = "no_hash")]
    pub key: Sha256Hash,
    /// The time recipes and tools saw.
    #[serde(default)]
    pub source_date_epoch: u64,
    pub recipe: RecipeRecord,
    pub params: serde_json::Value,
    pub inputs: Vec<InputRecord>,
    /// The executables the recipe ran, with the hash of the input holding each.
    pub tools: Vec<ToolRecord>,
    pub execs: Vec<ExecRecord>,
    /// `hermetic`, or `off` when built with `--sandbox=off`.
    pub sandbox: String,
    pub hermetic: bool,
    pub output_hash: Sha256Hash,
    pub log: Vec<LogLine>,
    /// The only part that differs between two identical builds.
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRecord {
    /// A standard recipe's name, or the custom recipe's path.
    pub name: String,
    pub hash: Sha256Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub name: String,
    /// `path`, `url` or `target`.
    pub kind: String,
    /// A path relative to kiln.toml, a URL, or a target name.
    pub origin: String,
    pub hash: Sha256Hash,
    /// `file` (the flat sha256 of its bytes) or `tree` (the NAR hash of a
    /// directory), as `nix hash file` / `nix hash path` compute them.
    #[serde(default = "tree")]
    pub hash_of: String,
    /// For `target` inputs: the dependency's store entry name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// For `path` inputs that are directories: every file, with its hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

fn no_hash() -> Sha256Hash {
    Sha256Hash([0; 32])
}

fn tree() -> String {
    "tree".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// `/inputs/<input>/<path>`, as the sandbox ran it.
    pub path: String,
    pub input: String,
    pub input_hash: Sha256Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub build_ms: u64,
    pub exec_ms: Vec<u64>,
}

impl BuildRecord {
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, each argument a distinct part of the record"
    )]
    pub fn new(
        store: &Store,
        t: &Target,
        recipe_name: &str,
        recipe_hash: Sha256Hash,
        key: Sha256Hash,
        inputs: &[ResolvedInput],
        report: &RunReport,
        opts: &BuildOptions,
        output_hash: Sha256Hash,
        elapsed: Duration,
    ) -> Result<Self, NarError> {
        let sandbox = opts.sandbox;
        let mut tools: Vec<ToolRecord> = Vec::new();
        for e in &report.execs {
            let Some(program) = e.argv.first() else {
                continue;
            };
            let Some(input) = program
                .strip_prefix("/inputs/")
                .and_then(|p| p.split('/').next())
            else {
                continue;
            };
            if tools.iter().any(|t| &t.path == program) {
                continue;
            }
            if let Some(i) = inputs.iter().find(|i| i.name == input) {
                tools.push(ToolRecord {
                    path: program.clone(),
                    input: input.to_string(),
                    input_hash: i.hash,
                });
            }
        }
        let mut input_records = Vec::new();
        for i in inputs {
            input_records.push(InputRecord {
                name: i.name.clone(),
                kind: i.kind.to_string(),
                origin: i.origin.clone(),
                hash: i.hash,
                hash_of: if i.is_dir { "tree" } else { "file" }.into(),
                entry: (i.kind == "target").then(|| {
                    i.entry
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
                files: if i.kind == "path" && i.is_dir {
                    input_listing(store, &i.entry)?
                } else {
                    Vec::new()
                },
            });
        }
        Ok(BuildRecord {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            target: t.name.clone(),
            key,
            source_date_epoch: opts.source_date_epoch,
            recipe: RecipeRecord {
                name: recipe_name.to_string(),
                hash: recipe_hash,
            },
            params: t.params.clone(),
            inputs: input_records,
            tools,
            execs: report.execs.clone(),
            sandbox: sandbox.as_str().to_string(),
            hermetic: sandbox == SandboxMode::Hermetic,
            output_hash,
            log: report.log.clone(),
            timing: Timing {
                build_ms: elapsed.as_millis() as u64,
                exec_ms: report.execs.iter().map(|e| e.duration_ms).collect(),
            },
        })
    }
}

/// The file listing of an input's store entry. Entries never change, so it
/// is computed once and kept in `$KILN_HOME/listings/<entry>.json` (gc
/// deletes it with the entry).
fn input_listing(store: &Store, entry: &Path) -> Result<Vec<FileEntry>, NarError> {
    let cache = store.listing_path(entry);
    if let Ok(bytes) = fs::read(&cache)
        && let Ok(listing) = serde_json::from_slice(&bytes)
    {
        return Ok(listing);
    }
    let listing = listing::list(entry)?;
    if let Ok(json) = serde_json::to_vec(&listing)
        && fs::create_dir_all(cache.parent().unwrap_or(store.root())).is_ok()
    {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = cache.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
        if fs::write(&tmp, json).is_ok() {
            let _ = fs::rename(&tmp, &cache);
        }
    }
    Ok(listing)
}

fn record_path(store: &Store, entry: &Path) -> PathBuf {
    store.record_path(entry)
}

/// Store `record` for `entry` (atomically).
pub fn write(store: &Store, entry: &Path, record: &BuildRecord) -> std::io::Result<()> {
    let path = record_path(store, entry);
    // An entry's record describes the run that made it; another run that
    // found the entry there (a concurrent build, a cache hit) keeps it.
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(store.root());
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(
        &mut tmp,
        &serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?,
    )?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(()),
        Err(e) if path.exists() => {
            drop(e);
            Ok(())
        }
        Err(e) => Err(e.error),
    }
}

/// The record of `entry`.
pub fn read(store: &Store, entry: &Path) -> std::io::Result<BuildRecord> {
    let path = record_path(store, entry);
    let text = fs::read(&path)?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}
