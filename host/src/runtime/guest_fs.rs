//! Files the recipe names by the paths it sees (`/inputs/<name>/…`,
//! `/work/…`, `/out/…`), opened by the host through cap-std under the
//! directory each maps to, so that no `..` or symlink leads out of them.
//! Host calls that take paths (`digest`, `assemble`) go through here.

use std::fs::File;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use super::RunInput;
use super::bindings::kiln::recipe::types::Error as FsError;
use super::budget::{Budget, Stop};

/// The directories a running recipe can reach.
#[derive(Clone, Copy)]
pub(super) struct GuestFs<'a> {
    pub work: &'a Path,
    pub out: &'a Path,
    pub inputs: &'a [RunInput],
}

/// Where a guest path leads on the host.
pub(super) enum Place<'p> {
    /// A file input: its store path.
    FileInput(&'p Path),
    /// `inner` (empty: the root itself) beneath the directory `root`.
    Beneath { root: &'p Path, inner: &'p str },
}

impl GuestFs<'_> {
    /// Resolve a path under `/inputs`, `/work` or `/out`.
    pub fn place<'p>(&'p self, path: &'p str) -> Result<Place<'p>, FsError> {
        if let Some(rest) = path.strip_prefix("/inputs/") {
            let (name, inner) = rest.split_once('/').unwrap_or((rest, ""));
            let input = self.inputs.iter().find(|i| i.name == name).ok_or_else(|| {
                FsError::NotFound(format!("{path}: the target has no input named '{name}'"))
            })?;
            if !input.is_dir {
                return if inner.is_empty() {
                    Ok(Place::FileInput(&input.host_path))
                } else {
                    Err(FsError::WrongKind(format!(
                        "{path}: input '{name}' is a file, not a directory"
                    )))
                };
            }
            Ok(Place::Beneath {
                root: &input.host_path,
                inner: inner.trim_end_matches('/'),
            })
        } else {
            let (root, inner) = self.writable(path).map_err(|_| {
                FsError::BadPath(format!("{path} is not under /inputs, /work or /out"))
            })?;
            Ok(Place::Beneath { root, inner })
        }
    }

    /// Open a regular file under `/inputs`, `/work` or `/out` for reading.
    pub fn open(&self, path: &str) -> Result<File, FsError> {
        let (root, inner) = match self.place(path)? {
            Place::FileInput(p) => return File::open(p).map_err(|e| io_error(path, &e)),
            Place::Beneath { root, inner } => (root, inner),
        };
        // Non-blocking, so a FIFO or device a tool left cannot stall the
        // host; anything but a regular file is then refused.
        use cap_std::fs::OpenOptionsExt;
        let f = dir(root, path)?
            .open_with(
                inner,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY),
            )
            .map_err(|e| io_error(path, &e))?;
        let is_file = f.metadata().map_err(|e| io_error(path, &e))?.is_file();
        if !is_file {
            return Err(FsError::WrongKind(format!("{path} is not a regular file")));
        }
        Ok(f.into_std())
    }

    /// Create (or truncate) a file under `/work` or `/out` for writing with
    /// permission bits `mode`; its parent directory must exist.
    pub fn create(&self, path: &str, mode: u32) -> Result<File, FsError> {
        let (root, inner) = self.writable(path)?;
        if inner.is_empty() {
            return Err(FsError::WrongKind(format!(
                "{path} names a directory, not a file"
            )));
        }
        check_mode(path, mode)?;
        use cap_std::fs::OpenOptionsExt;
        let d = dir(root, path)?;
        let f = d
            .open_with(
                inner,
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode),
            )
            .map_err(|e| io_error(path, &e))?;
        // An existing file keeps its old mode through `open`: set it.
        use cap_std::fs::PermissionsExt;
        f.set_permissions(cap_std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(path, &e))?;
        Ok(f.into_std())
    }

    /// The Unix mode bits of `path`, without following a final symlink.
    pub fn mode(&self, path: &str) -> Result<u32, FsError> {
        let mode = match self.place(path)? {
            Place::FileInput(p) => {
                use std::os::unix::fs::PermissionsExt;
                let m = std::fs::symlink_metadata(p).map_err(|e| io_error(path, &e))?;
                m.permissions().mode()
            }
            Place::Beneath { root, inner } => {
                use cap_std::fs::PermissionsExt;
                let inner = if inner.is_empty() { "." } else { inner };
                let m = dir(root, path)?
                    .symlink_metadata(inner)
                    .map_err(|e| io_error(path, &e))?;
                m.permissions().mode()
            }
        };
        Ok(mode & 0o7777)
    }

    /// Set the permission bits (at most 0o777) of a file or directory under
    /// `/work` or `/out`; a symlink is refused.
    pub fn set_mode(&self, path: &str, mode: u32) -> Result<(), FsError> {
        let (root, inner) = self.writable(path)?;
        check_mode(path, mode)?;
        let d = dir(root, path)?;
        let perms = {
            use cap_std::fs::PermissionsExt;
            cap_std::fs::Permissions::from_mode(mode)
        };
        if inner.is_empty() {
            return Err(FsError::BadPath(format!(
                "{path}: the mode of /work or /out itself is the host's"
            )));
        }
        let meta = d.symlink_metadata(inner).map_err(|e| io_error(path, &e))?;
        if meta.is_symlink() {
            return Err(FsError::WrongKind(format!(
                "{path} is a symlink: a symlink has no mode of its own"
            )));
        }
        d.set_permissions(inner, perms)
            .map_err(|e| io_error(path, &e))
    }

    /// The host directory and the rest of a path under `/work` or `/out`.
    pub fn writable<'p>(&self, path: &'p str) -> Result<(&Path, &'p str), FsError> {
        for (prefix, root) in [("/work", self.work), ("/out", self.out)] {
            match path.strip_prefix(prefix) {
                Some("") => return Ok((root, "")),
                Some(rest) if rest.starts_with('/') => {
                    return Ok((root, rest.trim_matches('/')));
                }
                _ => {}
            }
        }
        Err(FsError::BadPath(format!(
            "{path} is not under /work or /out, the only places a recipe writes"
        )))
    }
}

