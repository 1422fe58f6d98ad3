//! The builder: turns kiln.toml targets into store entries.
//!
//! For each target, dependencies first: resolve the recipe and every input
//! to a hashed store entry, check each hash against kiln.toml or kiln.lock
//! *before* any recipe runs, compute the build key, return the stored output
//! on a hit, otherwise run the recipe in a staging directory and commit
//! `/out` atomically with its build record. Nothing here touches wasmtime
//! (see [`crate::runtime`]) or parses argv (see [`crate::cli`]).

mod inputs;
pub mod record;

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_core::hash::Sha256Hash;
use kiln_core::key::KeyMaterial;
use kiln_core::lockfile::Lockfile;
use kiln_core::manifest::{Location, Manifest, RecipeRef, Target};
use kiln_core::pathfilter::PathFilter;
use kiln_core::store::{Store, StoreError, content_hash};

use crate::runtime::{Limits, RecipeError, RecipeRun, RunInput, Runtime};
use crate::sandbox::SandboxMode;
pub use inputs::ResolvedInput;
use record::BuildRecord;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
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
    store: Store,
    manifest: &'a Manifest,
    lock: Lockfile,
    lock_path: PathBuf,
    lock_changed: bool,
    opts: BuildOptions,
    runtime: OnceCell<Runtime>,
    built: BTreeMap<String, Built>,
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
            store,
            manifest,
            lock,
            lock_path,
            lock_changed: false,
            opts,
            runtime: OnceCell::new(),
            built: BTreeMap::new(),
        })
    }

    /// The store this builder writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Build `names` and their dependencies, in dependency order.
    pub fn build(&mut self, names: &[String]) -> Result<Vec<Built>, BuildError> {
        let order: Vec<String> = self
            .manifest
            .build_order(names)
            .map_err(BuildError::Other)?
            .iter()
            .map(|t| t.name.clone())
            .collect();
        for name in order {
            if !self.built.contains_key(&name) {
                let built = self.build_one(&self.manifest.targets[&name])?;
                self.built.insert(name, built);
            }
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
            .manifest
            .build_order(names)
            .map_err(BuildError::Other)?;
        for t in targets {
            self.resolve_recipe(t)?;
            for input in t.inputs.values() {
                if !matches!(input.source, kiln_core::manifest::Source::Target(_)) {
                    self.resolve_input(t, input)?;
                }
            }
        }
        self.save_lock()
    }

    /// Forget pins before `lock_inputs` re-pins them (`kiln lock --update`).
    pub fn forget_pins(&mut self, input: Option<&str>) {
        self.lock.forget(input);
        self.lock_changed = true;
    }

    fn save_lock(&mut self) -> Result<(), BuildError> {
        if !self.lock_changed {
            return Ok(());
        }
        let text = self.lock.render();
        let tmp = self.lock_path.with_extension("lock.tmp");
        fs::write(&tmp, text)
            .and_then(|_| fs::rename(&tmp, &self.lock_path))
            .map_err(|e| {
                BuildError::Other(format!("cannot write {}: {e}", self.lock_path.display()))
            })?;
        self.lock_changed = false;
        Ok(())
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
    fn resolve_recipe(&mut self, t: &Target) -> Result<(String, Vec<u8>, Sha256Hash), BuildError> {
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
                let wasm = fs::read(path).map_err(|e| BuildError::Input {
                    target: t.name.clone(),
                    input: kiln_core::lockfile::RECIPE_KEY.into(),
                    at: t.at.clone(),
                    message: format!("cannot read recipe {}: {e}", path.display()),
                })?;
                let got = Sha256Hash::of_bytes(&wasm);
                let at = hash_at.clone().unwrap_or_else(|| t.at.clone());
                self.check_pin(t, kiln_core::lockfile::RECIPE_KEY, *hash, at, got)?;
                Ok((path.display().to_string(), wasm, got))
            }
        }
    }

    /// Compare `got` with the hash kiln.toml specifies, or kiln.lock pins
    /// (pinning it when neither does and the content is remote or a recipe).
    fn check_pin(
        &mut self,
        t: &Target,
        input: &str,
        specified: Option<Sha256Hash>,
        at: Location,
        got: Sha256Hash,
    ) -> Result<(), BuildError> {
        if let Some(specified) = specified {
            if specified != got {
                return Err(BuildError::HashMismatch(Box::new(HashMismatch {
                    target: t.name.clone(),
                    input: input.to_string(),
                    at,
                    specified,
                    got,
                    fix: format!(
                        "if the new content is what you want, write hash = \"{got}\" in {}",
                        self.manifest.file.display()
                    ),
                })));
            }
            return Ok(());
        }
        match self.lock.get(&t.name, input) {
            Some(pinned) if pinned == got => Ok(()),
            Some(pinned) => Err(BuildError::HashMismatch(Box::new(HashMismatch {
                target: t.name.clone(),
                input: input.to_string(),
                at,
                specified: pinned,
                got,
                fix: format!(
                    "kiln.lock pinned it; if the change is expected run `kiln lock --update {input}`"
                ),
            }))),
            None if self.opts.locked => Err(BuildError::NotLocked {
                target: t.name.clone(),
                input: input.to_string(),
                at,
                lockfile: self.lock_path.display().to_string(),
            }),
            None => {
                self.lock_changed |= self.lock.set(&t.name, input, got);
                Ok(())
            }
        }
    }

    fn build_one(&mut self, t: &Target) -> Result<Built, BuildError> {
        let started = Instant::now();
        let (recipe_name, wasm, recipe_hash) = self.resolve_recipe(t)?;
        let mut resolved: Vec<ResolvedInput> = Vec::new();
        for input in t.inputs.values() {
            resolved.push(self.resolve_input(t, input)?);
        }
        let key = KeyMaterial {
            recipe: recipe_hash,
            params: &t.params,
            inputs: resolved.iter().map(|r| (r.name.as_str(), r.hash)).collect(),
            sandbox: self.opts.sandbox.as_str(),
            source_date_epoch: self.opts.source_date_epoch,
            output_hash: t.output_hash,
        }
        .key();

        let _lock = self.store.lock(&key.to_hex())?;
        if let Some(entry) = self.store.lookup_output(&key)
            && let Ok(rec) = record::read(&self.store, &entry)
        {
            return Ok(Built {
                target: t.name.clone(),
                entry,
                key,
                output_hash: rec.output_hash,
                cached: true,
            });
        }

        let staging = self.store.temp_dir(&format!("build-{}-", t.name))?;
        let dirs = prepare_staging(staging.path(), &resolved)
            .map_err(|e| BuildError::Other(format!("preparing the build directory: {e}")))?;
        let run = RecipeRun {
            target: t.name.clone(),
            params_json: t.params.to_string(),
            inputs: resolved
                .iter()
                .map(|r| RunInput {
                    name: r.name.clone(),
                    hash: r.hash.to_sri(),
                    host_path: r.entry.clone(),
                    is_dir: r.is_dir,
                })
                .collect(),
            work_dir: dirs.work,
            out_dir: dirs.out.clone(),
            etc_dir: dirs.etc,
            file_inputs_dir: dirs.files,
            source_date_epoch: self.opts.source_date_epoch,
            seed: key.0,
            limits: self.opts.limits,
            sandbox: self.opts.sandbox,
            network_allowed: t.output_hash.is_some(),
            echo: self.opts.echo,
        };
        let runtime = self.runtime()?;
        let component = runtime.load(&wasm).map_err(|e| {
            BuildError::Recipe(RecipeError::Load {
                target: t.name.clone(),
                message: format!("{e:#}"),
            })
        })?;
        let report = runtime.run(&component, &run)?;

        let output_hash = kiln_core::nar::hash_path(&dirs.out).map_err(StoreError::from)?;
        if let Some(specified) = t.output_hash
            && specified != output_hash
        {
            return Err(BuildError::OutputHashMismatch {
                target: t.name.clone(),
                at: Box::new(t.at.clone()),
                specified,
                got: output_hash,
            });
        }
        let record = BuildRecord::new(
            self.manifest,
            t,
            &recipe_name,
            recipe_hash,
            &resolved,
            &report,
            self.opts.sandbox,
            output_hash,
            started.elapsed(),
        );
        // Fixed-output targets are named by their content, others by their key.
        let entry_hash = t.output_hash.unwrap_or(key);
        let entry = self.store.commit(&dirs.out, &entry_hash, &t.name)?;
        record::write(&self.store, &entry, &record)
            .map_err(|e| BuildError::Other(format!("writing the build record: {e}")))?;
        self.store.record_output(&key, &entry)?;
        Ok(Built {
            target: t.name.clone(),
            entry,
            key,
            output_hash,
            cached: false,
        })
    }

    fn resolve_input(
        &mut self,
        t: &Target,
        input: &kiln_core::manifest::Input,
    ) -> Result<ResolvedInput, BuildError> {
        let resolved = inputs::resolve(self, t, input)?;
        Ok(resolved)
    }
}

