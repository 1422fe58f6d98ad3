//! `kiln.lock`: the hashes kiln pinned for inputs declared without one.
//!
//! Only content that can change behind the user's back is pinned: `url`
//! inputs and custom recipe files given without `hash`. (`path` inputs are
//! the user's own sources: they are hashed on every build and their hash is
//! in the build record.) Pure: reading and writing the file is the caller's.
//!
//! ```toml
//! version = 2
//!
//! [recipe]            # custom recipe files, by target
//! app = "sha256-…"
//!
//! [target.app]        # url inputs, by target and input name
//! go = "sha256-…"
//! ```
//!
//! Recipes have their own table so that an input may be called `recipe`.
//! Version 1 files (recipe pins under the target, as `recipe`) are read and
//! written back as version 2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Sha256Hash;

/// What `kiln lock --update recipe` names: every recipe pin.
pub const RECIPE_KEY: &str = "recipe";

/// The version this kiln writes.
pub const VERSION: u32 = 2;

/// One pinned thing of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin<'a> {
    /// The target's custom recipe file.
    Recipe,
    /// The input of this name.
    Input(&'a str),
}

impl std::fmt::Display for Pin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Recipe => f.write_str(RECIPE_KEY),
            Pin::Input(name) => f.write_str(name),
        }
    }
}

/// A parsed kiln.lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    /// Custom recipe pins, by target.
    #[serde(default)]
    pub recipe: BTreeMap<String, Sha256Hash>,
    /// Input pins, by target, then input name.
    #[serde(default)]
    pub target: BTreeMap<String, BTreeMap<String, Sha256Hash>>,
}

/// A kiln.lock that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}; fix it, or delete it and run `kiln lock` to pin every input again")]
pub struct LockfileError {
    pub file: String,
    pub message: String,
}

impl Lockfile {
    /// Parse kiln.lock's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, LockfileError> {
        let mut lock: Lockfile = toml::from_str(text).map_err(|e| LockfileError {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        match lock.version {
            VERSION => {}
            1 => {
                // Version 1 kept the recipe pin among the inputs.
                for (target, inputs) in &mut lock.target {
                    if let Some(h) = inputs.remove(RECIPE_KEY) {
                        lock.recipe.insert(target.clone(), h);
                    }
                }
                lock.version = VERSION;
            }
            v => {
                return Err(LockfileError {
                    file: file.to_string(),
                    message: format!(
                        "lockfile version {v} is not supported by this kiln (it reads versions 1 and {VERSION})"
                    ),
                });
            }
        }
        Ok(lock)
    }

    /// The pinned hash of `pin` of `target`.
    pub fn get(&self, target: &str, pin: Pin<'_>) -> Option<Sha256Hash> {
        match pin {
            Pin::Recipe => self.recipe.get(target).copied(),
            Pin::Input(name) => self.target.get(target)?.get(name).copied(),
        }
    }

    /// Pin `pin` of `target` to `hash`; true if that changed the file.
    pub fn set(&mut self, target: &str, pin: Pin<'_>, hash: Sha256Hash) -> bool {
        self.version = VERSION;
        let old = match pin {
            Pin::Recipe => self.recipe.insert(target.to_string(), hash),
            Pin::Input(name) => self
                .target
                .entry(target.to_string())
                .or_default()
                .insert(name.to_string(), hash),
        };
        old != Some(hash)
    }

    /// Drop every pin (`None`), or the pins named `name` in every target:
    /// the inputs so called, and the recipe pins when `name` is `recipe`.
    pub fn forget(&mut self, name: Option<&str>) {
        match name {
            None => {
                self.target.clear();
                self.recipe.clear();
            }
            Some(name) => {
                for inputs in self.target.values_mut() {
                    inputs.remove(name);
                }
                if name == RECIPE_KEY {
                    self.recipe.clear();
                }
            }
        }
    }

    /// The file's text: stable order, one pin per line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# kiln.lock — hashes kiln pinned for inputs declared without one.\n# Commit this file. Refresh with `kiln lock --update [INPUT]`.\nversion = {VERSION}\n"
        );
        if !self.recipe.is_empty() {
            out.push_str("\n[recipe]\n");
            for (target, hash) in &self.recipe {
                out.push_str(&format!("{} = \"{}\"\n", quote_key(target), hash.to_sri()));
            }
        }
        for (target, inputs) in &self.target {
            if inputs.is_empty() {
                continue;
            }
            out.push_str(&format!("\n[target.{}]\n", quote_key(target)));
            for (name, hash) in inputs {
                out.push_str(&format!("{} = \"{}\"\n", quote_key(name), hash.to_sri()));
            }
        }
        out
    }
}

fn quote_key(k: &str) -> String {
    if k.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_changes() {
        let mut l = Lockfile::default();
        let h = Sha256Hash::of_bytes(b"x");
        assert!(l.set("hello", Pin::Input("go"), h));
        assert!(!l.set("hello", Pin::Input("go"), h));
        let text = l.render();
        assert_eq!(Lockfile::parse("kiln.lock", &text).unwrap(), l);
        assert_eq!(
            Lockfile::parse("kiln.lock", &text)
                .unwrap()
                .get("hello", Pin::Input("go")),
            Some(h)
        );
        l.forget(Some("go"));
        assert_eq!(l.get("hello", Pin::Input("go")), None);
    }

    #[test]
    fn an_input_called_recipe_is_not_the_recipe_pin() {
        let mut l = Lockfile::default();
        let (a, b) = (Sha256Hash::of_bytes(b"a"), Sha256Hash::of_bytes(b"b"));
        l.set("t", Pin::Recipe, a);
        l.set("t", Pin::Input("recipe"), b);
        let back = Lockfile::parse("kiln.lock", &l.render()).unwrap();
        assert_eq!(back.get("t", Pin::Recipe), Some(a));
        assert_eq!(back.get("t", Pin::Input("recipe")), Some(b));
    }

    #[test]
    fn version_1_files_are_read() {
        let h = Sha256Hash::of_bytes(b"a");
        let text = format!(
            "version = 1\n[target.t]\nrecipe = \"{}\"\ngo = \"{}\"\n",
            h.to_sri(),
            h.to_sri()
        );
        let l = Lockfile::parse("kiln.lock", &text).unwrap();
        assert_eq!(l.version, VERSION);
        assert_eq!(l.get("t", Pin::Recipe), Some(h));
        assert_eq!(l.get("t", Pin::Input("go")), Some(h));
        assert_eq!(l.get("t", Pin::Input("recipe")), None);
    }

    #[test]
    fn bad_files_name_themselves() {
        let e = Lockfile::parse("/x/kiln.lock", "version = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/kiln.lock: lockfile version 3"), "{e}");
        let e = Lockfile::parse("/x/kiln.lock", "version = 2\n[target.a]\nb = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/kiln.lock") && e.contains("sha256"), "{e}");
    }
}
