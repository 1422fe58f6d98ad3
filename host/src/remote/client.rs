//! The gRPC side of the remote executor: one channel to the engine, one
//! tokio runtime that drives it (the rest of kiln stays synchronous: every
//! call here blocks until its answer), the user's headers on every
//! request, and bounded retries of what REAPI says may be retried
//! (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`).
//!
//! Every blob read from the engine is checked against its digest before
//! anyone sees it; a blob of the wrong length or hash is an error naming
//! the digest.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest,
    GetActionResultRequest, GetCapabilitiesRequest, UpdateActionResultRequest,
    action_cache_client::ActionCacheClient, batch_update_blobs_request,
    capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use bazel_remote_apis::google::bytestream::{
    ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::merkle::{self, Blobs, Source};
use super::{RemoteError, RemoteSettings};

/// The largest message kiln accepts from the engine.
const MAX_MESSAGE: usize = 64 << 20;
/// Bytes per ByteStream write.
const CHUNK: usize = 1 << 20;
/// Tries of a retryable call, and the first pause between them (doubled each time).
const TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest kiln waits for one call's answer (a whole blob's transfer
/// included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest blob kiln holds in memory at once.
const MAX_BLOB: u64 = 1 << 30;

/// A connection to one engine and instance.
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    pub instance: String,
    headers: MetadataMap,
    /// The most bytes one batch request may carry (the engine's
    /// `max_batch_total_size_bytes`, else 4 MiB, less room for framing).
    batch_bytes: usize,
}

