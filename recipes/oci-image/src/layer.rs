//! The image's files: collected from the inputs into a sorted tree, then
//! laid out as a deterministic tar — entries sorted bytewise, mtime =
//! SOURCE_DATE_EPOCH, uid/gid 0, no user names, fixed modes. The tar is
//! described as [`Pieces`] (headers, and ranges of the input files) for the
//! host to hash and write: file data never enters the recipe's memory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_sdk::assemble::Pieces;
use kiln_sdk::{Context, Error, Result};

/// One entry of the image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { src: PathBuf, mode: u32, size: u64 },
    Symlink { target: String },
}

/// Path in the image (no leading `/`) → entry. A BTreeMap keeps the bytewise order.
pub type Tree = BTreeMap<String, Node>;

/// Add `/inputs/<from>/<path>` at `dest`; `mode` overrides file modes.
pub fn add_source(tree: &mut Tree, src: &Path, dest: &str, mode: Option<u32>) -> Result<()> {
    let dest = normalize(dest)?;
    add_parents(tree, &dest);
    add_node(tree, src, &dest, mode)
}

/// Add an empty directory (and its parents).
pub fn add_dir(tree: &mut Tree, dest: &str, mode: u32) -> Result<()> {
    let dest = normalize(dest)?;
    add_parents(tree, &dest);
    tree.insert(dest, Node::Dir { mode });
    Ok(())
}

fn normalize(dest: &str) -> Result<String> {
    if !dest.starts_with('/') {
        return Err(Error::msg(format!(
            "destination {dest:?} must be an absolute path in the image"
        )));
    }
    let parts: Vec<&str> = dest
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Error::msg(format!(
            "destination {dest:?} may not contain '..'"
        )));
    }
    Ok(parts.join("/"))
}

fn add_parents(tree: &mut Tree, dest: &str) {
    let mut cur = String::new();
    let parts: Vec<&str> = dest.split('/').collect();
    for p in &parts[..parts.len().saturating_sub(1)] {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(p);
        tree.entry(cur.clone()).or_insert(Node::Dir { mode: 0o755 });
    }
}

fn add_node(tree: &mut Tree, src: &Path, dest: &str, mode: Option<u32>) -> Result<()> {
    let meta =
        fs::symlink_metadata(src).with_context(|| format!("{} does not exist", src.display()))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src)?.to_string_lossy().into_owned();
        tree.insert(dest.to_string(), Node::Symlink { target });
    } else if meta.is_dir() {
        if !dest.is_empty() {
            tree.insert(dest.to_string(), Node::Dir { mode: 0o755 });
        }
        let mut names: Vec<String> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let child = if dest.is_empty() {
                n.clone()
            } else {
                format!("{dest}/{n}")
            };
            add_node(tree, &src.join(&n), &child, mode)?;
        }
    } else {
        let mode = mode.unwrap_or(if kiln_sdk::is_executable(src) {
            0o755
        } else {
            0o644
        });
        tree.insert(
            dest.to_string(),
            Node::File {
                src: src.to_path_buf(),
                mode,
                size: meta.len(),
            },
        );
    }
    Ok(())
}

/// `tree` as a tar: file contents are ranges of their source files.
pub fn tar_pieces(tree: &Tree, mtime: u64) -> Result<Pieces> {
    let mut tar = TarPieces::new(mtime);
    for (path, node) in tree {
        match node {
            Node::Dir { mode } => tar.dir(path, *mode)?,
            Node::File { src, mode, size } => {
                let mut content = Pieces::new();
                content.range(src, 0, *size);
                tar.file(path, *mode, &content)?;
            }
            Node::Symlink { target } => tar.symlink(path, target)?,
        }
    }
    tar.finish()
}

/// A tar archive laid out as pieces, entries in the order they are added:
/// headers (long names included) come from the `tar` crate, contents are
/// whatever pieces the caller gives.
pub struct TarPieces {
    builder: tar::Builder<Pieces>,
    mtime: u64,
}

impl TarPieces {
    pub fn new(mtime: u64) -> Self {
        let mut builder = tar::Builder::new(Pieces::new());
        builder.follow_symlinks(false);
        TarPieces { builder, mtime }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, format!("{path}/"), std::io::empty())?;
        Ok(())
    }

    /// A regular file holding `content`, padded to the tar block size.
    pub fn file(&mut self, path: &str, mode: u32, content: &Pieces) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, mode, content.len());
        // The header only: the builder copies no data from an empty reader.
        self.builder.append_data(&mut h, path, std::io::empty())?;
        let out = self.builder.get_mut();
        out.extend(content);
        let tail = content.len() % 512;
        if tail != 0 {
            out.bytes(&[0; 512][..512 - tail as usize]);
        }
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target)?;
        Ok(())
    }

    /// The archive, with its end-of-archive blocks.
    pub fn finish(self) -> Result<Pieces> {
        Ok(self.builder.into_inner()?)
    }
}
