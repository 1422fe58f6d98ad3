//! Tool steps on a Remote Execution API engine: a real one (BuildGrid with
//! buildbox workers, `tests/remote/engine.py`) and a hostile one
//! (`tests/remote/hostile_engine.py`), each started on 127.0.0.1 by the
//! test and stopped after (`bash tests/remote/install.sh` installs them;
//! `.ci/run` runs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Project, busybox, busybox_project, fixture, free_port, hello_project, record_of,
};

/// An engine a test started, stopped when dropped (closing its stdin
/// stops it; a kill follows).
struct Engine {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    dir: tempfile::TempDir,
}

impl Engine {
    /// The real engine: BuildGrid, its database and `workers` workers.
    fn real(workers: u32) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("engine");
        Engine::start(
            "engine.py",
            &[
                "--dir",
                data.to_str().unwrap(),
                "--workers",
                &workers.to_string(),
            ],
            dir,
        )
    }

    /// The hostile engine, answering every action as `mode` says; it logs
    /// each call (method and headers) to `calls.jsonl` in its directory.
    fn hostile(mode: &str) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.jsonl");
        Engine::start(
            "hostile_engine.py",
            &["--mode", mode, "--log", log.to_str().unwrap()],
            dir,
        )
    }

    fn start(script: &str, args: &[&str], dir: tempfile::TempDir) -> Engine {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/remote")
            .join(script);
        let mut child = Command::new("python3")
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("python3 tests/remote/…: run bash tests/remote/install.sh first");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            panic!(
                "{script} did not start: {}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
            );
        };
        Engine {
            stdin: child.stdin.take(),
            child,
            url: url.to_string(),
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// How many actions the real engine's workers have run.
    fn executions(&self) -> usize {
        let logs = std::fs::read_dir(self.path("engine")).unwrap();
        logs.flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("bot-") && name.ends_with(".log")
            })
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("buildbox-run exited"))
                    .count()
            })
            .sum()
    }

    /// The hostile engine's log of calls: one JSON object per line.
    fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.stdin.take());
        crate::support::wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// The token tests pass: it must reach the engine and nothing else.
const TOKEN: &str = "kiln-test-token-6f1d0c";

/// `kiln build` with the remote executor at `url`, the token in the environment.
fn remote_build(p: &Project, url: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["build", "--remote-executor", url];
    args.extend_from_slice(extra);
    crate::support::run(
        p.command(&args)
            .env("KILN_REMOTE_TOKEN", TOKEN)
            .output()
            .unwrap(),
    )
}

/// Everything kiln wrote under its home (records, logs, trees), as text.
fn home_text(p: &Project) -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => walk(&path, out),
                Ok(m) if m.is_file() && m.len() < (8 << 20) => {
                    out.push_str(&String::from_utf8_lossy(
                        &std::fs::read(&path).unwrap_or_default(),
                    ));
                }
                _ => {}
            }
        }
    }
    let mut out = String::new();
    for d in ["records", "store", "outputs"] {
        walk(&p.home.path().join(d), &mut out);
    }
    out
}

