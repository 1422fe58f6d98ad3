//! Tool caches (`exec-with` caches, Go's build cache) and fetch reuse: a
//! cache lasts across builds of one target and reaches no other; it never
//! changes an output; a fetch step runs again only when what decides it
//! changed.

use crate::support::{Project, busybox, fixture, record_of};

/// A project whose targets each run `script` (with a tool cache at
/// /cache/c under `key`) by the hostile recipe's `exec` attack.
fn cache_project(targets: &[(&str, &str, &str)]) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    let mut toml = String::new();
    for (name, key, script) in targets {
        toml.push_str(&format!(
            "[target.{name}]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.{name}.params]\nattack = \"exec\"\ncache = [\"{key}\", \"/cache/c\"]\nscript = '''{script}'''\n",
            fixture("hostile")
        ));
    }
    p.write("kiln.toml", &toml);
    p
}

/// What `target`'s tool printed (its link is `result` when it was built alone).
fn escaped(p: &Project, target: &str) -> String {
    let named = p.path(&format!("result-{target}/escaped"));
    let link = if named.exists() {
        named
    } else {
        p.path("result/escaped")
    };
    std::fs::read_to_string(link).unwrap()
}

#[test]
fn a_tool_cache_lasts_across_builds_of_its_target_and_reaches_no_other() {
    // Each build counts the marks in the cache, then adds its own.
    let script = |me: &str| format!("n=$(ls /cache/c | wc -l); echo $n; touch /cache/c/{me}-$n");
    let p = cache_project(&[("a", "k", &script("a")), ("b", "k", &script("b"))]);
    p.kiln(&["build", "a", "b"]).ok();
    assert_eq!(escaped(&p, "a").trim(), "0");
    assert_eq!(
        escaped(&p, "b").trim(),
        "0",
        "b must not see a's cache, same key or not"
    );
    // A new build of a (a new SOURCE_DATE_EPOCH, so it runs) finds a's mark only.
    p.kiln(&["build", "a", "b", "--source-date-epoch", "2"])
        .ok();
    assert_eq!(escaped(&p, "a").trim(), "1");
    assert_eq!(escaped(&p, "b").trim(), "1");
    // The record says the cache was used, and how warm it was.
    assert!(
        std::fs::canonicalize(p.path("result-a"))
            .unwrap()
            .starts_with(p.home.path())
    );
    let rec = record_of(&p, "result-a");
    let use_ = &rec["timing"]["caches"][0];
    assert_eq!(use_["path"], "/cache/c", "{rec}");
    assert_eq!(use_["kind"], "persistent", "{rec}");
    assert_eq!(use_["files_before"], 1, "{rec}");
    // Another checkout of the same project has caches of its own.
    let q = cache_project(&[("a", "k", &script("a"))]);
    q.kiln(&["build", "a", "--source-date-epoch", "2"]).ok();
    assert_eq!(escaped(&q, "a").trim(), "0");
}

#[test]
fn no_cache_and_check_build_with_empty_caches() {
    let p = cache_project(&[(
        "a",
        "k",
        "n=$(ls /cache/c | wc -l); echo $n; touch /cache/c/x-$n",
    )]);
    p.kiln(&["build"]).ok();
    p.kiln(&["build", "--source-date-epoch", "2"]).ok();
    assert_eq!(escaped(&p, "a").trim(), "1");
    // --no-cache: empty, and the kept cache is left alone.
    p.kiln(&["build", "--source-date-epoch", "3", "--no-cache"])
        .ok();
    assert_eq!(escaped(&p, "a").trim(), "0");
    p.kiln(&["build", "--source-date-epoch", "4"]).ok();
    assert_eq!(escaped(&p, "a").trim(), "2");
    // --check's second build gets an empty cache: an output that depends
    // on the cache's content is caught as not reproducible.
    p.kiln(&["build", "--source-date-epoch", "5", "--check"])
        .fails_with("target 'a' is not reproducible");
}

