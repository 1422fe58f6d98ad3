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

mod agree;
mod check;
mod error;
mod inputs;
mod pins;
pub mod reach;
mod record;
mod run;
mod schedule;
mod substitute;

use pins::Pins;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use kiln_core::hash::Sha256Hash;
use kiln_core::key::{BuildKey, KeyMaterial};
use kiln_core::lockfile::Lockfile;
use kiln_core::manifest::{Manifest, RecipeRef, Target};
use kiln_core::store::Store;

use crate::report::Event;
use crate::runtime::{Limits, Runtime};
use crate::sandbox::SandboxMode;
pub use error::{BuildError, HashMismatch, InputError};
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
    /// Where tool steps run: here, or on a remote engine.
    pub executor: crate::executor::Executor,
    pub limits: Limits,
    pub source_date_epoch: u64,
    /// Fail instead of writing kiln.lock (for CI).
    pub locked: bool,
    /// Where progress, recipe logs and notes go as they happen.
    pub reporter: crate::report::Reporter,
    /// Where compiled recipes are kept (shared by every store that wants to).
    pub compiled_dir: PathBuf,
    /// Run fixed-output steps kiln.toml does not pin yet, with network, to
    /// learn their hash (`--fetch-unpinned`); nothing they fetch is used.
    pub fetch_unpinned: bool,
    /// Directories outside the project whose files kiln.toml may read
    /// (`--allow-path`); the project's own tree is always readable.
    pub allow_paths: Vec<PathBuf>,
    /// Bounds on each download.
    pub download: crate::fetch::DownloadLimits,
    /// Keep tool caches across builds of a target (off: `--no-cache`).
    pub tool_caches: bool,
    /// Binary caches to look outputs and inputs up in before building or
    /// downloading them (None: build everything here).
    pub substituters: Option<std::sync::Arc<crate::binary_cache::Substituters>>,
}

/// A target that is in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub target: String,
    /// The store entry.
    pub entry: PathBuf,
    pub key: BuildKey,
    /// The output's content hash (NAR hash of the entry).
    pub output_hash: Sha256Hash,
    /// True when the output came from the store without running anything.
    pub found: bool,
    /// True when `--check` rebuilt it and found the same bits.
    pub checked: bool,
    /// The binary cache it came from, when it did.
    pub substituted_from: Option<String>,
}

/// Where one target stands ([`Builder::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub target: String,
    pub state: State,
    /// Its inputs' hashes, where they could be known.
    pub inputs: Vec<(String, Sha256Hash)>,
}

/// See [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Its output for its current inputs is in the store: a build reuses it.
    Stored { output: Sha256Hash },
    /// The store has no output for its current inputs: a build runs it
    /// (or takes it from a binary cache).
    OutOfDate,
    /// Its inputs cannot be known before dependency `on` is built.
    Waits { on: String },
    /// An input could not be resolved without downloading or building.
    Unresolved { why: String },
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
    /// `path` inputs hashed in this session, by path, excludes and the
    /// package whose reach allowed them.
    path_hashes: Mutex<HashMap<PathMemo, Sha256Hash>>,
    /// Store entries found by content hash and name in this session.
    entries: Mutex<HashMap<(Sha256Hash, String), PathBuf>>,
    /// The store's entry names by their 32-character hash part, listed
    /// once per session for lookups by content hash.
    by_hash: OnceLock<HashMap<String, Vec<PathBuf>>>,
    /// Leaves out symlinks into the store (computed once).
    links_filter: OnceLock<kiln_core::pathfilter::PathFilter>,
}

/// A `path` input as hashed: its path, excludes, and its package's directory.
type PathMemo = (PathBuf, Vec<String>, PathBuf);

/// A target whose recipe and inputs are resolved and hashed: ready to run.
struct Job<'a> {
    target: &'a Target,
    recipe: Recipe,
    inputs: Vec<ResolvedInput>,
    key: BuildKey,
    /// The params the recipe sees: kiln.toml's, with kiln.lock's
    /// fixed-output pins filled in ([`Pins::params`]).
    params: Cow<'a, serde_json::Value>,
    /// The settings whose pin came from kiln.lock.
    locked_settings: Vec<String>,
}

/// A target's recipe, read and hashed.
struct Recipe {
    /// A standard recipe's name, or the custom recipe's path relative to kiln.toml.
    name: String,
    wasm: Cow<'static, [u8]>,
    hash: Sha256Hash,
    /// The store entry holding it, when it is another target's output.
    entry: Option<PathBuf>,
}

