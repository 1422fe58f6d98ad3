//! The content-addressed store under `$KILN_HOME`.
//!
//! ```text
//! $KILN_HOME/store/<nix32>-<name>     read-only entries: inputs and outputs
//! $KILN_HOME/digests/<entry>          the whole sha256 an entry is named by
//! $KILN_HOME/outputs/<key hex>        which entry a build key produced
//! $KILN_HOME/records/<entry>.json     the build record of an output entry
//! $KILN_HOME/listings/<entry>.json    an entry's per-file listing (audit --diff)
//! $KILN_HOME/checks/<entry>           a `--check` rebuild that differed
//! $KILN_HOME/trees/<entry>.pb         an entry's REAPI Merkle tree (remote execution)
//! $KILN_HOME/hashcache/<id>           stat fingerprints of path inputs
//! $KILN_HOME/caches/<scope>/          tool caches of one project target
//! $KILN_HOME/compiled/                compiled recipes (unless KILN_COMPILE_CACHE)
//! $KILN_HOME/tmp/                     staging, on the same filesystem
//! $KILN_HOME/locks/                   one lock file per build key, and gc.lock
//! ```
//!
//! This module is the only one that knows this layout: everyone else asks
//! [`Store`] for a path.
//!
//! An entry's name carries only the first 32 nix32 characters of its hash
//! (160 bits, as Nix's store paths do), so a name alone cannot say which
//! hash an entry holds: a pin that differs from it in the other 96 bits has
//! the same name. Every lookup by hash ([`Store::entry`],
//! [`Store::find_by_hash`]) therefore compares the whole digest, kept beside
//! the entry under `digests/` when it is committed; an entry without one
//! (a store from before) is found by no lookup until a commit of the same
//! content records it.
//!
//! Every write follows one pattern: fill a temp directory under `tmp/`,
//! make it read-only, fsync, then rename into `store/`. A killed build
//! leaves at most a stray temp directory, never a partial entry. This module
//! only moves bytes; deciding what to build is the orchestrator's job.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::hash::Sha256Hash;
use crate::nar::{self, NarError};
use crate::pathfilter::{PathFilter, join_rel};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nar(#[from] NarError),
    #[error(
        "{path} changed while it was being added to the store (hashed {expected}, copied {got}); retry when nothing writes to it"
    )]
    Changed {
        path: PathBuf,
        expected: Sha256Hash,
        got: Sha256Hash,
    },
    #[error(
        "{entry} holds sha256:{held}, which shares its name with {wanted}: a hash that differs only past the part a store name shows. Check the hash (kiln hash convert --to hex)"
    )]
    NameTaken {
        entry: PathBuf,
        held: String,
        wanted: Sha256Hash,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A handle on `$KILN_HOME`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock, released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs::File,
}

impl StoreLock {
    /// A lock just taken: say who holds it, for the next one to wait (a
    /// hint, never trusted).
    fn mine(mut file: fs::File) -> StoreLock {
        use std::io::{Seek, Write};
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        StoreLock { _file: file }
    }
}

