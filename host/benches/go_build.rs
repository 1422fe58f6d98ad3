//! kiln's cold build of examples/hello against a bare `go build` with the
//! same flags and an empty GOCACHE, in the same run (goal ≤ 1.05×), and
//! kiln's no-op rebuild (goal ≤ 20 ms).
//!
//! `cargo bench --bench go_build` (downloads Go 1.27.3 once into a temporary store).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn kiln(home: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(KILN)
        .args(args)
        .current_dir(dir)
        .env("KILN_HOME", home)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let toml = std::fs::read_to_string(root.join("kiln.toml"))?;
    let url = toml
        .split("url = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a url in examples/hello/kiln.toml");
    let home = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    for f in ["hello.go", "go.mod"] {
        std::fs::copy(root.join(f), dir.path().join(f))?;
    }
    // The same target without `go test`, so both sides only build.
    let only_build = toml.replace(
        "recipe = \"go\"\n",
        "recipe = \"go\"\nparams = { check = false }\n",
    );
    std::fs::write(dir.path().join("kiln.toml"), only_build)?;

    // Outside the timing: the toolchain download, and a first build to warm
    // the compiled-recipe cache (the Go build cache lives in each build's /work).
    let hash = kiln(
        home.path(),
        dir.path(),
        &["-q", "prefetch", "--unpack", url],
    )?;
    let entry: PathBuf = std::fs::read_dir(home.path().join("store"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("go/bin/go").is_file())
        .expect("the unpacked toolchain");
    println!("toolchain {} at {}", hash.trim(), entry.display());
    kiln(
        home.path(),
        dir.path(),
        &["-q", "build", "hello", "--no-link"],
    )?;

    let mut ratios = Vec::new();
    for round in 0..3 {
        // kiln, cold: a new SOURCE_DATE_EPOCH changes the key, so nothing is reused.
        let sde = (100 + round).to_string();
        let t = Instant::now();
        kiln(
            home.path(),
            dir.path(),
            &[
                "-q",
                "build",
                "hello",
                "--no-link",
                "--source-date-epoch",
                &sde,
            ],
        )?;
        let kiln_cold = t.elapsed();

        let cache = tempfile::tempdir()?;
        let out = tempfile::tempdir()?;
        let t = Instant::now();
        let status = Command::new(entry.join("go/bin/go"))
            .args(["build", "-o"])
            .arg(format!("{}/", out.path().display()))
            .args(["-buildvcs=false", "-ldflags=-buildid=", "."])
            .current_dir(dir.path())
            .env_clear()
            .env("HOME", cache.path())
            .env("GOCACHE", cache.path().join("build"))
            .env("GOPATH", cache.path().join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=readonly -trimpath")
            .env("CGO_ENABLED", "0")
            .status()?;
        anyhow::ensure!(status.success(), "bare go build failed");
        let bare = t.elapsed();
        let ratio = kiln_cold.as_secs_f64() / bare.as_secs_f64();
        println!(
            "round {round}: kiln cold {:.2} s, bare go build {:.2} s, ratio {ratio:.2}x",
            kiln_cold.as_secs_f64(),
            bare.as_secs_f64()
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio kiln/bare: {:.2}x (goal ≤ 1.05x)", ratios[1]);

    let mut noop: Vec<Duration> = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        kiln(
            home.path(),
            dir.path(),
            &[
                "-q",
                "build",
                "hello",
                "--no-link",
                "--source-date-epoch",
                "100",
            ],
        )?;
        noop.push(t.elapsed());
    }
    noop.sort();
    println!(
        "no-op rebuild: median {:.1} ms (goal ≤ 20 ms)",
        noop[5].as_secs_f64() * 1e3
    );
    Ok(())
}
