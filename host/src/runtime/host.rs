//! What a recipe may ask of the host: the imports of `wit/recipe.wit`
//! (`target`, `tool-exec`, `files`, `assemble`, `log`).
//!
//! Two levels of result: the outer `wasmtime::Result` traps the recipe
//! (time limit, oversized log), the inner one is the WIT error the recipe
//! sees (undeclared tool, bad path). Nothing a recipe sends can make the
//! host panic.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

mod exec;
mod fixed_output;
mod paths;
mod tool_caches;

use super::bindings::kiln::recipe::types::Error as FsError;
use super::bindings::kiln::recipe::{assemble, files, log, target, types};
use super::budget::Stop;
use super::guest_fs::GuestFs;
use super::guest_fs::measure_tool_dirs;
use super::{RecipeError, RecipeRun, RunReport};

use crate::record::{LogLine, LogSource};
use crate::report::{Event, Level};
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
}

impl HostState {
    pub(super) fn new(run: &RecipeRun, deadline: Instant) -> Self {
        HostState {
            run: run.clone(),
            deadline,
            log_bytes: 0,
            report: Mutex::new(RunReport::default()),
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
                .map(|c| c.host_dir.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut dirs: Vec<&Path> = vec![&self.run.work_dir, &self.run.out_dir];
        dirs.extend(caches.iter().map(|d| d.as_path()));
        match measure_tool_dirs(&dirs, self.run.limits.disk_bytes, self.deadline) {
            Ok(used) => Ok(used),
            Err(Stop::Failed(e)) => Err(self.trap(RecipeError::Failed {
                target: self.run.target.clone(),
                message: format!("measuring /work and /out: {}", super::guest_fs::message(&e)),
            })),
            Err(stop) => self
                .stop_result(Err(stop), 0)?
                .map_err(|e| wasmtime::Error::msg(format!("{e:?}"))),
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, RunReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl target::Host for HostState {
    fn name(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.target.clone())
    }

    fn params(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.params_json.clone())
    }

    fn inputs(&mut self) -> wasmtime::Result<Vec<target::Input>> {
        let mut v: Vec<_> = self
            .run
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
        Ok(self.run.source_date_epoch)
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
        let used = self.disk_used(false)?;
        let budget = self.run.limits.disk_bytes.saturating_sub(used);
        let r = super::copy::copy(&self.guest_fs(), &src, &dst, budget, self.deadline);
        self.stop_result(r, used)
    }
}

impl assemble::Host for HostState {
    fn sha256(
        &mut self,
        pieces: Vec<assemble::Piece>,
    ) -> wasmtime::Result<Result<(Vec<u8>, u64), FsError>> {
        self.check_deadline()?;
        let r = super::assemble::sha256(&self.guest_fs(), &pieces, self.deadline);
        self.stop_result(r.map(|(digest, len)| (digest.to_vec(), len)), 0)
    }

    fn write_files(&mut self, files: Vec<assemble::File>) -> wasmtime::Result<Result<(), FsError>> {
        self.check_deadline()?;
        // The budget is checked before writing, not after: one call could
        // otherwise put any amount on the host's disk first.
        let planned = match super::assemble::planned_bytes(&self.guest_fs(), &files) {
            Ok(n) => n,
            Err(e) => return self.stop_result(Err(e), 0),
        };
        let used = self.disk_used(false)?;
        if used.saturating_add(planned) > self.run.limits.disk_bytes {
            return Err(self.trap(RecipeError::DiskLimit {
                target: self.run.target.clone(),
                bytes: used.saturating_add(planned),
                limit: self.run.limits.disk_bytes,
            }));
        }
        let r = super::assemble::write_files(&self.guest_fs(), &files, self.deadline);
        self.stop_result(r, used)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.check_deadline()?;
        if message.len() > LOG_MESSAGE_LIMIT {
            return Err(self.trap(RecipeError::LogTooLong {
                target: self.run.target.clone(),
                len: message.len(),
                limit: LOG_MESSAGE_LIMIT,
            }));
        }
        self.log_bytes = self.log_bytes.saturating_add(message.len());
        if self.log_bytes > self.run.limits.log_bytes {
            return Err(self.trap(RecipeError::LogLimit {
                target: self.run.target.clone(),
                limit: self.run.limits.log_bytes,
            }));
        }
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.run.reporter.send(Event::Log {
            target: self.run.target.clone(),
            level,
            message: message.clone(),
        });
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
