//! `kiln lock`: resolve every input of kiln.toml, fetch what it pins, run
//! the downloads (fixed-output steps) nothing pins yet, and write kiln.lock
//! (`--update` forgets pins first).

use anyhow::bail;

use crate::builder::Builder;
use crate::cli::args::LockArgs;
use crate::cli::open;
use crate::cli::options::{self, Setting};
use crate::cli::project::Project;

pub(super) fn lock(a: LockArgs, quiet: bool) -> anyhow::Result<()> {
    let manifest = Project::open(a.file.file.as_deref())?.load_all()?;
    let opts = options::lock(&Setting::load(quiet)?, &a.file);
    if let Some(input) = a.update.as_deref().filter(|i| !i.is_empty()) {
        let mut known: Vec<&str> = manifest
            .targets
            .values()
            .flat_map(|t| t.inputs.keys().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        // A download's pin is named by its setting (`params.vendor_hash`).
        if !known.contains(&input) && !input.starts_with("params.") {
            bail!(
                "no input '{input}' in any target of {}; inputs: {} (or a download's setting, such as params.vendor_hash)",
                manifest.file.display(),
                known.join(", ")
            );
        }
    }
    let mut builder = Builder::new(open::store()?, &manifest, opts)?;
    if let Some(input) = &a.update {
        builder.forget_pins(if input.is_empty() {
            None
        } else {
            Some(input.as_str())
        });
    }
    let targets: Vec<String> = manifest.targets.keys().cloned().collect();
    builder.lock_inputs(&targets)?;
    let pinned = builder.lock_fetches(&targets)?;
    if !quiet {
        for (target, setting, hash) in &pinned {
            errln!("pinned {setting} of target '{target}': {hash}");
        }
        errln!("{} is up to date", manifest.dir.join("kiln.lock").display());
    }
    Ok(())
}
