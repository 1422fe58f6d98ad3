//! NAR, the Nix ARchive format, and the directory hash built on it.
//!
//! A tree's hash is the sha256 of its NAR serialisation, byte-identical to
//! `nix hash path` and `nix-hash --type sha256`: entries sorted bytewise,
//! symlinks stored as links (never followed), and of a file's mode only the
//! owner-executable bit counts. Owners, times and other mode bits do not.
//!
//! The serialiser writes to any `Write`, so tests can look at the bytes and
//! hashing streams straight into SHA-256 without building the archive.
//! It reads the filesystem but never writes it.

use crate::hash::Sha256Hash;
use crate::hashpipe::{self, HashFeed};
use crate::pathfilter::{PathFilter, join_rel};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a path could not be serialised.
#[derive(Debug, thiserror::Error)]
pub enum NarError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a {kind}, which a NAR cannot hold (only files, directories and symlinks)")]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error(
        "{path} changed size while it was being hashed ({expected} bytes, then {got}); retry when nothing writes to it"
    )]
    Changed {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
}

/// The NAR hash of `path` (a file, directory or symlink).
pub fn hash_path(path: &Path) -> Result<Sha256Hash, NarError> {
    hash_path_filtered(path, &PathFilter::default())
}

/// The NAR hash of `path` without the entries `filter` excludes.
///
/// The tree is walked and files read on this thread while another hashes
/// ([`crate::hashpipe`]), so reading and SHA-256 overlap.
pub fn hash_path_filtered(path: &Path, filter: &PathFilter) -> Result<Sha256Hash, NarError> {
    hashpipe::sha256(|feed| write_nar(path, filter, feed)).map_err(|e| match e {
        WriteError::Nar(n) => n,
        WriteError::Sink(source) => NarError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Where a NAR goes: its framing bytes, and files' contents, which a sink
/// may take without an intermediate copy.
trait NarSink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Copy `file` to the end (or to one byte past `len`, which the caller
    /// reports as a change); returns how many bytes it read.
    fn put_file(&mut self, file: &mut fs::File, len: u64) -> io::Result<u64>;
}

impl<W: Write> NarSink for W {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn put_file(&mut self, file: &mut fs::File, len: u64) -> io::Result<u64> {
        io::copy(&mut file.take(len + 1), self)
    }
}

impl NarSink for HashFeed {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        HashFeed::put(self, bytes)
    }
    fn put_file(&mut self, file: &mut fs::File, len: u64) -> io::Result<u64> {
        self.put_reader(file, len + 1)
    }
}

/// Serialise `path` as a NAR into `out`.
pub fn dump_path(path: &Path, out: &mut impl Write) -> Result<(), NarError> {
    write_nar(path, &PathFilter::default(), out).map_err(|e| match e {
        WriteError::Nar(n) => n,
        WriteError::Sink(source) => NarError::Io {
            path: PathBuf::from("<nar output>"),
            source,
        },
    })
}

enum WriteError {
    Nar(NarError),
    Sink(io::Error),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Sink(e)
    }
}

fn write_nar(
    path: &Path,
    filter: &PathFilter,
    out: &mut (impl NarSink + ?Sized),
) -> Result<(), WriteError> {
    write_str(out, b"nix-archive-1")?;
    let ft = fs::symlink_metadata(path)
        .map_err(io_err(path))?
        .file_type();
    write_node(path, ft, "", filter, out)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| {
        WriteError::Nar(NarError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Serialise the node at `path`, whose type (from `lstat` or the directory
/// listing) is `ft`. A file's size and mode come from `fstat` on the open
/// file, so each file costs one path lookup.
fn write_node(
    path: &Path,
    ft: fs::FileType,
    rel: &str,
    filter: &PathFilter,
    out: &mut (impl NarSink + ?Sized),
) -> Result<(), WriteError> {
    write_str(out, b"(")?;
    write_str(out, b"type")?;
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        write_str(out, b"symlink")?;
        write_str(out, b"target")?;
        write_str(out, target.as_os_str().as_bytes())?;
    } else if ft.is_file() {
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        write_str(out, b"regular")?;
        if meta.permissions().mode() & 0o100 != 0 {
            write_str(out, b"executable")?;
            write_str(out, b"")?;
        }
        write_str(out, b"contents")?;
        let len = meta.len();
        out.put(&len.to_le_bytes())?;
        let copied = out.put_file(&mut file, len).map_err(io_err(path))?;
        if copied != len {
            return Err(WriteError::Nar(NarError::Changed {
                path: path.to_path_buf(),
                expected: len,
                got: copied,
            }));
        }
        write_padding(out, len)?;
    } else if ft.is_dir() {
        write_str(out, b"directory")?;
        let mut entries: Vec<(std::ffi::OsString, fs::FileType)> = fs::read_dir(path)
            .map_err(io_err(path))?
            .map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?))))
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, child_ft) in entries {
            let child_rel = join_rel(rel, &name.to_string_lossy());
            if filter.skips(&child_rel, &path.join(&name), child_ft.is_symlink()) {
                continue;
            }
            write_str(out, b"entry")?;
            write_str(out, b"(")?;
            write_str(out, b"name")?;
            write_str(out, name.as_bytes())?;
            write_str(out, b"node")?;
            write_node(&path.join(&name), child_ft, &child_rel, filter, out)?;
            write_str(out, b")")?;
        }
    } else {
        return Err(WriteError::Nar(NarError::Unsupported {
            path: path.to_path_buf(),
            kind: kind_name(&ft),
        }));
    }
    write_str(out, b")")?;
    Ok(())
}

fn kind_name(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device node"
    } else {
        "special file"
    }
}

fn write_str(out: &mut (impl NarSink + ?Sized), s: &[u8]) -> io::Result<()> {
    out.put(&(s.len() as u64).to_le_bytes())?;
    out.put(s)?;
    write_padding(out, s.len() as u64)
}

fn write_padding(out: &mut (impl NarSink + ?Sized), len: u64) -> io::Result<()> {
    let pad = (8 - (len % 8) as usize) % 8;
    out.put(&[0u8; 8][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn nar_of(path: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        dump_path(path, &mut v).unwrap();
        v
    }

    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_str(&mut v, b).unwrap();
        v
    }

    #[test]
    fn a_regular_file_serialises_as_the_nix_manual_describes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hello");
        fs::write(&f, b"hello\n").unwrap();
        let mut want = Vec::new();
        for part in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"hello\n",
            b")",
        ] {
            want.extend(s(part));
        }
        assert_eq!(nar_of(&f), want);
    }

    #[test]
    fn pinned_digests() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("sub/empty")).unwrap();
        fs::write(root.join("sub/a.txt"), b"a").unwrap();
        fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("sub/a.txt", root.join("link")).unwrap();
        // Pinned from `nix-hash --type sha256 --base32` (nix-bin 2.8) on this tree.
        assert_eq!(
            hash_path(&root).unwrap().to_nix32(),
            "0rjqpgkf8kay2p5nfx2g4yni1b4zqwyhlvhv24f209mclqijf1g0"
        );
    }

    #[test]
    fn only_the_owner_exec_bit_counts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let a = hash_path(&f).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(hash_path(&f).unwrap(), a);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(hash_path(&f).unwrap(), a);
    }

    #[test]
    fn fifos_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(status.success());
        let err = hash_path(dir.path()).unwrap_err();
        assert!(
            matches!(&err, NarError::Unsupported { kind: "fifo", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("pipe"));
    }
}
