//! Registry credentials from where the usual tools keep them, and the
//! `WWW-Authenticate` challenges a registry answers with (Basic, or Bearer
//! with a token service, as Docker Hub, GHCR and distribution do).

use std::path::PathBuf;

use data_encoding::BASE64;

/// A login for one registry. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `Basic base64(user:password)`.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }

    /// Credentials for `registry`: `KILN_REGISTRY_USERNAME` and
    /// `KILN_REGISTRY_PASSWORD`, else the first auth file that has an entry
    /// for it (`$REGISTRY_AUTH_FILE`, podman's, docker's).
    pub fn find(registry: &str) -> Option<Credentials> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        if let (Some(username), Some(password)) =
            (env("KILN_REGISTRY_USERNAME"), env("KILN_REGISTRY_PASSWORD"))
        {
            return Some(Credentials { username, password });
        }
        Self::find_in_files(registry)
    }

    /// Credentials an auth file holds for exactly `registry`. A pull a
    /// kiln.toml asks for uses only these: the `KILN_REGISTRY_*` variables
    /// (a CI's push login) name no registry, so a kiln.toml naming its own
    /// registry must never be answered with them.
    pub fn find_in_files(registry: &str) -> Option<Credentials> {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(f) = env("REGISTRY_AUTH_FILE") {
            files.push(f.into());
        }
        if let Some(d) = env("XDG_RUNTIME_DIR") {
            files.push(PathBuf::from(d).join("containers/auth.json"));
        }
        if let Some(h) = env("HOME") {
            files.push(PathBuf::from(&h).join(".config/containers/auth.json"));
            files.push(PathBuf::from(h).join(".docker/config.json"));
        }
        files.iter().find_map(|f| {
            let text = kiln_core::sidefile::read_to_string(
                f,
                kiln_core::sidefile::Links::Follow,
                kiln_core::sidefile::limits::TEXT,
            )
            .ok()?;
            from_auth_file(&text, registry)
        })
    }
}

/// The `auths` entry for `registry` in a docker/podman auth file.
fn from_auth_file(text: &str, registry: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, e)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        (host == registry).then_some(e)
    })?;
    let decoded = BASE64
        .decode(entry.get("auth")?.as_str()?.as_bytes())
        .ok()?;
    let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// A registry's answer to an unauthenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    // key="value" pairs; values may hold commas (scopes do).
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, n)) => (v, n),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        match key {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = next;
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files_and_challenges_parse() {
        let auth = BASE64.encode(b"ci:s3cret");
        let text =
            format!("{{\"auths\": {{\"https://127.0.0.1:5000/v1/\": {{\"auth\": \"{auth}\"}}}}}}");
        let c = from_auth_file(&text, "127.0.0.1:5000");
        assert_eq!(c.as_ref().map(|c| c.username.as_str()), Some("ci"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(from_auth_file(&text, "other:5000"), None);

        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
