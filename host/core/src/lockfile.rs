//! `kiln.lock`: the hashes kiln pinned for inputs declared without one.
//!
//! Only content that can change behind the user's back is pinned: `url`
//! inputs given without `hash`. (`path` inputs and custom recipe files are
//! the user's own sources: they are hashed on every build and their hash is
//! in the build record, so editing a local recipe needs no `kiln lock`.)
//! Pure: reading and writing the file is the caller's.
//!
//! ```toml
//! version = 2
//!
//! [target.app]        # url inputs, by target and input name
//! go = "sha256-…"
//! ```
//!
//! Files written by earlier kilns may hold recipe pins (a `[recipe]` table
//! in version 2, a `recipe` key under the target in version 1): they are
//! read and dropped, and the file is written back without them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Sha256Hash;

/// The version this kiln writes.
pub const VERSION: u32 = 2;

/// A parsed kiln.lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    /// Recipe pins an earlier kiln wrote; never used, dropped on write.
    #[serde(default, skip_serializing)]
    recipe: BTreeMap<String, Sha256Hash>,
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
        // The parser's own text quotes the offending line; a lock file can
        // be anything a checkout links to, so only where and what is said.
        let mut lock: Lockfile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| {
                let before = text.get(..s.start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{line}:{col}: ")
            });
            LockfileError {
                file: format!(
                    "{file}{}",
                    at.map(|a| format!(":{}", a.trim_end_matches(": ")))
                        .unwrap_or_default()
                ),
                message: e.message().to_string(),
            }
        })?;
        match lock.version {
            VERSION => {}
            1 => {
                // Version 1 kept the recipe pin among the inputs.
                for inputs in lock.target.values_mut() {
                    inputs.remove("recipe");
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
        lock.recipe.clear();
        Ok(lock)
    }

    /// The params key of a download's pin kiln.lock may hold (`kiln lock`
    /// writes it for a fixed-output step nothing pins): `params.KEY` with a
    /// plain KEY ending in `_hash` (`params.vendor_hash`), the shape of a
    /// pin in kiln.toml. Anything else is never learnt nor filled in.
    pub fn fetch_pin_key(setting: &str) -> Option<&str> {
        let key = setting.strip_prefix("params.")?;
        let plain = key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        (plain && key.ends_with("_hash")).then_some(key)
    }

    /// The pinned hash of input `input` of `target`.
    pub fn get(&self, target: &str, input: &str) -> Option<Sha256Hash> {
        self.target.get(target)?.get(input).copied()
    }

    /// Pin input `input` of `target` to `hash`; true if that changed the file.
    pub fn set(&mut self, target: &str, input: &str, hash: Sha256Hash) -> bool {
        self.version = VERSION;
        let old = self
            .target
            .entry(target.to_string())
            .or_default()
            .insert(input.to_string(), hash);
        old != Some(hash)
    }

    /// Rename targets `rename` gives a new name for (a project that became
    /// a workspace: `image` is `//:image`); a pin under the new name wins.
    pub fn readdress(&mut self, rename: impl Fn(&str) -> Option<String>) {
        let old: Vec<String> = self.target.keys().cloned().collect();
        for name in old {
            if let Some(new) = rename(&name)
                && let Some(pins) = self.target.remove(&name)
            {
                self.target.entry(new).or_insert(pins);
            }
        }
    }

    /// Drop every pin (`None`), or the inputs named `name` in every target.
    pub fn forget(&mut self, name: Option<&str>) {
        match name {
            None => self.target.clear(),
            Some(name) => {
                for inputs in self.target.values_mut() {
                    inputs.remove(name);
                }
            }
        }
    }

    /// The file's text: stable order, one pin per line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# kiln.lock — hashes kiln pinned for inputs declared without one.\n# Commit this file. Refresh with `kiln lock --update [INPUT]`.\nversion = {VERSION}\n"
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
    fn a_project_that_became_a_workspace_keeps_its_pins() {
        let mut l = Lockfile::default();
        let h = Sha256Hash([7; 32]);
        l.set("image", "go", h);
        l.set("svc:x", "go", h);
        l.readdress(|n| (!n.contains(':')).then(|| format!("//:{n}")));
        assert_eq!(l.get("//:image", "go"), Some(h));
        assert_eq!(l.get("image", "go"), None);
        assert_eq!(l.get("svc:x", "go"), Some(h));
        // Rendered keys are quoted where they must be.
        assert!(
            l.render().contains("[target.\"//:image\"]"),
            "{}",
            l.render()
        );
    }

    #[test]
    fn only_hash_params_are_download_pins() {
        assert_eq!(
            Lockfile::fetch_pin_key("params.vendor_hash"),
            Some("vendor_hash")
        );
        for not in [
            "output_hash",
            "params.goproxy",
            "params.a.b_hash",
            "vendor_hash",
            "params.x y_hash",
        ] {
            assert_eq!(Lockfile::fetch_pin_key(not), None, "{not}");
        }
    }

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
    fn recipe_pins_of_earlier_kilns_are_read_and_dropped() {
        let h = Sha256Hash::of_bytes(b"a");
        let v1 = format!(
            "version = 1\n[target.t]\nrecipe = \"{}\"\ngo = \"{}\"\n",
            h.to_sri(),
            h.to_sri()
        );
        let v2 = format!(
            "version = 2\n[recipe]\nt = \"{}\"\n[target.t]\ngo = \"{}\"\n",
            h.to_sri(),
            h.to_sri()
        );
        for text in [v1, v2] {
            let l = Lockfile::parse("kiln.lock", &text).unwrap();
            assert_eq!(l.version, VERSION);
            assert_eq!(l.get("t", "go"), Some(h));
            assert_eq!(l.get("t", "recipe"), None);
            assert!(!l.render().contains("recipe"), "{}", l.render());
        }
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

    #[test]
    fn an_error_never_quotes_the_file() {
        // What a checkout's kiln.lock could link to: one line of secrets.
        let e = Lockfile::parse("/x/kiln.lock", "AWS_SECRET_ACCESS_KEY=hunter2 TOKEN=abc\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("/x/kiln.lock:1:"), "{e}");
    }
}
