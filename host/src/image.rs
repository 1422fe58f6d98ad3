//! Reading images back: what `kiln image inspect` shows (what dive shows,
//! in the terminal) — the config, each layer's digest and size, and the file
//! tree with modes and sizes. Reads a docker-archive tarball or an OCI image
//! layout directory; writes nothing. The image may come from anyone: see
//! [`Blobs`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use kiln_core::beneath;

use serde::Serialize;
use serde_json::Value;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An image, as `kiln image inspect` reports it.
#[derive(Debug, Serialize)]
pub struct ImageSummary {
    pub repo_tags: Vec<String>,
    pub architecture: String,
    pub os: String,
    pub created: String,
    /// The OCI config's `config` section (Entrypoint, Cmd, Env, …).
    pub config: Value,
    pub layers: Vec<LayerSummary>,
}

#[derive(Debug, Serialize)]
pub struct LayerSummary {
    pub digest: String,
    pub size: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: String,
    /// `drwxr-xr-x`-style.
    pub mode: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// The largest JSON document (manifest, index, config) read from an image.
const MAX_JSON: u64 = 16 << 20;
/// The most entries listed, all layers together.
const MAX_ENTRIES: usize = 1_000_000;
/// The most bytes of names (paths and link targets) listed, all layers
/// together: what the listing holds in memory.
const MAX_NAME_BYTES: u64 = 256 << 20;

/// What is left to list of an image: entries and bytes of names.
#[derive(Debug, Clone, Copy)]
struct ListingBudget {
    entries: usize,
    name_bytes: u64,
}

/// Where blobs come from: a layout directory, or an archive's members
/// (where each regular file's bytes are in the tarball). The image is
/// untrusted: names are resolved beneath the layout without `..` or
/// symlinks, only regular files are read, and layers are streamed, never
/// held whole.
enum Blobs {
    Dir(beneath::Root),
    Archive {
        path: std::path::PathBuf,
        /// Member name → (offset of its bytes, size).
        members: BTreeMap<String, (u64, u64)>,
    },
}

impl Blobs {
    fn open(path: &Path) -> Result<Blobs, ImageError> {
        let io = |source| ImageError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.is_dir() {
            return Ok(Blobs::Dir(beneath::Root::open(path).map_err(io)?));
        }
        let mut members = BTreeMap::new();
        let mut archive = tar::Archive::new(fs::File::open(path).map_err(io)?);
        for entry in archive.entries_with_seek().map_err(io)? {
            let entry = entry.map_err(io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io)?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(Blobs::Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Blobs::Dir(root) => matches!(
                root.kind(Path::new(name)),
                Ok(Some(rustix::fs::FileType::RegularFile))
            ),
            Blobs::Archive { members, .. } => members.contains_key(name),
        }
    }

    /// The blob `name` as a stream, and its size.
    fn reader(&self, name: &str, origin: &str) -> Result<(Box<dyn Read>, u64), ImageError> {
        let invalid = |message: String| ImageError::Invalid {
            path: origin.to_string(),
            message,
        };
        match self {
            Blobs::Dir(root) => {
                let f = root
                    .open_file(Path::new(name))
                    .map_err(|e| invalid(format!("cannot read {name}: {e}")))?;
                let size = f
                    .metadata()
                    .map_err(|e| invalid(format!("{name}: {e}")))?
                    .len();
                Ok((Box::new(f), size))
            }
            Blobs::Archive { path, members } => {
                let &(offset, size) = members
                    .get(name)
                    .ok_or_else(|| invalid(format!("the archive has no {name}")))?;
                let mut f = fs::File::open(path).map_err(|source| ImageError::Io {
                    path: origin.to_string(),
                    source,
                })?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|source| ImageError::Io {
                        path: origin.to_string(),
                        source,
                    })?;
                Ok((Box::new(f.take(size)), size))
            }
        }
    }

