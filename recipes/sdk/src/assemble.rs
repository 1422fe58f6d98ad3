//! Large files made of pieces, hashed and written by the host.
//!
//! A packaging recipe (an image layer, an archive) knows the layout of the
//! file it makes: headers and padding it computes, and runs of bytes taken
//! from its inputs. It collects them in [`Pieces`] — which implements
//! [`std::io::Write`], so an archive library can write its headers into it
//! — and hands them to the host: [`Pieces::sha256`] digests them without
//! writing anything, [`write_files`] writes several files at once. File data
//! never passes through the recipe's memory: the host copies it inside the
//! kernel (`copy_file_range`).
//!
//! ```ignore-linux
//! let mut p = kiln_sdk::assemble::Pieces::new();
//! p.bytes(b"header ");
//! p.range("/inputs/src/hello.txt", 0, 5);
//! let (digest, len) = p.sha256().unwrap();
//! assert_eq!(len, 12);
//! kiln_sdk::assemble::write_files(&[("/out/blob", &p)]).unwrap();
//! assert_eq!(std::fs::read("/out/blob").unwrap(), b"header hello");
//! assert_eq!(digest, kiln_sdk::files::sha256_file("/out/blob").unwrap());
//! ```

use std::io;
use std::path::Path;

use crate::bindings::kiln::recipe::assemble as wit;
use crate::{Error, Result};

/// The layout of a file: bytes and ranges of other files, in order (see the
/// module's example).
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    pieces: Vec<wit::Piece>,
    len: u64,
}

impl Pieces {
    /// No pieces yet.
    ///
    /// ```
    /// assert!(kiln_sdk::assemble::Pieces::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes (merged with bytes appended just before).
    ///
    /// ```
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.bytes(b"ab");
    /// p.bytes(b"c");
    /// assert_eq!(p.len(), 3);
    /// ```
    pub fn bytes(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.len += b.len() as u64;
        if let Some(wit::Piece::Bytes(last)) = self.pieces.last_mut() {
            last.extend_from_slice(b);
        } else {
            self.pieces.push(wit::Piece::Bytes(b.to_vec()));
        }
    }

    /// Append `length` bytes of the file at `path` (under `/inputs`, `/work`
    /// or `/out`) from `offset`. The host checks the file holds them.
    ///
    /// ```ignore-linux
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.range("/inputs/src/hello.txt", 1, 3);
    /// kiln_sdk::assemble::write_files(&[("/work/ell", &p)]).unwrap();
    /// assert_eq!(std::fs::read("/work/ell").unwrap(), b"ell");
    /// ```
    pub fn range(&mut self, path: impl AsRef<Path>, offset: u64, length: u64) {
        if length == 0 {
            return;
        }
        self.len += length;
        self.pieces.push(wit::Piece::Range(wit::FileRange {
            path: path.as_ref().to_string_lossy().into_owned(),
            offset,
            length: Some(length),
        }));
    }

    /// Append another layout.
    ///
    /// ```
    /// use kiln_sdk::assemble::Pieces;
    /// let (mut a, mut b) = (Pieces::new(), Pieces::new());
    /// a.bytes(b"x");
    /// b.bytes(b"yz");
    /// a.extend(&b);
    /// assert_eq!(a.len(), 3);
    /// ```
    pub fn extend(&mut self, other: &Pieces) {
        for p in &other.pieces {
            match p {
                wit::Piece::Bytes(b) => self.bytes(b),
                wit::Piece::Range(r) => {
                    self.len += r.length.unwrap_or(0);
                    self.pieces.push(p.clone());
                }
            }
        }
    }

    /// The length of the file these pieces make.
    ///
    /// ```ignore-linux
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.range("/inputs/src/hello.txt", 0, 6);
    /// assert_eq!(p.len(), 6);
    /// ```
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file these pieces make is empty.
    ///
    /// ```
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.bytes(b"");
    /// assert!(p.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes these pieces make, read into this process's memory: for a
    /// recipe's unit tests (run natively with `cargo test`) and small
    /// files. Builds should let the host assemble with [`write_files`].
    ///
    /// ```ignore-linux
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.bytes(b"head ");
    /// p.range("/inputs/src/hello.txt", 0, 5);
    /// assert_eq!(p.materialize().unwrap(), b"head hello");
    /// ```
    pub fn materialize(&self) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut out = Vec::with_capacity(self.len as usize);
        for p in &self.pieces {
            match p {
                wit::Piece::Bytes(b) => out.extend_from_slice(b),
                wit::Piece::Range(r) => {
                    let mut f = std::fs::File::open(&r.path)?;
                    f.seek(SeekFrom::Start(r.offset))?;
                    let before = out.len();
                    let length = r.length.unwrap_or(u64::MAX);
                    f.take(length).read_to_end(&mut out)?;
                    if r.length.is_some_and(|l| (out.len() - before) as u64 != l) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "{} holds fewer than {length} bytes from {}",
                                r.path, r.offset
                            ),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The sha256 and length of the file these pieces make, computed by the
    /// host without writing it.
    ///
    /// ```ignore-linux
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.range("/inputs/src/hello.txt", 0, 6);
    /// let (digest, len) = p.sha256().unwrap();
    /// assert_eq!((digest[0], len), (0x58, 6));
    /// ```
    pub fn sha256(&self) -> Result<([u8; 32], u64)> {
        let (digest, len) =
            wit::sha256(&self.pieces).map_err(|e| Error::host(e, "hashing pieces"))?;
        let digest = digest
            .try_into()
            .map_err(|_| Error::msg("the host's sha256 is not 32 bytes"))?;
        Ok((digest, len))
    }
}

/// `Pieces` as a byte sink: what is written is appended as bytes.
impl io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write each file (a path under `/work` or `/out` whose parent exists;
/// an existing file is replaced) from its pieces, with mode 0o644. The host
/// writes them in parallel; an error names the file and the piece.
///
/// ```ignore-linux
/// let mut p = kiln_sdk::assemble::Pieces::new();
/// p.bytes(b"one");
/// kiln_sdk::assemble::write_files(&[("/out/a", &p), ("/out/b", &p)]).unwrap();
/// assert_eq!(std::fs::read("/out/b").unwrap(), b"one");
/// ```
pub fn write_files(files: &[(impl AsRef<Path>, &Pieces)]) -> Result<()> {
    let with_modes: Vec<(&Path, &Pieces, u32)> = files
        .iter()
        .map(|(path, pieces)| (path.as_ref(), *pieces, 0o644))
        .collect();
    write_files_with_modes(&with_modes)
}

/// [`write_files`] with each file's permission bits: 0o755 for an
/// executable (at most 0o777).
///
/// ```ignore-linux
/// let mut p = kiln_sdk::assemble::Pieces::new();
/// p.bytes(b"#!/bin/sh\necho hi\n");
/// kiln_sdk::assemble::write_files_with_modes(&[("/out/hi", &p, 0o755)]).unwrap();
/// assert!(kiln_sdk::files::is_executable("/out/hi"));
/// ```
pub fn write_files_with_modes(files: &[(impl AsRef<Path>, &Pieces, u32)]) -> Result<()> {
    let files: Vec<wit::File> = files
        .iter()
        .map(|(path, pieces, mode)| wit::File {
            path: path.as_ref().to_string_lossy().into_owned(),
            pieces: pieces.pieces.clone(),
            mode: *mode,
        })
        .collect();
    wit::write_files(&files).map_err(|e| Error::host(e, "writing files"))
}
