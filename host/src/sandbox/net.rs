//! Outbound networking for a sandbox that may fetch (a pinned fixed-output
//! step): its own network namespace, connected to the world by a user-mode
//! TCP/IP stack, slirp4netns (as rootless podman does).
//!
//! The sandbox never shares the host's network namespace, so it cannot reach
//! abstract unix sockets, and:
//! * the host's loopback is refused (`--disable-host-loopback`): databases,
//!   agents and kiln's own test servers on 127.0.0.1 stay out of reach —
//!   unlike Nix's fixed-output derivations, which share the host's network;
//! * routes inside the namespace make the link-local range (169.254.0.0/16,
//!   where cloud metadata services answer) and every address of the host's
//!   own interfaces unreachable, so a service bound to 0.0.0.0 is not
//!   reachable through the host's LAN address either.
//!
//! DNS is slirp4netns's forwarder at 10.0.2.3 (the runtime mounts a
//! `resolv.conf` naming it). Needs `slirp4netns`, `nsenter` (util-linux)
//! and `ip` (iproute2).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use super::SandboxError;

/// The DNS forwarder slirp4netns offers inside the namespace.
pub const NAMESERVER: &str = "10.0.2.3";

/// Ranges a sandbox may never reach, besides the host's own addresses.
const UNREACHABLE: &[&str] = &["169.254.0.0/16", "100.100.100.200/32"];

/// How long slirp4netns may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running slirp4netns; killed on drop.
#[derive(Debug)]
pub struct UserNet {
    slirp: Child,
}

impl Drop for UserNet {
    fn drop(&mut self) {
        let _ = self.slirp.kill();
        let _ = self.slirp.wait();
    }
}

impl UserNet {
    /// Give the network namespace of `pid` (a sandbox blocked before its
    /// tool starts) an outbound link and the routes that keep host services
    /// out of reach.
    pub fn attach(pid: i32) -> Result<Self, SandboxError> {
        let fail = |reason: String| SandboxError::Unavailable {
            reason: format!("cannot give the fixed-output step a network: {reason}"),
        };
        let (mut ready_r, ready_w) = std::io::pipe().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new("slirp4netns");
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--ready-fd=3",
            &format!("--userns-path=/proc/{pid}/ns/user"),
            "--netns-type=path",
            &format!("/proc/{pid}/ns/net"),
            "tap0",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: OwnedFd::from(ready_w),
            child_fd: 3,
        }])
        .map_err(|e| fail(e.to_string()))?;
        let slirp = cmd.spawn().map_err(|e| {
            fail(format!(
                "slirp4netns does not start ({e}); install it (Debian: apt-get install slirp4netns)"
            ))
        })?;
        drop(cmd);
        let mut net = UserNet { slirp };
        // slirp4netns writes "1" once the interface is up, or exits.
        let start = Instant::now();
        let mut byte = [0u8; 1];
        let ready = std::thread::scope(|s| {
            let h = s.spawn(|| ready_r.read(&mut byte));
            while !h.is_finished() && start.elapsed() < READY_TIMEOUT {
                std::thread::sleep(Duration::from_millis(2));
            }
            if !h.is_finished() {
                let _ = net.slirp.kill();
            }
            h.join().ok().and_then(Result::ok)
        });
        if ready != Some(1) {
            let mut err = String::new();
            if let Some(mut e) = net.slirp.stderr.take() {
                let _ = net.slirp.kill();
                let _ = e.read_to_string(&mut err);
            }
            return Err(fail(format!("slirp4netns did not come up: {}", err.trim())));
        }
        add_unreachable_routes(pid).map_err(fail)?;
        Ok(net)
    }
}

/// `ip route add unreachable …` inside the sandbox's namespaces.
fn add_unreachable_routes(pid: i32) -> Result<(), String> {
    let mut batch = String::new();
    for r in UNREACHABLE
        .iter()
        .map(|r| r.to_string())
        .chain(host_addresses().into_iter().map(|a| format!("{a}/32")))
    {
        batch.push_str(&format!("route add unreachable {r}\n"));
    }
    let mut child = Command::new("nsenter")
        .args([
            "--target",
            &pid.to_string(),
            "--user",
            "--net",
            "--preserve-credentials",
            "ip",
            "-batch",
            "-",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nsenter does not start: {e} (Debian: util-linux, iproute2)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| format!("writing routes: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nsenter: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "could not fence off host addresses: {} (install iproute2)",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The IPv4 addresses of the host's interfaces, loopback aside.
fn host_addresses() -> Vec<String> {
    let Ok(out) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    parse_addresses(&String::from_utf8_lossy(&out.stdout))
}

/// The addresses in `ip -o -4 addr show` output.
fn parse_addresses(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            let addr = words.next()?.split('/').next()?;
            (!addr.starts_with("127.")).then(|| addr.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_addresses_are_read_from_ip_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ x\n";
        assert_eq!(super::parse_addresses(text), vec!["192.0.2.2"]);
    }
}
