//! The remote executor: a step planned as an Action, answered from the
//! engine's action cache or executed there, its outputs written back.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bazel_remote_apis::build::bazel::remote::execution::v2::{ActionResult, Digest};
use kiln_core::store::Store;

use super::action::{self, Planned};
use super::client::Client;
use super::execute::{self, Ended};
use super::merkle::{self, FileMemo};
use super::{RemoteError, RemoteSettings};
use crate::executor::{Placement, RemoteRunner};
use crate::sandbox::{OUTPUT_LIMIT, SandboxError, SandboxOutput, SandboxSpec};

/// Steps on one engine.
#[derive(Debug)]
pub struct RemoteExecutor {
    client: Client,
    shown: String,
    /// Every platform property, sorted by name.
    platform: Vec<(String, String)>,
    store: Store,
    memo: FileMemo,
    step_timeout: std::time::Duration,
    /// `--remote-cache`: steps run here; `Some(upload)`.
    cache_only: Option<bool>,
}

impl RemoteExecutor {
    pub fn connect(s: &RemoteSettings, store: &Store) -> Result<Self, RemoteError> {
        let client = Client::connect(s)?;
        let mut platform: Vec<(String, String)> = vec![
            ("OSFamily".into(), "linux".into()),
            ("ISA".into(), isa().into()),
        ];
        for (k, v) in &s.platform {
            platform.retain(|(name, _)| name != k);
            platform.push((k.clone(), v.clone()));
        }
        platform.sort();
        Ok(RemoteExecutor {
            client,
            shown: s.shown(),
            platform,
            store: store.clone(),
            memo: FileMemo::default(),
            step_timeout: s.step_timeout,
            cache_only: s.cache_only.then_some(s.upload),
        })
    }

    /// The action cache's answer or the engine's run; whether it was
    /// cached. `skip_cache`: run it even if the engine has an answer.
    fn result_for(
        &self,
        planned: &Planned,
        spec: &SandboxSpec,
        skip_cache: bool,
    ) -> Result<(ActionResult, bool), SandboxError> {
        if !skip_cache {
            match self.client.get_action_result(&planned.action) {
                Ok(Some(r)) if r.exit_code == 0 => return Ok((r, true)),
                Ok(_) => {}
                Err(s) => {
                    return Err(remote_err(RemoteError::status(
                        "asking the action cache",
                        &s,
                    )));
                }
            }
        }
        let mut reuploaded = false;
        loop {
            self.upload_missing(planned).map_err(remote_err)?;
            match execute::execute(&self.client, &planned.action, spec.timeout, skip_cache) {
                Ok(done) => return Ok(done),
                Err(Ended::MissingInputs(_)) if !reuploaded => reuploaded = true,
                Err(Ended::MissingInputs(why)) => {
                    return Err(remote_err(RemoteError::Engine(format!(
                        "inputs were uploaded twice and the engine still lacks them: {why}"
                    ))));
                }
                Err(Ended::Interrupted) => {
                    return Err(SandboxError::Interrupted(crate::interrupt::Interrupted));
                }
                Err(Ended::TimedOut) => {
                    return Err(SandboxError::TimedOut {
                        program: spec.program.clone(),
                        limit: spec.timeout,
                        capped_at: None,
                    });
                }
                Err(Ended::Failed(e)) => return Err(remote_err(e)),
            }
        }
    }

    fn upload_missing(&self, planned: &Planned) -> Result<(), RemoteError> {
        let missing = self
            .client
            .find_missing(planned.blobs.digests())
            .map_err(|s| RemoteError::status("asking which inputs the engine lacks", &s))?;
        self.client.upload(&planned.blobs, &missing)
    }

