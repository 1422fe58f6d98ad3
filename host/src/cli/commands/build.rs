//! `kiln build` (and `--watch`), and the build path `kiln run` shares:
//! options from flags, the builder, `--push`, then result links and the
//! lines (or `--json`) that say where each output is.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::manifest::Manifest;

use super::cache;
use crate::builder::{BuildError, Builder};
use crate::cli::args::{BuildArgs, BuildFlags, FetchArgs};
use crate::cli::open;
use crate::cli::options::{self, Setting};
use crate::cli::project::Project;
use crate::runtime::RecipeError;
use crate::sandbox::SandboxMode;

pub(super) fn build(a: BuildArgs, quiet: bool) -> anyhow::Result<()> {
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
        if crate::interrupt::interrupted() {
            return result;
        }
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
    let watched = Project::open(a.file.file.as_deref()).ok().and_then(|p| {
        let (m, targets) = p.select(&a.targets).ok()?;
        let store_dir = open::store().ok()?.entries_dir();
        crate::watch::watched(&m, &targets, &store_dir).ok()
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
    let (manifest, targets) = Project::open(a.file.file.as_deref())?.select(&a.targets)?;
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
pub(super) struct BuildHow<'a> {
    pub flags: &'a BuildFlags,
    pub allow_paths: &'a [PathBuf],
    pub fetch: &'a FetchArgs,
    pub locked: bool,
    pub push: bool,
}

pub(super) fn build_targets(
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
    let setting = Setting::load(quiet)?.with_json(a.json);
    let store = open::store()?;
    let (executor, fallback_note) = options::executor(&setting, a, &store)?;
    if let Some(note) = fallback_note {
        errln!("warning: {note}");
    }
    let (mut opts, cache_note) = options::build(
        &setting,
        a,
        how.allow_paths,
        how.fetch,
        how.locked,
        &manifest.cache,
    )?;
    if let (Some(note), false) = (cache_note, quiet) {
        errln!("note: {note}");
    }
    if opts.sandbox == SandboxMode::Off && !quiet {
        errln!("warning: --sandbox=off: tools run on the host; outputs are marked not hermetic");
    }
    opts.executor = executor;
    let timeline = (a.trace.is_some() || a.timings.is_some()).then(|| {
        let timeline = std::sync::Arc::new(crate::timeline::Timeline::default());
        opts.reporter = opts.reporter.clone().and(timeline.clone());
        timeline
    });
    let mut builder = Builder::new(store.clone(), manifest, opts)?;
    let result = builder.build(targets);
    // Written whatever the build's end: a failure is what one most wants
    // to look at.
    if let Some(timeline) = &timeline
        && let Err(e) = write_timeline(timeline, manifest, a, &store, quiet)
    {
        // The build's own result matters more than its report.
        errln!("warning: {e:#}");
    }
    let built = match result {
        // --fetch-unpinned asked for the pin: that it is not set yet is
        // the answer, not a failure.
        Err(BuildError::Recipe(RecipeError::FixedOutputUnpinned {
            target,
            setting,
            got,
        })) if a.fetch_unpinned => {
            outln!("{setting} = \"{got}\"");
            if !quiet {
                errln!(
                    "note: the fixed-output step of target '{target}' produced {got}; pin it by writing the line above under [target.{target}] in {} (nothing it downloaded was kept), then build",
                    manifest.file.display()
                );
            }
            return Ok(());
        }
        result => result?,
    };
    if let Some(to) = &push_to {
        let outputs: Vec<PathBuf> = built.iter().map(|b| b.entry.clone()).collect();
        cache::push_outputs(&store, to, &outputs, quiet)?;
    }

    show_results(&built, a)
}

/// `--trace` and `--timings`: what `timeline` recorded, as asked.
fn write_timeline(
    timeline: &crate::timeline::Timeline,
    manifest: &Manifest,
    a: &BuildFlags,
    store: &kiln_core::store::Store,
    quiet: bool,
) -> anyhow::Result<()> {
    let (events, end) = timeline.events();
    if let Some(path) = &a.trace {
        crate::timeline::trace::write(&events, end, path)
            .with_context(|| format!("writing the trace {}", path.display()))?;
    }
    if let Some(path) = &a.timings {
        let path = match path {
            Some(path) => path.clone(),
            None => new_timings_file(store)?,
        };
        let deps = manifest
            .targets
            .values()
            .map(|t| (t.name.clone(), t.target_deps().map(String::from).collect()))
            .collect();
        crate::timeline::timings::write(&events, end, &deps, &path)
            .with_context(|| format!("writing the timings page {}", path.display()))?;
        if !quiet {
            errln!("timings: {}", path.display());
        }
    }
    Ok(())
}

/// How many pages `--timings` keeps under $KILN_HOME/timings.
const TIMINGS_KEPT: usize = 20;

/// A new file under $KILN_HOME/timings, named by the time (UTC) and this
/// process; the oldest beyond [`TIMINGS_KEPT`] are removed.
fn new_timings_file(store: &kiln_core::store::Store) -> anyhow::Result<PathBuf> {
    let dir = store.root().join("timings");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let path = dir.join(format!("kiln-timings-{now}-{}.html", std::process::id()));
    let mut pages: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kiln-timings-") && n.ends_with(".html"))
        })
        .collect();
    pages.sort();
    let excess = (pages.len() + 1).saturating_sub(TIMINGS_KEPT);
    for old in pages.into_iter().take(excess) {
        let _ = fs::remove_file(old);
    }
    Ok(path)
}

/// Link each output (`result`, or `result-TARGET` for several) and say
/// where it is and how it got there, as lines or `--json`.
fn show_results(built: &[crate::builder::Built], a: &BuildFlags) -> anyhow::Result<()> {
    let mut json = Vec::new();
    for b in built {
        let link = if a.no_link {
            None
        } else {
            let base = a.out_link.clone().unwrap_or_else(|| "result".to_string());
            let name = if built.len() == 1 {
                base
            } else {
                format!("{base}-{}", kiln_core::address::flat(&b.target))
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
                "cached": b.found,
                "substituted_from": b.substituted_from,
                "checked": b.checked,
            }));
            continue;
        }
        let from_cache = b
            .substituted_from
            .as_ref()
            .map(|url| format!(" (from cache {url})"));
        let how = match (b.checked, b.found) {
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
    if a.json {
        jsonln!(&json);
    }
    Ok(())
}

/// Point the symlink `link` at `target`, atomically replacing an old link.
/// An existing file or directory that is not a link is never touched.
fn replace_link(link: &Path, target: &Path) -> anyhow::Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
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
