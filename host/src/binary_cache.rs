//! Binary caches: store entries shared between machines in Nix's binary
//! cache format, signed with Ed25519 as Nix signs them, so that `nix` can
//! list and verify a cache kiln wrote.
//!
//! ```text
//! nix-cache-info                      StoreDir: /nix/store
//! <hashpart>.narinfo                  StorePath, URL, NarHash, …, Sig
//! nar/<filehash>.nar.zst              the entry as a zstd-compressed NAR
//! <hashpart>.kiln.json (+ .sig)       a target output's build record, signed
//! ```
//!
//! `<hashpart>` is the entry's name hash: for a target's output, derived
//! from its build key, so a lookup needs no build; for an input, from its
//! content hash. A pulled entry is trusted only if its narinfo carries a
//! signature by a trusted key, and its bytes (file hash and size, NAR hash
//! and size) are what that narinfo says; for an output, its record must be
//! signed too and describe the same build key and output. Anything else is
//! refused with the reason, nothing enters the store, and the caller builds.
//!
//! This module must not decide *which* caches or keys to trust (the CLI
//! does, from the user's settings), nor write to the store except through
//! [`Store::commit`] once every check passed.

pub mod closure;
pub mod keys;
pub mod narinfo;
mod pull;
mod push;
pub mod transport;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_core::hash::Sha256Hash;
use kiln_core::store::{Store, StoreError};

pub use keys::{PublicKey, SecretKey};
pub use push::{Pushed, push, push_all};
pub use transport::{NamedBy, Timeouts, Transport, TransportError};

/// The largest narinfo or record kiln reads from a cache.
const SMALL_FILE_LIMIT: u64 = 16 << 20;

/// Why an entry from a cache was not used, or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache could not be reached or answered with an error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The cache answered, but what it gave is not trustworthy.
    #[error("{url}: refused: {message}")]
    Refused { url: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A cache a build may substitute from.
pub struct Substituter {
    pub transport: Transport,
    /// Set once the cache failed to answer: the rest of the session does
    /// not ask it again (one warning, not one per target).
    down: AtomicBool,
}

/// The caches a build may substitute from, with the keys it trusts.
pub struct Substituters {
    pub caches: Vec<Substituter>,
    pub trusted: Vec<PublicKey>,
    /// How long a large download may go without a byte.
    pub stall: std::time::Duration,
    /// A miss slower than this puts the cache down for the run.
    pub slow_lookup: std::time::Duration,
}

impl std::fmt::Debug for Substituters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.caches.iter().map(|c| c.transport.describe()).collect();
        f.debug_struct("Substituters")
            .field("caches", &urls)
            .field("trusted", &self.trusted)
            .finish()
    }
}

/// What a cache gave.
#[derive(Debug)]
pub struct Pulled {
    /// The new store entry.
    pub entry: std::path::PathBuf,
    /// The cache's URL.
    pub from: String,
    /// The NAR hash the signed narinfo names (and the entry has).
    pub nar_hash: Sha256Hash,
    /// For an output: its build record's bytes, signature checked.
    pub record: Option<Vec<u8>>,
}

/// What is wanted from a cache.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// A target's output, named by its build key, or for a fixed-output
    /// target (`fixed`) by its content hash, which the pulled NAR must
    /// then have whatever key signed it: its record must come too.
    Output { fixed: bool },
    /// An input, named by its content hash (a file's flat hash or a tree's
    /// NAR hash), which the pulled entry must have.
    Content { is_file_hash: bool },
}

/// Checks an output's record (its bytes, and the NAR hash the narinfo
/// names) before the entry enters the store; `Err` says why it does not fit.
pub type RecordCheck<'a> = &'a dyn Fn(&[u8], &Sha256Hash) -> Result<(), String>;

/// Why a lookup found nothing usable in one cache: the caller says so
/// once and builds.
#[derive(Debug)]
pub enum Miss {
    /// The cache could not be reached; it is not asked again this session.
    Down(CacheError),
    /// The cache answered with something that failed a check.
    Refused(CacheError),
}

/// The hash part of the entry named by `hash`.
pub fn hash_part(hash: &Sha256Hash) -> String {
    hash.to_nix32()[..32].to_string()
}

impl Substituters {
    pub fn new(caches: Vec<Transport>, trusted: Vec<PublicKey>, timeouts: Timeouts) -> Self {
        Substituters {
            caches: caches
                .into_iter()
                .map(|transport| Substituter {
                    transport,
                    down: AtomicBool::new(false),
                })
                .collect(),
            trusted,
            stall: timeouts.stall,
            slow_lookup: timeouts.slow_lookup,
        }
    }

    /// Look `hash` up in each cache in turn; the first that has a valid
    /// entry gives it. `misses` collects why a cache's entry was refused
    /// or a cache could not be reached (the caller then builds).
    pub fn pull(
        &self,
        store: &Store,
        hash: &Sha256Hash,
        name: &str,
        want: Want,
        check_record: RecordCheck<'_>,
        misses: &mut Vec<Miss>,
    ) -> Option<Pulled> {
        for cache in &self.caches {
            if cache.down.load(Ordering::Relaxed) {
                continue;
            }
            let ask = pull::Ask {
                cache: &cache.transport,
                trusted: &self.trusted,
                stall: self.stall,
            };
            let asked = std::time::Instant::now();
            let result = ask.pull(store, hash, name, want, check_record);
            // A cache that takes seconds to say "no" (or to give what is
            // refused) costs that for every target: treat it as down.
            let slow = asked.elapsed() > self.slow_lookup;
            match result {
                Ok(Some(p)) => return Some(p),
                Err(e @ CacheError::Transport(_)) => {
                    // Only the first failure of a cache is news.
                    if !cache.down.swap(true, Ordering::Relaxed) {
                        misses.push(Miss::Down(e));
                    }
                }
                Ok(None) | Err(_) if slow => {
                    if let Err(e) = result {
                        misses.push(Miss::Refused(e));
                    }
                    if !cache.down.swap(true, Ordering::Relaxed) {
                        misses.push(Miss::Down(CacheError::Transport(TransportError::Failed {
                            url: cache.transport.describe(),
                            message: format!(
                                "took {:.1} s to answer a lookup (more than {} s)",
                                asked.elapsed().as_secs_f64(),
                                self.slow_lookup.as_secs()
                            ),
                        })));
                    }
                }
                Ok(None) => {}
                Err(e) => misses.push(Miss::Refused(e)),
            }
        }
        None
    }
}

/// What a record's signature signs: the store path and the record's bytes.
fn record_fingerprint(store_path: &str, record: &[u8]) -> String {
    format!(
        "kiln-record-1;{store_path};sha256:{}",
        Sha256Hash::of_bytes(record).to_nix32()
    )
}
