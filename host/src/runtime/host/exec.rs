//! Running tools for the recipe: check a request against what the target
//! declared, plan its sandbox, run it (alone or in a batch), and record
//! what it did. The WIT glue is `tool_exec.rs`.

use std::path::Path;
use std::time::Instant;

use super::HostState;
use super::paths::{resolve_cwd, resolve_tool};
use crate::executor::{Executor, Placement};
use crate::record::ExecRecord;
use crate::report::{Event, Reporter};
use crate::runtime::RecipeError;
use crate::runtime::bindings::kiln::recipe::tool_exec;
use crate::sandbox::{self, Network, SandboxError, SandboxSpec, policy};

impl HostState {
    /// `tool-exec.exec`: one command, checked against what the target
    /// declared, run in the sandbox; a fixed-output step goes through
    /// [`HostState::exec_fixed_output`].
    pub(super) fn exec_one(
        &mut self,
        cmd: tool_exec::Command,
    ) -> wasmtime::Result<Result<tool_exec::Output, tool_exec::Error>> {
        self.check_deadline()?;
        let mut spec = match self.plan_exec(&cmd) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(e)),
        };
        if cmd.fixed_output.is_none() {
            // Before a cache seed's tool would run.
            self.stop_for_lock()?;
        }
        if !cmd.caches.is_empty() {
            if cmd.fixed_output.is_some() {
                return Ok(Err(tool_exec::Error::Invalid(
                    "a fixed-output step cannot mount caches: what it fetches may reach the build only through its pinned directory".into(),
                )));
            }
            match self.cache_mounts(&cmd.caches) {
                Ok(mounts) => spec.mounts.extend(mounts),
                Err(e) => return Ok(Err(e)),
            }
        }
        if let Some(fo) = &cmd.fixed_output {
            return self.exec_fixed_output(fo, spec);
        }
        let result = self.run_step(&spec);
        let out = self.finish(&spec, result, None)?;
        self.check_disk(false)?;
        Ok(out)
    }

    /// `tool-exec.exec-all`: commands at once, each checked and planned as
    /// `exec` would; a batch holds no fixed-output step (those run alone,
    /// pinned, with network).
    pub(super) fn exec_batch(
        &mut self,
        cmds: Vec<tool_exec::Command>,
    ) -> wasmtime::Result<Vec<Result<tool_exec::Output, tool_exec::Error>>> {
        self.check_deadline()?;
        self.stop_for_lock()?;
        let planned: Vec<Result<SandboxSpec, tool_exec::Error>> = cmds
            .iter()
            .map(|cmd| {
                if cmd.fixed_output.is_some() {
                    return Err(tool_exec::Error::Invalid(
                        "a fixed-output step runs alone (exec), never in exec-all".into(),
                    ));
                }
                let mut spec = self.plan_exec(cmd)?;
                spec.mounts.extend(self.cache_mounts(&cmd.caches)?);
                Ok(spec)
            })
            .collect();
        let results = run_at_most(
            &planned,
            &self.run.executor,
            // A remote step's answer is written back into the /work and
            // /out every command of the batch shares, and a cache's upload
            // must hold only its own step's writes: one at a time.
            if matches!(self.run.executor, Executor::Remote(_)) {
                1
            } else {
                exec_all_concurrency()
            },
            (&self.run.reporter, &self.run.target),
        );
        let mut outputs = Vec::with_capacity(planned.len());
        for (plan, result) in planned.into_iter().zip(results) {
            outputs.push(match (plan, result) {
                (Err(e), _) => Err(e),
                (Ok(spec), Some(result)) => self.finish(&spec, result, None)?,
                (Ok(_), None) => Err(tool_exec::Error::Failed("not run".into())),
            });
        }
        self.check_disk(false)?;
        Ok(outputs)
    }

    /// Run `spec` where this build's steps run, reporting its start and end.
    pub(super) fn run_step(&self, spec: &SandboxSpec) -> StepResult {
        run_step(
            &self.run.reporter,
            &self.run.target,
            spec,
            &self.run.executor,
            false,
        )
    }

    /// Run `spec` in this machine's sandbox whatever the executor
    /// (fixed-output steps: they need the network and a pin; cache seeds,
    /// `seed`, reported as such: their result is this machine's store).
    pub(super) fn run_local_step(&self, spec: &SandboxSpec, seed: bool) -> StepResult {
        let here = Executor::Local(self.run.sandbox);
        run_step(&self.run.reporter, &self.run.target, spec, &here, seed)
    }
}

