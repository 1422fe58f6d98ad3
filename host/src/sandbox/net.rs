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
        let fail = |reason: String| SandboxError::NetworkUnavailable { reason };
        wait_for_loopback(pid).map_err(fail)?;
        let owner = NetOwner::of(pid).map_err(|e| fail(format!("finding its namespaces: {e}")))?;
        let (mut ready_r, ready_w) = std::io::pipe().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new("slirp4netns");
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--ready-fd=3",
            &format!("--userns-path={}", owner.path()),
            "--netns-type=path",
            &format!("/proc/{pid}/ns/net"),
            "tap0",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut fds = vec![FdMapping {
            parent_fd: OwnedFd::from(ready_w),
            child_fd: 3,
        }];
        fds.push(owner.mapping().map_err(|e| fail(e.to_string()))?);
        cmd.fd_mappings(fds).map_err(|e| fail(e.to_string()))?;
        crate::descriptors::keep_only(&mut cmd, &[3, OWNER_FD]);
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
        add_unreachable_routes(pid, &owner).map_err(fail)?;
        Ok(net)
    }
}

/// The user namespace that owns a sandbox's network namespace: the one
/// where its network can be configured.
///
/// It is asked of the network namespace itself (`NS_GET_USERNS`), because
/// bubblewrap may nest a second user namespace for the tool at any moment
/// of its setup, and only the outer one owns the network.
struct NetOwner {
    fd: OwnedFd,
}

/// Where helpers find the owner: their descriptor 4.
const OWNER_FD: i32 = 4;

impl NetOwner {
    fn of(pid: i32) -> std::io::Result<Self> {
        let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        Ok(NetOwner {
            fd: owning_user_namespace(&net)?,
        })
    }

    /// The namespace's path, as a helper started with [`Self::mapping`] sees it.
    fn path(&self) -> String {
        format!("/proc/self/fd/{OWNER_FD}")
    }

    /// The descriptor a helper needs.
    fn mapping(&self) -> std::io::Result<FdMapping> {
        Ok(FdMapping {
            parent_fd: self.fd.try_clone()?,
            child_fd: OWNER_FD,
        })
    }
}

/// `ioctl(NS_GET_USERNS)`: the user namespace owning a namespace.
#[expect(
    unsafe_code,
    reason = "NS_GET_USERNS has no safe wrapper; it takes no argument and returns a new descriptor"
)]
fn owning_user_namespace(ns: &std::fs::File) -> std::io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    /// `_IO(0xb7, 0x1)` from linux/nsfs.h.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: the request takes no argument; `ns` is an open descriptor.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait until bubblewrap has brought up the sandbox's loopback device.
///
/// bwrap's child configures `lo` (adds 127.0.0.1/8 exclusively, then sets
/// it up) while kiln already knows its pid. Anything that brings `lo` up
/// first makes the kernel add 127.0.0.1 itself, and bwrap's exclusive add
/// then fails and the sandbox dies — slirp4netns does bring `lo` up. The
/// `127.0.0.0/8` route exists only once `lo` is up, so its presence in the
/// namespace's FIB says bwrap is done with the network.
fn wait_for_loopback(pid: i32) -> Result<(), String> {
    let fib = format!("/proc/{pid}/net/fib_trie");
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(&fib) {
            Ok(text) if text.contains("127.0.0.0/8") => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("the sandbox exited while it was set up ({e})")),
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err("the sandbox's loopback device did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `ip route add unreachable …` inside the sandbox's namespaces.
fn add_unreachable_routes(pid: i32, owner: &NetOwner) -> Result<(), String> {
    let mut batch = String::new();
    // slirp4netns gives the namespace IPv4 only: the host's IPv4
    // addresses are the ones to fence off.
    let own = crate::addresses::host_addresses()
        .iter()
        .filter(|a| a.is_ipv4() && !a.is_loopback())
        .map(|a| format!("{a}/32"));
    for r in crate::addresses::UNREACHABLE
        .iter()
        .map(|r| r.to_string())
        .chain(own)
    {
        batch.push_str(&format!("route add unreachable {r}\n"));
    }
    // As root, entering the network namespace is enough (root holds
    // CAP_NET_ADMIN over all of them). Otherwise nsenter enters the owning
    // user namespace, where kiln's uid *is* root, keeping its credentials
    // (setgroups is denied there), so `ip` keeps the capability when executed.
    let mut cmd = Command::new("nsenter");
    if !rustix::process::geteuid().is_root() {
        cmd.arg("--preserve-credentials")
            .arg(format!("--user={}", owner.path()));
    }
    cmd.arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-batch", "-"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.fd_mappings(vec![owner.mapping().map_err(|e| e.to_string())?])
        .map_err(|e| e.to_string())?;
    crate::descriptors::keep_only(&mut cmd, &[OWNER_FD]);
    let mut child = cmd
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
