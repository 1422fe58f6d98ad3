//! What the runtime grants a well-behaved recipe: deterministic clocks and
//! randomness, a build cache keyed on everything that matters, read-only
//! outputs.

use crate::support::{Project, busybox_project, fixture, shell_targets};

fn entropy_project() -> Project {
    let p = Project::new();
    p.write(
        "kiln.toml",
        &format!(
            "[target.e]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"entropy\" }}\n",
            fixture("hostile")
        ),
    );
    p
}

#[test]
fn clocks_and_randomness_are_the_same_in_every_store() {
    let a = entropy_project();
    let b = entropy_project();
    a.kiln(&["build"]).ok();
    b.kiln(&["build"]).ok();
    let ta = std::fs::read_to_string(a.path("result/entropy.txt")).unwrap();
    let tb = std::fs::read_to_string(b.path("result/entropy.txt")).unwrap();
    assert_eq!(ta, tb);
    assert!(ta.contains("wall=1\n"), "{ta}");
    assert!(ta.contains("monotonic_advances=true"), "{ta}");
}

#[test]
fn source_date_epoch_sets_the_wall_clock_and_the_key() {
    let p = entropy_project();
    p.kiln(&["build", "--source-date-epoch", "1700000000"]).ok();
    let t = std::fs::read_to_string(p.path("result/entropy.txt")).unwrap();
    assert!(t.contains("wall=1700000000\n"), "{t}");
}

