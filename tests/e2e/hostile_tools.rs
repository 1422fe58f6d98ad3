//! Hostile tools: scripts run by a static busybox shell inside the tool
//! sandbox. Each escape fails (or is killed), is named in the error, and
//! leaves nothing in the store but the declared input.

use std::path::Path;

use crate::support::{Project, busybox_project};

fn tool_attack(script: &str) -> Project {
    busybox_project("", &format!("attack = \"exec\"\nscript = '''{script}'''"))
}

#[track_caller]
fn left_nothing(p: &Project) {
    p.assert_left_only_input("tools");
}

#[test]
fn the_hosts_hostname_file_is_not_there() {
    let p = tool_attack("cat /etc/hostname");
    p.kiln(&["build"])
        .fails_with("can't open '/etc/hostname': No such file or directory");
    left_nothing(&p);
}

#[test]
fn the_hosts_home_and_other_directories_are_not_there() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = tool_attack(&format!("ls {home} || ls /usr/bin"));
    let r = p
        .kiln(&["build"])
        .fails_with("ls: /usr/bin: No such file or directory");
    assert!(
        r.stderr
            .contains(&format!("ls: {home}: No such file or directory")),
        "{}",
        r.stderr
    );
    left_nothing(&p);
}

#[test]
fn a_loopback_server_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = tool_attack(&format!("echo hi | nc 127.0.0.1 {port}"));
    p.kiln(&["build"]).fails_with("tool exited with code 1");
    assert!(
        listener.accept().is_err(),
        "the tool reached the host's listener"
    );
    left_nothing(&p);
}

#[test]
fn writing_outside_work_and_out_is_refused() {
    let p = tool_attack("touch /evil");
    p.kiln(&["build"])
        .fails_with("touch: /evil: Read-only file system");
    left_nothing(&p);
    let p = tool_attack("touch /inputs/tools/planted");
    p.kiln(&["build"])
        .fails_with("touch: /inputs/tools/planted: Read-only file system");
    assert!(!p.path("tools/planted").exists());
    left_nothing(&p);
}

#[test]
fn a_setuid_file_never_reaches_the_store() {
    let p =
        tool_attack("cp /inputs/tools/bin/sh /out/sh && chmod 4755 /out/sh; stat -c %a /out/sh");
    // chmod may work inside the sandbox; the store keeps only the exec bit.
    p.kiln(&["build"]).ok();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path("result/sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o7777,
        0o555,
        "store entries keep only the executable bit: {mode:o}"
    );
}

#[test]
fn sleeping_past_the_timeout_and_background_processes_are_killed() {
    let p = tool_attack("sleep 1000 & sleep 1000");
    let start = std::time::Instant::now();
    p.kiln(&["build", "--timeout", "3s"])
        .fails_with("ran past its time limit of 3s");
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    left_nothing(&p);
}

#[test]
fn a_fork_bomb_is_stopped_by_the_process_limit() {
    let p = tool_attack("i=0; while [ $i -lt 10000 ]; do sleep 1000 & i=$((i+1)); done; wait");
    p.kiln(&["build", "--timeout", "60s"])
        .fails_with("can't fork")
        .fails_with(
            "kiln: the sandbox reached its limit of 4096 processes; forks beyond it failed",
        );
    left_nothing(&p);
}

#[test]
fn memory_is_limited_for_all_of_a_sandboxs_processes_together() {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || !Path::new("/sys/fs/cgroup/memory/tasks").exists() {
        eprintln!(
            "SKIPPED: kiln makes memory cgroups as root on cgroup v1; here only RLIMIT_AS (per process) applies"
        );
        return;
    }
    // Six shells of 24 MB: each is far below the limit (RLIMIT_AS lets
    // every one of them run), all of them together far above it.
    let p = tool_attack(
        "for i in 1 2 3 4 5 6; do (x=$(head -c 24000000 /dev/zero | tr '\\0' a); sleep 3) & done; wait; exit 3",
    );
    p.kiln(&["build", "--tool-memory", "96M"])
        .fails_with("tool exited with code 3")
        .fails_with("kiln: the sandbox reached its memory limit of 96 MiB (all its processes together); the kernel killed the largest. Raise it with --tool-memory");
    left_nothing(&p);
    // Under the default (three quarters of the machine) the same run fits.
    let p = tool_attack(
        "for i in 1 2 3 4 5 6; do (x=$(head -c 24000000 /dev/zero | tr '\\0' a); sleep 1) & done; wait; exit 3",
    );
    let r = p.kiln(&["build"]).fails_with("tool exited with code 3");
    assert!(!r.stderr.contains("memory limit"), "{}", r.stderr);
}

/// The one thing a tool learns of the host's layout (docs/design.md, known
/// limits): where kiln's own directories are. Every bind mount's root lies
/// under `$KILN_HOME`; the project, the user's home and the rest of the
/// host never appear, and a fresh `/proc`, `/dev` and `/tmp` show nothing.
#[test]
fn mountinfo_shows_only_kilns_own_directories() {
    let p = tool_attack("cat /proc/self/mountinfo >&2; exit 7");
    let r = p.kiln(&["build"]).fails_with("tool exited with code 7");
    let home = p.home.path().canonicalize().unwrap();
    let project = p.dir.path().canonicalize().unwrap();
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains(" - ")).collect();
    assert!(lines.len() >= 4, "no mountinfo in:\n{}", r.stderr);
    let mut binds = 0;
    for line in lines {
        // mount-id parent major:minor ROOT MOUNT-POINT options … - fstype source …
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (root, fstype) = (fields[3], line.split(" - ").nth(1).unwrap());
        assert!(
            !line.contains(project.to_str().unwrap()),
            "the project's path reached the sandbox: {line}"
        );
        if ["proc ", "tmpfs ", "devpts ", "mqueue "]
            .iter()
            .any(|t| fstype.starts_with(t))
            || root == "/"
            || fstype.starts_with("devtmpfs ")
        {
            continue;
        }
        binds += 1;
        // The root is the path within its filesystem, so where $KILN_HOME
        // is on a filesystem of its own it starts below the host's path:
        // look for the home's own (random) name among its components.
        assert!(
            Path::new(root)
                .components()
                .any(|c| Some(c.as_os_str()) == home.file_name()),
            "a mount from outside $KILN_HOME ({}): {line}",
            home.display()
        );
    }
    assert!(binds >= 3, "expected the inputs, /work and /out");
}