impl HostState {
    /// Record one finished run and turn it into what the recipe sees; a
    /// time limit or a sandbox that cannot start ends the build.
    pub(super) fn finish(
        &mut self,
        spec: &SandboxSpec,
        result: StepResult,
        note: Option<String>,
    ) -> wasmtime::Result<Result<tool_exec::Output, tool_exec::Error>> {
        match result {
            Ok((out, placement)) => {
                self.record_exec(spec, &out, placement);
                let mut stderr = out.stderr;
                if let Some(note) = note {
                    stderr.extend_from_slice(note.as_bytes());
                }
                let exit = match (out.exit_code, out.signal) {
                    (Some(code), _) => tool_exec::Exit::Code(code),
                    (None, Some(signal)) => tool_exec::Exit::Signal(signal.unsigned_abs()),
                    (None, None) => tool_exec::Exit::Signal(9),
                };
                Ok(Ok(tool_exec::Output {
                    exit,
                    stdout: out.stdout,
                    stderr,
                    stdout_truncated: out.stdout_truncated,
                    stderr_truncated: out.stderr_truncated,
                }))
            }
            Err(SandboxError::TimedOut { capped_at, .. }) => {
                Err(self.trap(RecipeError::TimeLimit {
                    target: self.run.target.clone(),
                    limit: self.run.limits.timeout,
                    note: capped_at
                        .map(|n| {
                            format!(
                                "; its tools had also reached the sandbox's limit of {n} processes"
                            )
                        })
                        .unwrap_or_default(),
                }))
            }
            Err(SandboxError::Interrupted(_)) => Err(self.trap(RecipeError::Interrupted {
                target: self.run.target.clone(),
            })),
            Err(SandboxError::DiskLimit { used, .. }) => Err(self.trap(RecipeError::DiskLimit {
                target: self.run.target.clone(),
                bytes: used,
                limit: self.run.limits.disk_bytes,
            })),
            Err(
                e @ (SandboxError::Unavailable { .. }
                | SandboxError::NetworkUnavailable { .. }
                | SandboxError::Remote(_)),
            ) => Err(self.trap(RecipeError::Failed {
                target: self.run.target.clone(),
                message: e.to_string(),
            })),
            Err(e) => Ok(Err(tool_exec::Error::Failed(e.to_string()))),
        }
    }

    pub(super) fn record_exec(
        &self,
        spec: &SandboxSpec,
        out: &sandbox::SandboxOutput,
        placement: Option<Placement>,
    ) {
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
            placement,
            fixed_output: None,
        });
    }
}

/// How many commands of one `exec-all` run at once: one per core, and
/// never fewer than two (commands of a batch may wait for each other). The
/// processes and memory of all of them together are bounded by the build's
/// parent cgroup; this bounds how many sandboxes exist at once.
fn exec_all_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
}

