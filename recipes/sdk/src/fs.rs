//! Writing large files with one host call per buffer.
//!
//! Rust's `std::fs::File` on wasm32-wasip2 writes through a WASI output
//! stream, at most 4 KiB per host call: a 200 MB image layer becomes 50,000
//! calls and as many small `pwrite`s. [`create`] opens the file through its
//! WASI preopen (`/work` or `/out`) and writes each buffer with a single
//! `descriptor.write` at an explicit offset. Wrap it in a large
//! `BufWriter` (e.g. 4 MiB) and writes cost what they cost natively.

use std::io;
use std::path::Path;

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

use crate::{Error, Result};

/// A file opened for writing from its start, written with positioned writes.
pub struct LargeFile {
    fd: Descriptor,
    offset: u64,
    path: String,
}

/// Create (or truncate) the file at `path`, under `/work` or `/out`.
pub fn create(path: impl AsRef<Path>) -> Result<LargeFile> {
    let path = path.as_ref().to_string_lossy().into_owned();
    let (dir, rel) = get_directories()
        .into_iter()
        .filter_map(|(dir, root)| {
            let rel = path.strip_prefix(root.trim_end_matches('/'))?;
            let rel = rel.strip_prefix('/')?;
            Some((root.len(), dir, rel.to_string()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, dir, rel)| (dir, rel))
        .ok_or_else(|| {
            Error::msg(format!(
                "{path} is not under a directory the recipe may write"
            ))
        })?;
    let fd = dir
        .open_at(
            PathFlags::empty(),
            &rel,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| Error::msg(format!("creating {path}: {e}")))?;
    Ok(LargeFile {
        fd,
        offset: 0,
        path,
    })
}

impl io::Write for LargeFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .fd
            .write(buf, self.offset)
            .map_err(|e| io::Error::other(format!("writing {}: {e}", self.path)))?;
        self.offset += n;
        usize::try_from(n).map_err(io::Error::other)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
