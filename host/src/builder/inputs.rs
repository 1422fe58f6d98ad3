//! Resolving one declared input to a hashed, read-only store entry:
//! `path` inputs are hashed (through the stat cache) and copied in,
//! `url` inputs fetched (or found in the store by hash), `target` inputs are
//! the dependency's output. Every hash is checked here, before any recipe runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::manifest::{Input, Source, Target};
use kiln_core::pathfilter::PathFilter;

use super::{BuildError, Built, Ctx, Pins};
use crate::record::InputKind;

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
    /// A pinned download not fetched yet: the key needs only its hash, so
    /// it is fetched only if the target is neither stored nor substituted.
    pub(super) pending: Option<PendingFetch>,
}

/// An input whose hash is known but whose bytes are not in the store yet.
#[derive(Debug, Clone)]
pub(super) enum PendingFetch {
    /// A pinned `url` input to download.
    Download {
        url: String,
        unpack: bool,
        /// The pin's place and whether kiln.toml (not kiln.lock) holds it.
        at: kiln_core::manifest::Location,
        in_manifest: bool,
    },
    /// A `path` input to copy in (checked against the hash taken).
    Copy {
        path: PathBuf,
        filter: PathFilter,
        at: kiln_core::manifest::Location,
    },
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
            if lookup && let Some(entry) = b.store.find_by_hash(&got) {
                return Ok(resolved(
                    input,
                    got,
                    entry,
                    InputKind::Path,
                    origin_of(path, &b.manifest.dir),
                ));
            }
            // Local sources are hashed on every build; only an explicit hash pins them.
            if let Some(specified) = input.hash
                && !lookup
            {
                pins.check(b.manifest, t, &input.name, Some(specified), at, got)?;
            }
            let origin = origin_of(path, &b.manifest.dir);
            if let Some(entry) = b.store.entry(&got, &input.name) {
                return Ok(resolved(input, got, entry, InputKind::Path, origin));
            }
            let entry = b.store.entry_path(&got, &input.name);
            // Copied in only if the target is built here (not found or pulled).
            Ok(ResolvedInput {
                name: input.name.clone(),
                hash: got,
                is_dir: path.is_dir(),
                entry,
                kind: InputKind::Path,
                origin,
                pending: Some(PendingFetch::Copy {
                    path: path.clone(),
                    filter,
                    at: input.at.clone(),
                }),
            })
        }
        Source::Url { url, unpack } => {
            if let Some(local) = url.strip_prefix("file://") {
                b.reach().check(std::path::Path::new(local)).map_err(fail)?;
            }
            let pinned = input.hash.or_else(|| pins.lock.get(&t.name, &input.name));
            let lookup = b.opts.mode == super::Mode::Lookup;
            if lookup
                && let Some(h) = pinned
                && let Some(entry) = b.store.find_by_hash(&h)
            {
                return Ok(resolved(input, h, entry, InputKind::Url, url.clone()));
            }
            if lookup && pinned.is_none() {
                // A lookup never downloads, so an unpinned input has no hash.
                return Err(BuildError::NotBuilt {
                    target: t.name.clone(),
                });
            }
            // A pinned download the store lacks waits until it is needed
            // (a lookup never needs it: its output came from a cache, or
            // the target is not built).
            if let Some(h) = pinned
                && b.store.find_by_hash(&h).is_none()
            {
                return Ok(ResolvedInput {
                    name: input.name.clone(),
                    hash: h,
                    entry: b.store.entry_path(&h, &input.name),
                    is_dir: *unpack,
                    kind: InputKind::Url,
                    origin: url.clone(),
                    pending: Some(PendingFetch::Download {
                        url: url.clone(),
                        unpack: *unpack,
                        at,
                        in_manifest: input.hash.is_some(),
                    }),
                });
            }
            let fetched = match crate::fetch::fetch(
                &b.store,
                url,
                *unpack,
                &input.name,
                pinned,
                b.opts.progress,
                &b.opts.download,
            ) {
                Ok(f) => f,
                // Report it as every other mismatch: where the pin is and the fix.
                Err(crate::fetch::FetchError::Mismatch { got, .. }) => {
                    pins.check(b.manifest, t, &input.name, input.hash, at.clone(), got)?;
                    return Err(fail(format!("{url} changed while it was checked")));
                }
                Err(e) => return Err(fail(e.to_string())),
            };
            pins.check(b.manifest, t, &input.name, input.hash, at, fetched.hash)?;
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
        pending: None,
    }
}

impl Ctx<'_> {
    /// Download `t`'s pending inputs (from a binary cache if one has
    /// them, else from their URLs), each checked against its pin.
    pub(super) fn materialize(
        &self,
        t: &Target,
        inputs: &mut [ResolvedInput],
    ) -> Result<(), BuildError> {
        for r in inputs {
            let (url, unpack, at, in_manifest) = match r.pending.take() {
                None => continue,
                Some(PendingFetch::Copy { path, filter, at }) => {
                    r.entry = self
                        .store
                        .add_path(&path, &filter, &r.name, &r.hash)
                        .map_err(|e| BuildError::Input {
                            target: t.name.clone(),
                            input: r.name.clone(),
                            at,
                            message: e.to_string(),
                        })?;
                    continue;
                }
                Some(PendingFetch::Download {
                    url,
                    unpack,
                    at,
                    in_manifest,
                }) => (url, unpack, at, in_manifest),
            };
            if let Some(entry) = self.store.find_by_hash(&r.hash) {
                r.entry = entry;
                continue;
            }
            if let Some(entry) = self.substitute_input(&t.name, &r.hash, &r.name, !unpack) {
                r.entry = entry;
                continue;
            }
            let fetched = crate::fetch::fetch(
                &self.store,
                &url,
                unpack,
                &r.name,
                Some(r.hash),
                self.opts.progress,
                &self.opts.download,
            );
            r.entry = match fetched {
                Ok(f) => f.entry,
                Err(crate::fetch::FetchError::Mismatch { got, .. }) => {
                    let fix = if in_manifest {
                        format!(
                            "if the new content is what you want, write hash = \"{got}\" in {}",
                            self.manifest.file.display()
                        )
                    } else {
                        format!(
                            "kiln.lock pinned it; if the change is expected run `kiln lock --update {}`",
                            r.name
                        )
                    };
                    return Err(BuildError::HashMismatch(Box::new(super::HashMismatch {
                        target: t.name.clone(),
                        input: r.name.clone(),
                        at,
                        specified: r.hash,
                        got,
                        fix,
                    })));
                }
                Err(e) => {
                    return Err(BuildError::Input {
                        target: t.name.clone(),
                        input: r.name.clone(),
                        at,
                        message: e.to_string(),
                    });
                }
            };
        }
        Ok(())
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
