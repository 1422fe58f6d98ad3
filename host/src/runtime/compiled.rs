//! Compiled components on disk, keyed by the wasm's sha256 and the engine's
//! compatibility hash, so a recipe is compiled once per kiln build and then
//! loaded with a memory map in a few milliseconds.

use std::hash::{Hash, Hasher};
use std::path::Path;

use anyhow::Context;
use kiln_core::store::{Existing, write_atomic};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(super) fn load(engine: &Engine, cache_dir: &Path, wasm: &[u8]) -> anyhow::Result<Component> {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let wasm_hash = data_encoding_hex(&Sha256::digest(wasm));
    let path = cache_dir.join(format!("{wasm_hash}-{:016x}.cwasm", compat.finish()));
    if path.is_file()
        && trusted(cache_dir, &path)
        && let Ok(c) = deserialize(engine, &path)
    {
        return Ok(c);
    }
    let component = Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("compiling the recipe")?;
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Atomic: a concurrent reader never maps a half-written file.
    write_atomic(&path, &bytes, Existing::Replace)
        .with_context(|| format!("caching the compiled recipe at {}", path.display()))?;
    Ok(component)
}

/// Whether a cached file can be trusted to be kiln's own output: the file
/// and its directory belong to the user running kiln (or root), and
/// neither is writable by anyone else. Loading a compiled component runs
/// its native code, so a file another user could have planted is compiled
/// afresh instead.
fn trusted(dir: &Path, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let ok = |p: &Path, is_dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            let kind_ok = if is_dir { m.is_dir() } else { m.is_file() };
            let sticky = is_dir && m.mode() & 0o1000 != 0;
            kind_ok && (m.uid() == me || m.uid() == 0) && m.mode() & 0o022 == 0 && !sticky
        })
    };
    ok(dir, true) && ok(file, false)
}

#[expect(
    unsafe_code,
    reason = "deserializing trusts the file to be wasmtime's own output"
)]
fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: only `load` writes files in the cache directory, atomically, from
    // `Component::serialize`; the name carries the engine's compatibility
    // hash; `trusted` checked that no other user could have written it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| anyhow::anyhow!("{e}"))
}

fn data_encoding_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_files_no_one_else_could_write_are_trusted() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.cwasm");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(trusted(d.path(), &f));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!trusted(d.path(), &f), "a world-writable file");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!trusted(d.path(), &f), "a shared, sticky directory");
        let link = d.path().join("link.cwasm");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!trusted(d.path(), &link), "a symlink");
    }
}
