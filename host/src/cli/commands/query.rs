//! `kiln query deps|rdeps|affected` and `kiln graph`: the project's target
//! graph, from kiln.toml alone. `affected` asks git what changed since a
//! revision; everything else is [`crate::query`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use kiln_core::lockfile::Lockfile;

use crate::cli::args::{GraphArgs, QueryCommand};
use crate::cli::project::Project;
use crate::cli::{open, options};
use crate::query::{self, Change};

pub(super) fn query(q: QueryCommand) -> anyhow::Result<()> {
    match q {
        QueryCommand::Deps(a) => {
            let (m, names) = Project::open(a.file.file.as_deref())?.select(&a.targets)?;
            print_names(&query::deps(&m, &names), a.json)
        }
        QueryCommand::Rdeps(a) => {
            let project = Project::open(a.file.file.as_deref())?;
            let (_, names) = project.select(&a.targets)?;
            let all = project.load_all()?;
            print_names(&query::rdeps(&all, &names), a.json)
        }
        QueryCommand::Affected { since, file, json } => {
            let all = Project::open(file.file.as_deref())?.load_all()?;
            let change = git_change(&all.dir, &since, &all.files)?;
            let lock = read_lock(&all.dir.join("kiln.lock"))?;
            let affected = query::affected(&all, &lock, &change);
            if json {
                jsonln!(&affected);
            } else {
                for a in &affected {
                    outln!("{}\t{}", a.target, a.because);
                }
            }
            Ok(())
        }
    }
}

pub(super) fn graph(a: GraphArgs) -> anyhow::Result<()> {
    let (m, names) = Project::open(a.file.file.as_deref())?.select(&a.targets)?;
    let marks = if a.no_status {
        None
    } else {
        // The drawing needs kiln.toml only: without the store's word it is
        // drawn unmarked, never refused.
        marks(&m, &names, &a)
            .inspect_err(|e| {
                errln!("warning: drawn without state (up to date, out of date): {e:#}")
            })
            .ok()
    };
    let text = query::graph(&m, &names, a.format, marks.as_ref());
    match a.format {
        // JSON's own escapes, not a terminal's, for what a terminal would obey.
        query::GraphFormat::Json => crate::cli::write_stdout(&crate::terminal::safe_json(&text))?,
        _ => out!("{text}"),
    }
    Ok(())
}

/// Where each target stands and its inputs' hashes, from the store:
/// nothing is built or downloaded.
fn marks(
    m: &kiln_core::manifest::Manifest,
    names: &[String],
    a: &GraphArgs,
) -> anyhow::Result<HashMap<String, query::Mark>> {
    use crate::builder::{Builder, State};
    let setting = options::Setting::load(true)?;
    let store = open::store()?;
    // `kiln gc` holds the store alone: say so rather than wait for it.
    if !store.try_hold_for_use()? {
        anyhow::bail!("kiln gc is running on {}", store.root().display());
    }
    let mut builder = Builder::new(store, m, options::lookup(&setting, &a.key, &a.file))?;
    let status = builder.status(names)?;
    Ok(status
        .into_iter()
        .map(|s| {
            let (state, detail, output) = match s.state {
                State::Stored { output } => ("up to date", None, Some(output)),
                State::OutOfDate => ("out of date", None, None),
                State::Waits { on } => ("unknown", Some(format!("until {on} is built")), None),
                State::Unresolved { why } => ("unknown", Some(why), None),
            };
            let mark = query::Mark {
                state,
                detail,
                output,
                inputs: s.inputs.into_iter().collect(),
            };
            (s.target, mark)
        })
        .collect())
}

fn print_names(names: &[String], json: bool) -> anyhow::Result<()> {
    if json {
        jsonln!(&names);
    } else {
        for n in names {
            outln!("{n}");
        }
    }
    Ok(())
}

fn read_lock(path: &Path) -> anyhow::Result<Lockfile> {
    use kiln_core::sidefile::{self, Links, limits};
    match sidefile::read_to_string(path, Links::Follow, limits::TEXT) {
        Ok(text) => Ok(Lockfile::parse(&path.display().to_string(), &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lockfile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// git, run in `dir` with nothing of the repository's configuration that
/// runs programs: only plumbing that reads no file through a filter
/// (`diff-index` reports a stat-dirty file as changed rather than reading
/// it through a clean filter), no fsmonitor hook, no external diff, no
/// lazy fetch of a partial clone (which would run ssh or a credential
/// helper), no prompt.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.untrackedCache=false",
            "-c",
            "diff.autoRefreshIndex=false",
        ])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_EXTERNAL_DIFF")
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run git (kiln query affected asks git what changed; install git)")?;
    if !out.status.success() {
        bail!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// What differs between `rev` and the working tree under `root`: changed,
/// deleted and untracked files, and each kiln.toml (`manifests`) and
/// kiln.lock as they were at `rev`.
fn git_change(root: &Path, rev: &str, manifests: &[PathBuf]) -> anyhow::Result<Change> {
    if rev.starts_with('-') {
        bail!("--since '{rev}' is not a revision");
    }
    let commit = String::from_utf8(
        git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .with_context(|| {
            format!(
                "'{rev}' is not a commit of the repository at {}",
                root.display()
            )
        })?,
    )?
    .trim()
    .to_string();
    let top =
        PathBuf::from(String::from_utf8(git(root, &["rev-parse", "--show-toplevel"])?)?.trim());
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    // Paths git prints are relative to the top of the repository; the
    // project may be a directory below it. Names are bytes, not UTF-8.
    let under_root = |p: &[u8]| -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let abs = top.join(std::ffi::OsStr::from_bytes(p));
        abs.strip_prefix(&real_root).ok().map(Path::to_path_buf)
    };
    let mut files = BTreeSet::new();
    let diff = git(
        &top,
        &[
            "diff-index",
            "--name-only",
            "--no-renames",
            "--ignore-submodules=dirty",
            "-z",
            &commit,
            "--",
        ],
    )?;
    let untracked = git(&top, &["ls-files", "-z", "--others", "--exclude-standard"])?;
    for p in diff.split(|b| *b == 0).chain(untracked.split(|b| *b == 0)) {
        if let Some(rel) = under_root(p).filter(|_| !p.is_empty()) {
            files.insert(rel);
        }
    }
    let old = |rel: &Path| -> anyhow::Result<Option<String>> {
        let in_repo = real_root.join(rel);
        let path = in_repo.strip_prefix(&top).unwrap_or(&in_repo);
        let spec = format!("{commit}:{}", path.display());
        // Absent then, too large or not text: it counts as changed.
        let Ok(size) = git(&top, &["cat-file", "-s", &spec]) else {
            return Ok(None);
        };
        let size: u64 = String::from_utf8_lossy(&size)
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        if size > kiln_core::sidefile::limits::TEXT {
            return Ok(None);
        }
        Ok(String::from_utf8(git(&top, &["cat-file", "blob", &spec])?).ok())
    };
    let mut change = Change {
        files,
        real_root: real_root.clone(),
        ..Change::default()
    };
    for m in manifests {
        let rel = m.strip_prefix(root).unwrap_or(m).to_path_buf();
        if change.files.contains(&rel) {
            let text = old(&rel)?;
            change.old_manifests.insert(rel, text);
        }
    }
    if change.files.contains(Path::new("kiln.lock")) {
        change.old_lock = Some(old(Path::new("kiln.lock"))?);
    }
    Ok(change)
}
