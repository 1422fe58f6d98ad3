//! The builder: turns kiln.toml targets into store entries.
//!
//! For each target, once its dependencies are in the store: resolve the
//! recipe and every input to a hashed store entry, check each hash against
//! kiln.toml or kiln.lock *before* any recipe runs, compute the build key,
//! return the stored output on a hit, otherwise run the recipe in a staging
//! directory and commit `/out` atomically with its build record. Resolving
//! happens on the calling thread (it updates kiln.lock); recipes of
//! independent targets run on up to `jobs` threads. Nothing here touches wasmtime
//! (see [`crate::runtime`]) or parses argv (see [`crate::cli`]).

mod check;
mod inputs;
mod pins;
pub mod reach;
pub mod record;
mod run;

use pins::Pins;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{OnceLock, mpsc};

use kiln_core::hash::Sha256Hash;
use kiln_core::key::KeyMaterial;
use kiln_core::lockfile::{Lockfile, Pin};
use kiln_core::manifest::{Location, Manifest, RecipeRef, Target};
use kiln_core::store::{Store, StoreError};

use crate::runtime::{Limits, RecipeError, Runtime};
use crate::sandbox::SandboxMode;
pub use inputs::ResolvedInput;

/// What [`Builder::build`] does with each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Return stored outputs, build the missing ones.
    Build,
    /// As `Build`, then build the requested targets once more in a fresh
    /// sandbox and compare the two outputs bit for bit.
    Check,
    /// Only find stored outputs: fail on a target that is not built, write nothing.
    Lookup,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub mode: Mode,
    /// How many recipes may run at once (independent targets in parallel).
    pub jobs: usize,
    pub sandbox: SandboxMode,
    pub limits: Limits,
    pub source_date_epoch: u64,
    /// Fail instead of writing kiln.lock (for CI).
    pub locked: bool,
    /// Echo recipe log lines at or above this level (None: quiet).
    pub echo: Option<crate::runtime::Level>,
    /// Show progress for long steps (downloads, hashing).
    pub progress: bool,
    /// Where compiled recipes are cached (shared by every store that wants to).
    pub compile_cache: PathBuf,
    /// Run fixed-output steps kiln.toml does not pin yet, with network, to
    /// learn their hash (`--fetch-unpinned`); nothing they fetch is used.
    pub fetch_unpinned: bool,
    /// Directories outside the project whose files kiln.toml may read
    /// (`--allow-path`); the project's own tree is always readable.
    pub allow_paths: Vec<PathBuf>,
    /// Bounds on each download.
    pub download: crate::fetch::DownloadLimits,
}

/// A target that is in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub target: String,
    /// The store entry.
    pub entry: PathBuf,
    pub key: Sha256Hash,
    /// The output's content hash (NAR hash of the entry).
    pub output_hash: Sha256Hash,
    /// True when the output came from the store without running anything.
    pub cached: bool,
    /// True when `--check` rebuilt it and found the same bits.
    pub checked: bool,
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
    #[error("input '{input}' of target '{target}' ({at}): {message}")]
    Input {
        target: String,
        input: String,
        at: Location,
        message: String,
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
    #[error("{0}")]
    Other(String),
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

/// One build session over one kiln.toml.
pub struct Builder<'a> {
    ctx: Ctx<'a>,
    pins: Pins,
    built: BTreeMap<String, Built>,
}

/// What build jobs share (read-only, so jobs can run on several threads).
struct Ctx<'a> {
    /// Held while the builder lives, so `kiln gc` waits for it.
    _in_use: kiln_core::store::StoreLock,
    store: Store,
    manifest: &'a Manifest,
    opts: BuildOptions,
    runtime: OnceLock<Runtime>,
}

/// A target whose recipe and inputs are resolved and hashed: ready to run.
struct Job<'a> {
    target: &'a Target,
    recipe_name: String,
    wasm: Vec<u8>,
    recipe_hash: Sha256Hash,
    inputs: Vec<ResolvedInput>,
    key: Sha256Hash,
}

