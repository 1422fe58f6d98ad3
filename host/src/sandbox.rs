//! The tool sandbox: a plain, serialisable [`SandboxSpec`] and one entry
//! point, [`run`].
//!
//! A spec says which host directories appear where (inputs read-only at
//! `/inputs/<name>`, `/work` and `/out` read-write), the argv, the complete
//! environment, the cwd, whether the network is reachable, a timeout and an
//! output cap. Backends live in their own files:
//!
//! * [`bwrap`]: bubblewrap — fresh user, mount, pid, network, ipc and uts
//!   namespaces; nothing of the host's filesystem but the mounts listed; a
//!   syscall filter ([`seccomp`]); rlimits, and pids and memory cgroups
//!   where kiln can make them ([`cgroups`]);
//!   for [`Network::Outbound`], a user-mode network stack ([`net`]);
//! * [`unsandboxed`]: `--sandbox=off`, for machines without user namespaces;
//!   the process runs on the host with sandbox paths rewritten to host paths,
//!   and its output is marked not hermetic.
//!
//! This module does not decide what a recipe may run: the runtime checks the
//! tool, cwd and network against the target before building a spec.

mod bwrap;
pub use bwrap::BUILD_UID;
mod cgroups;
pub mod net;
pub mod policy;
pub mod seccomp;
mod unsandboxed;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Bytes kept of a tool's stdout, and separately of its stderr.
pub const OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// Processes (and threads) a sandbox may hold at once: room for a parallel
/// `go build` on a large machine, far below what a fork bomb wants.
pub const MAX_PROCESSES: u32 = 4096;

/// How tools are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Every exec in fresh namespaces holding only the declared inputs.
    Hermetic,
    /// No isolation (`--sandbox=off`): outputs are marked not hermetic.
    Off,
}

impl SandboxMode {
    /// The name used in build keys, records and `--sandbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Hermetic => "hermetic",
            SandboxMode::Off => "off",
        }
    }
}

impl std::fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a sandbox's network namespace is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// Loopback only: nothing outside the sandbox.
    None,
    /// Outbound connections through a user-mode stack; the host's loopback,
    /// its own addresses and the link-local range stay unreachable.
    Outbound,
}

/// Resource caps for one exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Processes (and threads) at once: a pids cgroup where kiln can make
    /// one, and `RLIMIT_NPROC` in the sandbox's user namespace always.
    pub max_processes: u32,
    /// Memory of all the sandbox's processes together, where kiln can make
    /// a memory cgroup; the address space of each process
    /// (`RLIMIT_AS`) always.
    pub memory_bytes: u64,
    /// The largest file a process may write (`RLIMIT_FSIZE`; sparse files
    /// count at their apparent size).
    pub file_bytes: u64,
    /// The size of the tmpfs at `/tmp`.
    pub tmp_bytes: u64,
    /// What the writable mounts may hold together while the tool runs
    /// (None: unwatched). They are measured while it runs, at least every
    /// [`DISK_POLL`] (less often when a walk is slow: at most a twentieth
    /// of the time goes to measuring); past the limit the sandbox is killed.
    /// The most a tool can overshoot by is what it writes between two looks.
    pub disk_bytes: Option<u64>,
}

/// How often a running sandbox's writable mounts are measured, at most.
pub const DISK_POLL: Duration = Duration::from_millis(100);

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            max_processes: MAX_PROCESSES,
            // A quarter is left to the host: a sandbox that fills its share
            // is stopped before the machine runs out.
            memory_bytes: physical_memory().unwrap_or(16 << 30) / 4 * 3,
            file_bytes: 64 << 30,
            tmp_bytes: 4 << 30,
            disk_bytes: None,
        }
    }
}

/// Bytes of RAM on this machine (`/proc/meminfo`).
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A host directory and where the sandbox shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

/// Everything one exec needs: serialisable so it can be logged or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The executable, as the sandbox sees it (`/inputs/go/bin/go`).
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment.
    pub env: BTreeMap<String, String>,
    /// The working directory, as the sandbox sees it.
    pub cwd: String,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub timeout: Duration,
    pub limits: SandboxLimits,
}

/// What a finished process left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOutput {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration: Duration,
    /// CPU time of the tool and every process it started (user and
    /// system), where kiln could measure it.
    pub cpu: Option<Duration>,
    /// The most memory its processes held at once, where a memory cgroup
    /// counted it.
    pub peak_memory: Option<u64>,
}

