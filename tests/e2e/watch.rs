//! `kiln build --watch`: a change to a path input rebuilds; what kiln
//! writes itself (the result link) does not.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::process::Child;

use crate::support::{Project, busybox_project};

/// Wait until `f` holds, up to 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A project whose tool runs `script` on the input `data` (holding
/// `data/x` = `first`), and `kiln build --watch` running in it.
fn watching(script: &str, first: &str) -> (Project, Child) {
    watching_with(script, first, &[])
}

/// [`watching`], with more flags for `kiln build --watch`.
fn watching_with(script: &str, first: &str, flags: &[&str]) -> (Project, Child) {
    let p = busybox_project(
        "inputs.data = { path = \"data\" }\n",
        &format!("attack = \"exec\"\nscript = '{script}'"),
    );
    p.write("data/x", first);
    let child = p
        .command(&[&["build", "--watch"], flags].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (p, child)
}

/// What the last build's tool printed ("" before the first).
fn escaped(p: &Project) -> String {
    std::fs::read_to_string(p.path("result/escaped")).unwrap_or_default()
}

/// Stop the watch; its stderr.
fn stop(mut child: Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn watch_rebuilds_when_an_input_changes_and_not_for_its_own_links() {
    let (p, child) = watching("cat /inputs/data/x", "one\n");
    let read = || escaped(&p);
    eventually("the first build", || read() == "one\n");
    p.write("data/x", "two\n");
    eventually("the rebuild after an edit", || read() == "two\n");
    // Settled: nothing it wrote itself starts another build.
    std::thread::sleep(Duration::from_millis(1500));
    let stderr = stop(child);
    let builds = stderr.matches("] built in ").count();
    assert_eq!(builds, 2, "one build, one rebuild:\n{stderr}");
    assert!(stderr.contains("[watch] changed: "), "{stderr}");
    assert!(stderr.contains("data/x"), "{stderr}");
}

#[test]
fn watch_writes_the_timings_page_after_every_build() {
    let (p, child) = watching_with("cat /inputs/data/x", "one\n", &["--timings=t.html"]);
    let page = || std::fs::read_to_string(p.path("t.html")).unwrap_or_default();
    eventually("the first build's page", || {
        escaped(&p) == "one\n" && page().contains("1 built")
    });
    let first = page();
    p.write("data/x", "two\n");
    eventually("the rebuild's page", || {
        escaped(&p) == "two\n" && page() != first && page().contains("1 built")
    });
    let stderr = stop(child);
    assert_eq!(stderr.matches("timings: t.html").count(), 2, "{stderr}");
}

#[test]
fn watch_keeps_going_after_a_failed_build() {
    let (p, child) = watching("grep ok /inputs/data/x", "bad\n");
    std::thread::sleep(Duration::from_millis(1500));
    p.write("data/x", "ok\n");
    let read = || escaped(&p);
    eventually("the build after the fix", || read() == "ok\n");
    let stderr = stop(child);
    assert!(stderr.contains("] failed after "), "{stderr}");
}

#[test]
fn a_save_while_a_build_runs_starts_another_build() {
    let (p, child) = watching("cat /inputs/data/x; sleep 2", "one\n");
    // The tool is running once the build's staging directory exists: its
    // inputs were hashed before it. Save then, mid-build.
    let building = || {
        std::fs::read_dir(p.home.path().join("tmp")).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("build-"))
        })
    };
    eventually("the first build to start its tool", building);
    p.write("data/x", "two\n");
    let read = || escaped(&p);
    eventually("the first build", || !read().is_empty());
    eventually("the build of the edit made during the first", || {
        read() == "two\n"
    });
    stop(child);
}
