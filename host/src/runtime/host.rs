//! What a recipe may ask of the host: the imports of `wit/recipe.wit`
//! (`target`, `tool-exec`, `files`, `assemble`, `log`).
//!
//! Two levels of result: the outer `wasmtime::Result` traps the recipe
//! (time limit, oversized log), the inner one is the WIT error the recipe
//! sees (undeclared tool, bad path). Nothing a recipe sends can make the
//! host panic.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod caches;
mod exec;
mod fetch;
mod paths;

use super::assemble::Stop;
use super::bindings::kiln::recipe::types::Error as FsError;
use super::bindings::kiln::recipe::{assemble, files, log, target, types};
use super::copy::CopyStop;
use super::guest_fs::GuestFs;
use super::guest_fs::{UsageStop, measure_tool_dirs};
use super::{RecipeError, RecipeRun, RunInput, RunReport};
use crate::sandbox::SandboxMode;
use kiln_core::hash::Sha256Hash;

use crate::record::{LogLine, LogSource};
pub use caches::CachePlan;

/// The largest log message a recipe may send.
pub const LOG_MESSAGE_LIMIT: usize = 1024 * 1024;

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

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
    target: String,
    params_json: String,
    inputs: Vec<RunInput>,
    source_date_epoch: u64,
    work_dir: std::path::PathBuf,
    out_dir: std::path::PathBuf,
    etc_dir: std::path::PathBuf,
    sandbox: SandboxMode,
    /// The target's `output_hash`, from kiln.toml.
    output_hash: Option<Sha256Hash>,
    fetch_unpinned: bool,
    deadline: Instant,
    limits: super::Limits,
    /// Bytes of log messages so far.
    log_bytes: usize,
    echo: Option<Level>,
    report: Arc<Mutex<RunReport>>,
    fatal: Mutex<Option<RecipeError>>,
    caches: CachePlan,
    fetch_store: Option<kiln_core::store::Store>,
}

impl HostState {
    pub(super) fn new(run: &RecipeRun, deadline: Instant, report: Arc<Mutex<RunReport>>) -> Self {
        HostState {
            target: run.target.clone(),
            params_json: run.params_json.clone(),
            inputs: run.inputs.clone(),
            source_date_epoch: run.source_date_epoch,
            work_dir: run.work_dir.clone(),
            out_dir: run.out_dir.clone(),
            etc_dir: run.etc_dir.clone(),
            sandbox: run.sandbox,
            output_hash: run.output_hash,
            fetch_unpinned: run.fetch_unpinned,
            deadline,
            limits: run.limits,
            log_bytes: 0,
            echo: run.echo,
            report,
            fatal: Mutex::new(None),
            caches: run.caches.clone(),
            fetch_store: run.fetch_store.clone(),
        }
    }

    /// The error that made the host trap the recipe, if any.
    pub(super) fn take_fatal(&self) -> Option<RecipeError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn trap(&self, err: RecipeError) -> wasmtime::Error {
        let msg = err.to_string();
        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
        wasmtime::Error::msg(msg)
    }

