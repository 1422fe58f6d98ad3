//! Files handled by the host at native speed, with what WASI cannot say:
//! Unix modes. Copy an input into `/out` with its executable bits, mark a
//! file the recipe wrote as executable, digest a large file — without its
//! bytes passing through the recipe's memory.
//!
//! Paths are the ones the recipe sees (`/inputs/<name>/…`, `/work/…`,
//! `/out/…`); the host resolves them beneath their root and never follows a
//! symlink out of it. A refusal is an [`Error`] of kind
//! [`ErrorKind::Host`](crate::ErrorKind::Host) that names the path.

use std::path::Path;

use crate::bindings::kiln::recipe::{assemble, files};
use crate::{Error, Result};

fn guest(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Copy `src` (a file, symlink or directory tree under `/inputs`, `/work`
/// or `/out`) to `dst` (under `/work` or `/out`), keeping executable bits
/// and copying symlinks as symlinks. `dst` must not exist, except that a
/// tree may go into an empty directory such as `/out` itself.
///
/// ```ignore-linux
/// use kiln_sdk::files;
/// files::copy("/inputs/src", "/out/src").unwrap();
/// assert_eq!(std::fs::read_to_string("/out/src/hello.txt").unwrap(), "hello\n");
/// assert!(files::is_executable("/out/src/bin/hello"));
/// // One file, anywhere under /work or /out.
/// files::copy("/inputs/src/hello.txt", "/work/hello.txt").unwrap();
/// // A copy never overwrites.
/// let e = files::copy("/inputs/src/hello.txt", "/work/hello.txt").unwrap_err();
/// assert!(e.to_string().contains("exists"), "{e}");
/// ```
pub fn copy(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<()> {
    let (src, dst) = (guest(src.as_ref()), guest(dst.as_ref()));
    files::copy(&src, &dst).map_err(|e| Error::host(e, format!("copying {src} to {dst}")))
}

/// The Unix mode bits (e.g. `0o755`) of `path`, without following a final
/// symlink.
///
/// ```ignore-linux
/// let mode = kiln_sdk::files::mode("/inputs/src/bin/hello").unwrap();
/// assert_ne!(mode & 0o111, 0);
/// assert!(kiln_sdk::files::mode("/inputs/src/missing").is_err());
/// ```
#[cfg(target_arch = "wasm32")]
pub fn mode(path: impl AsRef<Path>) -> Result<u32> {
    let path = guest(path.as_ref());
    files::mode(&path).map_err(|e| Error::host(e, "reading the mode"))
}

/// The Unix mode bits of `path`. Natively (a recipe's own unit tests) the
/// file system answers directly.
#[cfg(not(target_arch = "wasm32"))]
pub fn mode(path: impl AsRef<Path>) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    let m = std::fs::symlink_metadata(path)
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    Ok(m.permissions().mode() & 0o7777)
}

/// Whether `path` is a regular file with an executable bit set.
///
/// ```ignore-linux
/// assert!(kiln_sdk::files::is_executable("/inputs/src/bin/hello"));
/// assert!(!kiln_sdk::files::is_executable("/inputs/src/hello.txt"));
/// ```
pub fn is_executable(path: impl AsRef<Path>) -> bool {
    let path = path.as_ref();
    path.is_file() && mode(path).is_ok_and(|m| m & 0o111 != 0)
}

/// Set the permission bits of `path` (under `/work` or `/out`; at most
/// `0o777`: no setuid, setgid or sticky bit).
///
/// ```ignore-linux
/// std::fs::write("/out/run.sh", "#!/bin/sh\necho hi\n").unwrap();
/// kiln_sdk::files::set_mode("/out/run.sh", 0o755).unwrap();
/// assert!(kiln_sdk::files::is_executable("/out/run.sh"));
/// assert!(kiln_sdk::files::set_mode("/out/run.sh", 0o4755).is_err());
/// ```
pub fn set_mode(path: impl AsRef<Path>, mode: u32) -> Result<()> {
    let path = guest(path.as_ref());
    files::set_mode(&path, mode).map_err(|e| Error::host(e, "setting the mode"))
}

/// Make `path` (a file under `/work` or `/out`) executable: mode `0o755`.
///
/// ```ignore-linux
/// std::fs::write("/out/tool", "#!/bin/sh\n").unwrap();
/// kiln_sdk::files::set_executable("/out/tool").unwrap();
/// assert_eq!(kiln_sdk::files::mode("/out/tool").unwrap(), 0o755);
/// ```
pub fn set_executable(path: impl AsRef<Path>) -> Result<()> {
    set_mode(path, 0o755)
}

/// The sha256 of the file at `path` (under `/inputs`, `/work` or `/out`),
/// computed by the host at native speed: use it for large files.
///
/// ```ignore-linux
/// let d = kiln_sdk::files::sha256_file("/inputs/src/hello.txt").unwrap();
/// // sha256("hello\n")
/// assert_eq!(d[..4], [0x58, 0x91, 0xb5, 0xb5]);
/// ```
pub fn sha256_file(path: impl AsRef<Path>) -> Result<[u8; 32]> {
    let path = guest(path.as_ref());
    let whole = [assemble::Piece::Range(assemble::FileRange {
        path: path.clone(),
        offset: 0,
        length: None,
    })];
    let (digest, _) =
        assemble::sha256(&whole).map_err(|e| Error::host(e, format!("hashing {path}")))?;
    digest
        .try_into()
        .map_err(|_| Error::msg(format!("the host's sha256 of {path} is not 32 bytes")))
}
