//! The address rule: where network traffic kiln makes for a project may
//! never go, whether a sandboxed fixed-output step makes it or kiln itself
//! (a `url` input's download, `kiln lock`, `kiln prefetch`).
//!
//! Refused: loopback, the unspecified address, link-local (169.254.0.0/16
//! and fe80::/10, where cloud metadata services answer), the other known
//! metadata addresses, multicast and broadcast, and every address of the
//! host's own interfaces (a service bound to 0.0.0.0 answers there too).
//! An IPv6 address that embeds an IPv4 one (mapped `::ffff:127.0.0.1`,
//! compatible `::127.0.0.1`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
//! 6to4 `2002:7f00:1::`) is judged by the IPv4 address.
//!
//! A kiln.toml cannot loosen this: an internal mirror is the user's call,
//! an [`AllowList`] built from a flag or the user's config.
//!
//! This module decides; it opens no socket. [`crate::sandbox::net`] turns
//! [`UNREACHABLE`] into routes, [`crate::fetch`] checks each address a
//! download resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// Ranges no project traffic may reach (besides loopback and the host's
/// own addresses), as the sandbox's routes spell them.
pub const UNREACHABLE: &[&str] = &["169.254.0.0/16", "100.100.100.200/32", "168.63.129.16/32"];

/// An address range: `10.1.0.0/16`, `::1/128`, or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("'{s}' is not an IP address or range (e.g. 10.1.2.3, 10.1.0.0/16, fd00::/8)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Addresses the user lets kiln's downloads reach although the rule
/// refuses them (a mirror on loopback or on this host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<Cidr>);

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Loopback,
    Unspecified,
    LinkLocal,
    Metadata,
    Multicast,
    HostOwn,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "a loopback address",
            Refusal::Unspecified => "the unspecified address",
            Refusal::LinkLocal => "a link-local address (where cloud metadata services answer)",
            Refusal::Metadata => "a cloud metadata address",
            Refusal::Multicast => "a multicast or broadcast address",
            Refusal::HostOwn => "one of this host's own addresses",
        })
    }
}

impl AllowList {
    /// `Err` with the reason when project traffic may not reach `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some(why) = refusal(ip, host_addresses()) else {
            return Ok(());
        };
        if self
            .0
            .iter()
            .any(|c| c.contains(ip) || c.contains(canonical(ip)))
        {
            return Ok(());
        }
        Err(why)
    }
}

/// The IPv4 address an IPv6 one stands for, if it embeds one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let v4 = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            };
            // NAT64's well-known prefix 64:ff9b::/96, its local-use
            // 64:ff9b:1::/48, and IPv4-compatible ::a.b.c.d (deprecated,
            // but routed by some stacks): the last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                || s[..3] == [0x64, 0xff9b, 1]
                || (s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1))
            {
                return v4(s[6], s[7]);
            }
            // 6to4, 2002:AABB:CCDD::/48: the address after the prefix.
            if s[0] == 0x2002 {
                return v4(s[1], s[2]);
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// Why the rule refuses `ip`, given the host's own addresses.
fn refusal(ip: IpAddr, own: &[IpAddr]) -> Option<Refusal> {
    let ip = canonical(ip);
    let why = match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    };
    why.or_else(|| own.contains(&ip).then_some(Refusal::HostOwn))
}

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    // Alibaba's metadata service; Azure's WireServer (the instance's
    // certificates and extension settings). 169.254.0.0/16 is link-local.
    let metadata: &[Cidr] = &[
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
            prefix: 32,
        },
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
            prefix: 32,
        },
    ];
    Some(if ip.is_loopback() {
        Refusal::Loopback
    } else if ip.octets()[0] == 0 {
        Refusal::Unspecified
    } else if ip.is_link_local() {
        Refusal::LinkLocal
    } else if metadata.iter().any(|c| c.contains(IpAddr::V4(ip))) {
        Refusal::Metadata
    } else if ip.is_multicast() || ip.is_broadcast() {
        Refusal::Multicast
    } else {
        return None;
    })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        Refusal::Loopback
    } else if ip.is_unspecified() {
        Refusal::Unspecified
    } else if first & 0xffc0 == 0xfe80 {
        Refusal::LinkLocal
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        || ip == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
    {
        // AWS's and Google Cloud's IPv6 instance metadata services.
        Refusal::Metadata
    } else if ip.is_multicast() {
        Refusal::Multicast
    } else {
        return None;
    })
}

