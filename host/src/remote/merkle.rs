//! Directory trees as REAPI Merkle trees: a `Directory` message per
//! directory, named by the sha256 of its encoding, files by the sha256 of
//! their bytes. [`Blobs`] remembers where each digest's bytes are, for the
//! upload.
//!
//! Store entries never change, so an entry's tree is computed once and kept
//! beside it (`Store::tree_path`, encoded as one REAPI `Tree`); a mutable
//! directory (`/work`) is hashed file by file with a memo keyed by each
//! file's identity and change time, so only what a step changed is read
//! again.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    Digest, Directory, DirectoryNode, FileNode, SymlinkNode, Tree,
};
use prost::Message;
use sha2::{Digest as _, Sha256};

/// Where the bytes of a blob are.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Bytes(std::sync::Arc<Vec<u8>>),
}

/// Every blob of a tree (or of several), by hash.
#[derive(Debug, Default)]
pub struct Blobs {
    pub by_hash: HashMap<String, (Digest, Source)>,
}

impl Blobs {
    /// Keep `bytes` (a message) and return its digest.
    pub fn add_message(&mut self, bytes: Vec<u8>) -> Digest {
        let d = digest_of(&bytes);
        self.by_hash
            .entry(d.hash.clone())
            .or_insert_with(|| (d.clone(), Source::Bytes(std::sync::Arc::new(bytes))));
        d
    }

    fn add_file(&mut self, d: &Digest, path: &Path) {
        self.by_hash
            .entry(d.hash.clone())
            .or_insert_with(|| (d.clone(), Source::File(path.to_path_buf())));
    }

