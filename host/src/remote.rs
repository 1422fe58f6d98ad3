//! Tool steps on a Remote Execution API v2 engine (Buildbarn, BuildBuddy,
//! NativeLink, EngFlow, BuildGrid): kiln is a client only.
//!
//! The recipe (wasm) runs here; each tool step the runtime planned as a
//! [`SandboxSpec`] becomes an Action whose input root holds exactly the
//! step's mounts at their sandbox paths (`inputs/NAME`, `work`, `out`,
//! `etc/passwd`, `etc/group`; tool caches as empty directories), whose
//! command is the step's argv, complete environment and working directory,
//! and whose outputs are the step's writable directories. The engine's
//! answer goes through the checks a local run's output gets (digests,
//! names, links, the disk budget) before it replaces `/work` and `/out`;
//! the build then seals and commits `/out` as it always does.
//!
//! Where steps run is the user's choice (flags, user config, environment),
//! never a kiln.toml's. The engine's operators decide what a step's outputs
//! are, as a trusted cache key's holder does: `kiln build --check` rebuilds
//! here and compares.
//!
//! * `client`: the channel, retries, blobs in and out;
//! * `merkle`: directories as Merkle trees, cached per store entry;
//! * `action`: a spec as an Action and its input root;
//! * `execute`: the Execute stream, cancellation, deadlines;
//! * `outputs`: an ActionResult checked and written back.

#[cfg(feature = "remote")]
mod action;
#[cfg(feature = "remote")]
mod client;
#[cfg(feature = "remote")]
mod execute;
#[cfg(feature = "remote")]
pub mod merkle;
#[cfg(feature = "remote")]
mod outputs;
#[cfg(feature = "remote")]
mod runner;

use std::path::PathBuf;

/// Where and how to reach the engine: from flags, the user config's
/// `[remote]` and the environment; never from kiln.toml.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RemoteSettings {
    /// `grpc://host:port` or `grpcs://host:port`.
    pub address: String,
    /// The REAPI instance name (empty: the engine's default).
    pub instance: String,
    /// A bearer token (from `KILN_REMOTE_TOKEN` or `token-file`).
    pub token: Option<String>,
    /// Extra request headers (`[remote.headers]`), e.g. an API key.
    pub headers: Vec<(String, String)>,
    /// A CA file for `grpcs://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Extra platform properties for every action (`[remote.platform]`),
    /// e.g. a container image an engine needs.
    pub platform: Vec<(String, String)>,
    /// On an engine that cannot be reached at start, warn and run here.
    pub fallback: bool,
    /// Use the engine as a cache only (`--remote-cache`): steps run here,
    /// answers are taken from its action cache.
    pub cache_only: bool,
    /// Also write results of steps run here to the action cache
    /// (`--remote-cache` with `--remote-upload`): the user's consent, as
    /// pushing to a binary cache is.
    pub upload: bool,
    /// Every action's timeout: the build's `--timeout`, the same for every
    /// step so the action's digest does not depend on when it ran (kiln
    /// still stops waiting at the target's own deadline).
    pub step_timeout: std::time::Duration,
}

/// Shown without the token or header values: a debug print or a panic
/// must not carry them.
impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("address", &self.shown())
            .field("instance", &self.instance)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("ca_file", &self.ca_file)
            .field("platform", &self.platform)
            .field("fallback", &self.fallback)
            .field("cache_only", &self.cache_only)
            .field("upload", &self.upload)
            .finish()
    }
}

impl RemoteSettings {
    /// The address as records, logs and errors show it: no credentials,
    /// no query.
    pub fn shown(&self) -> String {
        shown_address(&self.address)
    }
}

/// `address` without userinfo, query or fragment, made printable.
pub fn shown_address(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("", address));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or("");
    let mut out = if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    };
    if !path.is_empty() {
        out.push('/');
        out.push_str(path);
    }
    clean(&out)
}

/// Text from the engine as one printable line of bounded length.
pub fn clean(text: &str) -> String {
    const MAX: usize = 400;
    let mut s: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        s.push('…');
    }
    crate::terminal::safe(&s).replace(['\n', '\t'], " ")
}

/// Why a step could not be run remotely. Each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "cannot reach the remote executor {address}: {reason}\n  check the address and that the engine is up, or pass --remote-fallback to run steps here when it is not"
    )]
    Unreachable { address: String, reason: String },
    #[error("remote execution: {0}")]
    Setup(String),
    #[error("remote execution: the engine answered something kiln cannot accept: {0}")]
    Protocol(String),
    #[error("remote execution: the engine failed the step: {0}")]
    Engine(String),
    #[error(
        "remote execution: blob {digest} from the engine is not what its digest says (got {got}); nothing was kept"
    )]
    BadBlob { digest: String, got: String },
    #[error(
        "remote execution: the engine's output {digest} is larger than the {budget} bytes left of the disk budget (raise it with --disk)"
    )]
    TooLarge { digest: String, budget: u64 },
    #[error(
        "remote execution: the output tree names {path:?}, outside the step's writable directories ({allowed}); nothing was kept"
    )]
    Escapes { path: String, allowed: String },
    #[error(
        "remote execution: the engine returned no {path} (the step's outputs are {allowed}); nothing was kept"
    )]
    MissingOutput { path: String, allowed: String },
    #[error(
        "remote execution: {path} changed while kiln uploaded it; retry when nothing writes to it"
    )]
    Changed { path: String },
    #[error("remote execution: {0}")]
    Tree(String),
    #[error(
        "this kiln was built without remote execution: rebuild it with the cargo feature `remote` (on by default)"
    )]
    NotBuiltIn,
}

#[cfg(feature = "remote")]
impl RemoteError {
    /// A failed call while `doing`: the engine's status, printable.
    fn status(doing: &str, s: &tonic::Status) -> Self {
        RemoteError::Engine(format!("{doing}: {}", client::status_text(s)))
    }
}

#[cfg(feature = "remote")]
impl From<merkle::TreeError> for RemoteError {
    fn from(e: merkle::TreeError) -> Self {
        RemoteError::Tree(e.to_string())
    }
}

/// Connect to the engine `s` names; steps then run there.
#[cfg(feature = "remote")]
pub fn connect(
    s: &RemoteSettings,
    store: &kiln_core::store::Store,
) -> Result<std::sync::Arc<dyn crate::executor::RemoteRunner>, RemoteError> {
    Ok(std::sync::Arc::new(runner::RemoteExecutor::connect(
        s, store,
    )?))
}

/// Without the `remote` feature there is no engine to connect to.
#[cfg(not(feature = "remote"))]
pub fn connect(
    _s: &RemoteSettings,
    _store: &kiln_core::store::Store,
) -> Result<std::sync::Arc<dyn crate::executor::RemoteRunner>, RemoteError> {
    Err(RemoteError::NotBuiltIn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_a_debug_print() {
        let s = RemoteSettings {
            address: "grpcs://u:p@engine:443".into(),
            token: Some("s3cret".into()),
            headers: vec![("x-api-key".into(), "k3y".into())],
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("k3y") && !shown.contains("u:p"),
            "{shown}"
        );
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            shown_address("grpcs://user:secret@engine.example:443/x?token=abc"),
            "grpcs://engine.example:443/x"
        );
        assert_eq!(
            shown_address("grpc://127.0.0.1:8980"),
            "grpc://127.0.0.1:8980"
        );
    }
}