    /// What `result` says the step printed, then its outputs written back
    /// (so a failure to fetch the streams leaves /work and /out as they
    /// were).
    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        result: &ActionResult,
        planned: &Planned,
        spec: &SandboxSpec,
    ) -> Result<((Vec<u8>, bool), (Vec<u8>, bool)), RemoteError> {
        let stdout = self.stream(&result.stdout_raw, result.stdout_digest.as_ref())?;
        let stderr = self.stream(&result.stderr_raw, result.stderr_digest.as_ref())?;
        super::outputs::write_back(
            &self.client,
            result,
            &planned.outputs,
            spec.cwd.trim_start_matches('/'),
            &planned.blobs,
            &self.memo,
            spec.limits.disk_bytes.unwrap_or(u64::MAX),
        )?;
        Ok((stdout, stderr))
    }

    /// stdout or stderr of `result`, capped as a local run's is.
    fn stream(&self, raw: &[u8], digest: Option<&Digest>) -> Result<(Vec<u8>, bool), RemoteError> {
        match digest {
            Some(d) if raw.is_empty() && d.size_bytes > 0 => {
                if d.size_bytes as usize > OUTPUT_LIMIT {
                    // Not fetched whole: a local run keeps only the cap.
                    return Ok((
                        format!(
                            "kiln: this output ({} bytes) is on the engine as blob {}\n",
                            d.size_bytes,
                            merkle::show(d)
                        )
                        .into_bytes(),
                        true,
                    ));
                }
                Ok((self.client.read_blob(d, OUTPUT_LIMIT as u64)?, false))
            }
            _ => {
                let truncated = raw.len() > OUTPUT_LIMIT;
                Ok((raw[..raw.len().min(OUTPUT_LIMIT)].to_vec(), truncated))
            }
        }
    }

    /// Where `entry`'s tree is cached: beside it, when it is a store entry.
    fn tree_cache(&self, entry: &Path) -> Option<PathBuf> {
        (entry.parent() == Some(self.store.entries_dir().as_path()))
            .then(|| self.store.tree_path(entry))
    }
}

impl RemoteRunner for RemoteExecutor {
    fn executes(&self) -> bool {
        self.cache_only.is_none()
    }

    fn run(&self, spec: &SandboxSpec) -> Result<(SandboxOutput, Option<Placement>), SandboxError> {
        let started = Instant::now();
        let cache = |p: &Path| self.tree_cache(p);
        let planned = action::plan(spec, self.step_timeout, &self.platform, &cache, &self.memo)
            .map_err(remote_err)?;
        let (mut result, mut cached) = match self.cache_only {
            None => self.result_for(&planned, spec, false)?,
            Some(upload) => match self.client.get_action_result(&planned.action) {
                Ok(Some(r)) if r.exit_code == 0 => (r, true),
                // A miss, or a cache that cannot answer: the step runs here.
                _ => return self.run_here(spec, &planned, upload).map(|out| (out, None)),
            },
        };
        let mut applied = self.apply(&result, &planned, spec);
        if applied.is_err() && cached {
            // A cached answer whose blobs are gone (evicted, or never
            // there): the step is run again, never taken from it.
            match self.cache_only {
                Some(upload) => {
                    return self.run_here(spec, &planned, upload).map(|out| (out, None));
                }
                None => {
                    (result, cached) = self.result_for(&planned, spec, true)?;
                    applied = self.apply(&result, &planned, spec);
                }
            }
        }
        let ((stdout, stdout_truncated), (stderr, stderr_truncated)) =
            applied.map_err(remote_err)?;
        let worker = result
            .execution_metadata
            .as_ref()
            .map(|m| super::clean(&m.worker))
            .filter(|w| !w.is_empty());
        Ok((
            SandboxOutput {
                exit_code: Some(result.exit_code),
                signal: None,
                stdout,
                stderr,
                stdout_truncated,
                stderr_truncated,
                duration: started.elapsed(),
                cpu: None,
                peak_memory: None,
            },
            Some(Placement {
                executor: self.shown.clone(),
                instance: super::clean(&self.client.instance),
                action: merkle::show(&planned.action),
                worker,
                cached,
            }),
        ))
    }
}

fn remote_err(e: RemoteError) -> SandboxError {
    SandboxError::Remote(e.to_string())
}

