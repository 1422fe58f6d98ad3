//! Target addresses and the patterns that select them.
//!
//! A project without `[workspace]` names its targets plainly (`image`). In
//! a workspace every target has an address: `services/api:image` (its
//! package's directory relative to the workspace root, then its name), or
//! `//:image` for the root kiln.toml's own targets. Inside a package,
//! `image` and `:image` name its own targets; `//` anchors at the root.
//!
//! On the command line a pattern may select many: `./...` (every target at
//! or below the current directory), `services/...`, `//...`. Pure: no
//! filesystem here.

/// How a project names its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// One kiln.toml: plain names.
    Single,
    /// A workspace: `package:name` addresses.
    Workspace,
}

/// The address of target `name` of package `package` ("" is the root).
pub fn address(naming: Naming, package: &str, name: &str) -> String {
    match naming {
        Naming::Single => name.to_string(),
        Naming::Workspace if package.is_empty() => format!("//:{name}"),
        Naming::Workspace => format!("{package}:{name}"),
    }
}

/// `address` split into its package and name.
pub fn split(address: &str) -> (&str, &str) {
    match address.rsplit_once(':') {
        Some((pkg, name)) => (pkg.trim_start_matches("//"), name),
        None => ("", address),
    }
}

/// A name usable in files and links: `services/api:image` →
/// `services+api+image`, `//:image` → `image`. `+` is in no name, so two
/// addresses never share one.
pub fn flat(address: &str) -> String {
    let (pkg, name) = split(address);
    if pkg.is_empty() {
        name.to_string()
    } else {
        format!("{}+{name}", pkg.replace('/', "+"))
    }
}

/// A target or input name: letters, digits, `-`, `_`, `.`; not starting
/// with `.`; at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err("names use letters, digits, '-', '_' and '.', do not start with '.', and are at most 64 characters".to_string())
    }
}

/// A package path: `/`-separated directory names below the root, each a
/// valid name (so never `..`, `.` or empty).
pub fn check_package(package: &str) -> Result<(), String> {
    if package.is_empty() {
        return Ok(());
    }
    for part in package.split('/') {
        check_name(part).map_err(|_| {
            format!(
                "package path '{package}' must be directories below the workspace root, each of letters, digits, '-', '_' and '.' (no '..', no leading '/')"
            )
        })?;
    }
    Ok(())
}

/// `a` and `b` joined as package paths.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The address a `target = "…"` written in package `package` names.
pub fn resolve_ref(naming: Naming, package: &str, text: &str) -> Result<String, String> {
    let Some((pkg, name)) = text.rsplit_once(':') else {
        check_name(text)?;
        return Ok(address(naming, package, text));
    };
    check_name(name).map_err(|m| format!("'{text}': {m}"))?;
    let pkg = match pkg.strip_prefix("//") {
        Some(abs) => abs.to_string(),
        None if pkg.is_empty() => package.to_string(),
        None => pkg.to_string(),
    };
    if naming == Naming::Single {
        if !pkg.is_empty() {
            return Err(format!(
                "'{text}' names a package, but this kiln.toml is not a workspace; add [workspace] to the root kiln.toml (docs/kiln-toml.md#workspaces) or name a target of this file"
            ));
        }
        return Ok(name.to_string());
    }
    check_package(&pkg).map_err(|m| format!("'{text}': {m}"))?;
    Ok(address(naming, &pkg, name))
}

/// What a command-line target argument selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// One target, by address.
    Target(String),
    /// Every target of every package at or below this package path.
    Below(String),
}

/// Parse a command-line argument given where `cwd` is the package holding
/// the current directory (bare names and `:name` are its targets) and
/// `here` the current directory's path below the root (what `./` means).
pub fn parse_pattern(naming: Naming, cwd: &str, here: &str, arg: &str) -> Result<Pattern, String> {
    let below = |path: &str| -> Result<Pattern, String> {
        check_package(path).map_err(|m| format!("'{arg}': {m}"))?;
        Ok(Pattern::Below(path.to_string()))
    };
    if arg == "..." || arg == "./..." {
        return below(here);
    }
    if let Some(rest) = arg.strip_suffix("/...") {
        return match rest.strip_prefix("./") {
            Some(rel) => below(&join(here, rel)),
            None if rest == "/" || rest.is_empty() => below(""),
            None => below(rest.trim_start_matches("//")),
        };
    }
    if let Some(rest) = arg.strip_prefix("./")
        && let Some((pkg, name)) = rest.rsplit_once(':')
    {
        check_name(name).map_err(|m| format!("'{arg}': {m}"))?;
        let pkg = join(here, pkg.trim_end_matches('/'));
        check_package(&pkg).map_err(|m| format!("'{arg}': {m}"))?;
        return Ok(Pattern::Target(address(naming, &pkg, name)));
    }
    resolve_ref(naming, cwd, arg).map(Pattern::Target)
}

