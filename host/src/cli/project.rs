//! Which project a command works on, and which of its targets.
//!
//! Without `-f`, kiln looks for kiln.toml in the current directory, then in
//! its parents. If the nearest one is a member of a workspace above it (a
//! parent kiln.toml with `[workspace]` whose members include it), the
//! workspace is the project. Only files owned by this user (or root) are
//! considered above the current directory: a kiln.toml someone else
//! planted in `/tmp` or a shared parent cannot adopt a project.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_core::address::{self, Naming, Pattern};
use kiln_core::manifest::{Manifest, declares_workspace, parse_manifest, workspace_may_name};
use kiln_core::workspace::{Packages, Workspace};

/// A project: one kiln.toml, or a workspace.
#[derive(Debug)]
pub enum Project {
    Single(Manifest),
    Workspace {
        ws: Workspace,
        /// The package holding the current directory ("" for the root's).
        cwd_package: String,
        /// The current directory's path below the root.
        cwd_path: String,
    },
}

fn read(path: &Path) -> std::io::Result<String> {
    use kiln_core::sidefile::{self, Links, limits};
    sidefile::read_to_string(path, Links::Follow, limits::TEXT)
}

/// A member's kiln.toml: never a link (it could lead out of its package).
fn read_member(path: &Path) -> std::io::Result<String> {
    use kiln_core::sidefile::{self, Links, limits};
    sidefile::read_to_string(path, Links::Refuse, limits::TEXT)
}

/// Whether a kiln.toml found above the current directory may be used.
/// Both the name (a symlink someone else planted counts as theirs) and
/// what it leads to must be the user's or root's, and a regular file.
fn trusted(path: &Path) -> bool {
    let me = rustix::process::geteuid().as_raw();
    let ours = |m: &std::fs::Metadata| m.uid() == me || m.uid() == 0;
    std::fs::symlink_metadata(path).is_ok_and(|m| ours(&m))
        && std::fs::metadata(path).is_ok_and(|m| m.is_file() && ours(&m))
}

impl Project {
    /// The project `file` (`-f`) names, else the one the current directory
    /// is in.
    pub fn open(file: Option<&Path>) -> anyhow::Result<Project> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let nearest = match file {
            Some(f) => std::path::absolute(f).with_context(|| format!("resolving {}", f.display()))?,
            None => cwd
                .ancestors()
                .map(|d| d.join("kiln.toml"))
                .enumerate()
                .find(|(i, f)| f.is_file() && (*i == 0 || trusted(f)))
                .map(|(_, f)| f)
                .context(
                    "no kiln.toml in this directory or above; run kiln where one is, or pass -f path/to/kiln.toml",
                )?,
        };
        let text = read(&nearest).with_context(|| format!("cannot read {}", nearest.display()))?;
        let (root_file, root_text) = if declares_workspace(&text) {
            (nearest.clone(), text)
        } else {
            match workspace_above(&nearest)? {
                Some(root) => root,
                None => return Ok(Project::Single(parse_manifest(&nearest, &text)?)),
            }
        };
        let ws = Workspace::open(&root_file, &root_text)?;
        // The package the command speaks from: the current directory's,
        // or with -f the file's.
        let here = match file {
            Some(_) => nearest.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => cwd,
        };
        let (cwd_package, cwd_path) = ws.package_of(&here);
        Ok(Project::Workspace {
            ws,
            cwd_package,
            cwd_path,
        })
    }

    /// The manifest holding what `args` select and what they depend on,
    /// and the selected addresses. No arguments select every target at or
    /// below the current directory (every target, without a workspace).
    pub fn select(&self, args: &[String]) -> anyhow::Result<(Manifest, Vec<String>)> {
        let (ws, cwd_package, cwd_path) = match self {
            Project::Single(m) => {
                let mut names = Vec::new();
                for a in args {
                    match address::parse_pattern(Naming::Single, "", "", a)
                        .map_err(|e| anyhow::anyhow!("target {e}"))?
                    {
                        Pattern::Target(t) => names.push(t),
                        Pattern::Below(_) => names.extend(m.targets.keys().cloned()),
                    }
                }
                if args.is_empty() {
                    names = m.targets.keys().cloned().collect();
                }
                if let Some(n) = names.iter().find(|n| !m.targets.contains_key(*n)) {
                    let known: Vec<&str> = m.targets.keys().map(String::as_str).collect();
                    bail!(
                        "{} has no target '{n}' (targets: {})",
                        m.file.display(),
                        known.join(", ")
                    );
                }
                dedup(&mut names);
                return Ok((m.clone(), names));
            }
            Project::Workspace {
                ws,
                cwd_package,
                cwd_path,
            } => (ws, cwd_package, cwd_path),
        };
        // No arguments: everything at or below the current directory, or
        // from inside a package's subdirectory (`services/api/src`), that
        // package's targets.
        let below_here = ws.packages_below(cwd_path);
        let default = if !cwd_package.is_empty() && below_here.is_empty() {
            format!("//{cwd_package}/...")
        } else {
            "./...".to_string()
        };
        let default = [default];
        let args = if args.is_empty() { &default[..] } else { args };
        let mut patterns = Vec::new();
        let mut packages = BTreeSet::new();
        for a in args {
            let p = address::parse_pattern(Naming::Workspace, cwd_package, cwd_path, a)
                .map_err(|e| anyhow::anyhow!("target {e}"))?;
            match &p {
                Pattern::Target(t) => {
                    packages.insert(address::split(t).0.to_string());
                }
                Pattern::Below(prefix) => packages.extend(ws.packages_below(prefix)),
            }
            patterns.push((a, p));
        }
        let manifest = ws.load(&Packages::Some(packages), read_member)?;
        let mut names = Vec::new();
        for (arg, p) in patterns {
            match p {
                Pattern::Target(t) => {
                    if !manifest.targets.contains_key(&t) {
                        bail!("{}", unknown(&manifest, ws, &t));
                    }
                    names.push(t);
                }
                Pattern::Below(prefix) => {
                    let before = names.len();
                    names.extend(
                        manifest
                            .targets
                            .keys()
                            .filter(|t| address::is_below(t, &prefix))
                            .cloned(),
                    );
                    if names.len() == before {
                        bail!(
                            "'{arg}' selects no target: no package of the workspace {} at or below '{}' declares one",
                            ws.root().file.display(),
                            if prefix.is_empty() {
                                "the root"
                            } else {
                                &prefix
                            }
                        );
                    }
                }
            }
        }
        dedup(&mut names);
        Ok((manifest, names))
    }

    /// Every target of the project, loaded (for `rdeps`, `affected`).
    pub fn load_all(&self) -> anyhow::Result<Manifest> {
        Ok(match self {
            Project::Single(m) => m.clone(),
            Project::Workspace { ws, .. } => ws.load(&Packages::All, read_member)?,
        })
    }
}

