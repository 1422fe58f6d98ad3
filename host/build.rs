//! Compiles the standard recipes for wasm32-wasip2 with a nested `cargo
//! build`, the way wasmtime's test-programs are built, and generates
//! `recipes.rs`, which embeds them with `include_bytes!`. Test-fixture
//! recipes are the test suite's own (`tests/fixtures.rs`): never shipped.

#[path = "wasm_build.rs"]
mod wasm_build;

use std::path::{Path, PathBuf};

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
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wasm_build.rs").display()
    );
    for dir in ["wit", "recipes", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let packages: Vec<&str> = GUESTS.iter().map(|(_, p)| *p).collect();
    let wasm_dir = wasm_build::build_wasm(
        &root,
        &out_dir.join("guests"),
        &packages,
        "the standard recipes",
    );
    let mut code = String::from(
        "/// (name, wasm) of every standard recipe.\npub const STANDARD: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in GUESTS {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path_str(&wasm_build::wasm_file(&wasm_dir, package))
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("recipes.rs"), code).expect("writing recipes.rs");
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("OUT_DIR is UTF-8").to_string()
}
