//! Test a kiln recipe from its own `cargo test`, without writing a
//! kiln.toml: build the recipe crate for wasm32-wasip2, give it inputs and
//! params from Rust, run it under kiln's real runtime and sandbox (through
//! `kiln run`), and assert on what it left in `/out` and in its log.
//!
//! ```no_run
//! use kiln_recipe_test::{Recipe, this_crate};
//!
//! #[test]
//! fn greets_every_file() {
//!     let recipe: Recipe = this_crate!();
//!     let done = recipe
//!         .run()
//!         .input_tree("src", &[("a.txt", "x"), ("b.txt", "y")])
//!         .params(serde_json::json!({ "greeting": "Hello" }))
//!         .go();
//!     done.assert_ok();
//!     assert_eq!(done.read("greetings.txt"), "Hello, a.txt!\nHello, b.txt!\n");
//!     assert!(done.log_contains("wrote 2 greetings"));
//! }
//! ```
//!
//! The `kiln` binary it drives is `$KILN_BIN`, else the one cargo built next
//! to this test (`target/debug/kiln`, in kiln's own workspace), else `kiln`
//! on `PATH`. Each run gets its own store (`KILN_HOME`); compiled
//! components are shared across runs, so a suite pays for one compile.

use std::path::{Path, PathBuf};
use std::process::Command;

// The same nested `cargo build --target=wasm32-wasip2` kiln's build script
// uses for the standard recipes.
#[path = "../../../host/wasm_build.rs"]
mod wasm_build;

/// A recipe component to test.
#[derive(Debug, Clone)]
pub struct Recipe {
    wasm: PathBuf,
}

/// The recipe crate whose tests are running, built for wasm32-wasip2.
#[macro_export]
macro_rules! this_crate {
    () => {
        $crate::Recipe::build(env!("CARGO_MANIFEST_DIR"), env!("CARGO_PKG_NAME"))
    };
}

impl Recipe {
    /// Build the package `package` at `manifest_dir` with `cargo build
    /// --release --target wasm32-wasip2` (into its own target directory, so
    /// it does not wait on the `cargo test` that runs this). Panics with
    /// cargo's errors when it does not build.
    pub fn build(manifest_dir: &str, package: &str) -> Recipe {
        // Once per test process and package: the tests of a suite share it.
        static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, wasm)) = built.iter().find(|(p, _)| p == package) {
            return Recipe::from_wasm(wasm.clone());
        }
        let target_dir = scratch().join("target");
        let wasm_dir = wasm_build::build_wasm(
            Path::new(manifest_dir),
            &target_dir,
            &[package],
            &format!("recipe {package}"),
        );
        let wasm = wasm_build::wasm_file(&wasm_dir, package);
        built.push((package.to_string(), wasm.clone()));
        Recipe::from_wasm(wasm)
    }

    /// A component that is already built.
    pub fn from_wasm(wasm: impl Into<PathBuf>) -> Recipe {
        Recipe { wasm: wasm.into() }
    }

    /// The component file.
    pub fn wasm(&self) -> &Path {
        &self.wasm
    }

    /// Start describing one run: inputs, params, then [`Run::go`].
    pub fn run(&self) -> Run<'_> {
        Run {
            recipe: self,
            inputs: Vec::new(),
            params: serde_json::json!({}),
            name: None,
            extra: Vec::new(),
            trees: Vec::new(),
        }
    }
}

/// One run of a recipe, being described.
#[derive(Debug)]
pub struct Run<'r> {
    recipe: &'r Recipe,
    inputs: Vec<(String, PathBuf)>,
    params: serde_json::Value,
    name: Option<String>,
    extra: Vec<String>,
    trees: Vec<tempfile::TempDir>,
}