/// Whether the target at `address` is selected by `Below(prefix)`.
pub fn is_below(address: &str, prefix: &str) -> bool {
    let (pkg, _) = split(address);
    prefix.is_empty()
        || pkg == prefix
        || (pkg.len() > prefix.len()
            && pkg.starts_with(prefix)
            && pkg.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use Naming::*;

    #[test]
    fn addresses_and_their_parts() {
        assert_eq!(address(Single, "", "image"), "image");
        assert_eq!(address(Workspace, "", "image"), "//:image");
        assert_eq!(
            address(Workspace, "services/api", "image"),
            "services/api:image"
        );
        assert_eq!(split("services/api:image"), ("services/api", "image"));
        assert_eq!(split("//:image"), ("", "image"));
        assert_eq!(split("image"), ("", "image"));
        assert_eq!(flat("services/api:image"), "services+api+image");
        assert_eq!(flat("//:image"), "image");
    }

    #[test]
    fn references_resolve_in_their_package() {
        let r = |p, t| resolve_ref(Workspace, p, t);
        assert_eq!(r("svc/a", "bin").unwrap(), "svc/a:bin");
        assert_eq!(r("svc/a", ":bin").unwrap(), "svc/a:bin");
        assert_eq!(r("svc/a", "libs/p:gen").unwrap(), "libs/p:gen");
        assert_eq!(r("svc/a", "//libs/p:gen").unwrap(), "libs/p:gen");
        assert_eq!(r("svc/a", "//:tool").unwrap(), "//:tool");
        assert_eq!(r("", "x").unwrap(), "//:x");
        for bad in [
            "../up:x",
            "/abs:x",
            "a//b:x",
            "a:b:c",
            "a:",
            "a/.hidden:x",
            "a b",
        ] {
            assert!(r("svc", bad).is_err(), "{bad} accepted");
        }
        assert_eq!(resolve_ref(Single, "", ":bin").unwrap(), "bin");
        let e = resolve_ref(Single, "", "libs/p:gen").unwrap_err();
        assert!(e.contains("not a workspace"), "{e}");
    }

    #[test]
    fn patterns() {
        // In services/ (no package there: the root's is the current one).
        let p = |a| parse_pattern(Workspace, "", "services", a).unwrap();
        assert_eq!(p("./..."), Pattern::Below("services".into()));
        assert_eq!(p("..."), Pattern::Below("services".into()));
        assert_eq!(p("./api/..."), Pattern::Below("services/api".into()));
        assert_eq!(p("libs/..."), Pattern::Below("libs".into()));
        assert_eq!(p("//..."), Pattern::Below("".into()));
        assert_eq!(
            p("./api:image"),
            Pattern::Target("services/api:image".into())
        );
        assert_eq!(p("x"), Pattern::Target("//:x".into()));
        // In services/api/cmd, inside package services/api.
        let q = |a| parse_pattern(Workspace, "services/api", "services/api/cmd", a).unwrap();
        assert_eq!(q("image"), Pattern::Target("services/api:image".into()));
        assert_eq!(
            q("./tool:bin"),
            Pattern::Target("services/api/cmd/tool:bin".into())
        );
        assert_eq!(q("libs/p:gen"), Pattern::Target("libs/p:gen".into()));
        assert!(parse_pattern(Workspace, "", "", "../x/...").is_err());
        assert!(is_below("services/api:image", "services"));
        assert!(is_below("services:image", "services"));
        assert!(!is_below("services2/x:image", "services"));
        assert!(is_below("//:image", ""));
        assert!(!is_below("//:image", "services"));
    }
}
