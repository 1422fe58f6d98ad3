//! Which entries of a `path` input count: gitignore-like `exclude` patterns.
//!
//! A pattern without a `/` matches an entry's name at any depth (`.git`);
//! a pattern starting with `/` is anchored at the input's root (`/result-*`);
//! `*` matches any run of characters except `/`, `?` one character. Pure.

/// A set of exclude patterns; the default excludes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFilter {
    patterns: Vec<String>,
}

impl PathFilter {
    /// A filter that leaves out whatever matches one of `patterns`.
    pub fn new(patterns: &[String]) -> Self {
        PathFilter {
            patterns: patterns.to_vec(),
        }
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

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => {
            text.first().is_some_and(|&c| c != b'/') && glob_match(rest, &text[1..])
        }
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