/// Why a process could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error(
        "cannot create a sandbox: {reason}. Install bubblewrap (Debian: apt-get install bubblewrap) on a kernel that allows unprivileged user namespaces, or pass --sandbox=off to build without isolation (the output is then marked not hermetic)"
    )]
    Unavailable { reason: String },
    #[error("cannot give the fixed-output step a network: {reason}")]
    NetworkUnavailable { reason: String },
    /// The remote executor could not run the step (its error names why).
    #[error("{0}")]
    Remote(String),
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "{program} was killed with every process it started: its writable directories held {used} bytes, past the disk budget of {} MiB",
        limit >> 20
    )]
    DiskLimit {
        program: String,
        limit: u64,
        used: u64,
    },
    #[error("{program} ran longer than {limit:?} and was killed with every process it started{}",
        capped_at.map(|n| format!("; it had also reached the sandbox's limit of {n} processes")).unwrap_or_default())]
    TimedOut {
        program: String,
        limit: Duration,
        /// The process limit, when the sandbox reached it.
        capped_at: Option<u32>,
    },
}

/// Run `spec` to completion under `mode`.
pub fn run(spec: &SandboxSpec, mode: SandboxMode) -> Result<SandboxOutput, SandboxError> {
    crate::interrupt::check()?;
    // `_user_net` keeps a fetching step's network stack up until it exits.
    let (child, cgroups, _user_net) = match mode {
        SandboxMode::Hermetic => {
            let l = &spec.limits;
            let cgroups = cgroups::SandboxCgroups::create(l.max_processes, l.memory_bytes);
            let pending = cgroups.spawn_inside(|| bwrap::start(spec))?;
            let (child, user_net) = pending.release(spec)?;
            (child, Some(cgroups), user_net)
        }
        SandboxMode::Off => (unsandboxed::spawn(spec)?, None, None),
    };
    let capped_at = || cgroups.as_ref().and_then(|cg| cg.processes_hit());
    let disk = spec.limits.disk_bytes.map(|limit| DiskWatch {
        dirs: spec
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.host.clone())
            .collect(),
        limit,
    });
    match wait_capped(child, &spec.program, spec.timeout, disk) {
        Err(SandboxError::TimedOut { program, limit, .. }) => Err(SandboxError::TimedOut {
            program,
            limit,
            capped_at: capped_at(),
        }),
        Ok(mut out) => {
            if mode == SandboxMode::Hermetic {
                bwrap::decode_exit(&mut out);
            }
            if let Some(cg) = &cgroups {
                // Hermetic: only a cgroup sees the tool's processes.
                out.cpu = cg.cpu_time();
                out.peak_memory = cg.peak_memory();
            }
            if let Some(n) = capped_at() {
                out.stderr.extend_from_slice(
                    format!("\nkiln: the sandbox reached its limit of {n} processes; forks beyond it failed\n")
                        .as_bytes(),
                );
            }
            if let Some(bytes) = cgroups.as_ref().and_then(|cg| cg.memory_hit()) {
                out.stderr.extend_from_slice(
                    format!(
                        "\nkiln: the sandbox reached its memory limit of {} MiB (all its processes together); the kernel killed the largest. Raise it with --tool-memory\n",
                        bytes >> 20
                    )
                    .as_bytes(),
                );
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// Start `cmd` with no stdin, piped output, in its own process group (so a
/// timeout can kill everything it starts), holding no descriptor past
/// stdio but `kept`.
fn spawn_piped(
    mut cmd: std::process::Command,
    program: &str,
    kept: &[i32],
) -> Result<Child, SandboxError> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    crate::descriptors::keep_only(&mut cmd, kept);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: program.to_string(),
        source,
    })
}

/// Remove the cgroups this process made to hold all its sandboxes
/// together; call before exiting (a sandbox made later makes them again).
pub fn remove_build_cgroups() {
    cgroups::remove_parents();
}

/// Process groups of tools running now, by their leader's pid.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Kill every tool process group still running: for the runtime's
/// watchdog, which is about to end kiln (bwrap's sandboxes die with kiln;
/// `--sandbox=off` tools would not).
pub fn kill_running() {
    for &pid in RUNNING.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        kill_group(pid);
    }
    remove_build_cgroups();
}

/// The writable directories of a running sandbox and what they may hold.
struct DiskWatch {
    dirs: Vec<PathBuf>,
    limit: u64,
}

impl DiskWatch {
    /// Their apparent size together, stopping once past the limit; nothing
    /// is followed or opened (a tool may be changing the tree meanwhile:
    /// what vanished is not counted).
    fn measure(&self) -> u64 {
        fn walk(p: &std::path::Path, total: &mut u64, limit: u64) {
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                return;
            };
            *total = total.saturating_add(meta.len());
            if *total <= limit
                && meta.is_dir()
                && let Ok(rd) = std::fs::read_dir(p)
            {
                for e in rd.flatten() {
                    walk(&e.path(), total, limit);
                    if *total > limit {
                        return;
                    }
                }
            }
        }
        let mut total = 0;
        for d in &self.dirs {
            walk(d, &mut total, self.limit);
        }
        total
    }
}
/// How a tool's run ended, as [`watch`] saw it.
enum Ended {
    Exited,
    TimedOut,
    /// What it wrote passed the disk limit (`used` bytes).
    OverDisk {
        limit: u64,
        used: u64,
    },
}

