//! One nested `cargo build --target=wasm32-wasip2`, the way wasmtime's
//! test-programs are built. Shared by `build.rs` (the standard recipes) and
//! `tests/fixtures.rs` (the test-only recipes) through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `packages` of the workspace at `root` in release mode for
/// wasm32-wasip2 into `target_dir`; returns the directory holding the
/// `.wasm` files (named after each package, `-` as `_`). Panics with the
/// fix when cargo fails: this runs at build or test time.
pub fn build_wasm(root: &Path, target_dir: &Path, packages: &[&str], what: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target=wasm32-wasip2", "--quiet"])
        .arg("--target-dir")
        .arg(target_dir);
    for package in packages {
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
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {what}: {e}"));
    assert!(
        status.success(),
        "building {what} for wasm32-wasip2 failed (see the errors above); if the target is missing: rustup target add wasm32-wasip2"
    );
    target_dir.join("wasm32-wasip2/release")
}

/// The file a package's component is built to in `dir`.
pub fn wasm_file(dir: &Path, package: &str) -> PathBuf {
    dir.join(format!("{}.wasm", package.replace('-', "_")))
}