impl<'a> Builder<'a> {
    /// A builder for `manifest`, reading its kiln.lock if there is one.
    pub fn new(
        store: Store,
        manifest: &'a Manifest,
        opts: BuildOptions,
    ) -> Result<Self, BuildError> {
        let lock_path = manifest.dir.join("kiln.lock");
        use kiln_core::sidefile::{self, Links, limits};
        let mut lock = match sidefile::read_to_string(&lock_path, Links::Follow, limits::TEXT) {
            Ok(text) => Lockfile::parse(&lock_path.display().to_string(), &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lockfile::default(),
            Err(source) => {
                return Err(BuildError::Io {
                    action: "cannot read",
                    path: lock_path,
                    source,
                });
            }
        };
        // A project that became a workspace root keeps its pins: its
        // targets are now //:NAME.
        if manifest.naming == kiln_core::address::Naming::Workspace {
            lock.readdress(|name| {
                (!name.contains(':'))
                    .then(|| kiln_core::address::address(manifest.naming, "", name))
            });
        }
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
                path_hashes: Mutex::new(HashMap::new()),
                entries: Mutex::new(HashMap::new()),
                by_hash: OnceLock::new(),
                links_filter: OnceLock::new(),
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
        let pending = self.ctx.manifest.build_order(names)?;
        agree::check(self.ctx.manifest, &pending)?;
        let ctx = &self.ctx;
        let pins = &mut self.pins;
        let requested: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let result = schedule::run(
            pending,
            ctx.opts.jobs,
            &mut self.built,
            |t, built| {
                let check = ctx.opts.mode == Mode::Check && requested.contains(t.name.as_str());
                let started = std::time::Instant::now();
                let job = ctx.prepare(t, pins, built).inspect_err(|_| ctx.failed(t))?;
                ctx.opts.reporter.send(Event::TargetPrepared {
                    target: t.name.clone(),
                    ms: started.elapsed().as_millis() as u64,
                });
                // A stored output is found here, without a worker.
                if !check && let Some(b) = ctx.stored(&job) {
                    ctx.finished(&b);
                    return Ok(schedule::Prepared::Done(b));
                }
                Ok(schedule::Prepared::Run((job, check)))
            },
            |(job, check)| {
                let t = job.target;
                ctx.opts.reporter.send(Event::TargetAssigned {
                    target: t.name.clone(),
                });
                ctx.execute(job, check).inspect_err(|_| ctx.failed(t))
            },
        );
        // Pins learned before a failure are kept: they were checked.
        self.save_lock()?;
        result?;
        Ok(names
            .iter()
            .filter_map(|n| self.built.get(n).cloned())
            .collect())
    }

    /// Where `names` and their dependencies stand, in build order, without
    /// running or downloading anything (build with [`Mode::Lookup`]): each
    /// target's output for its current inputs is stored, or not, or cannot
    /// be known before a dependency is built.
    pub fn status(&mut self, names: &[String]) -> Result<Vec<Status>, BuildError> {
        let order = self.ctx.manifest.build_order(names)?;
        let mut out: Vec<Status> = Vec::new();
        for t in order {
            let waits = t
                .target_deps()
                .find(|d| !self.built.contains_key(*d))
                .map(String::from);
            if let Some(on) = waits {
                out.push(Status {
                    target: t.name.clone(),
                    state: State::Waits { on },
                    inputs: Vec::new(),
                });
                continue;
            }
            let job = match self.ctx.prepare(t, &mut self.pins, &self.built) {
                Ok(job) => job,
                Err(e) => {
                    out.push(Status {
                        target: t.name.clone(),
                        state: State::Unresolved { why: e.to_string() },
                        inputs: Vec::new(),
                    });
                    continue;
                }
            };
            let inputs = job
                .inputs
                .iter()
                .map(|i| (i.name.clone(), i.hash))
                .collect();
            let state = match self.ctx.stored(&job) {
                Some(b) => {
                    let state = State::Stored {
                        output: b.output_hash,
                    };
                    self.built.insert(t.name.clone(), b);
                    state
                }
                None => State::OutOfDate,
            };
            out.push(Status {
                target: t.name.clone(),
                state,
                inputs,
            });
        }
        Ok(out)
    }

    /// Resolve (fetch, hash, pin) every input of `names` without building.
    pub fn lock_inputs(&mut self, names: &[String]) -> Result<(), BuildError> {
        let targets: Vec<&Target> = self.ctx.manifest.build_order(names)?;
        for t in targets {
            self.ctx.resolve_recipe(t, &mut self.pins)?;
            for input in t.inputs.values() {
                if !matches!(input.source, kiln_core::manifest::Source::Target(_)) {
                    // Locking fetches what it pins, so a later build works offline.
                    let r = inputs::resolve(&self.ctx, &mut self.pins, &self.built, t, input)?;
                    self.ctx.materialize(t, &mut [r])?;
                }
            }
        }
        self.save_lock()
    }

    /// The store entry of `input` of target `t` (a `url` or `path`
    /// input): hashed, checked against its pin (pinning it in kiln.lock
    /// if nothing does yet) and fetched. What `kiln run-tool` runs a tool
    /// from.
    pub fn input_entry(
        &mut self,
        t: &Target,
        input: &kiln_core::manifest::Input,
    ) -> Result<PathBuf, BuildError> {
        let r = inputs::resolve(&self.ctx, &mut self.pins, &self.built, t, input)?;
        let mut resolved = [r];
        self.ctx.materialize(t, &mut resolved)?;
        self.save_lock()?;
        let [r] = resolved;
        Ok(r.entry)
    }

    /// Pin in kiln.lock what the fixed-output steps (downloads such as the
    /// go recipe's `go mod download`) of `names` fetch where neither
    /// kiln.toml nor kiln.lock pins it: each target's recipe runs its
    /// downloads, with network, and is stopped at its first other tool
    /// step. What they fetched is kept, so the next build reuses it.
    /// Targets whose output is stored need nothing; targets that read
    /// other targets' outputs are not run (their pins come from `kiln
    /// build --fetch-unpinned`). Returns what was pinned: target, setting,
    /// hash.
    pub fn lock_fetches(
        &mut self,
        names: &[String],
    ) -> Result<Vec<(String, String, Sha256Hash)>, BuildError> {
        let mut pinned = Vec::new();
        let learnt = self.learn_fetches(names, &mut pinned);
        // What was learnt before a failure is kept all the same.
        self.save_lock()?;
        learnt.map(|()| pinned)
    }

    /// [`Self::lock_fetches`]'s walk, pinning into `pinned` as it goes.
    fn learn_fetches(
        &mut self,
        names: &[String],
        pinned: &mut Vec<(String, String, Sha256Hash)>,
    ) -> Result<(), BuildError> {
        let targets: Vec<&Target> = self.ctx.manifest.build_order(names)?;
        for t in targets {
            if t.inputs
                .values()
                .any(|i| matches!(i.source, kiln_core::manifest::Source::Target(_)))
            {
                continue;
            }
            let mut job = self.ctx.prepare(t, &mut self.pins, &self.built)?;
            if self.ctx.stored(&job).is_some() {
                continue;
            }
            self.ctx.materialize(t, &mut job.inputs)?;
            let steps = match self.ctx.run_as(&job, false, crate::runtime::Unpinned::Pin) {
                Ok((_staging, record)) => record
                    .execs
                    .into_iter()
                    .filter_map(|e| e.fixed_output)
                    .collect(),
                Err(BuildError::Recipe(crate::runtime::RecipeError::StoppedForLock {
                    pins,
                    ..
                })) => pins,
                Err(e) => return Err(e),
            };
            for step in steps {
                let key = kiln_core::lockfile::Lockfile::fetch_pin_key(&step.pin);
                // kiln.toml's own pin is the user's: never copied to kiln.lock.
                if key.is_none_or(|k| t.params.get(k).is_some()) {
                    continue;
                }
                if self.pins.lock.get(&t.name, &step.pin) != Some(step.hash) {
                    self.pins.pin_fetch(t, &step.pin, step.hash)?;
                    pinned.push((t.name.clone(), step.pin, step.hash));
                }
            }
        }
        Ok(())
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
        kiln_core::store::write_atomic(path, text.as_bytes(), kiln_core::store::Existing::Replace)
            .map_err(|source| BuildError::Io {
                action: "cannot write",
                path: path.clone(),
                source,
            })?;
        self.pins.changed = false;
        Ok(())
    }
}

impl<'a> Ctx<'a> {
    /// What host paths target `t` may read: its package's tree (the
    /// project's, without a workspace) and what the user allows.
    fn reach(&self, t: &Target) -> reach::Reach {
        reach::Reach::new(&t.dir, &self.opts.allow_paths)
    }

