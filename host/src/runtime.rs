//! The recipe runtime: the only module that touches wasmtime.
//!
//! A [`Runtime`] owns the engine and the on-disk cache of compiled
//! components. [`Runtime::run`] builds one target: a fresh `Store` whose WASI
//! context grants exactly `/inputs/<name>` (read-only), `/work` and `/out`,
//! no environment, arguments, stdin or sockets, a wall clock frozen at
//! SOURCE_DATE_EPOCH, a deterministic monotonic clock and randomness seeded
//! from the build key. An epoch deadline and a memory cap bound the recipe;
//! the same deadline bounds the tools it runs.
//!
//! What a recipe may ask of the host is in [`host`]; this module does not
//! decide what to build or where outputs go (that is the builder's job).

mod assemble;
mod budget;
mod compiled;
mod copy;
mod guest_fs;
mod host;
pub(crate) use host::prune_seed_indexes;
mod limiter;
mod wasi;
mod watchdog;

use std::path::{Path, PathBuf};

use limiter::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES, MemoryLimiter};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::record::{ExecRecord, LogLine, LogSource, ToolCacheUse};
use crate::sandbox::SandboxMode;
pub use host::ToolCachePlan;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "recipe",
        imports: { default: trappable },
    });
}

/// How often the epoch ticks: the resolution of the time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// A recipe's stdout and stderr are each kept up to this size in the log.
const RECIPE_STDIO_LIMIT: usize = 1024 * 1024;
/// A recipe's `err` string is cut to this size.
const ERROR_LIMIT: usize = 64 * 1024;

/// Resource limits for one build.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time for the whole build, tool runs included.
    pub timeout: Duration,
    /// Linear memory the recipe may grow to, all its memories together.
    pub memory_bytes: usize,
    /// `/work` and `/out` together, at their files' apparent sizes; also the
    /// largest file a tool may write.
    pub disk_bytes: u64,
    /// Log messages in total.
    pub log_bytes: usize,
    /// Each tool's sandbox: all its processes together (a memory cgroup,
    /// where kiln can make one) and each process (`RLIMIT_AS`); `None`:
    /// the sandbox's default, three quarters of the machine's memory.
    pub tool_memory_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(3600),
            memory_bytes: 2 << 30,
            disk_bytes: 64 << 30,
            log_bytes: 16 << 20,
            tool_memory_bytes: None,
        }
    }
}

/// One declared input, as the host holds it.
#[derive(Debug, Clone)]
pub struct RunInput {
    pub name: String,
    /// SRI hash, as the recipe is told.
    pub hash: String,
    /// Where the content is on the host (a read-only store entry).
    pub host_path: PathBuf,
    pub is_dir: bool,
}

/// Everything [`Runtime::run`] needs to build one target.
#[derive(Debug, Clone)]
pub struct RecipeRun {
    pub target: String,
    pub params_json: String,
    pub inputs: Vec<RunInput>,
    /// Host directories shown as `/work` and `/out`; both must exist and be empty.
    pub work_dir: PathBuf,
    pub out_dir: PathBuf,
    /// Host directory holding the sandbox's `passwd` and `group` files.
    pub etc_dir: PathBuf,
    /// Host directory with one link per file input, named after the input.
    pub file_inputs_dir: PathBuf,
    pub source_date_epoch: u64,
    /// Seeds the recipe's randomness: the build key.
    pub seed: [u8; 32],
    pub limits: Limits,
    /// The sandbox of steps run here (fixed-output steps always are).
    pub sandbox: SandboxMode,
    /// Where the recipe's other tool steps run.
    pub executor: crate::executor::Executor,
    /// The target's `output_hash` from kiln.toml: a fixed-output target's
    /// tools may ask for the network, and the pin a fixed-output step may
    /// name as its setting.
    pub output_hash: Option<kiln_core::hash::Sha256Hash>,
    /// What a fixed-output step that nothing pins may do.
    pub unpinned: Unpinned,
    /// The settings whose pin comes from kiln.lock, not kiln.toml (`kiln
    /// lock` wrote it; `kiln lock --update` refreshes it).
    pub locked_settings: Vec<String>,
    /// Where the recipe's log lines and tool steps are reported as they happen.
    pub reporter: crate::report::Reporter,
    /// Where the tool caches a command mounts live for this run.
    pub caches: ToolCachePlan,
    /// Where fixed-output steps with a fetch key keep and find what they
    /// fetched (None: every step runs).
    pub fetch_store: Option<kiln_core::store::Store>,
    /// Where cache seeds are kept and found (None: caches are not seeded,
    /// as for `--no-cache` and `--check`).
    pub seeds: Option<kiln_core::store::Store>,
}

