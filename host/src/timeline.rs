//! What a build did, when and on which thread: the report's [`Event`]s as
//! they arrived, stamped. Two views read it: [`trace`] (`kiln build
//! --trace`, Chrome's trace-event JSON) and [`timings`] (`kiln build
//! --timings`, one HTML page).

pub mod timings;
pub mod trace;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::report::{Event, Sink};

/// One event, when it arrived and on which thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// Microseconds since the recording began.
    pub us: u64,
    /// The thread that sent it: 1, 2, … in the order threads first sent.
    pub thread: u64,
    pub event: Event,
}

/// Records every event with its time and thread, but log lines and notes
/// (a download's progress is kept as its latest figure only).
pub struct Timeline {
    start: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<Stamped>,
    threads: HashMap<std::thread::ThreadId, u64>,
    /// Download id → where its latest progress event is.
    progress: HashMap<u64, usize>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }
}

impl Sink for Timeline {
    fn event(&self, event: Event) {
        // Neither view shows them, and a recipe's log may be 16 MiB.
        if matches!(
            event,
            Event::Log { .. } | Event::Note { .. } | Event::StepProgress { .. }
        ) {
            return;
        }
        let us = self.start.elapsed().as_micros() as u64;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let next = s.threads.len() as u64 + 1;
        let thread = *s.threads.entry(std::thread::current().id()).or_insert(next);
        let stamped = Stamped { us, thread, event };
        if let Event::DownloadProgress { id, .. } = &stamped.event {
            if let Some(&i) = s.progress.get(id) {
                s.events[i] = stamped;
                return;
            }
            let (id, i) = (*id, s.events.len());
            s.progress.insert(id, i);
        }
        s.events.push(stamped);
    }
}

impl Timeline {
    /// The events so far, and the time now (µs since the start).
    pub fn events(&self) -> (Vec<Stamped>, u64) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.events.clone(), self.start.elapsed().as_micros() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_stamped_in_order_and_progress_keeps_its_latest_figure() {
        let t = Timeline::default();
        t.event(Event::DownloadStarted {
            id: 7,
            what: "w".into(),
            total: None,
        });
        for bytes in [1, 2, 3] {
            t.event(Event::DownloadProgress { id: 7, bytes });
        }
        // Neither view shows a recipe's log: it is not kept.
        t.event(Event::Log {
            target: "a".into(),
            level: crate::report::Level::Info,
            message: "x".repeat(1 << 20),
        });
        t.event(Event::Note {
            message: "n".into(),
        });
        std::thread::scope(|s| {
            s.spawn(|| t.event(Event::DownloadFinished { id: 7 }));
        });
        let (events, end) = t.events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[1].event, Event::DownloadProgress { id: 7, bytes: 3 });
        assert_eq!(
            events.iter().map(|e| e.thread).collect::<Vec<_>>(),
            [1, 1, 2]
        );
        assert!(events.windows(2).all(|w| w[0].us <= w[1].us) && events[2].us <= end);
    }
}