/// The REAPI `ISA` of this machine, as Bazel's platforms name it.
fn isa() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "aarch64",
        other => other,
    }
}

impl RemoteExecutor {
    /// `--remote-cache`: run the step in this machine's sandbox; with the
    /// user's consent, a success is written to the action cache. A cache
    /// that refuses the write costs a note on the step's stderr, never the
    /// build.
    fn run_here(
        &self,
        spec: &SandboxSpec,
        planned: &Planned,
        upload: bool,
    ) -> Result<SandboxOutput, SandboxError> {
        if !upload {
            return crate::sandbox::run(spec, crate::sandbox::SandboxMode::Hermetic);
        }
        // A result others will take for this action must be what its
        // inputs give: the step runs with empty tool caches, as the
        // action says (a warm cache, which a project's own earlier steps
        // may have planted, never reaches the shared cache).
        let mut fresh = spec.clone();
        let mut scratch = Vec::new();
        for m in fresh
            .mounts
            .iter_mut()
            .filter(|m| m.guest.starts_with("/cache/"))
        {
            let parent = spec
                .mounts
                .iter()
                .find(|w| w.guest == "/work")
                .and_then(|w| w.host.parent())
                .unwrap_or(std::path::Path::new("/tmp"));
            let dir = tempfile::Builder::new()
                .prefix(".kiln-fresh-cache-")
                .tempdir_in(parent)
                .map_err(|e| {
                    remote_err(RemoteError::Setup(format!(
                        "cannot make an empty cache: {e}"
                    )))
                })?;
            m.host = dir.path().to_path_buf();
            scratch.push(dir);
        }
        let mut out = crate::sandbox::run(&fresh, crate::sandbox::SandboxMode::Hermetic)?;
        for dir in scratch {
            let _ = kiln_core::store::make_writable(dir.path());
            drop(dir);
        }
        if upload
            && out.exit_code == Some(0)
            && !out.stdout_truncated
            && !out.stderr_truncated
            && let Err(e) = self.upload_result(planned, &out)
        {
            out.stderr.extend_from_slice(
                format!("\nkiln: this step's result was not written to the remote cache: {e}\n")
                    .as_bytes(),
            );
        }
        Ok(out)
    }

    /// Write what the step left (its writable directories, stdout and
    /// stderr) to the CAS, then the result to the action cache.
    fn upload_result(&self, planned: &Planned, out: &SandboxOutput) -> Result<(), RemoteError> {
        use bazel_remote_apis::build::bazel::remote::execution::v2::{
            ExecutedActionMetadata, OutputDirectory,
        };
        use prost::Message;
        let mut blobs = merkle::Blobs::default();
        let mut dirs = Vec::new();
        for o in &planned.outputs {
            let root = merkle::hash_dir(&o.host, &self.memo, &mut blobs)?;
            let tree = merkle::as_tree(&root, &blobs).ok_or_else(|| {
                RemoteError::Setup(format!("cannot assemble the tree of {}", o.guest))
            })?;
            let tree_digest = blobs.add_message(tree.encode_to_vec());
            dirs.push(OutputDirectory {
                path: o.path.clone(),
                tree_digest: Some(tree_digest),
                is_topologically_sorted: false,
                root_directory_digest: Some(root),
            });
        }
        let stdout = blobs.add_message(out.stdout.clone());
        let stderr = blobs.add_message(out.stderr.clone());
        let missing = self
            .client
            .find_missing(blobs.digests())
            .map_err(|s| RemoteError::status("asking which outputs the cache lacks", &s))?;
        self.client.upload(&blobs, &missing)?;
        let result = ActionResult {
            output_directories: dirs,
            exit_code: 0,
            stdout_digest: Some(stdout),
            stderr_digest: Some(stderr),
            execution_metadata: Some(ExecutedActionMetadata {
                worker: "kiln (this machine)".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.client
            .update_action_result(&planned.action, &result)
            .map_err(|s| RemoteError::status("writing the action cache", &s))
    }
}