/// What a fixed-output step with no pin (in kiln.toml or kiln.lock) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpinned {
    /// Nothing: it gets no network, and the error says how to pin it.
    Deny,
    /// Run, report its hash and stop (`kiln build --fetch-unpinned`);
    /// nothing it fetched is kept.
    Report,
    /// Run and be pinned to what it produced (`kiln lock`, the user's
    /// explicit command, as for url inputs); the recipe is stopped before
    /// any other tool step, so only downloads run.
    Pin,
}

/// What a finished recipe run leaves besides `/out`.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub log: Vec<LogLine>,
    pub execs: Vec<ExecRecord>,
    /// Tool caches the run mounted, with how warm each was.
    pub caches: Vec<ToolCacheUse>,
    /// Fixed-output steps answered from the store (their settings).
    pub fetches_reused: Vec<String>,
}

/// Why a recipe run failed. Each names what the recipe did.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe for '{target}' stopped: interrupted (Ctrl-C)")]
    Interrupted { target: String },
    #[error("recipe for '{target}' failed: {message}")]
    Failed { target: String, message: String },
    #[error(
        "target '{target}' is not set up the way its recipe needs: {message}\n  fix [target.{target}] (its params or inputs) in kiln.toml"
    )]
    BadParams { target: String, message: String },
    #[error(
        "recipe for '{target}' ran past its time limit of {limit:?} and was stopped (raise it with --timeout){note}"
    )]
    TimeLimit {
        target: String,
        limit: Duration,
        /// What else the sandbox saw, e.g. the process limit reached.
        note: String,
    },
    #[error("recipe for '{target}' tried to use more than its memory limit of {} MiB and was stopped (raise it with --memory)", limit / (1024 * 1024))]
    MemoryLimit { target: String, limit: usize },
    #[error(
        "recipe for '{target}' creates more wasm objects than kiln allows ({MAX_INSTANCES} instances, {MAX_MEMORIES} memories, {MAX_TABLES} tables in all): {detail}"
    )]
    ObjectLimit { target: String, detail: String },
    #[error("recipe for '{target}' logged more than {limit} bytes in total and was stopped")]
    LogLimit { target: String, limit: usize },
    #[error(
        "target '{target}' wrote more than its disk budget of {} MiB to /work, /out and its tool caches ({bytes} bytes counted, cache seeds it computed included; sparse files count at their apparent size) and was stopped",
        limit / (1024 * 1024)
    )]
    DiskLimit {
        target: String,
        bytes: u64,
        limit: u64,
    },
    #[error("recipe for '{target}' sent a log message of {len} bytes; the limit is {limit} bytes")]
    LogTooLong {
        target: String,
        len: usize,
        limit: usize,
    },
    #[error("recipe for '{target}' crashed: {trap}{}", stderr_tail(.stderr))]
    Crashed {
        target: String,
        trap: String,
        stderr: String,
    },
    #[error(
        "fixed-output step of target '{target}' produced {got}, but {setting} is {specified}\n  {fix}"
    )]
    FixedOutputMismatch {
        target: String,
        setting: String,
        specified: String,
        got: String,
        /// What to do: where the pin is and how to change it.
        fix: String,
    },
    #[error(
        "{setting} of target '{target}' is not set: its fixed-output step produced {got}\n  pin it by setting {setting} = \"{got}\" in kiln.toml (nothing downloaded was used)"
    )]
    FixedOutputUnpinned {
        target: String,
        setting: String,
        got: String,
    },
    /// `kiln lock` ran the target's downloads and stopped the recipe at its
    /// first other tool step; `pins` are its fixed-output steps' pins.
    #[error("recipe for '{target}' was stopped after its downloads (kiln lock)")]
    StoppedForLock {
        target: String,
        pins: Vec<crate::record::FixedOutputUse>,
    },
    #[error("recipe for '{target}' could not be loaded: {message}")]
    Load { target: String, message: String },
}

fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        return String::new();
    }
    let start = t.len().saturating_sub(2000);
    let start = (start..t.len())
        .find(|i| t.is_char_boundary(*i))
        .unwrap_or(0);
    format!(
        "\n  recipe stderr:\n    {}",
        t[start..].replace('\n', "\n    ")
    )
}

/// The wasmtime engine plus the compiled-component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RecipeState>,
    compiled_dir: PathBuf,
}