impl Client {
    /// Connect, and ask the engine what it supports: an engine that cannot
    /// be reached, or speaks no sha256, is an error here, before any step.
    pub fn connect(s: &RemoteSettings) -> Result<Client, RemoteError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Setup(format!("cannot start the gRPC runtime: {e}")))?;
        let endpoint = endpoint(s)?;
        let channel = rt
            .block_on(endpoint.connect())
            .map_err(|e| RemoteError::Unreachable {
                address: s.shown(),
                reason: error_chain(&e),
            })?;
        let mut client = Client {
            rt,
            channel,
            instance: s.instance.clone(),
            headers: headers(s)?,
            batch_bytes: 4 << 20,
        };
        let caps = client
            .retry(|| {
                let mut c = CapabilitiesClient::new(client.channel.clone());
                let r = client.request(GetCapabilitiesRequest {
                    instance_name: client.instance.clone(),
                });
                async move { c.get_capabilities(r).await }
            })
            .map_err(|e| RemoteError::Unreachable {
                address: s.shown(),
                reason: status_text(&e),
            })?;
        if let Some(cache) = &caps.cache_capabilities {
            // 1 = SHA256; an empty list is read as SHA256, as Bazel does.
            if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&1) {
                return Err(RemoteError::Setup(format!(
                    "{} does not offer sha256 digests; kiln speaks only sha256",
                    s.shown()
                )));
            }
            if cache.max_batch_total_size_bytes > 0 {
                client.batch_bytes = (cache.max_batch_total_size_bytes as usize)
                    .saturating_sub(64 << 10)
                    .max(64 << 10);
            }
        }
        client.batch_bytes = client.batch_bytes.min(4 << 20);
        Ok(client)
    }

    /// Run a future on this client's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A channel to the engine (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `msg` with the user's headers.
    pub fn request<M>(&self, msg: M) -> tonic::Request<M> {
        let mut r = tonic::Request::new(msg);
        for kv in self.headers.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
                r.metadata_mut().insert(k.clone(), v.clone());
            }
        }
        r
    }

    /// One unary call, retried while the engine says it may be.
    pub fn retry<T, Fut>(&self, f: impl FnMut() -> Fut) -> Result<T, Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.rt.block_on(retrying(f))
    }

    /// Which of `digests` the engine lacks.
    pub fn find_missing(&self, digests: Vec<Digest>) -> Result<Vec<Digest>, Status> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(4096) {
            let found = self.retry(|| {
                let mut c = self.cas();
                let r = self.request(FindMissingBlobsRequest {
                    instance_name: self.instance.clone(),
                    blob_digests: chunk.to_vec(),
                    digest_function: 0,
                });
                async move { c.find_missing_blobs(r).await }
            })?;
            missing.extend(found.missing_blob_digests);
        }
        Ok(missing)
    }

    /// Upload the blobs of `blobs` named by `digests`: small ones in
    /// batches, large ones by ByteStream.
    pub fn upload(&self, blobs: &Blobs, digests: &[Digest]) -> Result<(), RemoteError> {
        let mut batch: Vec<batch_update_blobs_request::Request> = Vec::new();
        let mut batch_size = 0usize;
        for d in digests {
            let Some((_, source)) = blobs.by_hash.get(&d.hash) else {
                return Err(RemoteError::Protocol(format!(
                    "the engine asked for blob {}, which kiln did not offer",
                    merkle::show(d)
                )));
            };
            let size = d.size_bytes as usize;
            if size > self.batch_bytes / 2 {
                self.write_stream(d, source)?;
                continue;
            }
            if batch_size + size > self.batch_bytes {
                self.send_batch(std::mem::take(&mut batch))?;
                batch_size = 0;
            }
            batch.push(batch_update_blobs_request::Request {
                digest: Some(d.clone()),
                data: read_source(source, d)?,
                compressor: 0,
            });
            batch_size += size;
        }
        if !batch.is_empty() {
            self.send_batch(batch)?;
        }
        Ok(())
    }

    fn send_batch(
        &self,
        batch: Vec<batch_update_blobs_request::Request>,
    ) -> Result<(), RemoteError> {
        let answer = self
            .retry(|| {
                let mut c = self.cas();
                let r = self.request(BatchUpdateBlobsRequest {
                    instance_name: self.instance.clone(),
                    requests: batch.clone(),
                    digest_function: 0,
                });
                async move { c.batch_update_blobs(r).await }
            })
            .map_err(|e| RemoteError::status("uploading inputs", &e))?;
        for r in answer.responses {
            if let Some(st) = r.status
                && st.code != 0
            {
                return Err(RemoteError::Protocol(format!(
                    "the engine refused blob {}: {}",
                    r.digest.as_ref().map(merkle::show).unwrap_or_default(),
                    super::clean(&st.message)
                )));
            }
        }
        Ok(())
    }

    fn write_stream(&self, d: &Digest, source: &Source) -> Result<(), RemoteError> {
        let resource = format!(
            "{}uploads/{}/blobs/{}/{}",
            instance_prefix(&self.instance),
            upload_id(),
            d.hash,
            d.size_bytes
        );
        let data = read_source(source, d)?;
        let total = data.len();
        let mut requests = Vec::with_capacity(total / CHUNK + 1);
        let mut offset = 0;
        loop {
            let end = (offset + CHUNK).min(total);
            requests.push(WriteRequest {
                resource_name: if offset == 0 {
                    resource.clone()
                } else {
                    String::new()
                },
                write_offset: offset as i64,
                finish_write: end == total,
                data: data[offset..end].to_vec(),
            });
            offset = end;
            if offset >= total {
                break;
            }
        }
        let answer = self
            .retry(|| {
                let mut c =
                    ByteStreamClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE);
                let r = self.request(tokio_stream::iter(requests.clone()));
                async move { c.write(r).await }
            })
            .map_err(|e| RemoteError::status("uploading an input", &e))?;
        if answer.committed_size != d.size_bytes && answer.committed_size != -1 {
            return Err(RemoteError::Protocol(format!(
                "the engine kept {} bytes of blob {}",
                answer.committed_size,
                merkle::show(d)
            )));
        }
        Ok(())
    }

    /// The blob `d`, checked against its digest; `budget` is how many
    /// bytes the caller may still take.
    pub fn read_blob(&self, d: &Digest, budget: u64) -> Result<Vec<u8>, RemoteError> {
        check_size(d, budget)?;
        let size = d.size_bytes as usize;
        let data = if size == 0 {
            Vec::new()
        } else if size <= self.batch_bytes / 2 {
            let answer = self
                .retry(|| {
                    let mut c = self.cas();
                    let r = self.request(BatchReadBlobsRequest {
                        instance_name: self.instance.clone(),
                        digests: vec![d.clone()],
                        acceptable_compressors: Vec::new(),
                        digest_function: 0,
                    });
                    async move { c.batch_read_blobs(r).await }
                })
                .map_err(|e| RemoteError::status("downloading an output", &e))?;
            let Some(r) = answer.responses.into_iter().next() else {
                return Err(RemoteError::Protocol(format!(
                    "the engine answered nothing for blob {}",
                    merkle::show(d)
                )));
            };
            if let Some(st) = r.status
                && st.code != 0
            {
                return Err(RemoteError::Protocol(format!(
                    "the engine could not give blob {}: {}",
                    merkle::show(d),
                    super::clean(&st.message)
                )));
            }
            r.data
        } else {
            self.read_stream(d)?
        };
        check_blob(d, &data)?;
        Ok(data)
    }

    /// Every blob of `digests` (each once), checked, handed to `each` as it
    /// arrives: small ones in batches, large ones streamed.
    pub fn read_many(
        &self,
        digests: &[Digest],
        mut each: impl FnMut(&Digest, Vec<u8>) -> Result<(), RemoteError>,
    ) -> Result<(), RemoteError> {
        let mut batch: Vec<Digest> = Vec::new();
        let mut batch_size = 0usize;
        let mut flush = |batch: &mut Vec<Digest>| -> Result<(), RemoteError> {
            if batch.is_empty() {
                return Ok(());
            }
            let answer = self
                .retry(|| {
                    let mut c = self.cas();
                    let r = self.request(BatchReadBlobsRequest {
                        instance_name: self.instance.clone(),
                        digests: batch.clone(),
                        acceptable_compressors: Vec::new(),
                        digest_function: 0,
                    });
                    async move { c.batch_read_blobs(r).await }
                })
                .map_err(|e| RemoteError::status("downloading outputs", &e))?;
            let mut got: std::collections::HashMap<String, Vec<u8>> = Default::default();
            for r in answer.responses {
                if let Some(st) = &r.status
                    && st.code != 0
                {
                    return Err(RemoteError::Protocol(format!(
                        "the engine could not give blob {}: {}",
                        r.digest.as_ref().map(merkle::show).unwrap_or_default(),
                        super::clean(&st.message)
                    )));
                }
                if let Some(d) = r.digest {
                    got.insert(d.hash, r.data);
                }
            }
            for d in batch.drain(..) {
                let data = got.remove(&d.hash).ok_or_else(|| {
                    RemoteError::Protocol(format!(
                        "the engine left blob {} out of its answer",
                        merkle::show(&d)
                    ))
                })?;
                check_blob(&d, &data)?;
                each(&d, data)?;
            }
            Ok(())
        };
        let mut seen = std::collections::HashSet::new();
        let mut large = Vec::new();
        for d in digests {
            check_digest(d)?;
            if !seen.insert(d.hash.clone()) {
                continue;
            }
            check_size(d, MAX_BLOB)?;
            let size = d.size_bytes as usize;
            if size > self.batch_bytes / 2 {
                large.push(d);
                continue;
            }
            if batch_size + size > self.batch_bytes || batch.len() >= 1000 {
                flush(&mut batch)?;
                batch_size = 0;
            }
            batch.push(d.clone());
            batch_size += size;
        }
        flush(&mut batch)?;
        for d in large {
            let data = self.read_stream(d)?;
            check_blob(d, &data)?;
            each(d, data)?;
        }
        Ok(())
    }

    fn read_stream(&self, d: &Digest) -> Result<Vec<u8>, RemoteError> {
        let resource = format!(
            "{}blobs/{}/{}",
            instance_prefix(&self.instance),
            d.hash,
            d.size_bytes
        );
        let want = d.size_bytes as usize;
        self.rt.block_on(async {
            let mut pause = FIRST_PAUSE;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut c =
                    ByteStreamClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE);
                let r = self.request(ReadRequest {
                    resource_name: resource.clone(),
                    read_offset: 0,
                    read_limit: 0,
                });
                let result: Result<Vec<u8>, Status> = bounded(async {
                    let mut stream = c.read(r).await?.into_inner();
                    let mut data = Vec::with_capacity(want.min(MAX_MESSAGE));
                    while let Some(chunk) = stream.message().await? {
                        if data.len() + chunk.data.len() > want {
                            return Err(Status::out_of_range("longer than its digest says"));
                        }
                        data.extend_from_slice(&chunk.data);
                    }
                    Ok(data)
                })
                .await;
                match result {
                    Ok(data) => return Ok(data),
                    Err(s) if retryable(&s) && attempt < TRIES => {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    Err(s) => {
                        return Err(RemoteError::Protocol(format!(
                            "downloading blob {}: {}",
                            merkle::show(d),
                            status_text(&s)
                        )));
                    }
                }
            }
        })
    }

    /// The action cache's answer for `action`, if it has one.
    pub fn get_action_result(&self, action: &Digest) -> Result<Option<ActionResult>, Status> {
        let got = self.retry(|| {
            let mut c =
                ActionCacheClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE);
            let r = self.request(GetActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action.clone()),
                inline_stdout: true,
                inline_stderr: true,
                inline_output_files: Vec::new(),
                digest_function: 0,
            });
            async move { c.get_action_result(r).await }
        });
        match got {
            Ok(r) => Ok(Some(r)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Store `result` as the action cache's answer for `action`.
    pub fn update_action_result(
        &self,
        action: &Digest,
        result: &ActionResult,
    ) -> Result<(), Status> {
        self.retry(|| {
            let mut c = ActionCacheClient::new(self.channel());
            let r = self.request(UpdateActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action.clone()),
                action_result: Some(result.clone()),
                results_cache_policy: None,
                digest_function: 0,
            });
            async move { c.update_action_result(r).await }
        })
        .map(|_| ())
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE)
    }
}

