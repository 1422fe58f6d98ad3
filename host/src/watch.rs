//! `kiln build --watch`: the files a build reads from the project, and
//! waiting until one of them changes.
//!
//! Watched: kiln.toml, custom recipe files and every `path` input of the
//! targets and their dependencies. A change that an input's `exclude`
//! leaves out (the `result` links kiln itself writes, `.git`, kiln.lock by
//! default) wakes nothing, so a build never triggers the next.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use kiln_core::manifest::{Manifest, RecipeRef, Source, UnknownTarget};
use kiln_core::pathfilter::PathFilter;
use notify::{EventKind, RecursiveMode, Watcher};

/// What one build reads from the project.
#[derive(Debug, Default)]
pub struct Watched {
    /// Directories, each with the filter of the input it is.
    trees: Vec<(PathBuf, PathFilter)>,
    /// Single files (kiln.toml, recipes, file inputs).
    files: Vec<PathBuf>,
}

/// What building `targets` of `manifest` reads; links into `store_dir`
/// (kiln's result links) are outputs, not what a build reads.
pub fn watched(
    manifest: &Manifest,
    targets: &[String],
    store_dir: &Path,
) -> Result<Watched, UnknownTarget> {
    let mut w = Watched::default();
    // Every kiln.toml the build read (a workspace's root and packages).
    w.files.extend(manifest.files.iter().cloned());
    for t in manifest.build_order(targets)? {
        if let RecipeRef::Wasm { path, .. } = &t.recipe {
            w.files.push(path.clone());
        }
        for input in t.inputs.values() {
            if let Source::Path { path, exclude } = &input.source {
                if path.is_dir() {
                    let filter = PathFilter::new(&manifest.source_excludes(path, exclude))
                        .skipping_links_into(store_dir);
                    w.trees.push((path.clone(), filter));
                } else {
                    w.files.push(path.clone());
                }
            }
        }
    }
    Ok(w)
}

impl Watched {
    /// Just one file (a kiln.toml that cannot be read yet).
    pub fn file(path: PathBuf) -> Self {
        Watched {
            trees: Vec::new(),
            files: vec![path],
        }
    }

    /// Whether a change at `path` can change what a build reads.
    pub fn matters(&self, path: &Path) -> bool {
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        self.trees.iter().any(|(root, filter)| {
            let Ok(rel) = path.strip_prefix(root) else {
                return false;
            };
            // Excluded if the path or any directory above it is.
            let mut prefix = String::new();
            for c in rel.components() {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(&c.as_os_str().to_string_lossy());
                let at = root.join(&prefix);
                let is_link = std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_symlink());
                if filter.skips(&prefix, &at, is_link) {
                    return false;
                }
            }
            true
        })
    }

    /// Start watching. Arm before the build: a file saved while it runs
    /// is then seen when [`Armed::wait`] is called, not lost.
    pub fn arm(self) -> notify::Result<Armed> {
        let (tx, rx) = mpsc::channel();
        // A symlink in a watched tree (to `/`, say) is not followed: the
        // build hashes the link, not what it points at, and following it
        // could spend the user's whole inotify watch allowance.
        let mut watcher = notify::RecommendedWatcher::new(
            tx,
            notify::Config::default().with_follow_symlinks(false),
        )?;
        for (dir, _) in &self.trees {
            watcher.watch(dir, RecursiveMode::Recursive)?;
        }
        // A file is watched through its directory: editors replace files
        // by renaming a new one over them.
        for f in &self.files {
            if let Some(dir) = f.parent() {
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
            }
        }
        Ok(Armed {
            watched: self,
            _watcher: watcher,
            events: rx,
        })
    }
}

/// A [`Watched`] set whose changes are being collected.
pub struct Armed {
    watched: Watched,
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
}

impl Armed {
    /// Block until something that [`Watched::matters`] has changed since
    /// [`Watched::arm`]; then wait for `settle` without further changes (an
    /// editor's save is several events) and return the paths that changed.
    pub fn wait(self, settle: Duration) -> notify::Result<Vec<PathBuf>> {
        let stopped = || notify::Error::generic("the watcher stopped");
        let mut changed: Vec<PathBuf> = Vec::new();
        loop {
            let event = if changed.is_empty() {
                self.events.recv().map_err(|_| stopped())?
            } else {
                match self.events.recv_timeout(settle) {
                    Ok(e) => e,
                    Err(mpsc::RecvTimeoutError::Timeout) => return Ok(changed),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(stopped()),
                }
            };
            let event = event?;
            if matches!(event.kind, EventKind::Access(_)) {
                continue;
            }
            for p in event.paths {
                if self.watched.matters(&p) && !changed.contains(&p) {
                    changed.push(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_paths_and_what_is_below_them_do_not_matter() {
        let w = Watched {
            trees: vec![(
                PathBuf::from("/p"),
                PathFilter::new(&[".git".into(), "/result".into(), "/result-*".into()]),
            )],
            files: vec![PathBuf::from("/p/kiln.toml")],
        };
        assert!(w.matters(Path::new("/p/main.go")));
        assert!(w.matters(Path::new("/p/pkg/x.go")));
        assert!(w.matters(Path::new("/p/kiln.toml")));
        assert!(!w.matters(Path::new("/p/result")));
        assert!(!w.matters(Path::new("/p/result-image")));
        assert!(!w.matters(Path::new("/p/.git/objects/ab")));
        assert!(!w.matters(Path::new("/elsewhere/main.go")));
    }
}
