//! The hermetic backend: bubblewrap (`bwrap`), as Flatpak and melange use it.
//!
//! Each exec gets fresh user, mount, pid, network, ipc, uts and cgroup
//! namespaces (`--unshare-all`), an empty tmpfs root holding only the spec's
//! mounts plus a read-only `/dev` (null, zero, full, random, urandom, tty),
//! a fresh `/proc`, and size-capped tmpfs at `/tmp` and `/dev/shm`, hostname `localhost`, uid/gid
//! 1000, no capabilities, `no_new_privs`, the syscall filter of
//! [`super::seccomp`], and it dies with kiln.
//!
//! bwrap itself is a host process, so it starts with an *empty* environment:
//! the tool's variables reach only the sandboxed program (`--clearenv`, then
//! `--setenv`), and a loader variable such as `LD_PRELOAD` in a recipe's env
//! never touches a host process.
//!
//! Starting is two-phase. [`start`] launches bwrap, which sets up the
//! namespaces and then blocks (`--block-fd`) before running the tool;
//! [`Pending::release`] applies the per-sandbox rlimits to the blocked
//! process, attaches user-mode networking when the spec asks for it, and
//! lets the tool run. Nothing the tool does can happen before its limits
//! are in place.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use command_fds::{CommandFdExt, FdMapping};

use super::{Network, SandboxError, SandboxSpec, net};

/// The uid and gid a tool runs as inside the sandbox.
pub const BUILD_UID: u32 = 1000;

/// Descriptors bwrap sees, past stdio.
const INFO_FD: i32 = 3;
const BLOCK_FD: i32 = 4;
const FIRST_SECCOMP_FD: i32 = 5;

/// A sandbox whose namespaces exist and whose tool has not started yet.
pub(super) struct Pending {
    pub child: Child,
    /// The sandbox's first process, as the host numbers it.
    sandbox_pid: Option<i32>,
    release: std::io::PipeWriter,
}

/// The bwrap arguments for `spec`, up to and including the program's argv.
/// Pure, so the policy it expresses can be read and tested in one place.
pub(super) fn args(spec: &SandboxSpec, seccomp_fds: &[i32]) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&["--unshare-all", "--die-with-parent", "--new-session"]);
    push(&["--cap-drop", "ALL"]);
    let uid = BUILD_UID.to_string();
    push(&["--uid", &uid, "--gid", &uid, "--hostname", "localhost"]);
    push(&["--clearenv"]);
    for (k, v) in &spec.env {
        push(&["--setenv", k, v]);
    }
    for m in &spec.mounts {
        a.push((if m.writable { "--bind" } else { "--ro-bind" }).into());
        a.push(m.host.clone().into());
        a.push(m.guest.clone().into());
    }
    let tmp_size = spec.limits.tmp_bytes.to_string();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&["--dev", "/dev", "--proc", "/proc"]);
    push(&["--size", &tmp_size, "--tmpfs", "/tmp"]);
    // POSIX shared memory gets a sized tmpfs of its own, like /tmp;
    // /dev itself (an unbounded tmpfs bwrap makes) is read-only below.
    push(&["--size", &tmp_size, "--tmpfs", "/dev/shm"]);
    // Everything outside the writable mounts is read-only, the root and
    // /dev included.
    push(&["--remount-ro", "/dev"]);
    push(&["--remount-ro", "/"]);
    push(&["--chdir", &spec.cwd]);
    push(&["--info-fd", &INFO_FD.to_string()]);
    push(&["--block-fd", &BLOCK_FD.to_string()]);
    for fd in seccomp_fds {
        push(&["--add-seccomp-fd", &fd.to_string()]);
    }
    push(&["--", &spec.program]);
    a.extend(spec.args.iter().map(OsString::from));
    a
}