    /// The filter for a `path` input with `exclude` patterns: kiln's own
    /// result links are never source, whatever `-o` named them.
    fn source_filter(&self, exclude: &[String]) -> kiln_core::pathfilter::PathFilter {
        self.links_filter
            .get_or_init(|| {
                kiln_core::pathfilter::PathFilter::default()
                    .skipping_links_into(&self.store.entries_dir())
            })
            .with_patterns(exclude)
    }

    /// The entry `<hash>-<name>` if the store holds it, remembered once
    /// found (entries are never removed while a build holds the store).
    fn entry(&self, hash: &Sha256Hash, name: &str) -> Option<PathBuf> {
        let key = (*hash, name.to_string());
        if let Some(e) = self.entries.lock().ok()?.get(&key) {
            return Some(e.clone());
        }
        let found = self.store.entry(hash, name)?;
        if let Ok(mut m) = self.entries.lock() {
            m.insert(key, found.clone());
        }
        Some(found)
    }

    /// The entry holding content `hash`, whatever its name: from one
    /// listing of the store per session (10,000 targets do not list it
    /// 10,000 times), then the store itself for entries added since.
    fn find_by_hash(&self, hash: &Sha256Hash) -> Option<PathBuf> {
        let index = self.by_hash.get_or_init(|| {
            let mut index: HashMap<String, Vec<PathBuf>> = HashMap::new();
            if let Ok(rd) = std::fs::read_dir(self.store.entries_dir()) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some((prefix, _)) = name.split_once('-') {
                        index.entry(prefix.to_string()).or_default().push(e.path());
                    }
                }
            }
            index
        });
        let prefix = &hash.to_nix32()[..32];
        index
            .get(prefix)
            .into_iter()
            .flatten()
            .find(|p| self.store.holds(p, hash))
            .cloned()
            .or_else(|| self.store.find_by_hash(hash))
    }

    fn runtime(&self) -> Result<&Runtime, BuildError> {
        if let Some(r) = self.runtime.get() {
            return Ok(r);
        }
        let r = Runtime::new(&self.opts.compiled_dir)
            .map_err(|e| BuildError::Runtime(format!("{e:#}")))?;
        Ok(self.runtime.get_or_init(|| r))
    }

    /// The recipe's wasm bytes and hash, checked against kiln.toml / kiln.lock.
    fn resolve_recipe(&self, t: &Target, pins: &mut Pins) -> Result<Recipe, BuildError> {
        match &t.recipe {
            RecipeRef::Standard(name) => {
                let wasm =
                    crate::recipes::standard(name).ok_or_else(|| BuildError::UnknownRecipe {
                        name: name.clone(),
                        at: t.at.clone(),
                        known: crate::recipes::standard_names().join(", "),
                    })?;
                Ok(Recipe {
                    name: name.clone(),
                    wasm: Cow::Borrowed(wasm),
                    hash: crate::recipes::standard_hash(name)
                        .unwrap_or_else(|| Sha256Hash::of_bytes(wasm)),
                    entry: None,
                })
            }
            RecipeRef::Wasm {
                path,
                hash,
                hash_at,
            } => {
                let recipe_error = |reason: InputError| BuildError::Input {
                    target: t.name.clone(),
                    input: "recipe".into(),
                    at: t.at.clone(),
                    reason: Box::new(reason),
                };
                let real = self
                    .reach(t)
                    .check(path)
                    .map_err(|e| recipe_error(e.into()))?;
                if !real.is_file() {
                    return Err(recipe_error(InputError::Recipe(format!(
                        "recipe {} is not a file",
                        path.display()
                    ))));
                }
                let wasm = kiln_core::sidefile::read(
                    &real,
                    kiln_core::sidefile::Links::Follow,
                    kiln_core::sidefile::limits::RECIPE,
                )
                .map_err(|e| {
                    recipe_error(InputError::Recipe(format!(
                        "cannot read recipe {}: {e}",
                        path.display()
                    )))
                })?;
                // A local recipe is the user's own source, like a path
                // input: hashed on every build (the record names the hash),
                // checked only against a hash kiln.toml writes.
                let got = Sha256Hash::of_bytes(&wasm);
                if let Some(specified) = hash {
                    let at = hash_at.clone().unwrap_or_else(|| t.at.clone());
                    pins.check(t, "recipe", Some(*specified), at, got)?;
                }
                let name = path
                    .strip_prefix(&t.dir)
                    .unwrap_or(path)
                    .display()
                    .to_string();
                Ok(Recipe {
                    name,
                    wasm: Cow::Owned(wasm),
                    hash: got,
                    entry: self.store.entry_containing(&real).ok().flatten(),
                })
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
        let recipe = self.resolve_recipe(t, pins)?;
        let mut resolved: Vec<ResolvedInput> = Vec::new();
        for input in t.inputs.values() {
            resolved.push(inputs::resolve(self, pins, built, t, input)?);
        }
        let (params, locked_settings) = pins.params(t);
        let key = KeyMaterial {
            recipe: recipe.hash,
            params: &params,
            inputs: resolved.iter().map(|r| (r.name.as_str(), r.hash)).collect(),
            sandbox: self.opts.sandbox.as_str(),
            source_date_epoch: self.opts.source_date_epoch,
            output_hash: t.output_hash,
        }
        .key()?;
        Ok(Job {
            target: t,
            recipe,
            inputs: resolved,
            key,
            params,
            locked_settings,
        })
    }

    /// The stored output for `job`, else run its recipe and commit the
    /// output; with `check`, then run it once more and compare.
    fn execute(&self, job: Job<'_>, check: bool) -> Result<Built, BuildError> {
        let built = self.find_or_build(job, check)?;
        self.finished(&built);
        Ok(built)
    }

    /// Tell the reporter `built` is done.
    fn finished(&self, built: &Built) {
        self.opts.reporter.send(Event::TargetFinished {
            target: built.target.clone(),
            found: built.found,
        });
    }

    /// Tell the reporter `t` failed.
    fn failed(&self, t: &Target) {
        self.opts.reporter.send(Event::TargetFailed {
            target: t.name.clone(),
        });
    }

    /// [`Self::execute`] but for the report.
    fn find_or_build(&self, mut job: Job<'_>, check: bool) -> Result<Built, BuildError> {
        let t = job.target;
        // A stored output needs no lock: entries are committed whole.
        let mut stored = self.stored(&job);
        let _lock = match stored {
            Some(_) => None,
            None => {
                let lock = self.store.lock_or_wait(&job.key.to_hex(), |pid| {
                    let by = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                    self.opts.reporter.note(format!(
                        "waiting for another kiln build of {}{by} to finish",
                        t.name
                    ));
                })?;
                // Another kiln may have built it while this one waited.
                stored = self.stored(&job);
                Some(lock)
            }
        };
        let first = match stored {
            Some(b) => b,
            None if self.opts.mode == Mode::Lookup => {
                return Err(BuildError::NotBuilt {
                    target: t.name.clone(),
                });
            }
            None => match self.substitute(&job) {
                Some(b) => b,
                None => {
                    self.materialize(job.target, &mut job.inputs)?;
                    self.build_here(&job)?
                }
            },
        };
        if !check {
            return Ok(first);
        }
        self.materialize(job.target, &mut job.inputs)?;
        // Sealed like a store entry: what a rebuild leaves for inspection
        // keeps no setuid bit and no write permission either.
        // With empty caches: a cache must never change an output.
        let (staging, record) = self.run(&job, true)?;
        if record.output_hash == first.output_hash {
            return Ok(Built {
                checked: true,
                ..first
            });
        }
        self.keep_for_inspection(t, &first, staging.path().join("out"))
    }

    /// `job`'s output, if the store holds it.
    fn stored(&self, job: &Job<'_>) -> Option<Built> {
        let (entry, hash) = self.store.lookup_output(&job.key.hash())?;
        let output_hash = match hash {
            Some(h) => h,
            None => crate::record::read(&self.store, &entry).ok()?.output_hash,
        };
        Some(Built {
            target: job.target.name.clone(),
            entry,
            key: job.key,
            output_hash,
            found: true,
            checked: false,
            substituted_from: None,
        })
    }

    /// Run `job`'s recipe and commit its output with its record.
    fn build_here(&self, job: &Job<'_>) -> Result<Built, BuildError> {
        let t = job.target;
        let (staging, record) = self.run(job, false)?;
        // Fixed-output targets are named by their content, others by their key.
        let entry_hash = t.output_hash.unwrap_or(job.key.hash());
        let entry = self
            .store
            .commit_sealed(&staging.path().join("out"), &entry_hash, &t.local)?;
        crate::record::write(&self.store, &entry, &record).map_err(|source| BuildError::Io {
            action: "cannot write the build record of",
            path: entry.clone(),
            source,
        })?;
        self.store
            .record_output(&job.key.hash(), &entry, Some(&record.output_hash))?;
        Ok(Built {
            target: t.name.clone(),
            entry,
            key: job.key,
            output_hash: record.output_hash,
            found: false,
            checked: false,
            substituted_from: None,
        })
    }
}

impl schedule::Node for Target {
    fn name(&self) -> &str {
        &self.name
    }
    fn deps(&self) -> Vec<&str> {
        self.target_deps().collect()
    }
}
