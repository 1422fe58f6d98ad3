//! How much a tree holds: its regular files and their bytes. Used for
//! what `kiln gc` frees, how warm a tool cache is, and disk budgets.
//!
//! It never follows a symlink and never fails: what cannot be read counts
//! as nothing (a size is a report, not a check).

use std::fs;
use std::path::Path;

/// Regular files under a path and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

/// The regular files under `path` (itself, if it is one) and their bytes.
pub fn usage(path: &Path) -> Usage {
    usage_up_to(path, u64::MAX)
}

/// [`usage`], looking at no more than `max_entries` entries: a progress
/// report on a tree something else is writing stays quick however many
/// files it holds (what was not looked at counts as nothing).
pub fn usage_up_to(path: &Path, max_entries: u64) -> Usage {
    let mut total = Usage::default();
    let mut stack = vec![path.to_path_buf()];
    let mut seen = 0u64;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > max_entries {
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_file() {
            total.files += 1;
            total.bytes += meta.len();
        } else if meta.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_regular_files_below_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("a"), "12345").unwrap();
        fs::write(dir.path().join("d/b"), "123").unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
        assert_eq!(usage(dir.path()), Usage { files: 2, bytes: 8 });
        assert_eq!(usage(&dir.path().join("a")), Usage { files: 1, bytes: 5 });
        assert_eq!(usage(&dir.path().join("missing")), Usage::default());
    }
}
