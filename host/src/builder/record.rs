//! Filling in the build record of one run (the schema, its storage and its
//! dependency walk live in [`crate::record`]): the inputs with the store
//! entries they were read from, the tools the recipe ran, the log and the
//! timings.

use std::path::Path;
use std::time::Duration;

use kiln_core::hash::Sha256Hash;
use kiln_core::listing::{self, FileEntry};
use kiln_core::nar::NarError;
use kiln_core::store::{Existing, Store, write_atomic};

use super::{BuildError, Ctx, Job, ResolvedInput};
use crate::record::{
    BuildRecord, ExecRecord, HashOf, InputKind, InputRecord, RecipeRecord, RemoteStep, Timing,
    ToolRecord,
};
use crate::runtime::RunReport;
use crate::sandbox::SandboxMode;

impl Ctx<'_> {
    /// The record of `job`'s run, which produced `output_hash` in `elapsed`.
    pub(super) fn record_run(
        &self,
        job: &Job<'_>,
        report: &RunReport,
        output_hash: Sha256Hash,
        elapsed: Duration,
    ) -> Result<BuildRecord, BuildError> {
        let sandbox = self.opts.sandbox;
        Ok(BuildRecord {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            target: job.target.name.clone(),
            key: job.key,
            source_date_epoch: self.opts.source_date_epoch,
            recipe: RecipeRecord {
                name: job.recipe.name.clone(),
                hash: job.recipe.hash,
                entry: job.recipe.entry.as_deref().map(entry_name),
            },
            params: job.params.clone().into_owned(),
            inputs: job
                .inputs
                .iter()
                .map(|i| input_record(&self.store, i))
                .collect::<Result<_, _>>()?,
            tools: tool_records(&report.execs, &job.inputs),
            execs: report.execs.clone(),
            sandbox,
            hermetic: sandbox == SandboxMode::Hermetic,
            output_hash,
            log: report.log.clone(),
            timing: Timing {
                build_ms: elapsed.as_millis() as u64,
                exec_ms: report.execs.iter().map(|e| e.duration_ms).collect(),
                caches: report.caches.clone(),
                fetches_reused: report.fetches_reused.clone(),
                remote: report
                    .execs
                    .iter()
                    .enumerate()
                    .filter_map(|(exec, e)| {
                        e.placement
                            .clone()
                            .map(|placement| RemoteStep { exec, placement })
                    })
                    .collect(),
            },
        })
    }
}

/// An input as the record keeps it: where it came from, its hash, the
/// entry it was read from, and (for a directory of the project) its files.
fn input_record(store: &Store, i: &ResolvedInput) -> Result<InputRecord, BuildError> {
    Ok(InputRecord {
        name: i.name.clone(),
        kind: i.kind,
        origin: i.origin.clone(),
        hash: i.hash,
        hash_of: if i.is_dir { HashOf::Tree } else { HashOf::File },
        // Named as the store names this hash and input, not by where this
        // store happens to hold it: records stay the same on every machine.
        entry: Some(match i.kind {
            InputKind::Target => entry_name(&i.entry),
            InputKind::Path | InputKind::Url | InputKind::Image => {
                entry_name(&store.entry_path(&i.hash, &i.name))
            }
        }),
        files: if i.kind == InputKind::Path && i.is_dir {
            input_listing(store, &i.entry).map_err(|source| BuildError::Listing {
                action: "cannot list an input for the build record",
                source,
            })?
        } else {
            Vec::new()
        },
    })
}

/// The executables the recipe ran from its inputs, each once, with the
/// hash of the input holding it.
fn tool_records(execs: &[ExecRecord], inputs: &[ResolvedInput]) -> Vec<ToolRecord> {
    let mut tools: Vec<ToolRecord> = Vec::new();
    for program in execs
        .iter()
        .filter(|e| e.ran())
        .filter_map(|e| e.argv.first())
    {
        let Some(input) = program
            .strip_prefix("/inputs/")
            .and_then(|p| p.split('/').next())
        else {
            continue;
        };
        if tools.iter().any(|t| &t.path == program) {
            continue;
        }
        if let Some(i) = inputs.iter().find(|i| i.name == input) {
            tools.push(ToolRecord {
                path: program.clone(),
                input: input.to_string(),
                input_hash: i.hash,
            });
        }
    }
    tools
}

fn entry_name(entry: &Path) -> String {
    entry
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file listing of an input's store entry. Entries never change, so it
/// is computed once and kept at `Store::listing_path` (gc
/// deletes it with the entry).
fn input_listing(store: &Store, entry: &Path) -> Result<Vec<FileEntry>, NarError> {
    let cache = store.listing_path(entry);
    if let Ok(bytes) = kiln_core::sidefile::read(
        &cache,
        kiln_core::sidefile::Links::Refuse,
        kiln_core::sidefile::limits::LISTING,
    ) && let Ok(listing) = serde_json::from_slice(&bytes)
    {
        return Ok(listing);
    }
    let listing = listing::list(entry)?;
    if let Ok(json) = serde_json::to_vec(&listing) {
        // A cache: failing to keep it only costs a re-listing next time.
        let _ = write_atomic(&cache, &json, Existing::Replace);
    }
    Ok(listing)
}
