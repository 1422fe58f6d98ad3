//! The distribution API calls a push makes, with the registry's auth dance:
//! a request that answers 401 is retried once with Basic credentials or a
//! Bearer token fetched from the realm the challenge names.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ureq::http::Response;

use super::auth::{Challenge, Credentials, parse_challenge};
use super::layout::{Blob, Layout};
use super::{PushOptions, Reference, RegistryError};

/// How many blobs upload at once.
const PARALLEL_UPLOADS: usize = 4;

/// What a request sends: bytes in memory, or a file streamed from disk
/// (opened afresh for each attempt, so a retry after 401 sends it whole).
#[derive(Clone, Copy)]
enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a std::path::Path),
}

const EMPTY: Body<'static> = Body::Bytes(&[]);

#[derive(Clone, Copy)]
enum Method<'a> {
    Head,
    Get,
    /// A GET that accepts these media types (a manifest).
    GetAccepting(&'a str),
    Post,
    Put,
    Delete,
}

pub struct Client {
    /// `http(s)://registry`.
    base: String,
    registry: String,
    repository: String,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    /// The `Authorization` value that worked, once one did.
    auth: Mutex<Option<String>>,
    /// What a token is asked for: `pull,push`, or `pull`.
    actions: &'static str,
    /// Repositories to mount missing blobs from (see `PushOptions`).
    mount_from: Vec<String>,
}

