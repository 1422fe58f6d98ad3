//! `kiln cache keygen` and `kiln cache push` (and `kiln build --push`):
//! the CLI side of [`crate::binary_cache`].

use std::path::PathBuf;

use anyhow::{Context, bail};
use kiln_core::store::Store;

use super::outputs;
use crate::binary_cache::{self, Pushed, SecretKey, Transport};
use crate::cli::args::{CacheCommand, PushArgs};
use crate::cli::open::{self, store as open_store};
use crate::cli::options::Setting;
use crate::cli::user_config::{CacheSettings, UserConfig};

pub(super) fn run(c: CacheCommand, quiet: bool) -> anyhow::Result<()> {
    match c {
        CacheCommand::Keygen { name, secret_file } => keygen(&name, &secret_file),
        CacheCommand::Push(a) => push_targets(a, quiet),
    }
}

fn keygen(name: &str, secret_file: &std::path::Path) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        bail!("a key name has no ':' or spaces, e.g. cache.example.org-1");
    }
    let key = SecretKey::generate(name);
    open::write_new_secret(secret_file, &key.to_text())?;
    outln!("{}", key.public().to_text());
    Ok(())
}

/// Where to push and with which key: flags first, then the user's settings.
fn destination(
    to: Option<String>,
    key: Option<PathBuf>,
    settings: &CacheSettings,
) -> anyhow::Result<(Transport, SecretKey)> {
    let url = to.or_else(|| settings.push_to.clone()).context(
        "no cache to push to: pass --to URL, or set push-to in the user config or KILN_PUSH_TO",
    )?;
    let key_path = key.or_else(|| settings.signing_key.clone()).context(
        "no signing key: pass --signing-key FILE, or set signing-key in the user config or KILN_SIGNING_KEY (`kiln cache keygen` makes one)",
    )?;
    let text = kiln_core::sidefile::read_to_string(
        &key_path,
        kiln_core::sidefile::Links::Follow,
        kiln_core::sidefile::limits::TEXT,
    )
    .with_context(|| format!("cannot read the signing key {}", key_path.display()))?;
    let key = SecretKey::parse(&key_path.display().to_string(), &text)?;
    let cache = Transport::parse(&url, settings.timeouts, crate::binary_cache::NamedBy::User)
        .map_err(anyhow::Error::msg)?;
    Ok((cache, key))
}

fn push_targets(a: PushArgs, quiet: bool) -> anyhow::Result<()> {
    let settings = UserConfig::load()?.cache;
    let (cache, key) = destination(a.to.clone(), a.signing_key.clone(), &settings)?;
    let store = open_store()?;
    let setting = Setting::load(quiet)?;
    let outputs = outputs::resolve(&store, &a.targets, &a.file, &a.key, &setting)?;
    push(&store, &cache, &key, &outputs, quiet)
}

/// Where `kiln build --push` pushes: asked before building, so a missing
/// setting fails at once rather than after a long build.
pub(super) struct PushTo(Transport, SecretKey);

pub(super) fn push_destination() -> anyhow::Result<PushTo> {
    let settings = UserConfig::load()?.cache;
    let (cache, key) = destination(None, None, &settings)?;
    Ok(PushTo(cache, key))
}

/// Push `outputs` and their closure (`kiln build --push`).
pub(super) fn push_outputs(
    store: &Store,
    to: &PushTo,
    outputs: &[PathBuf],
    quiet: bool,
) -> anyhow::Result<()> {
    push(store, &to.0, &to.1, outputs, quiet)
}

fn push(
    store: &Store,
    cache: &Transport,
    key: &SecretKey,
    outputs: &[PathBuf],
    quiet: bool,
) -> anyhow::Result<()> {
    let entries: Vec<(PathBuf, Option<Vec<u8>>)> = binary_cache::closure::closure(store, outputs)
        .into_iter()
        .collect();
    let results = binary_cache::push_all(cache, key, store, &entries);
    let mut uploaded = 0;
    let mut present = 0;
    for ((entry, _), r) in entries.iter().zip(results) {
        match r.with_context(|| format!("pushing {} to {}", entry.display(), cache.describe()))? {
            Pushed::Uploaded => uploaded += 1,
            Pushed::Present => present += 1,
        }
    }
    if !quiet {
        errln!(
            "pushed {uploaded} store entries to {} ({present} were there already)",
            cache.describe()
        );
    }
    Ok(())
}
