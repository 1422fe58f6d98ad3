//! The user's config file (`$KILN_CONFIG`, else
//! `$XDG_CONFIG_HOME/kiln/config.toml`, else `~/.config/kiln/config.toml`):
//! `[cache]` (binary caches: which to ask, which keys to trust, where to
//! push) and `[fetch]` (where kiln's downloads may go). Flags override the
//! environment, which overrides the file.
//!
//! A kiln.toml's `[cache]` is a suggestion: which servers to ask and which
//! keys to trust is the user's call (a trusted key decides what an output
//! is, for every project sharing the store), so its caches are used only
//! with `--accept-project-caches` or `accept-project-caches = true` in the
//! user's config; otherwise the run says they were skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_core::manifest::ProjectCaches;
use serde::Deserialize;

use crate::binary_cache::{NamedBy, PublicKey, Substituters, Timeouts, Transport};
use crate::cli::args::{FetchArgs, SubstituteArgs};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CacheTable {
    #[serde(default)]
    substituters: Vec<String>,
    #[serde(default)]
    trusted_public_keys: Vec<String>,
    push_to: Option<String>,
    signing_key: Option<PathBuf>,
    #[serde(default)]
    accept_project_caches: bool,
    connect_timeout: Option<String>,
    stall_timeout: Option<String>,
}

/// `[fetch]`: where kiln's own downloads may go besides what the address
/// rule admits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FetchTable {
    /// Addresses or ranges (`127.0.0.1`, `10.20.0.0/16`) of mirrors the
    /// user trusts although the address rule refuses them.
    #[serde(default)]
    allow: Vec<String>,
}

/// `[remote]`: a Remote Execution API engine for tool steps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RemoteTable {
    executor: Option<String>,
    /// An engine used as a cache only (`--remote-cache`).
    cache: Option<String>,
    /// Write results of steps run here to that cache (`--remote-upload`).
    #[serde(default)]
    upload: bool,
    #[serde(default)]
    instance: String,
    /// A file holding a bearer token (`KILN_REMOTE_TOKEN` overrides).
    token_file: Option<PathBuf>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    platform: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    fallback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTables {
    #[serde(default)]
    cache: CacheTable,
    #[serde(default)]
    fetch: FetchTable,
    #[serde(default)]
    remote: RemoteTable,
}

/// Binary-cache settings from the config file and the environment.
#[derive(Debug, Default)]
pub struct CacheSettings {
    pub substituters: Vec<String>,
    pub trusted_public_keys: Vec<String>,
    pub push_to: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub accept_project_caches: bool,
    pub timeouts: Timeouts,
}

fn config_path() -> Option<PathBuf> {
    let var = |n| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("KILN_CONFIG")
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("kiln/config.toml")))
        .or_else(|| var("HOME").map(|h| h.join(".config/kiln/config.toml")))
}

/// The user's config, read once per command: the file, with the
/// environment's overrides.
#[derive(Debug, Default)]
pub struct UserConfig {
    pub cache: CacheSettings,
    /// `[fetch] allow`: addresses the user's downloads may reach.
    fetch_allow: Vec<crate::addresses::Cidr>,
    /// `[remote]`, with `KILN_REMOTE_TOKEN`.
    remote: RemoteConfig,
}

/// `[remote]` as read: the engine (if the file names one) and how to reach it.
#[derive(Debug, Default)]
struct RemoteConfig {
    executor: Option<String>,
    cache: Option<String>,
    settings: crate::remote::RemoteSettings,
}

