//! Binary caches: one machine pushes, a fresh store pulls instead of
//! building; every way an entry can be wrong (unsigned, untrusted key,
//! tampered narinfo, NAR or record, truncated) is refused by name and the
//! target is built locally; an unreachable or silent cache costs one
//! warning, never a hang. The real-server tests (nginx with WebDAV, an S3
//! server, `nix` reading what kiln wrote) live in `binary_cache_servers`.

use std::path::Path;

use crate::support::{Project, busybox, busybox_project};

/// A target whose output is random: a second run of its tool gives other
/// bytes, so equal bytes prove the tool did not run.
pub fn random_project() -> Project {
    busybox_project(
        "",
        "attack = \"exec\"\nscript = 'head -c 16 /dev/urandom | od -An -tx1'\n",
    )
}

/// The same project (kiln.toml and tools) in another directory with a new
/// store: another machine.
pub fn copy_of(p: &Project) -> Project {
    let q = Project::new();
    std::fs::create_dir_all(q.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), q.path("tools/bin/sh")).unwrap();
    std::fs::copy(p.path("kiln.toml"), q.path("kiln.toml")).unwrap();
    q
}

/// A new signing key in `p`'s home: (secret key file, public key).
pub fn keygen(p: &Project, name: &str) -> (String, String) {
    let file = p.home.path().join(format!("{name}.secret"));
    let r = p
        .kiln(&[
            "cache",
            "keygen",
            name,
            "--secret-file",
            file.to_str().unwrap(),
        ])
        .ok();
    (file.display().to_string(), r.stdout.trim().to_string())
}

/// The output `p` built for target `t` (as `result`).
pub fn output(p: &Project) -> String {
    std::fs::read_to_string(p.path("result/escaped")).unwrap()
}

/// Build `t` in `p` with `cache` as its only substituter, trusting `key`.
fn build_from(p: &Project, cache: &str, key: &str) -> crate::support::Run {
    p.kiln(&["build", "--substituter", cache, "--trusted-public-key", key])
}

/// A project built and pushed to a fresh `file://` cache: (project,
/// cache dir, public key).
fn pushed() -> (Project, tempfile::TempDir, String) {
    let a = random_project();
    a.kiln(&["build"]).ok();
    let (secret, public) = keygen(&a, "test-1");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let r = a
        .kiln(&["cache", "push", "--to", &url, "--signing-key", &secret])
        .ok();
    assert!(r.stderr.contains("pushed 1 store entries"), "{}", r.stderr);
    (a, dir, public)
}

fn narinfo(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "narinfo"))
        .expect("the push wrote a narinfo")
}

fn nar_file(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("nar"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("the push wrote a NAR")
}

#[test]
fn a_fresh_store_takes_a_pushed_output_instead_of_running_the_tool() {
    let (a, dir, public) = pushed();
    let url = format!("file://{}", dir.path().display());
    let layout = std::fs::read_to_string(dir.path().join("nix-cache-info")).unwrap();
    assert!(layout.contains("StoreDir: /nix/store"), "{layout}");

    let b = copy_of(&a);
    let r = b
        .kiln(&[
            "build",
            "--json",
            "--substituter",
            &url,
            "--trusted-public-key",
            &public,
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["substituted_from"], url.as_str(), "{}", r.stdout);
    assert_eq!(
        output(&b),
        output(&a),
        "the pulled bytes are the pushed ones"
    );
    // The record came along: audit reads it on the new machine.
    let audit = b.kiln(&["audit", "t"]).ok();
    assert!(audit.stdout.contains("tools"), "{}", audit.stdout);
    // A second build is a plain store hit.
    let again = build_from(&b, &url, &public).ok();
    assert!(again.stdout.contains("(cached)"), "{}", again.stdout);

    // Without the cache the tool runs and gives other bytes: the check
    // above could fail.
    let c = copy_of(&a);
    c.kiln(&["build"]).ok();
    assert_ne!(output(&c), output(&a));
    // A second push uploads nothing.
    let secret = a.home.path().join("test-1.secret");
    let r = a
        .kiln(&[
            "cache",
            "push",
            "./result",
            "--to",
            &url,
            "--signing-key",
            secret.to_str().unwrap(),
        ])
        .ok();
    assert!(
        r.stderr.contains("pushed 0 store entries") && r.stderr.contains("1 were there"),
        "{}",
        r.stderr
    );
}

/// Build a copy of `a` from the (tampered) cache `dir`: it must be
/// refused with `needle` and built locally.
#[track_caller]
fn refused(a: &Project, dir: &Path, key: &str, needle: &str) {
    let b = copy_of(a);
    let url = format!("file://{}", dir.display());
    let r = build_from(&b, &url, key).ok();
    assert!(
        r.stderr.contains("not taken from cache") && r.stderr.contains(needle),
        "expected a refusal naming {needle:?}:\n{}",
        r.stderr
    );
    assert_ne!(output(&b), output(a), "built locally, not taken");
    assert_eq!(b.staging_leftovers(), 0);
}

#[test]
fn an_entry_that_is_unsigned_untrusted_or_tampered_with_is_refused_and_built_here() {
    let (a, dir, public) = pushed();
    let info = narinfo(dir.path());
    let original = std::fs::read_to_string(&info).unwrap();

    // Another key than the one the user trusts.
    let (_, other) = keygen(&a, "other-1");
    refused(
        &a,
        dir.path(),
        &other,
        "no valid signature by a trusted key",
    );

    // Unsigned.
    let unsigned: String = original
        .lines()
        .filter(|l| !l.starts_with("Sig:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&info, unsigned).unwrap();
    refused(&a, dir.path(), &public, "is not signed");

    // A narinfo field changed after signing (the signature no longer fits).
    let bigger = original.replace("NarSize: ", "NarSize: 1");
    std::fs::write(&info, bigger).unwrap();
    refused(
        &a,
        dir.path(),
        &public,
        "no valid signature by a trusted key",
    );
    std::fs::write(&info, &original).unwrap();

    // The NAR file's bytes differ from what the signed narinfo says.
    let nar = nar_file(dir.path());
    let bytes = std::fs::read(&nar).unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&nar, &flipped).unwrap();
    refused(&a, dir.path(), &public, ".nar.zst: refused");

    // Truncated.
    std::fs::write(&nar, &bytes[..bytes.len() / 2]).unwrap();
    refused(&a, dir.path(), &public, "truncated");
    std::fs::write(&nar, &bytes).unwrap();

    // The record (what audit and provenance read) changed after signing.
    let record = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".kiln.json"))
        .unwrap();
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replacen("\"target\"", "\"target\" ", 1)).unwrap();
    refused(
        &a,
        dir.path(),
        &public,
        "has no valid signature by a trusted key",
    );
    std::fs::write(&record, &text).unwrap();

    // Untouched again, it is taken.
    let b = copy_of(&a);
    let url = format!("file://{}", dir.path().display());
    build_from(&b, &url, &public).ok();
    assert_eq!(output(&b), output(&a));
}

