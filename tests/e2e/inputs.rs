//! Inputs: downloads from a loopback server, kiln.lock pinning, mismatches
//! with locations, offline rebuilds, and gc roots.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::support::{Project, fixture};

/// Serve `body` for every request on a loopback port; returns the URL base.
fn serve(body: Vec<u8>, requests: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn tarball() -> Vec<u8> {
    tarball_with(b"read me\n")
}

fn tarball_with(readme: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("pkg-1.0/README", readme), ("pkg-1.0/data/x", b"x")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// A project whose user lets kiln download from loopback, as a user with
/// a local mirror would (the address rule refuses loopback otherwise).
fn mirror_user() -> Project {
    let p = Project::new();
    std::fs::write(
        p.home.path().join("config.toml"),
        "[fetch]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    p
}

fn project(url: &str, hash: Option<&str>) -> Project {
    let p = mirror_user();
    let hash = hash
        .map(|h| format!(", hash = \"{h}\""))
        .unwrap_or_default();
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"noop\" }}\ninputs.pkg = {{ url = \"{url}/pkg-1.0.tar.gz\", unpack = true{hash} }}\n",
            fixture("hostile")
        ),
    );
    p
}

#[test]
fn a_url_input_is_pinned_in_kiln_lock_then_verified_and_works_offline() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = serve(tarball(), hits.clone());
    let p = project(&url, None);
    p.kiln(&["build", "--locked"])
        .fails_with("is not pinned in");
    p.kiln(&["build"]).ok();
    let lock = std::fs::read_to_string(p.path("kiln.lock")).unwrap();
    assert!(lock.contains("pkg = \"sha256-"), "{lock}");
    // The unpacked tree's single top-level directory became the root.
    let entry = p
        .store_entries()
        .into_iter()
        .find(|e| e.ends_with("-pkg"))
        .unwrap();
    assert!(
        p.home
            .path()
            .join("store")
            .join(&entry)
            .join("README")
            .is_file()
    );
    // A second build finds the pinned content in the store: no download.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    p.kiln(&["build", "--locked"]).ok();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);
}

#[test]
fn lock_update_re_pins_what_changed_upstream() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let old = serve(tarball(), hits.clone());
    let p = project(&old, None);
    p.kiln(&["lock"]).ok();
    let pinned = std::fs::read_to_string(p.path("kiln.lock")).unwrap();

    // Upstream now serves other bytes at the same path: the pin catches it.
    let new = serve(tarball_with(b"read me, version 2\n"), hits);
    let p2 = project(&new, None);
    std::fs::write(p2.path("kiln.lock"), &pinned).unwrap();
    p2.kiln(&["build"])
        .fails_with("kiln.lock pinned it; if the change is expected run `kiln lock --update pkg`");
    p2.kiln(&["lock", "--update", "nope"])
        .fails_with("no input 'nope'");
    p2.kiln(&["lock", "--update", "pkg"]).ok();
    let repinned = std::fs::read_to_string(p2.path("kiln.lock")).unwrap();
    assert_ne!(repinned, pinned);
    p2.kiln(&["build", "--locked"]).ok();
    // `--update` with no input re-pins everything; unchanged content, same lock.
    p2.kiln(&["lock", "--update"]).ok();
    assert_eq!(
        std::fs::read_to_string(p2.path("kiln.lock")).unwrap(),
        repinned
    );
}

#[test]
fn prefetch_prints_the_hash_a_build_then_accepts() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = serve(tarball(), hits.clone());
    let tmp = mirror_user();
    let r = tmp
        .kiln(&["prefetch", "--unpack", &format!("{url}/pkg-1.0.tar.gz")])
        .ok();
    let hash = r.stdout.trim().lines().last().unwrap().to_string();
    assert!(hash.starts_with("sha256-"), "{hash}");
    let p = project(&url, Some(&hash));
    p.kiln(&["build"]).ok();
}

#[test]
fn a_wrong_hash_names_the_input_its_location_and_the_fix() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = serve(tarball(), hits);
    let p = project(
        &url,
        Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
    );
    let r = p
        .kiln(&["build"])
        .fails_with("hash mismatch for input 'pkg' of target 't' (");
    assert!(r.stderr.contains("kiln.toml:4:"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("if the new content is what you want, write hash = \"sha256-"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("specified sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= got sha256-"),
        "{}",
        r.stderr
    );
    assert!(
        !p.store_entries().iter().any(|e| e.ends_with("-pkg")),
        "unverified content reached the store"
    );
}

#[test]
fn a_pin_is_compared_in_full_even_when_the_store_has_a_near_match() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = serve(tarball(), hits);
    let tmp = mirror_user();
    let r = tmp
        .kiln(&["prefetch", "--unpack", &format!("{url}/pkg-1.0.tar.gz")])
        .ok();
    let hash = r.stdout.trim().lines().last().unwrap().to_string();
    let p = project(&url, Some(&hash));
    p.kiln(&["build"]).ok();
    // One character near the start of the SRI: the first bytes of the
    // digest, which a store name (160 bits) does not show.
    let mut wrong = hash.clone().into_bytes();
    wrong[7] = if wrong[7] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    let near =
        |h: &str| kiln_core::hash::Sha256Hash::parse(h).unwrap().to_nix32()[..32].to_string();
    assert_eq!(
        near(&wrong),
        near(&hash),
        "the test needs a hash with the same store name"
    );
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    std::fs::write(p.path("kiln.toml"), toml.replace(&hash, &wrong)).unwrap();
    let r = p
        .kiln(&["build"])
        .fails_with("hash mismatch for input 'pkg'");
    assert!(
        r.stderr.contains(&format!("specified {wrong}")),
        "{}",
        r.stderr
    );
    // Nor does audit or verify take the wrong pin for the stored content.
    std::fs::write(p.path("kiln.toml"), toml).unwrap();
    p.kiln(&["build"]).ok();
}

