//! The SDK's doc examples are recipes that run under kiln: they are
//! compiled for wasm32-wasip2 (rustdoc cross-compiles doctests) and cargo
//! hands each test program to `kiln run` as its runner, so every example
//! runs against the real host, sandbox and tools — what the docs show is
//! what kiln does. The fixture the docs describe: a `src` input with
//! `hello.txt` and an executable `bin/hello`, a `tools` input with busybox
//! as `bin/sh`, and params `{"greeting":"Hello"}`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{busybox, nested_cargo, run};

#[test]
fn the_sdk_doc_examples_run_as_recipes_under_kiln() {
    let inputs = tempfile::tempdir().unwrap();
    let src = inputs.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(src.join("bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(
        src.join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tools = inputs.path().join("tools/bin");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::copy(busybox(), tools.join("sh")).unwrap();
    let home = tempfile::tempdir().unwrap();

    // Cargo splits the runner at spaces: no space may be in these paths.
    let runner = format!(
        "{} -q run --no-link -i src={} -i tools={} -p {{\"greeting\":\"Hello\"}} --",
        env!("CARGO_BIN_EXE_kiln"),
        src.display(),
        inputs.path().join("tools").display(),
    );
    assert!(!runner.contains("  "), "{runner}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut cargo = nested_cargo(root, "sdk-doctests");
    cargo
        .args([
            "test",
            "--doc",
            "-p",
            "kiln-sdk",
            "--target",
            "wasm32-wasip2",
        ])
        .env("CARGO_TARGET_WASM32_WASIP2_RUNNER", runner)
        .env("KILN_HOME", home.path());
    let r = run(cargo.output().unwrap());
    assert!(
        r.code == 0 && r.stdout.contains("test result: ok."),
        "the SDK's doctests failed under kiln:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    // Every public item has an example: dozens ran, none was skipped.
    let passed: usize = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ... ok"))
        .count();
    assert!(passed >= 45, "only {passed} doctests ran:\n{}", r.stdout);
}
