//! `kiln build --trace FILE`: Chrome's trace-event JSON, checked against
//! the format (every event's fields, slices balanced per thread) and for
//! what a person would look for: each target a process, its tool steps
//! nested in it, stored outputs as instants.

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
        assert!(["B", "E", "i", "M"].contains(&ph), "{e}");
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
