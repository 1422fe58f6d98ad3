//! Compiles the standard recipes for wasm32-wasip2 with a nested `cargo
//! build`, the way wasmtime's test-programs are built, and generates
//! `recipes.rs`, which embeds them with `include_bytes!`. Test-fixture
//! recipes are the test suite's own (`tests/fixtures.rs`): never shipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (recipe name, package) of each standard recipe.
const GUESTS: &[(&str, &str)] = &[
    ("go", "kiln-recipe-go"),
    ("oci-image", "kiln-recipe-oci-image"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in ["wit", "recipes", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let target_dir = out_dir.join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target=wasm32-wasip2", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in GUESTS {
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
        .expect("running cargo for the wasm32-wasip2 recipes");
    assert!(
        status.success(),
        "building the recipes for wasm32-wasip2 failed (see the errors above); if the target is missing: rustup target add wasm32-wasip2"
    );

    let wasm = |package: &str| -> PathBuf {
        target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", package.replace('-', "_")))
    };
    let mut code = String::from(
        "/// (name, wasm) of every standard recipe.\npub const STANDARD: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in GUESTS {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path_str(&wasm(package))
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("recipes.rs"), code).expect("writing recipes.rs");
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("OUT_DIR is UTF-8").to_string()
}
