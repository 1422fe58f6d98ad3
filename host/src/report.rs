//! The one channel from the library to the user. The library sends typed
//! [`Event`]s to a [`Reporter`]; what the user sees of them (a terminal
//! with live lines and bars, nothing but errors with `-q`, JSON lines) is
//! decided by the [`Sink`] the caller gave it. Nothing below the CLI
//! prints.
//!
//! Events carry untrusted text (target names, recipe messages, URLs, tool
//! names): a sink that shows them on a terminal makes them safe there
//! ([`crate::terminal::safe`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A recipe's log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Something the library did or found that the user may want to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A target's recipe and inputs are resolved (hashed, fetched, pinned),
    /// which took `ms`; next it waits for a worker, or its output was
    /// found stored.
    TargetPrepared { target: String, ms: u64 },
    /// A worker took the target: it fetches what its inputs lack, looks in
    /// binary caches, then runs its recipe.
    TargetAssigned { target: String },
    /// A target's recipe starts (not sent for an output the store or a
    /// binary cache already has).
    TargetStarted { target: String },
    /// A target's output is in the store: built here (`found` false), or
    /// found (in the store or a binary cache).
    TargetFinished { target: String, found: bool },
    /// A target could not be built (the build's error says why).
    TargetFailed { target: String },
    /// A tool starts in the sandbox (`program` as the recipe named it;
    /// `args`, its first few arguments, to say which step it is); `seed`:
    /// it computes a cache seed, shared by every project on the machine.
    StepStarted {
        target: String,
        program: String,
        args: Vec<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        seed: bool,
    },
    /// That tool ended: its exit code, or the signal that ended it; its
    /// wall time; where measured, its CPU time and peak memory (all its
    /// processes), and whether its tool caches held anything when it
    /// started (None: it mounted none).
    StepFinished {
        target: String,
        program: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        ms: u64,
        cpu_ms: Option<u64>,
        peak_memory: Option<u64>,
        warm_caches: Option<bool>,
    },
    /// A running fixed-output step (a tool's download) has written
    /// `bytes` to its directory so far; sent about once a second while it
    /// grows.
    StepProgress { target: String, bytes: u64 },
    /// A line the recipe logged.
    Log {
        target: String,
        level: Level,
        message: String,
    },
    /// A download starts; `total` is its size if the server said.
    DownloadStarted {
        id: u64,
        what: String,
        total: Option<u64>,
    },
    /// Bytes of download `id` received so far.
    DownloadProgress { id: u64, bytes: u64 },
    /// Download `id` ended (whether it succeeded is the caller's result).
    DownloadFinished { id: u64 },
    /// Something to read after the work (a cache used, skipped or refused).
    Note { message: String },
}

/// Where events go: the CLI's terminal, a test's list.
pub trait Sink: Send + Sync {
    fn event(&self, event: Event);
}

/// What the library holds to report: cheap to clone, shared by every
/// thread of a build; [`Reporter::silent`] (the default) drops everything.
#[derive(Clone)]
pub struct Reporter(Option<Arc<dyn Sink>>);

impl Reporter {
    /// A reporter sending to `sink`.
    pub fn new(sink: impl Sink + 'static) -> Self {
        Reporter(Some(Arc::new(sink)))
    }

    /// A reporter that shows nothing.
    pub fn silent() -> Self {
        Reporter(None)
    }

    pub fn send(&self, event: Event) {
        if let Some(sink) = &self.0 {
            sink.event(event);
        }
    }

    /// This reporter, and `also` as well: every event goes to both.
    pub fn and(self, also: Arc<dyn Sink>) -> Reporter {
        struct Tee(Option<Arc<dyn Sink>>, Arc<dyn Sink>);
        impl Sink for Tee {
            fn event(&self, event: Event) {
                if let Some(first) = &self.0 {
                    first.event(event.clone());
                }
                self.1.event(event);
            }
        }
        Reporter(Some(Arc::new(Tee(self.0, also))))
    }

    /// A [`Event::Note`].
    pub fn note(&self, message: impl Into<String>) {
        self.send(Event::Note {
            message: message.into(),
        });
    }

    /// Report a download of `total` bytes (if known) named `what`; the
    /// guard reports its progress and, when dropped, its end.
    pub fn download(&self, what: &str, total: Option<u64>) -> Download {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.send(Event::DownloadStarted {
            id,
            what: what.to_string(),
            total,
        });
        Download {
            reporter: self.clone(),
            id,
        }
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::silent()
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reporter"
        } else {
            "Reporter(silent)"
        })
    }
}

/// One download being reported ([`Reporter::download`]).
pub struct Download {
    reporter: Reporter,
    id: u64,
}

impl Download {
    /// `bytes` received so far.
    pub fn progress(&self, bytes: u64) {
        self.reporter
            .send(Event::DownloadProgress { id: self.id, bytes });
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.reporter.send(Event::DownloadFinished { id: self.id });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<Event>>>);

    impl Sink for Collect {
        fn event(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn a_download_reports_its_start_progress_and_end_once() {
        let seen = Collect::default();
        let r = Reporter::new(seen.clone());
        {
            let d = r.download("go.whl", Some(10));
            d.progress(4);
        }
        r.note("n");
        Reporter::silent().note("dropped");
        let events = seen.0.lock().unwrap().clone();
        let Event::DownloadStarted { id, .. } = events[0] else {
            panic!("{events:?}");
        };
        assert_eq!(
            events,
            vec![
                Event::DownloadStarted {
                    id,
                    what: "go.whl".into(),
                    total: Some(10)
                },
                Event::DownloadProgress { id, bytes: 4 },
                Event::DownloadFinished { id },
                Event::Note {
                    message: "n".into()
                },
            ]
        );
    }

    #[test]
    fn events_are_json_lines_a_machine_can_read() {
        let line = serde_json::to_string(&Event::StepFinished {
            target: "t".into(),
            program: "/inputs/go/bin/go".into(),
            exit_code: Some(0),
            signal: None,
            ms: 12,
            cpu_ms: Some(9),
            peak_memory: None,
            warm_caches: Some(true),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"event":"step-finished","target":"t","program":"/inputs/go/bin/go","exit_code":0,"signal":null,"ms":12,"cpu_ms":9,"peak_memory":null,"warm_caches":true}"#
        );
    }
}
