//! `kiln build --timings`: the HTML page of a 20-target build, opened in
//! headless Chromium (Debian's `chromium`) as a person would: every
//! target's bar is there, the critical path is marked, the script ran
//! without an error, the tables are sorted longest first. A screenshot is
//! kept as a test artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Project, busybox, fixture};

/// kiln.toml for shell targets, each with its script and the targets it
/// reads (as inputs, so it runs after them).
fn graph(p: &Project, targets: &[(String, String, Vec<String>)]) {
    std::fs::create_dir_all(p.path("tools/bin")).unwrap();
    std::fs::copy(busybox(), p.path("tools/bin/sh")).unwrap();
    let mut toml = String::new();
    for (name, script, deps) in targets {
        toml.push_str(&format!(
            "[target.{name}]\nrecipe = {{ path = {:?} }}\ninputs.tools = {{ path = \"tools\" }}\n",
            fixture("hostile")
        ));
        for d in deps {
            toml.push_str(&format!("inputs.{d} = {{ target = \"{d}\" }}\n"));
        }
        toml.push_str(&format!(
            "[target.{name}.params]\nattack = \"exec\"\nscript = '''{script}'''\n"
        ));
    }
    p.write("kiln.toml", &toml);
}

/// Headless Chromium: `args` then the page's URL; (stdout, stderr).
fn chromium(page: &Path, args: &[&str]) -> (String, String) {
    let bin = Path::new("/usr/bin/chromium");
    assert!(
        bin.exists(),
        "this test needs Chromium: apt-get install chromium (.ci/deps does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Where this suite keeps what a person may want to look at afterwards.
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The `data-target` values of elements whose class list holds `class`.
fn marked(dom: &str, class: &str) -> Vec<String> {
    dom.split('<')
        .filter(|el| {
            el.split_once("class=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .is_some_and(|(classes, _)| classes.split(' ').any(|c| c == class))
        })
        .filter_map(|el| {
            let (_, rest) = el.split_once("data-target=\"")?;
            Some(rest.split_once('"')?.0.to_string())
        })
        .collect()
}

#[test]
fn the_timings_page_of_a_20_target_build_shows_every_target_and_the_critical_path_in_chromium() {
    let p = Project::new();
    // A chain of five slow targets (the critical path) and fifteen quick
    // ones beside it; the last of the chain also reads two quick ones.
    let mut targets = Vec::new();
    for i in 0..5 {
        let deps = match i {
            0 => vec![],
            4 => vec![
                "chain3".to_string(),
                "side0".to_string(),
                "side1".to_string(),
            ],
            _ => vec![format!("chain{}", i - 1)],
        };
        // The first works the CPU, the rest wait.
        let work = match i {
            0 => "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
            _ => "sleep 0.6",
        };
        targets.push((
            format!("chain{i}"),
            format!("{work}; echo c > /out/x"),
            deps,
        ));
    }
    for i in 0..15 {
        targets.push((format!("side{i}"), format!("echo {i} > /out/x"), vec![]));
    }
    graph(&p, &targets);
    let r = p.kiln(&["build", "-j", "2", "--no-link", "--timings=t.html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("timings: t.html"), "{}", r.stderr);
    let page = p.path("t.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch.
    for reference in ["src=", "href=", "url(", "@import"] {
        assert!(
            !html.contains(reference),
            "the page refers out: {reference}"
        );
    }

    let (dom, log) = chromium(&page, &["--dump-dom"]);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run to its end:\n{log}"
    );
    for line in log.lines().filter(|l| l.contains("CONSOLE")) {
        assert!(
            !line.contains("Uncaught") && !line.contains("Error"),
            "a script error in the console: {line}"
        );
    }
    // Every target's bar, each on a worker lane.
    let mut bars = marked(&dom, "target");
    bars.sort();
    let mut names: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    names.sort();
    assert_eq!(bars, names);
    assert_eq!(dom.matches("class=\"lane-name\">worker ").count(), 2);
    // The critical path is the chain, marked on the bars and listed in order.
    let mut critical = marked(&dom, "critical");
    critical.sort();
    assert_eq!(critical, ["chain0", "chain1", "chain2", "chain3", "chain4"]);
    let listed = dom
        .split("<ol id=\"critical\">")
        .nth(1)
        .and_then(|s| s.split("</ol>").next())
        .unwrap();
    let order: Vec<&str> = listed
        .split("<li>")
        .skip(1)
        .map(|li| li.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, ["chain0", "chain1", "chain2", "chain3", "chain4"]);
    // The script sorted the targets table longest first: a chain target
    // (0.6 s of sleep) leads, and its CPU time and tool steps are shown.
    let table = dom.split("id=\"targets\"").nth(1).unwrap();
    let first_row = table
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(first_row.contains(">chain"), "{first_row}");
    let head = table.split("</thead>").next().unwrap();
    assert!(
        head.contains("class=\"n desc\" data-default"),
        "the wall-time column is not marked sorted: {head}"
    );
    // The busy target's CPU time and peak memory were measured.
    let row = table
        .split("<tr")
        .find(|r| r.contains("<td>chain0</td>"))
        .unwrap();
    let cells: Vec<&str> = row
        .split("<td")
        .skip(1)
        .map(|c| c.split_once('>').unwrap().1.split("</td>").next().unwrap())
        .collect();
    let cpu: f64 = cells[6].parse().unwrap_or_else(|_| panic!("CPU: {row}"));
    assert!(cpu > 0.05, "no CPU time measured: {row}");
    assert!(cells[7].ends_with("iB"), "no peak memory: {row}");
    let steps = dom.split("id=\"steps\"").nth(1).unwrap();
    assert_eq!(
        steps.matches("<tr>").count(),
        1 + 20,
        "a header and a step per target"
    );

    // What a person sees: a screenshot, kept.
    let shot = artifact("timings.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    eprintln!("timings screenshot: {}", shot.display());

    // A no-op: everything found; the page says so and still opens.
    let r = p.kiln(&["build", "--no-link", "--timings=noop.html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (dom, _) = chromium(&p.path("noop.html"), &["--dump-dom"]);
    assert!(dom.contains("data-ready=\"1\""));
    assert_eq!(marked(&dom, "found").len(), 20);
    assert!(dom.contains("20 from the store or a cache"), "{dom}");
}

#[test]
fn a_failed_build_writes_its_timings_with_the_failure_marked_and_untrusted_text_escaped() {
    let p = Project::new();
    let evil = "echo '<img src=x onerror=alert(1)>'; exit 3";
    graph(
        &p,
        &[
            ("ok".to_string(), "echo ok > /out/x".to_string(), vec![]),
            ("bad".to_string(), evil.to_string(), vec!["ok".to_string()]),
        ],
    );
    // With no FILE: a new page under $KILN_HOME/timings, its path printed.
    let r = p.kiln(&["build", "--no-link", "--timings"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let path = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("timings: "))
        .unwrap_or_else(|| panic!("no timings line: {}", r.stderr));
    assert!(path.contains("/timings/kiln-timings-"), "{path}");
    let (dom, log) = chromium(Path::new(path), &["--dump-dom"]);
    assert!(dom.contains("data-ready=\"1\""), "{log}");
    assert_eq!(marked(&dom, "failed"), ["bad"]);
    // The recipe's argument is shown as text, never as markup.
    assert!(!dom.contains("<img"), "markup from a tool's arguments");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
}
