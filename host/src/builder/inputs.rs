//! Resolving one declared input to a hashed, read-only store entry:
//! `path` inputs are hashed (through the stat cache) and copied in,
//! `url` inputs fetched (or found in the store by hash), `target` inputs are
//! the dependency's output. Every hash is checked here, before any recipe runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::manifest::{Input, Source, Target};
use kiln_core::pathfilter::PathFilter;

use super::{BuildError, Built, Ctx, InputError, Pins};
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

/// Resolve `input` of `t`: hashed and checked against its pin, found in
/// the store or made ready to fetch (see [`PendingFetch`]). A lookup
/// (`Mode::Lookup`) writes nothing and downloads nothing.
pub(super) fn resolve(
    b: &Ctx<'_>,
    pins: &mut Pins,
    built: &BTreeMap<String, Built>,
    t: &Target,
    input: &Input,
) -> Result<ResolvedInput, BuildError> {
    let r = Resolving {
        b,
        t,
        input,
        lookup: b.opts.mode == super::Mode::Lookup,
    };
    match &input.source {
        Source::Path { path, exclude } => r.path(pins, path, exclude),
        Source::Url { url, unpack } => r.url(pins, url, *unpack),
        Source::Image { reference } => r.image(reference),
        Source::Target(dep) => {
            let built = built
                .get(dep)
                .ok_or_else(|| r.fail(InputError::NotBuilt(dep.clone())))?;
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

/// One input being resolved.
struct Resolving<'a, 'c> {
    b: &'a Ctx<'c>,
    t: &'a Target,
    input: &'a Input,
    /// Only find what is stored: write nothing, download nothing.
    lookup: bool,
}

impl Resolving<'_, '_> {
    fn fail(&self, reason: impl Into<InputError>) -> BuildError {
        BuildError::Input {
            target: self.t.name.clone(),
            input: self.input.name.clone(),
            at: self.input.at.clone(),
            reason: Box::new(reason.into()),
        }
    }

    /// Where the input's pin is written (its `hash`, else the input).
    fn pin_at(&self) -> kiln_core::manifest::Location {
        self.input
            .hash_at
            .clone()
            .unwrap_or_else(|| self.input.at.clone())
    }

    /// A `path` input: hashed on every build (through the stat cache), and
    /// copied in only if the target is built here.
    fn path(
        &self,
        pins: &mut Pins,
        path: &std::path::Path,
        exclude: &[String],
    ) -> Result<ResolvedInput, BuildError> {
        let (b, input) = (self.b, self.input);
        let exclude = &b.manifest.source_excludes(path, exclude)[..];
        // kiln's own result links are never source, whatever -o named them.
        let filter = b.source_filter(exclude);
        let origin = origin_of(path, &b.manifest.dir);
        // Targets sharing a source (from one package) hash it once.
        let memo = (path.to_path_buf(), exclude.to_vec(), self.t.dir.clone());
        let known = b
            .path_hashes
            .lock()
            .ok()
            .and_then(|m| m.get(&memo).copied());
        let got = match known {
            Some(h) => h,
            None => {
                if !path.exists() {
                    return Err(self.fail(InputError::Missing(path.to_path_buf())));
                }
                b.reach(self.t).check(path).map_err(|e| self.fail(e))?;
                let got = if self.lookup {
                    // A lookup writes nothing, not even the stat cache.
                    kiln_core::hashcache::hash_cached_read_only(
                        &b.store.hashcache_dir(),
                        path,
                        &filter,
                    )
                } else {
                    kiln_core::hashcache::hash_cached(&b.store.hashcache_dir(), path, &filter)
                }
                .map_err(|e| self.fail(e))?;
                if let Ok(mut m) = b.path_hashes.lock() {
                    m.insert(memo, got);
                }
                got
            }
        };
        if self.lookup {
            return match b.find_by_hash(&got) {
                Some(entry) => Ok(resolved(input, got, entry, InputKind::Path, origin)),
                None => Ok(self.pending_copy(got, path, filter, origin)),
            };
        }
        // Local sources are hashed on every build; only an explicit hash pins them.
        if let Some(specified) = input.hash {
            pins.check(self.t, &input.name, Some(specified), self.pin_at(), got)?;
        }
        match b.entry(&got, &input.name) {
            Some(entry) => Ok(resolved(input, got, entry, InputKind::Path, origin)),
            None => Ok(self.pending_copy(got, path, filter, origin)),
        }
    }

    /// An `image` input: the store's copy of the pinned image for the
    /// platforms the target builds, else pulled (every blob checked
    /// against its digest) and stored as an OCI layout, shared by every
    /// project that pins the same digest.
    fn image(&self, reference: &str) -> Result<ResolvedInput, BuildError> {
        use crate::registry::pull::{PinnedImage, pull};
        let (b, input) = (self.b, self.input);
        let pinned = PinnedImage::parse(reference).map_err(|e| self.fail(InputError::Image(e)))?;
        let platforms = image_platforms(&self.t.params);
        // The stored layout depends on the digest and platforms alone (not
        // on the name a project pulled it by), so any project may share it.
        let key = Sha256Hash::of_bytes(
            format!(
                "kiln image input 2\0{}\0{}",
                pinned.digest,
                serde_json::to_string(&platforms).unwrap_or_default()
            )
            .as_bytes(),
        );
        let origin = pinned.display();
        if let Some((entry, Some(hash))) = b.store.lookup_output(&key)
            && b.store.holds(&entry, &hash)
        {
            return Ok(resolved(input, hash, entry, InputKind::Image, origin));
        }
        if self.lookup {
            return Err(self.fail(InputError::Image(format!(
                "{origin} has not been pulled into this store; run `kiln build` first"
            ))));
        }
        let staging = b.store.temp_dir("image-").map_err(|e| self.fail(e))?;
        let dest = staging.path().join("oci");
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        // No proxy: the address rule must judge the registry itself (a
        // proxy would resolve and reach names kiln never sees). A body
        // that trickles is bounded in time, not only in bytes.
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .timeout_connect(Some(b.opts.download.stall))
            .timeout_recv_response(Some(b.opts.download.stall))
            .timeout_recv_body(Some(std::time::Duration::from_secs(30 * 60)))
            .http_status_as_error(false)
            .build();
        let agent = crate::fetch::guarded_agent(config, b.opts.download.allow.clone());
        b.opts
            .reporter
            .note(format!("pulling {origin} ({})", platforms.join(", ")));
        let pulled = pull(&pinned, &platforms, &dest, agent, b.opts.download.max_bytes)
            .map_err(|e| self.fail(InputError::Image(e.to_string())))?;
        let filter = PathFilter::default();
        let hash = kiln_core::store::content_hash(&dest, &filter).map_err(|e| self.fail(e))?;
        let entry = b
            .store
            .add_path(&dest, &filter, &input.name, &hash)
            .map_err(|e| self.fail(e))?;
        b.store
            .record_output(&key, &entry, Some(&hash))
            .map_err(|e| self.fail(e))?;
        b.opts.reporter.note(format!(
            "pulled {origin}: {} blobs, {} bytes",
            pulled.blobs, pulled.bytes
        ));
        Ok(resolved(input, hash, entry, InputKind::Image, origin))
    }

    /// A path input the store lacks: copied in if the target is built here
    /// (not found or pulled).
    fn pending_copy(
        &self,
        hash: Sha256Hash,
        path: &std::path::Path,
        filter: PathFilter,
        origin: String,
    ) -> ResolvedInput {
        ResolvedInput {
            name: self.input.name.clone(),
            hash,
            is_dir: path.is_dir(),
            entry: self.b.store.entry_path(&hash, &self.input.name),
            kind: InputKind::Path,
            origin,
            pending: Some(PendingFetch::Copy {
                path: path.to_path_buf(),
                filter,
                at: self.input.at.clone(),
            }),
        }
    }

    /// A `url` input: found in the store by its pin, left pending (pinned
    /// downloads wait until a build needs them), or downloaded to learn
    /// its hash.
    fn url(&self, pins: &mut Pins, url: &str, unpack: bool) -> Result<ResolvedInput, BuildError> {
        let (b, t, input) = (self.b, self.t, self.input);
        if let Some(local) = url.strip_prefix("file://") {
            b.reach(t)
                .check(std::path::Path::new(local))
                .map_err(|e| self.fail(e))?;
        }
        let pinned = input.hash.or_else(|| pins.lock.get(&t.name, &input.name));
        let stored = pinned.and_then(|h| b.find_by_hash(&h).map(|e| (h, e)));
        match (pinned, stored) {
            (_, Some((h, entry))) if self.lookup => {
                return Ok(resolved(input, h, entry, InputKind::Url, url.to_string()));
            }
            // A lookup never downloads, so an unpinned input has no hash.
            (None, _) if self.lookup => {
                return Err(BuildError::NotBuilt {
                    target: t.name.clone(),
                });
            }
            // A pinned download the store lacks waits until it is needed
            // (a lookup never needs it: its output came from a cache, or
            // the target is not built).
            (Some(h), None) => {
                return Ok(ResolvedInput {
                    name: input.name.clone(),
                    hash: h,
                    entry: b.store.entry_path(&h, &input.name),
                    is_dir: unpack,
                    kind: InputKind::Url,
                    origin: url.to_string(),
                    pending: Some(PendingFetch::Download {
                        url: url.to_string(),
                        unpack,
                        at: self.pin_at(),
                        in_manifest: input.hash.is_some(),
                    }),
                });
            }
            _ => {}
        }
        let fetched = match crate::fetch::fetch(
            &b.store,
            url,
            unpack,
            &input.name,
            pinned,
            &b.opts.reporter,
            &b.opts.download,
        ) {
            Ok(f) => f,
            // Report it as every other mismatch: where the pin is and the fix.
            Err(crate::fetch::FetchError::Mismatch { got, .. }) => {
                pins.check(t, &input.name, input.hash, self.pin_at(), got)?;
                return Err(self.fail(InputError::Changed {
                    url: url.to_string(),
                }));
            }
            Err(e) => return Err(self.fail(e)),
        };
        pins.check(t, &input.name, input.hash, self.pin_at(), fetched.hash)?;
        Ok(resolved(
            input,
            fetched.hash,
            fetched.entry,
            InputKind::Url,
            url.to_string(),
        ))
    }
}

/// The platforms an image input is pulled for: the target's
/// `params.platforms` when it builds several, else linux and its
/// `params.architecture` (amd64 by default), as the oci-image recipe
/// builds them.
fn image_platforms(params: &serde_json::Value) -> Vec<String> {
    if let Some(list) = params["platforms"].as_array()
        && !list.is_empty()
    {
        return list
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
    }
    let arch = params["architecture"].as_str().unwrap_or("amd64");
    vec![format!("linux/{arch}")]
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
                            reason: Box::new(e.into()),
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
            if let Some(entry) = self.find_by_hash(&r.hash) {
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
                &self.opts.reporter,
                &self.opts.download,
            );
            r.entry = match fetched {
                Ok(f) => f.entry,
                Err(crate::fetch::FetchError::Mismatch { got, .. }) => {
                    let fix = if in_manifest {
                        format!(
                            "if the new content is what you want, write hash = \"{got}\" in {}",
                            t.at.file.display()
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
                        reason: Box::new(e.into()),
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
