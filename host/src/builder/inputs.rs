//! Resolving one declared input to a hashed, read-only store entry:
//! `path` inputs are hashed (through the stat cache) and copied in,
//! `url` inputs fetched (or found in the store by hash), `target` inputs are
//! the dependency's output. Every hash is checked here, before any recipe runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Pin;
use kiln_core::manifest::{Input, Source, Target};
use kiln_core::pathfilter::PathFilter;

use super::record::InputKind;
use super::{BuildError, Built, Ctx, Pins};

/// An input that is in the store with a verified hash.
#[derive(Debug, Clone)]
pub struct ResolvedInput {
    pub name: String,
    pub hash: Sha256Hash,
    /// The read-only store entry.
    pub entry: PathBuf,
    pub is_dir: bool,
    pub kind: InputKind,
    /// Where it came from: a path relative to kiln.toml, a URL, a target name.
    pub origin: String,
}

pub(super) fn resolve(
    b: &Ctx<'_>,
    pins: &mut Pins,
    built: &BTreeMap<String, Built>,
    t: &Target,
    input: &Input,
) -> Result<ResolvedInput, BuildError> {
    let fail = |message: String| BuildError::Input {
        target: t.name.clone(),
        input: input.name.clone(),
        at: input.at.clone(),
        message,
    };
    let at = input.hash_at.clone().unwrap_or_else(|| input.at.clone());
    match &input.source {
        Source::Path { path, exclude } => {
            if !path.exists() {
                return Err(fail(format!("{} does not exist", path.display())));
            }
            b.reach().check(path).map_err(fail)?;
            let filter = PathFilter::new(exclude);
            let lookup = b.opts.mode == super::Mode::Lookup;
            // A lookup writes nothing, not even the stat cache.
            let got = if lookup {
                kiln_core::store::content_hash(path, &filter).map_err(|e| fail(e.to_string()))?
            } else {
                kiln_core::hashcache::hash_cached(&b.store.hashcache_dir(), path, &filter)
                    .map_err(|e| fail(e.to_string()))?
            };
            if lookup {
                let entry = b
                    .store
                    .find_by_hash(&got)
                    .ok_or_else(|| BuildError::NotBuilt {
                        target: t.name.clone(),
                    })?;
                return Ok(resolved(
                    input,
                    got,
                    entry,
                    InputKind::Path,
                    origin_of(path, &b.manifest.dir),
                ));
            }
            // Local sources are hashed on every build; only an explicit hash pins them.
            if let Some(specified) = input.hash {
                pins.check(
                    b.manifest,
                    t,
                    Pin::Input(&input.name),
                    Some(specified),
                    at,
                    got,
                )?;
            }
            let entry = b.store.add_path(path, &filter, &input.name, &got)?;
            Ok(resolved(
                input,
                got,
                entry,
                InputKind::Path,
                origin_of(path, &b.manifest.dir),
            ))
        }
        Source::Url { url, unpack } => {
            if let Some(local) = url.strip_prefix("file://") {
                b.reach().check(std::path::Path::new(local)).map_err(fail)?;
            }
            let pinned = input
                .hash
                .or_else(|| pins.lock.get(&t.name, Pin::Input(&input.name)));
            if b.opts.mode == super::Mode::Lookup {
                // A lookup never downloads: the pinned content is there or
                // the target was not built from it.
                let found = pinned.and_then(|h| b.store.find_by_hash(&h).map(|e| (h, e)));
                let (hash, entry) = found.ok_or_else(|| BuildError::NotBuilt {
                    target: t.name.clone(),
                })?;
                return Ok(resolved(input, hash, entry, InputKind::Url, url.clone()));
            }
            let fetched = match crate::fetch::fetch(
                &b.store,
                url,
                *unpack,
                &input.name,
                pinned,
                b.opts.progress,
                b.opts.download,
            ) {
                Ok(f) => f,
                // Report it as every other mismatch: where the pin is and the fix.
                Err(crate::fetch::FetchError::Mismatch { got, .. }) => {
                    pins.check(
                        b.manifest,
                        t,
                        Pin::Input(&input.name),
                        input.hash,
                        at.clone(),
                        got,
                    )?;
                    return Err(fail(format!("{url} changed while it was checked")));
                }
                Err(e) => return Err(fail(e.to_string())),
            };
            pins.check(
                b.manifest,
                t,
                Pin::Input(&input.name),
                input.hash,
                at,
                fetched.hash,
            )?;
            Ok(resolved(
                input,
                fetched.hash,
                fetched.entry,
                InputKind::Url,
                url.clone(),
            ))
        }
        Source::Target(dep) => {
            let built = built
                .get(dep)
                .ok_or_else(|| fail(format!("target '{dep}' has not been built")))?;
            Ok(resolved(
                input,
                built.output_hash,
                built.entry.clone(),
                InputKind::Target,
                dep.clone(),
            ))
        }
    }
}

/// An input found in the store as `entry`.
fn resolved(
    input: &Input,
    hash: Sha256Hash,
    entry: PathBuf,
    kind: InputKind,
    origin: String,
) -> ResolvedInput {
    ResolvedInput {
        name: input.name.clone(),
        hash,
        is_dir: entry.is_dir(),
        entry,
        kind,
        origin,
    }
}

/// A path input's origin for records: relative to kiln.toml's directory.
fn origin_of(path: &std::path::Path, base: &std::path::Path) -> String {
    let origin = path
        .strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string();
    if origin.is_empty() {
        ".".into()
    } else {
        origin
    }
}
