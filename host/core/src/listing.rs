//! Per-file listings of a tree, and the difference between two listings.
//!
//! A NAR hash says *whether* two trees differ; a listing says *where*. Build
//! records list the files of `path` inputs with one, so an audit can name the
//! source file that changed, and `kiln build --check` names the output files
//! that differ between two builds. Entries are sorted bytewise, like a NAR,
//! and hold exactly what the NAR hash covers: a file's bytes and executable
//! bit, a symlink's target, a directory's existence.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hash::Sha256Hash;
use crate::nar::NarError;
use crate::pathfilter::join_rel;

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the tree's root, `/`-separated; empty for a root that is
    /// itself a file or symlink.
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    File {
        /// The flat sha256 of the file's bytes.
        sha256: Sha256Hash,
        size: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        executable: bool,
    },
    Symlink {
        target: String,
    },
    Directory,
}

impl EntryKind {
    /// A short description: `file sha256-… (12 bytes, executable)`.
    pub fn describe(&self) -> String {
        match self {
            EntryKind::File {
                sha256,
                size,
                executable,
            } => format!(
                "file {sha256} ({size} bytes{})",
                if *executable { ", executable" } else { "" }
            ),
            EntryKind::Symlink { target } => format!("symlink -> {target}"),
            EntryKind::Directory => "directory".into(),
        }
    }
}

/// Every entry under `root` (the root directory itself excluded), sorted.
pub fn list(root: &Path) -> Result<Vec<FileEntry>, NarError> {
    let mut out = Vec::new();
    let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
    if meta.is_dir() {
        list_dir(root, "", &mut out)?;
    } else {
        out.push(FileEntry {
            path: String::new(),
            kind: kind_of(root, &meta)?,
        });
    }
    Ok(out)
}

fn list_dir(dir: &Path, rel: &str, out: &mut Vec<FileEntry>) -> Result<(), NarError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let child = join_rel(rel, &name.to_string_lossy());
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        out.push(FileEntry {
            path: child.clone(),
            kind: kind_of(&path, &meta)?,
        });
        if meta.is_dir() {
            list_dir(&path, &child, out)?;
        }
    }
    Ok(())
}

fn kind_of(path: &Path, meta: &fs::Metadata) -> Result<EntryKind, NarError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        Ok(EntryKind::Symlink {
            target: target.to_string_lossy().into_owned(),
        })
    } else if ft.is_dir() {
        Ok(EntryKind::Directory)
    } else if ft.is_file() {
        let f = fs::File::open(path).map_err(io_err(path))?;
        Ok(EntryKind::File {
            sha256: Sha256Hash::of_reader(f).map_err(io_err(path))?,
            size: meta.len(),
            executable: meta.permissions().mode() & 0o100 != 0,
        })
    } else {
        Err(NarError::Unsupported {
            path: path.to_path_buf(),
            kind: "special file",
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NarError + '_ {
    move |source| NarError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How one path differs between two listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    /// None: the path is new.
    pub old: Option<EntryKind>,
    /// None: the path is gone.
    pub new: Option<EntryKind>,
}

impl Change {
    /// `added`, `removed` or `changed`.
    pub fn verb(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        }
    }
}

/// The paths whose entries differ between `old` and `new`, sorted.
pub fn diff(old: &[FileEntry], new: &[FileEntry]) -> Vec<Change> {
    let old: BTreeMap<&str, &EntryKind> = old.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
    let new: BTreeMap<&str, &EntryKind> = new.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
    let mut paths: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (o, n) = (old.get(p).copied(), new.get(p).copied());
            (o != n).then(|| Change {
                path: p.to_string(),
                old: o.cloned(),
                new: n.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("bin")).unwrap();
        fs::write(d.path().join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.path().join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        symlink("a.txt", d.path().join("link")).unwrap();
        d
    }

    #[test]
    fn lists_files_links_and_dirs_sorted_with_hashes() {
        let d = tree();
        let l = list(d.path()).unwrap();
        let paths: Vec<&str> = l.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "bin", "bin/tool", "link"]);
        assert_eq!(
            l[0].kind,
            EntryKind::File {
                sha256: Sha256Hash::of_bytes(b"a"),
                size: 1,
                executable: false
            }
        );
        assert!(matches!(
            l[2].kind,
            EntryKind::File {
                executable: true,
                ..
            }
        ));
        assert_eq!(
            l[3].kind,
            EntryKind::Symlink {
                target: "a.txt".into()
            }
        );
    }

    #[test]
    fn diff_names_added_removed_and_changed_paths() {
        let d = tree();
        let before = list(d.path()).unwrap();
        fs::write(d.path().join("a.txt"), "b").unwrap();
        fs::remove_file(d.path().join("link")).unwrap();
        fs::write(d.path().join("new.txt"), "").unwrap();
        fs::set_permissions(d.path().join("bin/tool"), fs::Permissions::from_mode(0o644)).unwrap();
        let changes = diff(&before, &list(d.path()).unwrap());
        let summary: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.verb(), c.path.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("changed", "a.txt"),
                ("changed", "bin/tool"),
                ("removed", "link"),
                ("added", "new.txt")
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }

    #[test]
    fn a_file_root_is_one_entry_and_listings_round_trip_as_json() {
        let d = tree();
        let l = list(&d.path().join("a.txt")).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].path, "");
        let json = serde_json::to_string(&list(d.path()).unwrap()).unwrap();
        let back: Vec<FileEntry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list(d.path()).unwrap());
    }
}
