//! `kiln push IMAGE REF`: the CLI side of [`crate::registry`].

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::outputs;
use crate::cli::args::PushImageArgs;
use crate::cli::open::{self, store as open_store};
use crate::cli::options::Setting;
use crate::registry::sign::ImageKey;
use crate::registry::{self, PushOptions, Reference};

pub(super) fn run(a: PushImageArgs, quiet: bool) -> anyhow::Result<()> {
    let reference = Reference::parse(&a.reference)?;
    let store = open_store()?;
    let setting = Setting::load(quiet)?;
    let entry: PathBuf = outputs::resolve(
        &store,
        std::slice::from_ref(&a.image),
        &a.file,
        &a.key,
        &setting,
    )?
    .into_iter()
    .next()
    .context("the target has no output")?;
    let oci = entry.join("oci");
    if !oci.join("index.json").is_file() {
        bail!(
            "{} has no oci/index.json: push the output of an oci-image target",
            entry.display()
        );
    }
    let signing = match &a.sign {
        None => None,
        Some(path) => {
            let pem = kiln_core::sidefile::read_to_string(
                path,
                kiln_core::sidefile::Links::Follow,
                kiln_core::sidefile::limits::TEXT,
            )
            .with_context(|| format!("cannot read the signing key {}", path.display()))?;
            Some(registry::Signing {
                key: ImageKey::from_pem(&path.display().to_string(), &pem)?,
                attestations: super::audit::attestations_of(&store, &entry)?,
            })
        }
    };
    let pushed = registry::push(
        &oci,
        &reference,
        &PushOptions {
            insecure: a.insecure,
            credentials: None,
            mount_from: base_repositories(&store, &entry, &reference),
        },
        signing.as_ref(),
    )
    .with_context(|| format!("pushing {} to {}", a.image, a.reference))?;
    if let Some(f) = &a.digest_file {
        std::fs::write(f, format!("{}\n", pushed.digest))
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if !quiet {
        errln!(
            "pushed {} blob(s), {} already there; tagged {}",
            pushed.uploaded,
            pushed.skipped,
            pushed.tags.join(", ")
        );
    }
    outln!(
        "{}/{}@{}",
        reference.registry,
        reference.repository,
        pushed.digest
    );
    Ok(())
}

/// The repositories on `reference`'s registry of the base images `entry`
/// was built on (its record's image inputs), to mount their layers from.
fn base_repositories(
    store: &kiln_core::store::Store,
    entry: &std::path::Path,
    reference: &Reference,
) -> Vec<String> {
    let Ok(record) = crate::record::read(store, entry) else {
        return Vec::new();
    };
    record
        .inputs
        .iter()
        .filter(|i| i.kind == crate::record::InputKind::Image)
        .filter_map(|i| crate::registry::pull::PinnedImage::parse(&i.origin).ok())
        .filter(|p| p.reference.registry == reference.registry)
        .map(|p| p.reference.repository)
        .collect()
}

/// `kiln image keygen`: a new signing key, never over an existing file.
pub(super) fn keygen(secret_file: &std::path::Path) -> anyhow::Result<()> {
    let key = ImageKey::generate();
    open::write_new_secret(secret_file, &key.secret_pem()?)?;
    out!("{}", key.public_pem()?);
    Ok(())
}
