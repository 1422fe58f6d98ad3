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

/// A project whose target `a` runs `script` with the cache /cache/c seeded
/// by `seed` (a shell script, given `items`); it also declares an input
/// the seed must not see.
fn seeded_project(seed: &str, items: &[&str], script: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    p.write("secret/token", "project secret\n");
    p.write(
        "kiln.toml",
        &format!(
            "[target.a]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\ninputs.secret = {{ path = \"secret\" }}\n[target.a.params]\nattack = \"exec\"\ncache = [\"k\", \"/cache/c\"]\nseed = '''{seed}'''\nseed_items = {items:?}\nscript = '''{script}'''\n",
            fixture("hostile")
        ),
    );
    p
}

/// `p`'s kiln run with the store (and so the seeds) of `home`.
fn kiln_with_home(p: &Project, home: &Project, args: &[&str]) -> crate::support::Run {
    crate::support::run(
        p.command(args)
            .env("KILN_HOME", home.home.path())
            .output()
            .unwrap(),
    )
}

/// The note of the first cache's seed in the record `rec`, which failed.
fn failed_seed_note(rec: &serde_json::Value) -> String {
    let seed_use = &rec["timing"]["caches"][0]["seed"];
    assert_eq!(seed_use["outcome"], "failed", "{rec}");
    seed_use["note"].as_str().unwrap_or_default().to_string()
}

