//! Remote execution on loopback (BuildGrid with buildbox workers,
//! `tests/remote/engine.py`) against local builds, in the same run:
//!
//! 1. examples/hello built cold on the engine vs cold here (`--no-cache`,
//!    fresh stores; the toolchain is a local file): the ratio, and the
//!    overhead per action;
//! 2. a fresh store getting examples/hello from the engine's action cache
//!    vs that cold local build (the toolchain must still be fetched and
//!    hashed to name the actions: see the README);
//! 3. four independent Go targets on an engine with 1 worker vs 2 workers
//!    (on this 2-core machine the workers share the cores with kiln and
//!    BuildGrid: the ratio says what a second worker buys here, not on a
//!    farm).
//!
//! `cargo bench --profile dev --bench remote` (needs `bash
//! tests/remote/install.sh`; downloads Go 1.27.3 once into a temporary
//! store).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn kiln(home: &Path, dir: &Path, args: &[&str], allow: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(KILN)
        .args(args)
        .current_dir(dir)
        .env("KILN_HOME", home)
        .env("KILN_CONFIG", home.join("config.toml"))
        .env("KILN_ALLOW_PATH", allow)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

/// The engine, stopped when dropped.
struct Engine {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.stdin.take());
        std::thread::sleep(Duration::from_secs(2));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine(workers: u32) -> anyhow::Result<Engine> {
    let dir = tempfile::tempdir()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/remote/engine.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--dir")
        .arg(dir.path().join("engine"))
        .args(["--workers", &workers.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("READY ")
        .ok_or_else(|| anyhow::anyhow!("the engine did not start (bash tests/remote/install.sh)"))?
        .to_string();
    Ok(Engine {
        stdin: child.stdin.take(),
        child,
        url,
        _dir: dir,
    })
}

/// examples/hello in a new directory, its toolchain read from `wheel`;
/// `name` renames the module (a different program each).
fn hello(wheel: &Path, name: &str) -> anyhow::Result<tempfile::TempDir> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let dir = tempfile::tempdir()?;
    for f in ["hello.go", "go.mod", "kiln.toml"] {
        let mut text = std::fs::read_to_string(root.join(f))?;
        if f == "kiln.toml"
            && let Some(url) = text
                .split("url = \"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(String::from)
        {
            text = text.replace(&url, &format!("file://{}", wheel.display()));
        }
        if f == "hello.go" {
            text = text.replace("Hello", &format!("Hello from {name}"));
        }
        std::fs::write(dir.path().join(f), text)?;
    }
    Ok(dir)
}

/// Four hello modules as targets of one kiln.toml.
fn four(wheel: &Path) -> anyhow::Result<tempfile::TempDir> {
    let first = hello(wheel, "x")?;
    let toml = std::fs::read_to_string(first.path().join("kiln.toml"))?;
    let go = toml
        .lines()
        .find(|l| l.starts_with("inputs.go"))
        .expect("a go input")
        .to_string();
    let dir = tempfile::tempdir()?;
    let mut all = String::new();
    for i in 0..4 {
        let sub = dir.path().join(format!("m{i}"));
        std::fs::create_dir_all(&sub)?;
        for f in ["go.mod", "hello.go"] {
            let text = std::fs::read_to_string(first.path().join(f))?;
            std::fs::write(
                sub.join(f),
                text.replace("Hello from x", &format!("Hello from {i}")),
            )?;
        }
        all.push_str(&format!(
            "[target.m{i}]\nrecipe = \"go\"\ninputs.src = {{ path = \"m{i}\" }}\n{go}\n"
        ));
    }
    std::fs::write(dir.path().join("kiln.toml"), all)?;
    Ok(dir)
}

fn main() -> anyhow::Result<()> {
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/kiln.toml"),
    )?;
    let url = toml
        .split("url = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a url in examples/hello/kiln.toml");
    let seed = tempfile::tempdir()?;
    let seed_home = seed.path().join("home");
    kiln(&seed_home, seed.path(), &["-q", "prefetch", url], "/")?;
    let wheel: PathBuf = std::fs::read_dir(seed_home.join("store"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("the downloaded wheel");
    let allow = wheel
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    let fresh = || tempfile::tempdir();

    // 1. Cold: here vs on the engine (each a fresh store and engine).
    let p = hello(&wheel, "bench")?;
    let home = fresh()?;
    let local = kiln(
        home.path(),
        p.path(),
        &["-q", "build", "--no-cache", "hello"],
        &allow,
    )?;
    let e = engine(1)?;
    let home = fresh()?;
    let remote = kiln(
        home.path(),
        p.path(),
        &["-q", "build", "--remote-executor", &e.url, "hello"],
        &allow,
    )?;
    let record: serde_json::Value = {
        let link = std::fs::canonicalize(p.path().join("result"))?;
        let name = link
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        serde_json::from_slice(&std::fs::read(
            home.path().join(format!("records/{name}.json")),
        )?)?
    };
    let steps = record["execs"].as_array().map_or(1, Vec::len).max(1);
    println!(
        "hello, cold: here {:.2} s, on the engine {:.2} s ({:.2}×); {steps} actions, {:+.0} ms per action",
        local.as_secs_f64(),
        remote.as_secs_f64(),
        remote.as_secs_f64() / local.as_secs_f64(),
        (remote.as_secs_f64() - local.as_secs_f64()) * 1e3 / steps as f64
    );

    // 2. A fresh store from the action cache vs the cold local build.
    let mut cached = Vec::new();
    for _ in 0..3 {
        let home = fresh()?;
        cached.push(kiln(
            home.path(),
            p.path(),
            &["-q", "build", "--remote-executor", &e.url, "hello"],
            &allow,
        )?);
    }
    cached.sort();
    let hit = cached[1];
    println!(
        "hello, fresh store from the action cache: {:.2} s vs {:.2} s cold here ({:.1}× faster)",
        hit.as_secs_f64(),
        local.as_secs_f64(),
        local.as_secs_f64() / hit.as_secs_f64()
    );
    drop(e);

    // 3. Four targets, 1 worker vs 2.
    let mut by_workers = Vec::new();
    for workers in [1, 2] {
        let e = engine(workers)?;
        let p = four(&wheel)?;
        let home = fresh()?;
        let t = kiln(
            home.path(),
            p.path(),
            &[
                "-q",
                "build",
                "--no-link",
                "-j",
                "4",
                "--remote-executor",
                &e.url,
            ],
            &allow,
        )?;
        by_workers.push(t);
    }
    println!(
        "four Go targets on the engine: 1 worker {:.2} s, 2 workers {:.2} s ({:.2}×)",
        by_workers[0].as_secs_f64(),
        by_workers[1].as_secs_f64(),
        by_workers[0].as_secs_f64() / by_workers[1].as_secs_f64()
    );
    Ok(())
}
