//! Limits on a whole sandbox, not one process: a fresh cgroup per sandbox in
//! each cgroup-v1 hierarchy kiln may write — `pids` (processes at once) and
//! `memory` (every process's memory together). Two figures for
//! `--timings` are read from them too: the peak of `memory`, and the CPU
//! time a `cpuacct` cgroup adds up (no limit is set; where `cpu` shares its
//! hierarchy, each sandbox is a scheduling group with the default share).
//!
//! A cgroup counts every process in it, whoever owns them, and says when it
//! refused a fork or killed for memory (so kiln can name the limit). The
//! spawning thread joins the new cgroups just for the spawn (cgroup v1 moves
//! single threads through `tasks`; a forked child is charged where the
//! thread that forked it was), so the sandbox starts inside them and kiln
//! itself does not stay there. On drop, kiln waits for the cgroups to empty
//! (the sandbox's pid namespace took its processes down) and removes them.
//!
//! The sandboxes of one kiln process sit together under one parent cgroup,
//! `kiln-<pid>`, that carries the same limits: a build's tools get one
//! budget of processes and memory (tmpfs pages included) however many run
//! at once (`exec-all`, `-j`), not one per sandbox. The parent is made with
//! the first sandbox and removed when kiln is done
//! ([`crate::sandbox::remove_build_cgroups`]).
//!
//! Where no writable hierarchy exists (cgroup v2 only, or not root), the
//! rlimits the bwrap backend sets in the sandbox's own user namespace remain:
//! `RLIMIT_NPROC` still caps the sandbox's processes, `RLIMIT_AS` each
//! process's memory, and the timeout everything.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A controller kiln limits a sandbox with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Pids,
    Memory,
    /// Counts CPU time; limits nothing.
    Cpuacct,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
            Controller::Cpuacct => "cpuacct",
        }
    }
}

/// One sandbox's cgroup in one hierarchy.
#[derive(Debug)]
struct Group {
    controller: Controller,
    dir: PathBuf,
    /// The cgroup kiln's threads live in, to go back to after the spawn.
    home: PathBuf,
    /// The build's parent cgroup this one sits in, if kiln could make it.
    parent: Option<PathBuf>,
}

/// The parent cgroup of this process's sandboxes in one hierarchy, and how
/// many sandbox cgroups it holds now.
#[derive(Debug)]
struct Parent {
    controller: Controller,
    dir: PathBuf,
    users: usize,
    /// The limit written: the largest any sandbox in it asked for (one
    /// build asks for one; tests in one process may differ).
    limit: u64,
}

static PARENTS: Mutex<Vec<Parent>> = Mutex::new(Vec::new());

/// This process's parent cgroup under `home` for `controller`, made (with
/// `limit` in `file`; no `file`: a counting controller) if no sandbox
/// holds it now.
fn hold_parent(controller: Controller, home: &Path, file: &str, limit: &str) -> Option<PathBuf> {
    let value: u64 = limit.parse().ok()?;
    let mut parents = PARENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = parents.iter_mut().find(|p| p.controller == controller) {
        // The largest limit of the sandboxes in it now: one build asks
        // for one; an idle parent takes the new one.
        if (value > p.limit || p.users == 0)
            && !file.is_empty()
            && set_limit(controller, &p.dir, file, limit)
        {
            p.limit = value;
        }
        p.users += 1;
        return Some(p.dir.clone());
    }
    let dir = home.join(format!("kiln-{}", std::process::id()));
    if fs::create_dir(&dir).is_err() && !dir.is_dir() {
        return None;
    }
    if controller == Controller::Memory {
        let _ = fs::write(dir.join("memory.swappiness"), "0");
    }
    if !file.is_empty() && !set_limit(controller, &dir, file, limit) {
        let _ = fs::remove_dir(&dir);
        return None;
    }
    parents.push(Parent {
        controller,
        dir: dir.clone(),
        users: 1,
        limit: value,
    });
    Some(dir)
}

/// Write `limit` to `file` in `dir`; for memory, to memory+swap too. The
/// kernel keeps memsw ≥ memory, so which goes first depends on whether the
/// limit rises or falls: try both orders.
fn set_limit(controller: Controller, dir: &Path, file: &str, limit: &str) -> bool {
    if controller != Controller::Memory {
        return fs::write(dir.join(file), limit).is_ok();
    }
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let mem = dir.join(file);
    let _ = fs::write(&memsw, limit);
    let ok = fs::write(&mem, limit).is_ok();
    // Where swap is accounted, the second write of memsw settles it.
    let _ = fs::write(&memsw, limit);
    ok
}

/// Let go of the parent of `controller`. It stays for the next sandbox
/// (making and removing it for every exec costs about half a millisecond);
/// [`remove_parents`] removes it when kiln is done.
fn release_parent(controller: Controller) {
    let mut parents = PARENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = parents.iter_mut().find(|p| p.controller == controller) {
        p.users = p.users.saturating_sub(1);
    }
}

