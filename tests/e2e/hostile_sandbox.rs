//! The sandbox against a hostile kiln.toml, recipe or tool (issue 12): no
//! code on the host through a tool's environment, no network without the
//! user's pin, nothing unverified from a fixed-output step, limits that
//! hold. Each refusal is asserted by its named error.

use std::path::Path;
use std::process::Command;

use crate::support::{Project, busybox_project};

/// A project whose target runs the hostile recipe with these params (TOML
/// lines of `[target.t.params]`), with busybox as the `tools` input.
fn hostile(params: &str) -> Project {
    busybox_project("", params)
}

/// A shared library whose constructor writes `marker` on whatever process
/// loads it: the payload of an `LD_PRELOAD` attack.
fn preload_library(dir: &Path, marker: &Path) -> std::path::PathBuf {
    let src = dir.join("evil.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) {{ FILE *f = fopen({:?}, \"w\"); if (f) {{ fputs(\"ran on the host\", f); fclose(f); }} }}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let so = dir.join("evil.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .expect("a C compiler (cc) to build the LD_PRELOAD payload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Proof the payload works: it does run in a host process.
    let _ = Command::new("/bin/true").env("LD_PRELOAD", &so).status();
    assert!(marker.exists(), "the payload does not run even unsandboxed");
    std::fs::remove_file(marker).unwrap();
    so
}

#[test]
fn ld_preload_in_a_tools_env_never_runs_on_the_host() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("marker");
    let so = preload_library(scratch.path(), &marker);
    let p = hostile(&format!(
        "attack = \"exec\"\nscript = 'echo \"$LD_PRELOAD\"'\nenv = {{ LD_PRELOAD = {:?} }}\n",
        so.display().to_string()
    ));
    p.kiln(&["build"]).ok();
    assert!(
        !marker.exists(),
        "a tool's LD_PRELOAD ran code in a host process"
    );
    // The variable itself reached the tool, inside the sandbox.
    let seen = std::fs::read_to_string(p.path("result/escaped")).unwrap();
    assert_eq!(seen.trim(), so.display().to_string());
}

#[test]
fn ld_preload_in_the_go_recipes_params_env_never_runs_on_the_host() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("marker");
    let so = preload_library(scratch.path(), &marker);
    let p = crate::support::hello_project();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    let toml = toml.replacen(
        "recipe = \"go\"\n",
        &format!(
            "recipe = \"go\"\nparams.env = {{ LD_PRELOAD = {:?} }}\n",
            so.display().to_string()
        ),
        1,
    );
    assert!(toml.contains("LD_PRELOAD"), "{toml}");
    p.write("kiln.toml", &toml);
    // The sandbox has no such file: the loader inside (if any) ignores it.
    let _ = p.kiln(&["build", "hello"]);
    assert!(
        !marker.exists(),
        "params.env's LD_PRELOAD ran code in a host process"
    );
}

/// A loopback listener that counts connections, for "nothing reached it".
struct Listener(std::net::TcpListener);

