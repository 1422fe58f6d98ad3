//! `kiln hash path` on a 200 MB / 10,000-file tree against
//! `nix-hash --type sha256` on the same tree, in the same run (goal ≤ 0.7×),
//! then the warm re-hash of the unchanged tree through the stat cache
//! (goal ≤ 30 ms). Both tools run as processes, so both pay their start-up;
//! the tree is read once before timing, so both find it in the page cache.
//!
//! `cargo bench --profile dev --bench hash` (needs nix-hash: Debian nix-bin)

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn run(cmd: &mut Command) -> anyhow::Result<(String, Duration)> {
    let t = Instant::now();
    let out = cmd.output()?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        took,
    ))
}

/// 100 directories × 100 files, sizes from 1 KiB to ~39 KiB (200 MB in all),
/// pseudo-random bytes, every tenth file executable.
fn make_tree(root: &Path) -> anyhow::Result<u64> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut total = 0u64;
    for d in 0..100 {
        let dir = root.join(format!("pkg-{d:03}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..100 {
            let words = 128 + ((d * 100 + f) * 7919 % 4864);
            let path = dir.join(format!("file-{f:03}.dat"));
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for _ in 0..words {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.write_all(&x.to_le_bytes())?;
            }
            w.flush()?;
            total += words as u64 * 8;
            if f % 10 == 0 {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    Ok(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    let bytes = make_tree(&tree)?;
    println!(
        "tree: 10000 files, {:.0} MB in {}",
        bytes as f64 / 1e6,
        tree.display()
    );
    let tree_s = tree.to_str().unwrap_or_default();
    let kiln = |args: &[&str]| {
        let mut c = Command::new(KILN);
        c.args(args).env("KILN_HOME", home.path());
        c
    };
    // Read everything once so that neither side pays for the disk.
    let (nix_hash, _) =
        run(Command::new("nix-hash").args(["--type", "sha256", "--base32", tree_s]))?;

    let mut ratios = Vec::new();
    for round in 1..=5 {
        let (ours, t_kiln) = run(&mut kiln(&[
            "hash",
            "path",
            "--no-stat-cache",
            "--format",
            "nix32",
            tree_s,
        ]))?;
        let (theirs, t_nix) =
            run(Command::new("nix-hash").args(["--type", "sha256", "--base32", tree_s]))?;
        anyhow::ensure!(
            ours.trim_start_matches("sha256:") == theirs && theirs == nix_hash,
            "kiln says {ours}, nix-hash says {theirs}"
        );
        let ratio = t_kiln.as_secs_f64() / t_nix.as_secs_f64();
        println!(
            "round {round}: kiln hash path {:.0} ms ({:.0} MB/s), nix-hash {:.0} ms: {ratio:.2}×",
            t_kiln.as_secs_f64() * 1e3,
            bytes as f64 / 1e6 / t_kiln.as_secs_f64(),
            t_nix.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
    }
    println!(
        "cold hash: median {:.2}× nix-hash (goal ≤ 0.7×)",
        median(ratios)
    );

    // The first cached run reads the tree and remembers its fingerprint.
    let (first, _) = run(&mut kiln(&["hash", "path", "--format", "nix32", tree_s]))?;
    anyhow::ensure!(
        first.trim_start_matches("sha256:") == nix_hash,
        "cached hash {first} differs"
    );
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (h, t) = run(&mut kiln(&["hash", "path", "--format", "nix32", tree_s]))?;
        anyhow::ensure!(
            h.trim_start_matches("sha256:") == nix_hash,
            "warm hash {h} differs"
        );
        warm.push(t.as_secs_f64() * 1e3);
    }
    println!(
        "warm re-hash of the unchanged tree: median {:.1} ms over {} runs (goal ≤ 30 ms)",
        median(warm.clone()),
        warm.len()
    );
    Ok(())
}
