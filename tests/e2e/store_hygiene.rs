//! The store against a hostile output or an interrupted run (issue 13):
//! audits read beneath an entry, `--check` outputs are sealed, `kiln gc`
//! waits for builds and clears what killed runs left, an entry's record
//! stays the record of the run that made it.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, busybox_project};

/// A target `t` running `script` with busybox; `extra` is more TOML for it.
fn tool_project(script: &str, extra: &str) -> Project {
    busybox_project(
        extra,
        &format!("attack = \"exec\"\nscript = '''{script}'''"),
    )
}

#[test]
fn audit_does_not_follow_an_outputs_symlinks() {
    // The output claims a Go binary that is a symlink to a host file.
    let p = tool_project(
        "mkdir -p /out/share/kiln/go /out/bin && ln -s /etc/passwd /out/bin/x && printf '/out/bin/x: go1.27.3\\n\\tpath\\texample.com/x\\n' > /out/share/kiln/go/x.buildinfo",
        "",
    );
    p.kiln(&["build"]).ok();
    p.kiln(&["audit", "t"])
        .fails_with("bin/x: 'bin/x' goes through a symlink");
}

#[test]
fn a_check_keeps_its_second_output_sealed() {
    // Different bytes each run, and a setuid bit.
    let p = tool_project(
        "head -c 16 /dev/urandom > /out/noise; cp /inputs/tools/bin/sh /out/sh; chmod 4755 /out/sh",
        "",
    );
    p.kiln(&["build"]).ok();
    let r = p.kiln(&["build", "--check"]).fails_with("noise");
    let kept = std::fs::read_dir(p.home.path().join("checks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (f, want) in [("", 0o555), ("sh", 0o555), ("noise", 0o444)] {
        let mode = std::fs::symlink_metadata(kept.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(
            mode,
            want,
            "{f} in {}: {:o}\n{}",
            kept.display(),
            mode,
            r.stderr
        );
    }
}

#[test]
fn gc_clears_staging_left_by_killed_runs_and_waits_for_builds() {
    let p = tool_project("sleep 3; echo built > /out/f", "");
    // What a `kill -9` in the middle of a build leaves.
    let stale = p.home.path().join("tmp/build-t-leftover");
    std::fs::create_dir_all(stale.join("out/sub")).unwrap();
    std::fs::set_permissions(stale.join("out"), std::fs::Permissions::from_mode(0o555)).unwrap();
    // A build in progress while gc runs: gc waits, then keeps what it rooted.
    let mut build = p
        .command(&["build", "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(stale.exists());
    let start = std::time::Instant::now();
    p.kiln(&["gc"]).ok();
    assert!(build.wait().unwrap().success());
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(500),
        "gc did not wait for the build"
    );
    assert!(!stale.exists(), "stale staging survived gc");
    assert_eq!(
        std::fs::read_to_string(p.path("result/f")).unwrap(),
        "built\n"
    );
    // What the build used and made is still there and intact.
    p.kiln(&["verify"]).ok();
}

#[test]
fn an_entrys_record_describes_the_run_that_made_it() {
    // Two fixed-output builds with different scripts and the same output:
    // one store entry, and its record is the first run's.
    let hash = {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("escaped"), "").unwrap();
        std::fs::write(d.path().join("f"), "same\n").unwrap();
        kiln_core::nar::hash_path(d.path()).unwrap().to_sri()
    };
    let first = tool_project("echo same > /out/f", &format!("output_hash = \"{hash}\"\n"));
    let second_home = first.home.path().to_path_buf();
    first.kiln(&["build"]).ok();
    let second = tool_project(
        "printf 'same\\n' > /out/f",
        &format!("output_hash = \"{hash}\"\n"),
    );
    second
        .command(&["build"])
        .env("KILN_HOME", &second_home)
        .status()
        .unwrap();
    let records: Vec<_> = std::fs::read_dir(second_home.join("records"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|r| r.contains("same"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].contains("echo same"), "{}", records[0]);
    assert!(!records[0].contains("printf"), "{}", records[0]);
}
