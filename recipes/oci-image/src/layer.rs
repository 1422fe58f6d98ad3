//! The image's files: collected from the inputs into a sorted tree, then
//! written as a deterministic layer tar — entries sorted bytewise, mtime =
//! SOURCE_DATE_EPOCH, uid/gid 0, no user names, fixed modes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_sdk::{Context, Error, Result};

/// Bytes moved per WASI read or write: each is a call into the host, so
/// few large ones beat many small ones.
pub const IO_BUFFER: usize = 4 << 20;

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
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
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

/// Write `tree` as a tar to `out`; returns nothing but errors.
pub fn write_tar(tree: &Tree, mtime: u64, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    for (path, node) in tree {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        match node {
            Node::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Node::File { src, mode, size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(*size);
                let f =
                    fs::File::open(src).with_context(|| format!("reading {}", src.display()))?;
                b.append_data(
                    &mut h,
                    path,
                    std::io::BufReader::with_capacity(IO_BUFFER.min(*size as usize + 1), f),
                )?;
            }
            Node::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    b.into_inner()?.flush()?;
    Ok(())
}
