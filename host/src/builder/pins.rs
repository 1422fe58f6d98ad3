//! kiln.lock as one build session reads it, checks hashes against it and
//! pins what kiln.toml leaves unpinned.

use std::path::PathBuf;

use kiln_core::hash::Sha256Hash;
use kiln_core::lockfile::{Lockfile, Pin};
use kiln_core::manifest::{Location, Manifest, Target};

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
    /// (pinning it when neither does and the content is remote or a recipe).
    pub(super) fn check(
        &mut self,
        manifest: &Manifest,
        t: &Target,
        pin: Pin<'_>,
        specified: Option<Sha256Hash>,
        at: Location,
        got: Sha256Hash,
    ) -> Result<(), BuildError> {
        let input = pin.to_string();
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
                        manifest.file.display()
                    ),
                })));
            }
            return Ok(());
        }
        match self.lock.get(&t.name, pin) {
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
                self.changed |= self.lock.set(&t.name, pin, got);
                Ok(())
            }
        }
    }
}