/// Run the planned specs, at most `at_once` at a time; results in order
/// (None where the plan was refused).
fn run_at_most(
    planned: &[Result<SandboxSpec, tool_exec::Error>],
    executor: &Executor,
    at_once: usize,
    (reporter, target): (&Reporter, &str),
) -> Vec<Option<StepResult>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let slots: Vec<Mutex<Option<StepResult>>> = planned.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..at_once.min(planned.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(plan) = planned.get(i) else { break };
                    if let Ok(spec) = plan {
                        let out = run_step(reporter, target, spec, executor, false);
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// How many of a tool's arguments its start event carries.
const STEP_ARGS_SHOWN: usize = 3;

/// What one step left, and where it ran when not here.
pub(super) type StepResult = Result<(sandbox::SandboxOutput, Option<Placement>), SandboxError>;

/// Run one tool where `executor` runs steps, reporting its start (as a
/// cache seed's, if `seed`) and end.
fn run_step(
    reporter: &Reporter,
    target: &str,
    spec: &SandboxSpec,
    executor: &Executor,
    seed: bool,
) -> StepResult {
    reporter.send(Event::StepStarted {
        target: target.to_string(),
        program: spec.program.clone(),
        args: spec.args.iter().take(STEP_ARGS_SHOWN).cloned().collect(),
        seed,
    });
    let warm_caches = caches_warm(spec);
    let started = std::time::Instant::now();
    let result = executor.run(spec);
    let (exit_code, signal, cpu, peak_memory) = match &result {
        Ok((out, _)) => (out.exit_code, out.signal, out.cpu, out.peak_memory),
        Err(_) => (None, None, None, None),
    };
    reporter.send(Event::StepFinished {
        target: target.to_string(),
        program: spec.program.clone(),
        exit_code,
        signal,
        ms: started.elapsed().as_millis() as u64,
        cpu_ms: cpu.map(|d| d.as_millis() as u64),
        peak_memory,
        warm_caches,
    });
    result
}

/// Whether every tool cache `spec` mounts held something before it ran
/// (None: it mounts none). A remote step's are never made here: cold.
fn caches_warm(spec: &SandboxSpec) -> Option<bool> {
    let mut caches = spec
        .mounts
        .iter()
        .filter(|m| m.writable && m.guest.starts_with("/cache/"))
        .peekable();
    caches.peek()?;
    Some(
        caches
            .all(|m| std::fs::read_dir(&m.host).is_ok_and(|mut entries| entries.next().is_some())),
    )
}

impl HostState {
    /// Check a request against what the target declared and turn it into a spec.
    fn plan_exec(&self, cmd: &tool_exec::Command) -> Result<SandboxSpec, tool_exec::Error> {
        let tool = &cmd.tool;
        let input = self.run.inputs.iter().find(|i| i.name == tool.input).ok_or_else(|| {
            let names: Vec<_> = self.run.inputs.iter().map(|i| i.name.as_str()).collect();
            tool_exec::Error::UndeclaredTool(format!(
                "'{}' is not an input of target '{}' (its inputs: {}); declare the tool's input in kiln.toml",
                tool.input,
                self.run.target,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        })?;
        let program = resolve_tool(input, &tool.path)?;

        let cwd = resolve_cwd(cmd.cwd.as_deref().unwrap_or(""), &self.run.work_dir)?;
        // The network comes only with a fixed-output step (`plan_fixed_output`).
        let network = Network::None;

        let tool_dir = Path::new(&program)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let env = policy::tool_env(&tool_dir, self.run.source_date_epoch, &cmd.env);
        let mounts = policy::mounts(
            self.run
                .inputs
                .iter()
                .map(|i| (i.name.as_str(), i.host_path.as_path())),
            &self.run.work_dir,
            &self.run.out_dir,
            &self.run.etc_dir,
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
            limits: self.step_limits(self.run.limits.disk_bytes),
        })
    }

    /// A tool step's limits: the build's memory for tools, and at most
    /// `disk_bytes` written, held while the tool runs, not only counted
    /// after.
    pub(super) fn step_limits(&self, disk_bytes: u64) -> sandbox::SandboxLimits {
        let default = sandbox::SandboxLimits::default();
        sandbox::SandboxLimits {
            file_bytes: disk_bytes,
            disk_bytes: Some(disk_bytes),
            memory_bytes: self
                .run
                .limits
                .tool_memory_bytes
                .unwrap_or(default.memory_bytes),
            ..default
        }
    }
}
