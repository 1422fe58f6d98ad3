//! Downloads: the host, never a recipe, fetches `url` inputs.
//!
//! Content already in the store under the expected hash is used without
//! touching the network, so a build works offline once its inputs are
//! prefetched. Otherwise the file is streamed to the store's staging area
//! (hashing as it arrives), optionally unpacked with `nix-prefetch-url
//! --unpack` semantics, hashed, checked against the expected hash, and only
//! then committed. `file://` URLs read a local file the same way.

pub mod unpack;

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use kiln_core::hash::Sha256Hash;
use kiln_core::pathfilter::PathFilter;
use kiln_core::store::{Store, StoreError, content_hash};

/// What a fetch put in the store.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub hash: Sha256Hash,
    pub entry: PathBuf,
    /// True when the store had it and nothing was downloaded.
    pub cached: bool,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
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
    progress: bool,
) -> Result<Fetched, FetchError> {
    if let Some(hash) = expected
        && let Some(entry) = store.find_by_hash(&hash)
    {
        return Ok(Fetched {
            hash,
            entry,
            cached: true,
        });
    }
    let dl = |message: String| FetchError::Download {
        url: url.to_string(),
        message,
    };
    let staging = store.temp_dir("fetch-")?;
    let file = staging.path().join("download");
    let (reader, len): (Box<dyn Read>, Option<u64>) =
        if let Some(path) = url.strip_prefix("file://") {
            let f = fs::File::open(path).map_err(|e| dl(e.to_string()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        } else {
            // The system's trust store, so the machine's CAs (and proxies) apply.
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build();
            let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
            let resp = agent.get(url).call().map_err(|e| dl(e.to_string()))?;
            let len = resp.body().content_length();
            (
                Box::new(resp.into_body().into_with_config().limit(u64::MAX).reader()),
                len,
            )
        };
    let bar = progress_bar(progress, len, &format!("fetching {name}"));
    copy_with_progress(reader, &file, &bar).map_err(|e| dl(e.to_string()))?;
    bar.finish_and_clear();

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
        cached: false,
    })
}

fn progress_bar(enabled: bool, len: Option<u64>, msg: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}

fn copy_with_progress(
    mut r: impl Read,
    dest: &std::path::Path,
    bar: &ProgressBar,
) -> io::Result<()> {
    let mut f = fs::File::create(dest)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    f.sync_all()
}
