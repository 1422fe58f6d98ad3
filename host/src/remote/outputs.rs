//! An ActionResult written back to the step's writable directories, after
//! the checks a local run's output gets: every path inside an output the
//! step declared, every name one plain component and unique in its
//! directory, every blob matching its digest, the total within the disk
//! budget. Each output is built beside its directory, then moved in entry
//! by entry (the directory itself stays: the recipe holds it open), files
//! that did not change left as they are. A refused answer leaves the
//! directories as they were.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, Digest, Directory, Tree,
};
use prost::Message;

use super::RemoteError;
use super::action::Output;
use super::client::Client;
use super::merkle::{self, Blobs, FileMemo, Source};

/// Deepest directory nesting and most entries an output may have.
const MAX_DEPTH: usize = 256;
const MAX_ENTRIES: usize = 1_000_000;
/// The largest Tree message kiln reads (it is held in memory).
const MAX_TREE: u64 = 64 << 20;
/// What each directory and link is charged against the disk budget (a
/// filesystem block), besides the bytes files hold.
const ENTRY_COST: u64 = 4096;

/// Replace each of `outputs` with what `result` holds for it. `wd` is the
/// step's working directory (result paths are relative to it); `known`
/// are blobs this machine has (files come from there when they can);
/// `budget` the bytes the outputs may hold together.
pub fn write_back(
    client: &Client,
    result: &ActionResult,
    outputs: &[Output],
    wd: &str,
    known: &Blobs,
    memo: &FileMemo,
    budget: u64,
) -> Result<(), RemoteError> {
    let allowed = outputs
        .iter()
        .map(|o| o.guest.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let mut trees: HashMap<String, Digest> = HashMap::new();
    #[allow(deprecated)] // Old engines still fill these; none may be set.
    let mut stray = result
        .output_files
        .iter()
        .map(|f| &f.path)
        .chain(result.output_symlinks.iter().map(|l| &l.path))
        .chain(result.output_file_symlinks.iter().map(|l| &l.path))
        .chain(result.output_directory_symlinks.iter().map(|l| &l.path));
    if let Some(path) = stray.next() {
        // Every output kiln names is a directory: a file or link at one of
        // them, or anywhere else, is not an answer to this action.
        return Err(RemoteError::Escapes {
            path: super::clean(path),
            allowed,
        });
    }
    for d in &result.output_directories {
        let guest = resolve(wd, &d.path).ok_or_else(|| RemoteError::Escapes {
            path: super::clean(&d.path),
            allowed: allowed.clone(),
        })?;
        if !outputs.iter().any(|o| o.guest == guest) {
            return Err(RemoteError::Escapes {
                path: super::clean(&d.path),
                allowed,
            });
        }
        let tree = d.tree_digest.clone().ok_or_else(|| {
            RemoteError::Protocol(format!(
                "output {} has no tree digest",
                super::clean(&d.path)
            ))
        })?;
        trees.insert(guest, tree);
    }
    let mut left = budget;
    // Each output is built in a fresh private directory beside it (same
    // filesystem: moved in by rename), removed whatever happens.
    let mut staged: Vec<(Staging, PathBuf)> = Vec::new();
    for o in outputs {
        let tree = trees
            .get(&o.guest)
            .ok_or_else(|| RemoteError::MissingOutput {
                path: o.guest.clone(),
                allowed: allowed.clone(),
            })?;
        let parent = o.host.parent().unwrap_or(Path::new("/"));
        let dir = Staging(
            tempfile::Builder::new()
                .prefix(".kiln-remote-")
                .tempdir_in(parent)
                .map_err(|e| write_err(parent, e))?
                .keep(),
        );
        let tree = fetch_tree(client, tree, left)?;
        let used = materialize(client, &tree, &dir.0.join("d"), known, left)?;
        left = left.saturating_sub(used);
        staged.push((dir, o.host.clone()));
    }
    // Every output passed: only now is anything the step sees changed.
    for (dir, host) in &staged {
        sync_dir(&dir.0.join("d"), host, memo).map_err(|e| write_err(host, e))?;
    }
    Ok(())
}

/// A staging directory, removed when dropped.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// `path` (relative to `wd`) as a sandbox path, if it stays inside the
/// input root and names no `.` or empty component past `..`.
fn resolve(wd: &str, path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = wd.split('/').filter(|p| !p.is_empty()).collect();
    for c in path.split('/') {
        match c {
            "" | "." => return None,
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The Tree message `digest` names, checked.
fn fetch_tree(client: &Client, digest: &Digest, budget: u64) -> Result<Tree, RemoteError> {
    let bytes = client.read_blob(digest, budget.min(MAX_TREE))?;
    Tree::decode(bytes.as_slice())
        .map_err(|e| RemoteError::Protocol(format!("an output tree that does not decode: {e}")))
}

/// A file to write: where, what, and its executable bit.
struct Pending {
    path: PathBuf,
    digest: Digest,
    executable: bool,
}

/// Build `tree` at `dest` (which must not exist); the bytes its files hold.
fn materialize(
    client: &Client,
    tree: &Tree,
    dest: &Path,
    known: &Blobs,
    budget: u64,
) -> Result<u64, RemoteError> {
    let mut children: HashMap<String, &Directory> = HashMap::new();
    for c in &tree.children {
        children.insert(merkle::digest_of(&c.encode_to_vec()).hash, c);
    }
    let root = tree
        .root
        .as_ref()
        .ok_or_else(|| RemoteError::Protocol("an output tree without a root".into()))?;
    let mut files: Vec<Pending> = Vec::new();
    let mut entries = 0usize;
    layout(root, dest, &children, &mut files, &mut entries, 0)?;
    let total = files
        .iter()
        .try_fold(entries as u64 * ENTRY_COST, |sum, f| {
            sum.checked_add(f.digest.size_bytes as u64)
        })
        .unwrap_or(u64::MAX);
    if total > budget {
        return Err(RemoteError::TooLarge {
            digest: format!("tree of {total} bytes"),
            budget,
        });
    }
    let mut remote: HashMap<String, Vec<&Pending>> = HashMap::new();
    for f in &files {
        match known.by_hash.get(&f.digest.hash) {
            Some((_, Source::File(src))) if copy_known(src, f)? => {}
            Some((_, Source::Bytes(b))) => write_file(f, b)?,
            _ => remote.entry(f.digest.hash.clone()).or_default().push(f),
        }
    }
    let wanted: Vec<Digest> = remote.values().map(|v| v[0].digest.clone()).collect();
    client.read_many(&wanted, |d, data| {
        for f in remote.get(&d.hash).map(Vec::as_slice).unwrap_or_default() {
            write_file(f, &data)?;
        }
        Ok(())
    })?;
    Ok(total)
}

/// Create the directories and links of `dir` at `at`, and list its files.
fn layout(
    dir: &Directory,
    at: &Path,
    children: &HashMap<String, &Directory>,
    files: &mut Vec<Pending>,
    entries: &mut usize,
    depth: usize,
) -> Result<(), RemoteError> {
    if depth > MAX_DEPTH {
        return Err(RemoteError::Protocol(format!(
            "an output tree deeper than {MAX_DEPTH} directories"
        )));
    }
    fs::create_dir(at).map_err(|e| write_err(at, e))?;
    let mut names = std::collections::HashSet::new();
    let mut name_ok = |name: &str, entries: &mut usize| -> Result<PathBuf, RemoteError> {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(RemoteError::Protocol(format!(
                "an output tree of more than {MAX_ENTRIES} entries"
            )));
        }
        if name.len() > 255 || !merkle::is_plain_name(name) || !names.insert(name.to_string()) {
            return Err(RemoteError::Escapes {
                path: super::clean(name),
                allowed: "plain names, each once per directory".into(),
            });
        }
        Ok(at.join(name))
    };
    for f in &dir.files {
        let path = name_ok(&f.name, entries)?;
        let digest = f.digest.clone().ok_or_else(|| {
            RemoteError::Protocol(format!("file {} has no digest", super::clean(&f.name)))
        })?;
        super::client::check_digest(&digest)?;
        files.push(Pending {
            path,
            digest,
            executable: f.is_executable,
        });
    }
    for l in &dir.symlinks {
        let path = name_ok(&l.name, entries)?;
        if l.target.is_empty() || l.target.contains('\0') {
            return Err(RemoteError::Protocol(format!(
                "link {} has an empty or malformed target",
                super::clean(&l.name)
            )));
        }
        std::os::unix::fs::symlink(&l.target, &path).map_err(|e| write_err(&path, e))?;
    }
    for sub in &dir.directories {
        let path = name_ok(&sub.name, entries)?;
        let child = sub
            .digest
            .as_ref()
            .and_then(|d| children.get(&d.hash))
            .ok_or_else(|| {
                RemoteError::Protocol(format!(
                    "directory {} is missing from its output tree",
                    super::clean(&sub.name)
                ))
            })?;
        layout(child, &path, children, files, entries, depth + 1)?;
    }
    Ok(())
}

/// Copy a file this machine already has for `f`; false if it changed
/// since it was hashed (then it is downloaded).
fn copy_known(src: &Path, f: &Pending) -> Result<bool, RemoteError> {
    let Ok(data) = fs::read(src) else {
        return Ok(false);
    };
    if merkle::digest_of(&data) != f.digest {
        return Ok(false);
    }
    write_file(f, &data)?;
    Ok(true)
}

fn write_file(f: &Pending, data: &[u8]) -> Result<(), RemoteError> {
    let mode = if f.executable { 0o755 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&f.path)
        .map_err(|e| write_err(&f.path, e))?;
    file.write_all(data).map_err(|e| write_err(&f.path, e))
}

fn write_err(path: &Path, e: std::io::Error) -> RemoteError {
    RemoteError::Setup(format!(
        "cannot write {}: {e}",
        super::clean(&path.display().to_string())
    ))
}

/// Make `dst` hold what `src` holds, moving entries from `src`: what
/// `src` lacks is removed, a file with the same bytes and executable bit
/// is kept as it is (so it is not hashed again), the rest is moved in.
fn sync_dir(src: &Path, dst: &Path, memo: &FileMemo) -> std::io::Result<()> {
    let dst_meta = fs::symlink_metadata(dst)?;
    if dst_meta.permissions().mode() & 0o200 == 0 {
        fs::set_permissions(dst, fs::Permissions::from_mode(0o755))?;
    }
    for e in fs::read_dir(dst)? {
        let name = e?.file_name();
        if fs::symlink_metadata(src.join(&name)).is_err() {
            remove_any(&dst.join(&name))?;
        }
    }
    for e in fs::read_dir(src)? {
        let name = e?.file_name();
        let (s, d) = (src.join(&name), dst.join(&name));
        let sm = fs::symlink_metadata(&s)?;
        let dm = fs::symlink_metadata(&d).ok();
        if sm.is_dir() && dm.as_ref().is_some_and(|m| m.is_dir()) {
            sync_dir(&s, &d, memo)?;
            continue;
        }
        if sm.is_file()
            && let Some(dm) = &dm
            && dm.is_file()
            && dm.len() == sm.len()
            && (dm.permissions().mode() & 0o100) == (sm.permissions().mode() & 0o100)
            && memo.same_content(&s, &sm, &d, dm)
        {
            continue;
        }
        if dm.is_some() {
            remove_any(&d)?;
        }
        fs::rename(&s, &d)?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if m.is_dir() {
        remove_tree(path)
    } else {
        fs::remove_file(path)
    }
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let _ = kiln_core::store::make_writable(path);
    fs::remove_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn result_paths_resolve_inside_the_root_only() {
        assert_eq!(resolve("work", "../out").as_deref(), Some("/out"));
        assert_eq!(resolve("work/m", "../../work").as_deref(), Some("/work"));
        assert_eq!(resolve("", "out").as_deref(), Some("/out"));
        assert_eq!(resolve("work", "../../etc"), None);
        assert_eq!(resolve("work", "/out"), None);
        assert_eq!(resolve("work", "a//b"), None);
    }
}
