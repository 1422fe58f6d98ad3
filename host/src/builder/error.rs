//! Why a build stops: each error names the target, input or file and says
//! what to do.

use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::manifest::Location;
use kiln_core::store::StoreError;

use crate::runtime::RecipeError;

/// Why one input (or a custom recipe) could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// kiln.toml may not read it (outside the project, not a file).
    #[error(transparent)]
    Reach(#[from] super::reach::ReachError),
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// Hashing or reading it failed.
    #[error(transparent)]
    Read(#[from] kiln_core::nar::NarError),
    /// Downloading it failed (refused, too large, stalled, a server error).
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// Adding it to the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A URL whose content changed between two reads.
    #[error("{url} changed while it was checked")]
    Changed { url: String },
    /// The target input's target was not built (a scheduling bug).
    #[error("target '{0}' has not been built")]
    NotBuilt(String),
    /// A custom recipe that cannot be read.
    #[error("{0}")]
    Recipe(String),
    /// An image that cannot be pulled or is not what its pin says.
    #[error("{0}")]
    Image(String),
}

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    HashMismatch(Box<HashMismatch>),
    #[error(
        "input '{input}' of target '{target}' ({at}) is not pinned in {lockfile} and --locked forbids writing it; run `kiln lock` and commit kiln.lock"
    )]
    NotLocked {
        target: String,
        input: String,
        at: Location,
        lockfile: String,
    },
    #[error(
        "unknown standard recipe '{name}' ({at}); standard recipes: {known}. A custom recipe is written recipe = {{ path = \"my-recipe.wasm\", hash = \"sha256-…\" }}"
    )]
    UnknownRecipe {
        name: String,
        at: Location,
        known: String,
    },
    /// Params that contradict each other (or another target's).
    #[error("target '{target}' ({at}): {message}")]
    Params {
        target: String,
        at: Location,
        message: String,
    },
    #[error("input '{input}' of target '{target}' ({at}): {reason}")]
    Input {
        target: String,
        input: String,
        at: Location,
        reason: Box<InputError>,
    },
    #[error(
        "output of target '{target}' does not match its output_hash ({at}): specified {specified} got {got}\n  if the new output is right, set output_hash = \"{got}\""
    )]
    OutputHashMismatch {
        target: String,
        at: Box<Location>,
        specified: Sha256Hash,
        got: Sha256Hash,
    },
    #[error(
        "target '{target}' is not built for its current inputs; run `kiln build {target}` first, or name a store path or result link"
    )]
    NotBuilt { target: String },
    #[error(
        "target '{target}' is not reproducible: a second build in a fresh sandbox differs from {first}\n{}\n  the second output is kept in {second} for inspection",
        differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    NotReproducible {
        target: String,
        first: PathBuf,
        second: PathBuf,
        /// `changed bin/hello: file sha256-… → file sha256-…`, one per path.
        differences: Vec<String>,
    },
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    UnknownTarget(#[from] kiln_core::manifest::UnknownTarget),
    #[error(transparent)]
    Lockfile(#[from] kiln_core::lockfile::LockfileError),
    #[error(transparent)]
    Key(#[from] kiln_core::key::KeyError),
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(String),
    /// A file kiln itself reads or writes (kiln.lock, the staging directory,
    /// a build record) failed; `action` says which.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Listing a tree (to record an input's files, to compare two
    /// outputs) failed; the source names the path.
    #[error("{action}: {source}")]
    Listing {
        action: &'static str,
        source: kiln_core::nar::NarError,
    },
}

/// An input whose content is not what kiln.toml or kiln.lock pinned.
#[derive(Debug, thiserror::Error)]
#[error(
    "hash mismatch for input '{input}' of target '{target}' ({at}): specified {specified} got {got}\n  {fix}"
)]
pub struct HashMismatch {
    pub target: String,
    pub input: String,
    pub at: Location,
    pub specified: Sha256Hash,
    pub got: Sha256Hash,
    /// The command or edit that fixes it.
    pub fix: String,
}
