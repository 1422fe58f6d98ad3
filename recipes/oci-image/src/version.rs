//! The image's `org.opencontainers.image.version` label from the version
//! the go recipe stamped into the binaries it holds
//! ([`kiln_sdk::version::STAMP_FILE`], docs/recipes/go.md).

use std::collections::BTreeSet;
use std::io::Read;

use kiln_sdk::platform::Platform;
use kiln_sdk::{Error, Result};

use crate::params::Params;

/// The OCI annotation/label a version goes under.
pub const LABEL: &str = "org.opencontainers.image.version";

/// The one version stamped into the inputs `contents` come from, for
/// `platform` (a cross build keeps it in the platform's directory); None
/// when none is stamped. Two different versions are an error naming them:
/// the label would be a guess.
pub fn stamped(p: &Params, platform: &Platform) -> Result<Option<String>> {
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    let froms: BTreeSet<&str> = p.contents.iter().map(|c| c.from.as_str()).collect();
    for from in froms {
        let root = kiln_sdk::input(from)?;
        // A file input (a single binary) holds no version file.
        if !root.is_dir() {
            continue;
        }
        for dir in [platform.dir().as_str(), ""] {
            let file = root.join(dir).join(kiln_sdk::version::STAMP_FILE);
            if let Some(v) = read_version(&file)
                .map_err(|e| Error::msg(format!("input '{from}': {}: {e}", file.display())))?
            {
                found.insert((v, from.to_string()));
                break;
            }
        }
    }
    let versions: BTreeSet<&String> = found.iter().map(|(v, _)| v).collect();
    match versions.len() {
        0 => Ok(None),
        1 => Ok(versions.into_iter().next().cloned()),
        _ => Err(Error::bad_params(format!(
            "the image's contents are stamped with different versions ({}): set labels.\"{LABEL}\" to the one the image carries",
            found
                .iter()
                .map(|(v, from)| format!("{v} in input '{from}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A version file's one line, at most 128 version characters; None if
/// there is no such file. Anything else (a directory, a long or odd
/// text) is refused rather than put in a label.
fn read_version(file: &std::path::Path) -> std::result::Result<Option<String>, String> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(130).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    let v = text.strip_suffix('\n').unwrap_or(&text);
    kiln_sdk::version::check(v).map(|()| Some(v.to_string()))
}