/// Launch bwrap for `spec`; it stops before running the tool.
pub(super) fn start(spec: &SandboxSpec) -> Result<Pending, SandboxError> {
    let bwrap = available().map_err(|reason| SandboxError::Unavailable { reason })?;
    let unavailable = |what: &str, e: &dyn std::fmt::Display| SandboxError::Unavailable {
        reason: format!("{what}: {e}"),
    };
    let programs = super::seccomp::programs()
        .map_err(|e| unavailable("cannot build the syscall filter", &e))?;
    let (info_r, info_w) = std::io::pipe().map_err(|e| unavailable("pipe", &e))?;
    let (block_r, block_w) = std::io::pipe().map_err(|e| unavailable("pipe", &e))?;
    let mut mappings = vec![
        FdMapping {
            parent_fd: OwnedFd::from(info_w),
            child_fd: INFO_FD,
        },
        FdMapping {
            parent_fd: OwnedFd::from(block_r),
            child_fd: BLOCK_FD,
        },
    ];
    let mut seccomp_fds = Vec::new();
    for (i, program) in programs.iter().enumerate() {
        // A filter is a few hundred bytes: it fits in the pipe's buffer.
        let (r, mut w) = std::io::pipe().map_err(|e| unavailable("pipe", &e))?;
        w.write_all(&super::seccomp::to_bytes(program))
            .map_err(|e| unavailable("writing the syscall filter", &e))?;
        drop(w);
        let fd = FIRST_SECCOMP_FD + i as i32;
        seccomp_fds.push(fd);
        mappings.push(FdMapping {
            parent_fd: OwnedFd::from(r),
            child_fd: fd,
        });
    }
    let mut cmd = Command::new(bwrap);
    cmd.args(args(spec, &seccomp_fds));
    // bwrap runs on the host: it gets no variable of the tool's, nor kiln's.
    cmd.env_clear();
    cmd.fd_mappings(mappings)
        .map_err(|e| unavailable("passing descriptors to bwrap", &e))?;
    let kept: Vec<i32> = [INFO_FD, BLOCK_FD].into_iter().chain(seccomp_fds).collect();
    let child = super::spawn_piped(cmd, &spec.program, &kept)?;
    let sandbox_pid = read_child_pid(info_r);
    Ok(Pending {
        child,
        sandbox_pid,
        release: block_w,
    })
}

impl Pending {
    /// Apply the spec's limits to the waiting sandbox, give it networking if
    /// asked, and let the tool start. The returned guard keeps the network
    /// stack alive; drop it once the tool has exited.
    pub(super) fn release(
        mut self,
        spec: &SandboxSpec,
    ) -> Result<(Child, Option<net::UserNet>), SandboxError> {
        let Some(pid) = self.sandbox_pid else {
            // bwrap failed before making the sandbox; its stderr says why.
            drop(self.release);
            return Ok((self.child, None));
        };
        let fail = |what: String| SandboxError::Unavailable { reason: what };
        if let Err(e) = set_limits(pid, spec) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(fail(format!("cannot set the sandbox's limits: {e}")));
        }
        let user_net = match spec.network {
            Network::None => None,
            Network::Outbound => match net::UserNet::attach(pid) {
                Ok(n) => Some(n),
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(e);
                }
            },
        };
        let _ = self.release.write_all(b"x");
        drop(self.release);
        Ok((self.child, user_net))
    }
}

/// rlimits on the sandbox's first process, inherited by everything it starts.
///
/// `RLIMIT_NPROC` counts the processes of the sandbox's uid *in its own user
/// namespace*, so it caps this sandbox alone; it backs up the pids cgroup
/// where kiln cannot make one (cgroup v2 without delegation, not root).
fn set_limits(pid: i32, spec: &SandboxSpec) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, prlimit};
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::other("bad sandbox pid"))?;
    let cap = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    let l = &spec.limits;
    prlimit(Some(pid), Resource::Nproc, cap(u64::from(l.max_processes)))?;
    prlimit(Some(pid), Resource::Fsize, cap(l.file_bytes))?;
    prlimit(Some(pid), Resource::As, cap(l.memory_bytes))?;
    prlimit(Some(pid), Resource::Core, cap(0))?;
    Ok(())
}

/// The `child-pid` bwrap reports on its info descriptor, once the
/// namespaces exist; `None` when bwrap failed first.
fn read_child_pid(mut info: std::io::PipeReader) -> Option<i32> {
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    // bwrap writes one small JSON object; its sandbox may keep the pipe open,
    // so read until the object closes rather than to end of file.
    while !text.contains(&b'}') && text.len() < 64 * 1024 {
        match info.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("child-pid")?.as_i64()?.try_into().ok()
}

/// bwrap's path, once it has been seen to create namespaces on this machine.
/// bwrap exits with its child's code, or 128 + N when a signal N killed
/// it: the shell's convention, and all bwrap tells. Read it the same way
/// (a tool that itself exits with 129..=192 is reported as signalled).
pub(super) fn decode_exit(out: &mut super::SandboxOutput) {
    if let Some(code @ 129..=192) = out.exit_code {
        out.exit_code = None;
        out.signal = Some(code - 128);
    }
}

pub fn available() -> Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let path = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"]
                .into_iter()
                .map(PathBuf::from)
                .chain(
                    std::env::var_os("PATH")
                        .into_iter()
                        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                        .map(|d| d.join("bwrap")),
                )
                .find(|p| p.is_file())
                .ok_or_else(|| "bubblewrap (bwrap) is not installed".to_string())?;
            let mut probe = Command::new(&path);
            crate::descriptors::keep_only(&mut probe, &[]);
            let out = probe
                .args([
                    "--unshare-all",
                    "--die-with-parent",
                    "--ro-bind",
                    "/",
                    "/",
                    "--",
                    "/bin/true",
                ])
                .env_clear()
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{} does not run: {e}", path.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} cannot create namespaces here (user namespaces disabled?): {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(path)
        })
        .clone()
}