impl Store {
    /// Where the store lives unless told otherwise: `$KILN_HOME`, else
    /// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln` (None without `HOME`).
    pub fn default_root() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(h) = var("KILN_HOME") {
            return Some(PathBuf::from(h));
        }
        if let Some(c) = var("XDG_CACHE_HOME") {
            return Some(PathBuf::from(c).join("kiln"));
        }
        var("HOME").map(|h| PathBuf::from(h).join(".cache/kiln"))
    }

    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["store", "outputs", "tmp", "locks"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// `$KILN_HOME`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding every entry.
    pub fn entries_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Every entry, sorted.
    pub fn entries(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.entries_dir();
        let mut v: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(io_at(&dir))?;
        v.sort();
        Ok(v)
    }

    /// Where the build record of the output entry `entry` lives.
    pub fn record_path(&self, entry: &Path) -> PathBuf {
        self.sidecar("records", entry, ".json")
    }

    /// Where the per-file listing of `entry` is cached.
    pub fn listing_path(&self, entry: &Path) -> PathBuf {
        self.sidecar("listings", entry, ".json")
    }

    /// Where a `--check` rebuild of `entry` that differed is kept.
    pub fn check_path(&self, entry: &Path) -> PathBuf {
        self.sidecar("checks", entry, "")
    }

    /// Where compiled recipes are cached by default.
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    /// Where the tool caches of one project target live (`scope` names
    /// the project and target); `kiln gc` trims them.
    pub fn tool_cache_dir(&self, scope: &Sha256Hash) -> PathBuf {
        self.tool_caches_dir().join(&scope.to_hex()[..32])
    }

    /// The directory holding every target's tool caches.
    pub fn tool_caches_dir(&self) -> PathBuf {
        self.root.join("caches")
    }

    /// The index of cache seeds: one file per seed, naming the store entry
    /// that holds its result and the items it holds.
    pub fn seeds_dir(&self) -> PathBuf {
        self.root.join("seeds")
    }

    /// The directory of the input-hash cache.
    pub fn hashcache_dir(&self) -> PathBuf {
        self.root.join("hashcache")
    }

    /// Where `entry`'s REAPI Merkle tree is cached (remote execution).
    pub fn tree_path(&self, entry: &Path) -> PathBuf {
        self.sidecar("trees", entry, ".pb")
    }

    /// Files that describe an entry and die with it (records, listings).
    pub fn sidecars(&self, entry: &Path) -> [PathBuf; 4] {
        [
            self.record_path(entry),
            self.listing_path(entry),
            self.digest_path(entry),
            self.tree_path(entry),
        ]
    }

    /// Where the whole hash `entry` was committed under is kept.
    fn digest_path(&self, entry: &Path) -> PathBuf {
        self.sidecar("digests", entry, "")
    }

    /// The whole hash `entry` was committed under, if the store recorded it.
    pub fn digest_of(&self, entry: &Path) -> Option<Sha256Hash> {
        let text = read_small(&self.digest_path(entry)).ok()?;
        Sha256Hash::parse(&format!("sha256:{}", text.trim())).ok()
    }

    /// Whether `entry` was committed under exactly `hash` (all 256 bits,
    /// not only the part its name shows).
    pub fn holds(&self, entry: &Path, hash: &Sha256Hash) -> bool {
        let Ok(text) = read_small(&self.digest_path(entry)) else {
            return false;
        };
        text.trim() == hash.to_hex() && fs::symlink_metadata(entry).is_ok()
    }

    /// Remember that `entry` is named by the whole `hash`; refuse when it
    /// is already named by another hash that shares its 160-bit name.
    fn record_digest(&self, entry: &Path, hash: &Sha256Hash) -> Result<(), StoreError> {
        let path = self.digest_path(entry);
        match read_small(&path) {
            Ok(text) if text.trim() == hash.to_hex() => Ok(()),
            Ok(text) if !text.trim().is_empty() => Err(StoreError::NameTaken {
                entry: entry.to_path_buf(),
                held: text.trim().to_string(),
                wanted: *hash,
            }),
            _ => write_atomic(&path, hash.to_hex().as_bytes(), Existing::Replace)
                .map(|_| ())
                .map_err(io_at(&path)),
        }
    }

    fn sidecar(&self, dir: &str, entry: &Path, ext: &str) -> PathBuf {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.root.join(dir).join(format!("{name}{ext}"))
    }

    /// The store path an entry named `name` with `hash` has (whether or not it exists).
    pub fn entry_path(&self, hash: &Sha256Hash, name: &str) -> PathBuf {
        self.entries_dir()
            .join(format!("{}-{name}", &hash.to_nix32()[..32]))
    }

    /// The entry `<hash>-<name>`, if the store holds it under exactly `hash`.
    pub fn entry(&self, hash: &Sha256Hash, name: &str) -> Option<PathBuf> {
        let path = self.entry_path(hash, name);
        self.holds(&path, hash).then_some(path)
    }

    /// The entry called `name` (a record or a cache names it), if the
    /// store has one. `name` must be one plain entry name: anything that
    /// could lead elsewhere (`..`, `/`, an empty name) names nothing.
    pub fn entry_named(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0');
        let path = self.entries_dir().join(name);
        (plain && fs::symlink_metadata(&path).is_ok()).then_some(path)
    }

    /// The entry a host path lies in: an entry, a path inside one, or a
    /// link (like `result`) to either. `Ok(None)` when it resolves outside
    /// the store; `Err` when it cannot be resolved at all.
    pub fn entry_containing(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let real = fs::canonicalize(path)?;
        let dir = self.entries_dir();
        let dir = fs::canonicalize(&dir).unwrap_or(dir);
        Ok(real
            .strip_prefix(&dir)
            .ok()
            .and_then(|rel| rel.components().next())
            .map(|first| dir.join(first)))
    }

    /// The entry holding content with `hash`, whatever its name.
    pub fn find_by_hash(&self, hash: &Sha256Hash) -> Option<PathBuf> {
        let prefix = format!("{}-", &hash.to_nix32()[..32]);
        fs::read_dir(self.root.join("store"))
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .find(|p| self.holds(p, hash))
    }

    /// A fresh staging directory on the store's filesystem, removed on drop.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, StoreError> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(io_at(&tmp))
    }

    /// Hold the store for use (a build, a lock, a fetch): any number of kiln
    /// processes may, while `kiln gc` waits for them all to let go.
    pub fn hold_for_use(&self) -> Result<StoreLock, StoreError> {
        let file = self.gc_lock_file()?;
        file.lock_shared()
            .map_err(io_at(&self.root.join("locks/gc.lock")))?;
        Ok(StoreLock { _file: file })
    }

    /// Whether the store could be held for use right now (false: `kiln
    /// gc` holds it alone). The hold is let go at once.
    pub fn try_hold_for_use(&self) -> Result<bool, StoreError> {
        let file = self.gc_lock_file()?;
        match file.try_lock_shared() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(io_at(&self.root.join("locks/gc.lock"))(e)),
        }
    }

    /// Hold the store alone, for `kiln gc`: no build runs meanwhile, so
    /// nothing it resolved can be deleted and everything under `tmp/` is a
    /// leftover of a killed process.
    pub fn hold_for_gc(&self) -> Result<StoreLock, StoreError> {
        let file = self.gc_lock_file()?;
        file.lock()
            .map_err(io_at(&self.root.join("locks/gc.lock")))?;
        Ok(StoreLock { _file: file })
    }

    fn gc_lock_file(&self) -> Result<fs::File, StoreError> {
        let p = self.root.join("locks").join("gc.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_at(&p))
    }

    /// Delete everything under `tmp/`: staging left by killed processes.
    /// Only call this holding [`Self::hold_for_gc`]. Returns how many.
    pub fn clear_staging(&self) -> Result<usize, StoreError> {
        let tmp = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let p = e.map_err(io_at(&tmp))?.path();
            make_writable(&p).ok();
            remove_any(&p).map_err(io_at(&p))?;
            n += 1;
        }
        Ok(n)
    }

    /// Delete every named lock's file (one is left per target ever built):
    /// only call this holding [`Self::hold_for_gc`], when no build holds or
    /// waits for one (every lock is taken while holding the store for use).
    /// Returns how many.
    pub fn clear_locks(&self) -> Result<usize, StoreError> {
        let dir = self.root.join("locks");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let e = e.map_err(io_at(&dir))?;
            if e.file_name() != "gc.lock" && e.file_type().is_ok_and(|t| !t.is_dir()) {
                fs::remove_file(e.path()).map_err(io_at(&e.path()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Take the lock named `name` (e.g. a build key), waiting for other kiln
    /// processes that hold it.
    pub fn lock(&self, name: &str) -> Result<StoreLock, StoreError> {
        self.lock_or_wait(name, |_| {})
    }

    /// [`Self::lock`], calling `waiting` with the holder's pid (as it wrote
    /// it in the lock file) before blocking, when another process holds it.
    pub fn lock_or_wait(
        &self,
        name: &str,
        waiting: impl FnOnce(Option<u32>),
    ) -> Result<StoreLock, StoreError> {
        match self.try_lock(name)? {
            Ok(lock) => Ok(lock),
            Err(holder) => {
                waiting(holder);
                let (p, file) = self.lock_file(name)?;
                file.lock().map_err(io_at(&p))?;
                Ok(StoreLock::mine(file))
            }
        }
    }

    /// The lock named `name` if no other process holds it; otherwise the
    /// holder's pid, as it wrote it (a hint).
    pub fn try_lock(&self, name: &str) -> Result<Result<StoreLock, Option<u32>>, StoreError> {
        let (p, file) = self.lock_file(name)?;
        match file.try_lock() {
            Ok(()) => Ok(Ok(StoreLock::mine(file))),
            Err(fs::TryLockError::WouldBlock) => {
                Ok(Err(read_small(&p).ok().and_then(|t| t.trim().parse().ok())))
            }
            Err(fs::TryLockError::Error(e)) => Err(io_at(&p)(e)),
        }
    }

    fn lock_file(&self, name: &str) -> Result<(PathBuf, fs::File), StoreError> {
        let p = self.root.join("locks").join(format!("{name}.lock"));
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            // It is written to: never through a link planted in its place.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&p)
            .map_err(io_at(&p))?;
        Ok((p, file))
    }

    /// Add `staged` (a file or directory in this store's `tmp/`) as the
    /// entry `<hash>-<name>`: make it read-only, fsync it, rename it in.
    /// If the entry exists already, `staged` is discarded and the existing
    /// entry returned. `hash` is what the caller computed for `staged` (its
    /// content hash, or an output's build key), never a hash it was told.
    pub fn commit(
        &self,
        staged: &Path,
        hash: &Sha256Hash,
        name: &str,
    ) -> Result<PathBuf, StoreError> {
        if fs::symlink_metadata(self.entry_path(hash, name)).is_err() {
            make_read_only_and_sync(staged)?;
        }
        self.commit_sealed(staged, hash, name)
    }

    /// [`Store::commit`] for a tree [`hash_and_seal`] already made read-only
    /// and synced.
    pub fn commit_sealed(
        &self,
        staged: &Path,
        hash: &Sha256Hash,
        name: &str,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.entry_path(hash, name);
        // Named before it exists: a lookup never finds an entry whose
        // whole hash is unknown.
        self.record_digest(&dest, hash)?;
        if fs::symlink_metadata(&dest).is_ok() {
            make_writable(staged).ok();
            remove_any(staged).ok();
            return Ok(dest);
        }
        match move_sealed(staged, &dest) {
            Ok(()) => {}
            // Another process committed the same entry first: same content.
            Err(_) if fs::symlink_metadata(&dest).is_ok() => {
                make_writable(staged).ok();
                remove_any(staged).ok();
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: dest,
                    source: e,
                });
            }
        }
        let store_dir = self.root.join("store");
        fs::File::open(&store_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&store_dir))?;
        Ok(dest)
    }

    /// Copy `src` (filtered) into the store as `name`, checking that what was
    /// copied hashes to `expected` (the hash of `src` taken before).
    pub fn add_path(
        &self,
        src: &Path,
        filter: &PathFilter,
        name: &str,
        expected: &Sha256Hash,
    ) -> Result<PathBuf, StoreError> {
        if let Some(dest) = self.entry(expected, name) {
            return Ok(dest);
        }
        let tmp = self.temp_dir("add-")?;
        let staged = tmp.path().join("entry");
        copy_tree(src, &staged, "", filter)?;
        let got = content_hash(&staged, &PathFilter::default())?;
        if got != *expected {
            return Err(StoreError::Changed {
                path: src.to_path_buf(),
                expected: *expected,
                got,
            });
        }
        self.commit(&staged, expected, name)
    }

    /// The entry a build with `key` produced, if it is still in the store,
    /// and its output hash when the index remembers it (a no-op then reads
    /// no build record).
    pub fn lookup_output(&self, key: &Sha256Hash) -> Option<(PathBuf, Option<Sha256Hash>)> {
        let text = read_small(&self.root.join("outputs").join(key.to_hex())).ok()?;
        let mut lines = text.lines();
        let name = lines.next()?.trim();
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None;
        }
        let hash = lines.next().and_then(|h| Sha256Hash::parse(h.trim()).ok());
        let path = self.root.join("store").join(name);
        path.exists().then_some((path, hash))
    }

    /// Remember that the build with `key` produced `entry`, whose NAR hash
    /// is `output_hash` when the caller knows it.
    pub fn record_output(
        &self,
        key: &Sha256Hash,
        entry: &Path,
        output_hash: Option<&Sha256Hash>,
    ) -> Result<(), StoreError> {
        let mut text = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(h) = output_hash {
            text = format!("{text}\n{}\n", h.to_sri());
        }
        let dest = self.root.join("outputs").join(key.to_hex());
        write_atomic(&dest, text.as_bytes(), Existing::Replace).map_err(io_at(&dest))?;
        Ok(())
    }
}