/// A guest path without empty or `.` components, for comparing.
pub(super) fn normal(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Only permission bits: no setuid, setgid or sticky bit in an output.
fn check_mode(path: &str, mode: u32) -> Result<(), FsError> {
    if mode & !0o777 != 0 {
        return Err(FsError::Invalid(format!(
            "{path}: mode {mode:#o} has bits beyond 0o777 (setuid, setgid or sticky), which outputs may not carry"
        )));
    }
    Ok(())
}

/// An I/O error on a guest path, as the recipe sees it.
pub(super) fn io_error(path: &str, e: &std::io::Error) -> FsError {
    let message = format!("{path}: {e}");
    match e.kind() {
        std::io::ErrorKind::NotFound => FsError::NotFound(message),
        // cap-std's refusal of a path that leads out of its directory.
        _ if e.to_string().contains("outside of the filesystem") => FsError::BadPath(message),
        std::io::ErrorKind::AlreadyExists
        | std::io::ErrorKind::IsADirectory
        | std::io::ErrorKind::NotADirectory => FsError::WrongKind(message),
        _ if e.raw_os_error() == Some(libc::ELOOP) => FsError::BadPath(message),
        _ => FsError::Io(message),
    }
}

/// The text of an error, whatever its case.
pub(super) fn message(e: &FsError) -> &str {
    match e {
        FsError::BadPath(m)
        | FsError::NotFound(m)
        | FsError::WrongKind(m)
        | FsError::Invalid(m)
        | FsError::UndeclaredTool(m)
        | FsError::NetworkDenied(m)
        | FsError::Io(m)
        | FsError::Failed(m) => m,
    }
}

/// The same error with `prefix: ` before its text.
pub(super) fn prefixed(prefix: &str, e: FsError) -> FsError {
    let wrap = |m: String| format!("{prefix}: {m}");
    match e {
        FsError::BadPath(m) => FsError::BadPath(wrap(m)),
        FsError::NotFound(m) => FsError::NotFound(wrap(m)),
        FsError::WrongKind(m) => FsError::WrongKind(wrap(m)),
        FsError::Invalid(m) => FsError::Invalid(wrap(m)),
        FsError::UndeclaredTool(m) => FsError::UndeclaredTool(wrap(m)),
        FsError::NetworkDenied(m) => FsError::NetworkDenied(wrap(m)),
        FsError::Io(m) => FsError::Io(wrap(m)),
        FsError::Failed(m) => FsError::Failed(wrap(m)),
    }
}

/// The apparent size of everything under `roots` (a sparse file counts at
/// its apparent size, as it would in an archive or on another disk),
/// without following symlinks; stops as soon as the total passes `limit` or
/// the deadline passes.
///
/// `roots` are directories tools write (`/work`, `/out`, tool caches, a
/// fixed-output directory), walked after every exec: a FIFO, socket or
/// device found there is removed on the spot. Such a file holds no data,
/// and opened later — by the recipe through WASI, by a files call, by the
/// next tool — it could block until someone writes to it, which wasmtime's
/// deadline cannot interrupt.
pub(super) fn measure_tool_dirs(
    roots: &[&Path],
    limit: u64,
    deadline: std::time::Instant,
) -> Result<u64, Stop> {
    fn walk(p: &Path, budget: &mut Budget) -> Result<(), Stop> {
        budget.check_time()?;
        let meta =
            std::fs::symlink_metadata(p).map_err(|e| io_stop(format!("{}: {e}", p.display())))?;
        let t = meta.file_type();
        if !(t.is_dir() || t.is_file() || t.is_symlink()) {
            return std::fs::remove_file(p)
                .map_err(|e| io_stop(format!("removing the special file {}: {e}", p.display())));
        }
        budget.spend(meta.len())?;
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(p).map_err(|e| io_stop(format!("{}: {e}", p.display())))?;
            for e in entries {
                let e = e.map_err(|e| io_stop(format!("{}: {e}", p.display())))?;
                walk(&e.path(), budget)?;
            }
        }
        Ok(())
    }
    let mut budget = Budget::new(deadline, limit);
    for root in roots {
        walk(root, &mut budget)?;
    }
    Ok(budget.spent())
}