impl Listener {
    fn on(addr: &str) -> Self {
        let l = std::net::TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        Listener(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    #[track_caller]
    fn assert_untouched(&self) {
        assert!(self.0.accept().is_err(), "the sandbox reached the listener");
    }
}

#[test]
fn a_fixed_output_step_without_a_pin_gets_no_network() {
    let l = Listener::on("127.0.0.1:0");
    let p = hostile(&format!(
        "attack = \"exec\"\nscript = 'echo hi | nc 127.0.0.1 {}; echo x > /work/fetched/f'\nfixed_dir = \"fetched\"\n",
        l.port()
    ));
    p.kiln(&["build"])
        .fails_with("network denied: params.pin is not set for target 't' in kiln.toml")
        .fails_with("kiln build --fetch-unpinned t");
    l.assert_untouched();
    p.assert_left_only_input("tools");
}

#[test]
fn a_recipe_cannot_name_a_setting_outside_kiln_toml() {
    let p = hostile(
        "attack = \"exec\"\nscript = 'true'\nfixed_dir = \"fetched\"\nfixed_setting = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
    );
    p.kiln(&["build"])
        .fails_with("must name where kiln.toml pins its hash");
    p.assert_left_only_input("tools");
    // A setting is a plain key path: nothing a recipe names can become
    // extra lines in what --fetch-unpinned prints for the user to paste.
    let p = hostile(
        "attack = \"exec\"\nscript = 'true'\nfixed_dir = \"fetched\"\nfixed_setting = '''params.pin = \"x\"\ninputs.evil'''\n",
    );
    p.kiln(&["build", "--fetch-unpinned"])
        .fails_with("letters, digits, '_' and '-'");
}

/// The machine's first non-loopback IPv4 address, if any.
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        w.find(|x| *x == "inet")?;
        let a = w.next()?.split('/').next()?.to_string();
        (!a.starts_with("127.")).then_some(a)
    })
}

#[test]
fn a_pinned_fixed_output_step_cannot_reach_host_services_or_metadata() {
    let lo = Listener::on("127.0.0.1:0");
    let any = Listener::on("0.0.0.0:0");
    let host = host_address().unwrap_or_else(|| "127.0.0.1".into());
    // Each probe prints what happened; the step then records the routes.
    let script = format!(
        "for a in 127.0.0.1:{lo} 10.0.2.2:{lo} {host}:{any} 169.254.169.254:80; do \
           if echo hi | nc -w 3 ${{a%:*}} ${{a#*:}}; then echo \"REACHED $a\"; else echo \"refused $a\"; fi; \
         done > /work/fetched/probes 2>&1; ip route >> /work/fetched/probes; cat /work/fetched/probes",
        lo = lo.port(),
        any = any.port()
    );
    let p = hostile(&format!(
        "attack = \"exec\"\nscript = '{script}'\nfixed_dir = \"fetched\"\npin = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n"
    ));
    // The pin is wrong on purpose: the step's directory is reported and dropped.
    let r = p
        .kiln(&["build"])
        .fails_with("fixed-output step of target 't' produced sha256-");
    lo.assert_untouched();
    any.assert_untouched();
    assert!(!r.stderr.contains("REACHED"), "{}", r.stderr);
    p.assert_left_only_input("tools");
}