struct StagingDirs {
    work: PathBuf,
    out: PathBuf,
    etc: PathBuf,
    files: PathBuf,
}

/// `work/`, `out/`, the sandbox's passwd/group, and links to file inputs.
fn prepare_staging(root: &Path, inputs: &[ResolvedInput]) -> std::io::Result<StagingDirs> {
    let dirs = StagingDirs {
        work: root.join("work"),
        out: root.join("out"),
        etc: root.join("etc"),
        files: root.join("inputs"),
    };
    for d in [&dirs.work, &dirs.out, &dirs.etc, &dirs.files] {
        fs::create_dir(d)?;
    }
    let uid = crate::sandbox::BUILD_UID;
    fs::write(
        dirs.etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/noshell\nkiln:x:{uid}:{uid}:kiln build user:/homeless-shelter:/noshell\nnobody:x:65534:65534:nobody:/:/noshell\n"
        ),
    )?;
    fs::write(
        dirs.etc.join("group"),
        format!("root:x:0:\nkiln:x:{uid}:\nnogroup:x:65534:\n"),
    )?;
    for i in inputs.iter().filter(|i| !i.is_dir) {
        let link = dirs.files.join(&i.name);
        if fs::hard_link(&i.entry, &link).is_err() {
            fs::copy(&i.entry, &link)?;
        }
    }
    Ok(dirs)
}

/// The content hash of a path input, for `kiln hash` and the builder alike.
pub fn hash_local(path: &Path, exclude: &[String]) -> Result<Sha256Hash, kiln_core::nar::NarError> {
    content_hash(path, &PathFilter::new(exclude))
}
