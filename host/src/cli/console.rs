//! How the library's events look on stderr ([`crate::report`]): recipe log
//! lines as `[target] message`, notes as `note: …`, and on a terminal live
//! lines: one per running target with the tool it runs and for how long,
//! one bar per download. `-q` keeps only the recipes' error lines. Every
//! piece of text passes [`crate::terminal::safe`] once, here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{Event, Level, Sink};
use crate::terminal::safe;

/// The CLI's [`Sink`].
pub struct Console {
    /// Recipe log lines at or above this level are shown.
    log_from: Level,
    /// Whether notes are shown (not with `-q`).
    notes: bool,
    /// Live lines, when stderr is a terminal and not `-q`.
    live: Option<Live>,
    /// `--json`: every event shown is one JSON line instead.
    json: bool,
}

struct Live {
    multi: MultiProgress,
    /// One line per running target, by name.
    targets: Mutex<HashMap<String, ProgressBar>>,
    /// What each running target's line says its step is, by target.
    steps: Mutex<HashMap<String, String>>,
    /// One bar per download, by id.
    downloads: Mutex<HashMap<u64, ProgressBar>>,
}

impl Console {
    /// What a command shows: everything but debug lines, or with `quiet`
    /// only recipes' errors; live lines only where `live` (a terminal).
    pub fn new(quiet: bool, live: bool) -> Self {
        Console {
            log_from: if quiet { Level::Error } else { Level::Info },
            notes: !quiet,
            live: live.then(|| Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                targets: Mutex::default(),
                steps: Mutex::default(),
                downloads: Mutex::default(),
            }),
            json: false,
        }
    }

    /// For `--json`: each event one JSON line on stderr (`{"event":
    /// "step-started", …}`, as [`Event`] serialises), no live lines; `-q`
    /// keeps only recipes' error lines, as on a terminal.
    pub fn json(quiet: bool) -> Self {
        let mut console = Console::new(quiet, false);
        console.json = true;
        console
    }

    /// A line on stderr, above the live lines if there are any.
    fn line(&self, text: &str) {
        let text = safe(text);
        match &self.live {
            Some(live) if live.multi.println(text.as_ref()).is_ok() => {}
            _ => eprintln!("{text}"),
        }
    }
}

impl Sink for Console {
    fn event(&self, event: Event) {
        if self.json {
            let shown = match &event {
                Event::Log { level, .. } => *level >= self.log_from,
                // `-q` shows recipes' errors only.
                _ => self.notes,
            };
            if shown && let Ok(line) = serde_json::to_string(&event) {
                eprintln!("{}", crate::terminal::safe_json(&line));
            }
            return;
        }
        match event {
            Event::Log {
                target,
                level,
                message,
            } if level >= self.log_from => self.line(&format!("[{target}] {message}")),
            Event::Note { message } if self.notes => self.line(&format!("note: {message}")),
            other => {
                if let Some(live) = &self.live {
                    live.show(other);
                }
            }
        }
    }
}

impl Live {
    fn show(&self, event: Event) {
        match event {
            Event::TargetStarted { target } => {
                // `--check` runs a target twice: one line for both.
                if let Some(line) = self.targets_map().get(&target) {
                    line.set_message("starting again");
                    return;
                }
                let line = ProgressBar::new_spinner()
                    .with_style(
                        ProgressStyle::with_template("{spinner} {prefix}: {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    )
                    .with_prefix(safe(&target).into_owned())
                    .with_message("starting");
                let line = self.multi.add(line);
                line.enable_steady_tick(Duration::from_millis(200));
                self.targets_map().insert(target, line);
            }
            Event::StepStarted {
                target,
                program,
                args,
                seed,
            } => {
                if let Some(line) = self.targets_map().get(&target) {
                    let step = step_line(&program, &args, seed);
                    line.set_message(step.clone());
                    lock(&self.steps).insert(target, step);
                }
            }
            Event::StepProgress { target, bytes } => {
                if let (Some(line), Some(step)) = (
                    self.targets_map().get(&target),
                    lock(&self.steps).get(&target),
                ) {
                    // First, so a narrow terminal cuts the command, not the count.
                    line.set_message(format!("{} fetched, {step}", HumanBytes(bytes)));
                }
            }
            Event::StepFinished { target, .. } => {
                if let Some(line) = self.targets_map().get(&target) {
                    line.set_message("recipe running");
                }
            }
            Event::TargetFinished { target, .. } | Event::TargetFailed { target } => {
                lock(&self.steps).remove(&target);
                if let Some(line) = self.targets_map().remove(&target) {
                    line.finish_and_clear();
                    self.multi.remove(&line);
                }
            }
            Event::DownloadStarted { id, what, total } => {
                let bar = self.multi.add(match total {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::new_spinner(),
                });
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(safe(&what).into_owned());
                self.downloads_map().insert(id, bar);
            }
            Event::DownloadProgress { id, bytes } => {
                if let Some(bar) = self.downloads_map().get(&id) {
                    bar.set_position(bytes);
                }
            }
            Event::DownloadFinished { id } => {
                if let Some(bar) = self.downloads_map().remove(&id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Event::Log { .. }
            | Event::Note { .. }
            | Event::TargetPrepared { .. }
            | Event::TargetAssigned { .. } => {}
        }
    }

    fn targets_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn downloads_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ProgressBar>> {
        self.downloads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `running go build -o …`: the tool's file name and first arguments
/// (said to seed a cache for the machine when it does), at most 60
/// characters, safe for a terminal.
fn step_line(program: &str, args: &[String], seed: bool) -> String {
    let name = program.rsplit('/').next().unwrap_or(program);
    let doing = if seed {
        "seeding a cache (once per machine):"
    } else {
        "running"
    };
    let mut text = format!("{doing} {name} {}", args.join(" "));
    if text.chars().count() > 60 {
        text = text.chars().take(59).collect::<String>() + "…";
    }
    safe(text.trim_end()).into_owned()
}

impl Drop for Console {
    fn drop(&mut self) {
        // A build that failed leaves no half-drawn line behind.
        if let Some(live) = &self.live {
            let _ = live.multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_line_names_the_tool_and_its_first_arguments_briefly() {
        assert_eq!(
            step_line(
                "/inputs/go/go/bin/go",
                &["build".into(), "-o".into()],
                false
            ),
            "running go build -o"
        );
        assert_eq!(step_line("/inputs/t/bin/sh", &[], false), "running sh");
        assert_eq!(
            step_line(
                "/inputs/go/go/bin/go",
                &["build".into(), "fmt".into()],
                true
            ),
            "seeding a cache (once per machine): go build fmt"
        );
        let long = step_line("/x/tool", &["a".repeat(100)], false);
        assert_eq!(long.chars().count(), 60);
        assert!(long.ends_with('…'));
        assert_eq!(step_line("/x/t\x1b[2J", &[], false), "running t\\x1b[2J");
    }

    #[test]
    fn quiet_shows_only_recipe_errors_and_no_notes_or_live_lines() {
        let quiet = Console::new(true, false);
        assert_eq!((quiet.log_from, quiet.notes), (Level::Error, false));
        assert!(quiet.live.is_none());
        let normal = Console::new(false, true);
        assert_eq!((normal.log_from, normal.notes), (Level::Info, true));
        assert!(normal.live.is_some());
    }
}