/// Run `f` until it succeeds, fails for good, or has been tried [`TRIES`] times.
pub async fn retrying<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, Status>
where
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match bounded(f()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if retryable(&s) && attempt < TRIES => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(s) => return Err(s),
        }
    }
}

/// `call`, or DEADLINE_EXCEEDED when the engine has not answered within
/// [`CALL_TIMEOUT`]: an engine that keeps a call open forever cannot hold
/// a build past it.
pub async fn bounded<T>(call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// What REAPI lets a client try again.
pub fn retryable(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::ResourceExhausted)
}

/// A status as an error line: its code and its message, made printable.
pub fn status_text(s: &Status) -> String {
    let message = super::clean(s.message());
    if message.is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{:?}: {message}", s.code())
    }
}

/// `instance/`, or nothing for the default instance.
pub fn instance_prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// A fresh upload name (a UUID's shape): unique, not secret.
fn upload_id() -> String {
    use sha2::Digest as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}-{}-{n}", std::process::id(), now.as_nanos());
    let h: String = sha2::Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `d` is a sha256 digest as REAPI writes one: 64 lowercase hex digits
/// and a size that is not negative.
pub fn check_digest(d: &Digest) -> Result<(), RemoteError> {
    let hex = d.hash.len() == 64
        && d.hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if d.size_bytes < 0 || !hex {
        return Err(RemoteError::Protocol(format!(
            "the engine named a malformed digest {}/{}",
            super::clean(&d.hash),
            d.size_bytes
        )));
    }
    Ok(())
}

