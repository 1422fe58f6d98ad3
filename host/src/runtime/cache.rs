//! Compiled components on disk, keyed by the wasm's sha256 and the engine's
//! compatibility hash, so a recipe is compiled once per kiln build and then
//! loaded with a memory map in a few milliseconds.

use std::hash::{Hash, Hasher};
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(super) fn load(engine: &Engine, cache_dir: &Path, wasm: &[u8]) -> anyhow::Result<Component> {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let wasm_hash = data_encoding_hex(&Sha256::digest(wasm));
    let path = cache_dir.join(format!("{wasm_hash}-{:016x}.cwasm", compat.finish()));
    if path.is_file()
        && let Ok(c) = deserialize(engine, &path)
    {
        return Ok(c);
    }
    let component = Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("compiling the recipe")?;
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Write-then-rename: a concurrent reader never maps a half-written file.
    let tmp = tempfile::NamedTempFile::new_in(cache_dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(&path)
        .with_context(|| format!("caching the compiled recipe at {}", path.display()))?;
    Ok(component)
}

#[expect(
    unsafe_code,
    reason = "deserializing trusts the file to be wasmtime's own output"
)]
fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: only `load` writes files in the cache directory, atomically, from
    // `Component::serialize`; the name carries the engine's compatibility hash.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| anyhow::anyhow!("{e}"))
}

fn data_encoding_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
