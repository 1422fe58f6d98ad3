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

/// A fixed-output project whose tool prints `text`, pinned with the hash
/// that output has: (project, its output hash).
fn fixed_output_project(text: &str) -> (Project, String) {
    let script = format!("attack = \"exec\"\nscript = 'echo {text}'\n");
    let p = busybox_project("", &script);
    p.kiln(&["build"]).ok();
    let hash = crate::support::record_of(&p, "result")["output_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    let pinned = toml.replacen(
        "[target.t]\n",
        &format!("[target.t]\noutput_hash = {hash:?}\n"),
        1,
    );
    std::fs::write(p.path("kiln.toml"), pinned).unwrap();
    p.kiln(&["build"]).ok();
    (p, hash)
}

#[test]
fn a_signed_entry_whose_bytes_are_not_its_pinned_hash_is_refused() {
    let (good, good_hash) = fixed_output_project("good");
    let (evil, _) = fixed_output_project("evil");
    // The holder of a trusted key signs a store path named by the good
    // pin whose contents are other bytes (with their own, consistent
    // record): signing proves who made it, not what it holds.
    let evil_entry = std::fs::canonicalize(evil.path("result")).unwrap();
    let part = &kiln_core::hash::Sha256Hash::parse(&good_hash)
        .unwrap()
        .to_nix32()[..32];
    let forged = evil.home.path().join(format!("store/{part}-t"));
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&evil_entry)
        .arg(&forged)
        .status()
        .unwrap();
    assert!(cp.success());
    let records = evil.home.path().join("records");
    std::fs::copy(
        records.join(format!(
            "{}.json",
            evil_entry.file_name().unwrap().to_string_lossy()
        )),
        records.join(format!("{part}-t.json")),
    )
    .unwrap();
    let (secret, public) = keygen(&evil, "team-1");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    evil.kiln(&[
        "cache",
        "push",
        forged.to_str().unwrap(),
        "--to",
        &url,
        "--signing-key",
        &secret,
    ])
    .ok();

    let victim = copy_of(&good);
    let r = build_from(&victim, &url, &public).ok();
    assert!(
        r.stderr.contains("not taken from cache") && r.stderr.contains("names NAR hash"),
        "{}",
        r.stderr
    );
    assert_eq!(output(&victim).trim(), "good");
}

#[test]
fn an_unsigned_file_size_does_not_bound_a_download() {
    let (a, dir, public) = pushed();
    let info = narinfo(dir.path());
    let original = std::fs::read_to_string(&info).unwrap();
    // FileSize is outside the signed fingerprint: a replaying server may
    // announce a terabyte and stream without end.
    let file_size = original
        .lines()
        .find_map(|l| l.strip_prefix("FileSize: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &info,
        original.replace(&format!("FileSize: {file_size}"), "FileSize: 1000000000000"),
    )
    .unwrap();
    let nar = nar_file(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&nar).unwrap();
    f.set_len(64 << 20).unwrap();
    refused(&a, dir.path(), &public, "the most its signed NarSize");
}

#[test]
fn a_cache_that_answers_slowly_is_asked_once_per_run() {
    use std::io::{Read, Write};
    // Every lookup answers 404, after 4 s: under the stall timeout, but
    // paid by every target if the cache were asked for each.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_secs(4));
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let (_, public) = keygen(&Project::new(), "k-1");
    // Three targets, built one after another.
    let p = busybox_project("", "attack = \"exec\"\nscript = 'echo one'\n");
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    let more: String = ["u", "v"]
        .iter()
        .map(|n| {
            toml.replace("[target.t]", &format!("[target.{n}]"))
                .replace("[target.t.params]", &format!("[target.{n}.params]"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    p.write("kiln.toml", &format!("{toml}\n{more}"));
    let url = format!("http://127.0.0.1:{port}/cache");
    let r = p
        .kiln(&[
            "build",
            "-j",
            "1",
            "--substituter",
            &url,
            "--trusted-public-key",
            &public,
        ])
        .ok();
    assert!(
        r.stderr.contains("to answer a lookup"),
        "the slow cache is named:\n{}",
        r.stderr
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "asked more than once:\n{}",
        r.stderr
    );
}

#[test]
fn credentials_go_only_to_caches_the_user_named_and_never_in_clear() {
    use std::io::{Read, Write};
    // A cache that records what it is sent and has nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let (_, public) = keygen(&Project::new(), "k-1");
    let p = busybox_project("", "attack = \"exec\"\nscript = 'echo one'\n");
    // The user's netrc has a default login, for any host.
    let netrc = p.home.path().join("netrc");
    std::fs::write(&netrc, "default login team password s3cret\n").unwrap();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            "[cache]\nsubstituters = [\"http://127.0.0.1:{port}/suggested\"]\ntrusted-public-keys = [\"{public}\"]\n\n{toml}"
        ),
    );
    // Accepted, the project's cache on loopback is not even asked: a
    // kiln.toml's cache obeys the address rule as its downloads do (and
    // would get no login: unit test in transport.rs).
    let r = run_with_netrc(&p, &netrc, &["build", "--accept-project-caches"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("is a loopback address"), "{}", r.stderr);
    let heard = seen.lock().unwrap().clone();
    assert!(
        heard.is_empty(),
        "a kiln.toml's cache reached loopback:\n{heard}"
    );
    // The user's own cache gets it on loopback…
    seen.lock().unwrap().clear();
    let mine = format!("http://127.0.0.1:{port}/mine");
    let r = run_with_netrc(
        &p,
        &netrc,
        &[
            "build",
            "--source-date-epoch",
            "2",
            "--substituter",
            &mine,
            "--trusted-public-key",
            &public,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        seen.lock()
            .unwrap()
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "the user's own cache did not get the login"
    );
    // …but never in clear text across a network.
    let r = run_with_netrc(
        &p,
        &netrc,
        &[
            "build",
            "--substituter",
            "http://cache.example.org/team",
            "--trusted-public-key",
            &public,
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("would travel in clear text"),
        "{}",
        r.stderr
    );
}

fn run_with_netrc(p: &Project, netrc: &Path, args: &[&str]) -> crate::support::Run {
    crate::support::run(p.command(args).env("NETRC", netrc).output().unwrap())
}