#[test]
fn cache_paths_are_checked_and_fetch_steps_get_none() {
    for (path, why) in [
        ("/work/c", "cache path '/work/c' must be /cache/<name>"),
        (
            "/cache/../etc",
            "cache path '/cache/../etc' must be /cache/<name>",
        ),
        (
            "/cache/a/b",
            "cache path '/cache/a/b' must be /cache/<name>",
        ),
    ] {
        let p = Project::new();
        std::fs::create_dir_all(p.path("tools/bin")).unwrap();
        std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
        p.write(
            "kiln.toml",
            &format!(
                "[target.t]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.t.params]\nattack = \"exec\"\ncache = [\"k\", \"{path}\"]\nscript = 'true'\n",
                fixture("hostile")
            ),
        );
        p.kiln(&["build"]).fails_with(why);
    }
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.t.params]\nattack = \"exec\"\npin = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\nfixed_dir = \"/work/f\"\ncache = [\"k\", \"/cache/c\"]\nscript = 'true'\n",
            fixture("hostile")
        ),
    );
    p.kiln(&["build"])
        .fails_with("a fixed-output step cannot mount caches");
}

#[test]
fn gc_trims_tool_caches_by_age_and_size() {
    let p = cache_project(&[
        ("a", "k", "head -c 300000 /dev/zero > /cache/c/big"),
        ("b", "k", "head -c 1000 /dev/zero > /cache/c/small"),
    ]);
    p.kiln(&["build"]).ok();
    let caches = p.home.path().join("caches");
    let count = || std::fs::read_dir(&caches).unwrap().count();
    assert_eq!(count(), 2);
    // Both fit in 1M and are fresh: nothing goes.
    p.kiln(&["gc", "--cache-max-size", "1M"]).ok();
    assert_eq!(count(), 2);
    // Over 100K only the small one fits.
    let r = p
        .kiln(&["gc", "--cache-max-size", "100K", "--dry-run"])
        .ok();
    assert!(r.stdout.contains("would delete tool cache"), "{}", r.stdout);
    assert_eq!(count(), 2, "a dry run deletes nothing");
    p.kiln(&["gc", "--cache-max-size", "100K"]).ok();
    assert_eq!(count(), 1);
    // Unused for longer than the age limit: gone whatever its size.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.kiln(&["gc", "--cache-max-age", "1s"]).ok();
    assert_eq!(count(), 0);
}

#[test]
fn a_recipe_replaced_at_the_same_path_does_not_inherit_the_old_ones_caches() {
    let script = "n=$(ls /cache/c | wc -l); echo $n; touch /cache/c/mark-$n";
    let p = cache_project(&[("a", "k", script)]);
    // The recipe is a file in the project, as `kiln run r.wasm` or a local
    // recipe would be.
    std::fs::copy(fixture("hostile"), p.path("r.wasm")).unwrap();
    let toml = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
    std::fs::write(
        p.path("kiln.toml"),
        toml.replace(&format!("{:?}", fixture("hostile")), "\"r.wasm\""),
    )
    .unwrap();
    p.kiln(&["build", "a"]).ok();
    assert_eq!(escaped(&p, "a").trim(), "0");
    // The same recipe again (a new SOURCE_DATE_EPOCH, so it runs) sees its mark.
    p.kiln(&["build", "a", "--source-date-epoch", "2"]).ok();
    assert_eq!(escaped(&p, "a").trim(), "1");
    // Another component at the same path (here: the same code with a custom
    // section appended, so only its hash differs) starts from nothing.
    let mut wasm = std::fs::read(p.path("r.wasm")).unwrap();
    let name = b"kiln-test";
    let payload = b"another recipe";
    wasm.push(0);
    wasm.push((1 + name.len() + payload.len()) as u8);
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(payload);
    std::fs::write(p.path("r.wasm"), wasm).unwrap();
    p.kiln(&["build", "a", "--source-date-epoch", "3"]).ok();
    assert_eq!(
        escaped(&p, "a").trim(),
        "0",
        "a replaced recipe saw the old one's cache"
    );
}

/// What tools leave in a tool cache counts in the target's disk budget,
/// even when each exec stays under it: the end of the run measures /work,
/// /out and the caches together.
#[test]
fn what_tools_leave_in_a_cache_counts_in_the_disk_budget() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n[target.t.params]\nattack = \"exec\"\ncache = [\"k\", \"/cache/c\"]\nscript = 'head -c 1500000 /dev/zero > /cache/c/big'\nthen = 'head -c 1000000 /dev/zero > /work/big'\n",
            fixture("hostile")
        ),
    );
    p.kiln(&["build", "--disk", "2M"])
        .fails_with("wrote more than its disk budget of 2 MiB to /work, /out and its tool caches");
    // Under a budget that holds both, the same build passes.
    p.kiln(&["build", "--disk", "4M"]).ok();
}
