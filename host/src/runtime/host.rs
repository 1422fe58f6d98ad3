//! What a recipe may ask of the host: the imports of `wit/recipe.wit`.
//! One glue file per interface (`target`, `tool_exec`, `files`,
//! `assemble`, `log`: `impl Host` blocks that only translate); the work
//! lives beside them (`exec`, `fixed_output`, `tool_caches`, `seeds`,
//! `paths`) and in the runtime's plain modules. This file holds the run's
//! state ([`HostState`]: the run's description plus its counters) and the
//! helpers every interface shares.
//!
//! Two levels of result: the outer `wasmtime::Result` traps the recipe
//! (time limit, oversized log), the inner one is the WIT error the recipe
//! sees (undeclared tool, bad path). Nothing a recipe sends can make the
//! host panic.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

mod assemble;
mod exec;
mod files;
mod fixed_output;
mod log;
mod paths;
mod seeds;
pub(crate) use seeds::prune_indexes as prune_seed_indexes;
mod target;
mod tool_caches;
mod tool_exec;

use super::bindings::kiln::recipe::types::Error as FsError;
use super::budget::Stop;
use super::guest_fs::GuestFs;
use super::guest_fs::measure_tool_dirs;
use super::{RecipeError, RecipeRun, RunReport};

use crate::record::LogSource;
use crate::report::Level;
pub use tool_caches::ToolCachePlan;

/// The largest log message a recipe may send.
pub const LOG_MESSAGE_LIMIT: usize = 1024 * 1024;

impl From<Level> for LogSource {
    fn from(l: Level) -> Self {
        match l {
            Level::Debug => LogSource::Debug,
            Level::Info => LogSource::Info,
            Level::Warn => LogSource::Warn,
            Level::Error => LogSource::Error,
        }
    }
}

pub(super) struct HostState {
    /// What the builder asked for: the target, its inputs and directories,
    /// limits, caches, where events go.
    run: RecipeRun,
    deadline: Instant,
    /// Bytes of log messages so far.
    log_bytes: usize,
    /// What the run records as it goes (execs, caches used, log lines).
    report: Mutex<RunReport>,
    /// Bytes this run's cache seeds added to the store: shared entries,
    /// but written for this build, so its disk budget counts them.
    seeded_bytes: std::sync::atomic::AtomicU64,
}

impl HostState {
    pub(super) fn new(run: &RecipeRun, deadline: Instant) -> Self {
        HostState {
            run: run.clone(),
            deadline,
            log_bytes: 0,
            report: Mutex::new(RunReport::default()),
            seeded_bytes: Default::default(),
        }
    }

    /// What the run recorded, taken (the run is over).
    pub(super) fn take_report(&self) -> RunReport {
        std::mem::take(&mut *self.report())
    }

    /// A trap carrying `err`: the runtime finds it again by downcasting.
    fn trap(&self, err: RecipeError) -> wasmtime::Error {
        wasmtime::Error::new(err)
    }

    fn check_deadline(&self) -> wasmtime::Result<()> {
        if crate::interrupt::interrupted() {
            return Err(self.trap(RecipeError::Interrupted {
                target: self.run.target.clone(),
            }));
        }
        if Instant::now() >= self.deadline {
            return Err(self.trap(RecipeError::TimeLimit {
                target: self.run.target.clone(),
                limit: self.run.limits.timeout,
                note: String::new(),
            }));
        }
        Ok(())
    }

    /// Trap unless `/work` and `/out` (with `caches`, also the tool caches
    /// mounted so far) together fit the disk budget. Caches are walked once,
    /// when the recipe ends: they can be large, and are never hashed.
    pub(super) fn check_disk(&self, caches: bool) -> wasmtime::Result<()> {
        self.disk_used(caches).map(|_| ())
    }

    /// The bytes under `/work` and `/out` (with `caches`, the tool caches
    /// too); a trap past the budget or the deadline, or if they cannot be
    /// read.
    fn disk_used(&self, caches: bool) -> wasmtime::Result<u64> {
        let caches: Vec<std::path::PathBuf> = if caches {
            self.report()
                .caches
                .iter()
                // A remote step's cache is the engine's, never here.
                .filter(|c| c.kind != crate::record::ToolCacheKind::NoneRemote)
                .map(|c| c.host_dir.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut dirs: Vec<&Path> = vec![&self.run.work_dir, &self.run.out_dir];
        dirs.extend(caches.iter().map(|d| d.as_path()));
        // What this run's cache seeds added to the store counts too.
        let seeded = self.seeded_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let left = self.run.limits.disk_bytes.saturating_sub(seeded);
        match measure_tool_dirs(&dirs, left, self.deadline) {
            Ok(used) => Ok(used.saturating_add(seeded)),
            Err(Stop::Failed(e)) => Err(self.trap(RecipeError::Failed {
                target: self.run.target.clone(),
                message: format!("measuring /work and /out: {}", super::guest_fs::message(&e)),
            })),
            Err(stop) => self
                .stop_result(Err(stop), seeded)?
                .map_err(|e| wasmtime::Error::msg(format!("{e:?}"))),
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, RunReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A host error as a sentence with its kind, for messages (a recipe's
/// `build-error.host`).
pub(super) fn describe(e: &FsError) -> String {
    let kind = match e {
        FsError::BadPath(_) => "bad path",
        FsError::NotFound(_) => "not found",
        FsError::WrongKind(_) => "wrong kind of file",
        FsError::Invalid(_) => "invalid request",
        FsError::UndeclaredTool(_) => "undeclared tool",
        FsError::NetworkDenied(_) => "network denied",
        FsError::Io(_) => "I/O error",
        FsError::Failed(_) => "could not run",
    };
    let message = super::guest_fs::message(e);
    // The SDK's messages already name the kind, after their context.
    if message.contains(&format!("{kind}: ")) {
        message.to_string()
    } else {
        format!("{kind}: {message}")
    }
}

impl HostState {
    /// The recipe's directories, for host calls that take its paths.
    fn guest_fs(&self) -> GuestFs<'_> {
        GuestFs {
            work: &self.run.work_dir,
            out: &self.run.out_dir,
            inputs: &self.run.inputs,
        }
    }

    /// A host loop's stop as the recipe sees it: bad input is its error;
    /// the deadline or the disk budget (with `used` bytes there before the
    /// call) traps.
    fn stop_result<T>(
        &self,
        r: Result<T, Stop>,
        used: u64,
    ) -> wasmtime::Result<Result<T, FsError>> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(Stop::Failed(m)) => Ok(Err(m)),
            Err(Stop::TimedOut) => {
                self.check_deadline()?;
                Err(wasmtime::Error::msg("the time limit passed"))
            }
            Err(Stop::TooLarge(bytes)) => Err(self.trap(RecipeError::DiskLimit {
                target: self.run.target.clone(),
                bytes: used.saturating_add(bytes),
                limit: self.run.limits.disk_bytes,
            })),
        }
    }
}