impl Client {
    pub fn new(reference: &Reference, opts: &PushOptions) -> Result<Self, RegistryError> {
        let plain = reference.is_loopback() || opts.insecure;
        let scheme = if plain { "http" } else { "https" };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            base: format!("{scheme}://{}", reference.registry),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            agent,
            credentials: opts
                .credentials
                .clone()
                .or_else(|| Credentials::find(&reference.registry)),
            auth: Mutex::new(None),
            actions: "pull,push",
            mount_from: opts.mount_from.clone(),
        })
    }

    /// A client that only reads, through `agent` (for a kiln.toml's base
    /// image: the guarded agent downloads use, so the address rule holds),
    /// with the user's credentials for the registry if they have some.
    pub fn for_pull(reference: &Reference, agent: ureq::Agent) -> Self {
        let scheme = if reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        Client {
            base: format!("{scheme}://{}", reference.registry),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            agent,
            credentials: Credentials::find_in_files(&reference.registry),
            auth: Mutex::new(None),
            actions: "pull",
            mount_from: Vec::new(),
        }
    }

    /// The manifest or index `digest`: at most `limit` bytes, and the
    /// media type the registry says it is.
    pub fn get_manifest(
        &self,
        digest: &str,
        accept: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let url = format!("{}/v2/{}/manifests/{digest}", self.base, self.repository);
        let resp = self.call(Method::GetAccepting(accept), &url, EMPTY, None)?;
        let mut resp = self.check(&url, "fetching the manifest", resp)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.failed(&url, e.to_string()))?;
        if bytes.len() as u64 > limit {
            return Err(self.failed(&url, format!("a manifest larger than {limit} bytes")));
        }
        Ok((bytes, content_type))
    }

    /// The blob `digest`'s body, to stream (the caller checks it).
    pub fn get_blob(&self, digest: &str) -> Result<ureq::Body, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let resp = self.call(Method::Get, &url, EMPTY, None)?;
        Ok(self.check(&url, "fetching a blob", resp)?.into_body())
    }

    fn failed(&self, url: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Failed {
            url: url.to_string(),
            message: message.into(),
        }
    }

    fn call_once(
        &self,
        m: Method,
        url: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        // Credentials are the registry's: a URL elsewhere (an upload's
        // Location may name any host) never gets them.
        let auth = if same_origin(url, &self.base) {
            self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
        } else {
            None
        };
        let r = match m {
            Method::Head => with_auth(self.agent.head(url), &auth).call(),
            Method::Get => with_auth(self.agent.get(url), &auth).call(),
            Method::GetAccepting(accept) => with_auth(self.agent.get(url), &auth)
                .header("Accept", accept)
                .call(),
            Method::Post => with_auth(self.agent.post(url), &auth).send_empty(),
            Method::Delete => with_auth(self.agent.delete(url), &auth).call(),
            Method::Put => {
                let mut r = with_auth(self.agent.put(url), &auth);
                if let Some(ct) = content_type {
                    r = r.header("Content-Type", ct);
                }
                match body {
                    Body::Bytes(b) => r.send(b),
                    Body::File(path) => {
                        let f = kiln_core::sidefile::open(path, kiln_core::sidefile::Links::Refuse)
                            .map_err(|e| RegistryError::Layout {
                                path: path.display().to_string(),
                                message: e.to_string(),
                            })?;
                        r.send(f)
                    }
                }
            }
        };
        r.map_err(|e| self.failed(url, e.to_string()))
    }

    /// Send; on 401, authenticate as the challenge asks and send again.
    fn call(
        &self,
        m: Method,
        url: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let resp = self.call_once(m, url, body, content_type)?;
        if resp.status().as_u16() != 401 || !same_origin(url, &self.base) {
            return Ok(resp);
        }
        let unauthorized = |status| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            status,
        };
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| unauthorized(401))?;
        let auth = match challenge {
            Challenge::Basic => self
                .credentials
                .as_ref()
                .ok_or_else(|| unauthorized(401))?
                .basic(),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => format!("Bearer {}", self.token(&realm, service, scope)?),
        };
        *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Some(auth);
        let resp = self.call_once(m, url, body, content_type)?;
        match resp.status().as_u16() {
            s @ (401 | 403) => Err(unauthorized(s)),
            _ => Ok(resp),
        }
    }

    /// A token from `realm` for this push, with the credentials if any.
    fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, RegistryError> {
        let scope =
            scope.unwrap_or_else(|| format!("repository:{}:{}", self.repository, self.actions));
        let mut req = self.agent.get(realm).query("scope", &scope);
        if let Some(s) = &service {
            req = req.query("service", s);
        }
        if let Some(c) = &self.credentials {
            // The realm may be another host (Docker Hub's is); it may not
            // take the login in the clear from a registry reached by TLS.
            if !realm_may_take_login(realm, &self.base) {
                return Err(self.failed(
                    realm,
                    format!(
                        "{} asks for the login to be sent to this token server without TLS; refused",
                        self.registry
                    ),
                ));
            }
            req = req.header("Authorization", c.basic());
        }
        let mut resp = req.call().map_err(|e| self.failed(realm, e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                status,
            });
        }
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| self.failed(realm, format!("the token answer: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.failed(realm, format!("the token answer: {e}")))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(String::from)
            .ok_or_else(|| self.failed(realm, "the token answer holds no token"))
    }

    /// A non-2xx answer as an error, with the start of its body.
    fn check(
        &self,
        url: &str,
        what: &str,
        mut resp: Response<ureq::Body>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let mut text = String::new();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(2048)
            .read_to_string(&mut text);
        Err(self.failed(url, format!("{what}: HTTP {status} {}", text.trim())))
    }

    /// Upload the blobs the registry lacks, a few at a time:
    /// (uploaded, skipped).
    pub fn upload_blobs(&self, layout: &Layout) -> Result<(usize, usize), RegistryError> {
        let next = AtomicUsize::new(0);
        let uploaded = AtomicUsize::new(0);
        let skipped = AtomicUsize::new(0);
        let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_UPLOADS.min(layout.blobs.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(blob) = layout.blobs.get(i) else {
                            break;
                        };
                        if first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some()
                        {
                            break;
                        }
                        match self.upload_blob(layout, blob) {
                            Ok(true) => uploaded.fetch_add(1, Ordering::Relaxed),
                            Ok(false) => skipped.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                                break;
                            }
                        };
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok((uploaded.into_inner(), skipped.into_inner()))
    }

    /// Upload one blob of the layout unless the registry has it; true if
    /// it was sent.
    fn upload_blob(&self, layout: &Layout, blob: &Blob) -> Result<bool, RegistryError> {
        if self.has_blob(&blob.digest)? {
            return Ok(false);
        }
        // Streamed from the layout, never held whole: a layer may be large.
        // The blob must be here, whole, before it is mounted or sent: a
        // layout cannot make kiln copy what it does not hold from another
        // repository.
        let path = layout.blob_file(&blob.digest);
        let size = std::fs::metadata(&path)
            .map_err(|e| RegistryError::Layout {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
            .len();
        if size != blob.size {
            return Err(RegistryError::Layout {
                path: path.display().to_string(),
                message: format!("has {size} bytes, its descriptor says {}", blob.size),
            });
        }
        if self.mounted(&blob.digest) {
            return Ok(false);
        }
        self.put_blob(&blob.digest, Body::File(&path))?;
        Ok(true)
    }

    /// Ask the registry to mount `digest` from one of `mount_from` (the
    /// distribution API's cross-repository mount): true if it did. Any
    /// failure is "not mounted" (the blob is uploaded); a registry that
    /// answers with an upload session instead has it cancelled.
    fn mounted(&self, digest: &str) -> bool {
        for from in &self.mount_from {
            if from == &self.repository {
                continue;
            }
            let url = format!(
                "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                self.base, self.repository
            );
            let Ok(resp) = self.call(Method::Post, &url, EMPTY, None) else {
                continue;
            };
            match resp.status().as_u16() {
                201 => return true,
                202 => {
                    if let Some(location) =
                        resp.headers().get("location").and_then(|v| v.to_str().ok())
                    {
                        let location = if location.starts_with('/') {
                            format!("{}{location}", self.base)
                        } else {
                            location.to_string()
                        };
                        let _ = self.call(Method::Delete, &location, EMPTY, None);
                    }
                }
                _ => {}
            }
        }
        false
    }

    fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let head = self.call(Method::Head, &url, EMPTY, None)?;
        Ok(head.status().as_u16() == 200)
    }

    /// Upload `bytes` (whose digest is `digest`) unless the registry has
    /// them; true if they were sent.
    pub fn upload_bytes(&self, digest: &str, bytes: &[u8]) -> Result<bool, RegistryError> {
        if self.has_blob(digest)? {
            return Ok(false);
        }
        self.put_blob(digest, Body::Bytes(bytes))?;
        Ok(true)
    }

    /// A monolithic upload: POST for a location, PUT the bytes there (the
    /// registry checks them against `digest`).
    fn put_blob(&self, digest: &str, body: Body) -> Result<(), RegistryError> {
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let resp = self.call(Method::Post, &start, EMPTY, None)?;
        let resp = self.check(&start, "starting an upload", resp)?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.failed(&start, "the upload answer has no Location"))?;
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let resp = self.call(Method::Put, &put, body, Some("application/octet-stream"))?;
        self.check(&start, &format!("uploading {digest}"), resp)?;
        Ok(())
    }

    /// Put a manifest or index under `reference` (a digest or a tag).
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let resp = self.call(Method::Put, &url, Body::Bytes(bytes), Some(media_type))?;
        self.check(&url, "putting the manifest", resp).map(drop)
    }

    /// Whether the registry answers its API root (authenticating if it
    /// asks), so bad credentials fail before any upload.
    pub fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.call(Method::Get, &url, EMPTY, None)?;
        self.check(&url, "the registry's API root", resp).map(drop)
    }
}

