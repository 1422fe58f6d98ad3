//! `kiln hash`: Nix-compatible digests, compared with nix-hash where it is
//! installed (Debian's nix-bin; .ci/run installs it).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use crate::support::Project;

fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or("")
}

/// A tree with the awkward cases: symlinks, exec bits, empty dirs, non-ASCII names.
fn awkward_tree(p: &Project) -> std::path::PathBuf {
    let root = p.path("tree");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("sub/deeper/ünïcødé ✓.txt"), "héllo\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("B"), "upper sorts before lower").unwrap();
    std::fs::write(root.join("a"), "").unwrap();
    symlink("sub/deeper", root.join("link-dir")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    root
}

#[test]
fn hash_path_matches_nix_hash_on_an_awkward_tree() {
    let p = Project::new();
    let root = awkward_tree(&p);
    let ours = p
        .kiln(&["hash", "path", "--format", "nix32", root.to_str().unwrap()])
        .ok();
    let nix = Command::new("nix-hash")
        .args(["--type", "sha256", "--base32"])
        .arg(&root)
        .output()
        .expect("nix-hash (Debian: nix-bin) must be installed; .ci/run installs it");
    assert!(nix.status.success());
    assert_eq!(
        last_line(&ours.stdout),
        format!("sha256:{}", String::from_utf8_lossy(&nix.stdout).trim())
    );
}

#[test]
fn hash_file_is_the_flat_sha256() {
    let p = Project::new();
    p.write("f", "abc");
    let r = p
        .kiln(&["hash", "file", p.path("f").to_str().unwrap()])
        .ok();
    assert_eq!(
        last_line(&r.stdout),
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    let r = p
        .kiln(&[
            "hash",
            "file",
            "--format",
            "hex",
            p.path("f").to_str().unwrap(),
        ])
        .ok();
    assert_eq!(
        last_line(&r.stdout),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn hash_convert_between_all_spellings() {
    let p = Project::new();
    let r = p
        .kiln(&[
            "hash",
            "convert",
            "--to",
            "nix32",
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        ])
        .ok();
    assert_eq!(
        last_line(&r.stdout),
        "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
    );
    let r = p
        .kiln(&[
            "hash",
            "convert",
            "--to",
            "sri",
            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        ])
        .ok();
    assert_eq!(
        last_line(&r.stdout),
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    p.kiln(&["hash", "convert", "--to", "sri", "md5-abc"])
        .fails_with("unsupported hash algorithm 'md5'");
}