/// Why `t` is not a target, with what is: a package the workspace does
/// not have is named as such, the rest is the manifest's answer.
fn unknown(m: &Manifest, ws: &Workspace, t: &str) -> String {
    let (pkg, _) = address::split(t);
    if !pkg.is_empty() && !ws.packages().any(|p| p == pkg) {
        return format!(
            "no package '{pkg}' in the workspace {} (is it listed in [workspace] members?)",
            ws.root().file.display()
        );
    }
    m.why_unknown(t)
}

fn dedup(names: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
}

/// What `kiln init` in `dir` does to the workspace above it: nothing (it
/// is a member already), or add `dir` to the root's `members`.
#[derive(Debug)]
pub struct Join {
    pub root: PathBuf,
    pub package: String,
    /// The root's new text, when it must change.
    new_text: Option<String>,
}

impl Join {
    /// Whether the root kiln.toml changes.
    pub fn adds(&self) -> bool {
        self.new_text.is_some()
    }

    /// Write the root's new members, keeping the file's mode.
    pub fn apply(&self) -> anyhow::Result<()> {
        let Some(text) = &self.new_text else {
            return Ok(());
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.root)?.permissions().mode();
        kiln_core::store::write_atomic(
            &self.root,
            text.as_bytes(),
            kiln_core::store::Existing::Replace,
        )
        .with_context(|| format!("writing {}", self.root.display()))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("restoring the mode of {}", self.root.display()))?;
        Ok(())
    }
}

/// Checked before `kiln init` writes anything: the workspace above `dir`
/// (the nearest trusted kiln.toml with `[workspace]`), and what joining
/// it takes. A member path that cannot be a package, or a root that is a
/// symlink (rewriting it would replace the link), is an error now.
pub fn plan_join(dir: &Path) -> anyhow::Result<Option<Join>> {
    for above in dir.ancestors().skip(1) {
        let root = above.join("kiln.toml");
        if !root.is_file() || !trusted(&root) {
            continue;
        }
        let text = read(&root).with_context(|| format!("cannot read {}", root.display()))?;
        if !declares_workspace(&text) {
            continue;
        }
        let ws = Workspace::open(&root, &text)?;
        let (pkg, path) = ws.package_of(dir);
        // A member already, or one as soon as its kiln.toml exists (a
        // glob names it).
        let globbed = ws.root().workspace.as_ref().is_some_and(|w| {
            let hit = |g: &String| kiln_core::pathfilter::glob_match(g.as_bytes(), path.as_bytes());
            w.members.iter().any(hit) && !w.exclude.iter().any(hit)
        });
        if (!pkg.is_empty() && pkg == path) || globbed {
            return Ok(Some(Join {
                root,
                package: path,
                new_text: None,
            }));
        }
        kiln_core::address::check_package(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} is a workspace; this directory cannot be its member: {e}",
                root.display()
            )
        })?;
        if std::fs::symlink_metadata(&root).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "{} is a symlink; add \"{path}\" to its [workspace] members yourself",
                root.display()
            );
        }
        let new = kiln_core::workspace::add_member(&text, &path).map_err(|e| {
            anyhow::anyhow!(
                "cannot add '{path}' to the members of {}: {e}",
                root.display()
            )
        })?;
        return Ok(Some(Join {
            root,
            package: path,
            new_text: Some(new),
        }));
    }
    Ok(None)
}

/// The workspace root above `file` whose members include `file`'s
/// directory, with its text.
fn workspace_above(file: &Path) -> anyhow::Result<Option<(PathBuf, String)>> {
    let Some(dir) = file.parent() else {
        return Ok(None);
    };
    for above in dir.ancestors().skip(1) {
        let candidate = above.join("kiln.toml");
        if !candidate.is_file() || !trusted(&candidate) {
            continue;
        }
        let Ok(text) = read(&candidate) else { continue };
        // Only [workspace] matters here: a broken file above is someone
        // else's business until it claims this directory.
        let rel: Vec<String> = dir
            .strip_prefix(above)
            .unwrap_or(dir)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if !declares_workspace(&text) || !workspace_may_name(&text, &rel.join("/")) {
            continue;
        }
        let ws = Workspace::open(&candidate, &text)?;
        let (pkg, path) = ws.package_of(dir);
        if !pkg.is_empty() && pkg == path {
            return Ok(Some((candidate, text)));
        }
    }
    Ok(None)
}