/// Remove this process's parent cgroups that hold no sandbox now: before
/// kiln exits.
pub fn remove_parents() {
    let mut parents = PARENTS.lock().unwrap_or_else(|p| p.into_inner());
    parents.retain(|p| p.users > 0 || fs::remove_dir(&p.dir).is_err());
}

/// One sandbox's cgroups: any, all or none of the controllers.
#[derive(Debug)]
pub struct SandboxCgroups {
    groups: Vec<Group>,
    /// Processes at once.
    max_processes: u32,
    /// Bytes of memory, all processes together.
    memory_bytes: u64,
}

impl SandboxCgroups {
    /// New cgroups holding a sandbox to `max_processes` and `memory_bytes`,
    /// in whichever hierarchies kiln can write here (maybe none).
    pub fn create(max_processes: u32, memory_bytes: u64) -> Self {
        let mut cg = SandboxCgroups {
            groups: Vec::new(),
            max_processes,
            memory_bytes,
        };
        let settings = [
            (Controller::Pids, "pids.max", max_processes.to_string()),
            (
                Controller::Memory,
                "memory.limit_in_bytes",
                memory_bytes.to_string(),
            ),
        ];
        for (controller, file, value) in settings {
            // A group whose limit did not take is dropped, so removed.
            if let Some(g) = Group::create(controller, file, &value)
                && fs::write(g.dir.join(file), &value).is_ok()
            {
                cg.groups.push(g);
            }
        }
        // CPU time is counted where kiln may: bwrap's outer process exits
        // without reaping the sandbox's pid 1, so its own resource use
        // holds none of the tool's.
        if let Some(g) = Group::create(Controller::Cpuacct, "", "0") {
            cg.groups.push(g);
        }
        // Memory past the limit is not swapped out instead: where the
        // kernel accounts swap, memory and swap together get the same limit.
        if let Some(g) = cg.group(Controller::Memory) {
            let _ = fs::write(g.dir.join("memory.swappiness"), "0");
            let _ = fs::write(
                g.dir.join("memory.memsw.limit_in_bytes"),
                memory_bytes.to_string(),
            );
        }
        cg
    }

    fn group(&self, c: Controller) -> Option<&Group> {
        self.groups.iter().find(|g| g.controller == c)
    }

    /// Run `spawn` with the calling thread inside the cgroups, so that the
    /// process it starts (and everything that process starts) is counted.
    pub fn spawn_inside<T>(
        &self,
        spawn: impl FnOnce() -> Result<T, super::SandboxError>,
    ) -> Result<T, super::SandboxError> {
        let tid = rustix::thread::gettid().as_raw_nonzero().to_string();
        let moved: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| fs::write(g.dir.join("tasks"), &tid).is_ok())
            .collect();
        let child = spawn();
        for g in moved {
            // Back home; if this failed the thread would only stay counted.
            let _ = fs::write(g.home.join("tasks"), &tid);
        }
        child
    }

    /// The process limit, if a fork was refused for it (`pids.events`
    /// counts refusals as `max N`).
    pub fn processes_hit(&self) -> Option<u32> {
        let g = self.group(Controller::Pids)?;
        // cgroup v1 counts a refused fork in the forking cgroup, also when
        // the build's parent refused it.
        counter(&g.dir.join("pids.events"), "max ").then_some(self.max_processes)
    }

    /// The most memory the sandbox's processes held at once (tmpfs pages
    /// included), if a memory cgroup counted it.
    pub fn peak_memory(&self) -> Option<u64> {
        let g = self.group(Controller::Memory)?;
        fs::read_to_string(g.dir.join("memory.max_usage_in_bytes"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The CPU time the sandbox's processes used, all of them together,
    /// if a cpuacct cgroup counted it.
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        let g = self.group(Controller::Cpuacct)?;
        let ns: u64 = fs::read_to_string(g.dir.join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(std::time::Duration::from_nanos(ns))
    }

    /// The memory limit, if the kernel killed a process of the sandbox for
    /// it (`memory.oom_control` counts those as `oom_kill N`).
    pub fn memory_hit(&self) -> Option<u64> {
        let g = self.group(Controller::Memory)?;
        // Counted in the cgroup of the killed process, also when the
        // build's parent's limit was the one reached.
        counter(&g.dir.join("memory.oom_control"), "oom_kill ").then_some(self.memory_bytes)
    }
}

/// Whether the `key N` line of a cgroup file has N > 0.
fn counter(file: &Path, key: &str) -> bool {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(key))
        .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
}

impl Group {
    /// A sandbox's cgroup, under this process's parent (holding `limit`
    /// in `file` for all sandboxes together) where kiln can make one.
    fn create(controller: Controller, file: &str, limit: &str) -> Option<Self> {
        let (mount, path) = v1_cgroup(controller.name())?;
        let home = mount.join(path.trim_start_matches('/'));
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let parent = hold_parent(controller, &home, file, limit);
        let dir = match &parent {
            Some(p) => p.join(format!("sandbox-{n}")),
            None => home.join(format!("kiln-{}-{n}", std::process::id())),
        };
        if fs::create_dir(&dir).is_err() {
            if parent.is_some() {
                release_parent(controller);
            }
            return None;
        }
        Some(Group {
            controller,
            dir,
            home,
            parent,
        })
    }
}

impl Drop for Group {
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
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if self.parent.is_some() {
            release_parent(self.controller);
        }
    }
}

