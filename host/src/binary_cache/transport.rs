//! Where a binary cache lives: a directory (`file://`, a local disk or an
//! NFS mount), an HTTP server that answers GET, HEAD and PUT (nginx with
//! WebDAV, or any Nix cache server), or an S3-compatible bucket
//! (`s3://BUCKET[/PREFIX]?endpoint=…&region=…`, as Nix spells it).
//!
//! Credentials never come from kiln.toml or the URL: HTTP takes them from
//! the user's netrc file (`$NETRC`, else `~/.netrc`), S3 from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`).
//! [`Transport::describe`] never shows them.
//!
//! Nothing here may hang a build: connecting and waiting for an answer are
//! bounded by [`Timeouts`]; small files by a whole-request deadline; a
//! large body is read by the caller through a stall watchdog
//! (`fetch::copy_bounded`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_core::store::{Existing, write_atomic};

mod netrc;
mod s3;

use netrc::netrc_auth;
use s3::parse_s3;

/// Why a cache could not be reached or answered badly.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{url}: the server refused the credentials (HTTP {status}); check ~/.netrc or the AWS_* variables"
    )]
    Unauthorized { url: String, status: u16 },
}

/// Who named a cache. The user's credentials (netrc, `AWS_*`) go only to
/// caches the user named, never to one a kiln.toml suggested, even when
/// the user accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    /// A flag, the environment or the user's config.
    User,
    /// A kiln.toml's `[cache]`.
    Project,
}

/// Whether `host` (no port) is a loopback name or address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuse credentials that would cross a network in clear.
fn clear_text_refused(url: &str, host: &str, what: &str) -> String {
    format!(
        "{url}: {what} for {host} would travel in clear text over http://; use https:// (plain HTTP is for caches on loopback)"
    )
}

/// The `Authorization` a cache at `url` (on `host`) gets: the user's netrc
/// login (`netrc`) for a cache the user named, none for one a kiln.toml
/// named; refused where it would cross a network in clear.
fn http_auth(
    url: &str,
    host: &str,
    named_by: NamedBy,
    netrc: impl FnOnce(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let auth = match named_by {
        NamedBy::User => netrc(host),
        NamedBy::Project => None,
    };
    if auth.is_some() && url.starts_with("http://") && !is_loopback_host(host) {
        return Err(clear_text_refused(url, host, "the netrc login"));
    }
    Ok(auth)
}

/// A cache's location.
pub struct Transport {
    kind: Kind,
    /// For messages: the URL without credentials or query secrets.
    describe: String,
}

enum Kind {
    Dir(PathBuf),
    Http {
        base: String,
        /// `Authorization` header value from netrc, if any.
        auth: Option<String>,
        agents: Agents,
    },
    S3 {
        bucket: rusty_s3::Bucket,
        credentials: Option<rusty_s3::Credentials>,
        /// Object names start with this (empty, or ending in `/`).
        prefix: String,
        agents: Agents,
    },
}

/// One agent for small requests (bounded as a whole) and one for large
/// bodies (bounded by connect and first-answer timeouts; the body is read
/// through a stall watchdog).
struct Agents {
    small: ureq::Agent,
    bulk: ureq::Agent,
}

/// How long a cache may take before kiln gives up on it and builds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// No answer (or no byte of a body) for this long: the cache is down.
    pub stall: Duration,
    /// A whole small request (narinfo, record, HEAD).
    pub small_request: Duration,
    /// A lookup that finds nothing yet takes longer than this: the cache
    /// is too slow to help (every target would pay it) and is treated as
    /// down for the run, as an unreachable one is.
    pub slow_lookup: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            stall: Duration::from_secs(30),
            small_request: Duration::from_secs(60),
            slow_lookup: Duration::from_secs(3),
        }
    }
}

impl Agents {
    /// The agents of a cache named by `named_by`: one a kiln.toml named
    /// obeys the address rule ([`crate::addresses`]) on every connection
    /// and redirect, as kiln's downloads do; the user's own may be anywhere.
    fn new(t: Timeouts, named_by: NamedBy) -> Self {
        let agent = |config: ureq::config::Config| -> ureq::Agent {
            match named_by {
                NamedBy::User => config.into(),
                NamedBy::Project => crate::fetch::guarded_agent(config, Default::default()),
            }
        };
        let tls = || {
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build()
        };
        let small = ureq::Agent::config_builder()
            .tls_config(tls())
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.stall))
            .timeout_global(Some(t.small_request))
            .http_status_as_error(false)
            .build();
        let bulk = ureq::Agent::config_builder()
            .tls_config(tls())
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.stall))
            .http_status_as_error(false)
            .build();
        Agents {
            small: agent(small),
            bulk: agent(bulk),
        }
    }
}