/// The record of `p`'s `result`, built with `home`'s store.
fn record_in(home: &Project, p: &Project) -> serde_json::Value {
    let entry = std::fs::canonicalize(p.path("result")).unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    let file = home.home.path().join(format!("records/{name}.json"));
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

#[test]
fn a_cache_seed_sees_only_its_tool_is_shared_as_computed_and_never_as_a_project_left_it() {
    // The seed lists what it can see and says which items it was run for;
    // the target shows what its cache got, then poisons its own copy.
    let seed = r#"ls -A /inputs /work /out > /seed/seen 2>&1; cat /inputs/secret/token >> /seed/seen 2>&1; echo "$@" >> /seed/runs; echo shared > /seed/file; for i in "$@"; do touch /seed/item-$i; done"#;
    let script = "cat /cache/c/seen /cache/c/runs /cache/c/file; ls /cache/c | grep item- | tr '\\n' ' '; echo poison > /cache/c/file";
    let a = seeded_project(seed, &["x", "y"], script);
    let built = a.kiln(&["build", "--json"]).ok();
    // --json marks the step that computed the seed (a terminal says so).
    let seeding: Vec<serde_json::Value> = built
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step-started")
        .map(|e| e["seed"].clone())
        .collect();
    assert_eq!(
        seeding,
        [serde_json::json!(true), serde_json::Value::Null],
        "{}",
        built.stderr
    );
    let said = escaped(&a, "a");
    // It saw its own tool's input and nothing of the project: no other
    // input, an empty /work and /out.
    assert!(
        said.starts_with("/inputs:\ntools\n\n/out:\n\n/work:\n"),
        "{said}"
    );
    assert!(said.contains("No such file"), "{said}");
    assert!(!said.contains("project secret"), "{said}");
    assert!(said.contains("x y\nshared\nitem-x item-y"), "{said}");
    let rec = record_of(&a, "result");
    let seed_use = &rec["timing"]["caches"][0]["seed"];
    assert_eq!(seed_use["outcome"], "computed", "{rec}");
    assert_eq!(seed_use["items"], 2, "{rec}");
    assert_eq!(rec["timing"]["caches"][0]["files_before"], 0, "{rec}");

    // Another project asking for the same computation gets the shared
    // result, not what a's tools wrote into a's cache.
    let b = seeded_project(seed, &["y"], script);
    kiln_with_home(&b, &a, &["build"]).ok();
    let said = std::fs::read_to_string(b.path("result/escaped")).unwrap();
    assert!(said.contains("x y\nshared\n"), "{said}");
    assert!(!said.contains("poison"), "{said}");
    let rec = record_in(&a, &b);
    assert_eq!(
        rec["timing"]["caches"][0]["seed"]["outcome"], "reused",
        "{rec}"
    );
    assert_eq!(
        rec["timing"]["caches"][0]["seed"]["hash"],
        record_of(&a, "result")["timing"]["caches"][0]["seed"]["hash"]
    );

    // An item the result lacks: the tool runs again on a copy of it, for
    // that item only.
    let c = seeded_project(seed, &["x", "z"], script);
    kiln_with_home(&c, &a, &["build"]).ok();
    let said = std::fs::read_to_string(c.path("result/escaped")).unwrap();
    assert!(
        said.contains("x y\nz\nshared\nitem-x item-y item-z"),
        "{said}"
    );

    // A different computation is a different result.
    let d = seeded_project(&format!("{seed}; echo other > /seed/file"), &["x"], script);
    kiln_with_home(&d, &a, &["build"]).ok();
    let said = std::fs::read_to_string(d.path("result/escaped")).unwrap();
    assert!(said.contains("x\nother\n"), "{said}");

    // --no-cache: an empty cache, no seed.
    let r = kiln_with_home(&b, &a, &["build", "--no-cache", "--source-date-epoch", "2"]).ok();
    let said = std::fs::read_to_string(b.path("result/escaped")).unwrap();
    assert!(!said.contains("shared"), "{said}\n{}", r.stderr);

    // A seed that fails leaves the cache as it was and the build goes on.
    let e = seeded_project("echo cannot >&2; exit 3", &["x"], "ls /cache/c | wc -l");
    e.kiln(&["build"]).ok();
    assert_eq!(escaped(&e, "a").trim(), "0");
    let note = failed_seed_note(&record_of(&e, "result"));
    assert!(note.contains("code 3: cannot"), "{note}");

    // Items are operands, never options, and one line each in the index.
    let f = seeded_project(seed, &["-o/tmp/x"], script);
    f.kiln(&["build"])
        .fails_with("cache seed: item \"-o/tmp/x\"");
    let g = seeded_project(seed, &["x\nfmt"], script);
    g.kiln(&["build"]).fails_with(
        "cache seed: item \"x\\nfmt\" is empty, starts with '-', holds a control character",
    );
}

/// What a seed adds to the store counts in the disk budget of the build
/// that computed it (a reused one costs nothing), and a seed larger than
/// what is left fails without failing the build.
#[test]
fn a_computed_seed_counts_in_the_disk_budget_and_a_reused_one_does_not() {
    let seed = "head -c 20000000 /dev/zero > /seed/big";
    // The target empties its cache copy, so only /out and the seed count.
    let script = "rm -f /cache/c/big; head -c 12000000 /dev/zero > /out/twelve";
    let a = seeded_project(seed, &["x"], script);
    let over = a
        .kiln(&["build", "--disk", "30M"])
        .fails_with("disk budget of 30 MiB");
    assert!(
        over.stderr.contains("cache seeds it computed"),
        "{}",
        over.stderr
    );
    // Now stored: the same build, and another project's, pay nothing for it.
    a.kiln(&["build", "--disk", "30M"]).ok();
    assert_eq!(
        record_of(&a, "result")["timing"]["caches"][0]["seed"]["outcome"],
        "reused"
    );
    let b = seeded_project(seed, &["x"], script);
    kiln_with_home(&b, &a, &["build", "--disk", "30M"]).ok();

    // Larger than the budget: the seed fails, the build goes on unseeded.
    let huge = seeded_project(
        "head -c 40000000 /dev/zero > /seed/big",
        &["x"],
        "echo unseeded > /out/x",
    );
    huge.kiln(&["build", "--disk", "30M"]).ok();
    let rec = record_of(&huge, "result");
    let note = failed_seed_note(&rec);
    assert!(note.contains("exited with"), "{note}");
    assert!(
        rec["timing"]["caches"][0]["seed"]
            .get("stored_bytes")
            .is_none()
    );
}

/// A build waits for another kiln computing the same seed only for a
/// share of its own time, then goes on without it: a slow (or hostile)
/// seed elsewhere costs it the seed, never its time limit.
#[test]
fn waiting_for_another_kilns_seed_never_uses_up_the_time_limit() {
    let seed = "sleep 8; echo slow > /seed/file";
    let script = "echo built > /out/x";
    let a = seeded_project(seed, &["x"], script);
    let mut first = a
        .command(&["build", "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // a holds the seed's lock once its seed runs.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Another target (not a's output, which b would wait for), same seed.
    let b = seeded_project(seed, &["x"], "echo other > /out/x");
    let started = std::time::Instant::now();
    kiln_with_home(&b, &a, &["build", "--timeout", "8"]).ok();
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    let note = failed_seed_note(&record_in(&a, &b));
    assert!(
        note.contains("another kiln was still computing it"),
        "{note}"
    );
    assert!(first.wait().unwrap().success());
}

/// `kiln gc` collects a seed's result like any entry nothing roots, its
/// index with it, and the lock files builds left.
#[test]
fn gc_collects_a_seeds_result_its_index_and_lock_files() {
    let a = seeded_project("echo shared > /seed/file", &["x"], "echo built > /out/x");
    a.kiln(&["build"]).ok();
    let seeds = a.home.path().join("seeds");
    assert_eq!(std::fs::read_dir(&seeds).unwrap().count(), 1);
    std::fs::remove_file(a.path("result")).unwrap();
    a.kiln(&["gc", "--root", a.dir.path().to_str().unwrap()])
        .ok();
    assert!(a.store_entries().is_empty(), "{:?}", a.store_entries());
    assert_eq!(std::fs::read_dir(&seeds).unwrap().count(), 0);
    // The build's and the seed's lock files go too; gc's own stays.
    let locks: Vec<_> = std::fs::read_dir(a.home.path().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(locks, ["gc.lock"]);
}