    fn check_deadline(&self) -> wasmtime::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(self.trap(RecipeError::TimeLimit {
                target: self.target.clone(),
                limit: self.limits.timeout,
                note: String::new(),
            }));
        }
        Ok(())
    }

    /// Trap unless `/work` and `/out` (with `caches`, also the tool caches
    /// mounted so far) together fit the disk budget. Caches are walked once,
    /// when the recipe ends: they can be large, and are never hashed.
    pub(super) fn check_disk(&self, caches: bool) -> wasmtime::Result<()> {
        let caches: Vec<std::path::PathBuf> = if caches {
            self.report()
                .caches
                .iter()
                .map(|c| c.host_dir.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut dirs: Vec<&Path> = vec![&self.work_dir, &self.out_dir];
        dirs.extend(caches.iter().map(|d| d.as_path()));
        match measure_tool_dirs(&dirs, self.limits.disk_bytes, self.deadline) {
            Ok(_) => Ok(()),
            Err(UsageStop::TooLarge(bytes)) => Err(self.trap(RecipeError::DiskLimit {
                target: self.target.clone(),
                bytes,
                limit: self.limits.disk_bytes,
            })),
            Err(UsageStop::TimedOut) => self.check_deadline(),
            Err(UsageStop::Io(m)) => Err(self.trap(RecipeError::Failed {
                target: self.target.clone(),
                message: format!("measuring /work and /out: {m}"),
            })),
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, RunReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl target::Host for HostState {
    fn name(&mut self) -> wasmtime::Result<String> {
        Ok(self.target.clone())
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.params_json.clone())
    }

    fn inputs(&mut self) -> wasmtime::Result<Vec<target::Input>> {
        let mut v: Vec<_> = self
            .inputs
            .iter()
            .map(|i| target::Input {
                name: i.name.clone(),
                hash: i.hash.clone(),
                kind: if i.is_dir {
                    target::InputKind::Directory
                } else {
                    target::InputKind::File
                },
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn source_date_epoch(&mut self) -> wasmtime::Result<u64> {
        Ok(self.source_date_epoch)
    }
}

impl types::Host for HostState {}

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

impl files::Host for HostState {
    fn mode(&mut self, path: String) -> wasmtime::Result<Result<u32, FsError>> {
        self.check_deadline()?;
        Ok(self.guest_fs().mode(&path))
    }

    fn set_mode(&mut self, path: String, mode: u32) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        Ok(self.guest_fs().set_mode(&path, mode))
    }

    fn copy(&mut self, src: String, dst: String) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        let dirs: [&Path; 2] = [&self.work_dir, &self.out_dir];
        let used = match measure_tool_dirs(&dirs, self.limits.disk_bytes, self.deadline) {
            Ok(used) => used,
            Err(stop) => {
                // Past the budget or the deadline: this traps.
                self.check_disk(false)?;
                return Ok(Err(FsError::Io(format!(
                    "copying {src} to {dst}: cannot measure /work and /out: {stop:?}"
                ))));
            }
        };
        let budget = self.limits.disk_bytes.saturating_sub(used);
        match super::copy::copy(&self.guest_fs(), &src, &dst, budget, self.deadline) {
            Ok(()) => Ok(Ok(())),
            Err(CopyStop::Failed(e)) => Ok(Err(e)),
            Err(CopyStop::TimedOut) => {
                self.check_deadline()?;
                Err(wasmtime::Error::msg("the time limit passed"))
            }
            Err(CopyStop::TooLarge) => Err(self.trap(RecipeError::DiskLimit {
                target: self.target.clone(),
                bytes: used,
                limit: self.limits.disk_bytes,
            })),
        }
    }
}

impl assemble::Host for HostState {
    fn sha256(
        &mut self,
        pieces: Vec<assemble::Piece>,
    ) -> wasmtime::Result<Result<(Vec<u8>, u64), FsError>> {
        self.check_deadline()?;
        let r = super::assemble::sha256(&self.guest_fs(), &pieces, self.deadline);
        self.assembly_result(r.map(|(digest, len)| (digest.to_vec(), len)))
    }

    fn write_files(&mut self, files: Vec<assemble::File>) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        // The budget is checked before writing, not after: one call could
        // otherwise put any amount on the host's disk first.
        let planned = match super::assemble::planned_bytes(&self.guest_fs(), &files) {
            Ok(n) => n,
            Err(e) => return self.assembly_result(Err(e)),
        };
        let dirs: [&Path; 2] = [&self.work_dir, &self.out_dir];
        let used = match measure_tool_dirs(&dirs, self.limits.disk_bytes, self.deadline) {
            Ok(used) => used,
            Err(_) => {
                // Past the budget or the deadline: this traps.
                self.check_disk(false)?;
                0
            }
        };
        if used.saturating_add(planned) > self.limits.disk_bytes {
            return Err(self.trap(RecipeError::DiskLimit {
                target: self.target.clone(),
                bytes: used.saturating_add(planned),
                limit: self.limits.disk_bytes,
            }));
        }
        let r = super::assemble::write_files(&self.guest_fs(), &files, self.deadline);
        self.assembly_result(r)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.check_deadline()?;
        if message.len() > LOG_MESSAGE_LIMIT {
            return Err(self.trap(RecipeError::LogTooLong {
                target: self.target.clone(),
                len: message.len(),
                limit: LOG_MESSAGE_LIMIT,
            }));
        }
        self.log_bytes = self.log_bytes.saturating_add(message.len());
        if self.log_bytes > self.limits.log_bytes {
            return Err(self.trap(RecipeError::LogLimit {
                target: self.target.clone(),
                limit: self.limits.log_bytes,
            }));
        }
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        if self.echo.is_some_and(|min| level >= min) {
            // A recipe's message is untrusted text on its way to a terminal.
            eprintln!(
                "{}",
                crate::terminal::safe(&format!("[{}] {message}", self.target))
            );
        }
        self.report().log.push(LogLine {
            source: level.into(),
            message,
        });
        Ok(())
    }
}

impl HostState {
    /// The recipe's directories, for host calls that take its paths.
    fn guest_fs(&self) -> GuestFs<'_> {
        GuestFs {
            work: &self.work_dir,
            out: &self.out_dir,
            inputs: &self.inputs,
        }
    }

    /// Turn an assembly's stop into the recipe's error, or a trap.
    fn assembly_result<T>(&self, r: Result<T, Stop>) -> wasmtime::Result<Result<T, FsError>> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(Stop::Failed(m)) => Ok(Err(m)),
            Err(Stop::TimedOut) => {
                self.check_deadline()?;
                Err(wasmtime::Error::msg("the time limit passed"))
            }
        }
    }
}
