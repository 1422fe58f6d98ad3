//! Substitution: a target's output (or a pinned download) taken from a
//! binary cache instead of being built (or downloaded) here. A refused or
//! unreachable cache is a note, never an error: the build goes on locally.

use kiln_core::hash::Sha256Hash;

use super::{Built, Ctx, Job};
use crate::binary_cache::{Miss, Want};
use crate::record::{self, BuildRecord};

impl Ctx<'_> {
    /// `job`'s output from the first binary cache that has a valid one.
    pub(super) fn substitute(&self, job: &Job<'_>) -> Option<Built> {
        let subs = self.opts.substituters.as_ref()?;
        let t = job.target;
        let entry_hash = t.output_hash.unwrap_or(job.key.hash());
        // The record must describe this build: its key (unless the target
        // is fixed-output, whose content alone is pinned) and this output.
        let key = job.key;
        let fixed = t.output_hash.is_some();
        let check = |bytes: &[u8], nar_hash: &Sha256Hash| -> Result<(), String> {
            let rec: BuildRecord =
                serde_json::from_slice(bytes).map_err(|e| format!("is not a build record: {e}"))?;
            if !fixed && rec.key != key {
                return Err(format!(
                    "is the record of build key {}, not {}",
                    rec.key.to_hex(),
                    key.to_hex()
                ));
            }
            if rec.output_hash != *nar_hash {
                return Err("names another output than the narinfo".into());
            }
            Ok(())
        };
        let mut warnings = Vec::new();
        let pulled = subs.pull(
            &self.store,
            &entry_hash,
            &t.local,
            Want::Output { fixed },
            &check,
            &mut warnings,
        );
        let pulled = match pulled {
            Some(p) => p,
            None => {
                self.note_misses(&t.name, warnings);
                return None;
            }
        };
        let rec: BuildRecord = record::parse(pulled.record.as_deref()?).ok()?;
        if let Err(e) = record::write(&self.store, &pulled.entry, &rec) {
            self.note(format!("{}: cannot write the pulled record: {e}", t.name));
        }
        if let Err(e) =
            self.store
                .record_output(&job.key.hash(), &pulled.entry, Some(&rec.output_hash))
        {
            self.note(format!("{}: {e}", t.name));
        }
        Some(Built {
            target: t.name.clone(),
            entry: pulled.entry,
            key: job.key,
            output_hash: rec.output_hash,
            found: true,
            checked: false,
            substituted_from: Some(pulled.from),
        })
    }

    /// A pinned download (`hash`, named `name`) from a binary cache.
    pub(super) fn substitute_input(
        &self,
        target: &str,
        hash: &Sha256Hash,
        name: &str,
        is_file: bool,
    ) -> Option<std::path::PathBuf> {
        let subs = self.opts.substituters.as_ref()?;
        let mut warnings = Vec::new();
        let no_record = |_: &[u8], _: &Sha256Hash| Ok(());
        let pulled = subs.pull(
            &self.store,
            hash,
            name,
            Want::Content {
                is_file_hash: is_file,
            },
            &no_record,
            &mut warnings,
        );
        self.note_misses(&format!("{target}: input '{name}'"), warnings);
        pulled.map(|p| {
            self.note(format!("{target}: input '{name}' from cache {}", p.from));
            p.entry
        })
    }

    /// Say once why each cache gave nothing for `what`.
    fn note_misses(&self, what: &str, misses: Vec<Miss>) {
        for m in misses {
            self.note(match m {
                Miss::Down(e) => format!(
                    "binary cache unreachable or too slow, not asked again in this run: {e}; building here"
                ),
                Miss::Refused(e) => format!("{what}: not taken from cache: {e}; building here"),
            });
        }
    }

    /// Something the user should read (a cache used, refused or down).
    pub(super) fn note(&self, message: String) {
        self.opts.reporter.note(message);
    }
}
