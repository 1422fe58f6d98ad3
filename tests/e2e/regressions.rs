//! Bugs found while restructuring (issue 14), each pinned by a test that
//! failed before its fix.

use crate::support::{Project, fixture};

/// The hostile fixture's `noop` target over a `src` directory.
fn noop_project(extra_inputs: &str) -> Project {
    let p = Project::new();
    p.write("src/a.txt", "one\n");
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"noop\" }}\ninputs.src = {{ path = \"src\" }}\n{extra_inputs}",
            fixture("hostile")
        ),
    );
    p
}

#[test]
fn an_input_called_recipe_does_not_collide_with_the_recipe_pin() {
    let p = noop_project("inputs.recipe = { url = \"file://DATA\" }\n");
    p.write("data.txt", "an input that happens to be called recipe\n");
    let toml = std::fs::read_to_string(p.path("kiln.toml"))
        .unwrap()
        .replace("DATA", &p.path("data.txt").display().to_string());
    p.write("kiln.toml", &toml);
    p.kiln(&["build"]).ok();
    let lock = std::fs::read_to_string(p.path("kiln.lock")).unwrap();
    assert!(lock.contains("[target.t]\nrecipe = \"sha256-"), "{lock}");
    assert!(
        !lock.contains("[recipe]"),
        "a local recipe is never pinned: {lock}"
    );
    // And the next build reads both pins back.
    p.kiln(&["build", "--locked"]).ok();
}

#[test]
fn audit_finds_a_target_built_with_another_source_date_epoch() {
    let p = noop_project("");
    p.kiln(&["build", "--source-date-epoch", "5"]).ok();
    p.kiln(&["audit", "t", "--source-date-epoch", "5"]).ok();
    p.kiln(&["audit", "t"])
        .fails_with("target 't' is not built for its current inputs");
}

#[test]
fn a_lookup_after_a_source_edit_writes_nothing() {
    let p = noop_project("");
    p.kiln(&["build"]).ok();
    let before = p.store_entries();
    p.write("src/a.txt", "two\n");
    p.kiln(&["audit", "t"])
        .fails_with("target 't' is not built for its current inputs");
    assert_eq!(p.store_entries(), before, "audit added store entries");
}

#[test]
fn time_limits_parse_strictly() {
    let p = noop_project("");
    for bad in ["inf", "1e30s", "400days"] {
        let r = p.kiln(&["build", "--timeout", bad]);
        assert_eq!(r.code, 2, "--timeout {bad}: {}", r.stderr);
        assert!(r.stderr.contains("--timeout"), "{}", r.stderr);
    }
    p.kiln(&["build", "--timeout", " 90s"]).ok();
}

#[test]
fn a_crafted_elf_entrypoint_is_refused_by_name() {
    // An ELF header whose program headers are 1 byte long, 3 of them, at an
    // offset far past the file's end: the run check used to panic on it.
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    elf[54..56].copy_from_slice(&1u16.to_le_bytes());
    elf[56..58].copy_from_slice(&3u16.to_le_bytes());
    let p = Project::new();
    std::fs::create_dir_all(p.path("app")).unwrap();
    std::fs::write(p.path("app/evil"), &elf).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path("app/evil"), std::fs::Permissions::from_mode(0o755)).unwrap();
    p.write(
        "kiln.toml",
        "[target.img]\nrecipe = \"oci-image\"\ninputs.app = { path = \"app\" }\n[target.img.params]\nname = \"x\"\ncontents = [{ from = \"app\", dest = \"/\" }]\nentrypoint = [\"/evil\"]\n",
    );
    let r = p
        .kiln(&["build"])
        .fails_with("is a malformed ELF file (program headers are too small)");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}