impl UserConfig {
    /// Read the config file (none is an empty config). Cache settings are
    /// overridden by `KILN_SUBSTITUTERS`, `KILN_TRUSTED_PUBLIC_KEYS`
    /// (whitespace-separated), `KILN_PUSH_TO` and `KILN_SIGNING_KEY`.
    pub fn load() -> anyhow::Result<Self> {
        let path = config_path();
        let mut file = FileTables::default();
        if let Some(path) = &path
            && let Ok(text) = kiln_core::sidefile::read_to_string(
                path,
                kiln_core::sidefile::Links::Follow,
                kiln_core::sidefile::limits::TEXT,
            )
        {
            file = toml::from_str(&text)
                .with_context(|| format!("{}: not a valid kiln config", path.display()))?;
        }
        let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
        let fetch_allow = file
            .fetch
            .allow
            .iter()
            .map(|entry| {
                entry
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{shown}: fetch.allow: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(UserConfig {
            cache: cache_settings(file.cache, &shown)?,
            fetch_allow,
            remote: remote_config(file.remote, &shown)?,
        })
    }

    /// The engine tool steps run on, if any: `--remote-executor` (or
    /// `KILN_REMOTE_EXECUTOR`) over `[remote] executor`; else an engine
    /// used as a cache only (`--remote-cache`, `[remote] cache`); none with
    /// `--no-remote`.
    pub fn remote(
        &self,
        flags: &crate::cli::args::RemoteArgs,
    ) -> Option<crate::remote::RemoteSettings> {
        if flags.no_remote {
            return None;
        }
        let nonempty = |a: &Option<String>| a.clone().filter(|a| !a.is_empty());
        let mut s = self.remote.settings.clone();
        // A flag beats the config; an executor beats a cache at each level.
        let executor = |address: String| (address, false);
        let cache = |address: String| (address, true);
        let (address, cache_only) = nonempty(&flags.remote_executor)
            .map(executor)
            .or_else(|| nonempty(&flags.remote_cache).map(cache))
            .or_else(|| self.remote.executor.clone().map(executor))
            .or_else(|| self.remote.cache.clone().map(cache))?;
        s.address = address;
        s.cache_only = cache_only;
        s.upload = cache_only && (s.upload || flags.remote_upload);
        if let Some(instance) = &flags.remote_instance {
            s.instance = instance.clone();
        }
        s.fallback |= flags.remote_fallback;
        Some(s)
    }

    /// The addresses kiln's downloads may reach beyond the address rule:
    /// `[fetch] allow` plus `--allow-fetch-from`.
    pub fn fetch_allow(&self, flags: &FetchArgs) -> crate::addresses::AllowList {
        let mut all = flags.allow_fetch_from.clone();
        all.extend(self.fetch_allow.iter().cloned());
        crate::addresses::AllowList(all)
    }
}

/// `[remote]` with `KILN_REMOTE_TOKEN`: the token is read here, once.
fn remote_config(table: RemoteTable, shown: &str) -> anyhow::Result<RemoteConfig> {
    let token = match std::env::var("KILN_REMOTE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => Some(t),
        None => match &table.token_file {
            Some(f) => Some(
                kiln_core::sidefile::read_to_string(
                    f,
                    kiln_core::sidefile::Links::Follow,
                    kiln_core::sidefile::limits::TEXT,
                )
                .with_context(|| format!("{shown}: remote.token-file {}", f.display()))?
                .trim()
                .to_string(),
            ),
            None => None,
        },
    };
    Ok(RemoteConfig {
        executor: table.executor.filter(|e| !e.is_empty()),
        cache: table.cache.filter(|e| !e.is_empty()),
        settings: crate::remote::RemoteSettings {
            address: String::new(),
            instance: table.instance,
            token,
            headers: table.headers.into_iter().collect(),
            ca_file: table.ca_file,
            platform: table.platform.into_iter().collect(),
            fallback: table.fallback,
            cache_only: false,
            upload: table.upload,
            step_timeout: std::time::Duration::ZERO,
        },
    })
}

/// `[cache]` with the environment's overrides.
fn cache_settings(table: CacheTable, shown: &str) -> anyhow::Result<CacheSettings> {
    let duration = |what: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t).with_context(|| {
            format!("{shown}: cache.{what} = {t:?} is not a duration like \"10s\"")
        }),
    };
    let defaults = Timeouts::default();
    let timeouts = Timeouts {
        connect: duration("connect-timeout", &table.connect_timeout, defaults.connect)?,
        stall: duration("stall-timeout", &table.stall_timeout, defaults.stall)?,
        ..defaults
    };
    let env_list = |n: &str| {
        std::env::var(n)
            .ok()
            .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
    };
    let env_one = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    Ok(CacheSettings {
        substituters: env_list("KILN_SUBSTITUTERS").unwrap_or(table.substituters),
        trusted_public_keys: env_list("KILN_TRUSTED_PUBLIC_KEYS")
            .unwrap_or(table.trusted_public_keys),
        push_to: env_one("KILN_PUSH_TO").or(table.push_to),
        signing_key: env_one("KILN_SIGNING_KEY")
            .map(PathBuf::from)
            .or(table.signing_key),
        accept_project_caches: table.accept_project_caches,
        timeouts,
    })
}

