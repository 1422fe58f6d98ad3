//! Which open file descriptors reach the processes kiln starts.
//!
//! A descriptor open across `exec` is a capability: a shell that ran
//! `exec 9>lock` or `exec 3>&1`, or make's jobserver pipes, would hand a
//! host directory, a private file or a log to every tool, and through
//! `/proc/self/fd/N` a sandboxed tool could read, list or write the host
//! through it (bwrap passes open descriptors on). So:
//!
//! * [`seal_inherited`], first thing in `main`: every descriptor kiln
//!   inherited past stdio is marked close-on-exec, so nothing kiln starts —
//!   bwrap, slirp4netns, nsenter, `--sandbox=off` tools — gets one;
//! * [`keep_only`], on each command kiln spawns: in the child, between fork
//!   and exec, every descriptor past stdio but the ones named is marked
//!   close-on-exec. This holds even when the library runs in a process that
//!   did not seal (a test harness, an embedding program), and against a
//!   descriptor some library opened without `O_CLOEXEC`.
//!
//! This module only marks descriptors; it never decides which a backend
//! passes (bwrap's info, block and seccomp pipes are mapped by the backend,
//! which names them here).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The first descriptor past stdin, stdout and stderr.
const FIRST: u32 = 3;

/// Mark every descriptor from 3 up close-on-exec in this process.
pub fn seal_inherited() -> std::io::Result<()> {
    mark_cloexec_from(&[], nofile_limit())
}

/// Let the child of `cmd` keep stdio and the descriptors `kept` (numbers
/// as the child sees them, after any mapping), and no other.
pub fn keep_only(cmd: &mut Command, kept: &[i32]) {
    let mut kept: Vec<u32> = kept
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= FIRST)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let limit = nofile_limit();
    #[expect(
        unsafe_code,
        reason = "pre_exec runs between fork and exec; the closure only makes close_range/fcntl system calls on data prepared before the fork, and allocates nothing"
    )]
    // SAFETY: see the reason above: async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(move || mark_cloexec_from(&kept, limit));
    }
}

/// Mark every descriptor `>= 3` not in `kept` (sorted) close-on-exec.
/// Allocates nothing, so it may run between fork and exec.
fn mark_cloexec_from(kept: &[u32], limit: u32) -> std::io::Result<()> {
    let mut next = FIRST;
    for &k in kept {
        if k > next {
            mark_range(next, k - 1, limit)?;
        }
        next = k.saturating_add(1);
    }
    mark_range(next, u32::MAX, limit)
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)` (Linux 5.11), or where the
/// kernel lacks it, `FD_CLOEXEC` on each descriptor below the process's
/// descriptor limit.
fn mark_range(first: u32, last: u32, limit: u32) -> std::io::Result<()> {
    #[expect(
        unsafe_code,
        reason = "close_range has no wrapper in rustix 1.1 for the CLOEXEC flag; plain integer arguments"
    )]
    // SAFETY: close_range takes three integers and touches no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
        return Err(err);
    }
    for fd in first..=last.min(limit.saturating_sub(1)) {
        let Ok(fd) = i32::try_from(fd) else { break };
        #[expect(
            unsafe_code,
            reason = "fcntl on a descriptor number that may not be open; EBADF is the expected answer for most"
        )]
        // SAFETY: F_GETFD/F_SETFD read and set one flag of a descriptor.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Where the fallback stops: the hard `RLIMIT_NOFILE` (a parent that
/// lowered the soft limit may have left descriptors above it), at most
/// 2^20, the kernel's default cap (`fs.nr_open`).
fn nofile_limit() -> u32 {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    lim.maximum
        .or(lim.current)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1 << 20)
        .min(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A descriptor without `O_CLOEXEC` on `dir`, as a parent shell leaves one.
    fn inheritable(dir: &std::path::Path) -> std::os::fd::OwnedFd {
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        // rustix opens with O_CLOEXEC unless told otherwise: clear it.
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).unwrap();
        fd
    }

    /// What the child's open descriptors point at, one line each.
    fn open_in_child(cmd: &mut Command) -> Vec<String> {
        let out = cmd
            .args(["-c", "for f in /proc/self/fd/*; do readlink $f; done"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_child_gets_only_stdio_and_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().canonicalize().unwrap().display().to_string();
        let (_a, b, _c) = (
            inheritable(dir.path()),
            inheritable(dir.path()),
            inheritable(dir.path()),
        );
        let count = |seen: &[String]| seen.iter().filter(|l| **l == held).count();
        // Without keep_only, the child holds all three (this is the hole).
        let seen = open_in_child(&mut Command::new("/bin/sh"));
        assert_eq!(count(&seen), 3, "not inherited to begin with: {seen:?}");
        let mut cmd = Command::new("/bin/sh");
        keep_only(&mut cmd, &[b.as_raw_fd()]);
        let seen = open_in_child(&mut cmd);
        assert_eq!(count(&seen), 1, "{seen:?}");
    }
}
