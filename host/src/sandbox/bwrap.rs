//! The hermetic backend: bubblewrap (`bwrap`), as Flatpak and melange use it.
//!
//! Each exec gets fresh user, mount, pid, network, ipc, uts and cgroup
//! namespaces (`--unshare-all`), an empty tmpfs root holding only the spec's
//! mounts plus `/dev` (null, zero, full, random, urandom, tty), a fresh
//! `/proc` and a tmpfs `/tmp`, hostname `localhost`, uid/gid 1000, no
//! capabilities, `no_new_privs`, and it dies with kiln.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::{SandboxError, SandboxSpec};

/// The uid and gid a tool runs as inside the sandbox.
pub const BUILD_UID: u32 = 1000;

pub(super) fn spawn(spec: &SandboxSpec) -> Result<Child, SandboxError> {
    let bwrap = available().map_err(|reason| SandboxError::Unavailable { reason })?;
    let mut cmd = Command::new(bwrap);
    cmd.args([
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]);
    cmd.args([
        "--uid",
        &BUILD_UID.to_string(),
        "--gid",
        &BUILD_UID.to_string(),
        "--hostname",
        "localhost",
    ]);
    if spec.network {
        cmd.arg("--share-net");
    }
    for m in &spec.mounts {
        cmd.arg(if m.writable { "--bind" } else { "--ro-bind" })
            .arg(&m.host)
            .arg(&m.guest);
    }
    cmd.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
    // Everything outside the writable mounts is read-only, the root included.
    cmd.args(["--remount-ro", "/"]);
    cmd.arg("--chdir").arg(&spec.cwd);
    cmd.arg("--").arg(&spec.program).args(&spec.args);
    cmd.env_clear().envs(&spec.env);
    super::spawn_piped(cmd, &spec.program)
}

/// bwrap's path, once it has been seen to create namespaces on this machine.
pub fn available() -> Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let path = std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .map(|d| d.join("bwrap"))
                .find(|p| p.is_file())
                .ok_or_else(|| "bubblewrap (bwrap) is not installed".to_string())?;
            let out = Command::new(&path)
                .args([
                    "--unshare-all",
                    "--die-with-parent",
                    "--ro-bind",
                    "/",
                    "/",
                    "--",
                    "/bin/true",
                ])
                .env_clear()
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{} does not run: {e}", path.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} cannot create namespaces here (user namespaces disabled?): {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(path)
        })
        .clone()
}
