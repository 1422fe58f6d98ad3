//! A bound on what a tar reader holds in memory for an entry's headers.
//!
//! The `tar` crate reads a GNU long name or a PAX extended header whole
//! into memory before it yields the entry. An archive can announce a
//! "long name" of 4 GiB that compresses to a few megabytes; read plainly,
//! that is 4 GiB of memory from a small download or image layer.
//! [`bounded`] wraps the archive's (decompressed) reader so that between
//! two entries the reader may take only the previous entry's own data,
//! padded to 512 bytes, plus [`MAX_HEADER_BYTES`]: enough for any real
//! name, never enough to exhaust memory.
//!
//! The caller tells the [`HeaderBound`] each entry it got
//! ([`HeaderBound::entry_seen`]); reading the entry's data, or letting the
//! tar reader skip it, then stays within the bound.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// The most bytes of headers (long names, PAX records, sparse maps) one
/// entry may have.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// What the reader may still take before the next entry.
#[derive(Debug, Clone)]
pub struct HeaderBound {
    left: Rc<Cell<u64>>,
}

impl HeaderBound {
    /// An entry of `raw_size` bytes in the archive was yielded: its data
    /// and the next entry's headers may be read.
    pub fn entry_seen(&self, raw_size: u64) {
        let padded = raw_size.saturating_add(511) & !511;
        self.left.set(padded.saturating_add(MAX_HEADER_BYTES));
    }
}

/// A reader that refuses to go past its [`HeaderBound`].
#[derive(Debug)]
pub struct Bounded<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

/// Wrap `inner` (an archive's decompressed bytes), allowing the first
/// entry's headers.
pub fn bounded<R: Read>(inner: R) -> (Bounded<R>, HeaderBound) {
    let left = Rc::new(Cell::new(MAX_HEADER_BYTES));
    (
        Bounded {
            inner,
            left: left.clone(),
        },
        HeaderBound { left },
    )
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(io::Error::other(format!(
                "an entry's headers (long names, PAX records) take more than {} KiB; refused",
                MAX_HEADER_BYTES >> 10
            )));
        }
        let cap = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar holding one GNU long-name header announcing `len` bytes.
    fn long_name_tar(len: usize) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        if let Some(gnu) = h.as_gnu_mut() {
            gnu.name[..13].copy_from_slice(b"././@LongLink");
        }
        h.set_size(len as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.resize(raw.len() + len, b'a');
        raw
    }

    #[test]
    fn a_huge_long_name_stops_at_the_bound_and_ordinary_entries_pass() {
        let raw = long_name_tar(8 << 20);
        let (r, bound) = bounded(raw.as_slice());
        let mut archive = tar::Archive::new(r);
        let mut entries = archive.entries().unwrap();
        let e = entries.next().unwrap().err().unwrap();
        assert!(e.to_string().contains("headers"), "{e}");
        let _ = bound;

        // Big entries are fine: their data is theirs.
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in [("a", 3usize << 20), ("b", 10)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, vec![7u8; size].as_slice())
                .unwrap();
        }
        let raw = b.into_inner().unwrap();
        let (r, bound) = bounded(raw.as_slice());
        let mut archive = tar::Archive::new(r);
        let mut names = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            bound.entry_seen(e.header().entry_size().unwrap());
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["a", "b"]);
    }
}
