//! Whether store entries still hash to what was recorded.

use std::path::{Path, PathBuf};

use kiln_core::store::Store;
use serde::Serialize;

use super::{AuditError, record_of};

/// One store entry's verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub entry: PathBuf,
    /// `record` (a target output) or `name` (content named by its hash).
    pub against: &'static str,
    pub expected: String,
    pub got: String,
    pub ok: bool,
}

/// Re-hash `entry` and compare with its build record, or, for inputs (which
/// have none), with the whole hash the store recorded for it (an entry
/// from before that record: the part of the hash its name shows).
pub fn verify(store: &Store, entry: &Path) -> Result<Verified, AuditError> {
    match record_of(store, entry) {
        Ok(rec) => {
            // A target output is hashed as a tree even when it is one file.
            let got = kiln_core::nar::hash_path(entry)?;
            Ok(Verified {
                entry: entry.to_path_buf(),
                against: "record",
                expected: rec.output_hash.to_sri(),
                got: got.to_sri(),
                ok: got == rec.output_hash,
            })
        }
        Err(AuditError::NoRecord(_)) => {
            let got = kiln_core::store::content_hash(entry, &Default::default())?;
            if let Some(recorded) = store.digest_of(entry) {
                return Ok(Verified {
                    entry: entry.to_path_buf(),
                    against: "digest",
                    expected: recorded.to_sri(),
                    got: got.to_sri(),
                    ok: got == recorded,
                });
            }
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let prefix = name.split('-').next().unwrap_or("");
            Ok(Verified {
                entry: entry.to_path_buf(),
                against: "name",
                expected: prefix.to_string(),
                got: got.to_sri(),
                ok: prefix.len() == 32 && got.to_nix32().starts_with(prefix),
            })
        }
        Err(e) => Err(e),
    }
}