struct RecipeState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    host: host::HostState,
}

impl WasiView for RecipeState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    /// An engine with epoch interruption, keeping compiled components in `compiled_dir`.
    pub fn new(compiled_dir: &Path) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("kiln-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        bindings::Recipe::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s: &mut RecipeState| &mut s.host,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::create_dir_all(compiled_dir)?;
        Ok(Runtime {
            engine,
            linker,
            compiled_dir: compiled_dir.to_path_buf(),
        })
    }

    /// Compile `wasm` (or load it from the cache), refusing a component
    /// built against another version of the contract by name.
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        let component = compiled::load(&self.engine, &self.compiled_dir, wasm)?;
        check_contract(&self.engine, &component)?;
        Ok(component)
    }

    /// Build one target with `component`: a store for the run, the
    /// recipe called, its stdio added to the log, and the verdict.
    pub fn run(&self, component: &Component, run: &RecipeRun) -> Result<RunReport, RecipeError> {
        let deadline = Instant::now() + run.limits.timeout;
        let stdio = Stdio::new();
        let mut store = self.new_store(run, deadline, &stdio)?;
        // Dropped when this function returns, however it returns.
        let _watchdog = watchdog::Watchdog::arm(&run.target, run.limits.timeout);
        let ended = self.call(&mut store, component, run, deadline, &stdio);
        verdict(ended?, store.data(), run, &stdio)
    }

    /// A wasmtime store for one run: its WASI context, host state, memory
    /// limiter and epoch deadline.
    fn new_store(
        &self,
        run: &RecipeRun,
        deadline: Instant,
        stdio: &Stdio,
    ) -> Result<Store<RecipeState>, RecipeError> {
        let wasi = wasi::build_ctx(run, stdio.stdout.clone(), stdio.stderr.clone())
            .map_err(|e| load_error(&run.target, e))?;
        let state = RecipeState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(run.limits.memory_bytes),
            host: host::HostState::new(run, deadline),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = (run.limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Instantiate `component` and run it: a recipe's `build`, or a WASI
    /// command's `main` (its exit code the verdict). `Err` is a trap,
    /// already classified.
    fn call(
        &self,
        store: &mut Store<RecipeState>,
        component: &Component,
        run: &RecipeRun,
        deadline: Instant,
        stdio: &Stdio,
    ) -> Result<Result<(), bindings::BuildError>, RecipeError> {
        let trapped = |e: wasmtime::Error, store: &Store<RecipeState>| {
            classify_trap(
                e,
                run,
                &store.data().limiter,
                deadline,
                &stdio.stderr_text(),
            )
        };
        if !is_command(&self.engine, component) {
            let recipe = bindings::Recipe::instantiate(&mut *store, component, &self.linker)
                .map_err(|e| instantiate_error(&run.target, e))?;
            return recipe
                .call_build(&mut *store)
                .map_err(|e| trapped(e, store));
        }
        let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
            &mut *store,
            component,
            &self.linker,
        )
        .map_err(|e| instantiate_error(&run.target, e))?;
        let failed = |what: String| {
            Ok(Err(bindings::BuildError::Failed(format!(
                "{what}{}",
                stdio.output_tail()
            ))))
        };
        match command.wasi_cli_run().call_run(&mut *store) {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(())) => failed("the command's main returned an error".into()),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(wasmtime_wasi::I32Exit(0)) => Ok(Ok(())),
                Some(wasmtime_wasi::I32Exit(code)) => {
                    failed(format!("the command exited with code {code}"))
                }
                None => Err(trapped(e, store)),
            },
        }
    }
}