/// The addresses of this host's interfaces (read once per run).
pub fn host_addresses() -> &'static [IpAddr] {
    static OWN: OnceLock<Vec<IpAddr>> = OnceLock::new();
    OWN.get_or_init(|| {
        let mut cmd = std::process::Command::new("ip");
        crate::descriptors::keep_only(&mut cmd, &[]);
        let out = cmd
            .args(["-o", "addr", "show"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::null())
            .output();
        out.map(|o| parse_addresses(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default()
    })
}

/// The addresses in `ip -o addr show` output (IPv4 and IPv6).
pub fn parse_addresses(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> Option<Refusal> {
        let own: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        refusal(s.parse().unwrap(), &own)
    }

    #[test]
    fn the_rule_refuses_the_host_and_its_neighbourhood() {
        assert_eq!(refused("127.0.0.1"), Some(Refusal::Loopback));
        assert_eq!(refused("127.8.9.10"), Some(Refusal::Loopback));
        assert_eq!(refused("::1"), Some(Refusal::Loopback));
        assert_eq!(refused("::ffff:127.0.0.1"), Some(Refusal::Loopback));
        assert_eq!(refused("64:ff9b::7f00:1"), Some(Refusal::Loopback));
        assert_eq!(refused("0.0.0.0"), Some(Refusal::Unspecified));
        assert_eq!(refused("::"), Some(Refusal::Unspecified));
        assert_eq!(refused("169.254.169.254"), Some(Refusal::LinkLocal));
        assert_eq!(refused("::ffff:169.254.169.254"), Some(Refusal::LinkLocal));
        assert_eq!(refused("fe80::1"), Some(Refusal::LinkLocal));
        assert_eq!(refused("100.100.100.200"), Some(Refusal::Metadata));
        assert_eq!(refused("fd00:ec2::254"), Some(Refusal::Metadata));
        assert_eq!(refused("fd20:ce::254"), Some(Refusal::Metadata));
        assert_eq!(refused("168.63.129.16"), Some(Refusal::Metadata));
        assert_eq!(refused("::127.0.0.1"), Some(Refusal::Loopback));
        assert_eq!(refused("2002:7f00:1::"), Some(Refusal::Loopback));
        assert_eq!(refused("2002:a9fe:a9fe::1"), Some(Refusal::LinkLocal));
        assert_eq!(refused("64:ff9b:1::a9fe:a9fe"), Some(Refusal::LinkLocal));
        assert_eq!(refused("224.0.0.1"), Some(Refusal::Multicast));
        assert_eq!(refused("255.255.255.255"), Some(Refusal::Multicast));
        assert_eq!(refused("192.0.2.7"), Some(Refusal::HostOwn));
        assert_eq!(refused("::ffff:192.0.2.7"), Some(Refusal::HostOwn));
        for ok in ["151.101.0.223", "10.1.2.3", "2a04:4e42::223", "192.0.2.8"] {
            assert_eq!(refused(ok), None, "{ok}");
        }
    }

    #[test]
    fn an_allow_list_admits_only_its_ranges() {
        let allow = AllowList(vec![
            "127.0.0.1".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert_eq!(allow.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(allow.check("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(
            allow.check("127.0.0.2".parse().unwrap()),
            Err(Refusal::Loopback)
        );
        assert_eq!(
            allow.check("169.254.169.254".parse().unwrap()),
            Err(Refusal::LinkLocal)
        );
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.255.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let c: Cidr = "10.0.0.0/9".parse().unwrap();
        assert!(c.contains("10.127.0.1".parse().unwrap()));
        assert!(!c.contains("10.128.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.org".parse::<Cidr>().is_err());
    }

    #[test]
    fn host_addresses_are_read_from_ip_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ x\n4: eth0    inet6 2001:db8::2/64 scope global\\ x\n";
        let v: Vec<String> = parse_addresses(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v, ["127.0.0.1", "192.0.2.2", "2001:db8::2"]);
    }
}
