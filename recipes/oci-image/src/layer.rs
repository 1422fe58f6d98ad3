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
        let mode = mode.unwrap_or(if kiln_sdk::files::is_executable(src) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A source tree with a nested dir, an executable, a symlink and a
    /// name longer than ustar's 100 bytes.
    fn sources() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("app/sub")).unwrap();
        fs::write(root.join("app/b.txt"), "bee\n").unwrap();
        fs::write(root.join("app/A.txt"), "a").unwrap();
        fs::write(root.join("app/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("app/run"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("app/sub").join("n".repeat(150)), vec![7u8; 1000]).unwrap();
        symlink("b.txt", root.join("app/link")).unwrap();
        d
    }

    /// (path, type, mode, mtime, uid, gid, data or link target) per entry.
    type Row = (String, tar::EntryType, u32, u64, u64, u64, Vec<u8>);

    fn entries(bytes: &[u8]) -> Vec<Row> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                if let Some(l) = e.link_name().unwrap() {
                    data = l.to_string_lossy().into_owned().into_bytes();
                }
                let (mode, mtime) = (h.mode().unwrap(), h.mtime().unwrap());
                let (uid, gid) = (h.uid().unwrap(), h.gid().unwrap());
                (path, h.entry_type(), mode, mtime, uid, gid, data)
            })
            .collect()
    }

    fn layer(src: &Path) -> Vec<u8> {
        let mut tree = Tree::new();
        add_source(&mut tree, &src.join("app"), "/srv/app", None).unwrap();
        add_dir(&mut tree, "/tmp", 0o1777).unwrap();
        tar_pieces(&tree, 1234).unwrap().materialize().unwrap()
    }

    #[test]
    fn the_layer_is_sorted_owned_by_root_and_dated_source_date_epoch() {
        let src = sources();
        let bytes = layer(src.path());
        assert_eq!(bytes.len() % 512, 0);
        let rows = entries(&bytes);
        let paths: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let long = format!("srv/app/sub/{}", "n".repeat(150));
        assert_eq!(
            paths,
            [
                "srv/",
                "srv/app/",
                "srv/app/A.txt",
                "srv/app/b.txt",
                "srv/app/link",
                "srv/app/run",
                "srv/app/sub/",
                long.as_str(),
                "tmp/",
            ],
            "bytewise order, parents first, directories with a trailing slash"
        );
        for (path, _, _, mtime, uid, gid, _) in &rows {
            assert_eq!((*mtime, *uid, *gid), (1234, 0, 0), "{path}");
        }
        let by_path = |p: &str| rows.iter().find(|r| r.0 == p).unwrap();
        let run = by_path("srv/app/run");
        assert_eq!(
            (run.1, run.2),
            (tar::EntryType::Regular, 0o755),
            "executables get 0755"
        );
        let txt = by_path("srv/app/b.txt");
        assert_eq!((txt.2, txt.6.as_slice()), (0o644, &b"bee\n"[..]));
        let link = by_path("srv/app/link");
        assert_eq!(
            (link.1, link.6.as_slice()),
            (tar::EntryType::Symlink, &b"b.txt"[..])
        );
        assert_eq!(
            by_path(&long).6,
            vec![7u8; 1000],
            "a long name keeps its data"
        );
        assert_eq!(by_path("tmp/").2, 0o1777);
        // No user or group names: nothing of the build machine.
        let mut ar = tar::Archive::new(bytes.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username().unwrap(), Some(""));
            assert_eq!(e.header().groupname().unwrap(), Some(""));
        }
    }

    #[test]
    fn the_same_files_give_the_same_bytes_whatever_their_times() {
        let a = sources();
        let b = sources();
        // Different mtimes and creation order on disk do not show.
        let f = fs::File::options()
            .write(true)
            .open(b.path().join("app/A.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(layer(a.path()), layer(b.path()));
    }

    #[test]
    fn a_mode_override_applies_to_every_file() {
        let src = sources();
        let mut tree = Tree::new();
        add_source(&mut tree, &src.path().join("app"), "/x", Some(0o600)).unwrap();
        let rows = entries(&tar_pieces(&tree, 0).unwrap().materialize().unwrap());
        for r in rows.iter().filter(|r| r.1 == tar::EntryType::Regular) {
            assert_eq!(r.2, 0o600, "{}", r.0);
        }
    }

    #[test]
    fn destinations_must_be_absolute_and_stay_inside_the_image() {
        let mut tree = Tree::new();
        for (dest, why) in [("relative", "absolute"), ("/a/../../etc", "'..'")] {
            let e = add_dir(&mut tree, dest, 0o755).unwrap_err().to_string();
            assert!(e.contains(why), "{dest}: {e}");
        }
        assert!(tree.is_empty());
    }
}