/// `kiln run-tool` gives a tool a network and the files `--write` names,
/// and nothing more: the rest of the package is read-only (no new `.git`
/// whose config git would run, no kiln.lock, no file in a KILN_HOME kept
/// inside the package), a written file gets its mode back (no setuid
/// plant), and neither the host's loopback nor the user's other
/// environment is there.
#[test]
fn run_tool_writes_only_the_named_files_and_reaches_no_host_service() {
    let lo = Listener::on("127.0.0.1:0");
    let p = hostile("attack = \"noop\"\n");
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write("sub/notes.txt", "mine\n");
    let script = format!(
        "echo made > made.txt; chmod 4755 made.txt; \
         (echo pwned > notes.txt) 2>/dev/null && echo WROTE-OTHER; \
         (mkdir .git && echo x > .git/config) 2>/dev/null && echo MADE-GIT; \
         (echo pwned > ../kiln.toml) 2>/dev/null && echo WROTE-TOML; \
         (echo x > ../kiln.lock) 2>/dev/null && echo MADE-LOCK; \
         (echo hi | nc -w 3 127.0.0.1 {}) 2>/dev/null && echo REACHED; \
         echo \"secret=$KILN_TEST_SECRET\"",
        lo.port()
    );
    let r = p
        .command(&[
            "run-tool",
            "tools:bin/sh",
            "--write",
            "made.txt",
            "--",
            "-c",
            &script,
        ])
        .current_dir(p.path("sub"))
        .env("KILN_TEST_SECRET", "s3cret")
        .output()
        .unwrap();
    let r = crate::support::run(r).ok();
    for never in [
        "WROTE-OTHER",
        "MADE-GIT",
        "WROTE-TOML",
        "MADE-LOCK",
        "REACHED",
        "s3cret",
    ] {
        assert!(!r.stdout.contains(never), "{never}: {}", r.stdout);
    }
    assert_eq!(
        std::fs::read_to_string(p.path("sub/made.txt")).unwrap(),
        "made\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(p.path("sub/made.txt"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7000, 0, "a setuid bit was left: {mode:o}");
    assert_eq!(
        std::fs::read_to_string(p.path("sub/notes.txt")).unwrap(),
        "mine\n"
    );
    assert!(!p.path("sub/.git").exists() && !p.path("kiln.lock").exists());
    assert_eq!(std::fs::read_to_string(p.path("kiln.toml")).unwrap(), toml);
    lo.assert_untouched();
    // git's and kiln's own files are never a tool's to write.
    p.kiln(&[
        "run-tool",
        "tools:bin/sh",
        "--write",
        ".git/config",
        "--",
        "-c",
        "true",
    ])
    .fails_with("never a tool's to write");
    // A proxy URL with credentials is not handed to a tool with a network.
    p.command(&["run-tool", "tools:bin/sh", "--", "-c", "true"])
        .env("GOPROXY", "https://u:token@proxy.example/go")
        .output()
        .map(crate::support::run)
        .unwrap()
        .fails_with("GOPROXY holds credentials");
    // Output past the 4 MiB the sandbox keeps is cut, and the cut said.
    let r = p
        .command(&[
            "run-tool",
            "tools:bin/sh",
            "--",
            "-c",
            "yes | head -c 5000000",
        ])
        .output()
        .map(crate::support::run)
        .unwrap()
        .ok();
    assert_eq!(r.stdout.len(), 4 << 20);
    assert!(
        r.stderr
            .contains("wrote more than 4 MiB on stdout: only the first 4 MiB are shown"),
        "{}",
        r.stderr
    );
    // The tool's exit code is the command's failure, named.
    p.command(&["run-tool", "tools:bin/sh", "--", "-c", "exit 3"])
        .output()
        .map(crate::support::run)
        .unwrap()
        .fails_with("exited with code 3");
    // A tool that is not there is named with the fix.
    p.kiln(&["run-tool", "tools", "--", "x"])
        .fails_with("`kiln run-tool tools:PATH`");
}

#[test]
fn a_pinned_fixed_output_step_has_outbound_network() {
    // pypi.org is one of the registries this machine reaches; where the
    // host itself cannot, say so rather than pass.
    let host_reaches = Command::new("sh")
        .args(["-c", "echo | timeout 5 busybox nc -w 5 pypi.org 443"])
        .status()
        .is_ok_and(|s| s.success());
    if !host_reaches {
        eprintln!(
            "SKIPPED: this machine cannot reach pypi.org:443, so there is no outbound network to test"
        );
        return;
    }
    let p = hostile(
        "attack = \"exec\"\nscript = 'echo | nc -w 5 pypi.org 443 && echo connected > /work/fetched/ok'\nfixed_dir = \"fetched\"\n",
    );
    let r = p.kiln(&["build", "--fetch-unpinned"]).ok();
    // The hash printed is that of a directory holding `ok` = "connected\n",
    // as the line to paste into kiln.toml.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok"), "connected\n").unwrap();
    let want = kiln_core::nar::hash_path(dir.path()).unwrap().to_sri();
    assert_eq!(
        r.stdout,
        format!("params.pin = \"{want}\"\n"),
        "{}",
        r.stderr
    );
    p.assert_left_only_input("tools");
}

#[test]
fn a_fixed_output_step_can_write_only_its_fresh_directory() {
    for exit in [0, 1] {
        let p = hostile(&format!(
            "attack = \"exec\"\nscript = 'echo data > /work/fetched/f; touch /out/planted || touch /work/planted || echo both-read-only; exit {exit}'\nfixed_dir = \"fetched\"\npin = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\nthen = 'ls /work/fetched /out/planted /work/planted 2>&1; exit 1'\n"
        ));
        let r = p.kiln(&["build"]);
        if exit == 0 {
            r.fails_with("fixed-output step of target 't' produced")
                .fails_with(
                    "but params.pin is sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                );
        } else {
            // The step failed: its directory was deleted, and nothing else
            // could be written.
            r.fails_with("ls: /work/fetched: No such file or directory")
                .fails_with("ls: /out/planted: No such file or directory")
                .fails_with("ls: /work/planted: No such file or directory")
                .fails_with("touch: /out/planted: Read-only file system")
                .fails_with("kiln: the step failed; what it left in /work/fetched");
        }
        p.assert_left_only_input("tools");
    }
}

#[test]
fn a_fifo_digest_is_refused_at_once() {
    // The tool's FIFO is removed when its exec ends: the digest finds
    // nothing, at once (the call's own refusal of a FIFO is a unit test).
    let p = hostile("attack = \"digest\"\nscript = 'mkfifo /work/pipe'\npath = \"/work/pipe\"\n");
    let start = std::time::Instant::now();
    p.kiln(&["build", "--timeout", "30s"])
        .fails_with("/work/pipe")
        .fails_with("not found");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    p.assert_left_only_input("tools");
}

#[test]
fn a_10_tib_sparse_output_is_refused_within_seconds() {
    // From the recipe itself (WASI), and from a tool.
    for params in [
        "attack = \"sparse-output\"\n",
        "attack = \"exec\"\nscript = 'truncate -s 10995116277760 /out/sparse'\n",
    ] {
        let p = hostile(params);
        let start = std::time::Instant::now();
        let r = p.kiln(&["build", "--timeout", "3s"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        // A tool meets RLIMIT_FSIZE (the shell dies of SIGXFSZ, 25), the
        // recipe the disk budget.
        assert!(
            r.stderr.contains("disk budget of 65536 MiB")
                || r.stderr.contains("tool was killed by signal 25"),
            "{}",
            r.stderr
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
        p.assert_left_only_input("tools");
    }
}

#[test]
fn a_thousand_1_mib_log_messages_are_stopped() {
    let p = hostile("attack = \"log-flood\"\ncount = 1000\n");
    p.kiln(&["build"])
        .fails_with("logged more than 16777216 bytes in total and was stopped");
    p.assert_left_only_input("tools");
}

#[test]
fn a_million_empty_log_lines_are_stopped_too() {
    let p = hostile("attack = \"empty-log-flood\"\ncount = 1000000\n");
    p.kiln(&["build"])
        .fails_with("logged more than 16777216 bytes in total and was stopped");
    p.assert_left_only_input("tools");
}

#[test]
fn new_namespaces_are_refused_inside_the_sandbox() {
    let p = hostile("attack = \"exec\"\nscript = 'unshare -U true; unshare -n true; exit 1'\n");
    let r = p.kiln(&["build"]).fails_with("tool exited with code 1");
    assert_eq!(
        r.stderr.matches("Operation not permitted").count(),
        2,
        "{}",
        r.stderr
    );
    p.assert_left_only_input("tools");
}

#[test]
fn a_fork_bomb_is_stopped_when_kiln_is_not_root() {
    // As root, a pids cgroup stops the bomb (hostile_tools); here kiln runs
    // as `nobody`, where no cgroup can be made and RLIMIT_NPROC in the
    // sandbox's user namespace must hold.
    if !rustix::process::geteuid().is_root() {
        // Already not root: the ordinary fork-bomb test covers this case.
        eprintln!("SKIPPED: not root, so hostile_tools' fork-bomb test already runs without root");
        return;
    }
    let p = hostile(
        "attack = \"exec\"\nscript = 'i=0; while [ $i -lt 10000 ]; do sleep 1000 & i=$((i+1)); done; wait'\n",
    );
    let cache = tempfile::tempdir().unwrap();
    for d in [p.dir.path(), p.home.path(), cache.path()] {
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(d)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let r = crate::support::run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                env!("CARGO_BIN_EXE_kiln"),
                "build",
                "--timeout",
                "60s",
            ])
            .current_dir(p.dir.path())
            .env("KILN_HOME", p.home.path())
            .env("KILN_COMPILE_CACHE", cache.path())
            .env("KILN_ALLOW_PATH", crate::support::shared_paths())
            .output()
            .unwrap(),
    );
    let r = r.fails_with("can't fork");
    assert!(
        !r.stderr.contains("ran past its time limit"),
        "{}",
        r.stderr
    );
}

/// Run `kiln args…` in `p` the way a shell holding descriptors would: a
/// directory (`/`) on 3, a private file on 9 and a log opened for
/// appending on 200, none of them close-on-exec.
fn kiln_holding_descriptors(p: &Project, args: &[&str], secret: &Path, log: &Path) -> String {
    use command_fds::{CommandFdExt, FdMapping};
    let open = |path: &Path, append: bool| -> std::os::fd::OwnedFd {
        std::fs::OpenOptions::new()
            .read(!append)
            .append(append)
            .open(path)
            .unwrap()
            .into()
    };
    let mut cmd = p.command(args);
    cmd.fd_mappings(vec![
        FdMapping {
            parent_fd: open(Path::new("/"), false),
            child_fd: 3,
        },
        FdMapping {
            parent_fd: open(secret, false),
            child_fd: 9,
        },
        FdMapping {
            parent_fd: open(log, true),
            child_fd: 200,
        },
    ])
    .unwrap();
    let run = crate::support::run(cmd.output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::read_to_string(p.path("result/escaped")).unwrap()
}

/// What a tool tries with descriptors it did not open: list them, read,
/// list and append through `/proc/self/fd/N`.
const DESCRIPTOR_PROBE: &str = r#"for f in /proc/self/fd/*; do t=$(readlink "$f") && echo "open ${f##*/} $t"; done
for n in 3 4 5 6 7 8 9 10 200; do
  cat /proc/self/fd/$n 2>/dev/null && echo "read $n"
  ls /proc/self/fd/$n/ >/dev/null 2>&1 && echo "listed $n"
  (echo pwned >> /proc/self/fd/$n) 2>/dev/null && echo "appended $n"
done
true"#;

#[test]
fn descriptors_kiln_inherits_never_reach_a_tool() {
    let scratch = tempfile::tempdir().unwrap();
    let secret = scratch.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = scratch.path().join("log");
    std::fs::write(&log, "").unwrap();
    for sandbox in ["hermetic", "off"] {
        let p = hostile(&format!(
            "attack = \"exec\"\nscript = '''\n{DESCRIPTOR_PROBE}\n'''\n"
        ));
        let seen = kiln_holding_descriptors(&p, &["build", "--sandbox", sandbox], &secret, &log);
        let open: Vec<&str> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("open "))
            .collect();
        let fds: Vec<&str> = open.iter().filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(
            fds,
            ["0", "1", "2"],
            "--sandbox={sandbox}: the tool holds descriptors it was not given: {open:?}\n{seen}"
        );
        assert!(!seen.contains("host secret"), "--sandbox={sandbox}: {seen}");
        for verb in ["read", "listed", "appended"] {
            assert!(
                !seen.lines().any(|l| l.starts_with(verb)),
                "--sandbox={sandbox}: {seen}"
            );
        }
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "", "{sandbox}");
    }
}

#[test]
fn a_fifo_a_tool_leaves_never_blocks_the_recipe_or_kiln() {
    // A tool (a Go test, say) plants FIFOs where the recipe reads and where
    // it writes its buildinfo; opened plainly, either blocks for ever, and
    // wasmtime's deadline cannot interrupt a host call.
    let p = hostile(
        "attack = \"exec\"\nscript = 'mkfifo /work/trap /out/buildinfo; ls /work /out'\nwasi_read = \"/work/trap\"\nwasi_write = \"/out/buildinfo\"\n",
    );
    let start = std::time::Instant::now();
    let mut child = p
        .command(&["build", "--timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = start + std::time::Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kiln was still blocked 90 s after a tool planted FIFOs (--timeout 20s)");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = crate::support::run(child.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The tool did make them…
    let seen = std::fs::read_to_string(p.path("result/escaped")).unwrap();
    assert!(
        seen.contains("trap") && seen.contains("buildinfo"),
        "{seen}"
    );
    // …and the recipe wrote a regular file where the FIFO was.
    let meta = std::fs::symlink_metadata(p.path("result/buildinfo")).unwrap();
    assert!(meta.is_file());
}

#[test]
fn a_tool_past_the_disk_budget_is_stopped_while_it_runs() {
    // Eight files of 200 MiB (each under RLIMIT_FSIZE), then a long sleep:
    // counted only after the exec, the tool would hold 1.6 GB for a minute.
    let p = hostile(
        "attack = \"exec\"\nscript = 'for i in 1 2 3 4 5 6 7 8; do truncate -s 200M /work/f$i; done; sleep 60'\n",
    );
    let start = std::time::Instant::now();
    p.kiln(&["build", "--disk", "256M"])
        .fails_with("disk budget of 256 MiB");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the tool ran on past the budget: {:?}",
        start.elapsed()
    );
    p.assert_left_only_input("tools");
}

#[test]
fn write_files_past_the_budget_writes_nothing() {
    // Eight copies of a 40 MiB file in one call, with a 64 MiB budget: the
    // call is refused before it writes, so the recipe never goes on.
    let p = hostile("attack = \"write-files-big\"\ncount = 40\n");
    let r = p
        .kiln(&["build", "--disk", "64M"])
        .fails_with("disk budget of 64 MiB");
    assert!(
        !r.stderr.contains("write-files returned"),
        "the call wrote past the budget and returned:\n{}",
        r.stderr
    );
    p.assert_left_only_input("tools");
    // Within the budget, the same call works.
    let p = hostile("attack = \"write-files-big\"\ncount = 1\n");
    p.kiln(&["build", "--disk", "64M"]).ok();
}

#[test]
fn a_tools_escape_sequences_never_reach_the_terminal_raw() {
    // A failing tool's output is shown in kiln's error: it tries to set the
    // window title, clear the screen and rewrite the line.
    let p = hostile(
        "attack = \"exec\"\nscript = 'printf \"\\033]0;pwned\\007\\033[2J\\rall good\\342\\200\\256\"; exit 1'\n",
    );
    let r = p.kiln(&["build"]).fails_with("tool exited with code 1");
    for raw in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(
            !r.stderr.contains(raw),
            "{raw:?} reached the terminal raw: {:?}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains("\\x1b]0;pwned\\x07\\x1b[2J\\rall good\\u{202e}"),
        "{}",
        r.stderr
    );
}

#[test]
fn dev_is_read_only_and_shared_memory_is_sized() {
    // /dev was a writable tmpfs without a size: a second, unbounded /tmp.
    let p = hostile(
        "attack = \"exec\"\nscript = '(echo x > /dev/planted) 2>/dev/null && echo dev-writable; (mkfifo /dev/p) 2>/dev/null && echo dev-fifo; grep \" /dev/shm \" /proc/mounts; echo y > /dev/shm/ok && echo shm-ok'\n",
    );
    p.kiln(&["build"]).ok();
    let seen = std::fs::read_to_string(p.path("result/escaped")).unwrap();
    assert!(
        !seen.contains("dev-writable") && !seen.contains("dev-fifo"),
        "{seen}"
    );
    assert!(seen.contains("shm-ok"), "{seen}");
    assert!(
        seen.contains("size=4194304k"),
        "/dev/shm has the /tmp cap: {seen}"
    );
}
