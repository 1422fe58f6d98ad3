//! `kiln image inspect` on an image from anyone: names that leave the
//! image, symlinks, FIFOs and devices are refused by name and at once, and
//! a large layer is streamed, not held in memory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Project, run};

/// A docker-format layout directory whose manifest.json names `layer`.
fn docker_dir(p: &Project, layer: &str) -> std::path::PathBuf {
    let dir = p.path("img");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        format!(r#"[{{"Config":"config.json","RepoTags":["x:y"],"Layers":[{layer:?}]}}]"#),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"architecture":"amd64","os":"linux","config":{}}"#,
    )
    .unwrap();
    dir
}

/// `kiln image inspect dir` fails within seconds with `needle`.
#[track_caller]
fn refused(p: &Project, dir: &Path, needle: &str) {
    let start = Instant::now();
    p.kiln(&["image", "inspect", dir.to_str().unwrap()])
        .fails_with(needle);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn names_that_leave_the_image_symlinks_and_fifos_are_refused() {
    let p = Project::new();
    // A layer named by a path out of the layout: /dev/zero would never end.
    let dir = docker_dir(&p, "../../../../../../../../dev/zero");
    refused(&p, &dir, "is absolute or contains '..'");
    let dir = docker_dir(&p, "/dev/zero");
    refused(&p, &dir, "is absolute or contains '..'");
    // A layer that is a symlink to a host file.
    let dir = docker_dir(&p, "layer.tar");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("layer.tar")).unwrap();
    refused(&p, &dir, "goes through a symlink");
    // A layer that is a FIFO nobody writes to.
    std::fs::remove_file(dir.join("layer.tar")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("layer.tar"))
        .status()
        .unwrap();
    assert!(status.success());
    refused(&p, &dir, "is a fifo, not a regular file");

    // An OCI layout whose index names a "digest" that climbs out of blobs/.
    let oci = p.path("oci");
    std::fs::create_dir_all(&oci).unwrap();
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        oci.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../../../../../etc/passwd","size":1}]}"#,
    )
    .unwrap();
    refused(
        &p,
        &oci,
        "\"sha256:../../../../../../../../etc/passwd\" is not a digest",
    );
}

#[test]
fn a_large_layer_is_streamed_not_held() {
    let p = Project::new();
    // A 300 MB layer in a docker-archive tarball, inspected with 200 MB of
    // address space: holding the layer (or the tarball) would not fit.
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    layer.append_data(&mut h, "bin/", std::io::empty()).unwrap();
    let layer = layer.into_inner().unwrap();
    let big: u64 = 300 << 20;
    let archive = p.path("image.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let add = |b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(
            &mut b,
            "manifest.json",
            br#"[{"Config":"config.json","RepoTags":["big:1"],"Layers":["layer.tar"]}]"#,
        );
        add(
            &mut b,
            "config.json",
            br#"{"architecture":"amd64","os":"linux","config":{}}"#,
        );
        // The layer: one small tar of its own, then zeros to 300 MB (a tar
        // reader stops at its end; the digest covers every byte).
        let mut h = tar::Header::new_gnu();
        h.set_size(big);
        h.set_mode(0o644);
        let padded = std::io::Read::take(
            std::io::Read::chain(layer.as_slice(), std::io::repeat(0)),
            big,
        );
        b.append_data(&mut h, "layer.tar", padded).unwrap();
        b.finish().unwrap();
    }
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -v 204800 && exec \"$0\" image inspect --json \"$1\"",
        env!("CARGO_BIN_EXE_kiln"),
        archive.to_str().unwrap(),
    ]);
    let r = run(cmd.output().unwrap()).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["layers"][0]["size"], big);
    assert_eq!(v["layers"][0]["files"][0]["path"], "/bin");
    assert_eq!(v["repo_tags"][0], "big:1");
}
