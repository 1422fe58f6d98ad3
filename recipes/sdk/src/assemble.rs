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
//! ```ignore
//! let mut p = kiln_sdk::assemble::Pieces::new();
//! p.bytes(b"header");
//! p.range("/inputs/src/big.bin", 0, 1 << 20);
//! let (digest, len) = p.sha256()?;
//! kiln_sdk::assemble::write_files(&[("/out/blob", &p)])?;
//! ```

use std::io;
use std::path::Path;

use crate::bindings::kiln::recipe::assemble as wit;
use crate::{Error, Result};

/// The layout of a file: bytes and ranges of other files, in order.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    pieces: Vec<wit::Piece>,
    len: u64,
}

impl Pieces {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes (merged with bytes appended just before).
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
    pub fn range(&mut self, path: impl AsRef<Path>, offset: u64, length: u64) {
        if length == 0 {
            return;
        }
        self.len += length;
        self.pieces.push(wit::Piece::Range(wit::FileRange {
            path: path.as_ref().to_string_lossy().into_owned(),
            offset,
            length,
        }));
    }

    /// Append another layout.
    pub fn extend(&mut self, other: &Pieces) {
        for p in &other.pieces {
            match p {
                wit::Piece::Bytes(b) => self.bytes(b),
                wit::Piece::Range(r) => self.range(&r.path, r.offset, r.length),
            }
        }
    }

    /// The length of the file these pieces make.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes these pieces make, read into this process's memory: for a
    /// recipe's unit tests (run natively with `cargo test`) and small
    /// files. Builds should let the host assemble with [`write_files`].
    ///
    /// ```
    /// let mut p = kiln_sdk::assemble::Pieces::new();
    /// p.bytes(b"head ");
    /// p.range("Cargo.toml", 0, 9);
    /// assert_eq!(p.materialize().unwrap(), b"head [package]");
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
                    f.take(r.length).read_to_end(&mut out)?;
                    if (out.len() - before) as u64 != r.length {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "{} holds fewer than {} bytes from {}",
                                r.path, r.length, r.offset
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
    pub fn sha256(&self) -> Result<([u8; 32], u64)> {
        let (digest, len) = wit::sha256(&self.pieces).map_err(Error::msg)?;
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
/// an existing file is replaced) from its pieces. The host writes them in
/// parallel; an error names the file and the piece.
pub fn write_files(files: &[(impl AsRef<Path>, &Pieces)]) -> Result<()> {
    let files: Vec<wit::File> = files
        .iter()
        .map(|(path, pieces)| wit::File {
            path: path.as_ref().to_string_lossy().into_owned(),
            pieces: pieces.pieces.clone(),
        })
        .collect();
    wit::write_files(&files).map_err(Error::msg)
}