/// A recipe's stdout and stderr, kept in memory (bounded).
struct Stdio {
    stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl Stdio {
    fn new() -> Self {
        Stdio {
            stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(RECIPE_STDIO_LIMIT),
            stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(RECIPE_STDIO_LIMIT),
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }

    /// The end of what a command printed, for its error.
    fn output_tail(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.stdout.contents()).into_owned();
        text.push_str(&self.stderr_text());
        stderr_tail(&text)
    }
}

/// The run's report, with the recipe's stdout and stderr lines added to its log.
fn take_report(state: &RecipeState, stdio: &Stdio) -> RunReport {
    let mut report = state.host.take_report();
    for (source, pipe) in [
        (LogSource::RecipeStdout, &stdio.stdout),
        (LogSource::RecipeStderr, &stdio.stderr),
    ] {
        let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
        for line in text.lines() {
            report.log.push(LogLine {
                source,
                message: line.to_string(),
            });
        }
    }
    report
}

/// What the run's ending means: the report of a build that ended well
/// (and whose output and tool caches fit the disk budget), or the
/// recipe's error.
fn verdict(
    ended: Result<(), bindings::BuildError>,
    state: &RecipeState,
    run: &RecipeRun,
    stdio: &Stdio,
) -> Result<RunReport, RecipeError> {
    let target = run.target.clone();
    let e = match ended {
        Ok(()) => {
            // The output is hashed next: refuse one past the disk budget
            // (a sparse 10 TiB file, say) before anyone reads it. The tool
            // caches the run mounted count too: measured before the report
            // (which lists them) is taken.
            return match state.host.check_disk(true) {
                Ok(()) => Ok(take_report(state, stdio)),
                Err(trap) => {
                    Err(trap
                        .downcast::<RecipeError>()
                        .unwrap_or(RecipeError::TimeLimit {
                            target,
                            limit: run.limits.timeout,
                            note: String::new(),
                        }))
                }
            };
        }
        Err(e) => e,
    };
    let (bad_params, mut message) = match e {
        bindings::BuildError::BadParams(m) => (true, m),
        bindings::BuildError::ToolFailed(m) => (false, m),
        bindings::BuildError::Failed(m) => (false, m),
        bindings::BuildError::Host(e) => (false, host::describe(&e)),
    };
    if message.len() > ERROR_LIMIT {
        let mut cut = ERROR_LIMIT;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" … (cut at 64 KiB)");
    }
    Err(if bad_params {
        RecipeError::BadParams { target, message }
    } else {
        RecipeError::Failed { target, message }
    })
}

fn load_error(target: &str, e: wasmtime::Error) -> RecipeError {
    RecipeError::Load {
        target: target.to_string(),
        message: format!("{e:#}"),
    }
}

/// Instantiation failed: past the limiter's caps on instances, memories
/// and tables (wasmtime says so with this wording), or the component does
/// not load.
fn instantiate_error(target: &str, e: wasmtime::Error) -> RecipeError {
    let detail = format!("{e:#}");
    if detail.contains("resource limit exceeded") {
        RecipeError::ObjectLimit {
            target: target.to_string(),
            detail,
        }
    } else {
        load_error(target, e)
    }
}

/// The contract version this kiln implements (`wit/recipe.wit`).
pub const CONTRACT: &str = "kiln:recipe@0.3.0";

/// Refuse a component that imports another version of `kiln:recipe`
/// before wasmtime's linker gives a puzzling "no import named …".
fn check_contract(engine: &Engine, component: &Component) -> anyhow::Result<()> {
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix("kiln:recipe/") else {
            continue;
        };
        let version = rest.split_once('@').map_or("(no version)", |(_, v)| v);
        if format!("kiln:recipe@{version}") != CONTRACT {
            anyhow::bail!(
                "it was built against kiln:recipe@{version}, and this kiln speaks {CONTRACT}: rebuild the recipe against {CONTRACT} (the kiln-sdk or the wit/ of this kiln); docs/writing-recipes.md lists what changed"
            );
        }
    }
    Ok(())
}

/// Whether `component` is a WASI command (exports `wasi:cli/run`) rather
/// than a recipe (exports `build`).
fn is_command(engine: &Engine, component: &Component) -> bool {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    !names.iter().any(|n| n == "build") && names.iter().any(|n| n.starts_with("wasi:cli/run@"))
}

/// Why a recipe trapped: the host's own error (it trapped with one), the
/// deadline, the memory limit, or a crash.
fn classify_trap(
    e: wasmtime::Error,
    run: &RecipeRun,
    limiter: &MemoryLimiter,
    deadline: Instant,
    stderr: &str,
) -> RecipeError {
    let target = run.target.clone();
    let e = match e.downcast::<RecipeError>() {
        Ok(err) => return err,
        Err(e) => e,
    };
    if matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) || Instant::now() >= deadline
    {
        return RecipeError::TimeLimit {
            target,
            limit: run.limits.timeout,
            note: String::new(),
        };
    }
    if limiter.hit() {
        return RecipeError::MemoryLimit {
            target,
            limit: run.limits.memory_bytes,
        };
    }
    let trap = match e.downcast_ref::<wasmtime::Trap>() {
        Some(t) => t.to_string(),
        None => format!("{e}"),
    };
    RecipeError::Crashed {
        target,
        trap,
        stderr: stderr.to_string(),
    }
}
