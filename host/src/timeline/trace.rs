//! `kiln build --trace FILE`: what a build did, as Chrome's trace-event
//! JSON (what Perfetto and `chrome://tracing` open). One process per
//! target (its recipe, and each tool step inside it as a nested slice), one
//! thread per kiln thread; an output found in the store or a cache is an
//! instant event, a download a complete event in a process of its own.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::Stamped;
use crate::report::Event;

/// The pid of the downloads' process (targets count from 1).
const DOWNLOADS: u64 = 0;

/// `events` (as [`super::Timeline`] recorded them, ending at `end`) as
/// trace-event JSON. Slices still open (a build that failed or was
/// interrupted) are closed at the end, marked unfinished.
pub fn json(events: &[Stamped], end: u64) -> Value {
    let mut out: Vec<Value> = Vec::new();
    let mut pids: HashMap<String, u64> = HashMap::new();
    // Targets whose recipe started → the thread it started on (a slice's
    // end is per thread).
    let mut started: HashMap<&str, u64> = HashMap::new();
    let mut downloads: HashMap<u64, (&Stamped, &str, u64)> = HashMap::new();
    let mut assigned: HashMap<&str, u64> = HashMap::new();
    let mut pid = |out: &mut Vec<Value>, target: &'_ str| -> u64 {
        if let Some(p) = pids.get(target) {
            return *p;
        }
        let pid = pids.len() as u64 + 1;
        pids.insert(target.to_string(), pid);
        out.push(json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": { "name": target },
        }));
        pid
    };
    for e in events {
        let (ts, tid) = (e.us, e.thread);
        let slice = |out: &mut Vec<Value>, name: &str, ph: &str, pid: u64, args: Value| {
            out.push(json!({
                "name": name, "cat": "kiln", "ph": ph, "ts": ts, "pid": pid, "tid": tid, "args": args,
            }));
        };
        match &e.event {
            Event::TargetAssigned { target } => {
                assigned.entry(target).or_insert(ts);
            }
            Event::TargetStarted { target } => {
                let pid = pid(&mut out, target);
                if let Some(from) = assigned.remove(target.as_str()).filter(|from| *from < ts) {
                    out.push(json!({
                        "name": "fetching inputs", "cat": "kiln", "ph": "X", "ts": from,
                        "dur": ts - from, "pid": pid, "tid": tid, "args": {},
                    }));
                }
                // `--check` runs it again: the first run ends here.
                let again = match started.insert(target, tid) {
                    Some(first_tid) => {
                        out.push(json!({
                            "name": target, "cat": "kiln", "ph": "E", "ts": ts, "pid": pid,
                            "tid": first_tid, "args": {},
                        }));
                        true
                    }
                    None => false,
                };
                let name = if again {
                    format!("{target} (check)")
                } else {
                    target.clone()
                };
                slice(&mut out, &name, "B", pid, json!({}));
            }
            Event::TargetFinished { target, .. } | Event::TargetFailed { target } => {
                let found = matches!(e.event, Event::TargetFinished { found: true, .. });
                let failed = matches!(e.event, Event::TargetFailed { .. });
                let pid = pid(&mut out, target);
                let args = if failed {
                    json!({ "failed": true })
                } else {
                    json!({ "found": found })
                };
                if let Some(start_tid) = started.remove(target.as_str()) {
                    out.push(json!({
                        "name": target, "cat": "kiln", "ph": "E", "ts": ts, "pid": pid,
                        "tid": start_tid, "args": args,
                    }));
                } else {
                    let what = if failed { "failed" } else { "stored" };
                    out.push(json!({
                        "name": format!("{target} ({what})"), "cat": "kiln", "ph": "i", "s": "p",
                        "ts": ts, "pid": pid, "tid": tid, "args": args,
                    }));
                }
            }
            Event::StepStarted {
                target,
                program,
                args,
                ..
            } => {
                let pid = pid(&mut out, target);
                let name = std::iter::once(program.as_str())
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                slice(&mut out, &name, "B", pid, json!({}));
            }
            Event::StepFinished {
                target,
                exit_code,
                signal,
                ms,
                cpu_ms,
                peak_memory,
                warm_caches,
                ..
            } => {
                let pid = pid(&mut out, target);
                let args = json!({
                    "exit_code": exit_code, "signal": signal, "ms": ms, "cpu_ms": cpu_ms,
                    "peak_memory": peak_memory, "warm_caches": warm_caches,
                });
                slice(&mut out, "", "E", pid, args);
            }
            Event::DownloadStarted { id, what, .. } => {
                downloads.insert(*id, (e, what, 0));
            }
            Event::DownloadProgress { id, bytes } => {
                if let Some(d) = downloads.get_mut(id) {
                    d.2 = *bytes;
                }
            }
            Event::DownloadFinished { id } => {
                if let Some((start, what, bytes)) = downloads.remove(id) {
                    out.push(json!({
                        "name": what, "cat": "kiln", "ph": "X", "ts": start.us,
                        "dur": ts - start.us, "pid": DOWNLOADS, "tid": start.thread,
                        "args": { "bytes": bytes },
                    }));
                }
            }
            Event::TargetPrepared { target, ms } => {
                let pid = pid(&mut out, target);
                out.push(json!({
                    "name": "resolving inputs", "cat": "kiln", "ph": "X",
                    "ts": ts.saturating_sub(ms * 1000), "dur": ms * 1000, "pid": pid, "tid": tid,
                    "args": {},
                }));
            }
            Event::Log { .. } | Event::Note { .. } | Event::StepProgress { .. } => {}
        }
    }
    if out.iter().any(|e| e["pid"] == DOWNLOADS) {
        out.push(json!({
            "name": "process_name", "ph": "M", "pid": DOWNLOADS, "tid": 0,
            "args": { "name": "downloads" },
        }));
    }
    close_open(&mut out, end);
    json!({ "traceEvents": out, "displayTimeUnit": "ms" })
}

