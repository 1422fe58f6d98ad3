//! The `oci-image` recipe on plain files (no Go): several layers, names too
//! long for a ustar header, symlinks, and file data that must arrive byte
//! for byte in both outputs.

use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::{Project, busybox, podman, run};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `member` of the tar archive `archive`, as GNU tar extracts it.
fn tar_member(archive: &std::path::Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -xOf {} {member}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn per_content_layers_keep_long_names_symlinks_and_bytes() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("app/bin")).unwrap();
    std::fs::copy(busybox(), p.path("app/bin/sh")).unwrap();
    // Busybox applets, as symlinks to it.
    for applet in ["cat", "wc"] {
        std::os::unix::fs::symlink("sh", p.path(&format!("app/bin/{applet}"))).unwrap();
    }
    let long = format!("share/{}/data.txt", "d".repeat(120));
    p.write(&format!("assets/{long}"), "long-named\n");
    // Several MiB and not a multiple of the tar block size.
    let big: Vec<u8> = (0..(3 << 20) + 7).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(p.path("assets/big.bin"), &big).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            r#"[target.img]
recipe = "oci-image"
inputs.app = {{ path = "app" }}
inputs.assets = {{ path = "assets" }}
[target.img.params]
name = "plain"
tag = "t"
layers = "per-content"
contents = [{{ from = "app", dest = "/" }}, {{ from = "assets", dest = "/srv" }}]
env = {{ PATH = "/bin" }}
entrypoint = ["/bin/sh", "-c", "cat /srv/{long} && wc -c < /srv/big.bin"]
"#
        ),
    );
    p.kiln(&["build"]).ok();

    let oci = p.path("result/oci");
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = json(oci.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 2, "{manifest}");

    let image_tar = p.path("result/image.tar");
    for digest in &layers {
        let bytes = std::fs::read(blob(digest)).unwrap();
        assert_eq!(format!("sha256:{}", hex(&Sha256::digest(&bytes))), *digest);
        // image.tar holds the same bytes as the OCI layout.
        let member = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        assert!(tar_member(&image_tar, &member) == bytes, "{member} differs");
    }
    let (app, assets) = (blob(&layers[0]), blob(&layers[1]));
    assert_eq!(tar_member(&assets, &format!("srv/{long}")), b"long-named\n");
    assert!(tar_member(&assets, "srv/big.bin") == big, "big.bin differs");
    let listing = run(Command::new("tar").arg("-tvf").arg(&app).output().unwrap()).ok();
    assert!(
        listing.stdout.contains("bin/wc -> sh"),
        "{}",
        listing.stdout
    );

    podman(&["load", "-i", image_tar.to_str().unwrap()]).ok();
    let r = podman(&["run", "--rm", "plain:t"]).ok();
    assert_eq!(r.stdout, format!("long-named\n{}\n", big.len()));
}
