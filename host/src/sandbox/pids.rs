//! The process-count limit's first line: a fresh `pids` cgroup per sandbox.
//!
//! A cgroup counts every process in it, whoever owns them, and says when
//! it refused a fork (so kiln can name the limit). Where none can be made,
//! `RLIMIT_NPROC`, set in the sandbox's own user namespace by the bwrap
//! backend, still caps the sandbox. The spawning thread joins the new cgroup just for the
//! spawn (cgroup v1 moves single threads through `tasks`), so the sandbox
//! starts inside it and kiln itself does not stay there. On drop, kiln
//! waits for the cgroup to empty (the sandbox's pid namespace took its
//! processes down) and removes it.
//!
//! Where no writable cgroup-v1 `pids` hierarchy exists (cgroup v2 only, or
//! not root), [`PidsCgroup::create`] returns `None`; `RLIMIT_NPROC` (set by
//! the bwrap backend) and the timeout remain.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One sandbox's cgroup.
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    /// The cgroup kiln's threads live in, to go back to after the spawn.
    home: PathBuf,
    pub max: u32,
}

impl PidsCgroup {
    /// A new cgroup allowing at most `max` processes, or `None` where kiln
    /// cannot make one.
    pub fn create(max: u32) -> Option<Self> {
        let (mount, path) = v1_pids_cgroup()?;
        let home = mount.join(path.trim_start_matches('/'));
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = home.join(format!(
            "kiln-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&dir).ok()?;
        let cg = PidsCgroup { dir, home, max };
        fs::write(cg.dir.join("pids.max"), max.to_string()).ok()?;
        Some(cg)
    }

    /// Run `spawn` with the calling thread inside the cgroup, so that the
    /// process it starts (and everything that process starts) is counted.
    pub fn spawn_inside<T>(
        &self,
        spawn: impl FnOnce() -> Result<T, super::SandboxError>,
    ) -> Result<T, super::SandboxError> {
        let tid = rustix::thread::gettid().as_raw_nonzero().to_string();
        let moved = fs::write(self.dir.join("tasks"), &tid);
        let child = spawn();
        if moved.is_ok() {
            // Back home; if this failed the thread would only stay counted.
            let _ = fs::write(self.home.join("tasks"), &tid);
        }
        child
    }

    /// Whether a fork was refused because the limit was reached
    /// (`pids.events` counts refusals as `max N`).
    pub fn hit(&self) -> bool {
        fs::read_to_string(self.dir.join("pids.events"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("max "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The sandbox's pid 1 took its pid namespace, and so every process
        // counted here, down with it; the kernel is finishing them off.
        // Wait for the cgroup to empty, then remove it. Never kill by the
        // pids listed in `cgroup.procs`: one that exits between the read and
        // the kill can be reused by an unrelated process (pid_max may be as
        // low as 32768 while fork bombs are tested), which would then die.
        for _ in 0..250 {
            let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() && fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The mount point of the cgroup-v1 `pids` hierarchy and kiln's cgroup in it.
fn v1_pids_cgroup() -> Option<(PathBuf, String)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        // … mount-point … - fstype source super-options
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        let fstype = r.next()?;
        let options = r.nth(1)?;
        let point = left.split(' ').nth(4)?;
        (fstype == "cgroup" && options.split(',').any(|o| o == "pids"))
            .then(|| PathBuf::from(point))
    })?;
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == "pids")
            .then(|| path.to_string())
    })?;
    if !Path::new(&mount)
        .join(path.trim_start_matches('/'))
        .is_dir()
    {
        return None;
    }
    Some((mount, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_caps_the_processes_of_what_it_spawned() {
        let Some(cg) = PidsCgroup::create(20) else {
            eprintln!(
                "SKIPPED: no writable cgroup-v1 pids hierarchy here (cgroup v2 only, or not root); RLIMIT_NPROC is tested by the e2e fork bomb run as nobody"
            );
            return;
        };
        let child = cg
            .spawn_inside(|| {
                std::process::Command::new("/bin/sh")
                    .args([
                        "-c",
                        "for i in $(seq 50); do sleep 5 & done 2>/dev/null; wait",
                    ])
                    .spawn()
                    .map_err(|source| super::super::SandboxError::Spawn {
                        program: "sh".into(),
                        source,
                    })
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let current: u32 = fs::read_to_string(cg.dir.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(current <= 20, "{current} processes under a limit of 20");
        assert!(cg.hit());
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        // No pid namespace here to take the sleeps down: the test does.
        for p in fs::read_to_string(cg.dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter_map(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
        let dir = cg.dir.clone();
        drop(cg);
        assert!(!dir.exists(), "the cgroup is removed once it is empty");
        // This thread went back home.
        let tid = rustix::thread::gettid().as_raw_nonzero().to_string();
        let (mount, path) = v1_pids_cgroup().unwrap();
        let home =
            fs::read_to_string(mount.join(path.trim_start_matches('/')).join("tasks")).unwrap();
        assert!(home.lines().any(|l| l == tid));
    }
}
