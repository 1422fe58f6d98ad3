//! `kiln build --timings`: what a build did, as one self-contained HTML
//! page (inline CSS and a little script, nothing fetched): a timeline with
//! a lane per worker (each target's recipe, and its tool steps under it),
//! the critical path marked, how many targets ran and waited over time,
//! and tables of targets, steps and downloads, sortable by any column.
//!
//! Every name on the page comes from kiln.toml, a recipe or a tool and is
//! untrusted: it is escaped wherever it stands, and the page's one script
//! is a constant that reads only the page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use super::Stamped;
use crate::report::Event;

/// Each target's dependencies, by the names events carry.
pub type Deps = HashMap<String, Vec<String>>;

/// How a target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its recipe ran here.
    Built,
    /// Its output was found in the store or a binary cache.
    Found,
    Failed,
    /// The build ended (failed elsewhere, or interrupted) while it ran.
    Unfinished,
}

impl State {
    fn class(self) -> &'static str {
        match self {
            State::Built => "built",
            State::Found => "found",
            State::Failed => "failed",
            State::Unfinished => "unfinished",
        }
    }
    fn label(self) -> &'static str {
        match self {
            State::Built => "built",
            State::Found => "from store or cache",
            State::Failed => "failed",
            State::Unfinished => "unfinished",
        }
    }
}

/// One target as the build saw it; times in µs since the start.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// When its dependencies were all done (0 for none).
    pub ready: u64,
    /// When kiln resolved its recipe and inputs (hashing, fetching):
    /// (start, end).
    pub prepared: Option<(u64, u64)>,
    /// When a worker took it (to fetch its inputs, look in binary caches,
    /// run its recipe), if one did.
    pub assigned: Option<u64>,
    /// When its recipe started, if it ran.
    pub start: Option<u64>,
    pub end: u64,
    pub state: State,
    /// The worker it ran on (1, 2, …), if it ran.
    pub worker: Option<usize>,
    pub critical: bool,
}

impl Target {
    /// When a worker took it (or its recipe started, or it ended).
    fn taken(&self) -> u64 {
        self.assigned.or(self.start).unwrap_or(self.end)
    }
}

/// One tool step.
#[derive(Debug, Clone)]
pub struct Step {
    pub target: String,
    pub command: String,
    pub start: u64,
    pub end: u64,
    /// None: it did not end before the build did.
    pub exit: Option<(Option<i32>, Option<i32>)>,
    pub cpu_ms: Option<u64>,
    pub peak_memory: Option<u64>,
    pub warm_caches: Option<bool>,
    pub worker: Option<usize>,
}

