//! From flags to the options the library takes: the one conversion per kind
//! of command (build, look up, lock), tested here beside it. The flags
//! (`args`) are plain values; what else an option depends on (the user's
//! config, `$KILN_COMPILE_CACHE`, whether stderr is a terminal) is read once
//! into [`Setting`] by the command. Nothing downstream patches options.

use std::path::PathBuf;

use kiln_core::manifest::ProjectCaches;

use super::args::{BuildFlags, FetchArgs, FileArg, KeyArgs};
use super::user_config::{self, UserConfig};
use crate::builder::{BuildOptions, Mode};
use crate::executor::Executor;
use crate::fetch::DownloadLimits;
use crate::report::Reporter;
use crate::runtime::Limits;
use crate::sandbox::SandboxMode;

/// What options depend on besides flags.
#[derive(Debug, Default)]
pub struct Setting {
    pub config: UserConfig,
    /// Where compiled recipes are kept.
    pub compiled_dir: PathBuf,
    /// `-q`.
    pub quiet: bool,
    /// Whether live lines and bars may be drawn (stderr is a terminal, not `-q`).
    pub progress: bool,
    /// `--json`: events are JSON lines on stderr.
    pub json: bool,
}

impl Setting {
    /// Read the user's config and environment.
    pub fn load(quiet: bool) -> anyhow::Result<Self> {
        Ok(Setting {
            config: UserConfig::load()?,
            compiled_dir: super::open::compiled_dir()?,
            quiet,
            progress: super::progress_enabled(quiet),
            json: false,
        })
    }

    /// With `--json` (events as JSON lines) when `json`.
    pub fn with_json(self, json: bool) -> Self {
        Setting { json, ..self }
    }

    /// Where the library's events go: the terminal, as `-q` says.
    pub fn reporter(&self) -> Reporter {
        if self.json {
            return Reporter::new(super::console::Console::json(self.quiet));
        }
        Reporter::new(super::console::Console::new(self.quiet, self.progress))
    }

    /// The bounds on one download: `--max-download` and where it may go.
    pub fn download(&self, max_bytes: usize, fetch: &FetchArgs) -> DownloadLimits {
        DownloadLimits {
            max_bytes: max_bytes as u64,
            allow: self.config.fetch_allow(fetch),
            ..DownloadLimits::default()
        }
    }
}