impl Run<'_> {
    /// An input the recipe sees at `/inputs/<name>`: an existing file or
    /// directory.
    pub fn input(mut self, name: &str, path: impl AsRef<Path>) -> Self {
        let path = std::path::absolute(path.as_ref()).expect("an absolute path");
        self.inputs.push((name.to_string(), path));
        self
    }

    /// A directory input made of these `(path, contents)` files.
    pub fn input_tree(mut self, name: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, text).expect("writing an input file");
        }
        let path = dir.path().to_path_buf();
        self.trees.push(dir);
        self.input(name, path)
    }

    /// A directory input made of copies of host files, modes kept: tools
    /// for the recipe to run, e.g. `&[("bin/wc", "/bin/busybox")]`.
    pub fn input_files(mut self, name: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (rel, from) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::copy(from, &p).unwrap_or_else(|e| panic!("copying {from}: {e}"));
        }
        let path = dir.path().to_path_buf();
        self.trees.push(dir);
        self.input(name, path)
    }

    /// The target's params table.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// The target's name (what `kiln_sdk::target_name()` returns).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// More `kiln run` flags, e.g. `--timeout 10s` or `--source-date-epoch 5`.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.extra.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// Run it, and return what it left.
    pub fn go(self) -> Outcome {
        let home = tempfile::tempdir().expect("a temporary KILN_HOME");
        let work = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(kiln_bin());
        cmd.current_dir(work.path())
            .env("KILN_HOME", home.path())
            .env("KILN_CONFIG", home.path().join("config.toml"))
            .env("KILN_COMPILE_CACHE", scratch().join("compiled"))
            .arg("run")
            .arg(&self.recipe.wasm)
            .args(["--json", "-o", "result"])
            .arg("--params")
            .arg(self.params.to_string());
        if let Some(name) = &self.name {
            cmd.args(["--name", name]);
        }
        for (name, path) in &self.inputs {
            cmd.arg("-i").arg(format!("{name}={}", path.display()));
        }
        cmd.args(&self.extra);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", kiln_bin().display()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let result = work.path().join("result");
        let out_dir = std::fs::canonicalize(&result).ok();
        let log = out_dir
            .as_ref()
            .and_then(|entry| {
                let name = entry.file_name()?.to_string_lossy().into_owned();
                let text =
                    std::fs::read(home.path().join("records").join(format!("{name}.json"))).ok()?;
                let rec: serde_json::Value = serde_json::from_slice(&text).ok()?;
                Some(
                    rec["log"]
                        .as_array()?
                        .iter()
                        .filter_map(|l| l["message"].as_str().map(str::to_string))
                        .collect(),
                )
            })
            .unwrap_or_default();
        Outcome {
            success: out.status.success(),
            out: out_dir,
            stderr,
            log,
            _home: home,
            _work: work,
        }
    }
}

/// What a run left: the output directory (on success), the log, kiln's
/// messages.
#[derive(Debug)]
pub struct Outcome {
    /// Whether the build succeeded.
    pub success: bool,
    /// The output directory (`/out` as stored), on success.
    pub out: Option<PathBuf>,
    /// What kiln printed on stderr: on failure, the error.
    pub stderr: String,
    /// The build log's messages (what the recipe logged, its stdout and
    /// stderr lines), on success.
    pub log: Vec<String>,
    _home: tempfile::TempDir,
    _work: tempfile::TempDir,
}

impl Outcome {
    /// Panic with kiln's messages unless the build succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success, "the recipe failed:\n{}", self.stderr);
        self
    }

    /// Panic unless the build failed with an error containing `needle`.
    #[track_caller]
    pub fn assert_fails_with(&self, needle: &str) -> &Self {
        assert!(
            !self.success,
            "the recipe succeeded; expected an error with {needle:?}"
        );
        assert!(
            self.stderr.contains(needle),
            "the error lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// The path of `rel` in the output.
    #[track_caller]
    pub fn path(&self, rel: &str) -> PathBuf {
        let out = self.out.as_ref().unwrap_or_else(|| {
            panic!("the recipe failed, so there is no output:\n{}", self.stderr)
        });
        out.join(rel)
    }

    /// The text of `rel` in the output.
    #[track_caller]
    pub fn read(&self, rel: &str) -> String {
        let p = self.path(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading /out/{rel}: {e}"))
    }

    /// Whether a log message contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

/// A scratch directory for builds and compiled components: beside the test
/// executable's target directory, or the system's temporary directory.
fn scratch() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|t| t.join("CACHEDIR.TAG").exists());
    let dir = target
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln-recipe-test");
    std::fs::create_dir_all(&dir).expect("creating the kiln-recipe-test directory");
    dir
}

/// The `kiln` to run: `$KILN_BIN`, the one built beside this test, or PATH's.
fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN") {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|d| d.join("kiln")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("kiln"),
    }
}