/// The hash kiln gives content: a regular file's flat sha256 (`nix hash
/// file`), or for a directory the NAR hash (`nix hash path`).
pub fn content_hash(path: &Path, filter: &PathFilter) -> Result<Sha256Hash, NarError> {
    let meta = fs::symlink_metadata(path).map_err(|source| NarError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        let f = fs::File::open(path).map_err(|source| NarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return Sha256Hash::of_reader(f).map_err(|source| NarError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    nar::hash_path_filtered(path, filter)
}

/// Copy a file, directory or symlink, keeping only what NAR keeps: content,
/// the executable bit, symlink targets.
pub fn copy_tree(src: &Path, dst: &Path, rel: &str, filter: &PathFilter) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(src).map_err(io_at(src))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_at(src))?;
        symlink(&target, dst).map_err(io_at(dst))?;
    } else if ft.is_dir() {
        fs::create_dir(dst).map_err(io_at(dst))?;
        for entry in fs::read_dir(src).map_err(io_at(src))? {
            let entry = entry.map_err(io_at(src))?;
            let name = entry.file_name();
            let child_rel = join_rel(rel, &name.to_string_lossy());
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if filter.skips(&child_rel, &entry.path(), is_link) {
                continue;
            }
            copy_tree(&entry.path(), &dst.join(&name), &child_rel, filter)?;
        }
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(io_at(src))?;
        let mode = if meta.permissions().mode() & 0o100 != 0 {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io_at(dst))?;
    } else {
        return Err(NarError::Unsupported {
            path: src.to_path_buf(),
            kind: "special file",
        }
        .into());
    }
    Ok(())
}

