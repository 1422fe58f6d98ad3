//! A generated monorepo: 500 packages (100 libraries, 400 services) of 20
//! image targets each, 10,000 targets, every service target taking a
//! library target as an input. Measured in one run:
//!
//! 1. the cold build, and kiln's scheduling overhead per target beyond the
//!    recipes' own work (goal ≤ 5 ms): (wall × jobs − Σ recipe time) / N;
//! 2. the no-op of all 10,000 (goal ≤ 1 s) and its peak RSS, against
//!    ninja's no-op over the same graph (10,000 edges copying the same
//!    files) as the baseline;
//! 3. the no-op of one service target by address (goal ≤ 50 ms): it reads
//!    its package and the library it names, not the other 498.
//!
//! `cargo bench --profile dev --bench workspace` (needs ninja-build and
//! GNU time; `KILN_BENCH_PACKAGES=50` for a smaller repo).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const ROUNDS: usize = 5;
const PER_PACKAGE: usize = 20;

/// The smallest static x86-64 ELF that exits 0: what each image holds (the
/// oci-image recipe checks its entrypoint is a runnable binary).
fn tiny_elf() -> Vec<u8> {
    let code: [u8; 9] = [0xb8, 60, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]; // exit(0)
    let base: u64 = 0x40_0000;
    let (ehdr, phdr) = (64u16, 56u16);
    let total = u64::from(ehdr + phdr) + code.len() as u64;
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&62u16.to_le_bytes()); // x86-64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(base + u64::from(ehdr + phdr)).to_le_bytes()); // entry
    b.extend_from_slice(&u64::from(ehdr).to_le_bytes()); // phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // shoff
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [ehdr, phdr, 1, 0, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [0, base, base, total, total, 0x1000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&code);
    b
}

/// The workspace, and the same graph as build.ninja.
fn generate(root: &Path, libs: usize, services: usize) -> anyhow::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        root.join("kiln.toml"),
        "[workspace]\nmembers = [\"services/*\", \"libs/*\"]\n",
    )?;
    let elf = tiny_elf();
    let mut ninja = String::from("rule cp\n  command = cp $in $out\n");
    let mut n = 0;
    let packages = (0..libs)
        .map(|i| (format!("libs/lib{i}"), None))
        .chain((0..services).map(|i| (format!("services/svc{i}"), Some(i % libs))));
    for (pkg, lib) in packages {
        let dir = root.join(&pkg);
        std::fs::create_dir_all(dir.join("src"))?;
        let app = dir.join("src/app");
        std::fs::write(&app, &elf)?;
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755))?;
        let mut toml = String::new();
        for k in 0..PER_PACKAGE {
            let dep = lib.map(|l| format!("libs/lib{l}:t{}", k % 5));
            toml.push_str(&format!(
                "[target.t{k}]\nrecipe = \"oci-image\"\ninputs.src = {{ path = \"src\" }}\n{}params.name = \"{}-t{k}\"\nparams.tag = \"v1\"\nparams.contents = [{{ from = \"src\", path = \"app\", dest = \"/app\" }}]\nparams.entrypoint = [\"/app\"]\n\n",
                dep.as_ref()
                    .map(|d| format!("inputs.lib = {{ target = \"{d}\" }}\n"))
                    .unwrap_or_default(),
                pkg.replace('/', "-")
            ));
            let implicit = dep
                .map(|d| format!(" | out/{}", d.replace(':', "/")))
                .unwrap_or_default();
            ninja.push_str(&format!(
                "build out/{pkg}/t{k}: cp {pkg}/src/app{implicit}\n"
            ));
            n += 1;
        }
        std::fs::write(dir.join("kiln.toml"), toml)?;
    }
    std::fs::write(root.join("build.ninja"), ninja)?;
    Ok(n)
}

/// Run `cmd` under GNU time: wall seconds and peak RSS in KiB.
fn timed(cmd: &mut Command) -> anyhow::Result<(f64, u64)> {
    let rss_file = tempfile::NamedTempFile::new()?;
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(program)
        .args(args)
        .stdout(std::process::Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let started = Instant::now();
    let out = wrapped
        .output()
        .map_err(|e| anyhow::anyhow!("running /usr/bin/time (apt-get install time): {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = std::fs::read_to_string(rss_file.path())?
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    Ok((secs, rss))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn kiln(root: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(KILN);
    c.args(args)
        .current_dir(root)
        .env("KILN_HOME", home)
        .env("KILN_CONFIG", home.join("config.toml"));
    c
}

/// Σ of the recipes' own time (`timing.build_ms`) over the store's records.
fn recipe_seconds(home: &Path) -> anyhow::Result<f64> {
    let mut ms = 0u64;
    for e in std::fs::read_dir(home.join("records"))? {
        let text = std::fs::read_to_string(e?.path())?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        ms += v["timing"]["build_ms"].as_u64().unwrap_or(0);
    }
    Ok(ms as f64 / 1e3)
}

fn main() -> anyhow::Result<()> {
    let packages: usize = std::env::var("KILN_BENCH_PACKAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let libs = (packages / 5).max(1);
    let work = tempfile::tempdir()?;
    let root: PathBuf = work.path().join("repo");
    let home = work.path().join("home");
    std::fs::create_dir_all(&root)?;
    let n = generate(&root, libs, packages - libs)?;
    println!("workspace: {packages} packages, {n} targets");

    // The baseline: ninja over the same graph.
    let (ninja_cold, _) = timed(Command::new("ninja").args(["-C"]).arg(&root).arg("-j2"))
        .map_err(|e| anyhow::anyhow!("{e} (apt-get install ninja-build)"))?;
    let mut ninja_noop = Vec::new();
    for _ in 0..ROUNDS {
        ninja_noop.push(timed(Command::new("ninja").args(["-C"]).arg(&root))?.0);
    }
    let ninja_noop = median(ninja_noop);
    println!(
        "ninja: cold {ninja_cold:.2} s, no-op median {:.1} ms",
        ninja_noop * 1e3
    );

    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (cold, cold_rss) = timed(&mut kiln(
        &root,
        &home,
        &["build", "-q", "--no-link", "//..."],
    ))?;
    let recipes = recipe_seconds(&home)?;
    let overhead_ms = ((cold * jobs as f64 - recipes) / n as f64 * 1e3).max(0.0);
    println!(
        "kiln cold: {cold:.1} s ({:.1} ms a target on {jobs} workers; recipes' own time {recipes:.1} s; scheduling overhead {overhead_ms:.2} ms a target, goal ≤ 5 ms); peak RSS {} MiB",
        cold / n as f64 * 1e3,
        cold_rss / 1024
    );

    let mut noop = Vec::new();
    let mut rss = 0;
    for _ in 0..ROUNDS {
        let (s, r) = timed(&mut kiln(
            &root,
            &home,
            &["build", "-q", "--no-link", "//..."],
        ))?;
        noop.push(s);
        rss = rss.max(r);
    }
    let noop = median(noop);
    println!(
        "kiln no-op of {n} targets: median {:.0} ms (goal ≤ 1000 ms), {:.1}× ninja's; peak RSS {} MiB",
        noop * 1e3,
        noop / ninja_noop,
        rss / 1024
    );

    let mut one = Vec::new();
    for _ in 0..ROUNDS {
        one.push(
            timed(&mut kiln(
                &root,
                &home,
                &["build", "-q", "--no-link", "services/svc7:t3"],
            ))?
            .0,
        );
    }
    println!(
        "kiln no-op of one target by address (services/svc7:t3): median {:.1} ms (goal ≤ 50 ms)",
        median(one) * 1e3
    );
    Ok(())
}
