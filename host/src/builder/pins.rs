//! kiln.lock as one build session reads it, checks hashes against it and
//! pins what kiln.toml leaves unpinned.

use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::Lockfile;
use kiln_core::manifest::{Location, Target};

use super::{BuildError, HashMismatch};

/// kiln.lock as this session reads and updates it.
pub(super) struct Pins {
    pub(super) lock: Lockfile,
    pub(super) path: PathBuf,
    pub(super) changed: bool,
    /// `--locked`: fail instead of adding a pin.
    pub(super) frozen: bool,
}

impl Pins {
    /// Compare `got` with the hash kiln.toml specifies, or kiln.lock pins
    /// (pinning it when neither does: the caller asks only for remote content).
    pub(super) fn check(
        &mut self,
        t: &Target,
        input: &str,
        specified: Option<Sha256Hash>,
        at: Location,
        got: Sha256Hash,
    ) -> Result<(), BuildError> {
        if let Some(specified) = specified {
            if specified != got {
                return Err(BuildError::HashMismatch(Box::new(HashMismatch {
                    target: t.name.clone(),
                    input: input.to_string(),
                    at,
                    specified,
                    got,
                    fix: format!(
                        "if the new content is what you want, write hash = \"{got}\" in {}",
                        t.at.file.display()
                    ),
                })));
            }
            return Ok(());
        }
        match self.lock.get(&t.name, input) {
            Some(pinned) if pinned == got => Ok(()),
            Some(pinned) => Err(BuildError::HashMismatch(Box::new(HashMismatch {
                target: t.name.clone(),
                input: input.to_string(),
                at,
                specified: pinned,
                got,
                fix: format!(
                    "kiln.lock pinned it; if the change is expected run `kiln lock --update {input}`"
                ),
            }))),
            None if self.frozen => Err(BuildError::NotLocked {
                target: t.name.clone(),
                input: input.to_string(),
                at,
                lockfile: self.path.display().to_string(),
            }),
            None => {
                self.changed |= self.lock.set(&t.name, input, got);
                Ok(())
            }
        }
    }

