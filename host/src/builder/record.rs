//! Build records: what went into a store entry, kept beside it in
//! the store (`Store::record_path`).
//!
//! Everything but the `timing` section is a function of the build's inputs,
//! so two identical builds write identical records (minus `timing`). No
//! absolute host path appears: path inputs are named relative to kiln.toml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::{self, FileEntry};
use kiln_core::manifest::Target;
use kiln_core::nar::NarError;
use kiln_core::store::{Existing, Store, write_atomic};
use serde::{Deserialize, Serialize};

use super::{BuildError, BuildOptions, ResolvedInput};
use crate::runtime::{CacheUse, ExecRecord, LogLine, RunReport};
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
    pub sandbox: SandboxMode,
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
    pub kind: InputKind,
    /// A path relative to kiln.toml, a URL, or a target name.
    pub origin: String,
    pub hash: Sha256Hash,
    /// `file` (the flat sha256 of its bytes) or `tree` (the NAR hash of a
    /// directory), as `nix hash file` / `nix hash path` compute them.
    #[serde(default = "tree")]
    pub hash_of: HashOf,
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

fn tree() -> HashOf {
    HashOf::Tree
}

/// Where an input comes from, as kiln.toml declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// `path = "…"`: a file or tree of the project.
    Path,
    /// `url = "…"`: a download.
    Url,
    /// `target = "…"`: another target's output.
    Target,
}

/// What an input's hash is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashOf {
    /// The flat sha256 of a file's bytes (`nix hash file`).
    File,
    /// The NAR hash of a tree (`nix hash path`).
    Tree,
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
    /// Tool caches the build mounted and how warm each was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheUse>,
    /// Fixed-output steps filled from the store (by setting), which ran no tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetches_reused: Vec<String>,
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
    ) -> Result<Self, BuildError> {
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
                kind: i.kind,
                origin: i.origin.clone(),
                hash: i.hash,
                hash_of: if i.is_dir { HashOf::Tree } else { HashOf::File },
                entry: (i.kind == InputKind::Target).then(|| {
                    i.entry
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
                files: if i.kind == InputKind::Path && i.is_dir {
                    input_listing(store, &i.entry).map_err(|source| BuildError::Listing {
                        action: "cannot list an input for the build record",
                        source,
                    })?
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
            sandbox,
            hermetic: sandbox == SandboxMode::Hermetic,
            output_hash,
            log: report.log.clone(),
            timing: Timing {
                build_ms: elapsed.as_millis() as u64,
                exec_ms: report.execs.iter().map(|e| e.duration_ms).collect(),
                caches: report.caches.clone(),
                fetches_reused: report.fetches_reused.clone(),
            },
        })
    }
}

/// The file listing of an input's store entry. Entries never change, so it
/// is computed once and kept at `Store::listing_path` (gc
/// deletes it with the entry).
fn input_listing(store: &Store, entry: &Path) -> Result<Vec<FileEntry>, NarError> {
    let cache = store.listing_path(entry);
    if let Ok(bytes) = kiln_core::sidefile::read(
        &cache,
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::LISTING,
    ) && let Ok(listing) = serde_json::from_slice(&bytes)
    {
        return Ok(listing);
    }
    let listing = listing::list(entry)?;
    if let Ok(json) = serde_json::to_vec(&listing) {
        // A cache: failing to keep it only costs a re-listing next time.
        let _ = write_atomic(&cache, &json, Existing::Replace);
    }
    Ok(listing)
}

fn record_path(store: &Store, entry: &Path) -> PathBuf {
    store.record_path(entry)
}

/// Store `record` for `entry` (atomically).
pub fn write(store: &Store, entry: &Path, record: &BuildRecord) -> std::io::Result<()> {
    // An entry's record describes the run that made it; another run that
    // found the entry there (a concurrent build, a cache hit) keeps it.
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_atomic(&record_path(store, entry), &json, Existing::Keep).map(|_| ())
}

/// The record of `entry`.
pub fn read(store: &Store, entry: &Path) -> std::io::Result<BuildRecord> {
    let path = record_path(store, entry);
    let text = kiln_core::sidefile::read(
        &path,
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::RECORD,
    )?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}
