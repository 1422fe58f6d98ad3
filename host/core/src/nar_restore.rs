//! Unpacking a NAR (Nix's archive format) into a fresh directory: what
//! `nix-store --restore` does, for NARs from a binary cache.
//!
//! A NAR from a server is untrusted until its hash is checked, which can
//! only happen once it has been read, so this reader assumes nothing: every
//! name is one plain path component (no `/`, `.`, `..`, NUL or empty), a
//! directory's entries are strictly sorted (so unique), nesting is bounded,
//! and only files this call created are written to. Nothing is followed:
//! a symlink is created and never entered, since a NAR's symlink has no
//! children.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

/// Deepest directory nesting accepted.
const MAX_DEPTH: usize = 256;
/// Longest name, symlink target or token accepted (file contents are
/// streamed, not held).
const MAX_STRING: u64 = 64 * 1024;

/// Why a NAR could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("not a valid NAR: {0}")]
    Malformed(String),
    #[error("unpacking the NAR into {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("reading the NAR: {0}")]
    Read(io::Error),
}

/// Unpack the NAR read from `input` at `dest`, which must not exist yet.
pub fn restore(input: &mut impl Read, dest: &Path) -> Result<(), RestoreError> {
    let mut r = Reader {
        input,
        buf: vec![0; 256 * 1024],
    };
    r.expect(b"nix-archive-1")?;
    r.node(dest, 0)?;
    // Nothing may follow the archive.
    let mut extra = [0u8; 1];
    match r.input.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(RestoreError::Malformed(
            "data after the end of the archive".into(),
        )),
        Err(e) => Err(RestoreError::Read(e)),
    }
}

struct Reader<'a, R: Read> {
    input: &'a mut R,
    buf: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> RestoreError {
    RestoreError::Malformed(what.into())
}