    /// The blobs of `other` too.
    pub fn extend(&mut self, other: &Blobs) {
        for (k, v) in &other.by_hash {
            self.by_hash.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    pub fn digests(&self) -> Vec<Digest> {
        self.by_hash.values().map(|(d, _)| d.clone()).collect()
    }
}

/// The digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: hex(&Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

/// `hash/size`, as records and errors show a digest.
pub fn show(d: &Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a directory could not be made a tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} is a symbolic link to the absolute path {target:?}: a remote input root carries relative links only. Make the link relative, or build without --remote-executor"
    )]
    AbsoluteLink { path: PathBuf, target: String },
    #[error("{path}: its name is not UTF-8, which REAPI trees cannot carry")]
    NotUtf8 { path: PathBuf },
    #[error("{path} is a {kind}, which a remote input root cannot carry")]
    Special { path: PathBuf, kind: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file's identity and change time: while these hold, its content has
/// not changed (a write moves ctime; nothing in a sandbox can set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    fn of(m: &fs::Metadata) -> Self {
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// Hashes of files already read, by fingerprint.
#[derive(Debug, Default)]
pub struct FileMemo {
    seen: Mutex<HashMap<Fingerprint, String>>,
}

impl FileMemo {
    fn digest(&self, path: &Path, m: &fs::Metadata) -> Result<Digest, TreeError> {
        let fp = Fingerprint::of(m);
        if let Some(hash) = self.lock().get(&fp) {
            return Ok(Digest {
                hash: hash.clone(),
                size_bytes: m.size() as i64,
            });
        }
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
        let hash = hex(&hasher.finalize());
        // Changed while read, or changed so lately that a write within the
        // same clock tick would not move its change time: not remembered.
        let settled = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|now| now.as_secs() as i64 > m.ctime() + 2);
        if size == m.size() && settled {
            self.lock().insert(fp, hash.clone());
        }
        Ok(Digest {
            hash,
            size_bytes: size as i64,
        })
    }

    /// Whether files `a` and `b` hold the same bytes (by their hashes,
    /// remembered or read now).
    pub fn same_content(&self, a: &Path, am: &fs::Metadata, b: &Path, bm: &fs::Metadata) -> bool {
        match (self.digest(a, am), self.digest(b, bm)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fingerprint, String>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tree of the directory at `dir`: its root's digest, with every blob
/// added to `blobs`.
pub fn hash_dir(dir: &Path, memo: &FileMemo, blobs: &mut Blobs) -> Result<Digest, TreeError> {
    let mut out = Directory::default();
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    names.sort();
    for os_name in names {
        let path = dir.join(&os_name);
        let name = os_name
            .to_str()
            .ok_or_else(|| TreeError::NotUtf8 { path: path.clone() })?
            .to_string();
        let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = m.file_type();
        if ft.is_dir() {
            let digest = hash_dir(&path, memo, blobs)?;
            out.directories.push(DirectoryNode {
                name,
                digest: Some(digest),
            });
        } else if ft.is_file() {
            let digest = memo.digest(&path, &m)?;
            blobs.add_file(&digest, &path);
            out.files.push(FileNode {
                name,
                digest: Some(digest),
                is_executable: m.permissions().mode() & 0o111 != 0,
                node_properties: None,
            });
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            let target = target
                .to_str()
                .ok_or_else(|| TreeError::NotUtf8 { path: path.clone() })?
                .to_string();
            if target.starts_with('/') {
                return Err(TreeError::AbsoluteLink { path, target });
            }
            out.symlinks.push(SymlinkNode {
                name,
                target,
                node_properties: None,
            });
        } else {
            return Err(TreeError::Special {
                path,
                kind: "socket, FIFO or device",
            });
        }
    }
    Ok(blobs.add_message(out.encode_to_vec()))
}

/// The tree of a store entry (a directory or a single file): from the
/// cache at `cache` when it is there and whole, else hashed and kept there.
/// Returns the node to place it under a name: a directory's digest, or a
/// file's digest and executable bit.
pub fn entry_tree(
    entry: &Path,
    cache: &Path,
    memo: &FileMemo,
    blobs: &mut Blobs,
) -> Result<Node, TreeError> {
    if !fs::symlink_metadata(entry).map_err(io_err(entry))?.is_dir() {
        return entry_tree_uncached(entry, memo, blobs);
    }
    if let Some(root) = load_cached(entry, cache, blobs) {
        return Ok(Node::Dir(root));
    }
    let mut mine = Blobs::default();
    let root = hash_dir(entry, memo, &mut mine)?;
    if let Some(tree) = as_tree(&root, &mine) {
        // A cache: failing to keep it costs a re-hash next time.
        let _ = kiln_core::store::write_atomic(
            cache,
            &tree.encode_to_vec(),
            kiln_core::store::Existing::Replace,
        );
    }
    blobs.extend(&mine);
    Ok(Node::Dir(root))
}

/// The node of `entry` (a file or a directory), hashed now.
pub fn entry_tree_uncached(
    entry: &Path,
    memo: &FileMemo,
    blobs: &mut Blobs,
) -> Result<Node, TreeError> {
    let m = fs::symlink_metadata(entry).map_err(io_err(entry))?;
    if m.is_file() {
        let digest = memo.digest(entry, &m)?;
        blobs.add_file(&digest, entry);
        return Ok(Node::File {
            digest,
            executable: m.permissions().mode() & 0o111 != 0,
        });
    }
    if m.is_dir() {
        return Ok(Node::Dir(hash_dir(entry, memo, blobs)?));
    }
    Err(TreeError::Special {
        path: entry.to_path_buf(),
        kind: "link or special file",
    })
}

/// What a name in a directory holds.
#[derive(Debug, Clone)]
pub enum Node {
    Dir(Digest),
    File { digest: Digest, executable: bool },
}

/// `root` and its descendants as one `Tree` message.
pub fn as_tree(root: &Digest, blobs: &Blobs) -> Option<Tree> {
    let dir = |d: &Digest| match blobs.by_hash.get(&d.hash) {
        Some((_, Source::Bytes(b))) => Directory::decode(b.as_slice()).ok(),
        _ => None,
    };
    let root_dir = dir(root)?;
    let mut children = Vec::new();
    let mut queue: Vec<Digest> = root_dir
        .directories
        .iter()
        .filter_map(|d| d.digest.clone())
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = queue.pop() {
        if !seen.insert(d.hash.clone()) {
            continue;
        }
        let child = dir(&d)?;
        queue.extend(child.directories.iter().filter_map(|d| d.digest.clone()));
        children.push(child);
    }
    Some(Tree {
        root: Some(root_dir),
        children,
    })
}

/// The blobs of an entry's cached tree, with files found under `entry` by
/// their names; None when the cache is missing, unreadable or does not
/// match the entry's layout.
fn load_cached(entry: &Path, cache: &Path, blobs: &mut Blobs) -> Option<Digest> {
    let bytes = kiln_core::sidefile::read(
        cache,
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::LISTING,
    )
    .ok()?;
    let tree = Tree::decode(bytes.as_slice()).ok()?;
    let mut by_hash: HashMap<String, Directory> = HashMap::new();
    for child in &tree.children {
        by_hash.insert(digest_of(&child.encode_to_vec()).hash, child.clone());
    }
    let mut mine = Blobs::default();
    let root = tree.root?;
    place_cached(entry, &root, &by_hash, &mut mine, 0)?;
    let digest = mine.add_message(root.encode_to_vec());
    blobs.extend(&mine);
    Some(digest)
}

fn place_cached(
    dir: &Path,
    d: &Directory,
    by_hash: &HashMap<String, Directory>,
    blobs: &mut Blobs,
    depth: usize,
) -> Option<()> {
    if depth > 256 {
        return None;
    }
    for f in &d.files {
        if !is_plain_name(&f.name) {
            return None;
        }
        let digest = f.digest.as_ref()?;
        blobs.add_file(digest, &dir.join(&f.name));
    }
    for sub in &d.directories {
        if !is_plain_name(&sub.name) {
            return None;
        }
        let child = by_hash.get(&sub.digest.as_ref()?.hash)?;
        place_cached(&dir.join(&sub.name), child, by_hash, blobs, depth + 1)?;
        blobs.add_message(child.encode_to_vec());
    }
    Some(())
}

/// A name one path component long: not empty, `.`, `..`, and without `/`
/// or NUL.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A directory assembled from named nodes (the input root and its
/// `inputs/`, `etc/`): sorted and encoded as REAPI asks.
#[derive(Debug, Default)]
pub struct DirBuilder {
    dirs: Vec<(String, Digest)>,
    files: Vec<FileNode>,
}

impl DirBuilder {
    pub fn dir(&mut self, name: &str, digest: Digest) -> &mut Self {
        self.dirs.push((name.to_string(), digest));
        self
    }

    pub fn node(&mut self, name: &str, node: Node) -> &mut Self {
        match node {
            Node::Dir(d) => self.dir(name, d),
            Node::File { digest, executable } => {
                self.files.push(FileNode {
                    name: name.to_string(),
                    digest: Some(digest),
                    is_executable: executable,
                    node_properties: None,
                });
                self
            }
        }
    }

    /// Encode it into `blobs`; its digest.
    pub fn finish(mut self, blobs: &mut Blobs) -> Digest {
        self.dirs.sort_by(|a, b| a.0.cmp(&b.0));
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        let dir = Directory {
            files: self.files,
            directories: self
                .dirs
                .into_iter()
                .map(|(name, digest)| DirectoryNode {
                    name,
                    digest: Some(digest),
                })
                .collect(),
            symlinks: Vec::new(),
            node_properties: None,
        };
        blobs.add_message(dir.encode_to_vec())
    }
}

/// The empty directory's digest.
pub fn empty_dir(blobs: &mut Blobs) -> Digest {
    blobs.add_message(Directory::default().encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_tree_gives_the_same_digests_and_finds_files_by_name() {
        let t = tempfile::tempdir().unwrap();
        let e = t.path().join("entry");
        fs::create_dir_all(e.join("bin")).unwrap();
        fs::write(e.join("bin/tool"), b"#!x").unwrap();
        fs::set_permissions(e.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(e.join("README"), b"hi").unwrap();
        std::os::unix::fs::symlink("bin/tool", e.join("link")).unwrap();
        let cache = t.path().join("tree");
        let memo = FileMemo::default();
        let mut first = Blobs::default();
        let Node::Dir(a) = entry_tree(&e, &cache, &memo, &mut first).unwrap() else {
            panic!("a directory")
        };
        assert!(cache.exists());
        let mut second = Blobs::default();
        let Node::Dir(b) = entry_tree(&e, &cache, &FileMemo::default(), &mut second).unwrap()
        else {
            panic!("a directory")
        };
        assert_eq!(a, b);
        let mut x: Vec<_> = first.by_hash.keys().cloned().collect();
        let mut y: Vec<_> = second.by_hash.keys().cloned().collect();
        x.sort();
        y.sort();
        assert_eq!(x, y);
        let tool = digest_of(b"#!x");
        assert!(
            matches!(&second.by_hash[&tool.hash].1, Source::File(p) if p.ends_with("bin/tool"))
        );
    }

    #[test]
    fn absolute_links_and_fifos_are_named() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("abs")).unwrap();
        let err = hash_dir(t.path(), &FileMemo::default(), &mut Blobs::default()).unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), b"one").unwrap();
        let memo = FileMemo::default();
        let a = hash_dir(t.path(), &memo, &mut Blobs::default()).unwrap();
        fs::write(t.path().join("f"), b"two").unwrap();
        let b = hash_dir(t.path(), &memo, &mut Blobs::default()).unwrap();
        assert_ne!(a, b);
    }
}
