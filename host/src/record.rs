//! The build record: what went into a store entry, kept beside it
//! (`Store::record_path`), pushed with it to binary caches and read by
//! `kiln audit`, `kiln gc` and `kiln cache push`.
//!
//! This module owns the schema, its reading and writing, and the one walk
//! over an entry's dependencies ([`BuildRecord::deps`]). It does not decide
//! what a record says: the builder fills one in after a run.
//!
//! Everything but the `timing` section is a function of the build's inputs,
//! so two identical builds write identical records (minus `timing`). No
//! absolute host path appears: path inputs are named relative to kiln.toml,
//! store entries by their names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_core::hash::Sha256Hash;
use kiln_core::key::BuildKey;
use kiln_core::listing::FileEntry;
use kiln_core::store::{Existing, Store, write_atomic};
use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxMode;

/// The record of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub kiln_version: String,
    pub target: String,
    /// The build key: what names this output in the cache.
    #[serde(default = "no_key")]
    pub key: BuildKey,
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
    /// The store entry holding a custom recipe when it is another
    /// target's output (its `.wasm` lies in the store); standard recipes
    /// and recipes among the project's files have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
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
    /// The store entry the build read this input from: a dependency's
    /// output for a `target` input; for `path` and `url` inputs the name
    /// the store gives its hash and input name (the same on every machine,
    /// so identical builds write identical records). Older records name it
    /// for `target` inputs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// For `path` inputs that are directories: every file, with its hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

fn no_key() -> BuildKey {
    BuildKey(Sha256Hash([0; 32]))
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
    /// `image = "…@sha256:…"`: an image pulled from a registry, as an OCI layout.
    Image,
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
    pub caches: Vec<ToolCacheUse>,
    /// Fixed-output steps filled from the store (by setting), which ran no tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetches_reused: Vec<String>,
    /// Steps that ran on a remote engine: which (by their index in
    /// `execs`) and where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<RemoteStep>,
}

/// One step a remote engine ran (or answered from its action cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStep {
    /// Its index in the record's `execs`.
    pub exec: usize,
    #[serde(flatten)]
    pub placement: crate::executor::Placement,
}

/// Where a line of a build's log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    Debug,
    Info,
    Warn,
    Error,
    /// What the recipe printed on its stdout.
    RecipeStdout,
    /// What the recipe printed on its stderr.
    RecipeStderr,
}

/// One line of a build's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Written as `level` (its name before recipe output was logged too).
    #[serde(rename = "level")]
    pub source: LogSource,
    pub message: String,
}

/// One tool run, as the build record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub network: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_bytes: usize,
    pub stderr_bytes: usize,
    /// Kept out of the record's reproducible part (the builder moves it to `timing`).
    #[serde(skip)]
    pub duration_ms: u64,
    /// Where the step ran when not here; moved to `timing` like the duration.
    #[serde(skip)]
    pub placement: Option<crate::executor::Placement>,
    /// A fixed-output step (a download pinned by hash): its pin, and
    /// whether this build ran it or reused what an earlier one fetched.
    /// A reused step ran no tool: no network, no exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_output: Option<FixedOutputUse>,
}

impl ExecRecord {
    /// Whether a tool ran for this step (a reused download ran none).
    pub fn ran(&self) -> bool {
        self.fixed_output
            .as_ref()
            .is_none_or(|f| f.outcome != FetchOutcome::Reused)
    }
}

/// What a fixed-output step was pinned to and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedOutputUse {
    /// Where kiln.toml pins it: `params.vendor_hash`, `output_hash`.
    pub pin: String,
    pub hash: Sha256Hash,
    pub outcome: FetchOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchOutcome {
    /// The step ran with network and what it fetched matched the pin.
    Fetched,
    /// What an earlier build fetched for the same pin and fetch-key files
    /// was taken from the store; the step did not run.
    Reused,
}

impl FetchOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Fetched => "fetched",
            FetchOutcome::Reused => "reused from the store",
        }
    }
}