    /// `t`'s params as its recipe sees them: kiln.toml's, with each
    /// fixed-output pin kiln.lock holds (`params.vendor_hash`, written by
    /// `kiln lock`) filled in where kiln.toml sets none; and the settings
    /// that came from kiln.lock. kiln.toml's own value always wins. Borrowed
    /// when nothing is filled in: every target of a no-op passes here.
    pub(super) fn params<'t>(
        &self,
        t: &'t Target,
    ) -> (std::borrow::Cow<'t, serde_json::Value>, Vec<String>) {
        let mut params = std::borrow::Cow::Borrowed(&t.params);
        let mut locked = Vec::new();
        let Some(pins) = self.lock.target.get(&t.name) else {
            return (params, locked);
        };
        for (setting, hash) in pins {
            let Some(key) = Lockfile::fetch_pin_key(setting) else {
                continue;
            };
            if params.as_object().is_some_and(|m| !m.contains_key(key))
                && let Some(map) = params.to_mut().as_object_mut()
            {
                map.insert(key.to_string(), serde_json::Value::String(hash.to_sri()));
                locked.push(setting.clone());
            }
        }
        (params, locked)
    }

    /// Pin `t`'s fixed-output step `setting` (`params.vendor_hash`) to
    /// what `kiln lock` saw it fetch; `--locked` refuses to add one.
    pub(super) fn pin_fetch(
        &mut self,
        t: &Target,
        setting: &str,
        hash: Sha256Hash,
    ) -> Result<(), BuildError> {
        if Lockfile::fetch_pin_key(setting).is_none() {
            return Ok(());
        }
        if self.lock.get(&t.name, setting) == Some(hash) {
            return Ok(());
        }
        if self.frozen {
            return Err(BuildError::NotLocked {
                target: t.name.clone(),
                input: setting.to_string(),
                at: t.at.clone(),
                lockfile: self.path.display().to_string(),
            });
        }
        self.changed |= self.lock.set(&t.name, setting, hash);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> kiln_core::manifest::Manifest {
        kiln_core::manifest::parse_manifest(
            Path::new("/p/kiln.toml"),
            "[target.t]\nrecipe = \"go\"\ninputs.src = { path = \"src\" }\n",
        )
        .unwrap()
    }

    fn pins(frozen: bool) -> Pins {
        Pins {
            lock: Lockfile::default(),
            path: PathBuf::from("/p/kiln.lock"),
            changed: false,
            frozen,
        }
    }

    fn h(b: u8) -> Sha256Hash {
        Sha256Hash([b; 32])
    }

    fn check(
        pins: &mut Pins,
        m: &kiln_core::manifest::Manifest,
        specified: Option<Sha256Hash>,
        got: Sha256Hash,
    ) -> Result<(), BuildError> {
        let t = &m.targets["t"];
        pins.check(t, "src", specified, t.at.clone(), got)
    }

    #[test]
    fn a_download_pin_fills_params_unless_kiln_toml_sets_it() {
        let m = manifest();
        let t = &m.targets["t"];
        let mut p = pins(false);
        p.pin_fetch(t, "params.vendor_hash", h(3)).unwrap();
        assert!(p.changed);
        // Only params.* settings are kept (output_hash is kiln.toml's alone).
        p.pin_fetch(t, "output_hash", h(4)).unwrap();
        assert_eq!(p.lock.get("t", "output_hash"), None);
        let (params, locked) = p.params(t);
        assert_eq!(params["vendor_hash"], h(3).to_sri());
        assert_eq!(locked, ["params.vendor_hash"]);
        let own = kiln_core::manifest::parse_manifest(
            Path::new("/p/kiln.toml"),
            "[target.t]\nrecipe = \"go\"\nparams.vendor_hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
        )
        .unwrap();
        let (params, locked) = p.params(&own.targets["t"]);
        assert_eq!(
            params["vendor_hash"],
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert!(locked.is_empty());
        // --locked: no new pin.
        let mut frozen = pins(true);
        assert!(matches!(
            frozen.pin_fetch(t, "params.vendor_hash", h(3)),
            Err(BuildError::NotLocked { .. })
        ));
    }

    #[test]
    fn a_hash_in_kiln_toml_is_checked_and_never_pinned() {
        let m = manifest();
        let mut p = pins(false);
        check(&mut p, &m, Some(h(1)), h(1)).unwrap();
        assert!(!p.changed && p.lock.get("t", "src").is_none());
        let Err(BuildError::HashMismatch(e)) = check(&mut p, &m, Some(h(1)), h(2)) else {
            panic!("a differing hash must be refused");
        };
        assert_eq!((e.specified, e.got), (h(1), h(2)));
        assert!(
            e.fix.contains("write hash = ") && e.fix.contains("/p/kiln.toml"),
            "{}",
            e.fix
        );
    }

    #[test]
    fn the_first_hash_is_pinned_then_checked() {
        let m = manifest();
        let mut p = pins(false);
        check(&mut p, &m, None, h(3)).unwrap();
        assert!(p.changed);
        assert_eq!(p.lock.get("t", "src"), Some(h(3)));
        check(&mut p, &m, None, h(3)).unwrap();
        let Err(BuildError::HashMismatch(e)) = check(&mut p, &m, None, h(4)) else {
            panic!("a change from the pin must be refused");
        };
        assert_eq!(
            e.fix,
            "kiln.lock pinned it; if the change is expected run `kiln lock --update src`"
        );
        // The refusal did not move the pin.
        assert_eq!(p.lock.get("t", "src"), Some(h(3)));
    }

    #[test]
    fn locked_refuses_to_add_a_pin_but_checks_existing_ones() {
        let m = manifest();
        let mut p = pins(true);
        assert!(matches!(
            check(&mut p, &m, None, h(5)),
            Err(BuildError::NotLocked { .. })
        ));
        assert!(!p.changed);
        p.lock.set("t", "src", h(5));
        check(&mut p, &m, None, h(5)).unwrap();
    }
}