/// The NAR hash of a staged output, computed while another thread makes it
/// read-only and fsyncs it for [`Store::commit_sealed`]: the disk writes
/// overlap the hashing. Modes change only in ways NAR ignores.
pub fn hash_and_seal(staged: &Path) -> Result<Sha256Hash, StoreError> {
    std::thread::scope(|scope| {
        let sealing = scope.spawn(|| make_read_only_and_sync(staged));
        let hash = nar::hash_path(staged);
        let sealed = sealing
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        sealed?;
        Ok(hash?)
    })
}

/// Normalise modes (0555/0444 by the executable bit, dirs 0555) and fsync.
fn make_read_only_and_sync(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_at(path))? {
            make_read_only_and_sync(&entry.map_err(io_at(path))?.path())?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o555)).map_err(io_at(path))?;
        fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io_at(path))?;
    } else if meta.is_file() {
        let mode = if meta.permissions().mode() & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_at(path))?;
        fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io_at(path))?;
    }
    Ok(())
}

/// Give the owner write access again, so a tree can be deleted.
pub fn make_writable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(path)? {
            make_writable(&entry?.path())?;
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode() | 0o200;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Rename a sealed file or directory. Moving a directory to another parent
/// rewrites its `..`, which needs write permission on it: a non-root user
/// cannot move a sealed (0555) directory. It is opened for the rename and
/// sealed again after, wherever it ends up.
pub fn move_sealed(from: &Path, to: &Path) -> io::Result<()> {
    let is_dir = fs::symlink_metadata(from).is_ok_and(|m| m.is_dir());
    if is_dir {
        fs::set_permissions(from, fs::Permissions::from_mode(0o755))?;
    }
    let renamed = fs::rename(from, to);
    if is_dir {
        let sealed = if renamed.is_ok() { to } else { from };
        fs::set_permissions(sealed, fs::Permissions::from_mode(0o555))?;
    }
    renamed
}

/// Whether [`write_atomic`] may replace a file that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (caches, kiln.lock, links).
    Replace,
    /// Keep it: the first writer wins (build records describe the run that
    /// made their entry). Returns `Ok(false)` when the file was there.
    Keep,
}

