//! `kiln.lock`: the hashes kiln pinned for inputs declared without one.
//!
//! Only content that can change behind the user's back is pinned: `url`
//! inputs and custom recipe files given without `hash`. (`path` inputs are
//! the user's own sources: they are hashed on every build and their hash is
//! in the build record.) Pure: reading and writing the file is the caller's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Sha256Hash;

/// The key of the pseudo-input that pins a target's custom recipe file.
pub const RECIPE_KEY: &str = "recipe";

/// A parsed kiln.lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    /// target → input name (or `recipe`) → hash.
    #[serde(default)]
    pub target: BTreeMap<String, BTreeMap<String, Sha256Hash>>,
}

/// A kiln.lock that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}; fix it, or delete it and run `kiln lock` to pin every input again")]
pub struct LockfileError {
    pub file: String,
    pub message: String,
}

impl Lockfile {
    /// Parse the text of the kiln.lock at `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, LockfileError> {
        let lock: Lockfile = toml::from_str(text).map_err(|e| LockfileError {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        if lock.version != 1 {
            return Err(LockfileError {
                file: file.to_string(),
                message: format!(
                    "lockfile version {} is not supported by this kiln (it writes version 1)",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// The pinned hash of `target`'s `input`.
    pub fn get(&self, target: &str, input: &str) -> Option<Sha256Hash> {
        self.target.get(target)?.get(input).copied()
    }

    /// Pin `hash` for `target`'s `input`; true when this changed the file.
    pub fn set(&mut self, target: &str, input: &str, hash: Sha256Hash) -> bool {
        self.version = 1;
        self.target
            .entry(target.to_string())
            .or_default()
            .insert(input.to_string(), hash)
            != Some(hash)
    }

    /// Forget pins: all of them, or those of one input in any target.
    pub fn forget(&mut self, input: Option<&str>) {
        match input {
            None => self.target.clear(),
            Some(name) => {
                for inputs in self.target.values_mut() {
                    inputs.remove(name);
                }
            }
        }
    }

    /// The file's text, stable for the same pins.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# kiln.lock — hashes kiln pinned for inputs declared without one.\n# Commit this file. Refresh with `kiln lock --update [INPUT]`.\nversion = 1\n",
        );
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
        assert!(l.set("hello", "go", h));
        assert!(!l.set("hello", "go", h));
        let text = l.render();
        assert_eq!(Lockfile::parse("kiln.lock", &text).unwrap(), l);
        assert_eq!(
            Lockfile::parse("kiln.lock", &text)
                .unwrap()
                .get("hello", "go"),
            Some(h)
        );
        l.forget(Some("go"));
        assert_eq!(l.get("hello", "go"), None);
    }

    #[test]
    fn bad_files_name_themselves() {
        let e = Lockfile::parse("/x/kiln.lock", "version = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/kiln.lock: lockfile version 2"), "{e}");
        let e = Lockfile::parse("/x/kiln.lock", "version = 1\n[target.a]\nb = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/kiln.lock") && e.contains("sha256"), "{e}");
    }
}