/// Which HTTP method a request uses.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Head,
    Put,
}

impl Transport {
    /// `file:///dir`, `http://…`, `https://…` or `s3://bucket…`, named by
    /// `named_by` (which decides whether the user's credentials apply).
    pub fn parse(url: &str, timeouts: Timeouts, named_by: NamedBy) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{url}: a file:// cache needs an absolute path"));
            }
            return Ok(Transport {
                kind: Kind::Dir(PathBuf::from(path)),
                describe: url.trim_end_matches('/').to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return parse_s3(url, rest, timeouts, named_by);
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                format!(
                    "{url}: a binary cache is file:///DIR, http://HOST/…, https://HOST/… or s3://BUCKET"
                )
            })?;
        let host_port = rest.split('/').next().unwrap_or("");
        if host_port.contains('@') {
            return Err(format!(
                "{url}: credentials do not belong in a cache URL; put them in ~/.netrc (or $NETRC)"
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = parsed.host_str().unwrap_or_default();
        let base = url.trim_end_matches('/').to_string();
        let auth = http_auth(url, host, named_by, netrc_auth)?;
        Ok(Transport {
            kind: Kind::Http {
                base: base.clone(),
                auth,
                agents: Agents::new(timeouts, named_by),
            },
            describe: base,
        })
    }

    /// The cache's URL, for messages (never with credentials).
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.describe)
    }

    fn failed(&self, rel: &str, message: String) -> TransportError {
        TransportError::Failed {
            url: self.shown(rel),
            message,
        }
    }

    /// A request for `rel`: the URL to call and the header to send.
    fn request(
        &self,
        method: Method,
        rel: &str,
        bulk: bool,
    ) -> Option<(ureq::Agent, String, Option<String>)> {
        use rusty_s3::S3Action as _;
        // Presigned URLs live long enough for a slow upload of a big NAR.
        const SIGNED_FOR: Duration = Duration::from_secs(3600);
        let pick = |a: &Agents| {
            if bulk {
                a.bulk.clone()
            } else {
                a.small.clone()
            }
        };
        match &self.kind {
            Kind::Dir(_) => None,
            Kind::Http { base, auth, agents } => {
                Some((pick(agents), format!("{base}/{rel}"), auth.clone()))
            }
            Kind::S3 {
                bucket,
                credentials,
                prefix,
                agents,
            } => {
                let object = format!("{prefix}{rel}");
                let c = credentials.as_ref();
                let url = match method {
                    Method::Get => {
                        rusty_s3::actions::GetObject::new(bucket, c, &object).sign(SIGNED_FOR)
                    }
                    Method::Head => {
                        rusty_s3::actions::HeadObject::new(bucket, c, &object).sign(SIGNED_FOR)
                    }
                    Method::Put => {
                        rusty_s3::actions::PutObject::new(bucket, c, &object).sign(SIGNED_FOR)
                    }
                };
                Some((pick(agents), url.to_string(), None))
            }
        }
    }

    /// The file `rel`, up to `limit` bytes; None if the cache lacks it.
    pub fn get(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let mut out = Vec::new();
        let Some(reader) = self.open_with(rel, false)? else {
            return Ok(None);
        };
        let n = reader
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.failed(rel, e.to_string()))?;
        if n as u64 > limit {
            return Err(TransportError::TooLarge {
                url: self.shown(rel),
                limit,
            });
        }
        Ok(Some(out))
    }

    /// A reader of the (large) file `rel`; None if the cache lacks it.
    /// Read it through a stall watchdog: only the answer is time-bounded.
    pub fn open(&self, rel: &str) -> Result<Option<Box<dyn Read + Send>>, TransportError> {
        self.open_with(rel, true)
    }

    fn open_with(
        &self,
        rel: &str,
        bulk: bool,
    ) -> Result<Option<Box<dyn Read + Send>>, TransportError> {
        if let Kind::Dir(d) = &self.kind {
            // `rel` comes from the cache (a narinfo's URL): resolved beneath
            // the cache's directory, never through a link, never a FIFO.
            use kiln_core::beneath::{BeneathError, Root};
            let root = Root::open(d).map_err(|e| self.failed(rel, e.to_string()))?;
            return match root.open_file(Path::new(rel)) {
                Ok(f) => Ok(Some(Box::new(f))),
                Err(BeneathError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.failed(rel, e.to_string())),
            };
        }
        let Some((agent, url, auth)) = self.request(Method::Get, rel, bulk) else {
            return Ok(None);
        };
        let mut req = agent.get(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.failed(rel, e.to_string()))?;
        match self.status(rel, resp.status().as_u16())? {
            true => Ok(Some(Box::new(
                resp.into_body().into_with_config().limit(u64::MAX).reader(),
            ))),
            false => Ok(None),
        }
    }

    /// Whether a status means "here" (true), "not here" (false) or an error.
    fn status(&self, rel: &str, status: u16) -> Result<bool, TransportError> {
        match status {
            200..=299 => Ok(true),
            // S3 answers 403 for a missing object when listing is not allowed.
            404 | 410 => Ok(false),
            403 if matches!(self.kind, Kind::S3 { .. }) => Ok(false),
            401 | 403 => Err(TransportError::Unauthorized {
                url: self.shown(rel),
                status,
            }),
            s => Err(self.failed(rel, format!("HTTP status {s}"))),
        }
    }

    /// Whether the cache holds `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool, TransportError> {
        if let Kind::Dir(d) = &self.kind {
            return Ok(d.join(rel).is_file());
        }
        let Some((agent, url, auth)) = self.request(Method::Head, rel, false) else {
            return Ok(false);
        };
        let mut req = agent.head(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.failed(rel, e.to_string()))?;
        self.status(rel, resp.status().as_u16())
    }

    /// Store `bytes` as `rel` (replacing it), atomically where the server can.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), TransportError> {
        if let Kind::Dir(d) = &self.kind {
            let path = d.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| self.failed(rel, e.to_string()))?;
            }
            return write_atomic(&path, bytes, Existing::Replace)
                .map(drop)
                .map_err(|e| self.failed(rel, e.to_string()));
        }
        let Some((agent, url, auth)) = self.request(Method::Put, rel, true) else {
            return Ok(());
        };
        let mut req = agent.put(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let resp = req
            .send(bytes)
            .map_err(|e| self.failed(rel, e.to_string()))?;
        match self.status(rel, resp.status().as_u16()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.failed(
                rel,
                format!("PUT answered HTTP status {}", resp.status().as_u16()),
            )),
            Err(e) => Err(e),
        }
    }

    /// Store the file at `path` as `rel`.
    pub fn put_file(&self, rel: &str, path: &Path) -> Result<(), TransportError> {
        let bytes = std::fs::read(path).map_err(|e| self.failed(rel, e.to_string()))?;
        self.put(rel, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_login_goes_only_to_the_users_caches_and_never_in_clear() {
        let login = |_: &str| Some("Basic dTpw".to_string());
        let auth = |url: &str, host: &str, by| http_auth(url, host, by, login);
        assert_eq!(
            auth(
                "https://cache.example.org/x",
                "cache.example.org",
                NamedBy::User
            ),
            Ok(Some("Basic dTpw".into()))
        );
        assert_eq!(
            auth(
                "https://cache.example.org/x",
                "cache.example.org",
                NamedBy::Project
            ),
            Ok(None),
            "a kiln.toml's cache gets no login, netrc default entry or not"
        );
        assert_eq!(
            auth("http://127.0.0.1:8080/x", "127.0.0.1", NamedBy::User),
            Ok(Some("Basic dTpw".into()))
        );
        assert_eq!(
            auth("http://[::1]:8080/x", "[::1]", NamedBy::User).map(|a| a.is_some()),
            Ok(true)
        );
        let e = auth(
            "http://cache.example.org/x",
            "cache.example.org",
            NamedBy::User,
        )
        .unwrap_err();
        assert!(e.contains("clear text"), "{e}");
        // Without a login, plain HTTP is the user's business.
        assert_eq!(
            http_auth(
                "http://cache.example.org/x",
                "cache.example.org",
                NamedBy::User,
                |_| None
            ),
            Ok(None)
        );
    }

    #[test]
    fn credentials_in_a_url_are_refused() {
        let e = Transport::parse(
            "https://u:p@cache.example/x",
            Timeouts::default(),
            NamedBy::User,
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("~/.netrc"), "{e}");
        assert!(Transport::parse("ftp://bucket", Timeouts::default(), NamedBy::User).is_err());
        let e = Transport::parse("s3://b?secret=x", Timeouts::default(), NamedBy::User)
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown parameter"), "{e}");
    }

    #[test]
    fn s3_urls_name_bucket_prefix_and_endpoint() {
        let t = Transport::parse(
            "s3://team-cache/kiln?endpoint=http://127.0.0.1:9000&region=eu-west-1",
            Timeouts::default(),
            NamedBy::User,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.describe(), "s3://team-cache/kiln");
        let Some((_, url, _)) = t.request(Method::Get, "nix-cache-info", false) else {
            panic!("an S3 cache makes HTTP requests");
        };
        assert!(
            url.starts_with("http://127.0.0.1:9000/team-cache/kiln/nix-cache-info"),
            "{url}"
        );
    }
}
