//! `kiln audit` and `kiln verify`: find the store entries the user named,
//! then print or write what [`crate::audit`] makes of their records.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::store::Store;

use super::outputs;
use crate::audit::{self, Node, provenance::Root};
use crate::cli::args::{AuditArgs, VerifyArgs};
use crate::cli::open::store as open_store;
use crate::cli::options::Setting;
use crate::cli::progress_enabled;

pub(super) fn audit(a: AuditArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open_store()?;
    if a.diff && a.what.len() != 2 {
        bail!(
            "--diff compares two builds: kiln audit --diff OLD NEW (each a target, a result link or a store path)"
        );
    }
    let setting = Setting::load(quiet)?;
    let entries = outputs::resolve(&store, &a.what, &a.file, &a.key, &setting)?;
    let closures: Vec<Node> = entries
        .iter()
        .map(|e| audit::closure(&store, e))
        .collect::<Result<_, _>>()?;

    if a.diff {
        let d = audit::diff(&closures[0], &closures[1]);
        if a.json {
            jsonln!(&d);
        } else {
            out!("{}", audit::render_diff(&d));
        }
        return Ok(());
    }
    if a.provenance.is_none() && a.sbom.is_none() {
        if a.json {
            jsonln!(&closures);
        } else {
            let trees: Vec<String> = closures.iter().map(audit::render).collect();
            out!("{}", trees.join("\n"));
        }
        return Ok(());
    }

    let records = attestable_records(&store, &entries)?;
    let roots: Vec<Root<'_>> = closures
        .iter()
        .zip(&records)
        .map(|(closure, record)| Root { closure, record })
        .collect();
    if let Some(file) = &a.provenance {
        let statement = audit::provenance::statement(&roots)?;
        write_json(file, &statement)?;
        if !quiet {
            errln!(
                "wrote SLSA provenance ({} subjects, {} dependencies) to {}",
                statement["subject"].as_array().map_or(0, Vec::len),
                statement["predicate"]["buildDefinition"]["resolvedDependencies"]
                    .as_array()
                    .map_or(0, Vec::len),
                file.display()
            );
        }
    }
    if let Some(file) = &a.sbom {
        let doc = audit::sbom::document(&roots)?;
        write_json(file, &doc)?;
        if !quiet {
            errln!(
                "wrote an SPDX 2.3 SBOM ({} packages) to {}",
                doc["packages"].as_array().map_or(0, Vec::len),
                file.display()
            );
        }
    }
    Ok(())
}

/// The records of `entries`, each checked to be what it says: kiln
/// attests only to outputs that still are what their records say.
fn attestable_records(
    store: &Store,
    entries: &[PathBuf],
) -> anyhow::Result<Vec<crate::record::BuildRecord>> {
    let mut records = Vec::new();
    for e in entries {
        let v = audit::verify(store, e)?;
        if !v.ok {
            bail!(
                "{} was modified after it was built (record says {}, content is {}); rebuild it before attesting to it",
                e.display(),
                v.expected,
                v.got
            );
        }
        records.push(audit::record_of(store, e)?);
    }
    Ok(records)
}

/// The SLSA provenance predicate and the SPDX document of `entry`, as
/// (predicateType, predicate) for attestations.
pub(super) fn attestations_of(
    store: &Store,
    entry: &Path,
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let entries = [entry.to_path_buf()];
    let closure = audit::closure(store, entry)?;
    let records = attestable_records(store, &entries)?;
    let roots = [Root {
        closure: &closure,
        record: &records[0],
    }];
    let statement = audit::provenance::statement(&roots)?;
    Ok(vec![
        (
            audit::provenance::PREDICATE_TYPE.to_string(),
            statement["predicate"].clone(),
        ),
        (
            "https://spdx.dev/Document".to_string(),
            audit::sbom::document(&roots)?,
        ),
    ])
}

fn write_json(file: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs::write(file, text).with_context(|| format!("writing {}", file.display()))
}

pub(super) fn verify(a: VerifyArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open_store()?;
    let entries: Vec<PathBuf> = if a.paths.is_empty() {
        store.entries()?
    } else {
        a.paths
            .iter()
            .map(|p| audit::entry_of(&store, p))
            .collect::<Result<_, _>>()?
    };
    let bar = progress_enabled(quiet || a.json).then(|| {
        let b = indicatif::ProgressBar::new(entries.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("verifying {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut results = Vec::new();
    for e in &entries {
        if let Some(b) = &bar {
            b.set_message(crate::terminal::safe(&e.display().to_string()).into_owned());
        }
        results.push(audit::verify(&store, e)?);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let bad: Vec<&audit::Verified> = results.iter().filter(|v| !v.ok).collect();
    if a.json {
        jsonln!(&results);
    } else if !quiet && bad.is_empty() {
        outln!("{} store entries verified: all intact", results.len());
    }
    if !bad.is_empty() {
        let lines: Vec<String> = bad
            .iter()
            .map(|v| match v.against {
                "record" => format!(
                    "  {}: its build record says {}, its content now hashes to {}",
                    v.entry.display(),
                    v.expected,
                    v.got
                ),
                _ => format!(
                    "  {}: named for hash {}…, its content now hashes to {}",
                    v.entry.display(),
                    v.expected,
                    v.got
                ),
            })
            .collect();
        bail!(
            "{} of {} store entries were modified after kiln wrote them:\n{}\n  delete them (chmod -R u+w ENTRY && rm -rf ENTRY) and rebuild",
            bad.len(),
            results.len(),
            lines.join("\n")
        );
    }
    Ok(())
}