/// Write `bytes` to `path` so that no reader ever sees a partial file: into
/// a temp file beside it, then renamed over it (or linked, with
/// [`Existing::Keep`]). Creates `path`'s directory. The one way kiln writes
/// a file others may read concurrently; returns whether it wrote.
pub fn write_atomic(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<bool> {
    if existing == Existing::Keep && fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-write-")
        .tempfile_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    match existing {
        Existing::Replace => tmp.persist(path).map(|_| true).map_err(|e| e.error),
        Existing::Keep => match tmp.persist_noclobber(path) {
            Ok(_) => Ok(true),
            Err(_) if fs::symlink_metadata(path).is_ok() => Ok(false),
            Err(e) => Err(e.error),
        },
    }
}

/// A sidecar's text (kiln's own small file, never a link or a FIFO).
fn read_small(path: &Path) -> io::Result<String> {
    crate::sidefile::read_to_string(path, crate::sidefile::Links::Refuse, 4096)
}

fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_from_records_stay_in_the_store() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        fs::create_dir(store.entries_dir().join("abc-x")).unwrap();
        fs::write(home.path().join("outside"), "").unwrap();
        assert_eq!(
            store.entry_named("abc-x"),
            Some(store.entries_dir().join("abc-x"))
        );
        for hostile in ["", ".", "..", "../outside", "abc-x/..", "/etc", "missing"] {
            assert_eq!(store.entry_named(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn the_entry_containing_a_path_is_its_first_component_below_the_store() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let entry = store.entries_dir().join("abc-x");
        fs::create_dir_all(entry.join("bin")).unwrap();
        let link = home.path().join("result");
        symlink(&entry, &link).unwrap();
        let real_entry = fs::canonicalize(&entry).unwrap();
        for p in [&entry, &entry.join("bin"), &link, &link.join("bin")] {
            assert_eq!(
                store.entry_containing(p).unwrap().as_deref(),
                Some(real_entry.as_path()),
                "{}",
                p.display()
            );
        }
        assert_eq!(store.entry_containing(&store.entries_dir()).unwrap(), None);
        assert_eq!(store.entry_containing(home.path()).unwrap(), None);
        assert!(store.entry_containing(&home.path().join("nope")).is_err());
    }

    #[test]
    fn added_entries_are_read_only_and_hash_what_was_asked() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a"), "a").unwrap();
        fs::write(src.path().join("skip.tmp"), "x").unwrap();
        let filter = PathFilter::new(&["*.tmp".to_string()]);
        let hash = content_hash(src.path(), &filter).unwrap();
        let entry = store.add_path(src.path(), &filter, "src", &hash).unwrap();
        assert_eq!(nar::hash_path(&entry).unwrap(), hash);
        assert!(!entry.join("skip.tmp").exists());
        assert!(fs::write(entry.join("a"), "b").is_err() || nix_root_can_write());
        assert_eq!(
            fs::metadata(entry.join("a")).unwrap().permissions().mode() & 0o777,
            0o444
        );
        // A second add of the same content is the same entry.
        assert_eq!(
            store.add_path(src.path(), &filter, "src", &hash).unwrap(),
            entry
        );
        assert_eq!(fs::read_dir(home.path().join("tmp")).unwrap().count(), 0);
    }

    fn nix_root_can_write() -> bool {
        // root ignores permission bits; the mode check above still holds.
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false)
    }

    #[test]
    fn a_source_that_changes_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a"), "a").unwrap();
        let wrong = Sha256Hash::of_bytes(b"something else");
        let err = store
            .add_path(src.path(), &PathFilter::default(), "src", &wrong)
            .unwrap_err();
        assert!(matches!(err, StoreError::Changed { .. }), "{err}");
        assert!(!store.entry_path(&wrong, "src").exists());
    }

    #[test]
    fn gc_clears_the_lock_files_builds_left_but_its_own() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        drop(store.lock("build-key").unwrap());
        drop(store.try_lock("seed-key").unwrap().unwrap());
        let alone = store.hold_for_gc().unwrap();
        assert_eq!(store.clear_locks().unwrap(), 2);
        drop(alone);
        let left: Vec<_> = fs::read_dir(home.path().join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["gc.lock"]);
        // A lock taken afterwards is made again.
        drop(store.lock("build-key").unwrap());
    }

    #[test]
    fn outputs_are_found_by_key() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let key = Sha256Hash::of_bytes(b"key");
        assert_eq!(store.lookup_output(&key), None);
        let tmp = store.temp_dir("t").unwrap();
        let staged = tmp.path().join("out");
        fs::create_dir(&staged).unwrap();
        let entry = store.commit(&staged, &key, "hello").unwrap();
        store.record_output(&key, &entry, None).unwrap();
        assert_eq!(store.lookup_output(&key), Some((entry.clone(), None)));
        let h = Sha256Hash::of_bytes(b"output");
        store.record_output(&key, &entry, Some(&h)).unwrap();
        assert_eq!(store.lookup_output(&key), Some((entry, Some(h))));
    }
}