fn check_size(d: &Digest, budget: u64) -> Result<(), RemoteError> {
    check_digest(d)?;
    if d.size_bytes as u64 > MAX_BLOB {
        return Err(RemoteError::TooLarge {
            digest: merkle::show(d),
            budget: MAX_BLOB,
        });
    }
    if d.size_bytes as u64 > budget {
        return Err(RemoteError::TooLarge {
            digest: merkle::show(d),
            budget,
        });
    }
    Ok(())
}

/// `data` is the blob `d` names, or an error saying how it is not.
pub fn check_blob(d: &Digest, data: &[u8]) -> Result<(), RemoteError> {
    let got = merkle::digest_of(data);
    if got.size_bytes != d.size_bytes || !got.hash.eq_ignore_ascii_case(&d.hash) {
        return Err(RemoteError::BadBlob {
            digest: merkle::show(d),
            got: merkle::show(&got),
        });
    }
    Ok(())
}

fn read_source(source: &Source, d: &Digest) -> Result<Vec<u8>, RemoteError> {
    let data = match source {
        Source::Bytes(b) => b.as_ref().clone(),
        Source::File(path) => read_file(path)?,
    };
    // A file that changed since it was hashed would upload under a lie.
    let got = merkle::digest_of(&data);
    if got != *d {
        return Err(RemoteError::Changed {
            path: match source {
                Source::File(p) => p.display().to_string(),
                Source::Bytes(_) => "a message".into(),
            },
        });
    }
    Ok(data)
}