    /// A small blob (JSON), whole: at most [`MAX_JSON`] bytes.
    fn json(&self, name: &str, what: &str, origin: &str) -> Result<Value, ImageError> {
        let invalid = |message: String| ImageError::Invalid {
            path: origin.to_string(),
            message,
        };
        let (r, size) = self.reader(name, origin)?;
        if size > MAX_JSON {
            return Err(invalid(format!(
                "{what} ({name}) is {size} bytes; kiln reads at most {MAX_JSON}"
            )));
        }
        let mut bytes = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("reading {name}: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
    }
}

/// `blobs/sha256/<hex>` for an OCI digest; refused unless it is one (see
/// [`crate::registry::sha256_hex`]), so a name can never leave `blobs/`.
fn blob_name(digest: &str, origin: &str) -> Result<String, ImageError> {
    let hex = crate::registry::sha256_hex(digest).ok_or_else(|| ImageError::Invalid {
        path: origin.to_string(),
        message: format!("{digest:?} is not a digest (sha256:<64 hex digits>)"),
    })?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// Read the image at `path`: a docker-archive / OCI-archive tarball, or an OCI layout directory.
pub fn inspect(path: &Path) -> Result<ImageSummary, ImageError> {
    let origin = path.display().to_string();
    let bad = |message: String| ImageError::Invalid {
        path: origin.clone(),
        message,
    };
    let blobs = Blobs::open(path)?;

    // docker's manifest.json if there is one (it carries the tags), else the OCI index.
    let (config_name, layer_names, repo_tags) = if blobs.has("manifest.json") {
        let d = blobs.json("manifest.json", "manifest.json", &origin)?;
        let first = d
            .get(0)
            .ok_or_else(|| bad("manifest.json lists no image".into()))?;
        let config = first["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json has no Config".into()))?
            .to_string();
        let layers: Vec<String> = first["Layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(String::from))
            .collect();
        let tags = first["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        (config, layers, tags)
    } else {
        let index = blobs.json("index.json", "index.json", &origin)?;
        let desc = &index["manifests"][0];
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| bad("index.json lists no manifest".into()))?;
        let manifest = blobs.json(&blob_name(digest, &origin)?, "the manifest", &origin)?;
        let config = blob_name(
            manifest["config"]["digest"]
                .as_str()
                .ok_or_else(|| bad("the manifest has no config".into()))?,
            &origin,
        )?;
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str())
            .map(|d| blob_name(d, &origin))
            .collect::<Result<_, _>>()?;
        let tags = desc["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(|t| vec![t.to_string()])
            .unwrap_or_default();
        (config, layers, tags)
    };
    let config = blobs.json(&config_name, "the image config", &origin)?;
    let mut layers = Vec::new();
    let mut budget = ListingBudget {
        entries: MAX_ENTRIES,
        name_bytes: MAX_NAME_BYTES,
    };
    for name in layer_names {
        let (reader, _) = blobs.reader(&name, &origin)?;
        layers
            .push(read_layer(reader, &mut budget).map_err(|e| bad(format!("layer {name}: {e}")))?);
    }
    Ok(ImageSummary {
        repo_tags,
        architecture: config["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        os: config["os"].as_str().unwrap_or_default().to_string(),
        created: config["created"].as_str().unwrap_or_default().to_string(),
        config: config["config"].clone(),
        layers,
    })
}

/// Counts and hashes the bytes read through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A layer (plain, gzip- or zstd-compressed tar) in one pass: its digest
/// and size as stored, and its entries, within what `budget` has left.
fn read_layer(raw: impl Read, budget: &mut ListingBudget) -> std::io::Result<LayerSummary> {
    use sha2::Digest;
    use std::io::BufRead;
    let mut hashing = Hashing {
        inner: raw,
        hasher: sha2::Sha256::new(),
        bytes: 0,
    };
    let mut buffered = std::io::BufReader::new(&mut hashing);
    let magic = buffered.fill_buf()?;
    let files = if magic.starts_with(&[0x1f, 0x8b]) {
        list_entries(flate2::read::GzDecoder::new(&mut buffered), budget)?
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        list_entries(
            zstd::stream::read::Decoder::with_buffer(&mut buffered)?,
            budget,
        )?
    } else {
        list_entries(&mut buffered, budget)?
    };
    // The digest covers every byte, past the tar's end too.
    std::io::copy(&mut buffered, &mut std::io::sink())?;
    drop(buffered);
    Ok(LayerSummary {
        digest: format!("sha256:{:x}", hashing.hasher.finalize()),
        size: hashing.bytes,
        files,
    })
}

fn list_entries(reader: impl Read, budget: &mut ListingBudget) -> std::io::Result<Vec<FileEntry>> {
    // No entry's headers may be a 4 GiB "long name"; data is never read
    // here (a sparse entry's expansion could be 2^63 zeros): the tar
    // reader skips each entry's bytes as stored.
    let (reader, bound) = kiln_core::tarbound::bounded(reader);
    let mut out = Vec::new();
    for entry in tar::Archive::new(reader).entries()? {
        let entry = entry?;
        bound.entry_seen(entry.header().entry_size()?);
        if budget.entries == 0 {
            return Err(std::io::Error::other(format!(
                "more than {MAX_ENTRIES} entries; kiln image inspect lists at most that many"
            )));
        }
        budget.entries -= 1;
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => '-',
        };
        out.push(FileEntry {
            path: format!(
                "/{}",
                entry
                    .path()?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
            ),
            mode: format!("{kind}{}", rwx(h.mode().unwrap_or(0))),
            size: h.size().unwrap_or(0),
            link: entry.link_name()?.map(|l| l.to_string_lossy().into_owned()),
        });
        let listed = out.last().map_or(0, |f: &FileEntry| {
            (f.path.len() + f.link.as_ref().map_or(0, String::len)) as u64
        });
        if listed > budget.name_bytes {
            return Err(std::io::Error::other(format!(
                "its names take more than {} MiB; kiln image inspect lists at most that much",
                MAX_NAME_BYTES >> 20
            )));
        }
        budget.name_bytes -= listed;
    }
    Ok(out)
}

fn rwx(mode: u32) -> String {
    let mut s = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 1 << (8 - i);
        s.push(if mode & bit != 0 { c } else { '-' });
    }
    if mode & 0o1000 != 0 {
        s.replace_range(8..9, if mode & 1 != 0 { "t" } else { "T" });
    }
    if mode & 0o4000 != 0 {
        s.replace_range(2..3, if mode & 0o100 != 0 { "s" } else { "S" });
    }
    s
}

/// The human-readable report.
pub fn render(s: &ImageSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "image     {}\n",
        if s.repo_tags.is_empty() {
            "(untagged)".to_string()
        } else {
            s.repo_tags.join(", ")
        }
    ));
    out.push_str(&format!(
        "platform  {}/{}\ncreated   {}\n",
        s.os, s.architecture, s.created
    ));
    for (key, label) in [
        ("Entrypoint", "entrypoint"),
        ("Cmd", "cmd"),
        ("Env", "env"),
        ("WorkingDir", "workdir"),
        ("User", "user"),
        ("ExposedPorts", "ports"),
        ("Labels", "labels"),
    ] {
        let v = &s.config[key];
        if !v.is_null() {
            out.push_str(&format!("{label:<9} {v}\n"));
        }
    }
    for (i, l) in s.layers.iter().enumerate() {
        out.push_str(&format!(
            "\nlayer {i}  {}  {} bytes  {} entries\n",
            l.digest,
            l.size,
            l.files.len()
        ));
        for f in &l.files {
            let link = f
                .link
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            out.push_str(&format!("  {} {:>10}  {}{link}\n", f.mode, f.size, f.path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{ListingBudget, read_layer, rwx};

    fn budget(entries: usize) -> ListingBudget {
        ListingBudget {
            entries,
            name_bytes: 1 << 20,
        }
    }

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, n, &b"hi"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_list_plain_gzip_and_zstd_and_hash_what_is_stored() {
        use sha2::Digest;
        let plain = tar_of(&["a", "b/c"]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        for bytes in [&plain, &gz, &zst] {
            let l = read_layer(bytes.as_slice(), &mut budget(10)).unwrap();
            let paths: Vec<&str> = l.files.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(paths, ["/a", "/b/c"]);
            assert_eq!(l.size, bytes.len() as u64);
            assert_eq!(
                l.digest,
                format!("sha256:{:x}", sha2::Sha256::digest(bytes))
            );
        }
    }

    #[test]
    fn a_layer_with_too_many_entries_is_refused_by_its_count() {
        let mut b = budget(2);
        let e = read_layer(tar_of(&["a", "b", "c"]).as_slice(), &mut b).unwrap_err();
        assert!(e.to_string().contains("more than 1000000 entries"), "{e}");
        assert!(read_layer(tar_of(&["a", "b"]).as_slice(), &mut budget(2)).is_ok());
        // The count is for the whole image: a second layer uses what is left.
        let mut b = budget(3);
        assert!(read_layer(tar_of(&["a", "b"]).as_slice(), &mut b).is_ok());
        assert!(read_layer(tar_of(&["c", "d"]).as_slice(), &mut b).is_err());
    }

    #[test]
    fn a_huge_long_name_is_refused_without_being_held() {
        // A GNU long-name entry announcing 64 MiB of name, gzip-compressed
        // to a few hundred KiB: the tar reader would hold it whole.
        let name_len: usize = 64 << 20;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_size(name_len as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.resize(raw.len() + name_len, b'a');
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let gz = gz.finish().unwrap();
        let e = read_layer(gz.as_slice(), &mut budget(10)).unwrap_err();
        assert!(e.to_string().contains("headers"), "{e}");
        // Names past the image's byte budget are refused too.
        let long = "n".repeat(200);
        let names: Vec<&str> = (0..10).map(|_| long.as_str()).collect();
        let mut small = ListingBudget {
            entries: 100,
            name_bytes: 1000,
        };
        let e = read_layer(tar_of(&names).as_slice(), &mut small).unwrap_err();
        assert!(e.to_string().contains("names take more than"), "{e}");
    }

    #[test]
    fn modes_print_like_ls() {
        assert_eq!(rwx(0o755), "rwxr-xr-x");
        assert_eq!(rwx(0o1777), "rwxrwxrwt");
        assert_eq!(rwx(0o4755), "rwsr-xr-x");
        assert_eq!(rwx(0o644), "rw-r--r--");
    }
}