/// One download.
#[derive(Debug, Clone)]
pub struct Download {
    pub what: String,
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

/// What the page shows.
#[derive(Debug, Clone)]
pub struct Model {
    pub targets: Vec<Target>,
    pub steps: Vec<Step>,
    pub downloads: Vec<Download>,
    /// The critical path, first target first.
    pub critical: Vec<String>,
    pub workers: usize,
    /// µs from the start to the end of the build.
    pub total: u64,
}

/// Read `events` (ending at `end`) with the targets' `deps`.
pub fn model(events: &[Stamped], end: u64, deps: &Deps) -> Model {
    let mut targets: Vec<Target> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut workers: HashMap<u64, usize> = HashMap::new();
    let mut steps: Vec<Step> = Vec::new();
    // (target, thread) → its open steps, innermost last.
    let mut open_steps: HashMap<(String, u64), Vec<usize>> = HashMap::new();
    let mut downloads: Vec<Download> = Vec::new();
    let mut open_downloads: HashMap<u64, usize> = HashMap::new();
    let target = |targets: &mut Vec<Target>, index: &mut HashMap<String, usize>, name: &str| {
        *index.entry(name.to_string()).or_insert_with(|| {
            targets.push(Target {
                name: name.to_string(),
                ready: 0,
                prepared: None,
                assigned: None,
                start: None,
                end,
                state: State::Unfinished,
                worker: None,
                critical: false,
            });
            targets.len() - 1
        })
    };
    for e in events {
        match &e.event {
            Event::TargetAssigned { target: name } | Event::TargetStarted { target: name } => {
                let i = target(&mut targets, &mut index, name);
                let next = workers.len() + 1;
                let worker = *workers.entry(e.thread).or_insert(next);
                let t = &mut targets[i];
                t.worker.get_or_insert(worker);
                // `--check` starts a target twice: the first start counts.
                match e.event {
                    Event::TargetAssigned { .. } => t.assigned = t.assigned.or(Some(e.us)),
                    _ => t.start = t.start.or(Some(e.us)),
                }
            }
            Event::TargetFinished {
                target: name,
                found,
            } => {
                let i = target(&mut targets, &mut index, name);
                let t = &mut targets[i];
                t.end = e.us;
                t.state = if *found && t.start.is_none() {
                    State::Found
                } else {
                    State::Built
                };
            }
            Event::TargetPrepared { target: name, ms } => {
                let i = target(&mut targets, &mut index, name);
                targets[i].prepared = Some((e.us.saturating_sub(ms * 1000), e.us));
            }
            Event::TargetFailed { target: name } => {
                let i = target(&mut targets, &mut index, name);
                targets[i].end = e.us;
                targets[i].state = State::Failed;
            }
            Event::StepStarted {
                target: name,
                program,
                args,
                ..
            } => {
                let command = std::iter::once(program.as_str())
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                open_steps
                    .entry((name.clone(), e.thread))
                    .or_default()
                    .push(steps.len());
                steps.push(Step {
                    target: name.clone(),
                    command,
                    start: e.us,
                    end,
                    exit: None,
                    cpu_ms: None,
                    peak_memory: None,
                    warm_caches: None,
                    worker: None,
                });
            }
            Event::StepFinished {
                target: name,
                exit_code,
                signal,
                cpu_ms,
                peak_memory,
                warm_caches,
                ..
            } => {
                let Some(i) = open_steps
                    .get_mut(&(name.clone(), e.thread))
                    .and_then(Vec::pop)
                else {
                    continue;
                };
                let s = &mut steps[i];
                s.end = e.us;
                s.exit = Some((*exit_code, *signal));
                s.cpu_ms = *cpu_ms;
                s.peak_memory = *peak_memory;
                s.warm_caches = *warm_caches;
            }
            Event::DownloadStarted { id, what, .. } => {
                open_downloads.insert(*id, downloads.len());
                downloads.push(Download {
                    what: what.clone(),
                    start: e.us,
                    end,
                    bytes: 0,
                });
            }
            Event::DownloadProgress { id, bytes } => {
                if let Some(&i) = open_downloads.get(id) {
                    downloads[i].bytes = *bytes;
                }
            }
            Event::DownloadFinished { id } => {
                if let Some(i) = open_downloads.remove(id) {
                    downloads[i].end = e.us;
                }
            }
            Event::Log { .. } | Event::Note { .. } | Event::StepProgress { .. } => {}
        }
    }
    for s in &mut steps {
        s.worker = index.get(&s.target).and_then(|&i| targets[i].worker);
    }
    // Ready once the last of its dependencies (that this build saw) was.
    for i in 0..targets.len() {
        let ready = deps
            .get(&targets[i].name)
            .into_iter()
            .flatten()
            .filter_map(|d| index.get(d).map(|&j| targets[j].end))
            .max()
            .unwrap_or(0);
        targets[i].ready = ready;
    }
    let critical = critical_path(&targets, &index, deps);
    for name in &critical {
        targets[index[name]].critical = true;
    }
    Model {
        targets,
        steps,
        downloads,
        critical,
        workers: workers.len(),
        total: end,
    }
}

/// The chain of targets that decided when the build ended: from the
/// recipe that finished last, back through the dependency that finished last
/// before it, and so on; first target first.
fn critical_path(targets: &[Target], index: &HashMap<String, usize>, deps: &Deps) -> Vec<String> {
    // Outputs found take no time: the last recipe to end decides, if any ran.
    let Some(mut at) = (0..targets.len())
        .max_by_key(|&i| (targets[i].start.is_some(), targets[i].end, usize::MAX - i))
    else {
        return Vec::new();
    };
    let mut path = vec![targets[at].name.clone()];
    let mut seen = std::collections::HashSet::from([at]);
    while let Some(prev) = deps
        .get(&targets[at].name)
        .into_iter()
        .flatten()
        .filter_map(|d| index.get(d).copied())
        .max_by_key(|&j| targets[j].end)
    {
        if !seen.insert(prev) {
            break;
        }
        path.push(targets[prev].name.clone());
        at = prev;
    }
    path.reverse();
    path
}

/// `text` for HTML text or a quoted attribute: characters a terminal acts
/// on shown as escapes (as everywhere kiln shows untrusted text), then
/// markup characters as entities.
fn esc(text: &str) -> String {
    let shown = crate::terminal::safe(text);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn secs(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e6)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A table cell sorted by `key` (a number) and showing `text`.
fn num_cell(key: u64, text: &str) -> String {
    format!("<td data-v=\"{key}\">{}</td>", esc(text))
}

/// An optional figure's cell: "—" sorts first.
fn opt_cell(v: Option<u64>, show: impl Fn(u64) -> String) -> String {
    match v {
        Some(v) => num_cell(v.saturating_add(1), &show(v)),
        None => "<td data-v=\"0\">—</td>".to_string(),
    }
}

fn caches_text(warm: impl Iterator<Item = Option<bool>>) -> &'static str {
    let seen: Vec<bool> = warm.flatten().collect();
    match (seen.iter().any(|w| *w), seen.iter().any(|w| !*w)) {
        (false, false) => "—",
        (true, false) => "warm",
        (false, true) => "cold",
        (true, true) => "some warm",
    }
}

/// Pack `bars` (start, end) into rows where none overlaps: each bar's row.
fn pack(bars: &[(u64, u64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|&i| bars[i].0);
    let mut ends: Vec<u64> = Vec::new();
    let mut rows = vec![0; bars.len()];
    for i in order {
        let (start, end) = bars[i];
        let row = match ends.iter().position(|&e| e <= start) {
            Some(r) => r,
            None => {
                ends.push(0);
                ends.len() - 1
            }
        };
        ends[row] = end.max(start + 1);
        rows[i] = row;
    }
    rows
}

/// Height of one timeline row, px.
const ROW: usize = 18;

/// The page.
pub fn html(m: &Model) -> String {
    let total = m.total.max(1);
    let pct = |us: u64| us as f64 * 100.0 / total as f64;
    let mut page = String::new();
    let built = m.targets.iter().filter(|t| t.state == State::Built).count();
    let found = m.targets.iter().filter(|t| t.state == State::Found).count();
    let failed = m
        .targets
        .iter()
        .filter(|t| t.state == State::Failed)
        .count();
    let unfinished = m
        .targets
        .iter()
        .filter(|t| t.state == State::Unfinished)
        .count();
    let downloaded: u64 = m.downloads.iter().map(|d| d.bytes).sum();
    // Time the critical path's recipes ran.
    let critical_us: u64 = m
        .targets
        .iter()
        .filter(|t| t.critical)
        .map(|t| t.end.saturating_sub(t.start.unwrap_or(t.end)))
        .sum();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>kiln build timings</title><style>{CSS}</style></head><body>\
         <h1>kiln build timings</h1><p class=\"summary\">{} s on {} worker(s): \
         <span class=\"built\">{built} built</span>, <span class=\"found\">{found} from the store or a cache</span>, \
         <span class=\"failed\">{failed} failed</span>, {unfinished} unfinished; {} downloaded; \
         critical path {} target(s), their recipes {} s.</p>",
        secs(m.total),
        m.workers,
        bytes(downloaded),
        m.critical.len(),
        secs(critical_us),
    );
    page.push_str(
        "<div class=\"controls\">Zoom <select id=\"zoom\"><option value=\"1\">fit</option>\
         <option value=\"2\">2×</option><option value=\"5\">5×</option><option value=\"10\">10×</option>\
         <option value=\"50\">50×</option></select> <span class=\"legend\"><i class=\"built\"></i>recipe \
         <i class=\"step\"></i>tool step <i class=\"found\"></i>from store or cache \
         <i class=\"fetch\"></i>fetching inputs <i class=\"inputs\"></i>resolving inputs <i class=\"download\"></i>download <i class=\"failed\"></i>failed <i class=\"unfinished\"></i>unfinished \
         <i class=\"critical\"></i>critical path</span></div>",
    );
    page.push_str("<div class=\"scroll\"><div id=\"chart\">");
    // The time axis: about ten ticks at a round step.
    let step = tick_step(total);
    page.push_str("<div class=\"axis\">");
    let mut t = 0;
    while t <= total {
        let _ = write!(
            page,
            "<span style=\"left:{:.4}%\">{} s</span>",
            pct(t),
            secs(t)
        );
        t += step;
    }
    page.push_str("</div>");
    // Lanes: one per worker, then one for what needed none.
    for w in 1..=m.workers {
        let mine: Vec<&Target> = m.targets.iter().filter(|t| t.worker == Some(w)).collect();
        let steps: Vec<&Step> = m.steps.iter().filter(|s| s.worker == Some(w)).collect();
        let rows = pack(&steps.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>());
        let height = (rows.iter().max().map_or(0, |r| r + 1) + 1) * ROW;
        lane(&mut page, &format!("worker {w}"), "", height);
        for t in mine {
            let taken = t.taken();
            let start = t.start.unwrap_or(taken);
            if start > taken {
                let title = format!(
                    "{}: fetching, unpacking and checking its inputs, looking in binary caches, {} s",
                    t.name,
                    secs(start - taken)
                );
                bar(
                    &mut page,
                    total,
                    "fetch",
                    None,
                    (taken, start, 0),
                    &title,
                    "",
                );
            }
            let class = format!(
                "target {}{}",
                t.state.class(),
                if t.critical { " critical" } else { "" }
            );
            let title = format!(
                "{}: {}, {} s (queued {} s after its dependencies were done)",
                t.name,
                t.state.label(),
                secs(t.end.saturating_sub(start)),
                secs(taken.saturating_sub(t.ready)),
            );
            let span = (start, t.end, 0);
            bar(
                &mut page,
                total,
                &class,
                Some(&t.name),
                span,
                &title,
                &t.name,
            );
        }
        for (s, row) in steps.iter().zip(&rows) {
            let class = if s.exit.is_none() {
                "step unfinished"
            } else {
                "step"
            };
            let title = format!(
                "{}: {} ({} s)",
                s.target,
                s.command,
                secs(s.end.saturating_sub(s.start))
            );
            let span = (s.start, s.end, (row + 1) * ROW);
            bar(
                &mut page,
                total,
                class,
                None,
                span,
                &title,
                short(&s.command),
            );
        }
        page.push_str("</div></div>");
    }
    // Resolving inputs happens on the scheduler, one target at a time;
    // what took no time is not drawn.
    let resolving: Vec<(&Target, u64, u64)> = m
        .targets
        .iter()
        .filter_map(|t| t.prepared.filter(|(s, e)| e > s).map(|(s, e)| (t, s, e)))
        .collect();
    if !resolving.is_empty() {
        lane(
            &mut page,
            "inputs",
            "hashing, fetching and pinning each target's recipe and inputs, before it is queued",
            ROW,
        );
        for (t, start, end) in resolving {
            let title = format!("{}: resolving its inputs, {} s", t.name, secs(end - start));
            bar(
                &mut page,
                total,
                "inputs",
                None,
                (start, end, 0),
                &title,
                &t.name,
            );
        }
        page.push_str("</div></div>");
    }
    if !m.downloads.is_empty() {
        let rows = pack(
            &m.downloads
                .iter()
                .map(|d| (d.start, d.end))
                .collect::<Vec<_>>(),
        );
        let height = (rows.iter().max().map_or(0, |r| r + 1)) * ROW;
        lane(&mut page, "downloads", "", height);
        for (d, row) in m.downloads.iter().zip(&rows) {
            let size = bytes(d.bytes);
            let title = format!(
                "{}: {size} in {} s",
                d.what,
                secs(d.end.saturating_sub(d.start))
            );
            let label = format!("{} ({size})", d.what);
            let span = (d.start, d.end, row * ROW);
            bar(&mut page, total, "download", None, span, &title, &label);
        }
        page.push_str("</div></div>");
    }
    let elsewhere: Vec<&Target> = m.targets.iter().filter(|t| t.worker.is_none()).collect();
    if !elsewhere.is_empty() {
        let _ = write!(
            page,
            "<div class=\"lane\"><div class=\"lane-name\" title=\"outputs found in the store, and targets that failed before a worker took them\">no worker</div><div class=\"track\" style=\"height:{ROW}px\">"
        );
        for t in elsewhere {
            let _ = write!(
                page,
                "<div class=\"mark target {}{}\" data-target=\"{}\" style=\"left:{:.4}%\" title=\"{}: {} at {} s\"></div>",
                t.state.class(),
                if t.critical { " critical" } else { "" },
                esc(&t.name),
                pct(t.end),
                esc(&t.name),
                t.state.label(),
                secs(t.end),
            );
        }
        page.push_str("</div></div>");
    }
    page.push_str("</div></div>");
    concurrency(&mut page, m);
    // The critical path, in order.
    // A long path starts folded: the bars above already show it.
    let _ = write!(
        page,
        "<h2>Critical path</h2><details{}><summary>{} target(s)</summary><ol id=\"critical\">",
        if m.critical.len() <= 20 { " open" } else { "" },
        m.critical.len()
    );
    let by_name: HashMap<&str, &Target> = m.targets.iter().map(|t| (t.name.as_str(), t)).collect();
    for name in &m.critical {
        if let Some(t) = by_name.get(name.as_str()) {
            let _ = write!(
                page,
                "<li>{} <span class=\"dim\">({}, {} s)</span></li>",
                esc(name),
                t.state.label(),
                secs(t.end.saturating_sub(t.start.unwrap_or(t.end)))
            );
        }
    }
    page.push_str("</ol></details>");
    targets_table(&mut page, m);
    steps_table(&mut page, m);
    page.push_str(
        "<p class=\"dim\">CPU time and peak memory count every process of a step, from the \
         cgroup-v1 <code>cpuacct</code> and <code>memory</code> groups kiln makes for each sandbox \
         where it may (as root); where it may not, and for steps run on a remote engine, they \
         show —. Tool caches: warm when every cache a step mounted held something.</p>",
    );
    downloads_table(&mut page, m);
    let _ = writeln!(page, "<script>{SCRIPT}</script></body></html>");
    page
}

/// Open a timeline lane named `name` (with a `title` if not empty),
/// `height` px tall; its bars follow, then `</div></div>`.
fn lane(page: &mut String, name: &str, title: &str, height: usize) {
    let title = match title {
        "" => String::new(),
        t => format!(" title=\"{}\"", esc(t)),
    };
    let _ = write!(
        page,
        "<div class=\"lane\"><div class=\"lane-name\"{title}>{}</div><div class=\"track\" style=\"height:{height}px\">",
        esc(name)
    );
}

/// One bar of a lane: `class`, the target it draws (if it is one),
/// (start, end) µs of `total` at `top` px, a hover `title` and a `label`;
/// the text is escaped here.
fn bar(
    page: &mut String,
    total: u64,
    class: &str,
    target: Option<&str>,
    (start, end, top): (u64, u64, usize),
    title: &str,
    label: &str,
) {
    let pct = |us: u64| us as f64 * 100.0 / total as f64;
    let data = target
        .map(|t| format!(" data-target=\"{}\"", esc(t)))
        .unwrap_or_default();
    let _ = write!(
        page,
        "<div class=\"bar {class}\"{data} style=\"left:{:.4}%;width:{:.4}%;top:{top}px\" title=\"{}\">{}</div>",
        pct(start),
        pct(end.saturating_sub(start)),
        esc(title),
        esc(label),
    );
}

/// `command` with its program's directory left out (`sh -c …` for
/// `/inputs/tools/bin/sh -c …`): a bar's label; the title has it whole.
fn short(command: &str) -> &str {
    let program = command.split(' ').next().unwrap_or(command);
    let dir = program.rfind('/').map_or(0, |i| i + 1);
    &command[dir..]
}

/// A round tick spacing giving about ten ticks over `total` µs.
fn tick_step(total: u64) -> u64 {
    let rough = (total / 10).max(1);
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step * m >= rough {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// How many targets ran, and how many waited for a worker, over time: a
/// step chart.
fn concurrency(page: &mut String, m: &Model) {
    let mut changes: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for t in &m.targets {
        if t.worker.is_none() {
            continue;
        }
        let start = t.taken();
        let c = changes.entry(start).or_default();
        c.0 += 1;
        changes.entry(t.end).or_default().0 -= 1;
        if start > t.ready {
            changes.entry(t.ready).or_default().1 += 1;
            changes.entry(start).or_default().1 -= 1;
        }
    }
    let (w, h) = (1000.0, 60.0);
    let most = m.workers.max(1) as f64
        + changes
            .values()
            .scan(0i64, |q, c| {
                *q += c.1;
                Some(*q)
            })
            .max()
            .unwrap_or(0)
            .max(0) as f64;
    let total = m.total.max(1) as f64;
    let mut lines = [format!("M0,{h}"), format!("M0,{h}")];
    let mut now = [0i64, 0i64];
    let mut last_y = [h, h];
    for (&t, c) in &changes {
        let x = t as f64 * w / total;
        now[0] += c.0;
        now[1] += c.1;
        for k in 0..2 {
            let y = h - now[k].max(0) as f64 * h / most;
            let _ = write!(lines[k], " L{x:.1},{:.1} L{x:.1},{y:.1}", last_y[k]);
            last_y[k] = y;
        }
    }
    let _ = write!(
        page,
        "<h2>Running and waiting</h2><svg class=\"conc\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"targets running and waiting over time\">\
         <path class=\"running\" d=\"{} L{w},{}\"/><path class=\"waiting\" d=\"{} L{w},{}\"/></svg>\
         <p class=\"dim\"><i class=\"key running\"></i>recipes running (at most {} at once) \
         <i class=\"key waiting\"></i>ready, waiting for a worker</p>",
        lines[0], last_y[0], lines[1], last_y[1], m.workers,
    );
}

fn targets_table(page: &mut String, m: &Model) {
    page.push_str(
        "<h2>Targets</h2><table class=\"sortable\" id=\"targets\"><thead><tr>\
         <th>Target</th><th>State</th><th class=\"n\" title=\"from when its dependencies were done to when a worker took it: resolving its recipe and inputs, then waiting for a worker\">Queued (s)</th><th class=\"n\" title=\"from when a worker took it to when its recipe started: fetching inputs, looking in binary caches\">Fetching (s)</th><th class=\"n\" data-default>Wall (s)</th>\
         <th class=\"n\">Steps</th><th class=\"n\">CPU (s)</th><th class=\"n\">Peak memory</th>\
         <th>Tool caches</th><th>Critical</th></tr></thead><tbody>",
    );
    let mut steps: HashMap<&str, Vec<&Step>> = HashMap::new();
    for s in &m.steps {
        steps.entry(s.target.as_str()).or_default().push(s);
    }
    for t in &m.targets {
        let mine = steps.remove(t.name.as_str()).unwrap_or_default();
        let cpu: Option<u64> = mine
            .iter()
            .map(|s| s.cpu_ms)
            .try_fold(0u64, |a, c| c.map(|c| a + c));
        let peak = mine.iter().filter_map(|s| s.peak_memory).max();
        let wall = t.end.saturating_sub(t.start.unwrap_or(t.end));
        let waited = t.taken().saturating_sub(t.ready);
        let fetching = t.start.unwrap_or(t.end).saturating_sub(t.taken());
        let _ = write!(
            page,
            "<tr class=\"row-{}{}\"><td>{}</td><td>{}</td>{}{}{}{}{}{}<td>{}</td><td>{}</td></tr>",
            t.state.class(),
            if t.critical { " row-critical" } else { "" },
            esc(&t.name),
            t.state.label(),
            num_cell(waited, &secs(waited)),
            num_cell(fetching, &secs(fetching)),
            num_cell(wall, &secs(wall)),
            num_cell(mine.len() as u64, &mine.len().to_string()),
            opt_cell(cpu.filter(|_| !mine.is_empty()), |ms| secs(ms * 1000)),
            opt_cell(peak, bytes),
            caches_text(mine.iter().map(|s| s.warm_caches)),
            if t.critical { "yes" } else { "" },
        );
    }
    page.push_str("</tbody></table>");
}

fn steps_table(page: &mut String, m: &Model) {
    page.push_str(
        "<h2>Tool steps</h2><table class=\"sortable\" id=\"steps\"><thead><tr>\
         <th>Target</th><th>Command</th><th>Exit</th><th class=\"n\" data-default>Wall (s)</th>\
         <th class=\"n\">CPU (s)</th><th class=\"n\">Peak memory</th><th>Tool caches</th>\
         </tr></thead><tbody>",
    );
    for s in &m.steps {
        let exit = match s.exit {
            None => "unfinished".to_string(),
            Some((Some(code), _)) => code.to_string(),
            Some((None, Some(sig))) => format!("signal {sig}"),
            Some((None, None)) => "did not run".to_string(),
        };
        let wall = s.end.saturating_sub(s.start);
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"cmd\">{}</td><td>{}</td>{}{}{}<td>{}</td></tr>",
            esc(&s.target),
            esc(&s.command),
            esc(&exit),
            num_cell(wall, &secs(wall)),
            opt_cell(s.cpu_ms, |ms| secs(ms * 1000)),
            opt_cell(s.peak_memory, bytes),
            caches_text(std::iter::once(s.warm_caches)),
        );
    }
    page.push_str("</tbody></table>");
}

fn downloads_table(page: &mut String, m: &Model) {
    if m.downloads.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Downloads</h2><table class=\"sortable\" id=\"downloads\"><thead><tr>\
         <th>What</th><th class=\"n\" data-default>Bytes</th><th class=\"n\">Wall (s)</th>\
         </tr></thead><tbody>",
    );
    for d in &m.downloads {
        let wall = d.end.saturating_sub(d.start);
        let _ = write!(
            page,
            "<tr><td>{}</td>{}{}</tr>",
            esc(&d.what),
            num_cell(d.bytes, &bytes(d.bytes)),
            num_cell(wall, &secs(wall)),
        );
    }
    page.push_str("</tbody></table>");
}

/// Write the page for `events` to `path`.
pub fn write(events: &[Stamped], end: u64, deps: &Deps, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, html(&model(events, end, deps)))
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.summary .built{color:#1f6f3f}.summary .found{color:#4a6fa5}.summary .failed{color:#b00020}
.dim{color:#666}.controls{margin:.6em 0}
.legend i,.key{display:inline-block;width:1.4em;height:.8em;margin:0 .3em 0 .8em;vertical-align:middle;border-radius:2px}
.scroll{overflow-x:auto;border:1px solid #ddd;padding:4px 0}
#chart{position:relative;width:100%;min-width:600px}
.axis{position:relative;height:1.4em;margin-left:7em;border-bottom:1px solid #ccc;font-size:11px;color:#666}
.axis span{position:absolute;top:0;border-left:1px solid #ccc;padding-left:2px;white-space:nowrap}
.lane{display:flex;border-bottom:1px solid #eee}
.lane-name{flex:0 0 7em;font-size:12px;color:#444;padding:2px 4px;box-sizing:border-box}
.track{position:relative;flex:1 1 auto}
.bar{position:absolute;height:16px;min-width:1px;box-sizing:border-box;font-size:11px;line-height:16px;
 white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding:0 2px;border-radius:2px;color:#fff}
.mark{position:absolute;top:2px;width:3px;height:14px;margin-left:-1px;border-radius:1px}
.built,i.built{background:#2e8b57}.step,i.step{background:#8fbc8f;color:#123}
.found,i.found{background:#6a8fc7}.download,i.download{background:#8e7cc3}.fetch,i.fetch{background:#c9b458}.inputs,i.inputs{background:#b0a36b}.failed,i.failed{background:#c62828}
.unfinished,i.unfinished{background:repeating-linear-gradient(45deg,#999,#999 4px,#bbb 4px,#bbb 8px)}
.bar.critical,.mark.critical,i.critical{outline:2px solid #ff9800;outline-offset:-2px;box-shadow:0 0 0 1px #e65100}
.summary span{background:none}
svg.conc{width:100%;height:60px;border:1px solid #ddd}
svg.conc path{fill:none;stroke-width:2;vector-effect:non-scaling-stroke}
svg.conc .running,.key.running{stroke:#2e8b57;background:#2e8b57}
svg.conc .waiting,.key.waiting{stroke:#e65100;background:#e65100}
table{border-collapse:collapse;margin:.3em 0;font-size:13px}
th,td{border-bottom:1px solid #e4e4e4;padding:2px 8px;text-align:left}
th{cursor:pointer;user-select:none;background:#f6f6f6;position:sticky;top:0}
th.n,td[data-v]{text-align:right}
th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
tr.row-critical td:first-child{font-weight:600;border-left:3px solid #ff9800}
tr.row-failed td:first-child{color:#b00020}
td.cmd{font-family:ui-monospace,monospace;font-size:12px;max-width:50em;overflow-wrap:anywhere}
"#;

/// The page's only script: sortable tables (each starts sorted by its
/// marked column, longest first) and the zoom. It reads only the page.
const SCRIPT: &str = r#"
"use strict";
function sortBy(table, col, desc) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var key = function (row) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.toLowerCase() : Number(v);
  };
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    var c = x < y ? -1 : x > y ? 1 : 0;
    return desc ? -c : c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.classList.remove("asc", "desc");
    if (i === col) th.classList.add(desc ? "desc" : "asc");
  });
}
Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener("click", function () {
      sortBy(table, i, !th.classList.contains("desc"));
    });
    if (th.hasAttribute("data-default")) sortBy(table, i, true);
  });
});
document.getElementById("zoom").addEventListener("change", function (e) {
  document.getElementById("chart").style.width = (100 * Number(e.target.value)) + "%";
});
document.documentElement.setAttribute("data-ready", "1");
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Sink;
    use crate::timeline::Timeline;

    fn finished(t: &Timeline, target: &str) {
        t.event(Event::TargetFinished {
            target: target.into(),
            found: false,
        });
    }

    fn step(t: &Timeline, target: &str, args: &[&str], cpu: u64) {
        t.event(Event::StepStarted {
            target: target.into(),
            program: "/inputs/go/bin/go".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            seed: false,
        });
        std::thread::sleep(std::time::Duration::from_millis(2));
        t.event(Event::StepFinished {
            target: target.into(),
            program: "/inputs/go/bin/go".into(),
            exit_code: Some(0),
            signal: None,
            ms: 2,
            cpu_ms: Some(cpu),
            peak_memory: Some(3 << 20),
            warm_caches: Some(false),
        });
    }

    fn deps(pairs: &[(&str, &[&str])]) -> Deps {
        pairs
            .iter()
            .map(|(t, d)| (t.to_string(), d.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn the_critical_path_follows_the_dependency_that_finished_last() {
        // a and b in parallel, c after both; b finishes after a.
        let t = Timeline::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                t.event(Event::TargetStarted { target: "a".into() });
                step(&t, "a", &["build"], 1);
                finished(&t, "a");
            })
            .join()
            .unwrap();
        });
        t.event(Event::TargetStarted { target: "b".into() });
        step(&t, "b", &["vet"], 2);
        std::thread::sleep(std::time::Duration::from_millis(3));
        finished(&t, "b");
        t.event(Event::TargetStarted { target: "c".into() });
        step(&t, "c", &["test"], 3);
        finished(&t, "c");
        t.event(Event::TargetFinished {
            target: "d".into(),
            found: true,
        });
        let (events, end) = t.events();
        let m = model(&events, end, &deps(&[("c", &["a", "b"]), ("d", &[])]));
        assert_eq!(m.critical, ["b", "c"]);
        assert_eq!(m.workers, 2);
        let c = m.targets.iter().find(|t| t.name == "c").unwrap();
        let b = m.targets.iter().find(|t| t.name == "b").unwrap();
        assert_eq!(c.ready, b.end);
        let d = m.targets.iter().find(|t| t.name == "d").unwrap();
        assert_eq!((d.state, d.worker), (State::Found, None));
        assert_eq!(m.steps.len(), 3);
        assert!(m.steps.iter().all(|s| s.exit == Some((Some(0), None))));
        let page = html(&m);
        assert_eq!(
            page.matches("class=\"bar target built critical\"").count(),
            2
        );
        assert_eq!(page.matches("class=\"bar target built\"").count(), 1);
        assert_eq!(page.matches("class=\"mark target found\"").count(), 1);
    }

    #[test]
    fn untrusted_names_cannot_become_markup_or_terminal_controls() {
        let t = Timeline::default();
        let evil = "x</div><script>alert(1)</script><img src=x onerror=alert(2)>\"'\u{1b}[2J";
        t.event(Event::TargetStarted {
            target: evil.into(),
        });
        step(&t, evil, &[evil], 1);
        t.event(Event::TargetFailed {
            target: evil.into(),
        });
        let (events, end) = t.events();
        let page = html(&model(&events, end, &Deps::new()));
        assert_eq!(page.matches("<script>").count(), 1, "only the page's own");
        assert!(!page.contains("<img"));
        assert!(!page.contains('\u{1b}'));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("class=\"bar target failed critical\""));
    }

    #[test]
    fn unfinished_work_ends_with_the_build_and_steps_pack_without_overlap() {
        assert_eq!(pack(&[(0, 10), (5, 8), (8, 12), (10, 20)]), [0, 1, 1, 0]);
        let t = Timeline::default();
        t.event(Event::TargetStarted { target: "a".into() });
        t.event(Event::StepStarted {
            target: "a".into(),
            program: "sleep".into(),
            args: vec![],
            seed: false,
        });
        let (events, end) = t.events();
        let m = model(&events, end, &Deps::new());
        assert_eq!(m.targets[0].state, State::Unfinished);
        assert_eq!((m.targets[0].end, m.steps[0].end), (end, end));
        assert!(html(&m).contains("<td>unfinished</td>"));
        assert_eq!(tick_step(9_999_999), 1_000_000);
        assert_eq!(
            short("/inputs/go/bin/go build -o /out/x"),
            "go build -o /out/x"
        );
        assert_eq!(short("sh"), "sh");
        assert_eq!(tick_step(25_000_000), 5_000_000);
    }
}
