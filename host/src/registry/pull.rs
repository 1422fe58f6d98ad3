//! Pulling a base image pinned by digest into a directory as an OCI image
//! layout, for the store: the pinned manifest (or index), the manifests of
//! the platforms asked for, their configs and layers — every byte checked
//! against the digest that names it before it is kept.
//!
//! Only the pin is trusted: a registry (or anything between) that answers
//! with other bytes, a manifest for another platform, an artifact that is
//! not an image, or a layer kiln would have to fetch from elsewhere (a
//! "foreign" layer's URLs) is refused by name, and the caller stores
//! nothing.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::client::Client;
use super::{Reference, RegistryError};

/// A manifest or index is small; anything larger is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;
/// An image config is JSON kiln reads whole: bounded like kiln.toml.
const CONFIG_LIMIT: u64 = 16 << 20;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// `REGISTRY/REPOSITORY[:TAG]@sha256:HEX`: an image pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage {
    pub reference: Reference,
    /// `sha256:` and 64 hex digits.
    pub digest: String,
}

impl PinnedImage {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((name, digest)) = s.split_once('@') else {
            return Err(format!(
                "'{s}' names no digest: pin a base image by digest, REGISTRY/REPO[:TAG]@sha256:… (`skopeo inspect docker://{s}` prints it); a tag alone can change under you"
            ));
        };
        check_digest(digest).map_err(|e| format!("'{s}': {e}"))?;
        let reference = Reference::parse(name).map_err(|e| e.to_string())?;
        Ok(PinnedImage {
            reference,
            digest: digest.to_string(),
        })
    }

    /// As written: `registry/repo[:tag]@sha256:…`.
    pub fn display(&self) -> String {
        let r = &self.reference;
        let tag = r.tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        format!("{}/{}{tag}@{}", r.registry, r.repository, self.digest)
    }
}

fn check_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "'{d}' is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        )),
    }
}

/// One platform, `os/arch[/variant]`.
fn matches(wanted: &str, p: &serde_json::Value) -> bool {
    let mut w = wanted.split('/');
    let (os, arch, variant) = (w.next(), w.next(), w.next());
    p["os"].as_str() == os
        && p["architecture"].as_str() == arch
        && variant.is_none_or(|v| p["variant"].as_str() == Some(v))
}

/// What a pull fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Each platform's manifest digest.
    pub manifests: Vec<(String, String)>,
    pub blobs: usize,
    pub bytes: u64,
}

