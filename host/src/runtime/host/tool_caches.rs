//! Tool caches (a command's `caches`): host-kept directories mounted
//! read-write for a command, like BuildKit's `RUN --mount=type=cache`.
//!
//! The builder decides where a run's caches live ([`ToolCachePlan`]): under the
//! store, one directory per project target (so a build's tests can reach
//! only later builds of the same target), or fresh and empty for this run
//! (`--no-cache`, and `--check`'s second build, which must not depend on
//! them). Within it, each recipe-given key gets its own directory. Cache
//! contents never enter a build key.

use std::path::{Path, PathBuf};

use kiln_core::hash::Sha256Hash;

use super::HostState;
use crate::record::{SeedOutcome, SeedUse, ToolCacheKind, ToolCacheUse};
use crate::runtime::bindings::kiln::recipe::tool_exec;
use crate::sandbox::Mount;

/// Where a recipe run's tool caches live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCachePlan {
    /// Kept across builds of this target in `dir`, created when a command
    /// first mounts a cache; its `owner` file (`owner`'s text) is rewritten
    /// then, so its mtime says when the target last used it (for gc).
    Persistent { dir: PathBuf, owner: String },
    /// Empty at the start of this run, in `dir` (deleted with the staging).
    Fresh { dir: PathBuf },
}

impl ToolCachePlan {
    fn dir(&self) -> &Path {
        match self {
            ToolCachePlan::Persistent { dir, .. } | ToolCachePlan::Fresh { dir } => dir,
        }
    }
}

/// The longest cache path component.
const MAX_NAME: usize = 100;

impl HostState {
    /// Mounts for `caches`, creating their directories; records each
    /// cache's first use in the run report.
    pub(super) fn cache_mounts(
        &self,
        caches: &[tool_exec::Cache],
    ) -> Result<Vec<Mount>, tool_exec::Error> {
        let mut mounts: Vec<Mount> = Vec::new();
        for c in caches {
            let name = c.path.strip_prefix("/cache/").unwrap_or("");
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                return Err(tool_exec::Error::Failed(format!(
                    "cache path '{}' must be /cache/<name>, the name of [A-Za-z0-9._-] and at most {MAX_NAME} bytes",
                    c.path
                )));
            }
            if mounts.iter().any(|m| m.guest == c.path) {
                return Err(tool_exec::Error::Failed(format!(
                    "cache path '{}' is given twice",
                    c.path
                )));
            }
            let dir = self.cache_dir(&c.path, &c.key);
            if self.run.executor.is_remote() {
                // Not created: a remote step gets an empty directory there.
                self.note_cache_use(&c.path, &dir, None);
                mounts.push(Mount {
                    host: dir,
                    guest: c.path.clone(),
                    writable: true,
                });
                continue;
            }
            std::fs::create_dir_all(&dir).map_err(|e| {
                tool_exec::Error::Failed(format!("cannot create cache {}: {e}", c.path))
            })?;
            if let ToolCachePlan::Persistent { dir: root, owner } = &self.run.caches {
                kiln_core::store::write_atomic(
                    &root.join("owner"),
                    owner.as_bytes(),
                    kiln_core::store::Existing::Replace,
                )
                .map_err(|e| {
                    tool_exec::Error::Failed(format!("cannot mark cache {} used: {e}", c.path))
                })?;
            }
            // How warm the target's own builds left it, then the seed.
            self.note_cache_use(&c.path, &dir, None);
            if let (Some(seed), Some(store)) = (&c.seed, &self.run.seeds) {
                let seeded = self.seed_cache(store, &dir, seed)?;
                self.note_cache_use(&c.path, &dir, Some(seeded));
            }
            mounts.push(Mount {
                host: dir,
                guest: c.path.clone(),
                writable: true,
            });
        }
        Ok(mounts)
    }

    /// Where the cache `key` at `path` lives on the host. The key names
    /// the directory: a different key, a different cache. Hashed, so any
    /// string is a safe name.
    fn cache_dir(&self, path: &str, key: &str) -> PathBuf {
        let id = Sha256Hash::of_bytes(format!("{path}\0{key}").as_bytes()).to_hex();
        self.run.caches.dir().join(&id[..32])
    }

    /// `tool-exec.cache-wants-seed`: whether a seed would be used: the
    /// cache is kept here (seeds are on, the steps run here) and empty.
    pub(super) fn seed_would_be_used(&self, key: &str, path: &str) -> bool {
        self.run.seeds.is_some()
            && !self.run.executor.is_remote()
            && !std::fs::read_dir(self.cache_dir(path, key))
                .is_ok_and(|mut entries| entries.next().is_some())
    }

    fn note_cache_use(&self, path: &str, dir: &Path, seed: Option<SeedUse>) {
        let mut report = self.report();
        if let Some(used) = report.caches.iter_mut().find(|u| u.path == path) {
            // A later command's seed that copied, ran or failed says more
            // than one that found the cache already seeded.
            if let Some(seed) = seed
                && (used.seed.is_none()
                    || seed.outcome != SeedOutcome::Reused
                    || seed.files_copied > 0)
            {
                used.seed = Some(seed);
            }
            return;
        }
        let kiln_core::usage::Usage {
            files: files_before,
            bytes: bytes_before,
        } = kiln_core::usage::usage(dir);
        report.caches.push(ToolCacheUse {
            path: path.to_string(),
            kind: match self.run.caches {
                _ if self.run.executor.is_remote() => ToolCacheKind::NoneRemote,
                ToolCachePlan::Persistent { .. } => ToolCacheKind::Persistent,
                ToolCachePlan::Fresh { .. } => ToolCacheKind::Fresh,
            },
            files_before,
            bytes_before,
            seed,
            host_dir: dir.to_path_buf(),
        });
    }
}