fn read_file(path: &Path) -> Result<Vec<u8>, RemoteError> {
    std::fs::read(path)
        .map_err(|e| RemoteError::Setup(format!("cannot read {}: {e}", path.display())))
}

/// The endpoint for `s`: `grpc://` is plain HTTP/2, `grpcs://` TLS with the
/// system's roots or the user's CA file.
fn endpoint(s: &RemoteSettings) -> Result<Endpoint, RemoteError> {
    let (scheme, rest) = s.address.split_once("://").unwrap_or(("", &s.address));
    let http = match scheme {
        "grpc" | "http" => format!("http://{rest}"),
        "grpcs" | "https" => format!("https://{rest}"),
        _ => {
            return Err(RemoteError::Setup(format!(
                "{}: the address must start with grpc:// or grpcs://",
                s.shown()
            )));
        }
    };
    let credentials = s.token.is_some() || !s.headers.is_empty();
    if credentials && matches!(scheme, "grpc" | "http") && !is_loopback(rest) {
        return Err(RemoteError::Setup(format!(
            "{}: kiln would send your remote token or headers in clear text; use grpcs:// (plain grpc:// carries credentials to loopback only)",
            s.shown()
        )));
    }
    let mut e = Endpoint::from_shared(http)
        .map_err(|e| RemoteError::Setup(format!("{}: {e}", s.shown())))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    if matches!(scheme, "grpcs" | "https") {
        let mut tls = ClientTlsConfig::new();
        tls = match &s.ca_file {
            Some(ca) => {
                let pem = kiln_core::sidefile::read(
                    ca,
                    kiln_core::sidefile::Links::Follow,
                    kiln_core::sidefile::limits::TEXT,
                )
                .map_err(|e| {
                    RemoteError::Setup(format!("cannot read the CA file {}: {e}", ca.display()))
                })?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        e = e
            .tls_config(tls)
            .map_err(|e| RemoteError::Setup(format!("{}: TLS: {e}", s.shown())))?;
    }
    Ok(e)
}

/// Whether the authority `rest` (`host:port/…`) names this machine.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The headers every request carries: the bearer token and the user's own.
fn headers(s: &RemoteSettings) -> Result<MetadataMap, RemoteError> {
    let mut map = MetadataMap::new();
    let mut add = |name: &str, value: &str| -> Result<(), RemoteError> {
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
            RemoteError::Setup(format!("remote header {name:?} is not a valid header name"))
        })?;
        // The value is a secret: never shown, not even in this error.
        let mut value: AsciiMetadataValue = value.parse().map_err(|_| {
            RemoteError::Setup(format!(
                "the value of remote header {name:?} is not printable ASCII"
            ))
        })?;
        value.set_sensitive(true);
        map.insert(key, value);
        Ok(())
    };
    if let Some(token) = &s.token {
        add("authorization", &format!("Bearer {}", token.trim()))?;
    }
    for (k, v) in &s.headers {
        add(k, v)?;
    }
    Ok(map)
}

/// `e` and its causes, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    super::clean(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_in_clear_to_loopback_only() {
        assert!(is_loopback("127.0.0.1:8980"));
        assert!(is_loopback("[::1]:8980/x"));
        assert!(is_loopback("localhost:1"));
        assert!(!is_loopback("engine.example:8980"));
        assert!(!is_loopback("127.0.0.1.example:80"));
        let s = RemoteSettings {
            address: "grpc://engine.example:8980".into(),
            token: Some("t".into()),
            ..Default::default()
        };
        let err = endpoint(&s).unwrap_err().to_string();
        assert!(err.contains("use grpcs://"), "{err}");
        let plain = RemoteSettings {
            token: None,
            ..s.clone()
        };
        assert!(endpoint(&plain).is_ok());
    }
}
