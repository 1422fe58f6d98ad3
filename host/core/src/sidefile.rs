//! Reading the files kiln opens besides a build's inputs: kiln.toml and
//! kiln.lock, the user's config, credentials files, and the store's own
//! records, digests and indexes.
//!
//! A hostile checkout, a tool with write access or another user can put a
//! FIFO, a device or a link where such a file is expected: opened plainly,
//! a FIFO blocks kiln forever and `/dev/zero` never ends. So every side
//! file is opened without blocking (`O_NONBLOCK`) and without becoming a
//! controlling terminal, must be a regular file (checked on the open
//! descriptor, so nothing can swap it after the check), and is read up to
//! a stated size. [`Links::Refuse`] also refuses a symlink as the last
//! component: for files under `$KILN_HOME`, which kiln itself writes and
//! never links.
//!
//! This module only reads; it does not decide what a file means.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether the last component of a side file's path may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// The user's own files (kiln.toml may be a link into a dotfiles repo).
    Follow,
    /// Files kiln writes itself, under `$KILN_HOME`.
    Refuse,
}

/// Sizes that bound side files.
pub mod limits {
    /// kiln.toml, kiln.lock, config files, keys, netrc, records, indexes.
    pub const TEXT: u64 = 16 << 20;
    /// A build record (its exec list and recipe log are capped well below).
    pub const RECORD: u64 = 64 << 20;
    /// A store entry's per-file listing.
    pub const LISTING: u64 = 256 << 20;
    /// A compiled or local recipe (a WebAssembly component).
    pub const RECIPE: u64 = 512 << 20;
}

/// Open `path` for reading as a side file: a regular file, never blocking.
pub fn open(path: &Path, links: Links) -> io::Result<File> {
    let mut flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    if links == Links::Refuse {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                io::Error::other(format!(
                    "{} is a symlink, where kiln expects its own file",
                    path.display()
                ))
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}, not a regular file; kiln reads only regular files here",
                path.display(),
                kind_of(&meta)
            ),
        ));
    }
    Ok(file)
}

/// The bytes of the side file `path`, at most `limit` of them.
pub fn read(path: &Path, links: Links, limit: u64) -> io::Result<Vec<u8>> {
    let file = open(path, links)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {} MiB, more than such a file can be",
                path.display(),
                limit >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, links: Links, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, links, limit)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_fifo_a_device_and_a_link_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("kiln.lock");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let start = Instant::now();
        let err = read(&fifo, Links::Follow, limits::TEXT).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        let err = read(Path::new("/dev/zero"), Links::Follow, limits::TEXT).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));

        let real = dir.path().join("real");
        std::fs::write(&real, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read(&link, Links::Follow, 10).unwrap(), b"x");
        let err = read(&link, Links::Refuse, 10).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
    }

    #[test]
    fn a_file_past_its_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![b'a'; 101]).unwrap();
        assert!(read(&f, Links::Refuse, 100).is_err());
        assert_eq!(read(&f, Links::Refuse, 101).unwrap().len(), 101);
    }
}
