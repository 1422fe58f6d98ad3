//! Downloads: the host, never a recipe, fetches `url` inputs.
//!
//! Content already in the store under the expected hash is used without
//! touching the network, so a build works offline once its inputs are
//! prefetched. Otherwise the file is streamed to the store's staging area
//! (hashing as it arrives), optionally unpacked with `nix-prefetch-url
//! --unpack` semantics, hashed, checked against the expected hash, and only
//! then committed. `file://` URLs read a local file the same way; which
//! local files a kiln.toml may name is the builder's `reach` check, and here
//! only a regular file is read (never a FIFO, a device or `/proc`).
//!
//! Every download is bounded: at most [`DownloadLimits::max_bytes`], and no
//! more than [`DownloadLimits::stall`] without a byte; past either it fails
//! by name and leaves nothing in the store.
//!
//! Every download obeys the address rule of [`crate::addresses`]: a URL a
//! kiln.toml names must not make kiln, on the host, fetch a loopback-only
//! service or a cloud metadata secret. Each address a host name resolves
//! to is checked before kiln connects, and redirects are followed here,
//! hop by hop, so every hop is checked the same way; only the user's
//! [`DownloadLimits::allow`] admits more. Through a proxy (`https_proxy`),
//! kiln checks the proxy's address and each URL's literal address; names
//! are resolved, and judged, by the proxy.

mod http;
pub(crate) use http::guarded_agent;

pub use kiln_core::unpack;

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::report::Reporter;

use crate::addresses::AllowList;
use kiln_core::hash::Sha256Hash;
use kiln_core::pathfilter::PathFilter;
use kiln_core::store::{Store, StoreError, content_hash};

/// What a fetch put in the store.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub hash: Sha256Hash,
    pub entry: PathBuf,
    /// True when the store had it and nothing was downloaded.
    pub found: bool,
}

/// Bounds on one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLimits {
    /// The most bytes a download may bring.
    pub max_bytes: u64,
    /// The longest a download may go without receiving a byte — or less
    /// than [`MIN_RATE`] bytes a second.
    pub stall: Duration,
    /// Addresses the user lets downloads reach although the address rule
    /// refuses them (`--allow-fetch-from`, `[fetch] allow`).
    pub allow: AllowList,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            max_bytes: 16 << 30,
            stall: Duration::from_secs(60),
            allow: AllowList::default(),
        }
    }
}

/// The slowest a download may be, in bytes per second, over each stall
/// window.
pub const MIN_RATE: u64 = 1024;

/// Redirects a download may follow, as curl's and Nix's default.
const MAX_REDIRECTS: usize = 10;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    #[error(
        "downloading {url}: it is larger than the limit of {limit} bytes; nothing was stored (raise it with --max-download)"
    )]
    TooLarge { url: String, limit: u64 },
    #[error(
        "downloading {url}: less than 1 KiB/s for {}s; nothing was stored",
        stall.as_secs()
    )]
    Stalled { url: String, stall: Duration },
    #[error("{url}: {message}")]
    NotAFile { url: String, message: String },
    #[error(
        "downloading {url}: {}; kiln does not download from there for a project. If it is a mirror you trust, allow it: --allow-fetch-from {address} (or `allow = [\"{address}\"]` under [fetch] in ~/.config/kiln/config.toml)",
        describe_refusal(host, address, why)
    )]
    Refused {
        url: String,
        host: String,
        address: std::net::IpAddr,
        why: crate::addresses::Refusal,
    },
    #[error("unpacking {url}: {source}")]
    Unpack {
        url: String,
        source: unpack::UnpackError,
    },
    #[error("hash mismatch for {url}: specified {specified} got {got}")]
    Mismatch {
        url: String,
        specified: Sha256Hash,
        got: Sha256Hash,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetch `url` into the store (unpacked if `unpack`), as `expected` when given.
pub fn fetch(
    store: &Store,
    url: &str,
    unpack: bool,
    name: &str,
    expected: Option<Sha256Hash>,
    reporter: &Reporter,
    limits: &DownloadLimits,
) -> Result<Fetched, FetchError> {
    if let Some(hash) = expected
        && let Some(entry) = store.find_by_hash(&hash)
    {
        return Ok(Fetched {
            hash,
            entry,
            found: true,
        });
    }
    let staging = store.temp_dir("fetch-")?;
    let file = staging.path().join("download");
    download(url, name, &file, reporter, limits)?;

    let staged = if unpack {
        let dir = staging.path().join("unpacked");
        unpack::unpack(&file, &dir).map_err(|source| FetchError::Unpack {
            url: url.to_string(),
            source,
        })?;
        unpack::single_root(&dir).map_err(|source| FetchError::Unpack {
            url: url.to_string(),
            source,
        })?
    } else {
        file
    };
    let hash = content_hash(&staged, &PathFilter::default()).map_err(StoreError::from)?;
    if let Some(specified) = expected
        && specified != hash
    {
        return Err(FetchError::Mismatch {
            url: url.to_string(),
            specified,
            got: hash,
        });
    }
    let entry = store.commit(&staged, &hash, name)?;
    Ok(Fetched {
        hash,
        entry,
        found: false,
    })
}

/// Download `url` (http, https or a local `file://`) to `file`, bounded
/// by `limits`, reporting progress as `fetching NAME`.
fn download(
    url: &str,
    name: &str,
    file: &std::path::Path,
    reporter: &Reporter,
    limits: &DownloadLimits,
) -> Result<(), FetchError> {
    let (reader, len): (Box<dyn Read + Send>, Option<u64>) =
        if let Some(path) = url.strip_prefix("file://") {
            let f = open_local(path).map_err(|message| FetchError::NotAFile {
                url: url.to_string(),
                message,
            })?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        } else {
            http::open(url, limits)?
        };
    if len.is_some_and(|n| n > limits.max_bytes) {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit: limits.max_bytes,
        });
    }
    let download = reporter.download(&format!("fetching {name}"), len);
    copy_bounded(reader, file, &|n| download.progress(n), limits).map_err(|stop| match stop {
        DownloadStop::TooLarge => FetchError::TooLarge {
            url: url.to_string(),
            limit: limits.max_bytes,
        },
        DownloadStop::Stalled => FetchError::Stalled {
            url: url.to_string(),
            stall: limits.stall,
        },
        DownloadStop::Io(e) => FetchError::Download {
            url: url.to_string(),
            message: e.to_string(),
        },
    })
}