#[test]
fn a_changed_path_input_is_noticed() {
    let p = Project::new();
    p.write("src/a", "one");
    p.write(
        "kiln.toml",
        &format!("[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"noop\" }}\ninputs.src = {{ path = \"src\" }}\n", fixture("hostile")),
    );
    p.kiln(&["build"]).ok();
    assert!(p.kiln(&["build"]).ok().stdout.contains("(cached)"));
    p.write("src/a", "two");
    assert!(!p.kiln(&["build"]).ok().stdout.contains("(cached)"));
}

#[test]
fn gc_keeps_what_a_result_link_roots_and_deletes_the_rest() {
    let p = Project::new();
    p.write("src/a", "one");
    p.write(
        "kiln.toml",
        &format!("[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"entropy\" }}\ninputs.src = {{ path = \"src\" }}\n", fixture("hostile")),
    );
    p.kiln(&["build"]).ok();
    let root = p.dir.path().to_str().unwrap().to_string();
    let before = p.store_entries();
    p.kiln(&["gc", "--root", &root]).ok();
    assert_eq!(
        p.store_entries(),
        before,
        "a rooted output or its inputs were deleted"
    );
    std::fs::remove_file(p.path("result")).unwrap();
    p.kiln(&["gc", "--root", &root]).ok();
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
}

/// kiln's own result links are outputs, never source: whatever `-o` names
/// them, and whatever `exclude` says, a `path = "."` input does not hash
/// them, so the next build is a no-op.
#[test]
fn result_links_are_never_hashed_as_source_whatever_their_name() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(crate::support::busybox(), p.path("tools/bin/sh")).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\ninputs.src = {{ path = \".\", exclude = [\"/proxy\"] }}\n[target.t.params]\nattack = \"exec\"\nscript = 'echo hi'\n",
            fixture("hostile")
        ),
    );
    let found = |args: &[&str]| -> bool {
        let r = p.kiln(args).ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v[0]["cached"].as_bool().unwrap()
    };
    // The default name, with an `exclude` that once replaced the defaults.
    assert!(!found(&["build", "--json"]));
    assert!(found(&["build", "--json"]), "the result link was hashed");
    // A name of the user's choice, as docs/audit.md suggests for releases.
    assert!(found(&["build", "--json", "-o", "release-1.0"]));
    assert!(found(&["build", "--json", "-o", "release-1.0"]));
    assert!(p.path("release-1.0").exists());
    // A real source change still rebuilds.
    p.write("new.txt", "x");
    assert!(!found(&["build", "--json", "-o", "release-1.0"]));
}

/// kiln.toml is kiln's, not the project's source: editing another
/// target's params (or a comment) leaves a `path = "."` target found in
/// the store; editing its own params rebuilds it.
#[test]
fn editing_kiln_toml_rebuilds_only_the_targets_whose_table_changed() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(crate::support::busybox(), p.path("tools/bin/sh")).unwrap();
    let toml = |t_script: &str, u_script: &str| {
        format!(
            "[target.t]\nrecipe = {{ path = {r:?} }}\ninputs.tools = {{ path = \"tools\" }}\ninputs.src = {{ path = \".\" }}\n[target.t.params]\nattack = \"exec\"\nscript = '{t_script}'\n\n[target.u]\nrecipe = {{ path = {r:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.u.params]\nattack = \"exec\"\nscript = '{u_script}'\n",
            r = fixture("hostile")
        )
    };
    let found = || -> std::collections::BTreeMap<String, bool> {
        let r = p.kiln(&["build", "--json", "t", "u"]).ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["target"].as_str().unwrap().to_string(),
                    t["cached"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    p.write("kiln.toml", &toml("echo t", "echo u"));
    assert_eq!(found(), [("t".into(), false), ("u".into(), false)].into());
    // Another target's params, and a comment: t is found, u rebuilt.
    p.write(
        "kiln.toml",
        &format!("# a comment\n{}", toml("echo t", "echo u2")),
    );
    assert_eq!(found(), [("t".into(), true), ("u".into(), false)].into());
    // t's own params: t rebuilt.
    p.write("kiln.toml", &toml("echo t2", "echo u2"));
    assert_eq!(found(), [("t".into(), false), ("u".into(), true)].into());
}

/// A malformed pin a recipe names (`params.vendor_hash`) fails when
/// kiln.toml is read, with its place, before any recipe or tool runs.
#[test]
fn a_malformed_pin_fails_at_load_with_its_place() {
    let p = Project::new();
    p.write(
        "kiln.toml",
        "[target.t]\nrecipe = \"go\"\ninputs.src = { path = \".\" }\nparams.vendor_hash = \"sha256-notahash\"\n",
    );
    p.kiln(&["build"])
        .fails_with("kiln.toml:4:22: params.vendor_hash");
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
}