impl<'a> Builder<'a> {
    /// A builder for `manifest`, reading its kiln.lock if there is one.
    pub fn new(
        store: Store,
        manifest: &'a Manifest,
        opts: BuildOptions,
    ) -> Result<Self, BuildError> {
        let lock_path = manifest.dir.join("kiln.lock");
        let lock = match fs::read_to_string(&lock_path) {
            Ok(text) => Lockfile::parse(&lock_path.display().to_string(), &text)
                .map_err(|e| BuildError::Other(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lockfile {
                version: 1,
                ..Default::default()
            },
            Err(e) => {
                return Err(BuildError::Other(format!(
                    "cannot read {}: {e}",
                    lock_path.display()
                )));
            }
        };
        Ok(Builder {
            pins: Pins {
                lock,
                path: lock_path,
                changed: false,
                frozen: opts.locked,
            },
            ctx: Ctx {
                _in_use: store.hold_for_use()?,
                store,
                manifest,
                opts,
                runtime: OnceLock::new(),
            },
            built: BTreeMap::new(),
        })
    }

    /// The store this builder writes to.
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Build `names` and their dependencies: each target once its
    /// dependencies are in the store, up to `jobs` recipes at a time.
    /// On a failure, running recipes finish, no new one starts, and the
    /// first error is returned.
    pub fn build(&mut self, names: &[String]) -> Result<Vec<Built>, BuildError> {
        let mut pending: Vec<&Target> = self
            .ctx
            .manifest
            .build_order(names)
            .map_err(BuildError::Other)?;
        pending.retain(|t| !self.built.contains_key(&t.name));
        let ctx = &self.ctx;
        let pins = &mut self.pins;
        let built = &mut self.built;
        let jobs = ctx.opts.jobs.max(1);
        let mut failure: Option<BuildError> = None;
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<Result<Built, BuildError>>();
            let mut running = 0usize;
            loop {
                while failure.is_none() && running < jobs {
                    let Some(i) = pending
                        .iter()
                        .position(|t| t.target_deps().all(|d| built.contains_key(d)))
                    else {
                        break;
                    };
                    let t = pending.remove(i);
                    let job = match ctx.prepare(t, pins, built) {
                        Ok(job) => job,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    let check = ctx.opts.mode == Mode::Check && names.contains(&t.name);
                    let tx = done_tx.clone();
                    running += 1;
                    scope.spawn(move || {
                        let _ = tx.send(ctx.execute(job, check));
                    });
                }
                if running == 0 {
                    break;
                }
                let Ok(result) = done_rx.recv() else { break };
                running -= 1;
                match result {
                    Ok(b) => {
                        built.insert(b.target.clone(), b);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = failure {
            self.save_lock()?;
            return Err(e);
        }
        self.save_lock()?;
        Ok(names
            .iter()
            .filter_map(|n| self.built.get(n).cloned())
            .collect())
    }

    /// Resolve (fetch, hash, pin) every input of `names` without building.
    pub fn lock_inputs(&mut self, names: &[String]) -> Result<(), BuildError> {
        let targets: Vec<&Target> = self
            .ctx
            .manifest
            .build_order(names)
            .map_err(BuildError::Other)?;
        for t in targets {
            self.ctx.resolve_recipe(t, &mut self.pins)?;
            for input in t.inputs.values() {
                if !matches!(input.source, kiln_core::manifest::Source::Target(_)) {
                    inputs::resolve(&self.ctx, &mut self.pins, &self.built, t, input)?;
                }
            }
        }
        self.save_lock()
    }

    /// Forget pins before `lock_inputs` re-pins them (`kiln lock --update`).
    pub fn forget_pins(&mut self, input: Option<&str>) {
        self.pins.lock.forget(input);
        self.pins.changed = true;
    }

    fn save_lock(&mut self) -> Result<(), BuildError> {
        if !self.pins.changed || self.ctx.opts.mode == Mode::Lookup {
            return Ok(());
        }
        let text = self.pins.lock.render();
        let path = &self.pins.path;
        let tmp = path.with_extension("lock.tmp");
        fs::write(&tmp, text)
            .and_then(|_| fs::rename(&tmp, path))
            .map_err(|e| BuildError::Other(format!("cannot write {}: {e}", path.display())))?;
        self.pins.changed = false;
        Ok(())
    }
}

impl<'a> Ctx<'a> {
    /// What host paths this kiln.toml may read.
    fn reach(&self) -> reach::Reach {
        reach::Reach::new(&self.manifest.dir, &self.opts.allow_paths)
    }

    fn runtime(&self) -> Result<&Runtime, BuildError> {
        if let Some(r) = self.runtime.get() {
            return Ok(r);
        }
        let r = Runtime::new(&self.opts.compile_cache)
            .map_err(|e| BuildError::Other(format!("{e:#}")))?;
        Ok(self.runtime.get_or_init(|| r))
    }

    /// The recipe's wasm bytes and hash, checked against kiln.toml / kiln.lock.
    fn resolve_recipe(
        &self,
        t: &Target,
        pins: &mut Pins,
    ) -> Result<(String, Vec<u8>, Sha256Hash), BuildError> {
        match &t.recipe {
            RecipeRef::Standard(name) => {
                let wasm =
                    crate::recipes::standard(name).ok_or_else(|| BuildError::UnknownRecipe {
                        name: name.clone(),
                        at: t.at.clone(),
                        known: crate::recipes::standard_names().join(", "),
                    })?;
                Ok((name.clone(), wasm.to_vec(), Sha256Hash::of_bytes(wasm)))
            }
            RecipeRef::Wasm {
                path,
                hash,
                hash_at,
            } => {
                let recipe_error = |message: String| BuildError::Input {
                    target: t.name.clone(),
                    input: kiln_core::lockfile::RECIPE_KEY.into(),
                    at: t.at.clone(),
                    message,
                };
                let real = self.reach().check(path).map_err(recipe_error)?;
                if !real.is_file() {
                    return Err(recipe_error(format!(
                        "recipe {} is not a file",
                        path.display()
                    )));
                }
                let wasm = fs::read(&real).map_err(|e| {
                    recipe_error(format!("cannot read recipe {}: {e}", path.display()))
                })?;
                let got = Sha256Hash::of_bytes(&wasm);
                let at = hash_at.clone().unwrap_or_else(|| t.at.clone());
                pins.check(self.manifest, t, Pin::Recipe, *hash, at, got)?;
                let name = path
                    .strip_prefix(&self.manifest.dir)
                    .unwrap_or(path)
                    .display()
                    .to_string();
                Ok((name, wasm, got))
            }
        }
    }

    /// Resolve `t`'s recipe and inputs (its dependencies are in `built`)
    /// and compute its build key. Every hash is checked here.
    fn prepare<'t>(
        &self,
        t: &'t Target,
        pins: &mut Pins,
        built: &BTreeMap<String, Built>,
    ) -> Result<Job<'t>, BuildError> {
        let (recipe_name, wasm, recipe_hash) = self.resolve_recipe(t, pins)?;
        let mut resolved: Vec<ResolvedInput> = Vec::new();
        for input in t.inputs.values() {
            resolved.push(inputs::resolve(self, pins, built, t, input)?);
        }
        let key = KeyMaterial {
            recipe: recipe_hash,
            params: &t.params,
            inputs: resolved.iter().map(|r| (r.name.as_str(), r.hash)).collect(),
            sandbox: self.opts.sandbox.as_str(),
            source_date_epoch: self.opts.source_date_epoch,
            output_hash: t.output_hash,
        }
        .key()
        .map_err(|e| BuildError::Other(e.to_string()))?;
        Ok(Job {
            target: t,
            recipe_name,
            wasm,
            recipe_hash,
            inputs: resolved,
            key,
        })
    }

    /// The stored output for `job`, else run its recipe and commit the
    /// output; with `check`, then run it once more and compare.
    fn execute(&self, job: Job<'_>, check: bool) -> Result<Built, BuildError> {
        let t = job.target;
        let _lock = self.store.lock(&job.key.to_hex())?;
        let stored = self.store.lookup_output(&job.key).and_then(|entry| {
            let rec = record::read(&self.store, &entry).ok()?;
            Some(Built {
                target: t.name.clone(),
                entry,
                key: job.key,
                output_hash: rec.output_hash,
                cached: true,
                checked: false,
            })
        });
        let first = match stored {
            Some(b) => b,
            None if self.opts.mode == Mode::Lookup => {
                return Err(BuildError::NotBuilt {
                    target: t.name.clone(),
                });
            }
            None => {
                let (staging, record) = self.run(&job, true)?;
                // Fixed-output targets are named by their content, others by their key.
                let entry_hash = t.output_hash.unwrap_or(job.key);
                let entry =
                    self.store
                        .commit_sealed(&staging.path().join("out"), &entry_hash, &t.name)?;
                record::write(&self.store, &entry, &record)
                    .map_err(|e| BuildError::Other(format!("writing the build record: {e}")))?;
                self.store.record_output(&job.key, &entry)?;
                Built {
                    target: t.name.clone(),
                    entry,
                    key: job.key,
                    output_hash: record.output_hash,
                    cached: false,
                    checked: false,
                }
            }
        };
        if !check {
            return Ok(first);
        }
        // Sealed like a store entry: what a rebuild leaves for inspection
        // keeps no setuid bit and no write permission either.
        let (staging, record) = self.run(&job, true)?;
        if record.output_hash == first.output_hash {
            return Ok(Built {
                checked: true,
                ..first
            });
        }
        self.keep_for_inspection(t, &first, staging.path().join("out"))
    }
}
