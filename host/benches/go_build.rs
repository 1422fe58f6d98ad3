//! kiln's Go builds against bare `go` on the same tree, in the same run:
//!
//! 1. cold: `kiln build --no-cache` vs `go build` with an empty GOCACHE
//!    (goal ≤ 1.05×);
//! 2. the edit loop: after a one-line edit of a module with a library
//!    package and a test, `kiln build` (with its `go test`) vs a warm
//!    `go test ./... && go build` (goal ≤ 1.5×);
//! 3. the image on top: the same edit, `kiln build el image` minus
//!    `kiln build el` (goal ≤ 0.2 s);
//! 4. module download reuse: after an edit, a module with a dependency runs
//!    no fixed-output step (goal: 0);
//! 5. the no-op rebuild (goal ≤ 20 ms);
//! 6. a new project's first build, with the standard library the machine
//!    compiled once (a cache seed) vs compiling it again as `--no-cache`
//!    does (goal ≤ 0.5×).
//!
//! `cargo bench --profile dev --bench go_build` (downloads Go 1.27.3 once
//! into a temporary store).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const ROUNDS: usize = 5;

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

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// How long a build in `dir` takes with empty tool caches (`--no-cache`)
/// and a source date `epoch` no earlier round used, so nothing is found.
fn timed_uncached(home: &Path, dir: &Path, epoch: u32) -> anyhow::Result<Duration> {
    let epoch = epoch.to_string();
    let args = [
        "-q",
        "build",
        "--no-link",
        "--no-cache",
        "--source-date-epoch",
        &epoch,
    ];
    timed(|| kiln(home, dir, &args).map(drop))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap_or(dir))?;
    std::fs::write(p, text)?;
    Ok(())
}

/// A main package using a library package that has a test.
fn write_module(dir: &Path, greeting: &str) -> anyhow::Result<()> {
    write(dir, "go.mod", "module example.com/el\n\ngo 1.22\n")?;
    write(
        dir,
        "greet/greet.go",
        "package greet\n\nimport \"strings\"\n\n// Hello greets name.\nfunc Hello(name string) string { return \"hello, \" + strings.TrimSpace(name) }\n",
    )?;
    write(
        dir,
        "greet/greet_test.go",
        "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello(\" x \") != \"hello, x\" {\n\t\tt.Fatal(Hello(\"x\"))\n\t}\n}\n",
    )?;
    edit(dir, greeting)
}

/// The one-line edit: main.go prints another greeting.
fn edit(dir: &Path, greeting: &str) -> anyhow::Result<()> {
    write(
        dir,
        "main.go",
        &format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/el/greet\"\n)\n\nfunc main() {{ fmt.Println(greet.Hello({greeting:?})) }}\n"
        ),
    )
}

/// Bare `go` with the flags the go recipe uses, caching in `cache`.
fn bare_go(go: &Path, dir: &Path, cache: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(go)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", cache)
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=readonly -trimpath")
        .env("CGO_ENABLED", "0")
        .status()?;
    anyhow::ensure!(status.success(), "bare go {args:?} failed");
    Ok(())
}

