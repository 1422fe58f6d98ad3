//! Paths a recipe names for a tool run: the tool inside its input, the
//! working directory and a fetch step's directory inside `/work`. Each is
//! checked here, before any sandbox starts.

use std::path::{Component, Path};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::super::RunInput;
use super::super::bindings::kiln::recipe::tool_exec;

/// `/inputs/<input>/<path>`, after checking that `path` stays inside the
/// input (no `..`, not absolute, no symlink out) and names an executable file.
pub(super) fn resolve_tool(input: &RunInput, path: &str) -> Result<String, tool_exec::Error> {
    let bad = |why: String| {
        tool_exec::Error::BadPath(format!("'{path}' in input '{}': {why}", input.name))
    };
    if !input.is_dir {
        if !path.is_empty() && path != "." {
            return Err(bad(
                "the input is a single file; use an empty path to run it".into(),
            ));
        }
        return Ok(format!("/inputs/{}", input.name));
    }
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return Err(bad("a tool path must be relative to its input".into()));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad("a tool path may not contain '..'".into()));
    }
    let dir = Dir::open_ambient_dir(&input.host_path, ambient_authority())
        .map_err(|e| bad(e.to_string()))?;
    // cap-std follows symlinks only while they stay inside `dir`.
    let meta = dir
        .metadata(p)
        .map_err(|e| bad(format!("{e} (symlinks may not leave the input)")))?;
    use cap_std::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(bad("not an executable file".into()));
    }
    Ok(format!(
        "/inputs/{}/{}",
        input.name,
        path.trim_start_matches("./")
    ))
}

/// The sandbox path of a directory a step will create under `/work`.
pub(super) fn resolve_new_dir(dir: &str) -> Result<String, tool_exec::Error> {
    let rel = dir.strip_prefix("/work/").unwrap_or(dir);
    if rel.is_empty()
        || Path::new(rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(tool_exec::Error::BadPath(format!(
            "fixed-output directory '{dir}' must be a path under /work without '..'"
        )));
    }
    Ok(format!("/work/{}", rel.trim_end_matches('/')))
}

/// The sandbox cwd for `cwd` (empty, relative to `/work`, or absolute under `/work`).
pub(super) fn resolve_cwd(cwd: &str, work_dir: &Path) -> Result<String, tool_exec::Error> {
    let rel = match cwd {
        "" | "/work" => "",
        c if c.starts_with("/work/") => &c["/work/".len()..],
        c if c.starts_with('/') => {
            return Err(tool_exec::Error::BadPath(format!(
                "'{c}' is not inside /work"
            )));
        }
        c => c,
    };
    if Path::new(rel)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(tool_exec::Error::BadPath(format!(
            "'{cwd}' may not contain '..'"
        )));
    }
    if !work_dir.join(rel).is_dir() {
        return Err(tool_exec::Error::BadPath(format!(
            "'{cwd}' is not a directory under /work (create it first)"
        )));
    }
    Ok(if rel.is_empty() {
        "/work".to_string()
    } else {
        format!("/work/{}", rel.trim_end_matches('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_input(path: &Path) -> RunInput {
        RunInput {
            name: "tools".into(),
            hash: String::new(),
            host_path: path.to_path_buf(),
            is_dir: true,
        }
    }

    #[test]
    fn tool_paths_stay_inside_their_input() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/ok"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("bin/ok"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(d.path().join("data"), "").unwrap();
        std::os::unix::fs::symlink("/bin/sh", d.path().join("bin/out")).unwrap();
        let input = dir_input(d.path());
        assert_eq!(
            resolve_tool(&input, "bin/ok").unwrap(),
            "/inputs/tools/bin/ok"
        );
        for (path, why) in [
            ("../x", "'..'"),
            ("bin/../../x", "'..'"),
            ("/bin/sh", "relative"),
            ("bin/out", "symlinks may not leave"),
            ("data", "not an executable"),
        ] {
            let e = resolve_tool(&input, path).unwrap_err();
            assert!(
                matches!(&e, tool_exec::Error::BadPath(m) if m.contains(why)),
                "{path}: {e:?}"
            );
        }
    }

    #[test]
    fn cwd_stays_inside_work() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        assert_eq!(resolve_cwd("", d.path()).unwrap(), "/work");
        assert_eq!(resolve_cwd("src", d.path()).unwrap(), "/work/src");
        assert_eq!(resolve_cwd("/work/src", d.path()).unwrap(), "/work/src");
        assert!(matches!(
            resolve_cwd("/out", d.path()),
            Err(tool_exec::Error::BadPath(_))
        ));
        assert!(matches!(
            resolve_cwd("../x", d.path()),
            Err(tool_exec::Error::BadPath(_))
        ));
        assert!(matches!(
            resolve_cwd("missing", d.path()),
            Err(tool_exec::Error::BadPath(_))
        ));
    }
}