/// Options for `kiln build` and `kiln run`, and what the user should read
/// about them (a project's caches skipped). `allow_paths` and `fetch` are
/// the reach flags (`kiln run` grants the paths named on its command line).
pub fn build(
    s: &Setting,
    flags: &BuildFlags,
    allow_paths: &[PathBuf],
    fetch: &FetchArgs,
    locked: bool,
    project_caches: &ProjectCaches,
) -> anyhow::Result<(BuildOptions, Option<String>)> {
    let (substituters, note) =
        user_config::substituters(&s.config.cache, &flags.substitute, project_caches)?;
    let opts = BuildOptions {
        mode: if flags.check {
            Mode::Check
        } else {
            Mode::Build
        },
        jobs: match flags.jobs {
            Some(j) => usize::from(j),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        sandbox: flags.key.sandbox.into(),
        executor: Executor::Local(flags.key.sandbox.into()),
        limits: Limits {
            timeout: flags.timeout,
            memory_bytes: flags.memory,
            disk_bytes: flags.disk as u64,
            tool_memory_bytes: flags.tool_memory.map(|m| m as u64),
            ..Limits::default()
        },
        source_date_epoch: flags.key.source_date_epoch,
        locked,
        reporter: s.reporter(),
        compiled_dir: s.compiled_dir.clone(),
        fetch_unpinned: flags.fetch_unpinned,
        tool_caches: !flags.no_cache,
        substituters,
        allow_paths: allow_paths.to_vec(),
        download: s.download(flags.max_download, fetch),
    };
    Ok((opts, note))
}

/// Where `flags` and the user's config say tool steps run: a remote
/// engine, connected now (an engine that cannot be reached is an error, or
/// with `--remote-fallback` a warning and this machine), or here.
pub fn executor(
    s: &Setting,
    flags: &BuildFlags,
    store: &kiln_core::store::Store,
) -> anyhow::Result<(Executor, Option<String>)> {
    let here = Executor::Local(flags.key.sandbox.into());
    let Some(mut remote) = s.config.remote(&flags.remote) else {
        return Ok((here, None));
    };
    remote.step_timeout = flags.timeout;
    if SandboxMode::from(flags.key.sandbox) == SandboxMode::Off {
        anyhow::bail!(
            "--sandbox=off runs tools on this machine without isolation; a remote executor runs them in the engine's sandbox. Drop one of --sandbox=off and --remote-executor (or pass --no-remote)"
        );
    }
    match crate::remote::connect(&remote, store) {
        Ok(runner) => Ok((Executor::Remote(runner), None)),
        Err(e @ crate::remote::RemoteError::Unreachable { .. }) if remote.fallback => Ok((
            here,
            Some(format!(
                "{}\n  running every step on this machine instead (remote fallback)",
                e.to_string().lines().next().unwrap_or_default()
            )),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Options for finding targets as last built (`audit`, `push`, `cache
/// push`): nothing runs or downloads; the key flags must be those the
/// targets were built with.
pub fn lookup(s: &Setting, key: &KeyArgs, file: &FileArg) -> BuildOptions {
    BuildOptions {
        mode: Mode::Lookup,
        sandbox: key.sandbox.into(),
        source_date_epoch: key.source_date_epoch,
        ..resolving(s, file)
    }
}

/// Options for `kiln lock`: inputs are resolved and pinned, no recipe runs.
pub fn lock(s: &Setting, file: &FileArg) -> BuildOptions {
    resolving(s, file)
}

/// One thread, no recipe log, the default key.
fn resolving(s: &Setting, file: &FileArg) -> BuildOptions {
    BuildOptions {
        mode: Mode::Build,
        jobs: 1,
        sandbox: SandboxMode::Hermetic,
        executor: Executor::default(),
        limits: Limits::default(),
        source_date_epoch: 1,
        locked: false,
        reporter: s.reporter(),
        compiled_dir: s.compiled_dir.clone(),
        fetch_unpinned: false,
        tool_caches: true,
        substituters: None,
        allow_paths: file.allow_paths.clone(),
        download: DownloadLimits {
            allow: s.config.fetch_allow(&file.fetch),
            ..DownloadLimits::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn setting(quiet: bool) -> Setting {
        Setting {
            compiled_dir: "/compiled".into(),
            quiet,
            ..Setting::default()
        }
    }

    fn build_from(argv: &[&str]) -> BuildOptions {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Build(a) = cli.command else {
            panic!("not a build: {argv:?}");
        };
        let (opts, note) = build(
            &setting(cli.quiet),
            &a.flags,
            &a.file.allow_paths,
            &a.file.fetch,
            a.locked,
            &ProjectCaches::default(),
        )
        .unwrap();
        assert_eq!(note, None);
        opts
    }

    #[test]
    fn build_flags_become_build_options() {
        let o = build_from(&[
            "kiln",
            "-q",
            "build",
            "--check",
            "-j",
            "3",
            "--sandbox",
            "off",
            "--timeout",
            "90s",
            "--memory",
            "1G",
            "--tool-memory",
            "512M",
            "--disk",
            "2G",
            "--source-date-epoch",
            "7",
            "--locked",
            "--no-cache",
            "--fetch-unpinned",
            "--max-download",
            "1M",
            "--allow-path",
            "/srv/shared",
            "--allow-fetch-from",
            "127.0.0.1",
        ]);
        assert_eq!(o.mode, Mode::Check);
        assert_eq!(o.jobs, 3);
        assert_eq!(o.sandbox, SandboxMode::Off);
        assert_eq!(o.limits.timeout, Duration::from_secs(90));
        assert_eq!(o.limits.memory_bytes, 1 << 30);
        assert_eq!(o.limits.tool_memory_bytes, Some(512 << 20));
        assert_eq!(o.limits.disk_bytes, 2 << 30);
        assert_eq!(o.source_date_epoch, 7);
        assert!(o.locked && !o.tool_caches && o.fetch_unpinned);
        assert_eq!(o.download.max_bytes, 1 << 20);
        assert_eq!(o.download.allow.0.len(), 1);
        assert_eq!(o.allow_paths, vec![PathBuf::from("/srv/shared")]);
        assert_eq!(o.compiled_dir, PathBuf::from("/compiled"));
        assert!(o.substituters.is_none());
    }

    #[test]
    fn build_defaults_are_a_hermetic_build_that_shows_its_log() {
        let o = build_from(&["kiln", "build"]);
        assert_eq!(o.mode, Mode::Build);
        assert_eq!(o.sandbox, SandboxMode::Hermetic);
        assert_eq!(o.source_date_epoch, 1);
        assert!(o.tool_caches && !o.locked && !o.fetch_unpinned);
        assert_eq!(o.download.max_bytes, DownloadLimits::default().max_bytes);
        assert!(o.jobs >= 1);
    }

    #[test]
    fn lookups_take_the_key_flags_and_run_nothing() {
        let cli = Cli::try_parse_from([
            "kiln",
            "audit",
            "--sandbox=off",
            "--source-date-epoch=9",
            "x",
        ])
        .unwrap();
        let Command::Audit(a) = cli.command else {
            panic!("not an audit");
        };
        let o = lookup(&setting(false), &a.key, &a.file);
        assert_eq!(o.mode, Mode::Lookup);
        assert_eq!(o.sandbox, SandboxMode::Off);
        assert_eq!(o.source_date_epoch, 9);
        assert_eq!(o.jobs, 1);
        let l = lock(&setting(false), &a.file);
        assert_eq!((l.mode, l.source_date_epoch), (Mode::Build, 1));
    }
}
