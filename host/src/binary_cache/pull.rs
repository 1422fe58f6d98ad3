//! Taking one entry from one cache: the narinfo, its signature, the
//! record (for an output), then the NAR, each checked before the next is
//! fetched, and the entry committed to the store only when all agree.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use kiln_core::hash::Sha256Hash;
use kiln_core::store::{Store, StoreError};
use sha2::{Digest, Sha256};

use super::narinfo::{NarInfo, STORE_DIR};
use super::{
    CacheError, Pulled, RecordCheck, SMALL_FILE_LIMIT, Want, hash_part, keys, record_fingerprint,
};
use crate::binary_cache::{PublicKey, Transport};
use crate::fetch::{DownloadLimits, DownloadStop, copy_bounded};

/// One lookup in one cache, with the keys the user trusts.
pub(super) struct Ask<'a> {
    pub cache: &'a Transport,
    pub trusted: &'a [PublicKey],
    pub stall: Duration,
}

impl Ask<'_> {
    fn refused(&self, rel: &str, message: impl Into<String>) -> CacheError {
        CacheError::Refused {
            url: format!("{}/{rel}", self.cache.describe()),
            message: message.into(),
        }
    }

    pub(super) fn pull(
        &self,
        store: &Store,
        hash: &Sha256Hash,
        name: &str,
        want: Want,
        check_record: RecordCheck<'_>,
    ) -> Result<Option<Pulled>, CacheError> {
        let part = hash_part(hash);
        let info_rel = format!("{part}.narinfo");
        let Some(text) = self.cache.get(&info_rel, SMALL_FILE_LIMIT)? else {
            return Ok(None);
        };
        let text = String::from_utf8(text).map_err(|_| self.refused(&info_rel, "not UTF-8"))?;
        let info = NarInfo::parse(&text).map_err(|m| self.refused(&info_rel, m))?;
        self.check_info(&info, &info_rel, &part, name, hash, want)?;
        // An output's record comes first: it is small, and without a valid
        // one the NAR is not worth downloading.
        let record = match want {
            Want::Output { .. } => {
                let record = self.pull_record(&info, &part)?;
                check_record(&record, &info.nar_hash)
                    .map_err(|m| self.refused(&format!("{part}.kiln.json"), m))?;
                Some(record)
            }
            Want::Content { .. } => None,
        };

        let staging = store.temp_dir("substitute-")?;
        let staged = staging.path().join("entry");
        self.download_nar(&info, staging.path(), &staged)?;
        if let Want::Content { is_file_hash: true } = want {
            let got = kiln_core::store::content_hash(&staged, &Default::default())
                .map_err(StoreError::from)?;
            if got != *hash {
                return Err(self.refused(
                    &info.url,
                    format!("holds content {}, not {}", got.to_sri(), hash.to_sri()),
                ));
            }
        }
        let entry = store.commit(&staged, hash, name)?;
        Ok(Some(Pulled {
            entry,
            from: self.cache.describe(),
            nar_hash: info.nar_hash,
            record,
        }))
    }

    /// The narinfo names the entry asked for and is signed by a trusted key.
    fn check_info(
        &self,
        info: &NarInfo,
        info_rel: &str,
        part: &str,
        name: &str,
        hash: &Sha256Hash,
        want: Want,
    ) -> Result<(), CacheError> {
        let expected_path = format!("{STORE_DIR}/{part}-");
        if !info.store_path.starts_with(&expected_path) {
            return Err(self.refused(
                info_rel,
                format!("describes {}, not {expected_path}…", info.store_path),
            ));
        }
        if matches!(want, Want::Output { .. })
            && info.store_path != format!("{expected_path}{name}")
        {
            return Err(self.refused(
                info_rel,
                format!("describes {}, not target '{name}'", info.store_path),
            ));
        }
        if keys::verified_by(info.fingerprint().as_bytes(), &info.sigs, self.trusted).is_none() {
            let why = if info.sigs.is_empty() {
                "is not signed".to_string()
            } else {
                let names: Vec<&str> = info
                    .sigs
                    .iter()
                    .filter_map(|s| s.split_once(':').map(|(n, _)| n))
                    .collect();
                let trusted: Vec<&str> = self.trusted.iter().map(|k| k.name.as_str()).collect();
                format!(
                    "has no valid signature by a trusted key (signed by: {}; trusted: {})",
                    names.join(", "),
                    trusted.join(", ")
                )
            };
            return Err(self.refused(info_rel, why));
        }
        // An entry named by a content hash must have it: a signature says
        // who made an entry, not that its bytes are what the name promises.
        let named_by_nar_hash = matches!(
            want,
            Want::Content {
                is_file_hash: false
            } | Want::Output { fixed: true }
        );
        if named_by_nar_hash && info.nar_hash != *hash {
            return Err(self.refused(
                info_rel,
                format!(
                    "names NAR hash {}, not {}",
                    info.nar_hash.to_sri(),
                    hash.to_sri()
                ),
            ));
        }
        Ok(())
    }

    fn pull_record(&self, info: &NarInfo, part: &str) -> Result<Vec<u8>, CacheError> {
        let rel = format!("{part}.kiln.json");
        let record = self.cache.get(&rel, SMALL_FILE_LIMIT)?.ok_or_else(|| {
            self.refused(
                &rel,
                "missing: the output's build record must travel with it",
            )
        })?;
        let sig_rel = format!("{rel}.sig");
        let sigs = self
            .cache
            .get(&sig_rel, SMALL_FILE_LIMIT)?
            .unwrap_or_default();
        let sigs: Vec<String> = String::from_utf8_lossy(&sigs)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let message = record_fingerprint(&info.store_path, &record);
        if keys::verified_by(message.as_bytes(), &sigs, self.trusted).is_none() {
            return Err(self.refused(&rel, "has no valid signature by a trusted key"));
        }
        Ok(record)
    }

    /// Download the NAR file into `dir`, check its hash and size, then
    /// unpack it at `staged` checking the NAR's.
    fn download_nar(&self, info: &NarInfo, dir: &Path, staged: &Path) -> Result<(), CacheError> {
        let file = dir.join("nar.file");
        self.download_file(info, &file)?;
        self.restore_nar(info, &file, staged)
    }

    /// The narinfo's file, bounded by its signed NarSize, checked to have
    /// the size the narinfo says.
    fn download_file(&self, info: &NarInfo, file: &Path) -> Result<(), CacheError> {
        let bad = |m: String| self.refused(&info.url, m);
        let reader = self
            .cache
            .open(&info.url)?
            .ok_or_else(|| bad("missing, though its narinfo names it".into()))?;
        // FileSize is not signed (Nix's fingerprint covers the NAR, not the
        // file), so it alone cannot bound the download: a replayed narinfo
        // could announce a terabyte. The signed NarSize can, with the most
        // the compression may add to it.
        let signed_bound = compressed_bound(&info.compression, info.nar_size);
        let limits = DownloadLimits {
            // One byte more than expected is enough to know it is wrong.
            max_bytes: info.file_size.min(signed_bound).saturating_add(1),
            stall: self.stall,
            ..Default::default()
        };
        match copy_bounded(reader, file, &|_| {}, &limits) {
            Ok(()) => {}
            Err(DownloadStop::TooLarge) => {
                return Err(bad(format!(
                    "more than the {} bytes the narinfo announces{}",
                    info.file_size,
                    if signed_bound < info.file_size {
                        format!(
                            ", and than {signed_bound}, the most its signed NarSize ({}) can compress to",
                            info.nar_size
                        )
                    } else {
                        String::new()
                    }
                )));
            }
            Err(DownloadStop::Stalled) => {
                return Err(CacheError::Transport(super::TransportError::Failed {
                    url: format!("{}/{}", self.cache.describe(), info.url),
                    message: format!("less than 1 KiB/s for {}s", self.stall.as_secs()),
                }));
            }
            Err(DownloadStop::Io(e)) => {
                return Err(CacheError::Transport(super::TransportError::Failed {
                    url: format!("{}/{}", self.cache.describe(), info.url),
                    message: e.to_string(),
                }));
            }
        }
        // The size is known before reading a byte. The file's hash is not
        // signed (Nix's fingerprint covers the NAR), so it proves nothing
        // the NAR hash does not: only the NAR hash is computed, in the one
        // pass that unpacks (the restorer trusts nothing it reads).
        let size = fs::metadata(file)?.len();
        if size != info.file_size {
            return Err(bad(format!(
                "the file has {size} bytes, but the narinfo says {}{}",
                info.file_size,
                if size < info.file_size {
                    ": truncated"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// Decompress and restore the NAR into `staged`, hashing it in the same
    /// pass; its hash and size must be the signed ones.
    fn restore_nar(&self, info: &NarInfo, file: &Path, staged: &Path) -> Result<(), CacheError> {
        let bad = |m: String| self.refused(&info.url, m);
        let nar_result = {
            let input = BufReader::with_capacity(256 * 1024, fs::File::open(file)?);
            let decompressed: Box<dyn Read> = match info.compression.as_str() {
                "zstd" => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
                "none" => Box::new(input),
                other => {
                    return Err(bad(format!(
                        "compression {other:?} is not supported (zstd or none)"
                    )));
                }
            };
            let mut nar = Hashing {
                inner: decompressed,
                hasher: Sha256::new(),
                count: 0,
                limit: info.nar_size,
            };
            kiln_core::nar_restore::restore(&mut nar, staged)
                .map(|()| (Sha256Hash(nar.hasher.finalize().into()), nar.count))
        };
        let (nar_hash, nar_size) = nar_result.map_err(|e| bad(e.to_string()))?;
        if nar_size != info.nar_size || nar_hash != info.nar_hash {
            return Err(bad(format!(
                "its NAR is {} ({nar_size} bytes), but the signed narinfo says {} ({} bytes)",
                nar_hash.to_sri(),
                info.nar_hash.to_sri(),
                info.nar_size
            )));
        }
        Ok(())
    }
}

/// The most bytes a NAR of `nar_size` bytes can take once compressed
/// with `compression` (zstd's worst case, `ZSTD_compressBound`).
fn compressed_bound(compression: &str, nar_size: u64) -> u64 {
    match compression {
        "none" => nar_size,
        _ => {
            let n = nar_size;
            let small = if n < (128 << 10) {
                ((128 << 10) - n) >> 11
            } else {
                0
            };
            n.saturating_add(n >> 8).saturating_add(small)
        }
    }
}

/// Reads through `inner`, hashing and counting what passes, up to `limit`
/// bytes (one more is an error: a decompression bomb stops there).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(format!(
                "more than the {} bytes the narinfo announces",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
