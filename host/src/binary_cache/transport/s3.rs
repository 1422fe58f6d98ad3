//! `s3://` caches: the bucket, prefix, endpoint and region of the URL
//! (as Nix spells them), credentials from `AWS_*`; every request is a
//! presigned URL (SigV4, `rusty-s3`) sent through the same agents as HTTP.

use super::{Agents, Kind, NamedBy, Timeouts, Transport};

/// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`; the `AWS_*` keys only
/// when the user named the cache.
pub(super) fn parse_s3(
    url: &str,
    rest: &str,
    timeouts: Timeouts,
    named_by: NamedBy,
) -> Result<Transport, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() || bucket.contains('@') {
        return Err(format!(
            "{url}: expected s3://BUCKET[/PREFIX][?endpoint=…&region=…]"
        ));
    }
    let (endpoint, region) = parse_query(url, query)?;
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let region = region
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let (endpoint, style) = endpoint_of(endpoint, &region);
    let endpoint_url: url::Url = endpoint
        .parse()
        .map_err(|e| format!("{url}: endpoint {endpoint:?}: {e}"))?;
    let bucket_obj = rusty_s3::Bucket::new(endpoint_url.clone(), style, bucket.to_string(), region)
        .map_err(|e| format!("{url}: {e}"))?;
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(k), Some(s)) if named_by == NamedBy::User => Some(match env("AWS_SESSION_TOKEN") {
            Some(t) => rusty_s3::Credentials::new_with_token(k, s, t),
            None => rusty_s3::Credentials::new(k, s),
        }),
        _ => None,
    };
    if credentials.is_some()
        && endpoint_url.scheme() == "http"
        && !super::is_loopback_host(endpoint_url.host_str().unwrap_or_default())
    {
        return Err(super::clear_text_refused(
            url,
            endpoint_url.host_str().unwrap_or_default(),
            "requests signed with the AWS_* keys",
        ));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok(Transport {
        describe: format!("s3://{bucket}/{prefix}")
            .trim_end_matches('/')
            .to_string(),
        kind: Kind::S3 {
            bucket: bucket_obj,
            credentials,
            prefix,
            agents: Agents::new(timeouts, named_by),
        },
    })
}

/// The URL's `endpoint` and `region` parameters; any other is an error.
fn parse_query(url: &str, query: &str) -> Result<(Option<String>, Option<String>), String> {
    let mut endpoint = None;
    let mut region = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("endpoint", v)) => endpoint = Some(v.to_string()),
            Some(("region", v)) => region = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "{url}: unknown parameter {pair:?} (endpoint and region are known; credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                ));
            }
        }
    }
    Ok((endpoint, region))
}

/// Where requests go and how the bucket is addressed: a custom endpoint
/// (MinIO, Garage, moto, …) by path, AWS itself by virtual host.
fn endpoint_of(endpoint: Option<String>, region: &str) -> (String, rusty_s3::UrlStyle) {
    match endpoint {
        Some(e) if e.contains("://") => (e, rusty_s3::UrlStyle::Path),
        Some(e) => (format!("https://{e}"), rusty_s3::UrlStyle::Path),
        None => (
            format!("https://s3.{region}.amazonaws.com"),
            rusty_s3::UrlStyle::VirtualHost,
        ),
    }
}