/// Close every slice still open at `end`, per thread, marked unfinished.
fn close_open(events: &mut Vec<Value>, end: u64) {
    let mut depth: HashMap<(u64, u64), usize> = HashMap::new();
    for e in events.iter() {
        let key = (
            e["pid"].as_u64().unwrap_or(0),
            e["tid"].as_u64().unwrap_or(0),
        );
        match e["ph"].as_str() {
            Some("B") => *depth.entry(key).or_default() += 1,
            Some("E") => {
                let d = depth.entry(key).or_default();
                *d = d.saturating_sub(1);
            }
            _ => {}
        }
    }
    let mut open: Vec<((u64, u64), usize)> = depth.into_iter().filter(|(_, n)| *n > 0).collect();
    open.sort();
    for ((pid, tid), n) in open {
        for _ in 0..n {
            events.push(json!({
                "name": "", "cat": "kiln", "ph": "E", "ts": end, "pid": pid, "tid": tid,
                "args": { "unfinished": true },
            }));
        }
    }
}

/// Write `events` as a trace to `path`.
pub fn write(events: &[Stamped], end: u64, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_vec(&json(events, end)).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::Sink;
    use crate::timeline::Timeline;

    #[test]
    fn slices_nest_per_target_and_stored_outputs_are_instants() {
        let r = Timeline::default();
        r.event(Event::TargetStarted { target: "a".into() });
        r.event(Event::StepStarted {
            target: "a".into(),
            program: "go".into(),
            args: vec!["build".into()],
            seed: false,
        });
        r.event(Event::StepFinished {
            target: "a".into(),
            program: "go".into(),
            exit_code: Some(0),
            signal: None,
            ms: 3,
            cpu_ms: Some(2),
            peak_memory: Some(1 << 20),
            warm_caches: None,
        });
        r.event(Event::TargetFinished {
            target: "a".into(),
            found: false,
        });
        r.event(Event::TargetFinished {
            target: "b".into(),
            found: true,
        });
        r.event(Event::TargetStarted { target: "c".into() });
        let (events, end) = r.events();
        let v = json(&events, end);
        let events = v["traceEvents"].as_array().unwrap();
        let phases: Vec<&str> = events.iter().map(|e| e["ph"].as_str().unwrap()).collect();
        assert_eq!(phases, ["M", "B", "B", "E", "E", "M", "i", "M", "B", "E"]);
        assert_eq!(events[2]["name"], "go build");
        // c never finished: closed at the end, marked so.
        assert_eq!(events[9]["args"]["unfinished"], true);
    }
}
