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

/// Filesystems whose "regular files" are kernel interfaces, not data:
/// procfs (`/proc/self/environ` is a regular file there), sysfs, debugfs,
/// tracefs, securityfs, configfs, efivarfs, bpffs, cgroup v1 and v2.
const KERNEL_FILESYSTEMS: &[u64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0x6265_6570, // configfs
    0xde5e_81e4, // efivarfs
    0xcafe_4a11, // bpf
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
];

/// Open `path` for reading as a side file: a regular file of an ordinary
/// filesystem, never blocking.
///
/// The path is first opened with `O_PATH`, which opens nothing (a device's
/// driver never sees it), and judged on that descriptor; the file is then
/// opened for reading and must be the same file.
pub fn open(path: &Path, links: Links) -> io::Result<File> {
    open_sized(path, links).map(|(f, _)| f)
}

/// [`open`], with the file's size as it was opened.
fn open_sized(path: &Path, links: Links) -> io::Result<(File, u64)> {
    use rustix::fs::{FileType, Mode, OFlags};
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let probe = rustix::fs::open(path, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&probe)?;
    let refused = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {what}; kiln reads only regular files here",
                path.display()
            ),
        )
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Symlink => {
            return Err(refused(
                "a symlink, where kiln expects its own file".to_string(),
            ));
        }
        kind => return Err(refused(format!("a {}", crate::beneath::kind_name(kind)))),
    }
    let fs_type = rustix::fs::fstatfs(&probe)?.f_type as u64;
    if KERNEL_FILESYSTEMS.contains(&fs_type) {
        return Err(refused(
            "a kernel interface (on /proc, /sys or the like), not a file".to_string(),
        ));
    }
    let mut read_flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    if links == Links::Refuse {
        read_flags |= OFlags::NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(read_flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    use std::os::unix::fs::MetadataExt;
    if meta.dev() != st.st_dev || meta.ino() != st.st_ino {
        return Err(refused(
            "a file that changed while kiln opened it".to_string(),
        ));
    }
    Ok((file, meta.len()))
}

/// The bytes of the side file `path`, at most `limit` of them.
pub fn read(path: &Path, links: Links, limit: u64) -> io::Result<Vec<u8>> {
    let (file, size) = open_sized(path, links)?;
    // Sized up front: one read for a small file, not six growing ones.
    let mut bytes = Vec::with_capacity(size.min(limit).saturating_add(1) as usize);
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
        assert!(err.to_string().contains("is a fifo"), "{err}");
        let err = read(Path::new("/dev/zero"), Links::Follow, limits::TEXT).unwrap_err();
        assert!(err.to_string().contains("is a device node"), "{err}");
        // A kernel interface that calls itself a regular file, through a
        // link a checkout could commit as its kiln.lock.
        let environ = dir.path().join("kiln.toml");
        std::os::unix::fs::symlink("/proc/self/environ", &environ).unwrap();
        let err = read(&environ, Links::Follow, limits::TEXT).unwrap_err();
        assert!(err.to_string().contains("kernel interface"), "{err}");
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
