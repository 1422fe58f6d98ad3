//! Files the recipe names by the paths it sees (`/inputs/<name>/…`,
//! `/work/…`, `/out/…`), opened by the host through cap-std under the
//! directory each maps to, so that no `..` or symlink leads out of them.
//! Host calls that take paths (`digest`, `assemble`) go through here.

use std::fs::File;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use super::RunInput;

/// The directories a running recipe can reach.
#[derive(Clone, Copy)]
pub(super) struct GuestFs<'a> {
    pub work: &'a Path,
    pub out: &'a Path,
    pub inputs: &'a [RunInput],
}

impl GuestFs<'_> {
    /// Open a regular file under `/inputs`, `/work` or `/out` for reading.
    pub fn open(&self, path: &str) -> Result<File, String> {
        let (root, inner) = if let Some(rest) = path.strip_prefix("/inputs/") {
            let (name, inner) = rest.split_once('/').unwrap_or((rest, ""));
            let input = self
                .inputs
                .iter()
                .find(|i| i.name == name)
                .ok_or_else(|| format!("{path}: the target has no input named '{name}'"))?;
            if !input.is_dir {
                return if inner.is_empty() {
                    File::open(&input.host_path).map_err(|e| format!("{path}: {e}"))
                } else {
                    Err(format!("{path}: input '{name}' is a file, not a directory"))
                };
            }
            (input.host_path.as_path(), inner)
        } else {
            self.writable(path)
                .map_err(|_| format!("{path} is not under /inputs, /work or /out"))?
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
            .map_err(|e| format!("{path}: {e}"))?;
        let is_file = f.metadata().map_err(|e| format!("{path}: {e}"))?.is_file();
        if !is_file {
            return Err(format!("{path} is not a regular file"));
        }
        Ok(f.into_std())
    }

    /// Create (or truncate) a file under `/work` or `/out` for writing; its
    /// parent directory must exist.
    pub fn create(&self, path: &str) -> Result<File, String> {
        let (root, inner) = self.writable(path)?;
        if inner.is_empty() {
            return Err(format!("{path} names a directory, not a file"));
        }
        let f = dir(root, path)?
            .open_with(
                inner,
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(f.into_std())
    }

    /// The host directory and the rest of a path under `/work` or `/out`.
    fn writable<'p>(&self, path: &'p str) -> Result<(&Path, &'p str), String> {
        if let Some(rest) = path.strip_prefix("/work/") {
            Ok((self.work, rest))
        } else if let Some(rest) = path.strip_prefix("/out/") {
            Ok((self.out, rest))
        } else {
            Err(format!(
                "{path} is not under /work or /out, the only places a recipe writes"
            ))
        }
    }
}

/// Why [`disk_usage`] stopped.
#[derive(Debug)]
pub(super) enum UsageStop {
    /// More than the limit: the bytes counted when it was passed.
    TooLarge(u64),
    TimedOut,
    Io(String),
}

/// The apparent size of everything under `roots` (a sparse file counts at
/// its apparent size, as it would in an archive or on another disk),
/// without following symlinks; stops as soon as the total passes `limit` or
/// the deadline passes.
pub(super) fn disk_usage(
    roots: &[&Path],
    limit: u64,
    deadline: std::time::Instant,
) -> Result<u64, UsageStop> {
    fn walk(
        p: &Path,
        total: &mut u64,
        limit: u64,
        deadline: std::time::Instant,
    ) -> Result<(), UsageStop> {
        if std::time::Instant::now() >= deadline {
            return Err(UsageStop::TimedOut);
        }
        let meta = std::fs::symlink_metadata(p)
            .map_err(|e| UsageStop::Io(format!("{}: {e}", p.display())))?;
        *total = total.saturating_add(meta.len());
        if *total > limit {
            return Err(UsageStop::TooLarge(*total));
        }
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(p).map_err(|e| UsageStop::Io(format!("{}: {e}", p.display())))?;
            for e in entries {
                let e = e.map_err(|e| UsageStop::Io(format!("{}: {e}", p.display())))?;
                walk(&e.path(), total, limit, deadline)?;
            }
        }
        Ok(())
    }
    let mut total = 0;
    for root in roots {
        walk(root, &mut total, limit, deadline)?;
    }
    Ok(total)
}

fn dir(root: &Path, path: &str) -> Result<Dir, String> {
    Dir::open_ambient_dir(root, ambient_authority()).map_err(|e| format!("{path}: {e}"))
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
    fn paths_resolve_inside_their_directories_only() {
        let dirs = TestDirs::new();
        std::fs::write(dirs.input.join("a"), "a").unwrap();
        std::fs::write(dirs.root.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", dirs.work.join("escape")).unwrap();
        let fs = dirs.fs();
        assert!(fs.open("/inputs/src/a").is_ok());
        assert!(fs.open("/inputs/src/../../secret").is_err());
        assert!(fs.open("/work/escape").is_err());
        assert!(
            fs.open("/inputs/nope/a")
                .unwrap_err()
                .contains("no input named 'nope'")
        );
        assert!(
            fs.open("/etc/passwd")
                .unwrap_err()
                .contains("not under /inputs")
        );
        assert!(
            fs.create("/inputs/src/b")
                .unwrap_err()
                .contains("not under /work or /out")
        );
        assert!(fs.create("/work/../x").is_err());
        assert!(fs.create("/work/escape").is_err());
        assert_eq!(
            std::fs::read(dirs.root.path().join("secret")).unwrap(),
            b"s"
        );
        assert!(fs.create("/out/new").is_ok());
        assert!(dirs.out.join("new").is_file());
    }
}
