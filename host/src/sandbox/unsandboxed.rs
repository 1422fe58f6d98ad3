//! `--sandbox=off`: run the tool directly on the host.
//!
//! Recipes and tools speak in sandbox paths (`/inputs/go/bin/go`, `/work`,
//! `/out`). Without a mount namespace those paths do not exist, so this
//! backend rewrites every mount's guest prefix to its host path in the
//! program, arguments, environment values and cwd. Nothing is isolated: the
//! build record and key say so, and such an output never satisfies a
//! hermetic build.

use std::process::{Child, Command};

use super::{SandboxError, SandboxSpec};

pub(super) fn spawn(spec: &SandboxSpec) -> Result<Child, SandboxError> {
    let rewrite = |s: &str| -> String {
        // Longest guest prefix first, so /inputs/a-b wins over /inputs/a.
        let mut mounts: Vec<_> = spec.mounts.iter().collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.guest.len()));
        let mut out = s.to_string();
        for m in mounts {
            out = replace_path_prefixes(&out, &m.guest, &m.host.to_string_lossy());
        }
        out
    };
    let mut cmd = Command::new(rewrite(&spec.program));
    cmd.args(spec.args.iter().map(|a| rewrite(a)));
    cmd.env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, rewrite(v))));
    cmd.current_dir(rewrite(&spec.cwd));
    super::spawn_piped(cmd, &spec.program, &[])
}

/// Replace `guest` with `host` wherever it starts a path in `s`: at the
/// start or after `=`, `:` or a space, and followed by `/` or the end.
fn replace_path_prefixes(s: &str, guest: &str, host: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(guest) {
        let before_ok = pos == 0 && out.is_empty() || {
            let prev = if pos == 0 {
                out.chars().last()
            } else {
                rest[..pos].chars().last()
            };
            matches!(prev, Some('=' | ':' | ' ' | ','))
        };
        let after = &rest[pos + guest.len()..];
        let after_ok = after.is_empty() || after.starts_with(['/', ':', ' ', ',']);
        out.push_str(&rest[..pos]);
        out.push_str(if before_ok && after_ok { host } else { guest });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::replace_path_prefixes as r;

    #[test]
    fn only_whole_path_prefixes_are_rewritten() {
        assert_eq!(r("/work/a", "/work", "/h/w"), "/h/w/a");
        assert_eq!(
            r("GOPATH=/work/go:/work/x", "/work", "/h/w"),
            "GOPATH=/h/w/go:/h/w/x"
        );
        assert_eq!(r("/workshop", "/work", "/h/w"), "/workshop");
        assert_eq!(r("x/work/a", "/work", "/h/w"), "x/work/a");
        assert_eq!(r("/work", "/work", "/h/w"), "/h/w");
    }
}