/// How a cache was used by one build: part of the record's `timing`
/// section, since it differs between two builds of the same inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCacheUse {
    /// Where tools saw it, e.g. `/cache/go-build`.
    pub path: String,
    /// `persistent`, or `fresh` (empty for this build).
    pub kind: ToolCacheKind,
    /// Files and bytes it held when the build first mounted it: how warm
    /// it was.
    pub files_before: u64,
    pub bytes_before: u64,
    /// The shared result copied into it before the build's commands ran
    /// (a command's cache `seed`), if it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<SeedUse>,
    /// Where it is on the host: counted in the disk budget, never recorded.
    #[serde(skip)]
    pub host_dir: PathBuf,
}

/// What a cache's seed did for one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedUse {
    /// `reused` (the store held it), `computed` (its tool ran, here, for
    /// the items the store lacked) or `failed`.
    pub outcome: SeedOutcome,
    /// The shared result's NAR hash (none when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// How many items the command asked for.
    pub items: usize,
    /// Files copied into the cache (those it already held are kept).
    pub files_copied: u64,
    /// Bytes this build's computation added to the store (its new
    /// result; 0 when reused or failed), counted in the disk budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stored_bytes: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedOutcome {
    Reused,
    Computed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolCacheKind {
    Persistent,
    Fresh,
    /// The steps ran on a remote engine, each with an empty cache: kept
    /// caches are this machine's.
    #[serde(rename = "none (remote)")]
    NoneRemote,
}

/// One store entry a record's output was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// What the build used it as.
    pub role: DepRole,
    pub entry: PathBuf,
}

/// What a dependency was to the build that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepRole {
    /// The custom recipe's `.wasm` (the entry holding it).
    Recipe,
    /// An input of this kind.
    Input(InputKind),
}

impl BuildRecord {
    /// The store entries this record's output was built from, in the
    /// record's order: the recipe's (if it is in the store) and one per
    /// input the store still holds. Entry names are validated by the store
    /// ([`Store::entry_named`]), so a record (one pulled from a cache, say)
    /// cannot point outside it.
    ///
    /// A record written before entries were named for every input finds
    /// its path and url inputs by hash: one listing of the store each.
    pub fn deps(&self, store: &Store) -> Vec<Dep> {
        let mut deps = Vec::new();
        if let Some(entry) = self
            .recipe
            .entry
            .as_deref()
            .and_then(|n| store.entry_named(n))
        {
            deps.push(Dep {
                role: DepRole::Recipe,
                entry,
            });
        }
        for input in &self.inputs {
            if let Some(entry) = input.entry_in(store) {
                deps.push(Dep {
                    role: DepRole::Input(input.kind),
                    entry,
                });
            }
        }
        deps
    }
}

impl InputRecord {
    /// The store entry this input was read from, if the store still holds
    /// it. A `path` or `url` input's entry must hold the recorded hash (all
    /// of it: a record cannot point at other content); one the store keeps
    /// under another name (prefetched as something else), or a record from
    /// before entries were named, is found by hash.
    pub fn entry_in(&self, store: &Store) -> Option<PathBuf> {
        let named = self.entry.as_deref().and_then(|n| store.entry_named(n));
        match self.kind {
            InputKind::Target => named,
            InputKind::Path | InputKind::Url | InputKind::Image => named
                .filter(|e| store.holds(e, &self.hash))
                .or_else(|| store.find_by_hash(&self.hash)),
        }
    }
}

/// Store `record` for `entry` (atomically).
pub fn write(store: &Store, entry: &Path, record: &BuildRecord) -> std::io::Result<()> {
    // An entry's record describes the run that made it; another run that
    // found the entry there (a concurrent build, a cache hit) keeps it.
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_atomic(&store.record_path(entry), &json, Existing::Keep).map(|_| ())
}

/// The bytes of `entry`'s record, as stored (what a binary cache is sent).
pub fn read_bytes(store: &Store, entry: &Path) -> std::io::Result<Vec<u8>> {
    kiln_core::sidefile::read(
        &store.record_path(entry),
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::RECORD,
    )
}

/// The record of `entry`.
pub fn read(store: &Store, entry: &Path) -> std::io::Result<BuildRecord> {
    parse(&read_bytes(store, entry)?)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", store.record_path(entry).display())))
}

/// A record from its bytes (a stored one, or one a binary cache sent).
pub fn parse(bytes: &[u8]) -> Result<BuildRecord, serde_json::Error> {
    serde_json::from_slice(bytes)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests;
