//! What a recipe may ask of the host: the imports of `wit/recipe.wit`
//! (`target`, `tool-exec`, `digest`, `assemble`, `log`).
//!
//! Two levels of result: the outer `wasmtime::Result` traps the recipe
//! (time limit, oversized log), the inner one is the WIT error the recipe
//! sees (undeclared tool, bad path). Nothing a recipe sends can make the
//! host panic.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use super::assemble::Stop;
use super::bindings::kiln::recipe::{assemble, digest, log, target, tool_exec};
use super::guest_fs::GuestFs;
use super::guest_fs::{UsageStop, disk_usage};
use super::{RecipeError, RecipeRun, RunInput, RunReport};
use crate::sandbox::{self, Network, SandboxError, SandboxMode, SandboxSpec, policy};
use kiln_core::hash::Sha256Hash;

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

/// One line of a build's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `debug`, `info`, `warn`, `error`, `recipe-stdout` or `recipe-stderr`.
    pub level: String,
    pub message: String,
}

/// One tool run, as the build record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub network: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_bytes: usize,
    pub stderr_bytes: usize,
    /// Kept out of the record's reproducible part (the builder moves it to `timing`).
    #[serde(skip)]
    pub duration_ms: u64,
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

    /// Trap unless `/work` and `/out` together fit the disk budget.
    pub(super) fn check_disk(&self) -> wasmtime::Result<()> {
        match disk_usage(
            &[&self.work_dir, &self.out_dir],
            self.limits.disk_bytes,
            self.deadline,
        ) {
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

    fn file_mode(&mut self, path: String) -> wasmtime::Result<Option<u32>> {
        let Some(rest) = path.strip_prefix("/inputs/") else {
            return Ok(None);
        };
        let (name, inner) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(input) = self.inputs.iter().find(|i| i.name == name) else {
            return Ok(None);
        };
        if inner.is_empty() || !input.is_dir {
            return Ok(std::fs::symlink_metadata(&input.host_path).ok().map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.permissions().mode() & 0o7777
            }));
        }
        let inner = Path::new(inner);
        if inner
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Ok(None);
        }
        let Ok(dir) = Dir::open_ambient_dir(&input.host_path, ambient_authority()) else {
            return Ok(None);
        };
        use cap_std::fs::PermissionsExt;
        Ok(dir
            .symlink_metadata(inner)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777))
    }

    fn source_date_epoch(&mut self) -> wasmtime::Result<u64> {
        Ok(self.source_date_epoch)
    }
}

impl digest::Host for HostState {
    fn sha256_file(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.check_deadline()?;
        let file = match self.guest_fs().open(&path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // The assembler's hasher checks the deadline between blocks.
        let pieces = [assemble::Piece::Range(assemble::FileRange {
            path: path.clone(),
            offset: 0,
            length: len,
        })];
        let r = super::assemble::sha256(&self.guest_fs(), &pieces, self.deadline);
        self.assembly_result(r.map(|(digest, _)| digest.to_vec()))
    }
}

impl assemble::Host for HostState {
    fn sha256(
        &mut self,
        pieces: Vec<assemble::Piece>,
    ) -> wasmtime::Result<Result<(Vec<u8>, u64), String>> {
        self.check_deadline()?;
        let r = super::assemble::sha256(&self.guest_fs(), &pieces, self.deadline);
        self.assembly_result(r.map(|(digest, len)| (digest.to_vec(), len)))
    }

