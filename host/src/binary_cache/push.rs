//! Putting entries in a cache: each as a zstd NAR, its signed record (for
//! a target's output) and, last, its signed narinfo, so a reader never
//! finds a narinfo whose NAR or record is missing. Uploads run a few at a
//! time; an entry the cache has (its narinfo exists) is skipped.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kiln_core::hash::Sha256Hash;
use kiln_core::store::{Store, StoreError};
use sha2::{Digest, Sha256};

use super::narinfo::{NarInfo, STORE_DIR};
use super::{CacheError, SecretKey, Transport, record_fingerprint};

/// How many uploads run at once.
const PARALLEL_UPLOADS: usize = 4;

/// Writes through to `inner`, hashing and counting.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a push did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Uploaded,
    /// The cache had it already.
    Present,
}

/// Upload the store entry `entry` (with `record`, the bytes of its build
/// record, for a target's output) to `cache`, signed with `key`. The NAR
/// and record go first, the narinfo last, so a reader never finds a
/// narinfo whose NAR is missing.
pub fn push(
    cache: &Transport,
    key: &SecretKey,
    store: &Store,
    entry: &Path,
    record: Option<&[u8]>,
) -> Result<Pushed, CacheError> {
    let base = entry
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = base.split('-').next().unwrap_or_default().to_string();
    let info_rel = format!("{part}.narinfo");
    if cache.exists(&info_rel)? {
        return Ok(Pushed::Present);
    }
    if !cache.exists("nix-cache-info")? {
        cache.put(
            "nix-cache-info",
            format!("StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: 50\n").as_bytes(),
        )?;
    }
    let staging = store.temp_dir("push-")?;
    let compressed = staging.path().join("nar.zst");
    let mut file = HashingWriter {
        inner: io::BufWriter::new(std::fs::File::create(&compressed)?),
        hasher: Sha256::new(),
        count: 0,
    };
    let (nar_hash, nar_size) = {
        let encoder = zstd::stream::write::Encoder::new(&mut file, 3)?;
        let mut nar = HashingWriter {
            inner: encoder,
            hasher: Sha256::new(),
            count: 0,
        };
        kiln_core::nar::dump_path(entry, &mut nar).map_err(StoreError::from)?;
        let (hash, size) = (Sha256Hash(nar.hasher.finalize().into()), nar.count);
        nar.inner.finish()?;
        (hash, size)
    };
    file.flush()?;
    let file_hash = Sha256Hash(file.hasher.finalize().into());
    let file_size = file.count;
    let url = format!("nar/{}.nar.zst", file_hash.to_nix32());
    if !cache.exists(&url)? {
        cache.put_file(&url, &compressed)?;
    }
    let mut info = NarInfo {
        store_path: format!("{STORE_DIR}/{base}"),
        url,
        compression: "zstd".into(),
        file_hash,
        file_size,
        nar_hash,
        nar_size,
        references: Vec::new(),
        sigs: Vec::new(),
    };
    info.sigs.push(key.sign(info.fingerprint().as_bytes()));
    if let Some(record) = record {
        let rel = format!("{part}.kiln.json");
        cache.put(&rel, record)?;
        let sig = key.sign(record_fingerprint(&info.store_path, record).as_bytes());
        cache.put(&format!("{rel}.sig"), format!("{sig}\n").as_bytes())?;
    }
    cache.put(&info_rel, info.render().as_bytes())?;
    Ok(Pushed::Uploaded)
}

/// Push every `(entry, record)` of `entries`, a few at a time; one result
/// per entry, in order.
pub fn push_all(
    cache: &Transport,
    key: &SecretKey,
    store: &Store,
    entries: &[(PathBuf, Option<Vec<u8>>)],
) -> Vec<Result<Pushed, CacheError>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<Pushed, CacheError>>>> =
        std::sync::Mutex::new(entries.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_UPLOADS.min(entries.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((entry, record)) = entries.get(i) else {
                        break;
                    };
                    let r = push(cache, key, store, entry, record.as_deref());
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CacheError::Io(io::Error::other("upload skipped")))))
        .collect()
}