/// An I/O failure while measuring: the message names the path.
fn io_stop(message: String) -> Stop {
    Stop::Failed(FsError::Io(message))
}

pub(super) fn dir(root: &Path, path: &str) -> Result<Dir, FsError> {
    Dir::open_ambient_dir(root, ambient_authority()).map_err(|e| io_error(path, &e))
}

/// A recipe's directories for tests: `work/`, `out/`, and a directory
/// input `src` at `in/`, in a temporary root.
#[cfg(test)]
pub(super) struct TestDirs {
    pub root: tempfile::TempDir,
    pub work: std::path::PathBuf,
    pub out: std::path::PathBuf,
    pub input: std::path::PathBuf,
    inputs: Vec<RunInput>,
}

#[cfg(test)]
impl TestDirs {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let (work, out, input) = (
            root.path().join("work"),
            root.path().join("out"),
            root.path().join("in"),
        );
        for d in [&work, &out, &input] {
            std::fs::create_dir(d).unwrap();
        }
        let inputs = vec![RunInput {
            name: "src".into(),
            hash: String::new(),
            host_path: input.clone(),
            is_dir: true,
        }];
        TestDirs {
            root,
            work,
            out,
            input,
            inputs,
        }
    }

    pub fn fs(&self) -> GuestFs<'_> {
        GuestFs {
            work: &self.work,
            out: &self.out,
            inputs: &self.inputs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_and_swept_after_an_exec() {
        let dirs = TestDirs::new();
        let fifo = dirs.work.join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::write(dirs.work.join("kept"), "12345").unwrap();
        // Opened by a host call: refused, not waited on.
        let start = std::time::Instant::now();
        assert!(matches!(
            dirs.fs().open("/work/pipe"),
            Err(FsError::WrongKind(_))
        ));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // The sweep after an exec removes it and counts what is left.
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let used = measure_tool_dirs(&[&dirs.work], 1 << 20, later).unwrap();
        assert!(
            std::fs::symlink_metadata(&fifo).is_err(),
            "the FIFO is gone"
        );
        assert!(dirs.work.join("kept").is_file());
        assert!(used >= 5);
    }

    #[test]
    fn paths_resolve_inside_their_directories_only() {
        let dirs = TestDirs::new();
        std::fs::write(dirs.input.join("a"), "a").unwrap();
        std::fs::write(dirs.root.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", dirs.work.join("escape")).unwrap();
        let fs = dirs.fs();
        assert!(fs.open("/inputs/src/a").is_ok());
        assert!(fs.open("/inputs/src/../../secret").is_err());
        assert!(fs.open("/work/escape").is_err());
        assert!(matches!(
            fs.open("/inputs/src/../../secret"),
            Err(FsError::BadPath(_))
        ));
        assert!(
            matches!(fs.open("/inputs/nope/a"), Err(FsError::NotFound(m)) if m.contains("no input named 'nope'"))
        );
        assert!(
            matches!(fs.open("/etc/passwd"), Err(FsError::BadPath(m)) if m.contains("not under /inputs"))
        );
        assert!(
            matches!(fs.create("/inputs/src/b", 0o644), Err(FsError::BadPath(m)) if m.contains("not under /work or /out"))
        );
        assert!(fs.create("/work/../x", 0o644).is_err());
        assert!(fs.create("/work/escape", 0o644).is_err());
        assert!(matches!(
            fs.create("/out/s", 0o4755),
            Err(FsError::Invalid(_))
        ));
        assert_eq!(
            std::fs::read(dirs.root.path().join("secret")).unwrap(),
            b"s"
        );
        assert!(fs.create("/out/new", 0o755).is_ok());
        assert!(dirs.out.join("new").is_file());
        assert_eq!(fs.mode("/out/new").unwrap(), 0o755);
        fs.set_mode("/out/new", 0o644).unwrap();
        assert_eq!(fs.mode("/out/new").unwrap(), 0o644);
        assert!(matches!(
            fs.set_mode("/work/escape", 0o755),
            Err(FsError::WrongKind(_))
        ));
        assert!(matches!(
            fs.set_mode("/inputs/src/a", 0o755),
            Err(FsError::BadPath(_))
        ));
    }
}