    fn write_files(&mut self, files: Vec<assemble::File>) -> wasmtime::Result<Result<(), String>> {
        self.check_deadline()?;
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
        let (level, name) = match level {
            log::Level::Debug => (Level::Debug, "debug"),
            log::Level::Info => (Level::Info, "info"),
            log::Level::Warn => (Level::Warn, "warn"),
            log::Level::Error => (Level::Error, "error"),
        };
        if self.echo.is_some_and(|min| level >= min) {
            eprintln!("[{}] {message}", self.target);
        }
        self.report().log.push(LogLine {
            level: name.to_string(),
            message,
        });
        Ok(())
    }
}

impl tool_exec::Host for HostState {
    fn exec(
        &mut self,
        cmd: tool_exec::Command,
    ) -> wasmtime::Result<Result<tool_exec::Output, tool_exec::Error>> {
        self.check_deadline()?;
        let mut spec = match self.plan_exec(&cmd) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(e)),
        };
        let fetch = match &cmd.fixed_output {
            Some(fo) => match self.plan_fetch(fo, &mut spec)? {
                Ok(fetch) => Some(fetch),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        let result = sandbox::run(&spec, self.sandbox);
        let verdict = match (&fetch, &result) {
            (Some(fetch), Ok(out)) => Some(self.check_fetch(fetch, out.exit_code)?),
            (Some(fetch), Err(_)) => {
                discard_dir(&fetch.host_dir);
                None
            }
            (None, _) => None,
        };
        match result {
            Ok(out) => {
                let mut argv = vec![spec.program.clone()];
                argv.extend(spec.args.iter().cloned());
                self.report().execs.push(ExecRecord {
                    argv,
                    env: spec.env.clone(),
                    cwd: spec.cwd.clone(),
                    network: spec.network == Network::Outbound,
                    exit_code: out.exit_code,
                    signal: out.signal,
                    stdout_bytes: out.stdout.len(),
                    stderr_bytes: out.stderr.len(),
                    duration_ms: out.duration.as_millis() as u64,
                });
                if let Some(Err(e)) = verdict {
                    return Err(self.trap(e));
                }
                self.check_disk()?;
                let mut stderr = out.stderr;
                if let Some(Ok(FetchVerdict::Discarded(note))) = verdict {
                    stderr.extend_from_slice(note.as_bytes());
                }
                Ok(Ok(tool_exec::Output {
                    exit_code: out.exit_code,
                    stdout: out.stdout,
                    stderr,
                    stdout_truncated: out.stdout_truncated,
                    stderr_truncated: out.stderr_truncated,
                }))
            }
            Err(SandboxError::TimedOut { capped_at, .. }) => {
                Err(self.trap(RecipeError::TimeLimit {
                    target: self.target.clone(),
                    limit: self.limits.timeout,
                    note: capped_at
                        .map(|n| {
                            format!(
                                "; its tools had also reached the sandbox's limit of {n} processes"
                            )
                        })
                        .unwrap_or_default(),
                }))
            }
            Err(
                e @ (SandboxError::Unavailable { .. } | SandboxError::NetworkUnavailable { .. }),
            ) => Err(self.trap(RecipeError::Failed {
                target: self.target.clone(),
                message: e.to_string(),
            })),
            Err(e) => Ok(Err(tool_exec::Error::Failed(e.to_string()))),
        }
    }
}

/// A fixed-output step about to run: where it writes and what kiln.toml pins.
struct Fetch {
    setting: String,
    guest_dir: String,
    host_dir: PathBuf,
    /// None: the user ran `--fetch-unpinned` to learn the hash.
    pin: Option<Sha256Hash>,
}

/// What became of a fixed-output step's directory that is not kept.
enum FetchVerdict {
    /// It matched the pin and stays.
    Kept,
    /// It was deleted; the note is added to the step's stderr.
    Discarded(String),
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
    fn assembly_result<T>(&self, r: Result<T, Stop>) -> wasmtime::Result<Result<T, String>> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(Stop::Failed(m)) => Ok(Err(m)),
            Err(Stop::TimedOut) => {
                self.check_deadline()?;
                Err(wasmtime::Error::msg("the time limit passed"))
            }
        }
    }

    /// The hash kiln.toml pins for `setting` (`output_hash` or
    /// `params.<key>[.<key>…]`). The recipe only names the setting: the
    /// value is read here, from the target's own kiln.toml table.
    fn pinned(&self, setting: &str) -> Result<Option<Sha256Hash>, String> {
        if setting == "output_hash" {
            return Ok(self.output_hash);
        }
        let Some(path) = setting.strip_prefix("params.") else {
            return Err(format!(
                "a fixed-output step must name where kiln.toml pins its hash: `output_hash` or `params.<key>`, not '{setting}'"
            ));
        };
        let params: serde_json::Value =
            serde_json::from_str(&self.params_json).map_err(|e| format!("params: {e}"))?;
        let mut v = &params;
        for key in path.split('.') {
            match v.get(key) {
                Some(next) => v = next,
                None => return Ok(None),
            }
        }
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Sha256Hash::parse(s)
                .map(Some)
                .map_err(|e| format!("{setting} in kiln.toml: {e}")),
            other => Err(format!(
                "{setting} in kiln.toml must be a hash string, not {other}"
            )),
        }
    }

    /// Turn `spec` into a fixed-output step: network on, only a fresh `dir`
    /// writable, and the pin read from kiln.toml. No pin, no network.
    fn plan_fetch(
        &self,
        fo: &tool_exec::FixedOutput,
        spec: &mut SandboxSpec,
    ) -> wasmtime::Result<Result<Fetch, tool_exec::Error>> {
        let pin = match self.pinned(&fo.setting) {
            Ok(pin) => pin,
            Err(message) => {
                return Err(self.trap(RecipeError::Failed {
                    target: self.target.clone(),
                    message,
                }));
            }
        };
        if pin.is_none() && !self.fetch_unpinned {
            return Ok(Err(tool_exec::Error::NetworkDenied(format!(
                "{setting} is not set for target '{t}' in kiln.toml, so its fixed-output step gets no network; set {setting} = \"sha256-…\" to the hash of what the step fetches. To learn it, run `kiln build --fetch-unpinned {t}`: the step runs with network and kiln prints the hash (nothing it fetched is used)",
                setting = fo.setting,
                t = self.target
            ))));
        }
        let guest_dir = match resolve_new_dir(&fo.dir) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let rel = guest_dir.trim_start_matches("/work/");
        let host_dir = match create_fresh_dir(&self.work_dir, rel) {
            Ok(d) => d,
            Err(why) => {
                return Ok(Err(tool_exec::Error::BadCwd(format!(
                    "fixed-output directory {guest_dir}: {why}"
                ))));
            }
        };
        // Read-only everywhere but the fresh directory: what the step
        // fetches can reach the build only through the hash check.
        spec.mounts = policy::fetch_mounts(
            std::mem::take(&mut spec.mounts),
            &host_dir,
            &guest_dir,
            &self.etc_dir,
        );
        spec.network = Network::Outbound;
        Ok(Ok(Fetch {
            setting: fo.setting.clone(),
            guest_dir,
            host_dir,
            pin,
        }))
    }

    /// Hash a fixed-output step's directory whatever its exit code; keep it
    /// only if it is what kiln.toml pinned. `Err` is the trap to raise.
    fn check_fetch(
        &self,
        fetch: &Fetch,
        exit_code: Option<i32>,
    ) -> wasmtime::Result<Result<FetchVerdict, RecipeError>> {
        let discard = || discard_dir(&fetch.host_dir);
        match disk_usage(&[&fetch.host_dir], self.limits.disk_bytes, self.deadline) {
            Ok(_) => {}
            Err(UsageStop::TooLarge(bytes)) => {
                discard();
                return Ok(Err(RecipeError::DiskLimit {
                    target: self.target.clone(),
                    bytes,
                    limit: self.limits.disk_bytes,
                }));
            }
            Err(UsageStop::TimedOut) => {
                discard();
                self.check_deadline()?;
            }
            Err(UsageStop::Io(m)) => {
                discard();
                return Ok(Err(RecipeError::Failed {
                    target: self.target.clone(),
                    message: format!(
                        "fixed-output step left no readable {}: {m}",
                        fetch.guest_dir
                    ),
                }));
            }
        }
        // The directory is the host's own (made fresh, its parent read-only
        // to the step), and NAR hashing records symlinks without following them.
        let got = match kiln_core::nar::hash_path(&fetch.host_dir) {
            Ok(h) => h,
            Err(e) => {
                discard();
                return Ok(Err(RecipeError::Failed {
                    target: self.target.clone(),
                    message: format!(
                        "fixed-output step left no readable {}: {e}",
                        fetch.guest_dir
                    ),
                }));
            }
        };
        let succeeded = exit_code == Some(0);
        match fetch.pin {
            Some(pin) if pin == got => Ok(Ok(FetchVerdict::Kept)),
            Some(pin) => {
                discard();
                if succeeded {
                    Ok(Err(RecipeError::FixedOutputMismatch {
                        target: self.target.clone(),
                        setting: fetch.setting.clone(),
                        specified: pin.to_sri(),
                        got: got.to_sri(),
                    }))
                } else {
                    Ok(Ok(FetchVerdict::Discarded(format!(
                        "\nkiln: the step failed; what it left in {} ({}) is not {} and was deleted\n",
                        fetch.guest_dir,
                        got.to_sri(),
                        fetch.setting
                    ))))
                }
            }
            None => {
                discard();
                if succeeded {
                    Ok(Err(RecipeError::FixedOutputUnpinned {
                        target: self.target.clone(),
                        setting: fetch.setting.clone(),
                        got: got.to_sri(),
                    }))
                } else {
                    Ok(Ok(FetchVerdict::Discarded(format!(
                        "\nkiln: the step failed; {} was deleted\n",
                        fetch.guest_dir
                    ))))
                }
            }
        }
    }

    /// Check a request against what the target declared and turn it into a spec.
    fn plan_exec(&self, cmd: &tool_exec::Command) -> Result<SandboxSpec, tool_exec::Error> {
        let tool = &cmd.tool;
        let input = self.inputs.iter().find(|i| i.name == tool.input).ok_or_else(|| {
            let names: Vec<_> = self.inputs.iter().map(|i| i.name.as_str()).collect();
            tool_exec::Error::UndeclaredTool(format!(
                "'{}' is not an input of target '{}' (its inputs: {}); declare the tool's input in kiln.toml",
                tool.input,
                self.target,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        })?;
        let program = resolve_tool(input, &tool.path)?;

        let cwd = resolve_cwd(&cmd.cwd, &self.work_dir)?;
        // `network` without a fixed-output step: only a target whose whole
        // output kiln.toml pins (output_hash), checked when the build ends.
        if cmd.network && cmd.fixed_output.is_none() && self.output_hash.is_none() {
            return Err(tool_exec::Error::NetworkDenied(format!(
                "target '{}' does not declare output_hash, so its tools get no network; pin the output with output_hash = \"sha256-…\" to make it a fixed-output target",
                self.target
            )));
        }
        let network = if cmd.network && cmd.fixed_output.is_none() {
            Network::Outbound
        } else {
            Network::None
        };

        let tool_dir = Path::new(&program)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let env = policy::tool_env(&tool_dir, self.source_date_epoch, &cmd.env);
        let mounts = policy::mounts(
            self.inputs
                .iter()
                .map(|i| (i.name.as_str(), i.host_path.as_path())),
            &self.work_dir,
            &self.out_dir,
            &self.etc_dir,
            network,
        );
        Ok(SandboxSpec {
            program,
            args: cmd.args.clone(),
            env,
            cwd,
            mounts,
            network,
            timeout: self.deadline.saturating_duration_since(Instant::now()),
            limits: sandbox::SandboxLimits {
                file_bytes: self.limits.disk_bytes,
                ..sandbox::SandboxLimits::default()
            },
        })
    }
}

/// Delete a fixed-output directory (tools leave read-only trees, as Go's
/// module cache is).
fn discard_dir(dir: &Path) {
    let _ = kiln_core::store::make_writable(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Create `rel` beneath `work` (parents as needed, never through a symlink
/// that leaves `work`); it must not exist yet. Returns its host path.
fn create_fresh_dir(work: &Path, rel: &str) -> Result<PathBuf, String> {
    let root = Dir::open_ambient_dir(work, ambient_authority()).map_err(|e| e.to_string())?;
    let rel_path = Path::new(rel);
    if let Some(parent) = rel_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.create_dir_all(parent)
            .map_err(|e| format!("cannot create its parent: {e}"))?;
    }
    root.create_dir(rel_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists; a fixed-output step fills a fresh directory".to_string()
        } else {
            e.to_string()
        }
    })?;
    // cap-std kept every step beneath /work; name the result by its real
    // path so the mount cannot be redirected later.
    let host = work
        .join(rel_path)
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let work_real = work.canonicalize().map_err(|e| e.to_string())?;
    if !host.starts_with(&work_real) {
        return Err("resolves outside /work".into());
    }
    Ok(host)
}

/// `/inputs/<input>/<path>`, after checking that `path` stays inside the
/// input (no `..`, not absolute, no symlink out) and names an executable file.
fn resolve_tool(input: &RunInput, path: &str) -> Result<String, tool_exec::Error> {
    let bad = |why: String| {
        tool_exec::Error::BadToolPath(format!("'{path}' in input '{}': {why}", input.name))
    };
    if !input.is_dir {
        if !path.is_empty() && path != "." {
            return Err(bad(
                "the input is a single file; use an empty path to run it".into(),
            ));
        }
        return Ok(format!("/inputs/{}", input.name));
    }
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return Err(bad("a tool path must be relative to its input".into()));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad("a tool path may not contain '..'".into()));
    }
    let dir = Dir::open_ambient_dir(&input.host_path, ambient_authority())
        .map_err(|e| bad(e.to_string()))?;
    // cap-std follows symlinks only while they stay inside `dir`.
    let meta = dir
        .metadata(p)
        .map_err(|e| bad(format!("{e} (symlinks may not leave the input)")))?;
    use cap_std::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(bad("not an executable file".into()));
    }
    Ok(format!(
        "/inputs/{}/{}",
        input.name,
        path.trim_start_matches("./")
    ))
}

