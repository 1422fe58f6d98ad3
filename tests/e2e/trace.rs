//! `kiln build --trace FILE`: Chrome's trace-event JSON, checked against
//! the format (every event's fields, slices balanced per thread) and for
//! what a person would look for: each target a process, its tool steps
//! nested in it, stored outputs as instants. And `kiln graph`'s marks:
//! what is up to date, out of date, or unknown until a dependency is built.

use std::collections::HashMap;

use crate::support::{Project, shell_targets};

/// The trace's events, after checking each is well-formed trace-event
/// JSON and that begin/end slices balance on every (pid, tid).
fn checked_events(path: &std::path::Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().expect("traceEvents").clone();
    let mut depth: HashMap<(u64, u64), i64> = HashMap::new();
    let mut last_ts: HashMap<(u64, u64), u64> = HashMap::new();
    for e in &events {
        let ph = e["ph"].as_str().expect("ph");
        assert!(["B", "E", "i", "M", "X"].contains(&ph), "{e}");
        assert!(e["name"].is_string(), "{e}");
        let key = (
            e["pid"].as_u64().expect("pid"),
            e["tid"].as_u64().expect("tid"),
        );
        if ph == "M" {
            continue;
        }
        let ts = e["ts"].as_u64().expect("ts");
        assert!(
            ts >= *last_ts.get(&key).unwrap_or(&0),
            "time goes back on {key:?}: {e}"
        );
        last_ts.insert(key, ts);
        let d = depth.entry(key).or_default();
        match ph {
            "B" => *d += 1,
            "E" => {
                *d -= 1;
                assert!(*d >= 0, "an end without a begin on {key:?}");
            }
            _ => {}
        }
    }
    assert!(
        depth.values().all(|d| *d == 0),
        "unbalanced slices: {depth:?}"
    );
    events
}

#[test]
fn a_trace_shows_each_target_with_its_steps_and_stored_outputs_as_instants() {
    let p = Project::new();
    shell_targets(
        &p,
        &[
            ("one", "echo 1 > /out/x"),
            ("two", "echo 2 > /out/x"),
            ("three", "echo 3 > /out/x"),
        ],
    );
    p.kiln(&["build", "-j", "2", "--no-link", "--trace", "t.json"])
        .ok();
    let events = checked_events(&p.path("t.json"));
    let processes: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    for t in ["one", "two", "three"] {
        assert!(processes.contains(&t), "{processes:?}");
        let pid = events
            .iter()
            .find(|e| e["ph"] == "M" && e["args"]["name"] == t)
            .unwrap()["pid"]
            .clone();
        let begins: Vec<&str> = events
            .iter()
            .filter(|e| e["pid"] == pid && e["ph"] == "B")
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(begins.first(), Some(&t), "{begins:?}");
        assert!(
            begins.iter().any(|b| b.contains("sh")),
            "no tool step in {t}: {begins:?}"
        );
    }
    // A no-op: every output stored, each an instant.
    p.kiln(&["build", "--no-link", "--trace", "noop.json"]).ok();
    let events = checked_events(&p.path("noop.json"));
    let stored = events.iter().filter(|e| e["ph"] == "i").count();
    assert_eq!(stored, 3, "{events:?}");
    // A failed build still writes its trace.
    shell_targets(&p, &[("bad", "exit 3")]);
    let r = p.kiln(&["build", "--no-link", "--trace", "bad.json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    checked_events(&p.path("bad.json"));
}

/// `kiln graph --format json`: each target's state (and why), by name.
fn states(p: &Project) -> HashMap<String, (String, serde_json::Value)> {
    let out = p.kiln(&["graph", "--format", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                (t["state"].as_str().unwrap().to_string(), t["why"].clone()),
            )
        })
        .collect()
}

#[test]
fn a_graph_marks_what_is_up_to_date_out_of_date_or_unknown_and_builds_nothing() {
    let p = Project::new();
    let toml = |a_script: &str| {
        shell_targets(&p, &[("a", a_script), ("c", "echo c > /out/x")]);
        let mut text = std::fs::read_to_string(p.path("kiln.toml")).unwrap();
        text = text.replace(
            "[target.c]",
            "[target.b]\nrecipe = { path = \"RECIPE\" }\ninputs.tools = { path = \"tools\" }\ninputs.a = { target = \"a\" }\n[target.b.params]\nattack = \"exec\"\nscript = 'cat /inputs/a/x > /out/x'\n[target.c]",
        );
        p.write(
            "kiln.toml",
            &text.replace("RECIPE", &crate::support::fixture("hostile")),
        );
    };
    toml("echo a > /out/x");
    let s = states(&p);
    assert_eq!(s["a"].0, "out of date");
    assert_eq!(s["c"].0, "out of date");
    assert_eq!(s["b"], ("unknown".into(), "until a is built".into()));
    assert_eq!(
        p.store_entries().len(),
        0,
        "the graph built or stored something"
    );

    p.kiln(&["build", "--no-link"]).ok();
    let entries = p.store_entries();
    let s = states(&p);
    assert!(s.values().all(|(state, _)| state == "up to date"), "{s:?}");
    let json: serde_json::Value =
        serde_json::from_str(&p.kiln(&["graph", "b", "--format", "json"]).ok().stdout).unwrap();
    let b = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "b")
        .unwrap();
    assert!(b["output_hash"].as_str().unwrap().starts_with("sha256-"));
    assert!(
        b["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["hash"].as_str().is_some_and(|h| h.starts_with("sha256-"))),
        "{b}"
    );

    // a's step changes: a is out of date, b unknown until a is built, c
    // still up to date; the drawing says so and Graphviz takes it.
    toml("echo A > /out/x");
    let s = states(&p);
    assert_eq!(
        (s["a"].0.as_str(), s["b"].0.as_str(), s["c"].0.as_str()),
        ("out of date", "unknown", "up to date")
    );
    let dot = p.kiln(&["graph", "--format", "dot"]).ok().stdout;
    assert!(
        dot.contains("up to date ") && dot.contains("fillcolor"),
        "{dot}"
    );
    let svg = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(
            std::fs::File::open({
                p.write("g.dot", &dot);
                p.path("g.dot")
            })
            .unwrap(),
        )
        .output()
        .expect("running dot (apt-get install graphviz; .ci/deps does)");
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert_eq!(
        p.store_entries(),
        entries,
        "the graph built or stored something"
    );
    let plain = p.kiln(&["graph", "--no-status"]).ok().stdout;
    assert!(!plain.contains("date"), "{plain}");
    // Without a store to ask, the graph is still drawn, unmarked, and says why.
    let r = crate::support::run(
        p.command(&["graph"])
            .env("KILN_HOME", "/proc/no-kiln-home")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: drawn without state"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, plain);
}
