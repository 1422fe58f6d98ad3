//! The test-fixture recipes (`hostile`, `my-recipe`), compiled for
//! wasm32-wasip2 on first use by the test suite and the benches, into
//! cargo's test scratch directory. The shipped `kiln` embeds only the
//! standard recipes; fixtures never reach it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// (name, package) of each fixture recipe.
const FIXTURES: &[(&str, &str)] = &[
    ("hostile", "kiln-fixture-hostile"),
    ("my-recipe", "my-recipe"),
];

/// The path of the compiled fixture recipe `name`, building them all once.
pub fn fixture_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build_all);
    let package = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no fixture recipe {name}"));
    dir.join(format!("{}.wasm", package.replace('-', "_")))
}

/// A nested `cargo build` of every fixture, as host/build.rs builds the
/// standard recipes; returns the directory holding the `.wasm` files.
fn build_all() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-recipes");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target=wasm32-wasip2", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in FIXTURES {
        cmd.args(["-p", package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the fixture recipes");
    assert!(
        status.success(),
        "building the fixture recipes for wasm32-wasip2 failed (see above); if the target is missing: rustup target add wasm32-wasip2"
    );
    target_dir.join("wasm32-wasip2/release")
}