/// The sandbox path of a directory a step will create under `/work`.
fn resolve_new_dir(dir: &str) -> Result<String, tool_exec::Error> {
    let rel = dir.strip_prefix("/work/").unwrap_or(dir);
    if rel.is_empty()
        || Path::new(rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(tool_exec::Error::BadCwd(format!(
            "fixed-output directory '{dir}' must be a path under /work without '..'"
        )));
    }
    Ok(format!("/work/{}", rel.trim_end_matches('/')))
}

/// The sandbox cwd for `cwd` (empty, relative to `/work`, or absolute under `/work`).
fn resolve_cwd(cwd: &str, work_dir: &Path) -> Result<String, tool_exec::Error> {
    let rel = match cwd {
        "" | "/work" => "",
        c if c.starts_with("/work/") => &c["/work/".len()..],
        c if c.starts_with('/') => {
            return Err(tool_exec::Error::BadCwd(format!(
                "'{c}' is not inside /work"
            )));
        }
        c => c,
    };
    if Path::new(rel)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(tool_exec::Error::BadCwd(format!(
            "'{cwd}' may not contain '..'"
        )));
    }
    if !work_dir.join(rel).is_dir() {
        return Err(tool_exec::Error::BadCwd(format!(
            "'{cwd}' is not a directory under /work (create it first)"
        )));
    }
    Ok(if rel.is_empty() {
        "/work".to_string()
    } else {
        format!("/work/{}", rel.trim_end_matches('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_input(path: &Path) -> RunInput {
        RunInput {
            name: "tools".into(),
            hash: String::new(),
            host_path: path.to_path_buf(),
            is_dir: true,
        }
    }

    #[test]
    fn tool_paths_stay_inside_their_input() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/ok"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("bin/ok"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(d.path().join("data"), "").unwrap();
        std::os::unix::fs::symlink("/bin/sh", d.path().join("bin/out")).unwrap();
        let input = dir_input(d.path());
        assert_eq!(
            resolve_tool(&input, "bin/ok").unwrap(),
            "/inputs/tools/bin/ok"
        );
        for (path, why) in [
            ("../x", "'..'"),
            ("bin/../../x", "'..'"),
            ("/bin/sh", "relative"),
            ("bin/out", "symlinks may not leave"),
            ("data", "not an executable"),
        ] {
            let e = resolve_tool(&input, path).unwrap_err();
            assert!(
                matches!(&e, tool_exec::Error::BadToolPath(m) if m.contains(why)),
                "{path}: {e:?}"
            );
        }
    }

    #[test]
    fn cwd_stays_inside_work() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        assert_eq!(resolve_cwd("", d.path()).unwrap(), "/work");
        assert_eq!(resolve_cwd("src", d.path()).unwrap(), "/work/src");
        assert_eq!(resolve_cwd("/work/src", d.path()).unwrap(), "/work/src");
        assert!(matches!(
            resolve_cwd("/out", d.path()),
            Err(tool_exec::Error::BadCwd(_))
        ));
        assert!(matches!(
            resolve_cwd("../x", d.path()),
            Err(tool_exec::Error::BadCwd(_))
        ));
        assert!(matches!(
            resolve_cwd("missing", d.path()),
            Err(tool_exec::Error::BadCwd(_))
        ));
    }
}
