//! The sandbox's policy in one place: what every tool's environment holds,
//! the `/etc` files it sees, and where the build's directories appear. The
//! runtime asks for a [`SandboxSpec`](super::SandboxSpec) through here; the
//! builder asks here which `/etc` files to stage. Nothing here runs anything.

use std::collections::BTreeMap;
use std::path::Path;

use super::{BUILD_UID, Mount, Network};

/// The home directory a tool sees: a path that does not exist, as in Nix,
/// so nothing a tool reads or writes there can leak between builds.
pub const HOME: &str = "/homeless-shelter";

/// The environment of every tool: `PATH` (the tool's own directory), `HOME`,
/// `TMPDIR`, `TZ`, `LC_ALL`, `SOURCE_DATE_EPOCH`, then the recipe's
/// variables, which may replace any of these.
pub fn tool_env(
    tool_dir: &str,
    source_date_epoch: u64,
    recipe_env: &[(String, String)],
) -> BTreeMap<String, String> {
    let sde = source_date_epoch.to_string();
    let mut env: BTreeMap<String, String> = [
        ("PATH", tool_dir),
        ("HOME", HOME),
        ("TMPDIR", "/tmp"),
        ("TZ", "UTC"),
        ("LC_ALL", "C"),
        ("SOURCE_DATE_EPOCH", sde.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in recipe_env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The files staged for the sandbox's `/etc`, by name: the build user, its
/// group, and (mounted only where there is a network) the resolver.
pub fn etc_files() -> [(&'static str, String); 3] {
    let uid = BUILD_UID;
    [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/noshell\nkiln:x:{uid}:{uid}:kiln build user:{HOME}:/noshell\nnobody:x:65534:65534:nobody:/:/noshell\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\nkiln:x:{uid}:\nnogroup:x:65534:\n"),
        ),
        (
            "resolv.conf",
            format!("nameserver {}\n", super::net::NAMESERVER),
        ),
    ]
}

/// The build's directories as one exec sees them: each input read-only at
/// `/inputs/<name>`, `/work` and `/out` writable, the staged `/etc` files
/// (the resolver only with a network).
pub fn mounts<'a>(
    inputs: impl Iterator<Item = (&'a str, &'a Path)>,
    work: &Path,
    out: &Path,
    etc: &Path,
    network: Network,
) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = inputs
        .map(|(name, host)| Mount {
            host: host.to_path_buf(),
            guest: format!("/inputs/{name}"),
            writable: false,
        })
        .collect();
    mounts.push(Mount {
        host: work.to_path_buf(),
        guest: "/work".into(),
        writable: true,
    });
    mounts.push(Mount {
        host: out.to_path_buf(),
        guest: "/out".into(),
        writable: true,
    });
    let mut etc_names = vec!["passwd", "group"];
    if network == Network::Outbound {
        etc_names.push("resolv.conf");
    }
    for f in etc_names {
        mounts.push(Mount {
            host: etc.join(f),
            guest: format!("/etc/{f}"),
            writable: false,
        });
    }
    mounts
}

/// A fixed-output step's view: everything read-only but its fresh `dir`,
/// and the resolver for its network.
pub fn fetch_mounts(
    mut mounts: Vec<Mount>,
    dir_host: &Path,
    dir_guest: &str,
    etc: &Path,
) -> Vec<Mount> {
    for m in &mut mounts {
        m.writable = false;
    }
    mounts.push(Mount {
        host: dir_host.to_path_buf(),
        guest: dir_guest.to_string(),
        writable: true,
    });
    if !mounts.iter().any(|m| m.guest == "/etc/resolv.conf") {
        mounts.push(Mount {
            host: etc.join("resolv.conf"),
            guest: "/etc/resolv.conf".into(),
            writable: false,
        });
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_may_replace_defaults_and_fetches_write_one_dir() {
        let env = tool_env("/inputs/go/bin", 7, &[("PATH".into(), "/x".into())]);
        assert_eq!(env["PATH"], "/x");
        assert_eq!(env["SOURCE_DATE_EPOCH"], "7");
        assert_eq!(env["HOME"], HOME);
        let m = mounts(
            [("go", Path::new("/s/go"))].into_iter(),
            Path::new("/b/work"),
            Path::new("/b/out"),
            Path::new("/b/etc"),
            Network::None,
        );
        assert!(!m.iter().any(|m| m.guest == "/etc/resolv.conf"));
        let f = fetch_mounts(m, Path::new("/b/work/dl"), "/work/dl", Path::new("/b/etc"));
        let writable: Vec<_> = f
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.guest.as_str())
            .collect();
        assert_eq!(writable, ["/work/dl"]);
        assert!(f.iter().any(|m| m.guest == "/etc/resolv.conf"));
    }
}
