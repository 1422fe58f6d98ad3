//! The build key: what decides whether a stored output can be reused.
//!
//! It hashes the recipe's wasm hash, the params, every input's hash, the
//! sandbox mode and ABI version, SOURCE_DATE_EPOCH and the declared output
//! hash — as canonical JSON (sorted keys) so it is stable across kiln
//! versions that agree on [`SANDBOX_ABI`]. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Sha256Hash;

/// Bumped whenever what a recipe or tool sees changes (sandbox layout, WIT).
/// 2: the syscall filter, rlimits, a size-capped `/tmp`, read-only `/work`
/// in fixed-output steps, and the pin read from kiln.toml.
pub const SANDBOX_ABI: u32 = 2;

/// A build key: names an output by what went into it (not by its
/// content, which [`Sha256Hash`] values of inputs and outputs are). Kept a
/// distinct type so the two are never confused; a fixed-output target's
/// entry is named by its content instead, and says so where it chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildKey(pub Sha256Hash);

impl BuildKey {
    /// The key as a digest (what the store's output map is indexed by).
    pub fn hash(&self) -> Sha256Hash {
        self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

/// The key could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("cannot compute the build key: {0}")]
pub struct KeyError(#[from] serde_json::Error);

/// Everything that goes into a build key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyMaterial<'a> {
    pub recipe: Sha256Hash,
    pub params: &'a serde_json::Value,
    pub inputs: BTreeMap<&'a str, Sha256Hash>,
    /// `hermetic` or `off`: an unsandboxed output never satisfies a hermetic build.
    pub sandbox: &'a str,
    pub source_date_epoch: u64,
    pub output_hash: Option<Sha256Hash>,
}

impl KeyMaterial<'_> {
    /// The key: sha256 of the canonical JSON of this material plus the ABI.
    pub fn key(&self) -> Result<BuildKey, KeyError> {
        #[derive(Serialize)]
        struct Versioned<'b, 'a> {
            abi: u32,
            material: &'b KeyMaterial<'a>,
        }
        // serde_json's maps are sorted (no preserve_order feature), so the
        // same material always serialises to the same bytes.
        let value = serde_json::to_value(Versioned {
            abi: SANDBOX_ABI,
            material: self,
        })?;
        Ok(BuildKey(Sha256Hash::of_bytes(value.to_string().as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_key_and_the_key_is_pinned() {
        let params = serde_json::json!({"b": 1, "a": [true]});
        let h = |s: &str| Sha256Hash::of_bytes(s.as_bytes());
        let base = KeyMaterial {
            recipe: h("r"),
            params: &params,
            inputs: [("src", h("s"))].into_iter().collect(),
            sandbox: "hermetic",
            source_date_epoch: 1,
            output_hash: None,
        };
        let k = base.key().unwrap();
        assert_eq!(
            k.to_hex(),
            "9dd2857a3508d30f67d57e55b4e9a1f74651eed9f782693498df73a6d14ece21"
        );
        let other = serde_json::json!({"b": 2, "a": [true]});
        let variants = [
            KeyMaterial {
                recipe: h("r2"),
                ..base.clone()
            },
            KeyMaterial {
                params: &other,
                ..base.clone()
            },
            KeyMaterial {
                inputs: [("src", h("s2"))].into_iter().collect(),
                ..base.clone()
            },
            KeyMaterial {
                sandbox: "off",
                ..base.clone()
            },
            KeyMaterial {
                source_date_epoch: 2,
                ..base.clone()
            },
            KeyMaterial {
                output_hash: Some(h("o")),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.key().unwrap(), k, "{v:?}");
        }
    }
}