/// The mount point of the cgroup-v1 hierarchy of `controller` and kiln's
/// cgroup in it.
fn v1_cgroup(controller: &str) -> Option<(PathBuf, String)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        // … mount-point … - fstype source super-options
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        let fstype = r.next()?;
        let options = r.nth(1)?;
        let point = left.split(' ').nth(4)?;
        (fstype == "cgroup" && options.split(',').any(|o| o == controller))
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
            .any(|c| c == controller)
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

    /// The build's parent cgroup takes the largest limit of the sandboxes
    /// in it: tests that set different limits take turns.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        TURN.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kill what a test left in `dir` (no pid namespace here to do it).
    fn kill_all_in(dir: &Path) {
        for p in fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter_map(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }

    fn current(dir: &Path) -> u32 {
        fs::read_to_string(dir.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn all_sandboxes_of_a_build_share_one_process_budget() {
        let _turn = turn();
        let a = SandboxCgroups::create(30, 1 << 30);
        let b = SandboxCgroups::create(30, 1 << 30);
        let (Some(ga), Some(gb)) = (a.group(Controller::Pids), b.group(Controller::Pids)) else {
            eprintln!(
                "SKIPPED: no writable cgroup-v1 pids hierarchy here (cgroup v2 only, or not root)"
            );
            return;
        };
        let parent = ga.parent.clone().expect("a parent cgroup");
        assert_eq!(gb.parent.as_ref(), Some(&parent), "one parent for both");
        assert_eq!(
            fs::read_to_string(parent.join("pids.max")).unwrap().trim(),
            "30"
        );
        // 25 in the first sandbox: under its own limit and the build's.
        let mut first = sh_inside(
            &a,
            "for i in $(seq 25); do sleep 5 & done 2>/dev/null; wait",
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        // 25 more in the second: under its own limit, not the build's.
        let mut second = sh_inside(
            &b,
            "for i in $(seq 25); do sleep 5 & done 2>/dev/null; wait",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (da, db) = (ga.dir.clone(), gb.dir.clone());
        let total = current(&da) + current(&db);
        assert!(
            total <= 30,
            "{total} processes in two sandboxes under a build limit of 30"
        );
        assert_eq!(b.processes_hit(), Some(30));
        for (child, dir) in [(&mut first, &da), (&mut second, &db)] {
            let _ = child.kill();
            let _ = child.wait();
            kill_all_in(dir);
        }
        drop(a);
        drop(b);
        remove_parents();
        assert!(!parent.exists(), "the parent goes when kiln is done");
    }

    /// `sh -c script`, started inside `cg`.
    fn sh_inside(cg: &SandboxCgroups, script: &str) -> std::process::Child {
        cg.spawn_inside(|| {
            std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .map_err(|source| super::super::SandboxError::Spawn {
                    program: "sh".into(),
                    source,
                })
        })
        .unwrap()
    }

    #[test]
    fn a_cgroup_caps_the_processes_of_what_it_spawned() {
        let _turn = turn();
        let cg = SandboxCgroups::create(20, 1 << 30);
        let Some(pids) = cg.group(Controller::Pids) else {
            eprintln!(
                "SKIPPED: no writable cgroup-v1 pids hierarchy here (cgroup v2 only, or not root); RLIMIT_NPROC is tested by the e2e fork bomb run as nobody"
            );
            return;
        };
        let dir = pids.dir.clone();
        let mut child = sh_inside(
            &cg,
            "for i in $(seq 50); do sleep 5 & done 2>/dev/null; wait",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let current: u32 = fs::read_to_string(dir.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(current <= 20, "{current} processes under a limit of 20");
        assert_eq!(cg.processes_hit(), Some(20));
        let _ = child.kill();
        let _ = child.wait();
        kill_all_in(&dir);
        drop(cg);
        assert!(!dir.exists(), "the cgroup is removed once it is empty");
        // This thread went back home.
        let tid = rustix::thread::gettid().as_raw_nonzero().to_string();
        let (mount, path) = v1_cgroup("pids").unwrap();
        let home =
            fs::read_to_string(mount.join(path.trim_start_matches('/')).join("tasks")).unwrap();
        assert!(home.lines().any(|l| l == tid));
    }

    #[test]
    fn a_memory_cgroup_holds_all_processes_together() {
        let _turn = turn();
        let cg = SandboxCgroups::create(100, 48 << 20);
        if cg.group(Controller::Memory).is_none() {
            eprintln!(
                "SKIPPED: no writable cgroup-v1 memory hierarchy here (cgroup v2 only, or not root); RLIMIT_AS remains"
            );
            return;
        }
        // Four shells of 20 MB each: no one of them is over the limit.
        let mut child = sh_inside(
            &cg,
            "for i in 1 2 3 4; do (x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 2) & done; wait",
        );
        child.wait().unwrap();
        assert_eq!(cg.memory_hit(), Some(48 << 20));
        assert_eq!(cg.processes_hit(), None);
    }
}
