//! The test-fixture recipes (`hostile`, `my-recipe`), compiled for
//! wasm32-wasip2 on first use by the test suite and the benches, into
//! cargo's test scratch directory. The shipped `kiln` embeds only the
//! standard recipes; fixtures never reach it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "../host/wasm_build.rs"]
mod wasm_build;

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
    wasm_build::wasm_file(dir, package)
}

/// A nested `cargo build` of every fixture (`host/wasm_build.rs`, as
/// build.rs builds the standard recipes); returns the directory holding
/// the `.wasm` files.
fn build_all() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-recipes");
    let packages: Vec<&str> = FIXTURES.iter().map(|(_, p)| *p).collect();
    wasm_build::build_wasm(root, &target_dir, &packages, "the fixture recipes")
}
