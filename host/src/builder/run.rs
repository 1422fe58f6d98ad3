//! Running one job: a fresh staging directory (`work/`, `out/`, the
//! sandbox's `/etc` files, links to file inputs), the recipe, the output's
//! hash checked against `output_hash`, and the build record.

use crate::executor::Executor;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_core::hash::Sha256Hash;

use super::{BuildError, Ctx, Job, ResolvedInput};
use crate::record::BuildRecord;
use crate::runtime::{RecipeError, RecipeRun, RunInput, ToolCachePlan, Unpinned};

impl Ctx<'_> {
    /// Run `job`'s recipe in a fresh staging directory; its `out/` holds
    /// the output, checked against the target's `output_hash`, read-only
    /// and synced, ready to commit. `check`: the `--check` rebuild, here
    /// and with fresh tool caches whatever the executor.
    pub(super) fn run(
        &self,
        job: &Job<'_>,
        check: bool,
    ) -> Result<(tempfile::TempDir, BuildRecord), BuildError> {
        let unpinned = if self.opts.fetch_unpinned {
            Unpinned::Report
        } else {
            Unpinned::Deny
        };
        self.run_as(job, check, unpinned)
    }

    /// [`Ctx::run`], with what a fixed-output step nothing pins may do.
    pub(super) fn run_as(
        &self,
        job: &Job<'_>,
        check: bool,
        unpinned: Unpinned,
    ) -> Result<(tempfile::TempDir, BuildRecord), BuildError> {
        let t = job.target;
        self.opts
            .reporter
            .send(crate::report::Event::TargetStarted {
                target: t.name.clone(),
            });
        let started = Instant::now();
        let staging = self
            .store
            .temp_dir(&format!("build-{}-", kiln_core::address::flat(&t.name)))?;
        let dirs =
            prepare_staging(staging.path(), &job.inputs).map_err(|source| BuildError::Io {
                action: "cannot prepare the build directory",
                path: staging.path().to_path_buf(),
                source,
            })?;
        let run = RecipeRun {
            target: t.name.clone(),
            params_json: job.params.to_string(),
            inputs: job
                .inputs
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
            seed: job.key.hash().0,
            limits: self.opts.limits,
            sandbox: self.opts.sandbox,
            executor: if check {
                Executor::Local(self.opts.sandbox)
            } else {
                self.opts.executor.clone()
            },
            output_hash: t.output_hash,
            unpinned,
            locked_settings: job.locked_settings.clone(),
            reporter: self.opts.reporter.clone(),
            caches: if check || !self.opts.tool_caches {
                ToolCachePlan::Fresh {
                    dir: staging.path().join("caches"),
                }
            } else {
                self.tool_cache(t, &job.recipe.hash)
            },
            // --fetch-unpinned keeps nothing it fetched.
            fetch_store: (unpinned != Unpinned::Report).then(|| self.store.clone()),
            // Seeds fill kept caches only: never the empty ones of
            // --no-cache and --check, which must not depend on them, nor
            // unsandboxed steps, whose seed would see the host.
            seeds: (!check
                && self.opts.tool_caches
                && self.opts.sandbox == crate::sandbox::SandboxMode::Hermetic)
                .then(|| self.store.clone()),
        };
        let runtime = self.runtime()?;
        let component = runtime.load(&job.recipe.wasm).map_err(|e| {
            BuildError::Recipe(RecipeError::Load {
                target: t.name.clone(),
                message: format!("{e:#}"),
            })
        })?;
        let report = runtime.run(&component, &run)?;
        // A tool killed by Ctrl-C looks to the recipe like any failed tool,
        // and a recipe may carry on: what it left is never an output.
        if crate::interrupt::interrupted() {
            return Err(BuildError::Recipe(RecipeError::Interrupted {
                target: t.name.clone(),
            }));
        }

        let output_hash = kiln_core::store::hash_and_seal(&dirs.out)?;
        if let Some(specified) = t.output_hash
            && specified != output_hash
        {
            // Let the staging directory be deleted.
            let _ = kiln_core::store::make_writable(&dirs.out);
            return Err(BuildError::OutputHashMismatch {
                target: t.name.clone(),
                at: Box::new(t.at.clone()),
                specified,
                got: output_hash,
            });
        }
        let record = self.record_run(job, &report, output_hash, started.elapsed())?;
        Ok((staging, record))
    }
}

impl Ctx<'_> {
    /// Where target `t` of this project keeps its tool caches.
    /// Where `t`'s kept tool caches live: one directory per project, target
    /// and recipe. The recipe's hash is part of it: a recipe replaced under
    /// the same name (a local `.wasm` rebuilt, `kiln run` of another file
    /// at the same path) never inherits what the old one's tools wrote.
    fn tool_cache(&self, t: &kiln_core::manifest::Target, recipe: &Sha256Hash) -> ToolCachePlan {
        let project = fs::canonicalize(&self.manifest.dir).unwrap_or(self.manifest.dir.clone());
        let owner = format!(
            "{}\n{}\nrecipe {}\n",
            project.display(),
            t.name,
            recipe.to_sri()
        );
        let scope =
            kiln_core::hash::Sha256Hash::of_bytes(format!("kiln tool cache 1\0{owner}").as_bytes());
        ToolCachePlan::Persistent {
            dir: self.store.tool_cache_dir(&scope),
            owner,
        }
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
    for (name, text) in crate::sandbox::policy::etc_files() {
        fs::write(dirs.etc.join(name), text)?;
    }
    for i in inputs.iter().filter(|i| !i.is_dir) {
        let link = dirs.files.join(&i.name);
        if fs::hard_link(&i.entry, &link).is_err() {
            fs::copy(&i.entry, &link)?;
        }
    }
    Ok(dirs)
}