impl<R: Read> Reader<'_, R> {
    fn u64(&mut self) -> Result<u64, RestoreError> {
        let mut b = [0u8; 8];
        self.input.read_exact(&mut b).map_err(read_err)?;
        Ok(u64::from_le_bytes(b))
    }

    fn padding(&mut self, len: u64) -> Result<(), RestoreError> {
        let pad = (8 - len % 8) % 8;
        let mut b = [0u8; 8];
        self.input
            .read_exact(&mut b[..pad as usize])
            .map_err(read_err)?;
        if b.iter().any(|&x| x != 0) {
            return Err(malformed("non-zero padding"));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<Vec<u8>, RestoreError> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(malformed(format!("a {len}-byte name or token")));
        }
        let mut s = vec![0u8; len as usize];
        self.input.read_exact(&mut s).map_err(read_err)?;
        self.padding(len)?;
        Ok(s)
    }

    fn expect(&mut self, token: &[u8]) -> Result<(), RestoreError> {
        let got = self.string()?;
        if got != token {
            return Err(malformed(format!(
                "expected {:?}, found {:?}",
                String::from_utf8_lossy(token),
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    }

    /// Copy `len` bytes of file contents to `f` in large writes (a NAR's
    /// files are most of its bytes).
    fn copy_contents(&mut self, len: u64, f: &mut fs::File) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            // Fill the buffer: a decompressor hands out small pieces.
            let mut filled = 0;
            while filled < want {
                let n = self.input.read(&mut self.buf[filled..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            f.write_all(&self.buf[..filled])?;
            left -= filled as u64;
        }
        Ok(())
    }

    fn node(&mut self, path: &Path, depth: usize) -> Result<(), RestoreError> {
        if depth > MAX_DEPTH {
            return Err(malformed(format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.expect(b"(")?;
        self.expect(b"type")?;
        match self.string()?.as_slice() {
            b"regular" => self.regular(path),
            b"symlink" => {
                self.expect(b"target")?;
                let target = self.string()?;
                if target.is_empty() || target.contains(&0) {
                    return Err(malformed("an empty symlink target or one with NUL"));
                }
                symlink(std::ffi::OsStr::from_bytes(&target), path).map_err(io_at(path))?;
                self.expect(b")")
            }
            b"directory" => self.directory(path, depth),
            other => Err(malformed(format!(
                "unknown node type {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// A regular file's node after its type: executable or not, contents.
    fn regular(&mut self, path: &Path) -> Result<(), RestoreError> {
        let mut tag = self.string()?;
        let executable = tag == b"executable";
        if executable {
            self.expect(b"")?;
            tag = self.string()?;
        }
        if tag != b"contents" {
            return Err(malformed("a regular file without contents"));
        }
        let len = self.u64()?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(path)
            .map_err(io_at(path))?;
        self.copy_contents(len, &mut f)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => RestoreError::Read(e),
                _ => io_at(path)(e),
            })?;
        self.padding(len)?;
        self.expect(b")")
    }

    /// A directory's entries after its type: each one path component, in
    /// strictly increasing order (as NAR writes them), restored beneath it.
    fn directory(&mut self, path: &Path, depth: usize) -> Result<(), RestoreError> {
        fs::create_dir(path).map_err(io_at(path))?;
        let mut last: Option<Vec<u8>> = None;
        loop {
            match self.string()?.as_slice() {
                b")" => return Ok(()),
                b"entry" => {}
                other => {
                    return Err(malformed(format!(
                        "expected an entry, found {:?}",
                        String::from_utf8_lossy(other)
                    )));
                }
            }
            self.expect(b"(")?;
            self.expect(b"name")?;
            let name = self.string()?;
            let plain = !name.is_empty()
                && name != b"."
                && name != b".."
                && !name.contains(&b'/')
                && !name.contains(&0);
            if !plain {
                return Err(malformed(format!(
                    "entry name {:?} is not one path component",
                    String::from_utf8_lossy(&name)
                )));
            }
            if last.as_ref().is_some_and(|l| *l >= name) {
                return Err(malformed("directory entries out of order or repeated"));
            }
            self.expect(b"node")?;
            self.node(&path.join(std::ffi::OsStr::from_bytes(&name)), depth + 1)?;
            self.expect(b")")?;
            last = Some(name);
        }
    }
}

/// An I/O error writing at `path`.
fn io_at(path: &Path) -> impl Fn(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_err(e: io::Error) -> RestoreError {
    RestoreError::Read(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar;

    #[test]
    fn a_dumped_tree_restores_to_the_same_nar() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path().join("t");
        fs::create_dir_all(s.join("sub/deeper")).unwrap();
        fs::write(s.join("a.txt"), "hello\n").unwrap();
        fs::write(s.join("sub/deeper/blob"), vec![7u8; 10_000]).unwrap();
        fs::write(s.join("run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            s.join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        symlink("a.txt", s.join("link")).unwrap();
        let mut bytes = Vec::new();
        nar::dump_path(&s, &mut bytes).unwrap();
        let out = tempfile::tempdir().unwrap();
        let d = out.path().join("t");
        restore(&mut bytes.as_slice(), &d).unwrap();
        assert_eq!(nar::hash_path(&d).unwrap(), nar::hash_path(&s).unwrap());
    }

    fn nar_of(tokens: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in tokens {
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t);
            out.extend(std::iter::repeat_n(0, (8 - t.len() % 8) % 8));
        }
        out
    }

    #[test]
    fn hostile_names_and_orders_are_refused() {
        for (name, why) in [
            (&b".."[..], "not one path component"),
            (b"a/b", "not one path component"),
            (b"", "not one path component"),
        ] {
            let nar = nar_of(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"name",
                name,
                b"node",
                b"(",
                b"type",
                b"symlink",
                b"target",
                b"/etc",
                b")",
                b")",
                b")",
            ]);
            let out = tempfile::tempdir().unwrap();
            let e = restore(&mut nar.as_slice(), &out.path().join("t")).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        let twice = nar_of(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"x",
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"/etc",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"x",
            b"node",
            b"(",
            b"type",
            b"directory",
            b")",
            b")",
            b")",
        ]);
        let out = tempfile::tempdir().unwrap();
        let e = restore(&mut twice.as_slice(), &out.path().join("t")).unwrap_err();
        assert!(e.to_string().contains("out of order or repeated"), "{e}");
    }

    #[test]
    fn a_truncated_nar_is_an_error() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), vec![1u8; 5000]).unwrap();
        let mut bytes = Vec::new();
        nar::dump_path(src.path(), &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 100);
        let out = tempfile::tempdir().unwrap();
        assert!(restore(&mut bytes.as_slice(), &out.path().join("t")).is_err());
    }
}
