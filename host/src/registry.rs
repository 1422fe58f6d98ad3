//! Pushing an image kiln built (its OCI layout, `out/oci`) to an OCI
//! registry with the distribution API: every blob the registry lacks
//! (asked with `HEAD`) is uploaded, a few at a time; then the manifests,
//! children before the index that names them, so a reader never sees a
//! manifest whose parts are missing; the tags last.
//!
//! Credentials come from where docker and podman keep them
//! (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.docker/config.json`) or `KILN_REGISTRY_USERNAME` /
//! `KILN_REGISTRY_PASSWORD`, never from kiln.toml, and never appear in
//! messages. Plain HTTP is used only for a loopback registry or with
//! `insecure`.
//!
//! This module must not write to the store or read anything but the layout
//! it is given.

mod auth;
mod client;
mod layout;
pub mod pull;
pub mod sign;

use std::path::Path;

pub use auth::Credentials;
pub use layout::Layout;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{reference:?} is not an image reference like 127.0.0.1:5000/hello:v1 or registry.example.org/team/hello"
    )]
    BadReference { reference: String },
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error(
        "{registry} refused the credentials (HTTP {status}); check `podman login`, ~/.docker/config.json or KILN_REGISTRY_USERNAME / KILN_REGISTRY_PASSWORD"
    )]
    Unauthorized { registry: String, status: u16 },
    #[error("{path}: {message}")]
    Layout { path: String, message: String },
}

/// `registry/repository[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl Reference {
    /// Parse a reference; the registry part is required (a name with a
    /// `.` or `:` or `localhost`), as kiln has no default registry.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let bad = || RegistryError::BadReference {
            reference: s.to_string(),
        };
        let (registry, rest) = s.split_once('/').ok_or_else(bad)?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad());
        }
        if s.contains('@') {
            return Err(bad());
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (rest, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        let tag_ok = tag.as_deref().is_none_or(|t| {
            !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        if !repo_ok || !tag_ok {
            return Err(bad());
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
        })
    }

    /// Whether the registry is this machine (plain HTTP is fine there):
    /// a loopback IP address, or exactly `localhost` — never a name that
    /// merely starts like one (`127.attacker.example`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

/// Whether `host[:port]` is a loopback address or `localhost`.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host_port,
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `sha256:…` of what the tags name (the index, or the one manifest).
    pub digest: String,
    pub uploaded: usize,
    /// Blobs the registry had already.
    pub skipped: usize,
    pub tags: Vec<String>,
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Allow plain HTTP to a registry that is not on loopback.
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    /// Repositories of the same registry that may hold some of the blobs
    /// (the base images the output was stacked on): a blob this
    /// repository lacks is mounted from them before it is uploaded, so a
    /// push sends only kiln's own layers.
    pub mount_from: Vec<String>,
}

/// What to sign a pushed image with, and what to attest about it.
#[derive(Debug)]
pub struct Signing {
    pub key: sign::ImageKey,
    /// (predicateType, predicate): SLSA provenance, an SPDX document.
    pub attestations: Vec<(String, serde_json::Value)>,
}

/// Push the OCI layout at `oci` to `reference`, tagged with its tag (or,
/// without one, the layout's own `org.opencontainers.image.ref.name`);
/// then, with `signing`, the signature and attestations of every manifest
/// a client may resolve: the index and each platform's manifest, as
/// `cosign sign --recursive` does. containers/image (podman, skopeo,
/// CRI-O) verifies the manifest of the platform it picked, cosign and
/// policy controllers the digest they were given.
pub fn push(
    oci: &Path,
    reference: &Reference,
    opts: &PushOptions,
    signing: Option<&Signing>,
) -> Result<Pushed, RegistryError> {
    let layout = Layout::read(oci)?;
    let client = client::Client::new(reference, opts)?;
    client.ping()?;
    let (uploaded, skipped) = client.upload_blobs(&layout)?;
    for m in &layout.manifests {
        client.put_manifest(&m.digest, &m.media_type, &layout.blob(&m.digest)?)?;
    }
    let tag = reference
        .tag
        .clone()
        .or_else(|| layout.top.ref_name.clone())
        .unwrap_or_else(|| layout.top.digest.trim_start_matches("sha256:")[..16].to_string());
    let top_bytes = layout.blob(&layout.top.digest)?;
    client.put_manifest(&layout.top.digest, &layout.top.media_type, &top_bytes)?;
    client.put_manifest(&tag, &layout.top.media_type, &top_bytes)?;
    let mut tags = vec![tag.clone()];
    if let Some(s) = signing {
        let reachable =
            std::iter::once(&layout.top.digest).chain(layout.manifests.iter().map(|m| &m.digest));
        for digest in reachable {
            tags.extend(push_signatures(&client, reference, &tag, digest, s)?);
        }
    }
    Ok(Pushed {
        digest: layout.top.digest.clone(),
        uploaded,
        skipped,
        tags,
    })
}

/// The `.sig` and (if any) `.att` artifacts of `digest`; their tags.
///
/// The signature's identity names the pushed tag (`REGISTRY/REPO:TAG`):
/// containers/image's default `signedIdentity`, `matchRepoDigestOrExact`,
/// refuses a name without a tag or digest, and cosign does not read it.
fn push_signatures(
    client: &client::Client,
    reference: &Reference,
    tag: &str,
    digest: &str,
    s: &Signing,
) -> Result<Vec<String>, RegistryError> {
    let repository = format!("{}/{}", reference.registry, reference.repository);
    let payload = sign::simple_signing_payload(&format!("{repository}:{tag}"), digest);
    let signature = sign::ArtifactLayer {
        media_type: sign::SIMPLE_SIGNING,
        annotations: vec![(sign::SIGNATURE_ANNOTATION.into(), s.key.sign(&payload))],
        bytes: payload,
    };
    let mut artifacts = vec![(sign::tag_for(digest, "sig"), vec![signature])];
    if !s.attestations.is_empty() {
        let layers = s
            .attestations
            .iter()
            .map(|(predicate_type, predicate)| sign::ArtifactLayer {
                media_type: sign::DSSE,
                bytes: sign::attestation(&s.key, &repository, digest, predicate_type, predicate),
                annotations: vec![
                    (sign::SIGNATURE_ANNOTATION.into(), String::new()),
                    ("predicateType".into(), predicate_type.clone()),
                ],
            })
            .collect();
        artifacts.push((sign::tag_for(digest, "att"), layers));
    }
    let mut tags = Vec::new();
    for (tag, layers) in artifacts {
        let (config, manifest) = sign::artifact_manifest(&layers);
        for bytes in layers.iter().map(|l| &l.bytes).chain([&config]) {
            client.upload_bytes(&oci_digest(bytes), bytes)?;
        }
        client.put_manifest(
            &tag,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )?;
        tags.push(tag);
    }
    Ok(tags)
}

/// An OCI digest, `sha256:<hex>`, of `bytes`.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        kiln_core::hash::Sha256Hash::of_bytes(bytes).to_hex()
    )
}

/// The hex part of an OCI digest, if it is one: `sha256:` and 64 hex
/// digits, so a blob path made from it never leaves `blobs/sha256/`.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_registry_and_a_clean_name() {
        let r = Reference::parse("127.0.0.1:5000/team/hello:v1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/hello");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert!(r.is_loopback());
        let r = Reference::parse("registry.example.org/hello").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.tag, None);
        assert!(!r.is_loopback());
        for bad in [
            "hello",
            "hello:v1",
            "reg.io/Hello",
            "reg.io/a//b",
            "reg.io/x:",
            "reg.io/x@sha256:ab",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