#[test]
fn an_unreachable_or_silent_cache_costs_one_warning_and_the_build_goes_on() {
    // Nothing listens on a port we bound and closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // This one accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let (_, public) = keygen(&Project::new(), "k-1");
    for (port, what) in [(closed, "closed"), (silent_port, "silent")] {
        // Two targets: the cache is asked once, not once per target.
        let p = busybox_project("", "attack = \"exec\"\nscript = 'echo one'\n");
        let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
        p.write(
            "kiln.toml",
            &format!(
                "{toml}\n{}",
                toml.replace("[target.t]", "[target.u]")
                    .replace("[target.t.params]", "[target.u.params]")
            ),
        );
        std::fs::write(
            p.home.path().join("config.toml"),
            "[cache]\nstall-timeout = \"1s\"\nconnect-timeout = \"1s\"\n",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let url = format!("http://127.0.0.1:{port}/cache");
        let r = build_from(&p, &url, &public).ok();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            r.stderr.matches("unreachable").count(),
            1,
            "{what}: one warning:\n{}",
            r.stderr
        );
        assert!(p.path("result-t/escaped").exists() && p.path("result-u/escaped").exists());
    }
}

#[test]
fn a_projects_cache_is_used_only_when_the_user_accepts_it() {
    let (a, dir, public) = pushed();
    let b = copy_of(&a);
    let toml = std::fs::read_to_string(b.path("kiln.toml")).unwrap();
    b.write(
        "kiln.toml",
        &format!(
            "[cache]\nsubstituters = [\"file://{}\"]\ntrusted-public-keys = [\"{public}\"]\n\n{toml}",
            dir.path().display()
        ),
    );
    let r = b.kiln(&["build"]).ok();
    assert!(
        r.stderr.contains("kiln.toml suggests the binary cache")
            && r.stderr.contains("--accept-project-caches"),
        "{}",
        r.stderr
    );
    assert_ne!(output(&b), output(&a), "not accepted: built here");

    let c = copy_of(&a);
    c.write(
        "kiln.toml",
        &std::fs::read_to_string(b.path("kiln.toml")).unwrap(),
    );
    let r = c.kiln(&["build", "--accept-project-caches"]).ok();
    assert!(r.stdout.contains("(from cache file://"), "{}", r.stdout);
    assert_eq!(output(&c), output(&a));
}

#[test]
fn bad_cache_settings_are_named_errors() {
    let p = random_project();
    p.kiln(&["build", "--substituter", "file:///nonexistent"])
        .fails_with("no trusted public key");
    p.kiln(&[
        "build",
        "--substituter",
        "ftp://x",
        "--trusted-public-key",
        "k:AAAA",
    ])
    .fails_with("32 bytes");
    let (_, public) = keygen(&p, "k-1");
    p.kiln(&[
        "build",
        "--substituter",
        "https://user:pw@cache.example",
        "--trusted-public-key",
        &public,
    ])
    .fails_with("~/.netrc");
    std::fs::write(
        p.home.path().join("config.toml"),
        "[cache]\nsubstituter = []\n",
    )
    .unwrap();
    p.kiln(&["build"]).fails_with("not a valid kiln config");
    // keygen never overwrites a key.
    let file = p.home.path().join("k-1.secret");
    p.kiln(&[
        "cache",
        "keygen",
        "k-1",
        "--secret-file",
        file.to_str().unwrap(),
    ])
    .fails_with("never overwrites");
}

#[test]
fn build_push_without_a_destination_fails_before_building() {
    let p = random_project();
    p.kiln(&["build", "--push"])
        .fails_with("no cache to push to");
    assert!(!p.path("result").exists(), "nothing was built");
    let (secret, _) = keygen(&p, "k-1");
    let dir = tempfile::tempdir().unwrap();
    let r = p
        .command(&["build", "--push"])
        .env("KILN_PUSH_TO", format!("file://{}", dir.path().display()))
        .env("KILN_SIGNING_KEY", &secret)
        .output()
        .unwrap();
    let r = crate::support::run(r).ok();
    assert!(r.stderr.contains("pushed 1 store entries"), "{}", r.stderr);
}
