//! An HTTP(S) download that obeys the address rule: every address a name
//! resolves to is checked before a connection is made ([`Guarded`]), and
//! redirects are followed here, one checked hop at a time.

use std::io::Read;
use std::net::IpAddr;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{DownloadLimits, FetchError, MAX_REDIRECTS};
use crate::addresses::{AllowList, Refusal};

/// Open `url` for reading: the body and its announced length.
pub(super) fn open(
    url: &str,
    limits: &DownloadLimits,
) -> Result<(Box<dyn Read + Send>, Option<u64>), FetchError> {
    let dl = |message: String| FetchError::Download {
        url: url.to_string(),
        message,
    };
    // The system's trust store, so the machine's CAs (and proxies) apply.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(limits.stall))
        .timeout_recv_response(Some(limits.stall))
        .max_redirects(0)
        .build();
    let agent = guarded_agent(config, limits.allow.clone());
    let mut at = url::Url::parse(url).map_err(|e| dl(format!("not a URL: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        check_literal(url, &at, &limits.allow)?;
        let resp = agent
            .get(at.as_str())
            .call()
            .map_err(|e| refused_by_resolver(url, &at, &e).unwrap_or_else(|| dl(e.to_string())))?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| dl(format!("{} redirects without a Location", resp.status())))?;
            at = at
                .join(location)
                .map_err(|e| dl(format!("redirected to a bad URL: {e}")))?;
            if !matches!(at.scheme(), "http" | "https") {
                return Err(dl(format!(
                    "redirected to a {} URL; only http and https are followed",
                    at.scheme()
                )));
            }
            continue;
        }
        let len = resp.body().content_length();
        return Ok((
            Box::new(resp.into_body().into_with_config().limit(u64::MAX).reader()),
            len,
        ));
    }
    Err(dl(format!("more than {MAX_REDIRECTS} redirects")))
}

/// An agent whose every connection (redirects included) obeys the address
/// rule, with `allow` admitting more.
pub(crate) fn guarded_agent(config: ureq::config::Config, allow: AllowList) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::new(), Guarded { allow })
}

/// A URL whose host is an address (or `localhost`) is judged before any
/// request, so that no proxy can be asked to reach it either.
fn check_literal(original: &str, at: &url::Url, allow: &AllowList) -> Result<(), FetchError> {
    let ip: Option<IpAddr> = match at.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost")
                || d.to_ascii_lowercase().ends_with(".localhost") =>
        {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        _ => None,
    };
    match ip.map(|ip| (ip, allow.check(ip))) {
        Some((address, Err(why))) => Err(FetchError::Refused {
            url: original.to_string(),
            host: at.host_str().unwrap_or_default().to_string(),
            address,
            why,
        }),
        _ => Ok(()),
    }
}

/// The refusal [`Guarded`] put inside a ureq error, as kiln's own error.
fn refused_by_resolver(original: &str, at: &url::Url, e: &ureq::Error) -> Option<FetchError> {
    let ureq::Error::Io(io) = e else {
        return None;
    };
    let r = io.get_ref()?.downcast_ref::<RefusedAddress>()?;
    Some(FetchError::Refused {
        url: original.to_string(),
        host: at.host_str().unwrap_or_default().to_string(),
        address: r.address,
        why: r.why,
    })
}

/// A resolved address the rule refuses (carried inside an `io::Error`).
#[derive(Debug)]
struct RefusedAddress {
    address: IpAddr,
    why: Refusal,
}

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.address, self.why)
    }
}

impl std::error::Error for RefusedAddress {}

/// ureq's resolver, keeping only addresses the rule admits: with none
/// left, the connection is refused and says which address and why.
#[derive(Debug)]
struct Guarded {
    allow: AllowList,
}

impl Resolver for Guarded {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = DefaultResolver::default().resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        let mut first_refusal = None;
        for &addr in all.iter() {
            match self.allow.check(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(why) => {
                    first_refusal.get_or_insert(RefusedAddress {
                        address: addr.ip(),
                        why,
                    });
                }
            }
        }
        match first_refusal {
            // One bad address refuses the name: a host that answers with
            // both a public and a private address is not to be trusted
            // with either (DNS rebinding).
            Some(r) => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                r,
            ))),
            None if kept.is_empty() => Err(ureq::Error::HostNotFound),
            None => Ok(kept),
        }
    }
}