/// Pull `image` for `platforms` (`linux/amd64`, …) into the empty
/// directory `dest` as an OCI layout, through `agent`, with at most
/// `max_bytes` in all.
pub fn pull(
    image: &PinnedImage,
    platforms: &[String],
    dest: &Path,
    agent: ureq::Agent,
    max_bytes: u64,
) -> Result<Pulled, RegistryError> {
    let client = Client::for_pull(&image.reference, agent);
    let blobs = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| io(dest, e))?;
    let where_ = image.display();
    let bad = |message: String| RegistryError::Failed {
        url: where_.clone(),
        message,
    };
    let mut pulled = Pulled {
        manifests: Vec::new(),
        blobs: 0,
        bytes: 0,
    };
    let (top, top_type) = manifest(&client, &image.digest, &blobs, &bad)?;
    pulled.blobs += 1;
    let mut chosen: Vec<(String, String)> = Vec::new();
    if INDEX_TYPES.contains(&top_type.as_str()) {
        let list = top["manifests"].as_array().cloned().unwrap_or_default();
        for want in platforms {
            let d = list
                .iter()
                .find(|m| matches(want, &m["platform"]))
                .ok_or_else(|| {
                    let has: Vec<String> = list
                        .iter()
                        .map(|m| {
                            let p = &m["platform"];
                            format!(
                                "{}/{}",
                                p["os"].as_str().unwrap_or("?"),
                                p["architecture"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    bad(format!(
                        "the index has no {want} image (it has: {}); pick a base built for it",
                        has.join(", ")
                    ))
                })?;
            let digest = d["digest"].as_str().unwrap_or_default().to_string();
            check_digest(&digest).map_err(&bad)?;
            chosen.push((want.clone(), digest));
        }
    } else {
        // One manifest: it must be for the one platform asked for, which
        // its config says.
        if platforms.len() > 1 {
            return Err(bad(format!(
                "{} is one image for one platform, not an index: it cannot serve {}",
                image.digest,
                platforms.join(" and ")
            )));
        }
        chosen.push((
            platforms.first().cloned().unwrap_or_default(),
            image.digest.clone(),
        ));
    }
    for (platform, digest) in &chosen {
        let (m, media_type) = if *digest == image.digest {
            (top.clone(), top_type.clone())
        } else {
            pulled.blobs += 1;
            manifest(&client, digest, &blobs, &bad)?
        };
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(bad(format!(
                "{digest} is a {media_type}, not an image manifest"
            )));
        }
        let config = &m["config"];
        let config_type = config["mediaType"].as_str().unwrap_or_default();
        if !CONFIG_TYPES.contains(&config_type) {
            return Err(bad(format!(
                "{digest} is not an image: its config is a {config_type:?} (an artifact, not something to run)"
            )));
        }
        let config_bytes = blob(&client, config, &blobs, &mut pulled, max_bytes, &bad)?;
        let cfg: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("its config is not JSON: {e}")))?;
        if !platform.is_empty() && !matches(platform, &cfg) {
            return Err(bad(format!(
                "{digest} is an image for {}/{}, not {platform}",
                cfg["os"].as_str().unwrap_or("?"),
                cfg["architecture"].as_str().unwrap_or("?")
            )));
        }
        for layer in m["layers"].as_array().into_iter().flatten() {
            let t = layer["mediaType"].as_str().unwrap_or_default();
            if !LAYER_TYPES.contains(&t) || layer.get("urls").is_some() {
                return Err(bad(format!(
                    "layer {} is a {t:?}{}; kiln takes tar layers from the registry itself only",
                    layer["digest"].as_str().unwrap_or("?"),
                    if layer.get("urls").is_some() {
                        " with foreign URLs"
                    } else {
                        ""
                    }
                )));
            }
            blob(&client, layer, &blobs, &mut pulled, max_bytes, &bad)?;
        }
        pulled.manifests.push((platform.clone(), digest.clone()));
    }
    // index.json names the pinned manifest or index as the registry sent it.
    let size = std::fs::metadata(blobs.join(&image.digest["sha256:".len()..]))
        .map_err(|e| io(dest, e))?
        .len();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": top_type,
            "digest": image.digest,
            "size": size,
        }],
    });
    std::fs::write(
        dest.join("index.json"),
        serde_json::to_vec(&index).unwrap_or_default(),
    )
    .map_err(|e| io(dest, e))?;
    std::fs::write(
        dest.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .map_err(|e| io(dest, e))?;
    Ok(pulled)
}

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Layout {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Fetch the manifest or index `digest`, check it, keep it: its JSON and
/// media type.
fn manifest(
    client: &Client,
    digest: &str,
    blobs: &Path,
    bad: &impl Fn(String) -> RegistryError,
) -> Result<(serde_json::Value, String), RegistryError> {
    let accept = [INDEX_TYPES, MANIFEST_TYPES].concat().join(", ");
    // The media type is the body's (or inferred from it): the header is
    // not covered by the digest, so it must not shape what is stored.
    let (bytes, _header_type) = client.get_manifest(digest, &accept, MANIFEST_LIMIT)?;
    let got = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    if got != digest {
        return Err(bad(format!(
            "the registry answered {digest} with other bytes ({got}); nothing was kept"
        )));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{digest} is not JSON: {e}")))?;
    let media_type = v["mediaType"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            // OCI allows leaving it out: an index has manifests, a
            // manifest a config.
            if v.get("manifests").is_some() {
                Some(INDEX_TYPES[0].to_string())
            } else if v.get("config").is_some() {
                Some(MANIFEST_TYPES[0].to_string())
            } else {
                None
            }
        })
        .ok_or_else(|| {
            bad(format!(
                "{digest} is neither an image manifest nor an index"
            ))
        })?;
    std::fs::write(blobs.join(&digest["sha256:".len()..]), &bytes).map_err(|e| io(blobs, e))?;
    Ok((v, media_type))
}

/// Fetch the blob a descriptor names into `blobs`, checking its size and
/// digest as it streams; the config's bytes are returned (small), a
/// layer's are not held.
fn blob(
    client: &Client,
    desc: &serde_json::Value,
    blobs: &Path,
    pulled: &mut Pulled,
    max_bytes: u64,
    bad: &impl Fn(String) -> RegistryError,
) -> Result<Vec<u8>, RegistryError> {
    let digest = desc["digest"].as_str().unwrap_or_default();
    check_digest(digest).map_err(bad)?;
    let size = desc["size"]
        .as_u64()
        .ok_or_else(|| bad(format!("descriptor {digest} has no size")))?;
    let keep = CONFIG_TYPES.contains(&desc["mediaType"].as_str().unwrap_or_default());
    if keep && size > CONFIG_LIMIT {
        return Err(bad(format!(
            "config {digest} claims {size} bytes; an image config is at most {CONFIG_LIMIT}"
        )));
    }
    let path = blobs.join(&digest["sha256:".len()..]);
    if let Ok(meta) = std::fs::metadata(&path) {
        // Two platforms may share a layer: the same digest must have the
        // same size (a descriptor cannot reuse a blob under another size).
        if meta.len() != size {
            return Err(bad(format!(
                "{digest} is named with {size} bytes here and {} bytes elsewhere in the image",
                meta.len()
            )));
        }
        return if keep {
            std::fs::read(&path).map_err(|e| io(&path, e))
        } else {
            Ok(Vec::new())
        };
    }
    if pulled.bytes.saturating_add(size) > max_bytes {
        return Err(bad(format!(
            "the image is larger than --max-download ({max_bytes} bytes)"
        )));
    }
    let mut body = client.get_blob(digest)?;
    let mut file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
    let mut hasher = Sha256::new();
    let mut held = Vec::new();
    let mut n: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = body.as_reader().take(size + 1);
    loop {
        let k = reader
            .read(&mut buf)
            .map_err(|e| bad(format!("reading {digest}: {e}")))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        hasher.update(&buf[..k]);
        file.write_all(&buf[..k]).map_err(|e| io(&path, e))?;
        if keep {
            held.extend_from_slice(&buf[..k]);
        }
    }
    let got = format!("sha256:{}", hex(&hasher.finalize()));
    if n != size || got != digest {
        return Err(bad(format!(
            "the registry answered {digest} ({size} bytes) with other bytes ({got}, {n} bytes); nothing was kept"
        )));
    }
    pulled.bytes += n;
    pulled.blobs += 1;
    Ok(held)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_is_pinned_by_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let p = PinnedImage::parse(&format!("127.0.0.1:5000/base:v1@{d}")).unwrap();
        assert_eq!(p.reference.repository, "base");
        assert_eq!(p.display(), format!("127.0.0.1:5000/base:v1@{d}"));
        assert!(
            PinnedImage::parse("127.0.0.1:5000/base:v1")
                .unwrap_err()
                .contains("names no digest")
        );
        assert!(PinnedImage::parse("127.0.0.1:5000/base@sha256:abc").is_err());
        assert!(PinnedImage::parse(&format!("base@{d}")).is_err());
    }

    /// A registry on loopback that answers every request from `answer`
    /// (path → body), for as many requests as come.
    fn fake_registry(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> String {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = answer(&path);
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        format!("127.0.0.1:{}", addr.port())
    }

    /// Why pulling `image` for linux/amd64 into a fresh directory fails.
    fn pull_error(image: &PinnedImage) -> String {
        let dest = tempfile::tempdir().unwrap();
        let agent = ureq::Agent::new_with_defaults();
        match pull(image, &["linux/amd64".into()], dest.path(), agent, 1 << 30) {
            Ok(_) => panic!("{} was pulled", image.display()),
            Err(e) => e.to_string(),
        }
    }

    fn digest_of(b: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(b)))
    }

    #[test]
    fn a_registry_that_answers_with_other_bytes_is_refused() {
        // The manifest asked for by digest, answered with another.
        let wanted = digest_of(b"the real manifest");
        let registry = fake_registry(|_| br#"{"schemaVersion":2,"config":{}}"#.to_vec());
        let image = PinnedImage::parse(&format!("{registry}/base@{wanted}")).unwrap();
        let e = pull_error(&image);
        assert!(e.contains("with other bytes"), "{e}");

        // The right manifest, but its config blob answered with other bytes.
        let config = br#"{"os":"linux","architecture":"amd64"}"#;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPES[0],
            "config": { "mediaType": CONFIG_TYPES[0], "digest": digest_of(config), "size": config.len() },
            "layers": [],
        }))
        .unwrap();
        let m_digest = digest_of(&manifest);
        let served = manifest.clone();
        let registry = fake_registry(move |path| {
            if path.contains("/manifests/") {
                served.clone()
            } else {
                br#"{"os":"linux","architecture":"arm64"}"#.to_vec()
            }
        });
        let image = PinnedImage::parse(&format!("{registry}/base@{m_digest}")).unwrap();
        let e = pull_error(&image);
        assert!(e.contains("with other bytes"), "{e}");
    }

    #[test]
    fn an_artifact_is_not_an_image() {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPES[0],
            "config": { "mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": digest_of(b"x"), "size": 1 },
            "layers": [],
        }))
        .unwrap();
        let digest = digest_of(&manifest);
        let registry = fake_registry(move |_| manifest.clone());
        let image = PinnedImage::parse(&format!("{registry}/chart@{digest}")).unwrap();
        let e = pull_error(&image);
        assert!(e.contains("is not an image"), "{e}");
    }

    #[test]
    fn platforms_match_by_os_arch_and_variant() {
        let p = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert!(matches("linux/arm64", &p));
        assert!(matches("linux/arm64/v8", &p));
        assert!(!matches("linux/arm64/v7", &p));
        assert!(!matches("linux/amd64", &p));
    }
}
