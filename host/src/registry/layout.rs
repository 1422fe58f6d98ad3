//! Reading an OCI image layout (`index.json`, `blobs/sha256/…`) the way a
//! push needs it: the blobs to upload, the manifests in the order to put
//! them (children first) and the top descriptor the tag names. Every digest
//! is checked against its blob before it is sent anywhere.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryError;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawIndex {
    manifests: Vec<RawDescriptor>,
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

/// A manifest or index to put.
#[derive(Debug, Clone)]
pub struct Entry {
    pub digest: String,
    pub media_type: String,
    /// For the top entry: the tag the layout gives it.
    pub ref_name: Option<String>,
}

/// A blob to upload.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// What a push of one layout sends.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    /// Configs and layers, each once.
    pub blobs: Vec<Blob>,
    /// Manifests below the top one (an index's children), in order.
    pub manifests: Vec<Entry>,
    pub top: Entry,
}

impl Layout {
    /// Read the layout at `dir`: its index.json must name one image or one
    /// image index.
    pub fn read(dir: &Path) -> Result<Self, RegistryError> {
        let bad = |path: &Path, message: String| RegistryError::Layout {
            path: path.display().to_string(),
            message,
        };
        let index_path = dir.join("index.json");
        let text = kiln_core::sidefile::read(
            &index_path,
            kiln_core::sidefile::Links::Refuse,
            kiln_core::sidefile::limits::TEXT,
        )
        .map_err(|e| {
            bad(
                &index_path,
                format!("{e} (is this an image's oci/ directory?)"),
            )
        })?;
        let index: RawIndex = serde_json::from_slice(&text)
            .map_err(|e| bad(&index_path, format!("not an OCI index: {e}")))?;
        let [top] = index.manifests.as_slice() else {
            return Err(bad(
                &index_path,
                format!(
                    "names {} images; kiln pushes a layout holding one image or one image index",
                    index.manifests.len()
                ),
            ));
        };
        let mut layout = Layout {
            dir: dir.to_path_buf(),
            blobs: Vec::new(),
            manifests: Vec::new(),
            top: Entry {
                digest: top.digest.clone(),
                media_type: top.media_type.clone(),
                ref_name: top
                    .annotations
                    .get("org.opencontainers.image.ref.name")
                    .cloned(),
            },
        };
        match top.media_type.as_str() {
            INDEX | DOCKER_LIST => {
                let nested: RawIndex =
                    serde_json::from_slice(&layout.checked(top)?).map_err(|e| {
                        bad(&layout.blob_path(&top.digest), format!("not an index: {e}"))
                    })?;
                for m in &nested.manifests {
                    layout.add_manifest(m)?;
                    layout.manifests.push(Entry {
                        digest: m.digest.clone(),
                        media_type: m.media_type.clone(),
                        ref_name: None,
                    });
                }
            }
            _ => layout.add_manifest(top)?,
        }
        Ok(layout)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// A blob's bytes (manifests and indexes are small).
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.blob_path(digest);
        kiln_core::sidefile::read(
            &path,
            kiln_core::sidefile::Links::Refuse,
            kiln_core::sidefile::limits::TEXT,
        )
        .map_err(|e| RegistryError::Layout {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Where a blob's bytes are, to stream them.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        self.blob_path(digest)
    }

    /// `digest`'s hex, or the error naming it.
    fn hex_of<'d>(&self, digest: &'d str) -> Result<&'d str, RegistryError> {
        super::sha256_hex(digest).ok_or_else(|| RegistryError::Layout {
            path: self.dir.display().to_string(),
            message: format!("digest {digest:?} is not sha256:<64 hex digits>"),
        })
    }

    /// `d`'s blob, checked against its digest and size.
    fn checked(&self, d: &RawDescriptor) -> Result<Vec<u8>, RegistryError> {
        let hex = self.hex_of(&d.digest)?;
        let bytes = self.blob(&d.digest)?;
        let got = super::oci_digest(&bytes);
        let got = got.trim_start_matches("sha256:");
        if got != hex || bytes.len() as u64 != d.size {
            return Err(RegistryError::Layout {
                path: self.blob_path(&d.digest).display().to_string(),
                message: format!(
                    "holds sha256:{got} ({} bytes), not what its descriptor says",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// A manifest's config and layers, to upload.
    fn add_manifest(&mut self, m: &RawDescriptor) -> Result<(), RegistryError> {
        if m.media_type != MANIFEST && m.media_type != DOCKER_MANIFEST {
            return Err(RegistryError::Layout {
                path: self.blob_path(&m.digest).display().to_string(),
                message: format!("media type {} is not an image manifest", m.media_type),
            });
        }
        let manifest: RawManifest =
            serde_json::from_slice(&self.checked(m)?).map_err(|e| RegistryError::Layout {
                path: self.blob_path(&m.digest).display().to_string(),
                message: format!("not an image manifest: {e}"),
            })?;
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.hex_of(&d.digest)?;
            if !self.blobs.iter().any(|b| b.digest == d.digest) {
                self.blobs.push(Blob {
                    digest: d.digest.clone(),
                    size: d.size,
                });
            }
        }
        Ok(())
    }
}