/// "ADDRESS is WHY", or "NAME resolves to ADDRESS, which is WHY" when
/// the URL named a host.
fn describe_refusal(
    host: &str,
    address: &std::net::IpAddr,
    why: &crate::addresses::Refusal,
) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) if ip == *address => format!("{address} is {why}"),
        _ => format!("{host} resolves to {address}, which is {why}"),
    }
}

/// Why [`copy_bounded`] stopped.
pub(crate) enum DownloadStop {
    TooLarge,
    Stalled,
    Io(io::Error),
}

/// Copy `r` to `dest` on a worker thread, watching it: past
/// `limits.max_bytes`, or `limits.stall` without a byte, the copy is
/// abandoned (the caller's staging directory goes with it).
pub(crate) fn copy_bounded(
    r: Box<dyn Read + Send>,
    dest: &std::path::Path,
    on_progress: &dyn Fn(u64),
    limits: &DownloadLimits,
) -> Result<(), DownloadStop> {
    let f = fs::File::create(dest).map_err(DownloadStop::Io)?;
    let max_bytes = limits.max_bytes;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let (done_tx, done) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = copy_counted(r, f, &counter, max_bytes);
        let _ = done_tx.send(());
        r
    });
    // The bytes at the start of the current window: a server that sends a
    // byte now and then, just inside any "no data" timeout, would hold the
    // build for ever; each window of `stall` must bring MIN_RATE.
    let mut window = (0u64, Instant::now());
    let least = MIN_RATE.saturating_mul(limits.stall.as_secs().max(1));
    // Wake on completion at once (small downloads take milliseconds), else
    // every 50 ms to update the bar and watch for a stall.
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        done.recv_timeout(Duration::from_millis(50))
    {
        let now = received.load(Ordering::Relaxed);
        on_progress(now);
        if crate::interrupt::interrupted() {
            return Err(DownloadStop::Io(io::Error::new(
                io::ErrorKind::Interrupted,
                crate::interrupt::Interrupted,
            )));
        }
        if window.1.elapsed() >= limits.stall {
            if now - window.0 < least {
                return Err(DownloadStop::Stalled);
            }
            window = (now, Instant::now());
        }
    }
    worker.join().unwrap_or_else(|_| {
        Err(DownloadStop::Io(io::Error::other(
            "the download thread panicked",
        )))
    })
}

fn copy_counted(
    mut r: Box<dyn Read + Send>,
    mut f: fs::File,
    received: &AtomicU64,
    max: u64,
) -> Result<(), DownloadStop> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DownloadStop::Io(e)),
        };
        total += n as u64;
        if total > max {
            return Err(DownloadStop::TooLarge);
        }
        f.write_all(&buf[..n]).map_err(DownloadStop::Io)?;
        received.store(total, Ordering::Relaxed);
    }
    // No fsync: a download is staging; what is kept is synced when the
    // store commits it.
    drop(f);
    Ok(())
}

/// Open a local file for a `file://` URL: only a regular file, opened
/// without blocking (a FIFO would hang the build), and never a kernel
/// interface (`/proc`, `/sys`, `/dev`).
fn open_local(path: &str) -> Result<fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let real = std::path::Path::new(path)
        .canonicalize()
        .map_err(|e| e.to_string())?;
    if ["/proc", "/sys", "/dev"]
        .iter()
        .any(|p| real.starts_with(p))
    {
        return Err(format!(
            "{} is a kernel interface, not a file kiln downloads",
            real.display()
        ));
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file; kiln reads only regular files",
            real.display()
        ));
    }
    Ok(f)
}
