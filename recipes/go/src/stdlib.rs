//! The standard library, compiled once per machine: the seed of the kept
//! build caches (the host's cache `seed`). Its compile runs in a sandbox
//! that sees only the pinned toolchain, so every project on the machine
//! can trust it, and each gets a copy in its own cache.

use kiln_sdk::{Command, Seed, Tool};

use crate::params::Params;

/// Where the seed's command writes its result: its GOCACHE.
const SEED_CACHE: &str = "/seed";

/// The variables of a go command that decide how the standard library is
/// compiled (Go keys the rest of its cache itself); the seed gets these
/// and no other, so projects that differ only elsewhere share it.
const COMPILE_VARS: &[&str] = &[
    "CGO_ENABLED",
    "GOOS",
    "GOARCH",
    "GO386",
    "GOAMD64",
    "GOARM",
    "GOARM64",
    "GOMIPS",
    "GOMIPS64",
    "GOPPC64",
    "GORISCV64",
    "GOWASM",
    "GOEXPERIMENT",
    "GOTOOLCHAIN",
    "GOENV",
    "GOTELEMETRY",
    "GOSUMDB",
    "GOWORK",
];

/// The standard-library packages the build and its tests import, from
/// `go list` in the module (it reads the sources; it runs none). Empty
/// when there is nothing to seed: a cgo build (its standard library needs
/// the C compiler, which the seed does not see), no kept cache, or a
/// `go list` that fails (the build then says why).
pub fn packages(list: Command, p: &Params, packages: &[String]) -> Vec<String> {
    if p.cgo || !p.cache {
        return Vec::new();
    }
    let mut args = vec![
        "list".to_string(),
        "-deps".into(),
        "-test".into(),
        "-f".into(),
        "{{if .Standard}}{{.ImportPath}}{{end}}".into(),
    ];
    args.extend(p.tags_flag());
    args.extend(packages.iter().cloned());
    let Ok(out) = list.args(args).output() else {
        return Vec::new();
    };
    if !out.success() {
        return Vec::new();
    }
    let mut std: Vec<String> = out
        .stdout_str()
        .lines()
        .map(str::trim)
        // A test's own packages print as `p [p.test]`; the standard
        // library's never start with '-'.
        .filter(|l| !l.is_empty() && !l.contains(' ') && !l.starts_with('-'))
        .map(str::to_string)
        .collect();
    std.sort();
    std.dedup();
    std
}

/// The seed that compiles `std` as a go command with `env` would: the
/// same toolchain, compile variables, tags and `-trimpath`.
pub fn seed(go: &Tool, p: &Params, env: &[(String, String)], std: &[String]) -> Option<Seed> {
    if std.is_empty() {
        return None;
    }
    let mut seed = Seed::new(go.clone()).args(["build"]).args(p.tags_flag());
    for (k, v) in env {
        if COMPILE_VARS.contains(&k.as_str()) {
            seed = seed.env(k.as_str(), v.as_str());
        }
    }
    for (k, v) in &p.env {
        seed = seed.env(k.as_str(), v.as_str());
    }
    seed = seed
        .env("GOCACHE", SEED_CACHE)
        .env("GOPROXY", "off")
        .env("GOPATH", "/tmp/go")
        .env("GOMODCACHE", "/tmp/go/pkg/mod")
        .env("GOFLAGS", if p.trimpath { "-trimpath" } else { "" });
    Some(seed.items(std.iter().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_takes_only_the_compile_variables_and_the_users_env() {
        let p: Params = serde_json::from_str(r#"{"src": "src", "go": "go"}"#).unwrap();
        let env = vec![
            ("GOOS".to_string(), "linux".to_string()),
            ("GOPROXY".to_string(), "file:///work/modfetch".to_string()),
            ("GOCACHE".to_string(), "/cache/go-build".to_string()),
        ];
        let s = seed(&Tool::new("go", "bin/go"), &p, &env, &["fmt".into()]).unwrap();
        let text = format!("{s:?}");
        assert!(text.contains("\"GOOS\", \"linux\""), "{text}");
        assert!(!text.contains("modfetch"), "{text}");
        assert!(text.contains("\"GOCACHE\", \"/seed\""), "{text}");
        assert!(seed(&Tool::new("go", "bin/go"), &p, &env, &[]).is_none());
    }
}
