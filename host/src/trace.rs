//! `kiln build --trace FILE`: what a build did, as Chrome's trace-event
//! JSON (what Perfetto and `chrome://tracing` open). One process per
//! target (its recipe, and each tool step inside it as a nested slice), one
//! thread per kiln worker; an output found in the store or a cache is an
//! instant event. Fed by the same [`Event`]s the terminal shows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use crate::report::{Event, Sink};

/// Records events as trace events, with their time and worker.
pub struct TraceRecorder {
    start: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    /// Target → its pid (1, 2, …, in the order they first appear).
    pids: HashMap<String, u64>,
    /// Worker thread → its tid (1, 2, …).
    tids: HashMap<std::thread::ThreadId, u64>,
    /// Targets whose recipe started (so a finish closes a slice).
    started: HashMap<String, u64>,
}

impl Default for TraceRecorder {
    fn default() -> Self {
        TraceRecorder {
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }
}

impl State {
    fn pid(&mut self, target: &str) -> u64 {
        if let Some(p) = self.pids.get(target) {
            return *p;
        }
        let pid = self.pids.len() as u64 + 1;
        self.pids.insert(target.to_string(), pid);
        self.events.push(json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": { "name": target },
        }));
        pid
    }

    fn tid(&mut self) -> u64 {
        let id = std::thread::current().id();
        let next = self.tids.len() as u64 + 1;
        *self.tids.entry(id).or_insert(next)
    }
}

impl Sink for TraceRecorder {
    fn event(&self, event: Event) {
        let ts = self.start.elapsed().as_micros() as u64;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let tid = s.tid();
        let slice = |s: &mut State, name: &str, ph: &str, pid: u64, args: Value| {
            s.events.push(json!({
                "name": name, "cat": "kiln", "ph": ph, "ts": ts, "pid": pid, "tid": tid, "args": args,
            }));
        };
        match event {
            Event::TargetStarted { target } => {
                let pid = s.pid(&target);
                s.started.insert(target.clone(), tid);
                slice(&mut s, &target, "B", pid, json!({}));
            }
            Event::TargetFinished { target, found } => {
                let pid = s.pid(&target);
                if let Some(start_tid) = s.started.remove(&target) {
                    // Ended where it began (a slice's end is per thread).
                    s.events.push(json!({
                        "name": target, "cat": "kiln", "ph": "E", "ts": ts, "pid": pid,
                        "tid": start_tid, "args": { "found": found },
                    }));
                } else {
                    s.events.push(json!({
                        "name": format!("{target} (stored)"), "cat": "kiln", "ph": "i", "s": "p",
                        "ts": ts, "pid": pid, "tid": tid, "args": { "found": found },
                    }));
                }
            }
            Event::StepStarted {
                target,
                program,
                args,
            } => {
                let pid = s.pid(&target);
                let name = std::iter::once(program.as_str())
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                slice(&mut s, &name, "B", pid, json!({}));
            }
            Event::StepFinished {
                target,
                exit_code,
                signal,
                ms,
                ..
            } => {
                let pid = s.pid(&target);
                slice(
                    &mut s,
                    "",
                    "E",
                    pid,
                    json!({ "exit_code": exit_code, "signal": signal, "ms": ms }),
                );
            }
            _ => {}
        }
    }
}

impl TraceRecorder {
    /// The trace so far, as trace-event JSON. Slices still open (a build
    /// that failed or was interrupted) are closed at the end.
    pub fn json(&self) -> Value {
        let ts = self.start.elapsed().as_micros() as u64;
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = s.events.clone();
        // Close what is open, innermost first, per thread.
        let mut depth: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let key = (
                e["pid"].as_u64().unwrap_or(0),
                e["tid"].as_u64().unwrap_or(0),
            );
            match e["ph"].as_str() {
                Some("B") => depth.entry(key).or_default().push(i),
                Some("E") => {
                    depth.entry(key).or_default().pop();
                }
                _ => {}
            }
        }
        let mut open: Vec<(u64, u64)> = Vec::new();
        for ((pid, tid), stack) in depth {
            for _ in stack {
                open.push((pid, tid));
            }
        }
        for (pid, tid) in open {
            events.push(json!({
                "name": "", "cat": "kiln", "ph": "E", "ts": ts, "pid": pid, "tid": tid,
                "args": { "unfinished": true },
            }));
        }
        json!({ "traceEvents": events, "displayTimeUnit": "ms" })
    }

    /// Write the trace to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(&self.json()).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_per_target_and_stored_outputs_are_instants() {
        let r = TraceRecorder::default();
        r.event(Event::TargetStarted { target: "a".into() });
        r.event(Event::StepStarted {
            target: "a".into(),
            program: "go".into(),
            args: vec!["build".into()],
        });
        r.event(Event::StepFinished {
            target: "a".into(),
            program: "go".into(),
            exit_code: Some(0),
            signal: None,
            ms: 3,
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
        let v = r.json();
        let events = v["traceEvents"].as_array().unwrap();
        let phases: Vec<&str> = events.iter().map(|e| e["ph"].as_str().unwrap()).collect();
        assert_eq!(phases, ["M", "B", "B", "E", "E", "M", "i", "M", "B", "E"]);
        assert_eq!(events[2]["name"], "go build");
        // c never finished: closed at the end, marked so.
        assert_eq!(events[9]["args"]["unfinished"], true);
    }
}