/// Whether the token server `realm` may be sent the login of the registry
/// at `base`: over TLS, or when the registry itself is plain HTTP
/// (loopback or `--insecure`).
fn realm_may_take_login(realm: &str, base: &str) -> bool {
    let https = |u: &str| {
        u.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    };
    // Plain HTTP only to a token server on this machine: a plain-HTTP
    // (loopback) registry may not send the login off the host in clear.
    let realm_host = realm
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    https(realm) || (!https(base) && super::is_loopback_host(realm_host))
}

/// Whether `url` is on `base`'s scheme, host and port.
fn same_origin(url: &str, base: &str) -> bool {
    fn origin(u: &str) -> Option<(&str, String)> {
        let (scheme, rest) = u.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        // No userinfo in an origin; a host compares without case.
        let authority = authority.rsplit('@').next()?.to_ascii_lowercase();
        let default = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority
        } else {
            authority + default
        };
        Some((scheme, authority))
    }
    match (origin(url), origin(base)) {
        (Some((s1, a1)), Some((s2, a2))) => s1.eq_ignore_ascii_case(s2) && a1 == a2,
        _ => false,
    }
}

fn with_auth<B>(r: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => r.header("Authorization", a),
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::{realm_may_take_login, same_origin};

    #[test]
    fn credentials_go_to_the_registrys_origin_only() {
        let base = "https://registry.example.org";
        assert!(same_origin(
            "https://registry.example.org/v2/x/blobs/uploads/1?a=b",
            base
        ));
        assert!(same_origin("https://REGISTRY.example.org:443/v2/", base));
        assert!(!same_origin(
            "https://s3.example.org/bucket/blob?sig=1",
            base
        ));
        assert!(!same_origin("http://registry.example.org/v2/", base));
        assert!(!same_origin("https://registry.example.org:8443/v2/", base));
        assert!(!same_origin(
            "https://registry.example.org.evil.com/v2/",
            base
        ));
        assert!(!same_origin("https://user@evil.com/", base));
        assert!(same_origin(
            "http://127.0.0.1:5000/v2/",
            "http://127.0.0.1:5000"
        ));
        assert!(!same_origin(
            "http://localhost:5000/v2/",
            "http://127.0.0.1:5000"
        ));
        assert!(same_origin("http://[::1]:5000/v2/", "http://[::1]:5000"));
    }

    #[test]
    fn a_tls_registrys_login_never_goes_to_a_plain_http_realm() {
        assert!(realm_may_take_login(
            "https://auth.docker.io/token",
            "https://registry-1.docker.io"
        ));
        assert!(!realm_may_take_login(
            "http://auth.example.org/token",
            "https://registry.example.org"
        ));
        assert!(realm_may_take_login(
            "http://127.0.0.1:5001/token",
            "http://127.0.0.1:5000"
        ));
        // A loopback registry cannot send the login off the host in clear.
        assert!(!realm_may_take_login(
            "http://auth.example.org/token",
            "http://127.0.0.1:5000"
        ));
    }

    #[test]
    fn only_loopback_addresses_and_localhost_are_loopback() {
        use super::super::is_loopback_host;
        for yes in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "127.attacker.example",
            "127.attacker.example:80",
            "localhost.example.org",
            "10.0.0.1:5000",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }
}