/// The store entry a result link points at, by name.
fn entry(p: &Project, link: &str) -> String {
    std::fs::canonicalize(p.path(link))
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn hello_builds_remotely_bit_identical_and_a_fresh_store_runs_nothing() {
    let engine = Engine::real(1);
    let local = hello_project();
    local.kiln(&["build"]).ok();

    let remote = hello_project();
    let first = remote_build(&remote, &engine.url, &[]).ok();
    for link in ["result-hello", "result-image"] {
        assert_eq!(
            entry(&local, link),
            entry(&remote, link),
            "{link} differs from the local build"
        );
    }
    let rec = record_of(&remote, "result-hello");
    let steps = rec["timing"]["remote"].as_array().unwrap();
    assert_eq!(steps.len(), rec["execs"].as_array().unwrap().len(), "{rec}");
    assert!(
        steps.iter().all(|s| s["executor"] == engine.url.as_str()),
        "{rec}"
    );
    assert!(
        rec["timing"]["caches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] == "none (remote)"),
        "{rec}"
    );
    let ran = engine.executions();
    assert!(ran >= 3, "the engine ran {ran} actions");

    // Another machine: a fresh store, everything from the action cache.
    let other = hello_project();
    let second = remote_build(&other, &engine.url, &[]).ok();
    assert_eq!(engine.executions(), ran, "a fresh store ran actions again");
    assert_eq!(entry(&other, "result-hello"), entry(&local, "result-hello"));
    let rec = record_of(&other, "result-hello");
    assert!(
        rec["timing"]["remote"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["cached"] == true),
        "{rec}"
    );
    // The token went nowhere kiln writes or prints.
    for text in [
        first.stderr,
        first.stdout,
        second.stderr,
        home_text(&remote),
        home_text(&other),
    ] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

/// A project of three busybox targets, each reading the one before.
fn chain_project() -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    let mut toml = String::new();
    for (name, dep, script) in [
        (
            "a",
            None,
            "mkdir -p /out/sub && echo one > /out/sub/a && ln -s sub/a /out/link && echo '#!x' > /out/run && chmod +x /out/run",
        ),
        (
            "b",
            Some("a"),
            "cat /inputs/a/sub/a > /work/x && echo two >> /work/x && cp /work/x /out/b",
        ),
        (
            "c",
            Some("b"),
            "mkdir -p /work/d/e && cp /inputs/b/b /work/d/e/f && cd /work/d && cat e/f e/f > /out/c",
        ),
    ] {
        toml.push_str(&format!(
            "[target.{name}]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n",
            fixture("hostile")
        ));
        if let Some(dep) = dep {
            toml.push_str(&format!("inputs.{dep} = {{ target = \"{dep}\" }}\n"));
        }
        toml.push_str(&format!(
            "[target.{name}.params]\nattack = \"exec\"\nscript = '''{script}'''\n"
        ));
    }
    p.write("kiln.toml", &toml);
    p
}

#[test]
fn a_chain_of_targets_builds_remotely_as_it_does_here() {
    let engine = Engine::real(2);
    let local = chain_project();
    local.kiln(&["build"]).ok();
    let remote = chain_project();
    remote_build(&remote, &engine.url, &[]).ok();
    for link in ["result-a", "result-b", "result-c"] {
        assert_eq!(entry(&local, link), entry(&remote, link), "{link}");
    }
    assert_eq!(
        std::fs::read_to_string(remote.path("result-c/c")).unwrap(),
        "one\ntwo\none\ntwo\n"
    );
    // Another machine gets all three from the action cache.
    let ran = engine.executions();
    let other = chain_project();
    remote_build(&other, &engine.url, &[]).ok();
    assert_eq!(engine.executions(), ran, "a fresh store ran actions again");
    assert_eq!(entry(&other, "result-c"), entry(&local, "result-c"));
    // --check rebuilds here and compares with what the engine made.
    remote_build(&remote, &engine.url, &["--check", "c"]).ok();
}

#[test]
fn an_engine_that_cannot_be_reached_is_named_and_fallback_runs_here() {
    let p = chain_project();
    let url = format!("grpc://127.0.0.1:{}", free_port());
    let run = remote_build(&p, &url, &["a"]);
    let run = run.fails_with("cannot reach the remote executor");
    assert!(run.stderr.contains("--remote-fallback"), "{}", run.stderr);
    assert!(!p.path("result").exists());

    let run = remote_build(&p, &url, &["--remote-fallback", "a"]).ok();
    assert!(
        run.stderr.contains("running every step on this machine"),
        "{}",
        run.stderr
    );
    assert!(record_of(&p, "result")["timing"].get("remote").is_none());
}

#[test]
fn an_engine_killed_mid_build_is_a_named_error_and_nothing_is_kept() {
    let engine = Engine::real(1);
    let p = busybox_project(
        "",
        "attack = \"exec\"\nscript = 'sleep 8; echo late > /out/x'",
    );
    let child = p
        .command(&["build", "--remote-executor", &engine.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = std::fs::read_to_string(engine.path("engine/buildgrid.pid")).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    let started = Instant::now();
    let run = crate::support::run(child.wait_with_output().unwrap());
    let run = run.fails_with("remote execution");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "kiln waited {:?}",
        started.elapsed()
    );
    assert!(!p.path("result").exists(), "{}", run.stderr);
    assert_eq!(p.staging_leftovers(), 0);
}

/// A one-step busybox project whose step writes `/out/x`.
fn one_step() -> Project {
    busybox_project("", "attack = \"exec\"\nscript = 'echo hi > /out/x'")
}

#[test]
fn a_hostile_engines_answers_are_refused_and_nothing_is_kept() {
    for (mode, needle) in [
        ("escape", "outside the step's writable directories"),
        ("dotdot-name", "plain names"),
        ("absolute", "outside the step's writable directories"),
        ("bad-digest", "is not what its digest says"),
        ("truncated", "is not what its digest says"),
        ("missing-output", "returned no /out"),
    ] {
        let engine = Engine::hostile(mode);
        let p = one_step();
        let run = remote_build(&p, &engine.url, &[]);
        let run = run.fails_with(needle);
        assert!(!p.path("result").exists(), "{mode}: {}", run.stderr);
        assert_eq!(p.staging_leftovers(), 0, "{mode}");
        let outputs = p.home.path().join("outputs");
        assert!(
            std::fs::read_dir(&outputs).map_or(true, |mut d| d.next().is_none()),
            "{mode}: an output was recorded"
        );
        // The token reached the engine, and nothing kiln printed or kept.
        let sent = engine
            .calls()
            .iter()
            .any(|c| c["metadata"]["authorization"].as_str() == Some(&format!("Bearer {TOKEN}")));
        assert!(sent, "{mode}: no call carried the token");
        assert!(
            !run.stderr.contains(TOKEN) && !home_text(&p).contains(TOKEN),
            "{mode}"
        );
    }
}

#[test]
fn an_engine_that_stays_unavailable_is_given_up_on_after_bounded_retries() {
    let engine = Engine::hostile("unavailable");
    let p = one_step();
    let started = Instant::now();
    remote_build(&p, &engine.url, &[]).fails_with("Unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let calls = engine.calls().len();
    assert!((2..=40).contains(&calls), "{calls} calls");
}

#[test]
fn ctrl_c_cancels_the_remote_operation() {
    let engine = Engine::hostile("hang");
    let p = one_step();
    let child = p
        .command(&["build", "--remote-executor", &engine.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine
        .calls()
        .iter()
        .any(|c| c["method"].as_str().is_some_and(|m| m.ends_with("Execute")))
    {
        assert!(Instant::now() < deadline, "kiln never called Execute");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        engine.calls().iter().any(|c| c["method"]
            .as_str()
            .is_some_and(|m| m.ends_with("CancelOperation"))),
        "no CancelOperation"
    );
    assert!(!p.path("result").exists());
}

#[test]
fn a_remote_executor_and_sandbox_off_do_not_mix() {
    let p = one_step();
    remote_build(&p, "grpc://127.0.0.1:1", &["--sandbox=off"])
        .fails_with("Drop one of --sandbox=off");
}

#[test]
fn a_remote_cache_shares_steps_only_with_the_users_consent() {
    let engine = Engine::real(1);
    let first = chain_project();
    // Without --remote-upload nothing is written: a second store runs every step.
    let run = first.kiln(&["build"]).ok();
    assert!(!run.stderr.contains("remote"), "{}", run.stderr);
    let cache_build = |p: &Project, extra: &[&str]| {
        let mut args = vec!["build", "--remote-cache", engine.url.as_str()];
        args.extend_from_slice(extra);
        crate::support::run(p.command(&args).output().unwrap()).ok()
    };
    let a = chain_project();
    cache_build(&a, &[]);
    let b = chain_project();
    cache_build(&b, &[]);
    assert!(record_of(&b, "result-c")["timing"].get("remote").is_none());

    // With it, a fresh store takes every step from the cache, runs none.
    let c = chain_project();
    cache_build(&c, &["--remote-upload"]);
    let d = chain_project();
    cache_build(&d, &[]);
    for link in ["result-a", "result-b", "result-c"] {
        assert_eq!(entry(&d, link), entry(&c, link), "{link}");
        assert_eq!(entry(&d, link), entry(&first, link), "{link}");
        let rec = record_of(&d, link);
        let steps = rec["timing"]["remote"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !steps.is_empty() && steps.iter().all(|s| s["cached"] == true),
            "{rec}"
        );
    }
    assert_eq!(
        engine.executions(),
        0,
        "a cache-only build executed on the engine"
    );
}
