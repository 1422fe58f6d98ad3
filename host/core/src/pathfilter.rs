//! Which entries of a `path` input count: gitignore-like `exclude` patterns,
//! and symlinks into kiln's store (its result links, whatever `-o` named
//! them).
//!
//! A pattern without a `/` matches an entry's name at any depth (`.git`);
//! a pattern starting with `/` is anchored at the input's root (`/result-*`);
//! `*` matches any run of characters except `/`, `?` one character. Pure
//! but for reading a symlink's target.

use std::path::{Path, PathBuf};

/// A set of exclude patterns; the default excludes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFilter {
    patterns: Vec<String>,
    /// Symlinks whose target lies under one of these are left out.
    links_into: Vec<PathBuf>,
}

impl PathFilter {
    /// A filter that leaves out whatever matches one of `patterns`.
    pub fn new(patterns: &[String]) -> Self {
        PathFilter {
            patterns: patterns.to_vec(),
            links_into: Vec::new(),
        }
    }

    /// This filter's symlink rules with `patterns` instead of its own.
    pub fn with_patterns(&self, patterns: &[String]) -> Self {
        PathFilter {
            patterns: patterns.to_vec(),
            links_into: self.links_into.clone(),
        }
    }

    /// Also leave out every symlink pointing under `dir` (the store's
    /// entries, as written and as resolved): kiln's result links are
    /// outputs, never source, whatever they are called.
    pub fn skipping_links_into(mut self, dir: &Path) -> Self {
        self.links_into.push(dir.to_path_buf());
        if let Ok(real) = dir.canonicalize()
            && real != dir
        {
            self.links_into.push(real);
        }
        self
    }

    /// Whether the entry `rel` at `path` is left out: it matches a pattern,
    /// or it is a symlink (`is_symlink`, from the walker's own `lstat`)
    /// into a directory [`Self::skipping_links_into`] named.
    pub fn skips(&self, rel: &str, path: &Path, is_symlink: bool) -> bool {
        self.excludes(rel)
            || (is_symlink
                && !self.links_into.is_empty()
                && std::fs::read_link(path)
                    .is_ok_and(|t| self.links_into.iter().any(|d| t.starts_with(d))))
    }

    /// Whether `rel` (a `/`-separated path relative to the root) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.patterns.iter().any(|p| match p.strip_prefix('/') {
            Some(anchored) => glob_match(anchored.as_bytes(), rel.as_bytes()),
            None if p.contains('/') => glob_match(p.as_bytes(), rel.as_bytes()),
            None => glob_match(p.as_bytes(), name.as_bytes()),
        })
    }
}

/// `parent/name`, or `name` at the root.
pub fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `text` matches `pattern`: `*` any run of characters but `/`,
/// `?` one character but `/`. Linear: on a mismatch only the last `*` is
/// extended (no star can cross a `/`, so an earlier one could not help),
/// never an exponential search (`*a*a*a*a*b` against a long name).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where in the
    // text that star's run ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == text[t] || (c == b'?' && text[t] != b'/') => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, end)) if text[end] != b'/' => {
                    star = Some((resume, end + 1));
                    p = resume;
                    t = end + 1;
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_in_linear_time() {
        assert!(glob_match(b"*.go", b"main.go"));
        assert!(glob_match(b"a*/b", b"ax/b"));
        assert!(!glob_match(b"*", b"a/b"));
        assert!(!glob_match(b"a?b", b"a/b"));
        assert!(glob_match(b"result-*", b"result-image"));
        assert!(glob_match(b"*/*", b"a/b"));
        assert!(!glob_match(b"*/*c", b"x/y/zc"));
        assert!(glob_match(b"**", b""));
        // Exponential backtracking would not return from this one.
        let long = vec![b'a'; 255];
        assert!(!glob_match(
            b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
            &long
        ));
    }

    #[test]
    fn links_into_the_store_are_skipped_whatever_their_name() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("store");
        std::fs::create_dir_all(store.join("abc-out")).unwrap();
        let link = d.path().join("release-1.0");
        std::os::unix::fs::symlink(store.join("abc-out"), &link).unwrap();
        let other = d.path().join("docs-link");
        std::os::unix::fs::symlink("README.md", &other).unwrap();
        let filter = PathFilter::default().skipping_links_into(&store);
        assert!(filter.skips("release-1.0", &link, true));
        assert!(!filter.skips("docs-link", &other, true));
        assert!(!PathFilter::default().skips("release-1.0", &link, true));
        // A directory is never read as a link.
        assert!(!filter.skips("store", &store, false));
    }

    fn f(p: &[&str]) -> PathFilter {
        PathFilter::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_match_at_any_depth_and_anchors_only_at_the_root() {
        let filter = f(&[".git", "/result-*", "/result", "*.tmp"]);
        assert!(filter.excludes(".git"));
        assert!(filter.excludes("sub/.git"));
        assert!(filter.excludes("result"));
        assert!(filter.excludes("result-image"));
        assert!(!filter.excludes("pkg/result"));
        assert!(!filter.excludes("results"));
        assert!(filter.excludes("a/b/c.tmp"));
        assert!(!filter.excludes("main.go"));
    }

    #[test]
    fn star_does_not_cross_directories() {
        assert!(!f(&["/a*c"]).excludes("ab/c"));
        assert!(f(&["/a*c"]).excludes("abbc"));
    }
}