/// Wait for the exit `exited` announces, until `deadline`; with `disk`,
/// measure what the tool wrote every [`DISK_POLL`] (or 20 times as long as
/// a measurement takes) and stop it past the limit.
fn watch(exited: &mpsc::Receiver<()>, deadline: Instant, disk: Option<&DiskWatch>) -> Ended {
    let mut poll = DISK_POLL;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if disk.is_some() { left.min(poll) } else { left };
        match exited.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ended::Exited,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            return Ended::TimedOut;
        }
        if let Some(d) = disk {
            let looked = Instant::now();
            let used = d.measure();
            poll = DISK_POLL.max(looked.elapsed() * 20);
            if used > d.limit {
                return Ended::OverDisk {
                    limit: d.limit,
                    used,
                };
            }
        }
    }
}

/// Collect stdout/stderr (capped) and wait, killing the process group at
/// the deadline, or once the writable mounts hold more than `disk` allows.
fn wait_capped(
    mut child: Child,
    program: &str,
    timeout: Duration,
    disk: Option<DiskWatch>,
) -> Result<SandboxOutput, SandboxError> {
    let start = Instant::now();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|r| r.map(|r| std::thread::spawn(move || read_capped(r))));
    let pid = child.id();
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
    // A Ctrl-C between the check before spawning and the line above found
    // no pid to kill: this tool stops here.
    if crate::interrupt::interrupted() {
        kill_group(pid);
    }
    // Wait for the exit without reaping: while the process is a zombie its
    // pid, and so its process group's id, cannot be reused, so the kill
    // below reaches only what this spawn started, never a newcomer that
    // was given the same number.
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let exited = wait_unreaped(pid);
        let _ = tx.send(());
        exited
    });
    let ended = watch(&rx, start + timeout, disk.as_ref());
    // Orphans that kept the pipes open die with the group (and, past the
    // deadline, everything else in it).
    kill_group(pid);
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&p| p != pid);
    let exited = waiter.join().map_err(|_| SandboxError::Spawn {
        program: program.to_string(),
        source: std::io::Error::other("waiter thread panicked"),
    })?;
    // Reaped here, not by `child`, to read its CPU time as well.
    drop(child);
    let (status, cpu) = exited
        .and_then(|()| reap(pid))
        .map_err(|source| SandboxError::Spawn {
            program: program.to_string(),
            source,
        })?;
    let [out, err] = readers.map(|h| h.and_then(|h| h.join().ok()).unwrap_or_default());
    match ended {
        Ended::Exited => {}
        Ended::OverDisk { limit, used } => {
            return Err(SandboxError::DiskLimit {
                program: program.to_string(),
                limit,
                used,
            });
        }
        Ended::TimedOut => {
            return Err(SandboxError::TimedOut {
                program: program.to_string(),
                limit: timeout,
                capped_at: None,
            });
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(SandboxOutput {
        exit_code: status.code(),
        signal: status.signal(),
        stdout: out.0,
        stdout_truncated: out.1,
        stderr: err.0,
        stderr_truncated: err.1,
        duration: start.elapsed(),
        cpu: Some(cpu),
        peak_memory: None,
    })
}

/// Reap the exited child `pid`: its status, and the CPU time it and the
/// descendants it waited for used.
fn reap(pid: u32) -> std::io::Result<(ExitStatus, Duration)> {
    use std::os::unix::process::ExitStatusExt;
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("bad child pid"))?;
    let mut status = 0;
    // SAFETY: `rusage` is plain data the kernel fills in; both pointers
    // are to locals that outlive the call.
    #[allow(
        unsafe_code,
        reason = "wait4 is the one call giving a child's exit status with its resource use"
    )]
    let usage = loop {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break usage;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok((
        ExitStatus::from_raw(status),
        time(usage.ru_utime) + time(usage.ru_stime),
    ))
}

fn read_capped(mut r: Box<dyn Read + Send>) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut truncated = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT - kept.len();
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Block until the child `pid` has exited, leaving it unreaped (a zombie).
fn wait_unreaped(pid: u32) -> std::io::Result<()> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("bad child pid"))?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILL the process group `pid` leads (the spawn put the child in its own group).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid)
        && let Some(pgid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, args: &[&str], timeout: Duration) -> SandboxSpec {
        SandboxSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: "/".into(),
            mounts: vec![],
            network: Network::None,
            timeout,
            limits: SandboxLimits::default(),
        }
    }

    #[test]
    fn output_is_captured_and_capped() {
        let s = spec(
            "/bin/sh",
            &["-c", "head -c 5000000 /dev/zero; echo err >&2; exit 3"],
            Duration::from_secs(20),
        );
        let out = run(&s, SandboxMode::Off).unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.len(), OUTPUT_LIMIT);
        assert!(out.stdout_truncated);
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn the_timeout_kills_the_whole_group() {
        let s = spec(
            "/bin/sh",
            &["-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
        );
        let start = Instant::now();
        let err = run(&s, SandboxMode::Off).unwrap_err();
        assert!(matches!(err, SandboxError::TimedOut { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
