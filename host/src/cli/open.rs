//! What commands open or create: the store, kiln.toml, a new secret key
//! file. Each error names the file and what to do.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_core::store::Store;

use super::kiln_home;

/// The store at `$KILN_HOME`.
pub fn store() -> anyhow::Result<Store> {
    let home = kiln_home()?;
    Store::open(&home).with_context(|| format!("opening the kiln store at {}", home.display()))
}

/// `$KILN_COMPILE_CACHE`, else the store's `compiled_dir`.
pub fn compiled_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("KILN_COMPILE_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(store()?.compiled_dir()),
    }
}

/// Write a secret key to a new file only its owner can read; an existing
/// file is never replaced.
pub fn write_new_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (kiln never overwrites a key)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