#[test]
fn a_second_build_is_a_cache_hit_and_outputs_are_read_only() {
    let p = entropy_project();
    let first = p.kiln(&["build"]).ok();
    assert!(!first.stdout.contains("(cached)"), "{}", first.stdout);
    let second = p.kiln(&["build", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(v[0]["cached"], true, "{}", second.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path("result/entropy.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "store files must be read-only: {mode:o}");
}

#[test]
fn an_unknown_standard_recipe_lists_the_known_ones() {
    let p = Project::new();
    p.write("kiln.toml", "[target.x]\nrecipe = \"gcc\"\n");
    p.kiln(&["build"])
        .fails_with("unknown standard recipe 'gcc'");
}

#[test]
fn a_custom_recipe_with_a_wrong_hash_is_refused_before_it_runs() {
    let p = Project::new();
    p.write(
        "kiln.toml",
        &format!(
            "[target.e]\nrecipe = {{ path = {:?}, hash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\" }}\nparams = {{ attack = \"entropy\" }}\n",
            fixture("hostile")
        ),
    );
    p.kiln(&["build"])
        .fails_with("hash mismatch for input 'recipe' of target 'e'");
    assert!(p.store_entries().is_empty());
}

#[test]
fn help_lists_the_commands() {
    let p = Project::new();
    let r = p.kiln(&["--help"]).ok();
    for cmd in ["build", "hash", "prefetch", "lock", "gc"] {
        assert!(
            r.stdout.contains(cmd),
            "{cmd} missing from --help:\n{}",
            r.stdout
        );
    }
}

#[test]
fn exec_all_runs_its_commands_at_once_and_refuses_a_fixed_output_step() {
    // Each waits for the other's mark: run one after the other, they would
    // wait until the build's time limit.
    let wait_for = |mine: &str, theirs: &str| {
        format!(
            "touch /work/{mine}; i=0; while [ ! -e /work/{theirs} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.05; done; echo {mine}"
        )
    };
    let p = busybox_project(
        "",
        &format!(
            "attack = \"exec-all\"\nscript = '{}'\nthen = '{}'\n",
            wait_for("a", "b"),
            wait_for("b", "a")
        ),
    );
    p.kiln(&["build", "--timeout", "60s"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("result/escaped")).unwrap(),
        "a\nb\n"
    );
    // Both runs are in the build record.
    let entry = std::fs::canonicalize(p.path("result")).unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.home.path().join(format!("records/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["execs"].as_array().unwrap().len(), 2);

    let q = busybox_project(
        "",
        "attack = \"exec-all\"\nscript = 'true'\nfixed_dir = \"/work/f\"\npin = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
    );
    q.kiln(&["build"])
        .fails_with("invalid request: a fixed-output step runs alone (exec), never in exec-all");
}

/// A recipe compiled against the 0.1 contract is named as such, with what
/// to do, before wasmtime's linker would say "no import named …".
#[test]
fn a_recipe_built_against_contract_0_1_is_refused_with_what_to_do() {
    let p = Project::new();
    let old = wat::parse_str(
        r#"(component
  (import "kiln:recipe/target@0.1.0" (instance (export "source-date-epoch" (func (result u64)))))
)"#,
    )
    .unwrap();
    std::fs::write(p.path("old.wasm"), old).unwrap();
    p.write(
        "kiln.toml",
        "[target.t]\nrecipe = { path = \"old.wasm\" }\n",
    );
    p.kiln(&["build"]).fails_with(
        "it was built against kiln:recipe@0.1.0, and this kiln speaks kiln:recipe@0.3.0: rebuild the recipe against kiln:recipe@0.3.0",
    );
}

/// `kiln run` builds one recipe from command-line inputs and params, and a
/// WASI command (a `main`) runs as a recipe whose exit code is the verdict.
#[test]
fn kiln_run_takes_inputs_and_params_from_the_command_line() {
    let p = Project::new();
    p.write("data/x", "one\n");
    let r = p
        .kiln(&[
            "run",
            &fixture("hostile"),
            "-i",
            "data=data",
            "-p",
            r#"{"attack": "noop"}"#,
            "-o",
            "out",
            "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["target"], "kiln_fixture_hostile", "{v}");
    assert!(p.path("out").exists());
    p.kiln(&["run", &fixture("hostile"), "-p", "[1]"])
        .fails_with("--params must be a JSON object");
    p.kiln(&["run", &fixture("hostile"), "-i", "data"])
        .fails_with("--input \"data\": write NAME=PATH");
    p.kiln(&["run", &fixture("hostile"), "-p", r#"{"attack": "nope"}"#])
        .fails_with("recipe for 'kiln_fixture_hostile' failed");
}

/// `kiln build --json`: besides the results on stdout, what the build did
/// as JSON lines on stderr, one event each, in order.
#[test]
fn build_json_reports_each_target_and_step_as_json_lines_on_stderr() {
    let p = Project::new();
    shell_targets(&p, &[("t", "echo hi")]);
    let events = |args: &[&str]| -> Vec<serde_json::Value> {
        let r = p.kiln(args).ok();
        r.stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    };
    let first = events(&["build", "--json"]);
    let kinds: Vec<&str> = first.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k}: {kinds:?}"))
    };
    assert!(at("target-started") < at("step-started"), "{kinds:?}");
    assert!(at("step-started") < at("step-finished"), "{kinds:?}");
    assert!(at("step-finished") < at("target-finished"), "{kinds:?}");
    let step = &first[at("step-finished")];
    assert_eq!(step["target"], "t", "{step}");
    assert_eq!(step["exit_code"], 0, "{step}");
    assert!(
        step["program"].as_str().unwrap().ends_with("/bin/sh"),
        "{step}"
    );
    assert_eq!(first[at("target-finished")]["found"], false);
    // Nothing runs the second time: its inputs are resolved, the target is
    // found.
    let second = events(&["build", "--json"]);
    let kinds: Vec<&str> = second.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["target-prepared", "target-finished"], "{second:?}");
    assert_eq!(
        second[1],
        serde_json::json!({"event": "target-finished", "target": "t", "found": true})
    );
    // -q: recipes' errors only.
    std::fs::write(p.path("tools/new"), "x").unwrap();
    assert_eq!(
        events(&["-q", "build", "--json"]),
        Vec::<serde_json::Value>::new()
    );
}

/// Ctrl-C stops a build cleanly: the running tool dies with everything it
/// started, kiln says it was interrupted and exits 130, and this run's
/// staging is gone (nothing for `kiln gc` to find).
#[test]
fn ctrl_c_stops_the_tools_says_so_and_leaves_no_staging() {
    let p = Project::new();
    shell_targets(&p, &[("t", "echo started > /work/started; sleep 60")]);
    let child = p
        .command(&["build"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the tool to run: its staging directory exists by then.
    let tmp = p.home.path().join("tmp");
    let running = || {
        std::fs::read_dir(&tmp)
            .is_ok_and(|rd| rd.flatten().any(|e| e.path().join("work/started").exists()))
    };
    let start = std::time::Instant::now();
    while !running() {
        assert!(start.elapsed().as_secs() < 60, "the tool never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sent = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        sent.elapsed().as_secs() < 20,
        "the sleeping tool was not stopped"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
    // Nothing the interrupted run left is an output.
    let outputs = std::fs::read_dir(p.home.path().join("outputs"))
        .unwrap()
        .count();
    assert_eq!(outputs, 0, "an interrupted run was stored as an output");
}

/// Two builds of the same target: the second says whom it waits for, then
/// takes the first one's output instead of building again.
#[test]
fn a_build_waiting_for_another_says_so_and_reuses_its_output() {
    let p = Project::new();
    shell_targets(
        &p,
        &[("t", "echo started > /work/started; sleep 3; echo done")],
    );
    let first = p
        .command(&["build", "--no-link"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = p.home.path().join("tmp");
    let start = std::time::Instant::now();
    while !std::fs::read_dir(&tmp)
        .is_ok_and(|rd| rd.flatten().any(|e| e.path().join("work/started").exists()))
    {
        assert!(
            start.elapsed().as_secs() < 60,
            "the first build never ran its tool"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = first.id();
    let second = p.kiln(&["build"]).ok();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    let waiting = format!("waiting for another kiln build of t (pid {pid}) to finish");
    assert!(second.stderr.contains(&waiting), "{}", second.stderr);
    assert!(second.stdout.contains("(cached)"), "{}", second.stdout);
}

/// A download a tool makes (a fixed-output step) shows on its live line
/// the bytes it has fetched so far, growing as it runs.
#[test]
fn a_download_step_on_a_terminal_shows_the_bytes_fetched_so_far() {
    let p = crate::support::busybox_project(
        "",
        "attack = \"exec\"\nfixed_dir = \"fetched\"\nscript = 'for i in 1 2 3 4; do head -c 1048576 /dev/zero > /work/fetched/f$i; sleep 0.7; done'",
    );
    let frames = on_a_terminal(&p, &["build", "--fetch-unpinned"]);
    let fetched: std::collections::BTreeSet<String> = frames
        .iter()
        .filter_map(|l| {
            let (before, _) = l.split_once(" fetched, running sh")?;
            Some(before.rsplit(": ").next()?.to_string())
        })
        .collect();
    assert!(
        fetched.len() >= 2 && fetched.iter().all(|f| f.ends_with("MiB")),
        "growing byte counts expected: {fetched:?} in {frames:#?}"
    );
}

/// `kiln args…` run by `script` on a pseudo-terminal, as a person at a
/// terminal would run it; what the terminal showed, split at each redraw.
fn on_a_terminal(p: &Project, args: &[&str]) -> Vec<String> {
    let kiln = p.command(args);
    let line = std::iter::once(kiln.get_program().to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let typescript = p.path("typescript");
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line])
        .arg(&typescript)
        .current_dir(p.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    for (k, v) in kiln.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    assert!(
        script
            .status()
            .expect("running script (util-linux)")
            .success()
    );
    let shown = std::fs::read_to_string(&typescript).unwrap();
    shown
        .split(['\r', '\n'])
        .map(|l| l.replace("\u{1b}[2K", ""))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn a_build_on_a_terminal_shows_what_runs_and_for_how_long_every_second() {
    let p = Project::new();
    shell_targets(&p, &[("slow", "sleep 3; echo > /out/x")]);
    let frames = on_a_terminal(&p, &["build", "--no-link"]);
    // A live line names the target and its step, with the time so far,
    // redrawn several times a second: every second from 0 to 2 is seen.
    let running: Vec<&String> = frames
        .iter()
        .filter(|l| l.contains("slow: running sh -c sleep 3"))
        .collect();
    assert!(running.len() >= 10, "{frames:#?}");
    for second in ["0s", "1s", "2s"] {
        assert!(
            running.iter().any(|l| l.trim_end().ends_with(second)),
            "no frame at {second}: {frames:#?}"
        );
    }
    // -q on a terminal, and any build off one, show no live line.
    shell_targets(&p, &[("slow", "sleep 1; echo quiet > /out/x")]);
    let quiet = on_a_terminal(&p, &["-q", "build", "--no-link"]);
    assert!(!quiet.iter().any(|l| l.contains("running")), "{quiet:#?}");
    shell_targets(&p, &[("slow", "sleep 1; echo piped > /out/x")]);
    let piped = p.kiln(&["build", "--no-link"]).ok();
    assert!(!piped.stderr.contains("running"), "{}", piped.stderr);
}