/// `go build` as the go recipe runs it, writing into `cache` (not the tree).
fn bare_build(go: &Path, dir: &Path, cache: &Path) -> anyhow::Result<()> {
    let out = format!("{}/out/", cache.display());
    let args = [
        "build",
        "-o",
        &out,
        "-buildvcs=false",
        "-ldflags=-buildid=",
        ".",
    ];
    bare_go(go, dir, cache, &args)
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let toml = std::fs::read_to_string(root.join("kiln.toml"))?;
    let go_input = toml
        .lines()
        .find(|l| l.starts_with("inputs.go = "))
        .expect("examples/hello/kiln.toml declares inputs.go")
        .to_string();
    let url = go_input
        .split("url = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a url in inputs.go");
    let home = tempfile::tempdir()?;
    let home = home.path();
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    write_module(dir, "world")?;
    write(
        dir,
        "kiln.toml",
        &format!(
            "[target.el]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{go_input}\n\n[target.image]\nrecipe = \"oci-image\"\ninputs.el = {{ target = \"el\" }}\n[target.image.params]\nname = \"el\"\ncontents = [{{ from = \"el\", path = \"bin/el\", dest = \"/bin/el\" }}]\nentrypoint = [\"/bin/el\"]\n"
        ),
    )?;

    // Outside the timing: the toolchain download and the compiled recipes.
    let hash = kiln(home, dir, &["-q", "prefetch", "--unpack", url])?;
    let entry: PathBuf = std::fs::read_dir(home.join("store"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("go/bin/go").is_file())
        .expect("the unpacked toolchain");
    let go = entry.join("go/bin/go");
    println!("toolchain {} at {}", hash.trim(), entry.display());
    kiln(home, dir, &["-q", "build", "el", "image", "--no-link"])?;

    // 1. Cold: no cache on either side; a new SOURCE_DATE_EPOCH makes kiln
    // build again. Both sides only build (params.check would add go test).
    let cold_dir = tempfile::tempdir()?;
    let cold_dir = cold_dir.path();
    write_module(cold_dir, "cold")?;
    write(
        cold_dir,
        "kiln.toml",
        &format!(
            "[target.el]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{go_input}\nparams = {{ check = false }}\n"
        ),
    )?;
    let mut ratios = Vec::new();
    for round in 0..3 {
        let k = timed_uncached(home, cold_dir, 100 + round)?;
        let cache = tempfile::tempdir()?;
        let b = timed(|| bare_build(&go, cold_dir, cache.path()))?;
        println!(
            "cold round {round}: kiln {:.2} s, bare go build {:.2} s, ratio {:.2}x",
            k.as_secs_f64(),
            b.as_secs_f64(),
            k.as_secs_f64() / b.as_secs_f64()
        );
        ratios.push(k.as_secs_f64() / b.as_secs_f64());
    }
    println!(
        "cold: median kiln/bare {:.2}x (goal ≤ 1.05x)",
        median(ratios)
    );

    // 2 and 3. The edit loop, warm on both sides.
    let bare_cache = tempfile::tempdir()?;
    let bare_dir = tempfile::tempdir()?;
    write_module(bare_dir.path(), "world")?;
    let bare_loop = |greeting: &str| -> anyhow::Result<Duration> {
        edit(bare_dir.path(), greeting)?;
        timed(|| {
            bare_go(&go, bare_dir.path(), bare_cache.path(), &["test", "./..."])?;
            bare_build(&go, bare_dir.path(), bare_cache.path())
        })
    };
    bare_loop("warm")?;
    let mut loop_ratios = Vec::new();
    let mut kiln_loop = Vec::new();
    let mut image_extra = Vec::new();
    for round in 0..ROUNDS {
        let greeting = format!("edit {round}");
        edit(dir, &greeting)?;
        let k = timed(|| kiln(home, dir, &["-q", "build", "el", "--no-link"]).map(drop))?;
        let b = bare_loop(&greeting)?;
        edit(dir, &format!("image {round}"))?;
        let both =
            timed(|| kiln(home, dir, &["-q", "build", "el", "image", "--no-link"]).map(drop))?;
        edit(dir, &format!("alone {round}"))?;
        let alone = timed(|| kiln(home, dir, &["-q", "build", "el", "--no-link"]).map(drop))?;
        println!(
            "edit round {round}: kiln build {:.3} s, bare go test + go build {:.3} s, ratio {:.2}x; el+image {:.3} s vs el {:.3} s",
            k.as_secs_f64(),
            b.as_secs_f64(),
            k.as_secs_f64() / b.as_secs_f64(),
            both.as_secs_f64(),
            alone.as_secs_f64()
        );
        loop_ratios.push(k.as_secs_f64() / b.as_secs_f64());
        kiln_loop.push(k.as_secs_f64());
        image_extra.push(both.as_secs_f64() - alone.as_secs_f64());
    }
    println!(
        "edit loop: median kiln {:.3} s, kiln/bare {:.2}x (goal ≤ 1.5x)",
        median(kiln_loop),
        median(loop_ratios)
    );
    println!(
        "image on top of an edit: median +{:.3} s (goal ≤ 0.2 s)",
        median(image_extra)
    );

    // 4. Module download reuse: a module with a dependency served from a
    // GOPROXY directory; after an edit, count the fixed-output steps run.
    let dep_dir = tempfile::tempdir()?;
    let runs = download_reuse(home, dep_dir.path(), &go_input)?;
    println!("fixed-output steps run after an edit: {runs} (goal 0)");

    // 5. The no-op rebuild.
    let mut noop = Vec::new();
    for _ in 0..10 {
        noop.push(
            timed(|| kiln(home, dir, &["-q", "build", "el", "--no-link"]).map(drop))?.as_secs_f64(),
        );
    }
    println!(
        "no-op rebuild: median {:.1} ms (goal ≤ 20 ms)",
        median(noop) * 1e3
    );

    // 6. A new project on the machine: its first build (with go test),
    // seeded with the standard library, vs the same build with empty
    // caches, as every new project's first build was before seeds.
    let mut new_ratios = Vec::new();
    for round in 0..3 {
        let fresh = tempfile::tempdir()?;
        let fresh = fresh.path();
        write_module(fresh, &format!("new {round}"))?;
        write(
            fresh,
            "kiln.toml",
            &format!("[target.el]\nrecipe = \"go\"\ninputs.src = {{ path = \".\" }}\n{go_input}\n"),
        )?;
        let seeded = timed(|| kiln(home, fresh, &["-q", "build", "--no-link"]).map(drop))?;
        let unseeded = timed_uncached(home, fresh, 200 + round)?;
        println!(
            "new project round {round}: first build {:.2} s, with empty caches {:.2} s, ratio {:.2}x",
            seeded.as_secs_f64(),
            unseeded.as_secs_f64(),
            seeded.as_secs_f64() / unseeded.as_secs_f64()
        );
        new_ratios.push(seeded.as_secs_f64() / unseeded.as_secs_f64());
    }
    println!(
        "new project's first build: median seeded/unseeded {:.2}x (goal ≤ 0.5x)",
        median(new_ratios)
    );
    Ok(())
}

/// Build a module whose dependency comes through `vendor_hash`, edit a .go
/// file, build again; returns how many fixed-output steps the second build
/// ran (from its record).
fn download_reuse(home: &Path, dir: &Path, go_input: &str) -> anyhow::Result<usize> {
    let gomod = "module example.com/greet\n\ngo 1.22\n";
    let code = "package greet\n\nfunc Hello() string { return \"hello from a dependency\" }\n";
    let v = "proxy/example.com/greet/@v";
    write(dir, &format!("{v}/list"), "v1.0.0\n")?;
    write(
        dir,
        &format!("{v}/v1.0.0.info"),
        "{\"Version\":\"v1.0.0\",\"Time\":\"2020-01-01T00:00:00Z\"}\n",
    )?;
    write(dir, &format!("{v}/v1.0.0.mod"), gomod)?;
    let files = [
        ("example.com/greet@v1.0.0/go.mod", gomod),
        ("example.com/greet@v1.0.0/greet.go", code),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(name, zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, data.as_bytes())?;
    }
    std::fs::write(
        dir.join(format!("{v}/v1.0.0.zip")),
        zip.finish()?.into_inner(),
    )?;
    let h1 = |files: &[(&str, &str)]| {
        let mut sorted = files.to_vec();
        sorted.sort();
        let summary: String = sorted
            .iter()
            .map(|(n, d)| {
                format!(
                    "{}  {n}\n",
                    kiln_core::hash::Sha256Hash::of_bytes(d.as_bytes()).to_hex()
                )
            })
            .collect();
        let sri = kiln_core::hash::Sha256Hash::of_bytes(summary.as_bytes()).to_sri();
        format!("h1:{}", sri.trim_start_matches("sha256-"))
    };
    write(
        dir,
        "app/go.mod",
        "module example.com/app\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n",
    )?;
    write(
        dir,
        "app/go.sum",
        &format!(
            "example.com/greet v1.0.0 {}\nexample.com/greet v1.0.0/go.mod {}\n",
            h1(&files),
            h1(&[("go.mod", gomod)])
        ),
    )?;
    let main = |s: &str| {
        format!(
            "package main\n\nimport (\"fmt\"; \"example.com/greet\")\n\nfunc main() {{ fmt.Println(greet.Hello(), {s:?}) }}\n"
        )
    };
    write(dir, "app/main.go", &main("one"))?;
    let toml = |pin: &str| {
        format!(
            "[target.app]\nrecipe = \"go\"\ninputs.src = {{ path = \"app\" }}\ninputs.proxy = {{ path = \"proxy\" }}\n{go_input}\nparams = {{ goproxy = \"file:///inputs/proxy\", check = false{pin} }}\n"
        )
    };
    write(dir, "kiln.toml", &toml(""))?;
    // Learn the pin as a user would.
    let out = Command::new(KILN)
        .args(["build", "--fetch-unpinned"])
        .current_dir(dir)
        .env("KILN_HOME", home)
        .output()?;
    // The line to paste is on stdout; notes on stderr.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = said
        .split("vendor_hash = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no hash to pin in: {said}"))?
        .to_string();
    write(
        dir,
        "kiln.toml",
        &toml(&format!(", vendor_hash = \"{pin}\"")),
    )?;
    kiln(home, dir, &["-q", "build"])?;
    write(dir, "app/main.go", &main("two"))?;
    kiln(home, dir, &["-q", "build"])?;
    let entry = std::fs::canonicalize(dir.join("result"))?;
    let name = entry
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join(format!("records/{name}.json")))?)?;
    // A step answered from the store is recorded without network.
    Ok(rec["execs"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|x| x["network"] == true).count()))
}