/// The caches a build substitutes from (None: none configured, or
/// `--no-substitute`), and a note when kiln.toml suggested caches that
/// were not accepted.
pub fn substituters(
    settings: &CacheSettings,
    args: &SubstituteArgs,
    project: &ProjectCaches,
) -> anyhow::Result<(Option<Arc<Substituters>>, Option<String>)> {
    if args.no_substitute {
        return Ok((None, None));
    }
    let mut urls: Vec<String> = args.substituters.clone();
    let mut keys: Vec<String> = args.trusted_public_keys.clone();
    urls.extend(settings.substituters.iter().cloned());
    keys.extend(settings.trusted_public_keys.iter().cloned());
    let mut note = None;
    let suggests = !project.substituters.is_empty();
    if suggests && (args.accept_project_caches || settings.accept_project_caches) {
        urls.extend(project.substituters.iter().cloned());
        keys.extend(project.trusted_public_keys.iter().cloned());
    } else if suggests {
        note = Some(format!(
            "kiln.toml suggests the binary cache{} {}; not used: pass --accept-project-caches to trust it and its keys (or set accept-project-caches = true under [cache] in your kiln config)",
            if project.substituters.len() > 1 {
                "s"
            } else {
                ""
            },
            project.substituters.join(", ")
        ));
    }
    // The user's own caches come first; a URL both name is the user's.
    let users = args.substituters.len() + settings.substituters.len();
    let mut unique: Vec<String> = Vec::new();
    let mut named_by = Vec::new();
    for (i, u) in urls.into_iter().enumerate() {
        if !unique.contains(&u) {
            unique.push(u);
            named_by.push(if i < users {
                NamedBy::User
            } else {
                NamedBy::Project
            });
        }
    }
    if unique.is_empty() {
        return Ok((None, note));
    }
    let mut trusted = Vec::new();
    for k in &keys {
        trusted.push(PublicKey::parse("trusted public key", k)?);
    }
    if trusted.is_empty() {
        bail!(
            "binary caches are configured ({}) but no trusted public key: every entry would be refused; add the cache's key with --trusted-public-key or trusted-public-keys in the user config (`kiln cache keygen` prints it)",
            unique.join(", ")
        );
    }
    let caches = unique
        .iter()
        .zip(named_by)
        .map(|(u, by)| Transport::parse(u, settings.timeouts, by).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((
        Some(Arc::new(Substituters::new(
            caches,
            trusted,
            settings.timeouts,
        ))),
        note,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_flag_beats_the_config_and_uploads_need_a_cache() {
        let config = UserConfig {
            remote: RemoteConfig {
                executor: Some("grpcs://config-engine:443".into()),
                cache: None,
                settings: crate::remote::RemoteSettings {
                    upload: true,
                    ..Default::default()
                },
            },
            ..UserConfig::default()
        };
        let flags = |executor: Option<&str>, cache: Option<&str>| crate::cli::args::RemoteArgs {
            remote_executor: executor.map(String::from),
            remote_cache: cache.map(String::from),
            ..Default::default()
        };
        let s = config
            .remote(&flags(None, Some("grpc://127.0.0.1:1")))
            .unwrap();
        assert_eq!(
            (s.address.as_str(), s.cache_only, s.upload),
            ("grpc://127.0.0.1:1", true, true)
        );
        let s = config.remote(&flags(None, None)).unwrap();
        assert_eq!(
            (s.address.as_str(), s.cache_only, s.upload),
            ("grpcs://config-engine:443", false, false)
        );
        let s = config
            .remote(&flags(Some("grpc://127.0.0.1:2"), Some("grpc://x:1")))
            .unwrap();
        assert_eq!(
            (s.address.as_str(), s.cache_only),
            ("grpc://127.0.0.1:2", false)
        );
        let none = crate::cli::args::RemoteArgs {
            no_remote: true,
            ..Default::default()
        };
        assert!(config.remote(&none).is_none());
    }

    fn project() -> ProjectCaches {
        ProjectCaches {
            substituters: vec!["file:///srv/cache".into()],
            trusted_public_keys: vec![
                crate::binary_cache::SecretKey::generate("p-1")
                    .public()
                    .to_text(),
            ],
            at: None,
        }
    }

    #[test]
    fn a_projects_caches_need_the_users_consent() {
        let settings = CacheSettings::default();
        let (subs, note) =
            substituters(&settings, &SubstituteArgs::default(), &project()).unwrap_or_default();
        assert!(subs.is_none());
        assert!(note.unwrap_or_default().contains("--accept-project-caches"));

        let args = SubstituteArgs {
            accept_project_caches: true,
            ..Default::default()
        };
        let (subs, note) = substituters(&settings, &args, &project()).unwrap_or_default();
        assert_eq!(subs.map(|s| s.caches.len()), Some(1));
        assert!(note.is_none());
    }

    #[test]
    fn caches_without_a_trusted_key_are_a_usage_error() {
        let settings = CacheSettings {
            substituters: vec!["file:///srv/cache".into()],
            ..Default::default()
        };
        let e = substituters(&settings, &SubstituteArgs::default(), &Default::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no trusted public key"), "{e}");
    }
}
