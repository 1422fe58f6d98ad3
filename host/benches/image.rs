//! Assembling an image from 200 MB of content with the `oci-image` recipe
//! against `tar --sort=name … | sha256sum` over the same files, in the same
//! run (goal ≤ 1.2×). The input is already in the store and the recipe
//! compiled, so both sides read, archive and hash the same bytes; kiln also
//! writes them twice (the OCI blob and image.tar), hashes and fsyncs its
//! 400 MB output.
//!
//! Each round's output is deleted before the next, as `kiln gc` would, so
//! every round writes into recycled page-cache memory, as on a machine in
//! steady use. Kept, each round would grow the page cache by 400 MB; on a
//! VM whose memory the hypervisor backs lazily, the first touch of guest
//! memory then costs more than kiln does (`KEEP_OUTPUTS=1` shows it).
//!
//! `cargo bench --profile dev --bench image`

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const ROUNDS: usize = 5;

/// Run kiln; its stdout.
fn kiln(home: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(KILN)
        .args(args)
        .current_dir(dir)
        .env("KILN_HOME", home)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Delete the store entry a `kiln build` printed (`img: <path>`).
fn delete_output(stdout: &str) -> anyhow::Result<()> {
    let entry = stdout
        .trim()
        .strip_prefix("img: ")
        .ok_or_else(|| anyhow::anyhow!("no output path in {stdout:?}"))?;
    kiln_core::store::make_writable(Path::new(entry))?;
    std::fs::remove_dir_all(entry)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    let content = dir.path().join("content");
    std::fs::create_dir_all(content.join("bin"))?;
    std::fs::copy("/bin/busybox", content.join("bin/sh"))?;
    // 200 files of 1 MiB of pseudo-random (incompressible) bytes.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..200 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(
            content.join(format!("data-{i:03}.bin")),
        )?);
        for _ in 0..(1 << 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes())?;
        }
    }
    std::fs::write(
        dir.path().join("kiln.toml"),
        "[target.img]\nrecipe = \"oci-image\"\ninputs.content = { path = \"content\" }\n[target.img.params]\nname = \"bench\"\ncontents = [{ from = \"content\", dest = \"/\" }]\nentrypoint = [\"/bin/sh\"]\n",
    )?;
    let keep = std::env::var_os("KEEP_OUTPUTS").is_some();
    // Warm: input hashed and stored, recipe compiled.
    let warm = kiln(home.path(), dir.path(), &["-q", "build", "--no-link"])?;
    if !keep {
        delete_output(&warm)?;
    }

    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        // A new SOURCE_DATE_EPOCH: a new build, not a cache hit.
        let sde = (10 + round).to_string();
        let t = Instant::now();
        let built = kiln(
            home.path(),
            dir.path(),
            &["-q", "build", "--no-link", "--source-date-epoch", &sde],
        )?;
        let ours = t.elapsed().as_secs_f64();
        if !keep {
            delete_output(&built)?;
        }

        let t = Instant::now();
        let mut tar = Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@1",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-cf",
                "-",
                ".",
            ])
            .current_dir(&content)
            .stdout(Stdio::piped())
            .spawn()?;
        let sum = Command::new("sha256sum")
            .stdin(tar.stdout.take().expect("piped"))
            .output()?;
        anyhow::ensure!(
            tar.wait()?.success() && sum.status.success(),
            "tar | sha256sum failed"
        );
        let baseline = t.elapsed().as_secs_f64();
        println!(
            "round {round}: kiln image {ours:.2} s, tar | sha256sum {baseline:.2} s, ratio {:.2}x",
            ours / baseline
        );
        ratios.push(ours / baseline);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio: {:.2}x over {ROUNDS} rounds (goal ≤ 1.2x){}",
        ratios[ROUNDS / 2],
        if keep { ", outputs kept" } else { "" }
    );
    Ok(())
}
